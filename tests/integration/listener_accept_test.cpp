// Accepting on the loop's poller: accept errors (retried after a delay, not
// spun), answers larger than the socket's buffers (the handshake waits for
// room on the poller, then hands the descriptor to the session), stop() while
// a handshake waits for its request, and the poller's removal of a client
// whose event is still in the batch being dispatched.
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <asio/io_context.hpp>

#include <duplex/http_server.hpp>
#include <duplex/message_websocket.hpp>
#include <duplex/websocket_listener.hpp>

#include "detail/event_loop.hpp"
#include "listener/listener_impl.hpp"
#include "listener_test_util.hpp"

namespace duplex::test {
namespace {

WebSocketListenerOptions one_loop() {
  WebSocketListenerOptions o;
  o.threads = 1;
  o.handshake_timeout = 5s;
  return o;
}

// Reads up to the end of an HTTP header block (kept, with what came after
// it, in `out`); false on EOF, error or timeout. Looks for the end only in
// what each read added (an answer of megabytes is not scanned again and again).
bool read_head(RawClient& c, std::string& out, std::size_t& head_end) {
  const auto end = Clock::now() + 10s;
  while (Clock::now() < end) {
    bool closed = false;
    const auto chunk = c.read_some(1s, &closed);
    if (closed) return false;
    const std::size_t from = out.size() < 3 ? 0 : out.size() - 3;
    out += chunk;
    const auto at = out.find("\r\n\r\n", from);
    if (at != std::string::npos) {
      head_end = at + 4;
      return true;
    }
  }
  return false;
}

// Reads until `out` holds `size` bytes; false on EOF, error or timeout.
bool read_until_size(RawClient& c, std::string& out, std::size_t size) {
  const auto end = Clock::now() + 10s;
  while (out.size() < size && Clock::now() < end) {
    bool closed = false;
    const auto chunk = c.read_some(1s, &closed);
    if (closed) return false;
    out += chunk;
  }
  return out.size() >= size;
}

// The accept seam: the first `count` calls fail with `err` (each recorded
// with its time), the rest accept.
struct FailingAccepts {
  std::mutex m;
  std::vector<Clock::time_point> failures;
  int calls = 0;
  FailingAccepts(std::size_t count, int err) {
    detail::listener_test_hooks().accept = [this, count, err](int fd, sockaddr* addr,
                                                              socklen_t* len, int flags) {
      {
        std::lock_guard lock(m);
        ++calls;
        if (failures.size() < count) {
          failures.push_back(Clock::now());
          errno = err;
          return -1;
        }
      }
      return ::accept4(fd, addr, len, flags);
    };
  }
  ~FailingAccepts() { detail::listener_test_hooks() = {}; }
};

TEST(ListenerAccept, AnAcceptErrorIsRetriedAfterADelayNotSpun) {
  constexpr std::size_t failing = 3;
  FailingAccepts hook(failing, EMFILE);
  auto& m = hook.m;
  auto& failures = hook.failures;
  WebSocketListener listener(one_loop());
  listener.listen("127.0.0.1", 0);
  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  ASSERT_TRUE(c.send(upgrade_request()));
  // Served once the errors are over: the connection stayed queued.
  const auto response = c.read_response(5s);
  EXPECT_EQ(response.substr(0, 12), "HTTP/1.1 101");
  std::lock_guard lock(m);
  ASSERT_EQ(failures.size(), failing);
  // Each failure waits the retry delay (50 ms) before the next accept: a
  // loop accepting again at once would have failed three times within
  // microseconds.
  for (std::size_t i = 1; i < failures.size(); ++i)
    EXPECT_GE(failures[i] - failures[i - 1], 45ms) << "accept " << i;
}

TEST(ListenerAccept, AnAbortedConnectionIsSkippedAndTheNextServed) {
  FailingAccepts hook(1, ECONNABORTED);
  WebSocketListener listener(one_loop());
  listener.listen("127.0.0.1", 0);
  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  ASSERT_TRUE(c.send(upgrade_request()));
  EXPECT_EQ(c.read_response(5s).substr(0, 12), "HTTP/1.1 101");
  std::lock_guard lock(hook.m);
  EXPECT_GE(hook.calls, 2);
}

TEST(ListenerAccept, AnUpgradeAnswerLargerThanTheSocketBufferLeavesThenTheSessionRuns) {
  // 8 MiB of header: more than the loopback socket's buffers hold, so the
  // 101 leaves in pieces as the client reads (the handshake waits for room
  // on the poller), and the session then takes the descriptor over.
  const std::string big(std::size_t{8} << 20, 'a');
  WebSocketListener listener(one_loop());
  listener.handshake_requested(
      [&](WebSocketHandshakeContext& ctx) { ctx.add_response_header("X-Big", big); });
  std::mutex m;
  std::vector<MessageWebSocket> kept;
  listener.connection_received([&](WebSocketListenerConnectionReceivedEventArgs& a) {
    auto ws = a.take_message_websocket();
    ws.send_async("after");
    std::lock_guard lock(m);
    kept.push_back(std::move(ws));
  });
  listener.listen("127.0.0.1", 0);
  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  ASSERT_TRUE(c.send(upgrade_request()));
  std::string got;
  std::size_t head = 0;
  ASSERT_TRUE(read_head(c, got, head));
  EXPECT_EQ(got.substr(0, 12), "HTTP/1.1 101");
  EXPECT_NE(got.find("X-Big: " + big.substr(0, 100)), std::string::npos);
  EXPECT_GT(head, big.size());
  // The session's first message: an unmasked frame "after" (binary: the
  // socket's default message type).
  ASSERT_TRUE(read_until_size(c, got, head + 7));
  EXPECT_EQ(got.substr(head), std::string("\x82\x05"
                                          "after"));
  listener.stop(1s);
}

TEST(ListenerAccept, AnHttpAnswerLargerThanTheSocketBufferLeavesWhole) {
  const std::string body(std::size_t{8} << 20, 'b');
  WebSocketListener listener(one_loop());
  listener.http_requested(
      [&](const HttpServerRequest&, HttpServerResponse& res) { res.body(body); });
  listener.listen("127.0.0.1", 0);
  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  ASSERT_TRUE(c.send("GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
  std::string got;
  std::size_t head = 0;
  ASSERT_TRUE(read_head(c, got, head));
  EXPECT_EQ(got.substr(0, 15), "HTTP/1.1 200 OK");
  ASSERT_TRUE(read_until_size(c, got, head + body.size()));
  EXPECT_EQ(got.size(), head + body.size());
  EXPECT_EQ(got.substr(head), body);
  EXPECT_TRUE(c.wait_closed(3s));
}

TEST(ListenerAccept, StopWhileAHandshakeWaitsForTheRestOfItsRequestClosesIt) {
  WebSocketListener listener(one_loop());
  listener.listen("127.0.0.1", 0);
  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  const auto request = upgrade_request();
  // Half a request: the handshake reads it (or has not yet) and waits on the
  // poller for more; stop() ends it either way (at once, or at its timeout).
  ASSERT_TRUE(c.send(std::string_view(request).substr(0, request.size() / 2)));
  ASSERT_TRUE(wait_until([&] { return listener.connection_count() == 1; }, 3s));
  const auto start = Clock::now();
  listener.stop(200ms);
  EXPECT_LT(Clock::now() - start, 2s);
  EXPECT_TRUE(c.wait_closed(3s));
  EXPECT_EQ(listener.connection_count(), 0u);
}

// A client of the poller that counts its events and runs `action` on each.
struct CountingClient final : detail::PollClient {
  int events = 0;
  std::function<void()> action;
  void on_poll(std::uint32_t) override {
    ++events;
    if (action) action();
  }
  ~CountingClient() = default;
};

TEST(LoopPoller, AClientRemovedDuringTheBatchGetsNoLaterEventOfIt) {
  asio::io_context ctx{1};
  auto& poller = asio::use_service<detail::LoopPoller>(ctx);
  int a[2], b[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, a), 0);
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, b), 0);
  CountingClient ca, cb;
  // Both are writable at once: their events come in the same batch. The
  // first one dispatched removes both (the other's event is still to come).
  ca.action = [&] {
    poller.remove_and_close(b[0], cb);
    poller.remove_and_close(a[0], ca);
  };
  cb.action = [&] {
    poller.remove_and_close(a[0], ca);
    poller.remove_and_close(b[0], cb);
  };
  ASSERT_FALSE(poller.add(a[0], ca, std::shared_ptr<void>(std::shared_ptr<void>(), &ca)));
  ASSERT_FALSE(poller.add(b[0], cb, std::shared_ptr<void>(std::shared_ptr<void>(), &cb)));
  EXPECT_TRUE(detail::LoopPoller::registered(ca));
  // Nothing is left registered after the first event: run() returns.
  ctx.run_for(5s);
  EXPECT_EQ(ca.events + cb.events, 1);
  EXPECT_FALSE(detail::LoopPoller::registered(ca));
  EXPECT_FALSE(detail::LoopPoller::registered(cb));
  ::close(a[1]);
  ::close(b[1]);
}

}  // namespace
}  // namespace duplex::test
