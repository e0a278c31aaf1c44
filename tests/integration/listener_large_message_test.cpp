// Large messages through the listener: frames written straight from the
// caller's buffer (and the copy of what the kernel does not take at once), and
// the partial receive mode of handed-over sockets, over real loopback sockets.
#include <duplex/message_websocket.hpp>
#include <duplex/websocket_listener.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using duplex::MessageWebSocket;
using duplex::MessageWebSocketMessageReceivedEventArgs;
using duplex::MessageWebSocketReceiveMode;
using duplex::WebSocketListener;
using duplex::WebSocketListenerOptions;

// Message i: every byte depends on i and its position, so a lost, repeated,
// reordered or misplaced chunk shows.
std::vector<std::byte> pattern(std::size_t i, std::size_t size) {
  std::vector<std::byte> v(size);
  for (std::size_t j = 0; j < size; ++j)
    v[j] = std::byte{static_cast<unsigned char>((i * 131 + j * 7 + (j >> 12)) & 0xFF)};
  return v;
}

// Received messages, waited on with a deadline.
struct Collected {
  std::mutex m;
  std::condition_variable cv;
  std::vector<std::vector<std::byte>> messages;
  bool wait_for(std::size_t n, std::chrono::milliseconds t) {
    std::unique_lock lock(m);
    return cv.wait_for(lock, t, [&] { return messages.size() >= n; });
  }
  void add(std::span<const std::byte> d) {
    std::lock_guard lock(m);
    messages.emplace_back(d.begin(), d.end());
    cv.notify_all();
  }
};

// The server keeps the sockets it takes until the test ends.
struct Sockets {
  std::mutex m;
  std::vector<std::unique_ptr<MessageWebSocket>> held;
  MessageWebSocket& keep(MessageWebSocket ws) {
    std::lock_guard lock(m);
    held.push_back(std::make_unique<MessageWebSocket>(std::move(ws)));
    return *held.back();
  }
};

// 12 MiB sent from a handler in one go, far beyond the loopback socket
// buffers: the first frames leave from the caller's buffer, the rest are
// copied and follow; every byte arrives, in order.
TEST(ListenerLargeMessage, BurstOfLargeSendsFromAHandlerArrivesIntact) {
  constexpr std::size_t count = 48, size = 256 * 1024;
  WebSocketListenerOptions o;
  o.threads = 1;
  WebSocketListener listener(o);
  Sockets sockets;
  std::atomic<int> send_errors{0};
  listener.connection_received([&](auto& args) {
    auto& ws = sockets.keep(args.take_message_websocket());
    ws.message_received([&](MessageWebSocket& s, const MessageWebSocketMessageReceivedEventArgs&) {
      for (std::size_t i = 0; i < count; ++i) {
        const auto data = pattern(i, size);
        // The data is written or copied before the call returns.
        s.send_async(std::span<const std::byte>(data)).then([&](std::error_code ec) {
          if (ec) ++send_errors;
        });
      }
    });
  });
  const auto bound = listener.listen("127.0.0.1", 0);

  MessageWebSocket client;
  client.control().max_message_size(size);
  Collected got;
  client.message_received(
      [&](MessageWebSocket&, const MessageWebSocketMessageReceivedEventArgs& a) {
        got.add(a.data());
      });
  client.connect_async("ws://127.0.0.1:" + std::to_string(bound.port) + "/").get();
  client.send_async("go").get();
  ASSERT_TRUE(got.wait_for(count, 30s)) << got.messages.size();
  EXPECT_EQ(send_errors.load(), 0);
  for (std::size_t i = 0; i < count; ++i) EXPECT_EQ(got.messages[i], pattern(i, size)) << i;
  client.close_async().get();
  listener.stop(1s);
}

// receive_mode partial_message: a large message reaches the server's handler
// in pieces (views of what each read brought), only the last one complete;
// sent back piece by piece as frames of one message, the client gets it whole.
TEST(ListenerLargeMessage, PartialModeDeliversPiecesAndTheyEchoAsOneMessage) {
  constexpr std::size_t size = 3 * 1024 * 1024;
  WebSocketListenerOptions o;
  o.threads = 1;
  o.receive_mode = MessageWebSocketReceiveMode::partial_message;
  WebSocketListener listener(o);
  Sockets sockets;
  std::mutex m;
  std::vector<std::byte> assembled;
  std::size_t pieces = 0, complete_flags = 0;
  bool last_was_complete = false;
  listener.connection_received([&](auto& args) {
    auto& ws = sockets.keep(args.take_message_websocket());
    ws.message_received(
        [&](MessageWebSocket& s, const MessageWebSocketMessageReceivedEventArgs& a) {
          {
            std::lock_guard lock(m);
            assembled.insert(assembled.end(), a.data().begin(), a.data().end());
            ++pieces;
            complete_flags += a.is_message_complete() ? 1 : 0;
            last_was_complete = a.is_message_complete();
          }
          if (a.is_message_complete())
            (void)s.send_final_frame_async(a.data());
          else
            (void)s.send_nonfinal_frame_async(a.data());
        });
  });
  const auto bound = listener.listen("127.0.0.1", 0);

  MessageWebSocket client;
  Collected got;
  client.message_received(
      [&](MessageWebSocket&, const MessageWebSocketMessageReceivedEventArgs& a) {
        got.add(a.data());
      });
  client.connect_async("ws://127.0.0.1:" + std::to_string(bound.port) + "/").get();
  const auto message = pattern(7, size);
  client.send_async(std::span<const std::byte>(message)).get();
  ASSERT_TRUE(got.wait_for(1, 30s));
  EXPECT_EQ(got.messages[0], message);
  {
    std::lock_guard lock(m);
    EXPECT_EQ(assembled, message);
    EXPECT_GT(pieces, 1u);  // 3 MiB never fits one read of the loop's buffer
    EXPECT_EQ(complete_flags, 1u);
    EXPECT_TRUE(last_was_complete);
  }
  client.close_async().get();
  listener.stop(1s);
}

// Messages of 16 KiB and more that a read cuts off are held in the loop's
// buffer and their rest read right behind them (Connection::receive_holding),
// or kept by the connection when the rest has not come. Sizes around each
// limit (hold_min_payload, the buffer's 256 KiB reserve, counted with the
// 14-byte header), pipelined from several connections in both receive modes,
// echo back intact and in order.
void echo_pipelined_sizes(MessageWebSocketReceiveMode mode) {
  const std::vector<std::size_t> sizes{16 * 1024 - 1,   16 * 1024,      40 * 1024 + 3,
                                       64 * 1024,       100 * 1024 + 1, 256 * 1024 - 14,
                                       256 * 1024 - 13, 300 * 1024,     5};
  constexpr std::size_t clients = 3, rounds = 4;
  WebSocketListenerOptions o;
  o.threads = 1;
  o.receive_mode = mode;
  WebSocketListener listener(o);
  Sockets sockets;
  listener.connection_received([&](auto& args) {
    auto& ws = sockets.keep(args.take_message_websocket());
    auto mid = std::make_shared<bool>(false);
    ws.message_received(
        [mid](MessageWebSocket& s, const MessageWebSocketMessageReceivedEventArgs& a) {
          const bool last = a.is_message_complete();
          if (!*mid && last)
            (void)s.send_async(a.data());
          else if (!last)
            (void)s.send_nonfinal_frame_async(a.data());
          else
            (void)s.send_final_frame_async(a.data());
          *mid = !last;
        });
  });
  const auto bound = listener.listen("127.0.0.1", 0);
  const std::string url = "ws://127.0.0.1:" + std::to_string(bound.port) + "/";

  std::vector<std::unique_ptr<MessageWebSocket>> conns;
  std::vector<std::unique_ptr<Collected>> got;
  for (std::size_t c = 0; c < clients; ++c) {
    conns.push_back(std::make_unique<MessageWebSocket>());
    got.push_back(std::make_unique<Collected>());
    auto* g = got.back().get();
    conns.back()->message_received(
        [g](MessageWebSocket&, const MessageWebSocketMessageReceivedEventArgs& a) {
          g->add(a.data());
        });
    conns.back()->connect_async(url).get();
  }
  const std::size_t count = sizes.size() * rounds;
  const auto message = [&](std::size_t c, std::size_t i) {
    return pattern(c * 1000 + i, sizes[i % sizes.size()]);
  };
  // Sent without waiting for the echoes, so reads carry several messages
  // and cut some of them off.
  for (std::size_t i = 0; i < count; ++i)
    for (std::size_t c = 0; c < clients; ++c) {
      const auto data = message(c, i);
      (void)conns[c]->send_async(std::span<const std::byte>(data));
    }
  for (std::size_t c = 0; c < clients; ++c) {
    ASSERT_TRUE(got[c]->wait_for(count, 60s)) << c << ": " << got[c]->messages.size();
    for (std::size_t i = 0; i < count; ++i)
      ASSERT_EQ(got[c]->messages[i], message(c, i)) << "client " << c << " message " << i;
  }
  for (auto& ws : conns) ws->close_async().get();
  listener.stop(1s);
}

TEST(ListenerLargeMessage, CutOffMessagesEchoIntactInFullMode) {
  echo_pipelined_sizes(MessageWebSocketReceiveMode::full_message);
}

TEST(ListenerLargeMessage, CutOffMessagesEchoIntactInPartialMode) {
  echo_pipelined_sizes(MessageWebSocketReceiveMode::partial_message);
}

TEST(ListenerLargeMessage, UnknownReceiveModeIsRejected) {
  WebSocketListenerOptions o;
  o.receive_mode = static_cast<MessageWebSocketReceiveMode>(5);
  EXPECT_THROW(WebSocketListener{o}, std::invalid_argument);
}

}  // namespace
