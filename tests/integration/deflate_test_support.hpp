// Helpers of the permessage-deflate integration tests: the shared echo server
// with compression options, a recording duplex client, a scripted raw WebSocket server
// (to send the duplex client what a well-behaved peer never would), frame
// building and parsing, and compressed payloads made with the core's encoder.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <duplex/message_websocket.hpp>
#include <duplex/protocol/connection.hpp>
#include <duplex/protocol/deflate.hpp>
#include <duplex/protocol/handshake.hpp>
#include <duplex/stream_websocket.hpp>
#include <duplex/websocket_listener.hpp>

#include "echo_test_support.hpp"
#include "listener_test_util.hpp"

namespace duplex::test::deflate {

using namespace std::chrono_literals;

/// The shared echo server (echo_test_support.hpp) with `deflate` options, one
/// loop thread, and `max_message_size`; wss with `tls`.
class EchoServer : public test::EchoServer {
public:
  explicit EchoServer(DeflateOptions deflate, bool stream = false,
                      std::uint64_t max_message_size = std::uint64_t{64} << 20,
                      std::optional<ListenerTlsOptions> tls = std::nullopt)
      : test::EchoServer(make_options(deflate, max_message_size, std::move(tls)), stream) {}

private:
  static WebSocketListenerOptions make_options(DeflateOptions d, std::uint64_t max,
                                               std::optional<ListenerTlsOptions> tls) {
    WebSocketListenerOptions o;
    o.tls = std::move(tls);
    o.threads = 1;
    o.handshake_timeout = 5s;
    o.deflate = d;
    o.max_message_size = max;
    return o;
  }
};

struct Received {
  SocketMessageType type;
  std::string data;
  bool complete;
};

/// A duplex client recording every message (or piece) and its closed event.
/// The inboxes come before the socket, so they outlive its handlers.
struct Client {
  explicit Client(std::optional<DeflateOptions> deflate = DeflateOptions{.enable = true}) {
    if (deflate) ws.control().deflate(*deflate);
    ws.message_received([this](MessageWebSocket&, const auto& a) {
      messages.push({a.message_type(), std::string(a.text()), a.is_message_complete()});
    });
    ws.closed([this](MessageWebSocket&, const WebSocketClosedEventArgs& a) {
      closed.push({a.code(), a.reason(), a.error()});
    });
  }
  Inbox<Received> messages;
  Inbox<ClosedRecord> closed;
  MessageWebSocket ws;
};

/// Text that compresses like JSON telemetry: `n` bytes, varied but repetitive.
inline std::string json_text(std::size_t n, unsigned seed = 1) {
  std::string s;
  s.reserve(n + 64);
  unsigned i = seed;
  while (s.size() < n) {
    s += "{\"id\":" + std::to_string(i) + ",\"name\":\"sensor-" + std::to_string(i % 17) +
         "\",\"value\":" + std::to_string((i * 7919u) % 1000) + ",\"ok\":true},";
    ++i;
  }
  s.resize(n);
  return s;
}

/// Incompressible bytes (xorshift), `n` of them.
inline std::string random_bytes(std::size_t n, std::uint64_t seed = 0x9E3779B97F4A7C15ull) {
  std::string s(n, '\0');
  std::uint64_t x = seed;
  for (auto& c : s) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x >> 56);
  }
  return s;
}

inline std::span<const std::byte> bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

/// One frame as a peer of `role` sends it (client frames masked).
inline std::string frame(std::uint8_t b0, std::string_view payload, bool masked) {
  std::string f;
  f += static_cast<char>(b0);
  const std::uint8_t m = masked ? 0x80 : 0x00;
  const std::size_t n = payload.size();
  if (n <= 125) {
    f += static_cast<char>(m | n);
  } else if (n <= 0xffff) {
    f += static_cast<char>(m | 126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xff);
  } else {
    f += static_cast<char>(m | 127);
    for (int i = 7; i >= 0; --i)
      f += static_cast<char>((static_cast<std::uint64_t>(n) >> (8 * i)) & 0xff);
  }
  const char key[4] = {0x12, 0x34, 0x56, 0x78};
  if (masked) f.append(key, 4);
  const std::size_t start = f.size();
  f.append(payload);
  if (masked)
    for (std::size_t i = 0; i < n; ++i) f[start + i] = static_cast<char>(f[start + i] ^ key[i % 4]);
  return f;
}

/// A whole message compressed as permessage-deflate sends it (RFC 7692 7.2.1),
/// by the core's encoder with default parameters for `role`.
inline std::string compress_message(std::string_view text, protocol::Role role) {
  protocol::DeflateParams p;
  p.compress_threshold = 0;
  protocol::DeflateEncoder enc(p, role);
  std::vector<std::byte> out;
  enc.compress(bytes(text), true, out);
  return {reinterpret_cast<const char*>(out.data()), out.size()};
}

/// A decompression bomb: `mib` MiB of zeros as one compressed message.
inline std::string compressed_zeros(std::size_t mib, protocol::Role role) {
  protocol::DeflateParams p;
  p.compress_threshold = 0;
  p.compression_level = 9;
  protocol::DeflateEncoder enc(p, role);
  const std::vector<std::byte> zeros(std::size_t{1} << 20);
  std::vector<std::byte> out;
  for (std::size_t i = 0; i < mib; ++i) enc.compress(zeros, i + 1 == mib, out);
  return {reinterpret_cast<const char*>(out.data()), out.size()};
}

/// A frame read back from a peer.
struct Frame {
  std::uint8_t b0 = 0;
  std::string payload;
  [[nodiscard]] std::uint8_t opcode() const { return b0 & 0x0f; }
  [[nodiscard]] std::uint16_t close_code() const {
    if (payload.size() < 2) return 1005;
    return static_cast<std::uint16_t>((static_cast<unsigned char>(payload[0]) << 8) |
                                      static_cast<unsigned char>(payload[1]));
  }
};

/// Parses frames (masked or not) from `buf`, consuming whole ones.
inline std::vector<Frame> parse_frames(std::string& buf) {
  std::vector<Frame> out;
  for (;;) {
    if (buf.size() < 2) break;
    const auto b1 = static_cast<unsigned char>(buf[1]);
    std::size_t pos = 2;
    std::uint64_t n = b1 & 0x7f;
    if (n == 126) {
      if (buf.size() < 4) break;
      n = (static_cast<unsigned char>(buf[2]) << 8) | static_cast<unsigned char>(buf[3]);
      pos = 4;
    } else if (n == 127) {
      if (buf.size() < 10) break;
      n = 0;
      for (int i = 0; i < 8; ++i) n = (n << 8) | static_cast<unsigned char>(buf[2 + i]);
      pos = 10;
    }
    const bool masked = (b1 & 0x80) != 0;
    char key[4] = {};
    if (masked) {
      if (buf.size() < pos + 4) break;
      std::memcpy(key, buf.data() + pos, 4);
      pos += 4;
    }
    if (buf.size() < pos + n) break;
    Frame f;
    f.b0 = static_cast<std::uint8_t>(buf[0]);
    f.payload = buf.substr(pos, n);
    if (masked)
      for (std::size_t i = 0; i < f.payload.size(); ++i) f.payload[i] ^= key[i % 4];
    out.push_back(std::move(f));
    buf.erase(0, pos + n);
  }
  return out;
}

/// Reads frames from `read_some` until a close frame arrives, the peer ends
/// the connection, or `timeout` passes.
template <class ReadSome>
std::vector<Frame> read_until_close(ReadSome read_some, std::chrono::milliseconds timeout,
                                    std::string buf = {}) {
  std::vector<Frame> frames;
  const auto end = Clock::now() + timeout;
  for (;;) {
    for (auto& f : parse_frames(buf)) frames.push_back(std::move(f));
    if (!frames.empty() && frames.back().opcode() == 0x8) break;
    if (Clock::now() >= end) break;
    bool closed = false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
    buf += read_some(std::max(left, std::chrono::milliseconds(1)), &closed);
    if (closed) break;
  }
  return frames;
}

/// A one-connection WebSocket server that answers the opening handshake with
/// `extensions` and then sends `frames_after` (raw bytes), recording the
/// request and every frame the client sends until its close frame. Stops by
/// itself after `lifetime`.
class ScriptedServer {
public:
  ScriptedServer(std::string extensions, std::string frames_after,
                 std::chrono::milliseconds lifetime = 10s)
      : extensions_(std::move(extensions)), script_(std::move(frames_after)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 ||
        ::listen(fd_, 1) != 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error("ScriptedServer: cannot listen");
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this, lifetime] { run(lifetime); });
  }
  ~ScriptedServer() {
    thread_.join();
    ::close(fd_);
  }
  ScriptedServer(const ScriptedServer&) = delete;
  ScriptedServer& operator=(const ScriptedServer&) = delete;

  [[nodiscard]] std::string url() const { return "ws://127.0.0.1:" + std::to_string(port_) + "/"; }
  /// Waits for the connection to end; then request() and frames() are final.
  bool wait_done(std::chrono::milliseconds timeout) { return done_.wait_for_count(1, timeout); }
  std::string request() {
    std::lock_guard lock(m_);
    return request_;
  }
  std::vector<Frame> frames() {
    std::lock_guard lock(m_);
    return frames_;
  }

private:
  void run(std::chrono::milliseconds lifetime) {
    const auto end = Clock::now() + lifetime;
    auto left = [&] {
      return std::max(
          1L,
          static_cast<long>(
              std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count()));
    };
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left())) <= 0) return done_.push(0);
    const int c = ::accept(fd_, nullptr, nullptr);
    if (c < 0) return done_.push(0);
    auto read_some = [&](std::chrono::milliseconds t, bool* closed) -> std::string {
      *closed = false;
      pollfd q{c, POLLIN, 0};
      if (::poll(&q, 1, static_cast<int>(t.count())) <= 0) return {};
      char buf[65536];
      const auto n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) {
        *closed = true;
        return {};
      }
      return std::string(buf, static_cast<std::size_t>(n));
    };
    std::string in;
    while (in.find("\r\n\r\n") == std::string::npos && Clock::now() < end) {
      bool closed = false;
      in += read_some(std::chrono::milliseconds(left()), &closed);
      if (closed) break;
    }
    const auto head = in.find("\r\n\r\n");
    if (head == std::string::npos) {
      ::close(c);
      return done_.push(0);
    }
    std::string request = in.substr(0, head + 4);
    std::string rest = in.substr(head + 4);
    std::string key;
    const auto k = request.find("Sec-WebSocket-Key: ");
    if (k != std::string::npos) key = request.substr(k + 19, request.find("\r\n", k) - k - 19);
    std::string answer = protocol::build_server_response(key, {}, extensions_) + script_;
    (void)::send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
    auto frames = read_until_close(read_some, std::chrono::milliseconds(left()), rest);
    if (!frames.empty() && frames.back().opcode() == 0x8) {
      // Answer the close so the client ends cleanly.
      const std::string close = frame(0x88, frames.back().payload.substr(0, 2), false);
      (void)::send(c, close.data(), close.size(), MSG_NOSIGNAL);
    }
    ::shutdown(c, SHUT_WR);
    ::close(c);
    {
      std::lock_guard lock(m_);
      request_ = std::move(request);
      frames_ = std::move(frames);
    }
    done_.push(1);
  }

  std::string extensions_;
  std::string script_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::mutex m_;
  std::string request_;
  std::vector<Frame> frames_;
  Inbox<int> done_;
};

/// Peak resident set size of this process, in bytes.
inline std::size_t peak_rss() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<std::size_t>(u.ru_maxrss) * 1024;
}

}  // namespace duplex::test::deflate
