// Helpers for the client integration tests: a Python `websockets` peer process,
// certificates made at test time, a small misbehaving TCP server, and waiting
// with deadlines.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include <asio.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <duplex/protocol/handshake.hpp>

#include <gtest/gtest.h>

namespace duplex::test {

inline std::filesystem::path peers_dir() {
  // Set by tests/integration/CMakeLists.txt: __FILE__ may be relative (a
  // compiler cache rewrites paths), the working directory is the build's.
  return std::filesystem::path(DUPLEX_TEST_PEERS_DIR);
}

/// A fixture whose SetUpTestSuite starts peers: a start that fails fails each
/// test of the suite. (GoogleTest reports the tests of a suite whose set-up
/// threw as skipped, and CTest passes a skipped test: a missing peer would go
/// unnoticed.) Call start_suite from SetUpTestSuite.
class PeerSuite : public ::testing::Test {
protected:
  template <class F>
  static void start_suite(F&& start) {
    suite_error().clear();
    try {
      start();
    } catch (const std::exception& e) {
      suite_error() = e.what();
    }
  }
  void SetUp() override {
    if (!suite_error().empty()) FAIL() << "the suite's peers did not start: " << suite_error();
  }

private:
  static std::string& suite_error() {
    static std::string error;
    return error;
  }
};

/// Waits for a condition set from another thread, with a deadline.
class Flag {
public:
  void set() {
    {
      std::lock_guard lock(m_);
      set_ = true;
    }
    cv_.notify_all();
  }
  bool wait(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(m_);
    return cv_.wait_for(lock, timeout, [&] { return set_; });
  }

private:
  std::mutex m_;
  std::condition_variable cv_;
  bool set_ = false;
};

/// A peer process (/usr/bin/python3 SCRIPT ARGS...) that prints "PORT <n>";
/// it ends when its stdin closes (destructor), or is killed.
class PeerProcess {
public:
  PeerProcess(const std::string& script, const std::vector<std::string>& args) {
    int in_pipe[2], out_pipe[2];
    if (pipe(in_pipe) != 0 || pipe(out_pipe) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in_pipe[0], 0);
      dup2(out_pipe[1], 1);
      close(in_pipe[1]);
      close(out_pipe[0]);
      std::vector<std::string> argv_s{"/usr/bin/python3", (peers_dir() / script).string()};
      argv_s.insert(argv_s.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (auto& s : argv_s) argv.push_back(s.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(in_pipe[0]);
    close(out_pipe[1]);
    stdin_ = in_pipe[1];
    stdout_ = out_pipe[0];
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (line.find('\n') == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{stdout_, POLLIN, 0};
      if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0)
        throw std::runtime_error("peer did not report its port");
      char buf[128];
      auto n = read(stdout_, buf, sizeof buf);
      if (n <= 0) throw std::runtime_error("peer exited before reporting its port");
      line.append(buf, static_cast<std::size_t>(n));
    }
    if (line.rfind("PORT ", 0) != 0) throw std::runtime_error("peer said: " + line);
    port_ = static_cast<std::uint16_t>(std::stoi(line.substr(5)));
  }
  ~PeerProcess() {
    close(stdin_);
    close(stdout_);
    int status = 0;
    for (int i = 0; i < 50; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
  }
  PeerProcess(const PeerProcess&) = delete;
  PeerProcess& operator=(const PeerProcess&) = delete;
  [[nodiscard]] std::uint16_t port() const { return port_; }

private:
  pid_t pid_ = -1;
  int stdin_ = -1, stdout_ = -1;
  std::uint16_t port_ = 0;
};

/// Certificates made with OpenSSL at test time, written as PEM files in a
/// fresh temporary directory.
class TestPki {
public:
  TestPki() {
    dir_ = std::filesystem::temp_directory_path() /
           ("duplex-pki-" + std::to_string(getpid()) + "-" + std::to_string(counter()++));
    std::filesystem::create_directories(dir_);
    ca_key_ = make_key();
    ca_ = make_cert(ca_key_, "duplex test CA", nullptr, nullptr, {}, -3600, 86400, true);
    write_cert(ca_, dir_ / "ca.pem");
  }
  ~TestPki() {
    X509_free(ca_);
    EVP_PKEY_free(ca_key_);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  [[nodiscard]] std::string ca_file() const { return (dir_ / "ca.pem").string(); }

  /// Writes NAME.pem and NAME.key: a server certificate for `sans` (e.g.
  /// "IP:127.0.0.1,DNS:localhost"), valid from now+`from_s` to now+`to_s`
  /// seconds, signed by the CA (or self-signed when `self_signed`).
  /// `client`: a TLS client certificate (extended key usage clientAuth).
  std::pair<std::string, std::string> issue(const std::string& name, const std::string& sans,
                                            long from_s = -3600, long to_s = 86400,
                                            bool self_signed = false, bool client = false) {
    EVP_PKEY* key = make_key();
    X509* cert = self_signed
                     ? make_cert(key, name, nullptr, nullptr, sans, from_s, to_s, false, client)
                     : make_cert(key, name, ca_, ca_key_, sans, from_s, to_s, false, client);
    auto c = dir_ / (name + ".pem");
    auto k = dir_ / (name + ".key");
    write_cert(cert, c);
    FILE* f = fopen(k.c_str(), "w");
    PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    fclose(f);
    X509_free(cert);
    EVP_PKEY_free(key);
    return {c.string(), k.string()};
  }

private:
  static int& counter() {
    static int c = 0;
    return c;
  }
  static EVP_PKEY* make_key() { return EVP_EC_gen("P-256"); }
  static X509* make_cert(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key,
                         const std::string& sans, long from_s, long to_s, bool ca,
                         bool client = false) {
    X509* x = X509_new();
    X509_set_version(x, 2);
    static long serial = 1;
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), from_s);
    X509_gmtime_adj(X509_getm_notAfter(x), to_s);
    X509_set_pubkey(x, key);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, nullptr, nullptr, 0);
    auto add = [&](int nid, const std::string& value) {
      X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
      X509_add_ext(x, e, -1);
      X509_EXTENSION_free(e);
    };
    if (ca) {
      add(NID_basic_constraints, "critical,CA:TRUE");
      add(NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
      add(NID_basic_constraints, "CA:FALSE");
      add(NID_ext_key_usage, client ? "clientAuth" : "serverAuth");
      if (!sans.empty()) add(NID_subject_alt_name, sans);
    }
    X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256());
    return x;
  }
  static void write_cert(X509* x, const std::filesystem::path& p) {
    FILE* f = fopen(p.c_str(), "w");
    PEM_write_X509(f, x);
    fclose(f);
  }

  std::filesystem::path dir_;
  EVP_PKEY* ca_key_ = nullptr;
  X509* ca_ = nullptr;
};

/// A TCP server on 127.0.0.1 (port 0) run by its own thread; `on_accept` gets
/// each accepted socket (blocking I/O is fine there). Stops in the destructor.
class RawServer {
public:
  using OnAccept = std::function<void(asio::ip::tcp::socket&)>;
  explicit RawServer(OnAccept on_accept, int backlog = asio::socket_base::max_listen_connections)
      : acceptor_(ctx_), on_accept_(std::move(on_accept)) {
    asio::ip::tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(ep.protocol());
    acceptor_.bind(ep);
    acceptor_.listen(backlog);
    port_ = acceptor_.local_endpoint().port();
    if (on_accept_) {
      thread_ = std::thread([this] {
        while (!stop_) {
          asio::ip::tcp::socket s(ctx_);
          std::error_code ec;
          acceptor_.accept(s, ec);
          if (ec || stop_) break;
          on_accept_(s);
          sockets_.push_back(std::move(s));
        }
      });
    }
  }
  ~RawServer() {
    stop_ = true;
    std::error_code ec;
    acceptor_.cancel(ec);
    // Wake a blocking accept with a connection of our own.
    if (thread_.joinable()) {
      asio::ip::tcp::socket poke(ctx_);
      poke.connect({asio::ip::make_address("127.0.0.1"), port_}, ec);
      thread_.join();
    }
    acceptor_.close(ec);
  }
  [[nodiscard]] std::uint16_t port() const { return port_; }

private:
  asio::io_context ctx_;
  asio::ip::tcp::acceptor acceptor_;
  OnAccept on_accept_;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::vector<asio::ip::tcp::socket> sockets_;
  std::thread thread_;
};

/// Reads an HTTP request header block from `s` (blocking) and returns it.
inline std::string read_request(asio::ip::tcp::socket& s) {
  asio::streambuf buf;
  std::error_code ec;
  auto n = asio::read_until(s, buf, "\r\n\r\n", ec);
  if (ec) return {};
  return std::string(asio::buffers_begin(buf.data()),
                     asio::buffers_begin(buf.data()) + static_cast<std::ptrdiff_t>(n));
}

/// The Sec-WebSocket-Key of a request header block ("" if none).
inline std::string key_of(const std::string& request) {
  auto at = request.find("Sec-WebSocket-Key: ");
  if (at == std::string::npos) return {};
  at += 19;
  return request.substr(at, request.find("\r\n", at) - at);
}

/// A RawServer step: reads the client's opening handshake and answers it
/// correctly (101), nothing more.
inline void answer_handshake(asio::ip::tcp::socket& s) {
  auto req = read_request(s);
  std::string answer =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: " +
      duplex::protocol::compute_accept(key_of(req)) + "\r\n\r\n";
  std::error_code ec;
  asio::write(s, asio::buffer(answer), ec);
}

}  // namespace duplex::test
