// WebSocketListener up to the 101 answer, driven by raw TCP and TLS clients:
// accepted and refused handshakes, hooks, plain HTTP requests, protection limits.
#include <duplex/websocket_listener.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "listener_test_util.hpp"

namespace {

using namespace std::chrono_literals;
using duplex::WebSocketListener;
using duplex::WebSocketListenerOptions;
using duplex::test::RawClient;
using duplex::test::upgrade_request;

WebSocketListenerOptions small_options() {
  WebSocketListenerOptions o;
  o.threads = 2;
  o.handshake_timeout = 3s;
  return o;
}

// What the connection_received handler saw, handed to the test thread.
struct Received {
  std::promise<duplex::WebSocketRequest> request;
  std::promise<std::string> protocol;
};

std::string status_line(const std::string& response) {
  return response.substr(0, response.find("\r\n"));
}

TEST(ListenerHandshake, AcceptsValidRequestAndReportsIt) {
  WebSocketListener listener(small_options());
  Received got;
  listener.connection_received([&](duplex::WebSocketListenerConnectionReceivedEventArgs& args) {
    EXPECT_TRUE(args.available());
    got.request.set_value(args.request());
    got.protocol.set_value(args.protocol());
  });
  const auto bound = listener.listen("127.0.0.1", 0);
  ASSERT_NE(bound.port, 0);
  EXPECT_EQ(listener.local_port(), bound.port);
  EXPECT_EQ(bound.host, "127.0.0.1");
  ASSERT_EQ(listener.local_endpoints().size(), 1u);
  EXPECT_EQ(listener.thread_count(), 2u);

  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  ASSERT_TRUE(c.send(upgrade_request("/chat/room?id=7&x=y", "X-Custom: hello\r\n")));
  const auto response = c.read_response();
  EXPECT_EQ(status_line(response), "HTTP/1.1 101 Switching Protocols");
  EXPECT_NE(response.find("Sec-WebSocket-Accept: " + std::string(duplex::test::sample_accept)),
            std::string::npos);
  EXPECT_EQ(response.find("Sec-WebSocket-Protocol"), std::string::npos);

  auto fut = got.request.get_future();
  ASSERT_EQ(fut.wait_for(3s), std::future_status::ready);
  const auto req = fut.get();
  EXPECT_EQ(req.method, "GET");
  EXPECT_EQ(req.target, "/chat/room?id=7&x=y");
  EXPECT_EQ(req.path(), "/chat/room");
  EXPECT_EQ(req.query(), "id=7&x=y");
  EXPECT_EQ(req.header("x-custom").value_or(""), "hello");
  EXPECT_EQ(req.host, "127.0.0.1");
  EXPECT_EQ(req.remote_address.host, "127.0.0.1");
  EXPECT_NE(req.remote_address.port, 0);
  EXPECT_EQ(req.local_address.port, listener.local_port());
  EXPECT_FALSE(req.secure);
  EXPECT_EQ(got.protocol.get_future().get(), "");
  listener.stop(1s);
}

TEST(ListenerHandshake, UntakenConnectionIsClosedAndReleased) {
  WebSocketListener listener(small_options());
  listener.listen("127.0.0.1", 0);
  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  ASSERT_TRUE(c.send(upgrade_request()));
  EXPECT_EQ(status_line(c.read_response()), "HTTP/1.1 101 Switching Protocols");
  EXPECT_TRUE(c.wait_closed(3s));
  EXPECT_TRUE(duplex::test::wait_until([&] { return listener.connection_count() == 0; }, 3s));
}

TEST(ListenerHandshake, SelectsClientsFirstSupportedProtocol) {
  auto o = small_options();
  o.supported_protocols = {"b", "a"};
  WebSocketListener listener(o);
  listener.listen("127.0.0.1", 0);
  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  ASSERT_TRUE(c.send(
      upgrade_request("/", "Sec-WebSocket-Protocol: x, a\r\nSec-WebSocket-Protocol: b\r\n")));
  const auto response = c.read_response();
  EXPECT_EQ(status_line(response), "HTTP/1.1 101 Switching Protocols");
  EXPECT_NE(response.find("Sec-WebSocket-Protocol: a\r\n"), std::string::npos);

  RawClient none;
  ASSERT_TRUE(none.connect(listener.local_port()));
  ASSERT_TRUE(none.send(upgrade_request("/", "Sec-WebSocket-Protocol: x\r\n")));
  const auto r2 = none.read_response();
  EXPECT_EQ(status_line(r2), "HTTP/1.1 101 Switching Protocols");
  EXPECT_EQ(r2.find("Sec-WebSocket-Protocol"), std::string::npos);
}

TEST(ListenerHandshake, HookSelectsProtocolAndAddsHeaders) {
  WebSocketListener listener(small_options());
  std::atomic<bool> bad_protocol_refused{false};
  listener.handshake_requested([&](duplex::WebSocketHandshakeContext& ctx) {
    try {
      ctx.select_protocol("never-offered");
    } catch (const std::invalid_argument& e) {
      bad_protocol_refused = std::string(e.what()).find("select_protocol") != std::string::npos;
    }
    EXPECT_THROW(ctx.add_response_header("Sec-WebSocket-Accept", "x"), std::invalid_argument);
    EXPECT_THROW(ctx.add_response_header("X-Bad", "a\r\nb"), std::invalid_argument);
    ctx.select_protocol(ctx.request().protocols.back());
    ctx.add_response_header("X-Server", "duplex");
  });
  listener.listen("127.0.0.1", 0);
  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  ASSERT_TRUE(c.send(upgrade_request("/", "Sec-WebSocket-Protocol: one, two\r\n")));
  const auto response = c.read_response();
  EXPECT_EQ(status_line(response), "HTTP/1.1 101 Switching Protocols");
  EXPECT_NE(response.find("Sec-WebSocket-Protocol: two\r\n"), std::string::npos);
  EXPECT_NE(response.find("X-Server: duplex\r\n"), std::string::npos);
  EXPECT_TRUE(bad_protocol_refused);
}

TEST(ListenerHandshake, HookRejectsWithStatusBodyAndHeaders) {
  WebSocketListener listener(small_options());
  listener.handshake_requested([](duplex::WebSocketHandshakeContext& ctx) {
    if (ctx.request().path() != "/ok") ctx.reject(404, "no such room\n", {{"X-Why", "path"}});
  });
  listener.listen("127.0.0.1", 0);
  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  ASSERT_TRUE(c.send(upgrade_request("/missing")));
  const auto response = c.read_response();
  EXPECT_EQ(status_line(response), "HTTP/1.1 404 Not Found");
  EXPECT_NE(response.find("X-Why: path\r\n"), std::string::npos);
  EXPECT_NE(response.find("Connection: close\r\n"), std::string::npos);
  EXPECT_EQ(response.substr(response.size() - 13), "no such room\n");
  EXPECT_TRUE(c.wait_closed(3s));

  RawClient ok;
  ASSERT_TRUE(ok.connect(listener.local_port()));
  ASSERT_TRUE(ok.send(upgrade_request("/ok")));
  EXPECT_EQ(status_line(ok.read_response()), "HTTP/1.1 101 Switching Protocols");
}

TEST(ListenerHandshake, HookThatThrowsRefusesWith500) {
  WebSocketListener listener(small_options());
  listener.handshake_requested(
      [](duplex::WebSocketHandshakeContext&) { throw std::runtime_error("database down"); });
  listener.listen("127.0.0.1", 0);
  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  ASSERT_TRUE(c.send(upgrade_request()));
  EXPECT_EQ(status_line(c.read_response()), "HTTP/1.1 500 Internal Server Error");
}

TEST(ListenerHandshake, RejectValidatesItsArguments) {
  duplex::WebSocketRequest req;
  duplex::WebSocketHandshakeContext ctx(req);
  EXPECT_THROW(ctx.reject(101), std::invalid_argument);
  EXPECT_THROW(ctx.reject(600), std::invalid_argument);
  EXPECT_THROW(ctx.reject(400, "", {{"Content-Length", "3"}}), std::invalid_argument);
  EXPECT_THROW(ctx.reject(400, "", {{"Bad Name", "x"}}), std::invalid_argument);
  EXPECT_EQ(ctx.rejected_status(), 0);
  ctx.reject(401, "who are you", {{"WWW-Authenticate", "Basic"}});
  EXPECT_EQ(ctx.rejected_status(), 401);
}

TEST(ListenerHandshake, OriginNotAllowedIsRefusedWith403) {
  auto o = small_options();
  o.allowed_origins = {"https://good.example"};
  WebSocketListener listener(o);
  std::atomic<int> hooks{0};
  listener.handshake_requested([&](duplex::WebSocketHandshakeContext&) { ++hooks; });
  listener.listen("127.0.0.1", 0);

  RawClient evil;
  ASSERT_TRUE(evil.connect(listener.local_port()));
  ASSERT_TRUE(evil.send(upgrade_request("/", "Origin: https://evil.example\r\n")));
  EXPECT_EQ(status_line(evil.read_response()), "HTTP/1.1 403 Forbidden");

  RawClient good;
  ASSERT_TRUE(good.connect(listener.local_port()));
  ASSERT_TRUE(good.send(upgrade_request("/", "Origin: HTTPS://GOOD.example\r\n")));
  EXPECT_EQ(status_line(good.read_response()), "HTTP/1.1 101 Switching Protocols");

  RawClient no_origin;
  ASSERT_TRUE(no_origin.connect(listener.local_port()));
  ASSERT_TRUE(no_origin.send(upgrade_request("/")));
  EXPECT_EQ(status_line(no_origin.read_response()), "HTTP/1.1 101 Switching Protocols");
  // The hook never saw the refused request.
  EXPECT_EQ(hooks.load(), 2);
}

struct PlainCase {
  const char* request;
  const char* status;
  const char* header;  // a header the answer must hold, or nullptr
};

TEST(ListenerHandshake, NonWebSocketRequestsGetHttpAnswers) {
  const PlainCase cases[] = {
      {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 426 Upgrade Required", "Upgrade: websocket"},
      {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 426 Upgrade Required",
       "Sec-WebSocket-Version: 13"},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405 Method Not Allowed",
       "Allow: GET"},
      {"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
       "HTTP/1.1 426 Upgrade Required", "Sec-WebSocket-Version: 13"},
      {"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Version: 13\r\n\r\n",
       "HTTP/1.1 400 Bad Request", nullptr},
      {"HELLO THERE\r\n\r\n", "HTTP/1.1 400 Bad Request", nullptr},
      {"GET / HTTP/1.0\r\nHost: a\r\n\r\n", "HTTP/1.1 ", nullptr},
  };
  WebSocketListener listener(small_options());
  listener.listen("127.0.0.1", 0);
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.request);
    RawClient c;
    ASSERT_TRUE(c.connect(listener.local_port()));
    ASSERT_TRUE(c.send(tc.request));
    const auto response = c.read_response();
    EXPECT_EQ(status_line(response).substr(0, std::string_view(tc.status).size()), tc.status);
    EXPECT_EQ(status_line(response).find("101"), std::string::npos);
    if (tc.header) {
      EXPECT_NE(response.find(std::string(tc.header) + "\r\n"), std::string::npos);
    }
    EXPECT_NE(response.find("Content-Length: "), std::string::npos);
    // A clean end, not a reset before the answer.
    EXPECT_TRUE(c.wait_closed(3s));
  }
  EXPECT_TRUE(duplex::test::wait_until([&] { return listener.connection_count() == 0; }, 3s));
}

TEST(ListenerHandshake, SlowlorisIsCutOffByTheHandshakeTimeout) {
  auto o = small_options();
  o.handshake_timeout = 300ms;
  WebSocketListener listener(o);
  listener.listen("127.0.0.1", 0);
  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  const auto start = duplex::test::Clock::now();
  const std::string request = upgrade_request();
  bool closed = false;
  std::size_t sent = 0;
  // One byte every 20 ms: the whole request would take over 3 s.
  for (; sent < request.size(); ++sent) {
    if (!c.send(std::string_view(request).substr(sent, 1))) {
      closed = true;
      break;
    }
    c.read_some(20ms, &closed);
    if (closed) break;
  }
  const auto elapsed = duplex::test::Clock::now() - start;
  EXPECT_TRUE(closed);
  EXPECT_LT(sent, request.size());
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 1500ms);
  EXPECT_TRUE(duplex::test::wait_until([&] { return listener.connection_count() == 0; }, 3s));
}

TEST(ListenerHandshake, SilentClientIsCutOffByTheHandshakeTimeout) {
  auto o = small_options();
  o.handshake_timeout = 200ms;
  WebSocketListener listener(o);
  listener.listen("127.0.0.1", 0);
  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  const auto start = duplex::test::Clock::now();
  EXPECT_TRUE(c.wait_closed(3s));
  EXPECT_LT(duplex::test::Clock::now() - start, 1500ms);
}

TEST(ListenerHandshake, HeaderTooLargeIsAnswered431) {
  auto o = small_options();
  o.max_header_size = 1024;
  WebSocketListener listener(o);
  listener.listen("127.0.0.1", 0);
  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  const std::string big = "X-Filler: " + std::string(4000, 'a') + "\r\n";
  c.send(upgrade_request("/", big));
  const auto response = c.read_response();
  EXPECT_EQ(status_line(response), "HTTP/1.1 431 Request Header Fields Too Large");
  EXPECT_TRUE(c.wait_closed(3s));

  // Just under the limit passes.
  RawClient fits;
  ASSERT_TRUE(fits.connect(listener.local_port()));
  const auto base = upgrade_request("/", "X-Filler: \r\n");
  fits.send(upgrade_request("/", "X-Filler: " + std::string(1024 - base.size() - 1, 'a') + "\r\n"));
  EXPECT_EQ(status_line(fits.read_response()), "HTTP/1.1 101 Switching Protocols");
}

TEST(ListenerHandshake, OverMaxConnectionsIsAnswered503) {
  auto o = small_options();
  o.max_connections = 2;
  WebSocketListener listener(o);
  listener.listen("127.0.0.1", 0);
  // Two connections still in their handshake hold both slots.
  RawClient a, b;
  ASSERT_TRUE(a.connect(listener.local_port()));
  ASSERT_TRUE(b.connect(listener.local_port()));
  ASSERT_TRUE(duplex::test::wait_until([&] { return listener.connection_count() == 2; }, 3s));

  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  ASSERT_TRUE(c.send(upgrade_request()));
  const auto response = c.read_response();
  EXPECT_EQ(status_line(response), "HTTP/1.1 503 Service Unavailable");
  EXPECT_NE(response.find("Retry-After: 1\r\n"), std::string::npos);
  EXPECT_TRUE(c.wait_closed(3s));
  EXPECT_EQ(listener.connection_count(), 2u);

  // A freed slot is usable again.
  a.close();
  ASSERT_TRUE(duplex::test::wait_until([&] { return listener.connection_count() == 1; }, 3s));
  RawClient d;
  ASSERT_TRUE(d.connect(listener.local_port()));
  ASSERT_TRUE(d.send(upgrade_request()));
  EXPECT_EQ(status_line(d.read_response()), "HTTP/1.1 101 Switching Protocols");
}

TEST(ListenerHandshake, ListensOnIpv6Loopback) {
  WebSocketListener listener(small_options());
  duplex::HostEndpoint bound;
  try {
    bound = listener.listen("::1", 0);
  } catch (const std::system_error&) {
    GTEST_SKIP() << "no IPv6 loopback on this machine";
  }
  EXPECT_EQ(bound.host, "::1");
  const auto v4 = listener.listen("127.0.0.1", 0);
  EXPECT_EQ(listener.local_endpoints().size(), 2u);
  EXPECT_EQ(listener.local_port(), bound.port);
  std::promise<std::string> remote;
  RawClient c6;
  ASSERT_TRUE(c6.connect(bound.port, "::1"));
  ASSERT_TRUE(c6.send(upgrade_request()));
  EXPECT_EQ(status_line(c6.read_response()), "HTTP/1.1 101 Switching Protocols");
  RawClient c4;
  ASSERT_TRUE(c4.connect(v4.port));
  ASSERT_TRUE(c4.send(upgrade_request()));
  EXPECT_EQ(status_line(c4.read_response()), "HTTP/1.1 101 Switching Protocols");
}

// The request's endpoints and the accepted socket's information agree with
// the client's own view, over IPv4 and IPv6 (the listener reads each once and
// hands them to the session raw).
TEST(ListenerHandshake, RequestAndSocketReportTheClientsEndpoints) {
  struct Seen {
    duplex::HostEndpoint request_remote, request_local, socket_remote, socket_local;
  };
  const auto check = [](const char* host) {
    WebSocketListener listener(small_options());
    std::promise<Seen> seen;
    listener.connection_received([&](duplex::WebSocketListenerConnectionReceivedEventArgs& args) {
      auto ws = args.take_message_websocket();
      const auto info = ws.information();
      seen.set_value({args.request().remote_address, args.request().local_address,
                      info.remote_address(), info.local_address()});
    });
    try {
      listener.listen(host, 0);
    } catch (const std::system_error&) {
      return false;  // no such loopback here
    }
    RawClient c;
    EXPECT_TRUE(c.connect(listener.local_port(), host));
    EXPECT_TRUE(c.send(upgrade_request()));
    EXPECT_EQ(status_line(c.read_response()), "HTTP/1.1 101 Switching Protocols");
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    EXPECT_EQ(::getsockname(c.fd(), reinterpret_cast<sockaddr*>(&ss), &len), 0);
    const auto client_port =
        ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6&>(ss).sin6_port
                                       : reinterpret_cast<const sockaddr_in&>(ss).sin_port);
    auto fut = seen.get_future();
    EXPECT_EQ(fut.wait_for(3s), std::future_status::ready);
    const auto s = fut.get();
    EXPECT_EQ(s.request_remote.host, host);
    EXPECT_EQ(s.request_remote.port, client_port);
    EXPECT_EQ(s.request_local.host, host);
    EXPECT_EQ(s.request_local.port, listener.local_port());
    EXPECT_EQ(s.socket_remote.host, host);
    EXPECT_EQ(s.socket_remote.port, client_port);
    EXPECT_EQ(s.socket_local.host, host);
    EXPECT_EQ(s.socket_local.port, listener.local_port());
    listener.stop(1s);
    return true;
  };
  EXPECT_TRUE(check("127.0.0.1"));
  if (!check("::1")) GTEST_SKIP() << "no IPv6 loopback on this machine (IPv4 checked)";
}

TEST(ListenerHandshake, OptionsAreChecked) {
  auto expect_invalid = [](WebSocketListenerOptions o, const char* field) {
    try {
      WebSocketListener l(o);
      ADD_FAILURE() << "no exception for " << field;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  WebSocketListenerOptions o;
  o.handshake_timeout = 0ms;
  expect_invalid(o, "handshake_timeout");
  o = {};
  o.max_header_size = 10;
  expect_invalid(o, "max_header_size");
  o = {};
  o.max_connections = 0;
  expect_invalid(o, "max_connections");
  o = {};
  o.supported_protocols = {"a b"};
  expect_invalid(o, "supported_protocols");
  o = {};
  o.supported_protocols = {"a", "a"};
  expect_invalid(o, "supported_protocols");
  o = {};
  o.allowed_origins = {""};
  expect_invalid(o, "allowed_origins");
  o = {};
  o.tls = duplex::ListenerTlsOptions{};
  expect_invalid(o, "tls.certificate_chain_file");

  WebSocketListener l(small_options());
  EXPECT_THROW(l.listen("localhost", 0), std::invalid_argument);
  l.listen("127.0.0.1", 0);
  EXPECT_THROW(l.connection_received(nullptr), std::logic_error);
  l.stop(0ms);
  EXPECT_THROW(l.listen("127.0.0.1", 0), std::logic_error);
  EXPECT_EQ(l.stop(0ms), 0u);
}

TEST(ListenerHandshake, StopClosesHandshakingConnectionsAndPort) {
  WebSocketListener listener(small_options());
  listener.listen("127.0.0.1", 0);
  const auto port = listener.local_port();
  RawClient c;
  ASSERT_TRUE(c.connect(port));
  ASSERT_TRUE(duplex::test::wait_until([&] { return listener.connection_count() == 1; }, 3s));
  const auto start = duplex::test::Clock::now();
  listener.stop(1s);
  EXPECT_LT(duplex::test::Clock::now() - start, 1500ms);
  EXPECT_TRUE(c.wait_closed(2s));
  RawClient after;
  EXPECT_FALSE(after.connect(port));
}

}  // namespace
