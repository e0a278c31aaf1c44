// Helpers shared by the protocol unit tests: a naive frame builder and parser
// written independently of src/protocol, and an event recorder.
#pragma once

#include <duplex/protocol/connection.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace duplex::test {

using Bytes = std::vector<std::byte>;

inline Bytes bytes(std::initializer_list<int> v) {
  Bytes out;
  for (int b : v) out.push_back(static_cast<std::byte>(b));
  return out;
}
inline Bytes bytes(std::string_view s) {
  Bytes out;
  for (char c : s) out.push_back(static_cast<std::byte>(c));
  return out;
}
inline std::string str(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}
inline Bytes cat(const Bytes& a, const Bytes& b) {
  Bytes out = a;
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

/// Builds one frame byte by byte: b0 as given (FIN, RSV, opcode), the minimal
/// length encoding unless `force_len_bytes` (2 or 8) says otherwise, masked
/// with `key` when `masked`.
inline Bytes make_frame(int b0, const Bytes& payload, bool masked,
                        std::array<int, 4> key = {0x37, 0xfa, 0x21, 0x3d},
                        int force_len_bytes = 0) {
  Bytes out;
  out.push_back(static_cast<std::byte>(b0));
  const std::uint64_t n = payload.size();
  const int mbit = masked ? 0x80 : 0;
  int len_bytes = force_len_bytes;
  if (len_bytes == 0) len_bytes = n <= 125 ? 0 : (n <= 0xFFFF ? 2 : 8);
  if (len_bytes == 0) {
    out.push_back(static_cast<std::byte>(mbit | static_cast<int>(n)));
  } else if (len_bytes == 2) {
    out.push_back(static_cast<std::byte>(mbit | 126));
    out.push_back(static_cast<std::byte>(n >> 8));
    out.push_back(static_cast<std::byte>(n & 0xFF));
  } else {
    out.push_back(static_cast<std::byte>(mbit | 127));
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<std::byte>((n >> (8 * i)) & 0xFF));
  }
  if (masked)
    for (int k : key) out.push_back(static_cast<std::byte>(k));
  for (std::size_t i = 0; i < payload.size(); ++i)
    out.push_back(masked ? payload[i] ^ static_cast<std::byte>(key[i % 4]) : payload[i]);
  return out;
}

/// A frame as a client sends it (masked) or a server sends it (not masked).
inline Bytes client_frame(int b0, const Bytes& payload) {
  return make_frame(b0, payload, true);
}
inline Bytes server_frame(int b0, const Bytes& payload) {
  return make_frame(b0, payload, false);
}

/// One frame decoded by the naive parser.
struct WireFrame {
  int b0 = 0;
  bool masked = false;
  Bytes payload;  ///< unmasked
  bool operator==(const WireFrame&) const = default;
};

/// Parses a whole sequence of frames; `ok` is false when the bytes are not a
/// sequence of complete, minimally encoded frames.
inline std::vector<WireFrame> parse_frames(std::span<const std::byte> in, bool* ok = nullptr) {
  std::vector<WireFrame> out;
  std::size_t i = 0;
  bool good = true;
  auto at = [&](std::size_t k) { return static_cast<std::uint64_t>(in[k]); };
  while (i < in.size()) {
    if (in.size() - i < 2) {
      good = false;
      break;
    }
    WireFrame f;
    f.b0 = static_cast<int>(at(i));
    f.masked = (at(i + 1) & 0x80) != 0;
    std::uint64_t n = at(i + 1) & 0x7F;
    std::size_t pos = i + 2;
    if (n == 126) {
      if (in.size() < pos + 2) {
        good = false;
        break;
      }
      n = (at(pos) << 8) | at(pos + 1);
      if (n < 126) good = false;
      pos += 2;
    } else if (n == 127) {
      if (in.size() < pos + 8) {
        good = false;
        break;
      }
      n = 0;
      for (int k = 0; k < 8; ++k) n = (n << 8) | at(pos + k);
      if (n <= 0xFFFF) good = false;
      pos += 8;
    }
    std::byte key[4] = {};
    if (f.masked) {
      if (in.size() < pos + 4) {
        good = false;
        break;
      }
      for (int k = 0; k < 4; ++k) key[k] = in[pos + k];
      pos += 4;
    }
    if (in.size() - pos < n) {
      good = false;
      break;
    }
    for (std::uint64_t k = 0; k < n; ++k)
      f.payload.push_back(f.masked ? in[pos + k] ^ key[k % 4] : in[pos + k]);
    i = pos + n;
    out.push_back(std::move(f));
  }
  if (ok) *ok = good;
  return out;
}

/// The close code in a close frame's payload (1005 when empty, -1 when malformed).
inline int close_code_of(const WireFrame& f) {
  if ((f.b0 & 0x0F) != 0x8) return -1;
  if (f.payload.empty()) return 1005;
  if (f.payload.size() < 2) return -1;
  return (static_cast<int>(f.payload[0]) << 8) | static_cast<int>(f.payload[1]);
}

/// Records events as comparable strings.
class Recorder : public protocol::ConnectionHandler {
public:
  std::vector<std::string> events;
  std::error_code error;
  protocol::Connection* echo_to = nullptr;  ///< when set, echo each message there

  void on_message(SocketMessageType type, std::span<const std::byte> data, bool complete) override {
    events.push_back(std::string(type == SocketMessageType::utf8 ? "text" : "binary") +
                     (complete ? "" : "+") + ":" + str(data));
    if (echo_to != nullptr && complete) echo_to->send_message(type, data);
  }
  void on_ping(std::span<const std::byte> p) override { events.push_back("ping:" + str(p)); }
  void on_pong(std::span<const std::byte> p) override { events.push_back("pong:" + str(p)); }
  void on_close(std::uint16_t code, std::string_view reason) override {
    events.push_back("close:" + std::to_string(code) + ":" + std::string(reason));
  }
  void on_error(std::error_code ec) override {
    error = ec;
    events.push_back("error:" + ec.message());
  }
};

/// Full-mode events from partial-mode ones: "text+:a", "text:b" -> "text:ab";
/// pieces of a message that never completes (error or close) are dropped.
inline std::vector<std::string> merge_pieces(const std::vector<std::string>& ev) {
  std::vector<std::string> out;
  std::string pending;
  for (const auto& e : ev) {
    auto colon = e.find(':');
    std::string kind = e.substr(0, colon);
    if (kind == "text+" || kind == "binary+") {
      pending += e.substr(colon + 1);
      continue;
    }
    if (kind == "text" || kind == "binary") {
      out.push_back(kind + ":" + pending + e.substr(colon + 1));
      pending.clear();
      continue;
    }
    out.push_back(e);
  }
  return out;
}

/// Result of feeding a stream to a fresh connection.
struct Run {
  std::vector<std::string> events;
  Bytes output;
  protocol::ConnectionState state{};
};

/// Feeds `input` to a new connection in pieces whose sizes are given by `cuts`
/// (positions where the input is split), collects events and output.
inline Run run_split(const protocol::ConnectionConfig& cfg, Bytes input,
                     const std::vector<std::size_t>& cuts) {
  protocol::Connection c(cfg);
  Recorder r;
  std::size_t start = 0;
  std::vector<std::size_t> ends = cuts;
  ends.push_back(input.size());
  for (std::size_t e : ends) {
    if (e > input.size()) e = input.size();
    if (e < start) continue;
    c.receive(std::span(input.data() + start, e - start), r);
    start = e;
  }
  Run out;
  out.events = r.events;
  auto w = c.begin_write();
  out.output.assign(w.begin(), w.end());
  c.end_write();
  out.state = c.state();
  return out;
}

inline Run run_whole(const protocol::ConnectionConfig& cfg, const Bytes& input) {
  return run_split(cfg, input, {});
}

/// Random cut positions, sorted, seeded.
inline std::vector<std::size_t> random_cuts(std::size_t size, std::mt19937& rng) {
  std::vector<std::size_t> cuts;
  if (size == 0) return cuts;
  std::uniform_int_distribution<std::size_t> count(0, size < 8 ? size : 8);
  std::uniform_int_distribution<std::size_t> pos(0, size);
  for (std::size_t i = count(rng); i > 0; --i) cuts.push_back(pos(rng));
  std::sort(cuts.begin(), cuts.end());
  return cuts;
}

inline protocol::ConnectionConfig server_config() {
  protocol::ConnectionConfig c;
  c.role = protocol::Role::server;
  return c;
}
inline protocol::ConnectionConfig client_config() {
  protocol::ConnectionConfig c;
  c.role = protocol::Role::client;
  return c;
}

}  // namespace duplex::test
