// WebSocketListener over TLS (wss://): certificates made at test time with the
// openssl CLI; a raw OpenSSL client; optional and required client certificates.
#include <duplex/websocket_listener.hpp>

#include <gtest/gtest.h>

#include <future>
#include <string>

#include "listener_test_util.hpp"

namespace {

using namespace std::chrono_literals;
using duplex::WebSocketListener;
using duplex::WebSocketListenerOptions;
using duplex::test::RawClient;
using duplex::test::TestCertificates;
using duplex::test::upgrade_request;

const TestCertificates& certificates() {
  static const TestCertificates certs;
  return certs;
}

WebSocketListenerOptions tls_options(bool client_ca, bool require) {
  const auto& certs = certificates();
  WebSocketListenerOptions o;
  o.threads = 1;
  o.handshake_timeout = 3s;
  duplex::ListenerTlsOptions tls;
  tls.certificate_chain_file = certs.file("server.pem");
  tls.private_key_file = certs.file("server.key");
  if (client_ca) tls.client_ca_file = certs.file("ca.pem");
  tls.require_client_certificate = require;
  o.tls = tls;
  return o;
}

std::string status_line(const std::string& response) {
  return response.substr(0, response.find("\r\n"));
}

struct SslCtx {
  explicit SslCtx(SSL_CTX* c) : ctx(c) {}
  ~SslCtx() { SSL_CTX_free(ctx); }
  SSL_CTX* ctx;
};

TEST(ListenerTls, HandshakeOverTls) {
  ASSERT_TRUE(certificates().ok()) << "openssl CLI failed";
  WebSocketListener listener(tls_options(false, false));
  std::promise<duplex::WebSocketRequest> got;
  listener.connection_received([&](duplex::WebSocketListenerConnectionReceivedEventArgs& args) {
    got.set_value(args.request());
  });
  listener.listen("127.0.0.1", 0);

  SslCtx ctx(certificates().client_context(false));
  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  ASSERT_TRUE(c.start_tls(ctx.ctx));
  ASSERT_TRUE(c.send(upgrade_request("/secure")));
  const auto response = c.read_response();
  EXPECT_EQ(status_line(response), "HTTP/1.1 101 Switching Protocols");
  auto fut = got.get_future();
  ASSERT_EQ(fut.wait_for(3s), std::future_status::ready);
  const auto req = fut.get();
  EXPECT_TRUE(req.secure);
  EXPECT_EQ(req.path(), "/secure");
  EXPECT_EQ(req.client_certificate_subject, "");
}

TEST(ListenerTls, PlainHttpRequestOverTlsGetsAnAnswer) {
  ASSERT_TRUE(certificates().ok());
  WebSocketListener listener(tls_options(false, false));
  listener.listen("127.0.0.1", 0);
  SslCtx ctx(certificates().client_context(false));
  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  ASSERT_TRUE(c.start_tls(ctx.ctx));
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  EXPECT_EQ(status_line(c.read_response()), "HTTP/1.1 426 Upgrade Required");
  EXPECT_TRUE(c.wait_closed(3s));
}

TEST(ListenerTls, PlainTcpClientOnTlsPortIsClosed) {
  ASSERT_TRUE(certificates().ok());
  WebSocketListener listener(tls_options(false, false));
  listener.listen("127.0.0.1", 0);
  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  ASSERT_TRUE(c.send(upgrade_request()));
  EXPECT_TRUE(c.wait_closed(3s));
  EXPECT_TRUE(duplex::test::wait_until([&] { return listener.connection_count() == 0; }, 3s));
}

TEST(ListenerTls, RequiredClientCertificate) {
  ASSERT_TRUE(certificates().ok());
  WebSocketListener listener(tls_options(true, true));
  std::promise<std::string> subject;
  listener.connection_received([&](duplex::WebSocketListenerConnectionReceivedEventArgs& args) {
    subject.set_value(args.request().client_certificate_subject);
  });
  listener.listen("127.0.0.1", 0);

  // Without a certificate the TLS handshake fails (TLS 1.3 reports it on the
  // first read, after the client's handshake returned).
  {
    SslCtx ctx(certificates().client_context(false));
    RawClient c;
    ASSERT_TRUE(c.connect(listener.local_port()));
    const bool tls_ok = c.start_tls(ctx.ctx);
    if (tls_ok) {
      c.send(upgrade_request());
      const auto response = c.read_response(2s);
      EXPECT_EQ(response.find("101"), std::string::npos) << response;
    }
  }
  // With one it is accepted and its subject reported.
  SslCtx ctx(certificates().client_context(true));
  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  ASSERT_TRUE(c.start_tls(ctx.ctx));
  ASSERT_TRUE(c.send(upgrade_request()));
  EXPECT_EQ(status_line(c.read_response()), "HTTP/1.1 101 Switching Protocols");
  auto fut = subject.get_future();
  ASSERT_EQ(fut.wait_for(3s), std::future_status::ready);
  EXPECT_EQ(fut.get(), "CN=client");
}

TEST(ListenerTls, OptionalClientCertificate) {
  ASSERT_TRUE(certificates().ok());
  WebSocketListener listener(tls_options(true, false));
  listener.listen("127.0.0.1", 0);
  SslCtx ctx(certificates().client_context(false));
  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  ASSERT_TRUE(c.start_tls(ctx.ctx));
  ASSERT_TRUE(c.send(upgrade_request()));
  EXPECT_EQ(status_line(c.read_response()), "HTTP/1.1 101 Switching Protocols");
}

TEST(ListenerTls, BadCertificateFilesAreReported) {
  ASSERT_TRUE(certificates().ok());
  auto o = tls_options(false, false);
  o.tls->private_key_file = certificates().file("client.key");  // not the server's key
  try {
    WebSocketListener l(o);
    ADD_FAILURE() << "a key that does not match was accepted";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("tls.private_key_file"), std::string::npos) << e.what();
  }
  o = tls_options(false, false);
  o.tls->certificate_chain_file = certificates().file("missing.pem");
  EXPECT_THROW(WebSocketListener l(o), std::system_error);
  o = tls_options(false, false);
  o.tls->client_ca_file.clear();
  o.tls->require_client_certificate = true;
  EXPECT_THROW(WebSocketListener l(o), std::invalid_argument);
}

}  // namespace
