// Topics with large frames: from Session::prebuilt_reference_min bytes a
// publish is referenced by each subscriber's write queue (one SharedFrame per
// loop) and written in place with sendmsg beside the session's own output.
// Raw clients parse the server's frames byte by byte: slow ones (a 4 KiB
// receive buffer, reading only at the end) make the server's writes stop
// inside frames and resume; user sends and pongs go between the publishes;
// subscribers that reset or are closed as slow while frames are referenced
// release them.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <duplex/message_websocket.hpp>
#include <duplex/topics.hpp>
#include <duplex/websocket_listener.hpp>

#include "detail/session.hpp"
#include "detail/shared_frame.hpp"
#include "listener_test_util.hpp"

namespace duplex::test {
namespace {

using detail::SharedFrame;

/// A listener whose server sockets are kept here by path and handed to `on_open`.
struct Server {
  explicit Server(const WebSocketListenerOptions& o) : listener(o) {
    listener.connection_received([this](WebSocketListenerConnectionReceivedEventArgs& args) {
      auto ws = std::make_shared<MessageWebSocket>(args.take_message_websocket());
      const std::string path(args.request().path());
      std::function<void(MessageWebSocket&, const std::string&)> f;
      {
        std::lock_guard lock(mutex);
        sockets[path] = ws;
        f = on_open;
      }
      if (f) f(*ws, path);
    });
    port = listener.listen("127.0.0.1", 0).port;
  }
  std::shared_ptr<MessageWebSocket> socket(const std::string& path) {
    std::lock_guard lock(mutex);
    auto it = sockets.find(path);
    return it == sockets.end() ? nullptr : it->second;
  }
  std::mutex mutex;
  std::map<std::string, std::shared_ptr<MessageWebSocket>> sockets;
  std::function<void(MessageWebSocket&, const std::string&)> on_open;
  WebSocketListener listener;
  std::uint16_t port = 0;
};

struct WireFrame {
  std::uint8_t b0 = 0;  ///< FIN, RSV and opcode
  std::string payload;
};

/// A raw WebSocket client that parses the server's (unmasked) frames as they
/// arrive, on its own thread once started. With `rcvbuf`, its receive buffer
/// is that small (set before connecting, so the window is small too).
class WireClient {
public:
  WireClient(std::uint16_t port, const std::string& path, int rcvbuf = 0)
      : fd_(connect_upgraded(port, path, rcvbuf)) {}
  WireClient(const WireClient&) = delete;
  WireClient& operator=(const WireClient&) = delete;
  ~WireClient() {
    stop_ = true;
    if (reader_.joinable()) reader_.join();
    if (fd_ >= 0) ::close(fd_);
  }

  /// Starts reading and parsing on a thread of its own.
  void start() {
    reader_ = std::thread([this] { read_loop(); });
  }
  /// Sends a masked ping (RFC 6455 5.3) carrying `payload` (at most 125 bytes).
  bool ping(const std::string& payload) { return send_frame(0x89, payload); }
  /// Sends a masked text message of at most 125 bytes.
  bool text(const std::string& payload) { return send_frame(0x81, payload); }
  bool send_frame(std::uint8_t b0, const std::string& payload) {
    std::string f;
    f.push_back(static_cast<char>(b0));
    f.push_back(static_cast<char>(0x80 | payload.size()));
    const char key[4] = {0x11, 0x22, 0x33, 0x44};
    f.append(key, 4);
    for (std::size_t i = 0; i < payload.size(); ++i)
      f.push_back(static_cast<char>(payload[i] ^ key[i % 4]));
    return ::send(fd_, f.data(), f.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(f.size());
  }
  /// Ends the connection at once; with bytes unread, the kernel sends a reset.
  void abort() {
    stop_ = true;
    if (reader_.joinable()) reader_.join();
    ::close(fd_);
    fd_ = -1;
  }
  std::vector<WireFrame> frames() {
    std::lock_guard lock(mutex_);
    return frames_;
  }
  /// Data frames (text or binary) parsed so far.
  std::size_t data_count() {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& f : frames_)
      if ((f.b0 & 0x0F) == 0x1 || (f.b0 & 0x0F) == 0x2) ++n;
    return n;
  }
  [[nodiscard]] bool malformed() const { return malformed_.load(); }

private:
  void read_loop() {
    std::string raw;
    std::vector<char> buf(64 * 1024);
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;  // 50 ms: stop_ is seen soon
      const auto n = ::recv(fd_, buf.data(), buf.size(), 0);
      if (n <= 0) return;
      raw.append(buf.data(), static_cast<std::size_t>(n));
      parse(raw);
    }
  }
  void parse(std::string& raw) {
    std::size_t at = 0;
    while (raw.size() - at >= 2) {
      const auto b0 = static_cast<std::uint8_t>(raw[at]);
      const auto b1 = static_cast<std::uint8_t>(raw[at + 1]);
      if ((b1 & 0x80) != 0) malformed_ = true;  // a server never masks
      std::size_t header = 2;
      std::uint64_t len = b1 & 0x7F;
      if (len == 126) {
        if (raw.size() - at < 4) break;
        len = (static_cast<std::uint64_t>(static_cast<std::uint8_t>(raw[at + 2])) << 8) |
              static_cast<std::uint8_t>(raw[at + 3]);
        header = 4;
      } else if (len == 127) {
        if (raw.size() - at < 10) break;
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<std::uint8_t>(raw[at + 2 + i]);
        header = 10;
      }
      if (raw.size() - at < header + len) break;
      WireFrame f;
      f.b0 = b0;
      f.payload = raw.substr(at + header, len);
      {
        std::lock_guard lock(mutex_);
        frames_.push_back(std::move(f));
      }
      at += header + len;
    }
    raw.erase(0, at);
  }

  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<bool> malformed_{false};
  std::mutex mutex_;
  std::vector<WireFrame> frames_;
  std::thread reader_;
};

/// Message `i`'s payload: its number, then letters that differ per message.
std::string message(int i, std::size_t size) {
  std::string s = "m" + std::to_string(i) + ":";
  while (s.size() < size) s.push_back(static_cast<char>('a' + (i * 7 + s.size()) % 26));
  s.resize(size);
  return s;
}

// Publishes to six subscribers on one loop, three of them slow (a 4 KiB
// receive buffer, not read until the end: the server's writes stop inside
// referenced frames and resume there). Each step holds the loop (a handler
// that waits) while four publishes, large (referenced) and small (copied)
// in turn, and a message the server sends each subscriber itself are
// handed to it, so they are queued in one batch in that order; pings go in
// between. Every subscriber gets every byte, in that order, and each pong
// after its ping; afterwards no SharedFrame is left.
TEST(TopicsSharedFrames, OrderAndBytesWithSlowSubscribersSendsAndPings) {
  // Sizes on both sides of the threshold, in turn; 300,000 B takes a 64-bit length.
  static_assert(detail::Session::prebuilt_reference_min > 120 &&
                detail::Session::prebuilt_reference_min <= 1024);
  const std::size_t sizes[] = {1024, 100, 3000, 120, 300000, 100, 20000, 1500};
  constexpr int per_step = 4;
  constexpr int steps = 40;  // about 6.5 MB per subscriber: the slow ones stall
  TopicRegistry topics;
  WebSocketListenerOptions lopt;
  lopt.threads = 1;
  lopt.outbound_buffer_size = 16u << 20;  // nothing is dropped here
  Server server(lopt);
  std::mutex hold_mutex;
  std::condition_variable hold_cv;
  int held = 0, released = 0;
  server.on_open = [&](MessageWebSocket& ws, const std::string&) {
    // "hold": the loop waits here (bounded) until the test releases it.
    ws.message_received([&](MessageWebSocket&, const auto&) {
      std::unique_lock lock(hold_mutex);
      const int n = ++held;
      hold_cv.notify_all();
      hold_cv.wait_for(lock, 10s, [&] { return released >= n; });
    });
    topics.subscribe(ws, "/feed");
  };
  std::vector<std::unique_ptr<WireClient>> clients;
  std::vector<std::string> paths;
  for (int i = 0; i < 6; ++i) {
    paths.push_back("/c" + std::to_string(i));
    const bool slow = i >= 3;
    clients.push_back(std::make_unique<WireClient>(server.port, paths.back(), slow ? 4096 : 0));
    if (!slow) clients.back()->start();
  }
  ASSERT_TRUE(wait_until([&] { return topics.subscriber_count("/feed") == 6; }, 5s));
  std::vector<std::shared_ptr<MessageWebSocket>> sockets;
  for (const auto& p : paths) {
    sockets.push_back(server.socket(p));
    ASSERT_NE(sockets.back(), nullptr);
  }
  std::vector<std::string> pings;
  for (int i = 0; i < steps; ++i) {
    ASSERT_TRUE(clients[0]->text("hold"));
    {
      std::unique_lock lock(hold_mutex);
      ASSERT_TRUE(hold_cv.wait_for(lock, 5s, [&] { return held == i + 1; }));
    }
    for (int k = 0; k < per_step; ++k) {
      const int m = i * per_step + k;
      topics.publish("/feed", message(m, sizes[m % 8]));
    }
    std::vector<Task<void>> sends;
    for (std::size_t c = 0; c < sockets.size(); ++c)
      sends.push_back(sockets[c]->send_async("s" + std::to_string(i) + paths[c]));
    if (i % 4 == 0) {
      pings.push_back("p" + std::to_string(i));
      for (auto& cl : clients) ASSERT_TRUE(cl->ping(pings.back()));
    }
    {
      std::lock_guard lock(hold_mutex);
      released = i + 1;
    }
    hold_cv.notify_all();
    for (auto& t : sends) t.get();
  }
  // The slow ones hold more than the kernel takes (at most 4 MiB of send
  // buffer): each has a write in flight, with frames referenced.
  EXPECT_GT(SharedFrame::live(), 0u);
  for (std::size_t c = 3; c < clients.size(); ++c) clients[c]->start();
  constexpr int data_per_step = per_step + 1;
  for (std::size_t c = 0; c < clients.size(); ++c) {
    ASSERT_TRUE(wait_until([&] { return clients[c]->data_count() == data_per_step * steps; }, 30s))
        << "client " << c << ": " << clients[c]->data_count() << " of " << data_per_step * steps;
    const auto frames = clients[c]->frames();
    EXPECT_FALSE(clients[c]->malformed()) << c;
    int next = 0;  // data messages so far
    std::size_t pong = 0;
    for (const auto& f : frames) {
      const auto opcode = f.b0 & 0x0F;
      ASSERT_EQ(f.b0 & 0xF0, 0x80) << "client " << c << ": FIN, no RSV";
      if (opcode == 0xA) {
        // RFC 6455 5.5.3: a pong may answer only the latest of several pings.
        while (pong < pings.size() && pings[pong] != f.payload) ++pong;
        ASSERT_LT(pong, pings.size()) << "client " << c << ": pong " << f.payload;
        ++pong;
        continue;
      }
      const int step = next / data_per_step, k = next % data_per_step;
      // Publishes are text, the server's own sends binary (its default type).
      ASSERT_EQ(opcode, k < per_step ? 0x1 : 0x2) << "client " << c << " message " << next;
      if (k < per_step) {
        const int m = step * per_step + k;
        const auto want = message(m, sizes[m % 8]);
        ASSERT_EQ(f.payload.size(), want.size()) << "client " << c << " publish " << m;
        ASSERT_TRUE(f.payload == want) << "client " << c << " publish " << m;
      } else {
        ASSERT_EQ(f.payload, "s" + std::to_string(step) + paths[c]) << "client " << c;
      }
      ++next;
    }
    EXPECT_EQ(next, data_per_step * steps);
  }
  // The last ping is answered (a later one replaces an earlier pong, never
  // the reverse).
  for (std::size_t c = 0; c < clients.size(); ++c)
    EXPECT_TRUE(wait_until(
        [&] {
          for (const auto& f : clients[c]->frames())
            if ((f.b0 & 0x0F) == 0xA && f.payload == pings.back()) return true;
          return false;
        },
        5s))
        << c;
  const auto st = topics.statistics();
  EXPECT_EQ(st.deliveries, 6u * per_step * steps);
  EXPECT_EQ(st.dropped, 0u);
  // Every write is done: no frame is referenced any more.
  EXPECT_TRUE(wait_until([] { return SharedFrame::live() == 0; }, 5s)) << SharedFrame::live();
}

enum class Leave : std::uint8_t { reset, closed_as_slow };

class TopicsSharedFramesLeave : public ::testing::TestWithParam<Leave> {};

// A subscriber that stops reading holds references to the frames in its write
// queue (they count against its outbound limit: it becomes slow at it); when
// its connection ends with them queued (the peer resets it, or it is closed
// with 1013 as slow and never answers), it releases them, and the fast
// subscriber beside it got every message intact.
TEST_P(TopicsSharedFramesLeave, ReleasesReferencedFramesWhenItsConnectionEnds) {
  TopicRegistryOptions topt;
  topt.slow_subscriber = GetParam() == Leave::reset ? SlowSubscriberPolicy::drop
                                                    : SlowSubscriberPolicy::close_try_again_later;
  TopicRegistry topics(topt);
  WebSocketListenerOptions lopt;
  lopt.threads = 1;
  lopt.outbound_buffer_size = 256 * 1024;
  lopt.close_timeout = 200ms;
  Server server(lopt);
  server.on_open = [&](MessageWebSocket& ws, const std::string&) { topics.subscribe(ws, "/feed"); };
  WireClient fast(server.port, "/fast");
  fast.start();
  WireClient stuck(server.port, "/stuck", 4096);
  ASSERT_TRUE(wait_until([&] { return topics.subscriber_count("/feed") == 2; }, 5s));
  ASSERT_EQ(SharedFrame::live(), 0u);
  constexpr std::size_t size = 32 * 1024;
  int sent = 0;
  std::size_t live_when_full = 0;
  // Bounded: 256 KiB of output plus what the kernel holds (a few hundred KiB
  // with a 4 KiB receive buffer) fill long before 1,000 messages of 32 KiB.
  for (; sent < 1000; ++sent) {
    const auto before = topics.statistics();
    // Before the publish that finds the stuck one full (still open then).
    live_when_full = SharedFrame::live();
    topics.publish("/feed", message(sent, size));
    ASSERT_TRUE(wait_until(
        [&] {
          const auto st = topics.statistics();
          return st.deliveries + st.dropped == before.deliveries + before.dropped + 2;
        },
        5s));
    if (topics.statistics().dropped > 0) break;
  }
  ASSERT_LT(sent, 1000) << "the stuck subscriber never became slow";
  const auto st = topics.statistics();
  // Its referenced bytes counted against its limit: it got at most the limit
  // plus what the kernel took, far less than was published.
  EXPECT_LT((st.deliveries - (sent + 1)) * size, 4u << 20);
  // Only publishes were queued for it (no pong, no send): its full write
  // queue held frames by reference.
  EXPECT_GT(live_when_full, 0u);
  if (GetParam() == Leave::reset) stuck.abort();
  // Gone from the topic (its closed event), its references released, while
  // the fast subscriber stays.
  EXPECT_TRUE(wait_until([&] { return topics.subscriber_count("/feed") == 1; }, 5s));
  ASSERT_TRUE(
      wait_until([&] { return fast.data_count() == static_cast<std::size_t>(sent + 1); }, 10s))
      << fast.data_count() << " of " << sent + 1;
  EXPECT_TRUE(wait_until([] { return SharedFrame::live() == 0; }, 5s)) << SharedFrame::live();
  EXPECT_FALSE(fast.malformed());
  std::vector<std::string> got;
  for (const auto& f : fast.frames())
    if ((f.b0 & 0x0F) == 0x1) got.push_back(f.payload);
  ASSERT_EQ(got.size(), static_cast<std::size_t>(sent + 1));
  for (int i = 0; i <= sent; ++i) ASSERT_TRUE(got[i] == message(i, size)) << i;
  if (GetParam() == Leave::closed_as_slow) {
    EXPECT_EQ(topics.statistics().slow_closed, 1u);
  }
  // Later publishes still reach the fast one.
  topics.publish("/feed", message(sent + 1, size));
  EXPECT_TRUE(
      wait_until([&] { return fast.data_count() == static_cast<std::size_t>(sent + 2); }, 5s));
}

INSTANTIATE_TEST_SUITE_P(Ends, TopicsSharedFramesLeave,
                         ::testing::Values(Leave::reset, Leave::closed_as_slow), [](const auto& p) {
                           return p.param == Leave::reset ? "PeerReset" : "ClosedAsSlow";
                         });

}  // namespace
}  // namespace duplex::test
