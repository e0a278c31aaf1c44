// Every failure of a client connect maps to its WebErrorStatus, proven on a real
// failure: refused port, unresolvable name, silent server, 404, bad accept hash,
// certificates (untrusted, expired, wrong name), custom validation, dead peer.
#include <gtest/gtest.h>

#include <duplex/message_websocket.hpp>
#include <duplex/protocol/handshake.hpp>

#include "client_test_support.hpp"

using namespace std::chrono_literals;
using duplex::MessageWebSocket;
using duplex::WebErrorStatus;

namespace {

std::error_code connect_error(MessageWebSocket& ws, const std::string& url) {
  return ws.connect_async(url).get_result().ec;
}

}  // namespace

TEST(ClientErrors, RefusedPortIsCannotConnect) {
  std::uint16_t port;
  {
    duplex::test::RawServer closed_soon(nullptr);
    port = closed_soon.port();
  }
  MessageWebSocket ws;
  auto ec = connect_error(ws, "ws://127.0.0.1:" + std::to_string(port) + "/");
  EXPECT_EQ(duplex::get_status(ec), WebErrorStatus::cannot_connect) << ec.message();
}

TEST(ClientErrors, UnresolvableNameIsHostNameNotResolved) {
  MessageWebSocket ws;
  ws.control().connect_timeout(10s);
  auto ec = connect_error(ws, "ws://nonexistent.invalid/");
  EXPECT_EQ(ec, duplex::error::host_not_resolved);
  EXPECT_EQ(duplex::get_status(ec), WebErrorStatus::host_name_not_resolved);
}

TEST(ClientErrors, SilentServerTimesOut) {
  duplex::test::RawServer silent([](asio::ip::tcp::socket&) {});
  MessageWebSocket ws;
  ws.control().connect_timeout(300ms);
  auto start = std::chrono::steady_clock::now();
  auto ec = connect_error(ws, "ws://127.0.0.1:" + std::to_string(silent.port()) + "/");
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(ec, duplex::error::timed_out);
  EXPECT_EQ(duplex::get_status(ec), WebErrorStatus::timeout);
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 3s);
}

TEST(ClientErrors, NotFoundIsHttpStatus) {
  duplex::test::RawServer server([](asio::ip::tcp::socket& s) {
    duplex::test::read_request(s);
    std::error_code ec;
    asio::write(s, asio::buffer(std::string("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")),
                ec);
  });
  MessageWebSocket ws;
  auto ec = connect_error(ws, "ws://127.0.0.1:" + std::to_string(server.port()) + "/missing");
  EXPECT_EQ(ec.category(), duplex::http_category());
  EXPECT_EQ(ec.value(), 404);
  EXPECT_EQ(duplex::get_status(ec), WebErrorStatus::not_found);
}

TEST(ClientErrors, BadAcceptHashIsInvalidServerResponse) {
  duplex::test::RawServer server([](asio::ip::tcp::socket& s) {
    duplex::test::read_request(s);
    std::error_code ec;
    asio::write(s,
                asio::buffer(std::string(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
                    "Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n")),
                ec);
  });
  MessageWebSocket ws;
  auto ec = connect_error(ws, "ws://127.0.0.1:" + std::to_string(server.port()) + "/");
  EXPECT_EQ(ec, duplex::error::bad_accept);
  EXPECT_EQ(duplex::get_status(ec), WebErrorStatus::error_http_invalid_server_response);
}

TEST(ClientErrors, NonHttpAnswerIsInvalidServerResponse) {
  duplex::test::RawServer server([](asio::ip::tcp::socket& s) {
    duplex::test::read_request(s);
    std::error_code ec;
    asio::write(s, asio::buffer(std::string("SSH-2.0-OpenSSH\r\n\r\n")), ec);
  });
  MessageWebSocket ws;
  auto ec = connect_error(ws, "ws://127.0.0.1:" + std::to_string(server.port()) + "/");
  EXPECT_EQ(duplex::get_status(ec), WebErrorStatus::error_http_invalid_server_response)
      << ec.message();
}

TEST(ClientErrors, KeepAliveDetectsDeadPeer) {
  duplex::test::RawServer server(duplex::test::answer_handshake);  // then silent
  MessageWebSocket ws;
  ws.control().keep_alive_interval(100ms);
  ws.control().keep_alive_timeout(200ms);
  duplex::test::Flag closed;
  std::error_code why;
  std::uint16_t code = 0;
  ws.closed([&](MessageWebSocket&, const duplex::WebSocketClosedEventArgs& a) {
    why = a.error();
    code = a.code();
    closed.set();
  });
  ws.connect_async("ws://127.0.0.1:" + std::to_string(server.port()) + "/").get();
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(closed.wait(5s));
  EXPECT_EQ(why, duplex::error::dead_peer);
  EXPECT_EQ(code, 1006);
  EXPECT_EQ(duplex::get_status(why), WebErrorStatus::connection_aborted);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST(ClientErrors, CancellingAConnectAbortsIt) {
  duplex::test::RawServer silent([](asio::ip::tcp::socket&) {});
  MessageWebSocket ws;
  duplex::CancellationSource source;
  auto task =
      ws.connect_async("ws://127.0.0.1:" + std::to_string(silent.port()) + "/", source.token());
  source.cancel();
  auto ec = task.get_result().ec;
  EXPECT_EQ(ec, duplex::error::operation_aborted);
  EXPECT_EQ(duplex::get_status(ec), WebErrorStatus::operation_canceled);
}

TEST(ClientErrors, AsioCancellationSlotAbortsAConnect) {
  duplex::test::RawServer silent([](asio::ip::tcp::socket&) {});
  asio::io_context ctx;
  MessageWebSocket ws(ctx);
  asio::cancellation_signal signal;
  std::optional<std::error_code> result;
  ws.connect_async(
      "ws://127.0.0.1:" + std::to_string(silent.port()) + "/",
      asio::bind_cancellation_slot(signal.slot(), [&](std::error_code ec) { result = ec; }));
  ctx.run_for(50ms);
  signal.emit(asio::cancellation_type::terminal);
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!result && std::chrono::steady_clock::now() < deadline) {
    ctx.restart();
    ctx.run_for(20ms);
  }
  ASSERT_TRUE(result);
  EXPECT_EQ(*result, duplex::error::operation_aborted);
}

// --- TLS ------------------------------------------------------------------------------------

class ClientTls : public duplex::test::PeerSuite {
protected:
  static void SetUpTestSuite() {
    start_suite([] {
      pki() = std::make_unique<duplex::test::TestPki>();
      auto start = [](const std::pair<std::string, std::string>& files) {
        return std::make_unique<duplex::test::PeerProcess>(
            "ws_echo_server.py",
            std::vector<std::string>{"--cert", files.first, "--key", files.second});
      };
      good() = start(pki()->issue("good", "IP:127.0.0.1,DNS:localhost"));
      wrong_name() = start(pki()->issue("wrong", "DNS:other.example"));
      expired() = start(pki()->issue("expired", "IP:127.0.0.1,DNS:localhost", -7200, -3600));
    });
  }
  static void TearDownTestSuite() {
    good().reset();
    wrong_name().reset();
    expired().reset();
    pki().reset();
  }
  static std::unique_ptr<duplex::test::TestPki>& pki() {
    static std::unique_ptr<duplex::test::TestPki> p;
    return p;
  }
  static std::unique_ptr<duplex::test::PeerProcess>& good() {
    static std::unique_ptr<duplex::test::PeerProcess> p;
    return p;
  }
  static std::unique_ptr<duplex::test::PeerProcess>& wrong_name() {
    static std::unique_ptr<duplex::test::PeerProcess> p;
    return p;
  }
  static std::unique_ptr<duplex::test::PeerProcess>& expired() {
    static std::unique_ptr<duplex::test::PeerProcess> p;
    return p;
  }
  static std::string url(const duplex::test::PeerProcess& p,
                         const std::string& host = "127.0.0.1") {
    return "wss://" + host + ":" + std::to_string(p.port()) + "/";
  }
};

TEST_F(ClientTls, TrustedServerEchoesAndShowsItsCertificate) {
  for (std::string host : {"127.0.0.1", "localhost"}) {
    MessageWebSocket ws;
    ws.control().trusted_ca_file(pki()->ca_file());
    duplex::test::Flag got;
    std::string text;
    ws.message_received([&](MessageWebSocket&, const auto& a) {
      text = std::string(a.text());
      got.set();
    });
    ws.connect_async(url(*good(), host)).get();
    ws.send_async("over tls").get();
    ASSERT_TRUE(got.wait());
    EXPECT_EQ(text, "over tls");
    auto info = ws.information();
    ASSERT_TRUE(info.server_certificate());
    EXPECT_EQ(info.server_certificate()->subject, "CN=good");
    EXPECT_EQ(info.server_certificate()->issuer, "CN=duplex test CA");
    EXPECT_NE(info.server_certificate()->pem.find("BEGIN CERTIFICATE"), std::string::npos);
    EXPECT_EQ(info.server_certificate()->sha256_fingerprint.size(), 64u);
    EXPECT_TRUE(info.server_certificate_errors().empty());
    EXPECT_EQ(info.server_certificate_error_severity(), duplex::SocketSslErrorSeverity::none);
    ws.close_async().get();
  }
}

TEST_F(ClientTls, UnknownCaIsInvalid) {
  MessageWebSocket ws;
  auto ec = connect_error(ws, url(*good()));
  EXPECT_EQ(ec.category(), duplex::x509_category()) << ec.message();
  EXPECT_EQ(duplex::get_status(ec), WebErrorStatus::certificate_is_invalid);
  auto errors = ws.information().server_certificate_errors();
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors.front(), duplex::ChainValidationResult::untrusted);
  EXPECT_EQ(ws.information().server_certificate_error_severity(),
            duplex::SocketSslErrorSeverity::fatal);
}

TEST_F(ClientTls, WrongNameIsCommonNameIncorrect) {
  MessageWebSocket ws;
  ws.control().trusted_ca_file(pki()->ca_file());
  auto ec = connect_error(ws, url(*wrong_name()));
  EXPECT_EQ(duplex::get_status(ec), WebErrorStatus::certificate_common_name_is_incorrect)
      << ec.message();
}

TEST_F(ClientTls, ExpiredIsExpired) {
  MessageWebSocket ws;
  ws.control().trusted_ca_file(pki()->ca_file());
  auto ec = connect_error(ws, url(*expired()));
  EXPECT_EQ(duplex::get_status(ec), WebErrorStatus::certificate_expired) << ec.message();
}

TEST_F(ClientTls, IgnorableErrorsAreAccepted) {
  MessageWebSocket ws;
  ws.control().ignorable_server_certificate_errors(
      {duplex::ChainValidationResult::untrusted, duplex::ChainValidationResult::invalid_name});
  auto ec = connect_error(ws, url(*wrong_name()));
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(ws.information().server_certificate_error_severity(),
            duplex::SocketSslErrorSeverity::ignorable);
  ws.close_async().get();
}

TEST_F(ClientTls, CustomValidationRejectsAndDefers) {
  {
    MessageWebSocket ws;
    ws.control().trusted_ca_file(pki()->ca_file());
    std::string seen_subject;
    ws.server_custom_validation_requested([&](MessageWebSocket&, const auto& args) {
      seen_subject = args.server_certificate().subject;
      args.reject();
    });
    auto ec = connect_error(ws, url(*good()));
    EXPECT_EQ(ec, duplex::error::certificate_rejected);
    EXPECT_EQ(seen_subject, "CN=good");
  }
  {
    // Pinning by fingerprint, decided on another thread through a deferral.
    MessageWebSocket ws;
    ws.control().trusted_ca_file(pki()->ca_file());
    std::thread decider;
    ws.server_custom_validation_requested([&](MessageWebSocket&, const auto& args) {
      decider = std::thread([deferral = args.get_deferral(),
                             fp = args.server_certificate().sha256_fingerprint]() mutable {
        std::this_thread::sleep_for(50ms);
        EXPECT_EQ(fp.size(), 64u);
        deferral.complete();
      });
    });
    ws.connect_async(url(*good())).get();
    decider.join();
    ws.close_async().get();
  }
}

TEST_F(ClientTls, ClientCertificateForMutualTls) {
  auto server = pki()->issue("mtls-server", "IP:127.0.0.1");
  auto client = pki()->issue("mtls-client", "", -3600, 86400, false, true);
  duplex::test::PeerProcess peer(
      "ws_echo_server.py",
      {"--cert", server.first, "--key", server.second, "--client-ca", pki()->ca_file()});
  {
    MessageWebSocket ws;
    ws.control().trusted_ca_file(pki()->ca_file());
    ws.control().client_certificate({client.first, client.second});
    ws.connect_async(url(peer)).get();
    ws.close_async().get();
  }
  {
    // Without a certificate the server ends the TLS handshake (TLS 1.3: it may
    // only show after the handshake, as a failed opening handshake).
    MessageWebSocket ws;
    ws.control().trusted_ca_file(pki()->ca_file());
    auto ec = connect_error(ws, url(peer));
    EXPECT_TRUE(ec);
  }
  {
    // A missing file is refused when set (tls_policy_test.cpp checks the text).
    MessageWebSocket ws;
    EXPECT_THROW(ws.control().client_certificate({"/nonexistent/cert.pem", "/nonexistent/key.pem"}),
                 std::invalid_argument);
  }
}
