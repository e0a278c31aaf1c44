// Peers that send without reading: the server stops reading while its output
// to them is over the limit (TCP then slows them), keeps serving the others,
// and ends a peer that stays stuck past send_timeout with a 1008 close frame
// before tearing TCP down. (Pong coalescing is tested byte for byte in
// tests/unit/connection_test.cpp, ConnectionPing.) Raw clients on non-blocking sockets push frames
// and read nothing until the test says so.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <duplex/error.hpp>
#include <duplex/message_websocket.hpp>
#include <duplex/websocket_listener.hpp>

#include "echo_test_support.hpp"
#include "listener_test_util.hpp"

namespace duplex::test {
namespace {

// A client frame (masked, RFC 6455 5.3) with FIN.
std::string masked_frame(std::uint8_t opcode, std::string_view payload) {
  std::string f;
  f.push_back(static_cast<char>(0x80 | opcode));
  const std::uint64_t n = payload.size();
  if (n <= 125) {
    f.push_back(static_cast<char>(0x80 | n));
  } else if (n <= 0xFFFF) {
    f.push_back(static_cast<char>(0x80 | 126));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n));
  } else {
    f.push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>(n >> (8 * i)));
  }
  const std::array<char, 4> key{0x11, 0x22, 0x33, 0x44};
  f.append(key.data(), key.size());
  for (std::size_t i = 0; i < n; ++i) f.push_back(static_cast<char>(payload[i] ^ key[i % 4]));
  return f;
}

struct Frame {
  std::uint8_t opcode = 0;
  std::string payload;
};

// Takes the complete (unmasked, server) frames off the front of `buf`.
std::vector<Frame> take_frames(std::string& buf) {
  std::vector<Frame> out;
  std::size_t pos = 0;
  for (;;) {
    if (buf.size() - pos < 2) break;
    const auto b0 = static_cast<std::uint8_t>(buf[pos]);
    std::uint64_t n = static_cast<std::uint8_t>(buf[pos + 1]) & 0x7F;
    std::size_t header = 2;
    if (n == 126) {
      if (buf.size() - pos < 4) break;
      n = (std::uint64_t{static_cast<std::uint8_t>(buf[pos + 2])} << 8) |
          static_cast<std::uint8_t>(buf[pos + 3]);
      header = 4;
    } else if (n == 127) {
      if (buf.size() - pos < 10) break;
      n = 0;
      for (int i = 0; i < 8; ++i) n = (n << 8) | static_cast<std::uint8_t>(buf[pos + 2 + i]);
      header = 10;
    }
    if (buf.size() - pos < header + n) break;
    out.push_back({static_cast<std::uint8_t>(b0 & 0x0F), buf.substr(pos + header, n)});
    pos += header + n;
  }
  buf.erase(0, pos);
  return out;
}

// A raw WebSocket client on a non-blocking socket: it writes as much as the
// kernel takes and reads only when asked.
class PushingClient {
public:
  PushingClient() = default;
  PushingClient(const PushingClient&) = delete;
  PushingClient& operator=(const PushingClient&) = delete;
  ~PushingClient() {
    if (fd_ >= 0) ::close(fd_);
  }

  // Connects and completes the opening handshake (blocking, with a deadline).
  bool open(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return false;
    const std::string request = upgrade_request();
    if (::send(fd_, request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size()))
      return false;
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
    const auto end = Clock::now() + 5s;
    while (Clock::now() < end) {
      if (!wait(POLLIN, 100ms)) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return false;
      in_.append(buf, static_cast<std::size_t>(n));
      const auto blank = in_.find("\r\n\r\n");
      if (blank == std::string::npos) continue;
      const bool ok = in_.compare(0, 12, "HTTP/1.1 101") == 0;
      in_.erase(0, blank + 4);
      return ok;
    }
    return false;
  }

  // Queues `bytes` to send.
  void queue(std::string bytes) { out_ += bytes; }
  [[nodiscard]] std::size_t unsent() const { return out_.size() - out_pos_; }

  // Writes queued bytes until all are sent (true) or the kernel has taken
  // nothing for `stuck_after` (false: the server stopped reading).
  bool push(std::chrono::milliseconds stuck_after) {
    while (unsent() != 0) {
      if (!wait(POLLOUT, stuck_after)) return false;
      if (!write_some()) return false;
    }
    return true;
  }

  // Reads and writes until `done(frames so far)` holds or `timeout` passes.
  bool pump(const std::function<bool(std::vector<Frame>&)>& done, std::chrono::milliseconds timeout,
            bool* eof = nullptr) {
    const auto end = Clock::now() + timeout;
    while (!done(frames_)) {
      if (Clock::now() >= end) return false;
      pollfd p{fd_, static_cast<short>(POLLIN | (unsent() ? POLLOUT : 0)), 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      if ((p.revents & POLLOUT) && !write_some()) return false;
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
        char buf[64 * 1024];
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
          if (eof) *eof = true;
          return done(frames_);
        }
        if (n > 0) {
          in_.append(buf, static_cast<std::size_t>(n));
          for (auto& f : take_frames(in_)) frames_.push_back(std::move(f));
        }
      }
    }
    return true;
  }

  [[nodiscard]] const std::vector<Frame>& frames() const { return frames_; }
  std::size_t sent = 0;  ///< bytes the kernel took

private:
  bool wait(short events, std::chrono::milliseconds timeout) {
    pollfd p{fd_, events, 0};
    return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
  }
  bool write_some() {
    const ssize_t n = ::send(fd_, out_.data() + out_pos_, unsent(), MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN;
    out_pos_ += static_cast<std::size_t>(n);
    sent += static_cast<std::size_t>(n);
    if (out_pos_ == out_.size()) {
      out_.clear();
      out_pos_ = 0;
    }
    return true;
  }

  int fd_ = -1;
  std::string out_;
  std::size_t out_pos_ = 0;
  std::string in_;
  std::vector<Frame> frames_;
};

WebSocketListenerOptions small_buffers() {
  WebSocketListenerOptions o;
  o.threads = 1;
  o.outbound_buffer_size = 64 * 1024;
  o.max_message_size = 1 << 20;
  o.keep_alive_interval = std::chrono::milliseconds::zero();
  return o;
}

TEST(Backpressure, AServerStopsReadingAClientThatDoesNotReadItsEchoes) {
  auto o = small_buffers();
  o.send_timeout = std::chrono::minutes(5);  // only backpressure here
  EchoServer server(o);
  PushingClient hog;
  ASSERT_TRUE(hog.open(server.listener.local_port()));
  const std::string message = masked_frame(0x2, std::string(256 * 1024, 'x'));
  // Up to 256 MiB: without backpressure the server reads (and queues echoes
  // for) all of it; with it, the kernel buffers fill and the client stalls.
  constexpr int max_messages = 1024;
  int queued = 0;
  bool stalled = false;
  while (queued < max_messages) {
    hog.queue(message);
    ++queued;
    if (!hog.push(1s)) {
      stalled = true;
      break;
    }
  }
  ASSERT_TRUE(stalled) << "the server read " << hog.sent
                       << " bytes from a client that reads nothing";
  EXPECT_LT(hog.sent, std::size_t{64} << 20);

  // Another client is served meanwhile.
  Inbox<std::string> echoes;  // before the socket that feeds it
  MessageWebSocket other;
  other.message_received(
      [&](MessageWebSocket&, const auto& m) { echoes.push(std::string(m.text())); });
  other.control().message_type(SocketMessageType::utf8);
  other.connect_async(server.url()).get();
  other.send_async("still served").get();
  ASSERT_TRUE(echoes.wait_for_count(1, 5s));
  EXPECT_EQ(echoes.items()[0], "still served");
  other.close_async().get();

  // Once the client reads, the server reads again: every message comes back.
  ASSERT_TRUE(
      hog.pump([&](std::vector<Frame>& f) { return static_cast<int>(f.size()) >= queued; }, 60s));
  EXPECT_EQ(hog.unsent(), 0u);
}

TEST(Backpressure, AClientStuckPastTheSendTimeoutGetsA1008CloseFrame) {
  auto o = small_buffers();
  o.send_timeout = 300ms;
  o.close_timeout = 10s;
  // The inboxes outlive the listener and the socket that feed them.
  Inbox<ClosedRecord> closed;
  Inbox<int> opened;
  std::mutex m;
  WebSocketListener listener(o);
  std::optional<MessageWebSocket> server_ws;
  listener.connection_received([&](WebSocketListenerConnectionReceivedEventArgs& a) {
    auto ws = a.take_message_websocket();
    ws.message_received([](MessageWebSocket& s, const auto& msg) {
      s.send_async(msg.data(), [](std::error_code) {});
    });
    ws.closed([&](MessageWebSocket&, const WebSocketClosedEventArgs& c) {
      closed.push({c.code(), c.reason(), c.error()});
    });
    std::lock_guard lock(m);
    server_ws.emplace(std::move(ws));
    opened.push(1);
  });
  listener.listen("127.0.0.1", 0);
  PushingClient stuck;
  ASSERT_TRUE(stuck.open(listener.local_port()));
  ASSERT_TRUE(opened.wait_for_count(1, 5s));
  // 32 MiB of messages whose echoes cannot all fit in the kernel's buffers.
  // The client may stall while the server stops reading; once the send
  // timeout ends the connection the server reads (and drops) the rest.
  const std::string message = masked_frame(0x2, std::string(256 * 1024, 'y'));
  for (int i = 0; i < 128; ++i) stuck.queue(message);
  const auto push_end = Clock::now() + 30s;
  while (!stuck.push(1s) && Clock::now() < push_end) {
  }
  ASSERT_EQ(stuck.unsent(), 0u);

  // A send that finds no room waits, and fails once the output has made no
  // progress for send_timeout.
  const std::vector<std::byte> more(1024);
  MessageWebSocket* ws = nullptr;
  {
    std::lock_guard lock(m);
    ws = &*server_ws;
  }
  try {
    ws->send_async(more).get();
    FAIL() << "a send to a client that reads nothing succeeded";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), make_error_code(error::timed_out));
  }

  // The close frame waits behind the echoes: the client reads its way to it.
  bool eof = false;
  ASSERT_TRUE(stuck.pump([](std::vector<Frame>& f) { return !f.empty() && f.back().opcode == 0x8; },
                         30s, &eof));
  const auto& frames = stuck.frames();
  ASSERT_FALSE(frames.empty());
  const auto& close = frames.back();
  ASSERT_EQ(close.opcode, 0x8);
  ASSERT_GE(close.payload.size(), 2u);
  const int code = (static_cast<std::uint8_t>(close.payload[0]) << 8) |
                   static_cast<std::uint8_t>(close.payload[1]);
  EXPECT_EQ(code, 1008);
  EXPECT_EQ(close.payload.substr(2), "send timeout");
  // The client answers; the server closes TCP and reports the failure.
  stuck.queue(masked_frame(0x8, close.payload.substr(0, 2)));
  ASSERT_TRUE(stuck.pump([&](std::vector<Frame>&) { return eof; }, 10s, &eof));
  ASSERT_TRUE(closed.wait_for_count(1, 10s));
  EXPECT_EQ(closed.items()[0].code, 1008);
  EXPECT_EQ(closed.items()[0].error, make_error_code(error::timed_out));
  listener.stop(1s);
}

}  // namespace
}  // namespace duplex::test
