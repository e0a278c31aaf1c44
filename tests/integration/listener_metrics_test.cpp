// WebSocketListener::metrics(): answers by status on both paths (upgrade and
// plain HTTP), handshake errors, the pending gauge and open connections,
// checked against the traffic a raw client sent.
#include <duplex/websocket_listener.hpp>

#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "listener_test_util.hpp"

namespace {

using namespace std::chrono_literals;
using duplex::test::RawClient;
using duplex::test::upgrade_request;
using duplex::test::wait_until;

std::uint64_t sum(const duplex::ListenerMetrics& m, std::uint64_t duplex::ListenerLoopMetrics::*f) {
  std::uint64_t n = 0;
  for (const auto& l : m.loops) n += l.*f;
  return n;
}

TEST(ListenerMetrics, CountsWhatWasAnswered) {
  duplex::WebSocketListenerOptions o;
  o.threads = 2;
  o.handshake_timeout = 3s;
  o.max_http_body_size = 10;
  duplex::WebSocketListener listener(o);
  std::mutex mutex;
  std::optional<duplex::MessageWebSocket> kept;
  listener.http_requested(
      [](const duplex::HttpServerRequest& req, duplex::HttpServerResponse& res) {
        if (req.path() == "/missing") res.status(404);
      });
  listener.connection_received([&](duplex::WebSocketListenerConnectionReceivedEventArgs& a) {
    std::lock_guard lock(mutex);
    kept.emplace(a.take_message_websocket());
  });
  listener.listen("127.0.0.1", 0);

  auto before = listener.metrics();
  EXPECT_EQ(before.loops.size(), 2u);
  EXPECT_TRUE(before.websocket_answers.empty());
  EXPECT_TRUE(before.http_answers.empty());
  EXPECT_EQ(before.open_connections, 0u);

  const auto port = listener.local_port();
  auto ask = [&](const std::string& request) {
    RawClient c;
    ASSERT_TRUE(c.connect(port));
    ASSERT_TRUE(c.send(request));
    EXPECT_FALSE(c.read_response().empty());
  };
  RawClient ws;
  ASSERT_TRUE(ws.connect(port));
  ASSERT_TRUE(ws.send(upgrade_request("/ws")));
  ASSERT_NE(ws.read_response().find("101"), std::string::npos);
  ask("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n");  // 400, upgrade path
  ask("GET / HTTP/1.1\r\nHost: h\r\n\r\n");                          // 200
  ask("GET /x HTTP/1.1\r\nHost: h\r\n\r\n");                         // 200
  ask("GET /missing HTTP/1.1\r\nHost: h\r\n\r\n");                   // 404
  ask("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n");   // 413
  {
    RawClient silent;  // leaves without a request: a handshake error
    ASSERT_TRUE(silent.connect(port));
  }

  ASSERT_TRUE(wait_until(
      [&] {
        auto m = listener.metrics();
        return sum(m, &duplex::ListenerLoopMetrics::handshake_errors) == 1 &&
               sum(m, &duplex::ListenerLoopMetrics::handshakes_pending) == 0;
      },
      3s));
  const auto m = listener.metrics();
  EXPECT_EQ(m.websocket_answers, (std::map<int, std::uint64_t>{{101, 1}, {400, 1}}));
  EXPECT_EQ(m.http_answers, (std::map<int, std::uint64_t>{{200, 2}, {404, 1}, {413, 1}}));
  EXPECT_EQ(sum(m, &duplex::ListenerLoopMetrics::websocket_answers), 2u);
  EXPECT_EQ(sum(m, &duplex::ListenerLoopMetrics::http_answers), 4u);
  EXPECT_EQ(m.open_connections, 1u);  // the handed-over socket
  // Round-robin over two loops: both took connections.
  EXPECT_GT(m.loops[0].websocket_answers + m.loops[0].http_answers, 0u);
  EXPECT_GT(m.loops[1].websocket_answers + m.loops[1].http_answers, 0u);

  listener.stop(1s);
  std::lock_guard lock(mutex);
  kept.reset();
}

}  // namespace
