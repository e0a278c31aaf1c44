// Closing and stopping at awkward moments: a stop() that races with a session
// still opening (forced deterministically through the listener's test seams),
// a close asked for while a client connects, sockets that outlive their
// listener, a StreamWebSocket closed with unread input, and frame sends made
// out of order (the caller's misuse, refused at the call).
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <asio/io_context.hpp>

#include <duplex/error.hpp>
#include <duplex/message_websocket.hpp>
#include <duplex/stream_websocket.hpp>
#include <duplex/websocket_listener.hpp>

#include "echo_test_support.hpp"
#include "listener/listener_impl.hpp"
#include "listener_test_util.hpp"

namespace duplex::test {
namespace {

std::string url_of(const WebSocketListener& l) {
  return "ws://127.0.0.1:" + std::to_string(l.local_port()) + "/";
}

std::span<const std::byte> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// Clears the listener's test seams however the test ends.
struct HooksGuard {
  ~HooksGuard() { detail::listener_test_hooks() = {}; }
};

// Joins a thread however the test ends (declared after what it uses).
struct Joiner {
  std::thread thread;
  ~Joiner() {
    if (thread.joinable()) thread.join();
  }
};

// The sockets a listener hands out, kept until the test ends.
struct Kept {
  Inbox<ClosedRecord> closed;
  Inbox<int> opened;
  std::mutex mutex;
  std::vector<MessageWebSocket> sockets;
  void keep(WebSocketListenerConnectionReceivedEventArgs& a) {
    auto ws = a.take_message_websocket();
    ws.closed([this](MessageWebSocket&, const WebSocketClosedEventArgs& c) {
      closed.push({c.code(), c.reason(), c.error()});
    });
    std::lock_guard lock(mutex);
    sockets.push_back(std::move(ws));
    opened.push(1);
  }
};

TEST(ListenerShutdown, StopWhileASessionOpensStillSends1001) {
  // The interleaving of a stop() posted between the handshake's stopping()
  // check and the session's opening (it once dropped the close, waited out
  // the timeout and cut the client).
  HooksGuard guard;
  Inbox<ClosedRecord> client_closed;
  Kept kept;
  std::promise<void> posted;
  std::atomic<std::size_t> cut{99};
  WebSocketListenerOptions o;
  o.threads = 1;
  WebSocketListener listener(o);
  Joiner stopper;
  auto& hooks = detail::listener_test_hooks();
  hooks.stop_posted = [&] { posted.set_value(); };
  hooks.before_adopt = [&] {
    stopper.thread = std::thread([&] { cut = listener.stop(5s); });
    // The stop pass is queued on this loop before the session's opening.
    posted.get_future().wait();
  };
  listener.connection_received([&](auto& a) { kept.keep(a); });
  listener.listen("127.0.0.1", 0);

  MessageWebSocket client;
  client.closed([&](MessageWebSocket&, const WebSocketClosedEventArgs& c) {
    client_closed.push({c.code(), c.reason(), c.error()});
  });
  client.connect_async(url_of(listener)).get();
  ASSERT_TRUE(client_closed.wait_for_count(1, 5s));
  EXPECT_EQ(client_closed.items()[0].code, 1001);
  EXPECT_EQ(client_closed.items()[0].reason, "server shutting down");
  stopper.thread.join();
  EXPECT_EQ(cut.load(), 0u);  // closed in time, nothing cut
}

TEST(ListenerShutdown, AHandshakeInFlightAtStopGetsIts101ThenA1001) {
  HooksGuard guard;
  WebSocketListenerOptions o;
  o.threads = 1;
  WebSocketListener listener(o);
  std::promise<void> posted;
  Joiner stopper;
  detail::listener_test_hooks().stop_posted = [&] { posted.set_value(); };
  // The request is read and being answered when stop() begins.
  listener.handshake_requested([&](WebSocketHandshakeContext&) {
    stopper.thread = std::thread([&] { listener.stop(5s); });
    posted.get_future().wait();
  });
  listener.listen("127.0.0.1", 0);
  RawClient raw;
  ASSERT_TRUE(raw.connect(listener.local_port()));
  ASSERT_TRUE(raw.send(upgrade_request()));
  const auto response = raw.read_response();
  ASSERT_EQ(response.substr(0, 12), "HTTP/1.1 101");
  // Right after the 101: a 1001 close frame (unmasked, from the server).
  std::string frames = response.substr(response.find("\r\n\r\n") + 4);
  bool closed = false;
  const auto end = Clock::now() + 5s;
  while (frames.size() < 4 && !closed && Clock::now() < end)
    frames += raw.read_some(100ms, &closed);
  ASSERT_GE(frames.size(), 4u);
  EXPECT_EQ(static_cast<unsigned char>(frames[0]), 0x88);
  EXPECT_EQ((static_cast<unsigned char>(frames[2]) << 8) | static_cast<unsigned char>(frames[3]),
            1001);
}

TEST(ListenerShutdown, ACloseAskedForWhileTheClientConnectsIsSentOnceOpen) {
  Kept kept;
  std::promise<void> entered, release;
  auto released = release.get_future().share();
  WebSocketListenerOptions o;
  o.threads = 1;
  WebSocketListener listener(o);
  listener.handshake_requested([&](WebSocketHandshakeContext&) {
    entered.set_value();
    released.wait();  // the client waits for its 101 meanwhile
  });
  listener.connection_received([&](auto& a) { kept.keep(a); });
  listener.listen("127.0.0.1", 0);

  Inbox<ClosedRecord> client_closed;
  MessageWebSocket client;
  client.closed([&](MessageWebSocket&, const WebSocketClosedEventArgs& c) {
    client_closed.push({c.code(), c.reason(), c.error()});
  });
  auto connecting = client.connect_async(url_of(listener));
  entered.get_future().wait();
  client.close(4000, "changed my mind");
  release.set_value();
  connecting.get();  // the connect itself succeeds
  ASSERT_TRUE(kept.closed.wait_for_count(1, 5s));
  EXPECT_EQ(kept.closed.items()[0].code, 4000);
  EXPECT_EQ(kept.closed.items()[0].reason, "changed my mind");
  ASSERT_TRUE(client_closed.wait_for_count(1, 5s));
  EXPECT_EQ(client_closed.items()[0].code, 4000);
  EXPECT_FALSE(client_closed.items()[0].error);
  listener.stop(1s);
}

TEST(ListenerShutdown, SocketsMayOutliveTheirListener) {
  Kept kept;
  MessageWebSocket client;
  {
    WebSocketListenerOptions o;
    o.threads = 2;
    WebSocketListener listener(o);
    listener.connection_received([&](auto& a) { kept.keep(a); });
    listener.listen("127.0.0.1", 0);
    client.connect_async(url_of(listener)).get();
    ASSERT_TRUE(kept.opened.wait_for_count(1, 5s));
  }  // destroyed first: its connections are closed, the held socket stays valid
  ASSERT_TRUE(kept.closed.wait_for_count(1, 5s));
  // The socket's loop still runs: an operation completes (with an error)
  // instead of hanging.
  Inbox<std::error_code> sent;
  {
    std::lock_guard lock(kept.mutex);
    kept.sockets.front().send_async(bytes_of("late"), [&](std::error_code ec) { sent.push(ec); });
  }
  ASSERT_TRUE(sent.wait_for_count(1, 5s));
  EXPECT_TRUE(sent.items()[0]);
  {
    std::lock_guard lock(kept.mutex);
    kept.sockets.clear();
  }
  // The last socket gone, the orphaned loop frees itself (no leak, no thread).
  EXPECT_TRUE(wait_until([] { return detail::orphaned_loop_count() == 0; }, 5s));
}

TEST(StreamClose, UnreadInputIsDroppedAndThePeersCloseFound) {
  // The server pushes 4 MiB the client never reads: backpressure stops the
  // client's reading at 1 MiB, yet its close must still find the answer.
  WebSocketListenerOptions o;
  o.threads = 1;
  Inbox<int> opened;
  std::mutex m;
  WebSocketListener listener(o);
  std::vector<MessageWebSocket> servers;
  listener.connection_received([&](WebSocketListenerConnectionReceivedEventArgs& a) {
    auto ws = a.take_message_websocket();
    ws.send_async(std::vector<std::byte>(4 << 20), [](std::error_code) {});
    std::lock_guard lock(m);
    servers.push_back(std::move(ws));
    opened.push(1);
  });
  listener.listen("127.0.0.1", 0);
  StreamWebSocket client;
  client.control().close_timeout(3s);
  client.connect_async(url_of(listener)).get();
  ASSERT_TRUE(opened.wait_for_count(1, 5s));
  ASSERT_TRUE(wait_until(
      [&] { return client.information().bandwidth_statistics().bytes_received > (1u << 20); },
      10s));
  const auto start = Clock::now();
  EXPECT_NO_THROW(client.close_async(1000, "enough").get());
  EXPECT_LT(Clock::now() - start, 3s);
  listener.stop(1s);
  std::lock_guard lock(m);
  servers.clear();
}

TEST(FrameSendMisuse, IsRefusedAtTheCall) {
  WebSocketListenerOptions o;
  o.threads = 1;
  EchoServer server(o);
  Inbox<std::string> echoes;
  MessageWebSocket c;
  c.message_received([&](MessageWebSocket&, const auto& m) { echoes.push(std::string(m.text())); });
  c.control().message_type(SocketMessageType::utf8);
  c.connect_async(server.url()).get();

  c.send_nonfinal_frame_async(bytes_of("abc")).get();
  try {
    (void)c.send_async("between the frames");
    FAIL() << "a whole message inside a fragmented one was accepted";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("unfinished"), std::string::npos) << e.what();
  }
  // A code point split between frames is fine.
  c.send_nonfinal_frame_async(bytes_of("\xC3")).get();
  c.send_final_frame_async(bytes_of("\xA9")).get();
  ASSERT_TRUE(echoes.wait_for_count(1, 5s));
  EXPECT_EQ(echoes.items()[0], "abc\xC3\xA9");

  c.send_nonfinal_frame_async(bytes_of("ok")).get();
  EXPECT_THROW((void)c.send_final_frame_async(bytes_of("\xFF")), std::invalid_argument);
  try {
    (void)c.send_final_frame_async(bytes_of("\xC3"));
    FAIL() << "a text message ending inside a code point was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("RFC 6455 5.6"), std::string::npos) << e.what();
  }
  c.send_final_frame_async(bytes_of("!")).get();
  ASSERT_TRUE(echoes.wait_for_count(2, 5s));
  EXPECT_EQ(echoes.items()[1], "ok!");
  // The connection stayed open through the refusals.
  c.send_async("after").get();
  ASSERT_TRUE(echoes.wait_for_count(3, 5s));
  c.close_async().get();
}

}  // namespace
}  // namespace duplex::test

namespace duplex::test {
namespace {

TEST(UserIoContext, RunReturnsOnceItsLastSocketIsGone) {
  // Issue 12: run() used to wait for the socket's connect and close deadlines
  // (here 60 s and 30 s) although nothing was left to do.
  WebSocketListenerOptions o;
  o.threads = 1;
  EchoServer server(o);
  asio::io_context ctx;
  std::optional<MessageWebSocket> ws(std::in_place, ctx);
  ws->control().close_timeout(30s);
  std::error_code connect_ec, close_ec;
  ws->connect_async(server.url(), [&](std::error_code ec) {
    connect_ec = ec;
    ws->close_async(1000, "bye", [&](std::error_code cec) {
      close_ec = cec;
      ws.reset();  // the last socket goes, inside its own completion
    });
  });
  const auto start = Clock::now();
  ctx.run();
  EXPECT_LT(Clock::now() - start, 10s);
  EXPECT_FALSE(connect_ec);
  EXPECT_FALSE(close_ec);
  EXPECT_FALSE(ws.has_value());
}

}  // namespace
}  // namespace duplex::test
