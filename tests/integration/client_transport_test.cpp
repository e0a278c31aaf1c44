// Transport: Happy Eyeballs over two loopback addresses (one hanging), and
// tunnels through an HTTP CONNECT and a SOCKS5 proxy written here.
#include <gtest/gtest.h>

#include <duplex/message_websocket.hpp>

#include "client_test_support.hpp"
#include "transport/connect.hpp"

using namespace std::chrono_literals;
using asio::ip::tcp;
using duplex::MessageWebSocket;

namespace {

std::unique_ptr<duplex::test::PeerProcess>& peer() {
  static std::unique_ptr<duplex::test::PeerProcess> p;
  return p;
}

class ClientTransport : public duplex::test::PeerSuite {
protected:
  static void SetUpTestSuite() {
    start_suite([] {
      peer() = std::make_unique<duplex::test::PeerProcess>("ws_echo_server.py",
                                                           std::vector<std::string>{});
    });
  }
  static void TearDownTestSuite() { peer().reset(); }
  void TearDown() override { duplex::transport::set_resolver_override({}); }
};

tcp::endpoint loopback(std::uint16_t port) {
  return {asio::ip::make_address("127.0.0.1"), port};
}

// Echo round trip on a connected socket.
void expect_echo(MessageWebSocket& ws) {
  duplex::test::Flag got;
  std::string text;
  ws.message_received([&](MessageWebSocket&, const auto& a) {
    text = std::string(a.text());
    got.set();
  });
  ws.send_async("through").get();
  ASSERT_TRUE(got.wait());
  EXPECT_EQ(text, "through");
}

/// A listener whose accept queue is full: further SYNs are dropped, so a
/// connect to it hangs (a "dead" address without leaving loopback).
struct HangingListener {
  asio::io_context ctx;
  tcp::acceptor acceptor{ctx};
  std::vector<tcp::socket> fillers;
  std::uint16_t port = 0;
  HangingListener() {
    acceptor.open(tcp::v4());
    acceptor.bind(loopback(0));
    acceptor.listen(0);
    port = acceptor.local_endpoint().port();
    for (int i = 0; i < 3; ++i) {
      fillers.emplace_back(ctx);
      // The SYN leaves in the initiating call; completion does not matter.
      fillers.back().async_connect(loopback(port), [](std::error_code) {});
    }
  }
  /// True if a fresh connect does not complete within `t`.
  bool hangs(std::chrono::milliseconds t) {
    tcp::socket s(ctx);
    bool done = false;
    s.async_connect(loopback(port), [&](std::error_code) { done = true; });
    ctx.restart();
    ctx.run_for(t);
    const bool hung = !done;
    s.close();
    ctx.restart();
    ctx.poll();
    return hung;
  }
};

/// A one-connection-at-a-time proxy: HTTP CONNECT or SOCKS5, then a relay.
class TestProxy {
public:
  enum class Kind { http, socks5 };
  TestProxy(Kind kind, std::optional<std::pair<std::string, std::string>> credential)
      : kind_(kind), credential_(std::move(credential)) {
    acceptor_.open(tcp::v4());
    acceptor_.bind(loopback(0));
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { serve(); });
  }
  ~TestProxy() {
    stop_ = true;
    std::error_code ec;
    {
      tcp::socket poke(ctx_);
      poke.connect(loopback(port_), ec);
    }
    thread_.join();
    for (auto& s : sockets_) s->close(ec);
    for (auto& t : relays_) t.join();
  }
  std::uint16_t port() const { return port_; }
  std::atomic<int> tunnels{0};
  std::string last_request;

private:
  void serve() {
    while (!stop_) {
      auto client = std::make_shared<tcp::socket>(ctx_);
      std::error_code ec;
      acceptor_.accept(*client, ec);
      if (ec || stop_) return;
      auto upstream = std::make_shared<tcp::socket>(ctx_);
      bool ok = kind_ == Kind::http ? http(*client, *upstream) : socks(*client, *upstream);
      if (!ok) continue;
      ++tunnels;
      sockets_.push_back(client);
      sockets_.push_back(upstream);
      relays_.emplace_back([client, upstream] { relay(*client, *upstream); });
      relays_.emplace_back([client, upstream] { relay(*upstream, *client); });
    }
  }
  static void relay(tcp::socket& from, tcp::socket& to) {
    std::array<char, 65536> buf;
    std::error_code ec;
    for (;;) {
      auto n = from.read_some(asio::buffer(buf), ec);
      if (ec) break;
      asio::write(to, asio::buffer(buf.data(), n), ec);
      if (ec) break;
    }
    to.shutdown(tcp::socket::shutdown_send, ec);
  }
  bool http(tcp::socket& client, tcp::socket& upstream) {
    last_request = duplex::test::read_request(client);
    std::error_code ec;
    if (credential_) {
      auto expected = "Proxy-Authorization: Basic " +
                      duplex::transport::base64(credential_->first + ":" + credential_->second);
      if (last_request.find(expected) == std::string::npos) {
        asio::write(client,
                    asio::buffer(std::string("HTTP/1.1 407 Proxy Authentication Required\r\n"
                                             "Content-Length: 0\r\n\r\n")),
                    ec);
        return false;
      }
    }
    // "CONNECT 127.0.0.1:PORT HTTP/1.1"
    auto colon = last_request.find(':');
    auto port = std::stoi(last_request.substr(colon + 1));
    upstream.connect(loopback(static_cast<std::uint16_t>(port)), ec);
    if (ec) return false;
    asio::write(client, asio::buffer(std::string("HTTP/1.1 200 Connection established\r\n\r\n")),
                ec);
    return !ec;
  }
  bool socks(tcp::socket& client, tcp::socket& upstream) {
    std::error_code ec;
    std::array<std::uint8_t, 512> b{};
    asio::read(client, asio::buffer(b.data(), 2), ec);
    asio::read(client, asio::buffer(b.data() + 2, b[1]), ec);
    if (ec || b[0] != 5) return false;
    const std::uint8_t method = credential_ ? 2 : 0;
    bool offered = false;
    for (int i = 0; i < b[1]; ++i) offered = offered || b[2 + i] == method;
    std::uint8_t reply[2] = {5, offered ? method : std::uint8_t{0xff}};
    asio::write(client, asio::buffer(reply), ec);
    if (!offered) return false;
    if (credential_) {
      asio::read(client, asio::buffer(b.data(), 2), ec);
      std::string user(b[1], '\0');
      asio::read(client, asio::buffer(user), ec);
      asio::read(client, asio::buffer(b.data(), 1), ec);
      std::string pass(b[0], '\0');
      asio::read(client, asio::buffer(pass), ec);
      const bool good = user == credential_->first && pass == credential_->second;
      std::uint8_t status[2] = {1, good ? std::uint8_t{0} : std::uint8_t{1}};
      asio::write(client, asio::buffer(status), ec);
      if (!good) return false;
    }
    asio::read(client, asio::buffer(b.data(), 4), ec);
    if (ec || b[1] != 1) return false;
    std::string host;
    if (b[3] == 1) {
      asio::read(client, asio::buffer(b.data() + 4, 4), ec);
      host = std::to_string(b[4]) + "." + std::to_string(b[5]) + "." + std::to_string(b[6]) + "." +
             std::to_string(b[7]);
    } else if (b[3] == 3) {
      asio::read(client, asio::buffer(b.data() + 4, 1), ec);
      host.resize(b[4]);
      asio::read(client, asio::buffer(host), ec);
    } else {
      return false;
    }
    std::uint8_t pb[2];
    asio::read(client, asio::buffer(pb), ec);
    last_request = host;
    upstream.connect(loopback(static_cast<std::uint16_t>(pb[0] << 8 | pb[1])), ec);
    std::uint8_t ok[10] = {5, 0, 0, 1, 127, 0, 0, 1, 0, 0};
    if (ec) ok[1] = 5;
    asio::write(client, asio::buffer(ok), ec);
    return ok[1] == 0 && !ec;
  }

  Kind kind_;
  std::optional<std::pair<std::string, std::string>> credential_;
  asio::io_context ctx_;
  tcp::acceptor acceptor_{ctx_};
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<std::shared_ptr<tcp::socket>> sockets_;
  std::vector<std::thread> relays_;
};

}  // namespace

TEST_F(ClientTransport, HappyEyeballsSkipsAHangingAddress) {
  HangingListener dead;
  if (!dead.hangs(300ms)) GTEST_SKIP() << "this kernel does not drop SYNs to a full accept queue";
  const auto live = peer()->port();
  duplex::transport::set_resolver_override(
      [&](std::string_view host, std::uint16_t) -> std::optional<duplex::transport::Endpoints> {
        if (host != "two.test") return std::nullopt;
        return duplex::transport::Endpoints{loopback(dead.port), loopback(live)};
      });
  MessageWebSocket ws;
  ws.control().connect_timeout(10s);
  auto start = std::chrono::steady_clock::now();
  ws.connect_async("ws://two.test:" + std::to_string(live) + "/").get();
  auto took = std::chrono::steady_clock::now() - start;
  // RFC 8305: the second address starts ~250 ms after the first, not after a timeout.
  EXPECT_GE(took, 200ms);
  EXPECT_LT(took, 2s);
  EXPECT_EQ(ws.information().remote_address().port, live);
  expect_echo(ws);
  ws.close_async().get();
}

TEST_F(ClientTransport, RefusedAddressesFallThroughAtOnce) {
  std::uint16_t refused;
  {
    duplex::test::RawServer gone(nullptr);
    refused = gone.port();
  }
  const auto live = peer()->port();
  duplex::transport::set_resolver_override(
      [&](std::string_view, std::uint16_t) -> std::optional<duplex::transport::Endpoints> {
        return duplex::transport::Endpoints{loopback(refused), loopback(refused), loopback(live)};
      });
  MessageWebSocket ws;
  auto start = std::chrono::steady_clock::now();
  ws.connect_async("ws://three.test/").get();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 200ms);
  ws.close_async().get();

  duplex::transport::set_resolver_override(
      [&](std::string_view, std::uint16_t) -> std::optional<duplex::transport::Endpoints> {
        return duplex::transport::Endpoints{loopback(refused), loopback(refused)};
      });
  MessageWebSocket ws2;
  auto ec = ws2.connect_async("ws://none.test/").get_result().ec;
  EXPECT_EQ(duplex::get_status(ec), duplex::WebErrorStatus::cannot_connect) << ec.message();
}

TEST_F(ClientTransport, HttpConnectProxyWithCredential) {
  TestProxy proxy(TestProxy::Kind::http, std::pair<std::string, std::string>{"pu", "pp"});
  MessageWebSocket ws;
  ws.control().proxy("http://127.0.0.1:" + std::to_string(proxy.port()));
  ws.control().proxy_credential({"pu", "pp"});
  ws.connect_async("ws://127.0.0.1:" + std::to_string(peer()->port()) + "/").get();
  EXPECT_EQ(proxy.tunnels, 1);
  EXPECT_EQ(proxy.last_request.rfind("CONNECT 127.0.0.1:" + std::to_string(peer()->port()), 0), 0u);
  EXPECT_EQ(ws.information().remote_address().port, proxy.port());
  expect_echo(ws);
  ws.close_async().get();

  MessageWebSocket refused;
  refused.control().proxy("http://127.0.0.1:" + std::to_string(proxy.port()));
  auto ec = refused.connect_async("ws://127.0.0.1:" + std::to_string(peer()->port()) + "/")
                .get_result()
                .ec;
  EXPECT_EQ(duplex::get_status(ec), duplex::WebErrorStatus::proxy_authentication_required);
}

TEST_F(ClientTransport, Socks5ProxyWithAndWithoutCredential) {
  {
    TestProxy proxy(TestProxy::Kind::socks5, std::nullopt);
    MessageWebSocket ws;
    ws.control().proxy("socks5://127.0.0.1:" + std::to_string(proxy.port()));
    ws.connect_async("ws://localhost:" + std::to_string(peer()->port()) + "/").get();
    EXPECT_EQ(proxy.last_request, "localhost");  // the name is resolved by the proxy
    expect_echo(ws);
    ws.close_async().get();
  }
  {
    TestProxy proxy(TestProxy::Kind::socks5, std::pair<std::string, std::string>{"su", "sp"});
    MessageWebSocket ws;
    ws.control().proxy("socks5://127.0.0.1:" + std::to_string(proxy.port()));
    ws.control().proxy_credential({"su", "sp"});
    ws.connect_async("ws://127.0.0.1:" + std::to_string(peer()->port()) + "/").get();
    EXPECT_EQ(proxy.last_request, "127.0.0.1");
    expect_echo(ws);
    ws.close_async().get();

    MessageWebSocket bad;
    bad.control().proxy("socks5://127.0.0.1:" + std::to_string(proxy.port()));
    bad.control().proxy_credential({"su", "wrong"});
    auto ec =
        bad.connect_async("ws://127.0.0.1:" + std::to_string(peer()->port()) + "/").get_result().ec;
    EXPECT_EQ(ec, duplex::error::proxy_failed);
  }
}

TEST(ClientUri, ParsesWebSocketUris) {
  using duplex::transport::parse_websocket_uri;
  auto a = parse_websocket_uri("WSS://Example.COM/chat?room=1");
  EXPECT_TRUE(a.secure);
  EXPECT_EQ(a.host, "example.com");
  EXPECT_EQ(a.port, 443);
  EXPECT_EQ(a.target, "/chat?room=1");
  EXPECT_EQ(a.host_header, "example.com");
  auto b = parse_websocket_uri("ws://[::1]:9000");
  EXPECT_FALSE(b.secure);
  EXPECT_EQ(b.host, "::1");
  EXPECT_EQ(b.port, 9000);
  EXPECT_EQ(b.target, "/");
  EXPECT_EQ(b.host_header, "[::1]:9000");
  EXPECT_EQ(parse_websocket_uri("ws://h?q").target, "/?q");
  for (const char* bad : {"http://h/", "ws:/h", "ws://", "ws://user@h/", "ws://h/#f", "ws://h:0/",
                          "ws://h:65536/", "ws://[::1/", "ws://h h/", "ws://h:/"}) {
    EXPECT_THROW(parse_websocket_uri(bad), std::invalid_argument) << bad;
  }
  auto p = duplex::transport::parse_proxy_uri("socks5://127.0.0.1");
  EXPECT_EQ(p.kind, duplex::transport::ProxyUri::Kind::socks5);
  EXPECT_EQ(p.port, 1080);
  EXPECT_EQ(duplex::transport::parse_proxy_uri("http://proxy:3128/").port, 3128);
  EXPECT_THROW(duplex::transport::parse_proxy_uri("http://proxy:3128/path"), std::invalid_argument);
}

TEST(ClientUri, InterleavesAddressFamilies) {
  auto v4 = [](const char* a) { return tcp::endpoint(asio::ip::make_address(a), 1); };
  auto out = duplex::transport::interleave_families(
      {v4("::1"), v4("::2"), v4("127.0.0.1"), v4("127.0.0.2"), v4("::3")});
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(out[0].address().to_string(), "::1");
  EXPECT_EQ(out[1].address().to_string(), "127.0.0.1");
  EXPECT_EQ(out[2].address().to_string(), "::2");
  EXPECT_EQ(out[3].address().to_string(), "127.0.0.2");
  EXPECT_EQ(out[4].address().to_string(), "::3");
}
