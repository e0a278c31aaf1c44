// TLS policy and the smaller control/connect defects of issue 13:
// - TLS 1.2 suites: a duplex listener refuses plain-RSA key exchange and CBC
//   suites and accepts ECDHE with AEAD, checked with `openssl s_client`; a
//   duplex client refuses an `openssl s_server` that offers only plain RSA;
//   ALPN "http/1.1" on both sides;
// - a control that outlives its socket refuses setters;
// - certificate and CA files are checked when set, and a file that became
//   unusable since fails the connect with a code of its own;
// - an HTTP proxy's refusal of CONNECT is the proxy's, not the server's.
// Certificates (RSA and ECDSA, one CA) are made with the openssl CLI at test
// time; every openssl process is started here and stopped by its pid.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <duplex/message_websocket.hpp>
#include <duplex/stream_websocket.hpp>
#include <duplex/websocket_listener.hpp>

#include <asio/ssl/error.hpp>

#include "client_test_support.hpp"
#include "listener_test_util.hpp"

namespace {

using namespace std::chrono_literals;
using duplex::MessageWebSocket;
using duplex::WebErrorStatus;

/// A CA (ECDSA) and two server certificates for 127.0.0.1 / localhost signed
/// by it: rsa.pem/rsa.key (RSA 2048, so plain-RSA key exchange is possible at
/// all) and ec.pem/ec.key (P-256).
class PolicyCertificates {
public:
  PolicyCertificates() {
    const std::string script =
        "set -e; cd '" + dir_.path().string() +
        "'; exec >/dev/null 2>&1;"
        " openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
        " -subj /CN=duplex-tls-policy-ca -keyout ca.key -out ca.pem;"
        " printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext;"
        " openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout rsa.key -out rsa.csr;"
        " openssl x509 -req -in rsa.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
        " -extfile san.ext -out rsa.pem;"
        " openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost"
        " -keyout ec.key -out ec.csr;"
        " openssl x509 -req -in ec.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
        " -extfile san.ext -out ec.pem";
    ok_ = std::system(script.c_str()) == 0;
  }
  [[nodiscard]] bool ok() const noexcept { return ok_; }
  [[nodiscard]] std::string file(const char* name) const { return dir_.file(name); }

private:
  duplex::test::TempDir dir_;
  bool ok_ = false;
};

const PolicyCertificates& certs() {
  static const PolicyCertificates c;
  return c;
}

/// A child process (argv[0] looked up in PATH) with stdin from /dev/null and
/// stdout + stderr captured. Killed by its pid if still running at the end.
class Child {
public:
  explicit Child(std::vector<std::string> argv) {
    // Everything the child needs is made before fork: other threads may hold
    // the allocator's lock at that moment.
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    int out[2];
    // Close-on-exec: no other child keeps the write end open (and EOF away).
    if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ == 0) {
      const int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
      dup2(null, 0);
      dup2(out[1], 1);
      dup2(out[1], 2);
      close(out[0]);
      execvp(args[0], args.data());
      _exit(127);
    }
    close(out[1]);
    out_ = out[0];
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
    close(out_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  /// Reads output until it contains `needle` at or after `from` (true), or
  /// until EOF or `timeout` (false).
  bool read_until(std::string_view needle, std::chrono::milliseconds timeout,
                  std::size_t from = 0) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (output_.find(needle, from) == std::string::npos) {
      if (!read_some(end)) return false;
    }
    return true;
  }

  /// Reads output to EOF and reaps the process: its exit status, or -1 when
  /// it was still running at `timeout` (it is killed then).
  int wait(std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (read_some(end)) {
    }
    if (std::chrono::steady_clock::now() >= end) return -1;  // the destructor kills it
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  /// Stops the process (SIGTERM) and reaps it.
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  [[nodiscard]] const std::string& output() const noexcept { return output_; }

private:
  // One read with a deadline; false at EOF, error or deadline.
  bool read_some(std::chrono::steady_clock::time_point end) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    pollfd p{out_, POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[4096];
    const auto n = read(out_, buf, sizeof buf);
    if (n <= 0) return false;
    output_.append(buf, static_cast<std::size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int out_ = -1;
  std::string output_;
};

/// `openssl s_client` against 127.0.0.1:`port` with `extra` options; true if
/// the TLS handshake succeeded. `out` gets what it printed.
bool s_client(std::uint16_t port, std::vector<std::string> extra, std::string& out) {
  std::vector<std::string> argv{"openssl",
                                "s_client",
                                "-connect",
                                "127.0.0.1:" + std::to_string(port),
                                "-CAfile",
                                certs().file("ca.pem"),
                                "-verify_return_error"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  Child c(std::move(argv));
  const int status = c.wait(15s);
  out = c.output();
  return status == 0;
}

/// True when the server refused `s_client` with a handshake_failure alert
/// (not a local "no cipher match"): no suite in common.
bool refused_by_server(std::uint16_t port, std::vector<std::string> extra, std::string& out) {
  return !s_client(port, std::move(extra), out) &&
         out.find("alert handshake failure") != std::string::npos;
}

/// A wss:// listener on 127.0.0.1 with the RSA or the ECDSA certificate.
std::unique_ptr<duplex::WebSocketListener> tls_listener(bool rsa) {
  duplex::WebSocketListenerOptions o;
  o.threads = 1;
  o.handshake_timeout = 3s;
  duplex::ListenerTlsOptions tls;
  tls.certificate_chain_file = certs().file(rsa ? "rsa.pem" : "ec.pem");
  tls.private_key_file = certs().file(rsa ? "rsa.key" : "ec.key");
  o.tls = tls;
  auto l = std::make_unique<duplex::WebSocketListener>(o);
  l->listen("127.0.0.1", 0);
  return l;
}

/// `openssl s_server` on a free port of 127.0.0.1 with the RSA certificate,
/// answering HTTP requests (-www) with `extra` options; stopped by pid.
class SServer {
public:
  explicit SServer(std::vector<std::string> extra)
      : child_([&] {
          // stdbuf: s_server prints through stdio, which holds a pipe's output
          // until exit; line buffering shows each line as it is printed.
          std::vector<std::string> argv{"stdbuf",  "-oL",
                                        "openssl", "s_server",
                                        "-accept", "127.0.0.1:0",
                                        "-cert",   certs().file("rsa.pem"),
                                        "-key",    certs().file("rsa.key"),
                                        "-www"};
          argv.insert(argv.end(), extra.begin(), extra.end());
          return argv;
        }()) {
    // "ACCEPT 127.0.0.1:PORT" once it listens.
    if (!child_.read_until("ACCEPT 127.0.0.1:", 15s))
      throw std::runtime_error("s_server did not start: " + child_.output());
    const auto at = child_.output().find("ACCEPT 127.0.0.1:") + 17;
    if (!child_.read_until("\n", 5s, at)) throw std::runtime_error("s_server: no port");
    port_ = static_cast<std::uint16_t>(std::stoi(child_.output().substr(at)));
  }
  ~SServer() { child_.stop(); }
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  Child& child() noexcept { return child_; }

private:
  Child child_;
  std::uint16_t port_ = 0;
};

/// The what() of the E that `f` throws ("<nothing thrown>" if none).
template <class E, class F>
std::string thrown(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<nothing thrown>";
}

}  // namespace

// --- server side: a duplex listener against openssl s_client ------------------------------

TEST(TlsPolicy, ListenerRefusesPlainRsaKeyExchangeAndAcceptsEcdheRsa) {
  ASSERT_TRUE(certs().ok()) << "openssl CLI failed";
  auto listener = tls_listener(true);
  std::string out;
  // Plain-RSA key exchange (no forward secrecy), with an RSA certificate that
  // could serve it: refused.
  EXPECT_TRUE(
      refused_by_server(listener->local_port(), {"-tls1_2", "-cipher", "AES128-GCM-SHA256"}, out))
      << out;
  EXPECT_TRUE(refused_by_server(listener->local_port(), {"-tls1_2", "-cipher", "AES256-SHA"}, out))
      << out;
  // ECDHE with a CBC cipher: refused too (AEAD only).
  EXPECT_TRUE(refused_by_server(listener->local_port(),
                                {"-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA256"}, out))
      << out;
  // ECDHE-RSA with AES-GCM and CHACHA20-POLY1305: accepted, ALPN http/1.1.
  for (const char* suite : {"ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
                            "ECDHE-RSA-CHACHA20-POLY1305"}) {
    ASSERT_TRUE(s_client(listener->local_port(),
                         {"-tls1_2", "-cipher", suite, "-alpn", "h2,http/1.1"}, out))
        << suite << "\n"
        << out;
    EXPECT_NE(out.find(std::string("Cipher is ") + suite), std::string::npos) << out;
    EXPECT_NE(out.find("ALPN protocol: http/1.1"), std::string::npos) << out;
  }
}

TEST(TlsPolicy, ListenerWithEcdsaCertificateAcceptsEcdheEcdsaAead) {
  ASSERT_TRUE(certs().ok()) << "openssl CLI failed";
  auto listener = tls_listener(false);
  std::string out;
  for (const char* suite : {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"}) {
    ASSERT_TRUE(s_client(listener->local_port(), {"-tls1_2", "-cipher", suite}, out))
        << suite << "\n"
        << out;
    EXPECT_NE(out.find(std::string("Cipher is ") + suite), std::string::npos) << out;
  }
  EXPECT_TRUE(refused_by_server(listener->local_port(),
                                {"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"}, out))
      << out;
}

TEST(TlsPolicy, ListenerKeepsTls13AndAlpnRules) {
  ASSERT_TRUE(certs().ok()) << "openssl CLI failed";
  auto listener = tls_listener(true);
  std::string out;
  // TLS 1.3 as before.
  ASSERT_TRUE(s_client(listener->local_port(), {"-tls1_3", "-alpn", "http/1.1"}, out)) << out;
  EXPECT_NE(out.find("TLSv1.3"), std::string::npos) << out;
  EXPECT_NE(out.find("ALPN protocol: http/1.1"), std::string::npos) << out;
  // A client that offers no ALPN is served, without ALPN.
  ASSERT_TRUE(s_client(listener->local_port(), {"-tls1_2"}, out)) << out;
  EXPECT_NE(out.find("No ALPN negotiated"), std::string::npos) << out;
  // RFC 7301 3.2: one that offers ALPN without http/1.1 gets no_application_protocol.
  EXPECT_FALSE(s_client(listener->local_port(), {"-tls1_2", "-alpn", "h2"}, out)) << out;
  EXPECT_NE(out.find("no application protocol"), std::string::npos) << out;
}

// --- client side: a duplex client against openssl s_server -------------------------------

TEST(TlsPolicy, ClientRefusesAServerThatOffersOnlyPlainRsa) {
  ASSERT_TRUE(certs().ok()) << "openssl CLI failed";
  SServer server({"-tls1_2", "-cipher", "AES128-GCM-SHA256"});
  MessageWebSocket ws;
  ws.control().trusted_ca_file(certs().file("ca.pem"));
  ws.control().connect_timeout(10s);
  const auto ec =
      ws.connect_async("wss://127.0.0.1:" + std::to_string(server.port()) + "/").get_result().ec;
  ASSERT_TRUE(ec);
  EXPECT_EQ(ec.category(), asio::error::get_ssl_category()) << ec.message();
  EXPECT_EQ(duplex::get_status(ec), WebErrorStatus::connection_aborted) << ec.message();
  // The control: the same server does complete a plain-RSA handshake with a
  // client that offers the suite, so the refusal above is the client's policy.
  std::string out;
  EXPECT_TRUE(s_client(server.port(), {"-tls1_2", "-cipher", "AES128-GCM-SHA256"}, out)) << out;
  EXPECT_NE(out.find("Cipher is AES128-GCM-SHA256"), std::string::npos) << out;
}

TEST(TlsPolicy, ClientNegotiatesEcdheAndOffersAlpnHttp11) {
  ASSERT_TRUE(certs().ok()) << "openssl CLI failed";
  SServer server({"-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256", "-alpn", "http/1.1"});
  MessageWebSocket ws;
  ws.control().trusted_ca_file(certs().file("ca.pem"));
  ws.control().connect_timeout(10s);
  const auto ec =
      ws.connect_async("wss://127.0.0.1:" + std::to_string(server.port()) + "/").get_result().ec;
  // TLS succeeded: s_server -www answers the upgrade with an HTTP/1.0 page,
  // which fails the opening handshake, not TLS.
  EXPECT_EQ(ec, duplex::condition::handshake_failed)
      << ec.category().name() << ": " << ec.message();
  EXPECT_TRUE(server.child().read_until("ALPN protocols advertised by the client: http/1.1", 10s))
      << server.child().output();
}

// --- controls that outlive their socket ----------------------------------------------------

TEST(ControlLifetime, SettersThrowOnceTheSocketIsDestroyed) {
  const std::string gone = "control: the socket was destroyed; settings can no longer change";
  std::optional<duplex::MessageWebSocketControl> control;
  {
    MessageWebSocket ws;
    control = ws.control();
    control->connect_timeout(5s);
    // A move keeps the session: the control stays live.
    MessageWebSocket moved(std::move(ws));
    control->close_timeout(2s);
  }
  EXPECT_EQ(thrown<std::logic_error>([&] { control->connect_timeout(1s); }), gone);
  EXPECT_EQ(thrown<std::logic_error>([&] { control->add_supported_protocol("chat"); }), gone);
  EXPECT_EQ(thrown<std::logic_error>([&] { control->supported_protocols({"chat"}); }), gone);
  EXPECT_EQ(
      thrown<std::logic_error>([&] { control->message_type(duplex::SocketMessageType::utf8); }),
      gone);
  EXPECT_EQ(thrown<std::logic_error>([&] { control->max_message_size(10); }), gone);
  EXPECT_EQ(thrown<std::logic_error>([&] { control->no_delay(false); }), gone);
  EXPECT_EQ(thrown<std::logic_error>([&] {
              control->client_certificate({certs().file("rsa.pem"), certs().file("rsa.key")});
            }),
            gone);
  EXPECT_EQ(thrown<std::logic_error>([&] { control->trusted_ca_file(""); }), gone);
  // Getters keep answering with the last settings.
  EXPECT_EQ(control->connect_timeout(), 5s);
  EXPECT_EQ(control->close_timeout(), 2s);
  EXPECT_EQ(control->message_type(), duplex::SocketMessageType::binary);

  std::optional<duplex::StreamWebSocketControl> stream_control;
  { stream_control = duplex::StreamWebSocket().control(); }
  EXPECT_EQ(thrown<std::logic_error>([&] { stream_control->send_timeout(1s); }), gone);
}

// --- certificate files: checked when set, reported at connect ------------------------------

TEST(CertificateFiles, ClientCertificateIsCheckedWhenSet) {
  ASSERT_TRUE(certs().ok()) << "openssl CLI failed";
  MessageWebSocket ws;
  auto c = ws.control();
  EXPECT_EQ(thrown<std::invalid_argument>([&] {
              c.client_certificate({"/nonexistent/cert.pem", "/nonexistent/key.pem"});
            }),
            "client_certificate: certificate_file '/nonexistent/cert.pem' cannot be read: No such "
            "file or directory");
  EXPECT_EQ(thrown<std::invalid_argument>([&] {
              c.client_certificate({certs().file("rsa.pem"), "/nonexistent/key.pem"});
            }),
            "client_certificate: private_key_file '/nonexistent/key.pem' cannot be read: No such "
            "file or directory");
  const std::string not_pem = certs().file("san.ext");
  EXPECT_EQ(thrown<std::invalid_argument>([&] {
              c.client_certificate({not_pem, certs().file("rsa.key")});
            })
                .rfind("client_certificate: certificate_file '" + not_pem +
                           "' holds no usable PEM certificate: ",
                       0),
            0u);
  EXPECT_EQ(thrown<std::invalid_argument>([&] {
              c.client_certificate({certs().file("rsa.pem"), not_pem});
            })
                .rfind("client_certificate: private_key_file '" + not_pem +
                           "' holds no usable unencrypted PEM key: ",
                       0),
            0u);
  EXPECT_EQ(thrown<std::invalid_argument>([&] {
              c.client_certificate({certs().file("rsa.pem"), certs().file("ec.key")});
            }),
            "client_certificate: private_key_file '" + certs().file("ec.key") +
                "' does not match certificate_file '" + certs().file("rsa.pem") + "'");
  EXPECT_FALSE(c.client_certificate());  // nothing was stored by a failed call
  c.client_certificate({certs().file("rsa.pem"), certs().file("rsa.key")});
  EXPECT_EQ(c.client_certificate()->certificate_file, certs().file("rsa.pem"));

  EXPECT_EQ(thrown<std::invalid_argument>([&] { c.trusted_ca_file("/nonexistent/ca.pem"); }),
            "trusted_ca_file: file '/nonexistent/ca.pem' cannot be read: No such file or "
            "directory");
  EXPECT_EQ(
      thrown<std::invalid_argument>([&] {
        c.trusted_ca_file(not_pem);
      }).rfind("trusted_ca_file: file '" + not_pem + "' holds no usable PEM certificate: ", 0),
      0u);
  c.trusted_ca_file(certs().file("ca.pem"));
  c.trusted_ca_file("");  // clears
  EXPECT_EQ(c.trusted_ca_file(), "");

  // Misuse of state is reported before a bad file.
  std::uint16_t refused;
  {
    duplex::test::RawServer gone(nullptr);
    refused = gone.port();
  }
  (void)ws.connect_async("ws://127.0.0.1:" + std::to_string(refused) + "/").get_result();
  const std::string after = "control: settings can change only before connect_async";
  EXPECT_EQ(thrown<std::logic_error>([&] { c.trusted_ca_file("/nonexistent/ca.pem"); }), after);
  EXPECT_EQ(thrown<std::logic_error>([&] {
              c.client_certificate({"/nonexistent/cert.pem", "/nonexistent/key.pem"});
            }),
            after);
}

TEST(CertificateFiles, AFileRemovedAfterItWasSetFailsTheConnectAsACertificateError) {
  ASSERT_TRUE(certs().ok()) << "openssl CLI failed";
  duplex::test::TempDir dir;
  const auto cert = dir.file("client.pem");
  const auto key = dir.file("client.key");
  std::filesystem::copy_file(certs().file("rsa.pem"), cert);
  std::filesystem::copy_file(certs().file("rsa.key"), key);
  duplex::test::RawServer tcp(nullptr);  // TCP connects; TLS never starts
  MessageWebSocket ws;
  ws.control().client_certificate({cert, key});
  std::filesystem::remove(key);
  const auto ec =
      ws.connect_async("wss://127.0.0.1:" + std::to_string(tcp.port()) + "/").get_result().ec;
  EXPECT_EQ(ec, duplex::error::certificate_file_unusable)
      << ec.category().name() << ":" << ec.value();
  EXPECT_EQ(ec.message(), "the trusted CA file, client certificate or key cannot be loaded");
  EXPECT_EQ(duplex::get_status(ec), WebErrorStatus::certificate_is_invalid);
}

// --- a proxy that cannot reach the server ----------------------------------------------------

TEST(ProxyFailure, RefusedConnectIsCannotConnectWithTheProxysStatus) {
  for (int status : {500, 502, 503}) {
    std::mutex m;
    std::string request;
    duplex::test::RawServer proxy([&](asio::ip::tcp::socket& s) {
      auto r = duplex::test::read_request(s);
      {
        std::lock_guard lock(m);
        request = r;
      }
      std::error_code ec;
      asio::write(s,
                  asio::buffer("HTTP/1.1 " + std::to_string(status) +
                               " Cannot Reach\r\nContent-Length: 0\r\n\r\n"),
                  ec);
    });
    MessageWebSocket ws;
    ws.control().proxy("http://127.0.0.1:" + std::to_string(proxy.port()));
    const auto ec = ws.connect_async("ws://server.test:9/").get_result().ec;
    EXPECT_EQ(ec.category(), duplex::proxy_category());
    EXPECT_EQ(ec.value(), status);
    EXPECT_EQ(ec.message(), "proxy answered CONNECT with HTTP status " + std::to_string(status) +
                                " (the tunnel to the server was not opened)");
    EXPECT_EQ(duplex::get_status(ec), WebErrorStatus::cannot_connect);
    EXPECT_NE(ec, duplex::condition::handshake_failed);
    std::lock_guard lock(m);
    EXPECT_EQ(request.rfind("CONNECT server.test:9 HTTP/1.1\r\n", 0), 0u) << request;
  }
}
