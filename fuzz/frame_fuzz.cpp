// Fuzzes the frame parser and the Connection state machine in both roles.
// Input: byte 0 picks the read sizes and options, the rest is the peer's bytes.
// Checks: identical events for whole and split input (also when fed through
// receive_holding, held bytes passed again), nothing after close or
// error, the output is a well-formed frame sequence for the role, delivered
// text is UTF-8 and within the size limit.
#include <duplex/protocol/close.hpp>
#include <duplex/protocol/connection.hpp>
#include <duplex/protocol/frame.hpp>
#include <duplex/protocol/utf8.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using namespace duplex::protocol;
using duplex::SocketMessageType;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "frame_fuzz invariant broken: %s\n", what);
  std::abort();
}

class Checker final : public ConnectionHandler {
public:
  Checker(Connection& c, bool echo) : conn_(c), echo_(echo) {}
  std::vector<std::string> events;

  void on_message(SocketMessageType t, std::span<const std::byte> d, bool complete) override {
    if (finished_) die("message after close or error");
    const auto& cfg = conn_.config();
    if (!cfg.partial_messages && !complete) die("incomplete message in full mode");
    if (!cfg.partial_messages && d.size() > cfg.max_message_size) die("message over the limit");
    if (!cfg.partial_messages && t == SocketMessageType::utf8 && !conn_.message_compressed() &&
        !is_valid_utf8(d))
      die("invalid UTF-8 delivered");
    piece_ += std::string(reinterpret_cast<const char*>(d.data()), d.size());
    if (complete) {
      events.push_back((t == SocketMessageType::utf8 ? "T:" : "B:") + piece_);
      if (echo_)
        (void)conn_.send_message(t, std::as_bytes(std::span(piece_.data(), piece_.size())));
      piece_.clear();
    }
  }
  void on_ping(std::span<const std::byte> p) override {
    if (finished_) die("ping after close or error");
    if (p.size() > 125) die("long ping");
    events.push_back("ping:" + std::string(reinterpret_cast<const char*>(p.data()), p.size()));
  }
  void on_pong(std::span<const std::byte> p) override {
    if (finished_) die("pong after close or error");
    events.push_back("pong:" + std::string(reinterpret_cast<const char*>(p.data()), p.size()));
  }
  void on_close(std::uint16_t code, std::string_view reason) override {
    if (finished_) die("second close");
    finished_ = true;
    if (code != close_code::no_status && !is_valid_close_code(code))
      die("bad close code delivered");
    if (!conn_.close_received() || !conn_.close_sent()) die("close flags");
    events.push_back("close:" + std::to_string(code) + ":" + std::string(reason));
  }
  void on_error(std::error_code ec) override {
    if (finished_) die("error after close or error");
    finished_ = true;
    if (conn_.state() != ConnectionState::closed) die("error without closed state");
    events.push_back("error:" + std::to_string(ec.value()));
  }

private:
  Connection& conn_;
  bool echo_;
  bool finished_ = false;
  std::string piece_;
};

// Checks that `out` is a sequence of complete, well-formed frames as `role`
// sends them, with at most one close frame, last.
void check_output(std::span<const std::byte> out, Role role) {
  std::size_t pos = 0;
  bool closed = false;
  while (pos < out.size()) {
    if (closed) die("frame after our close frame");
    FrameHeader h;
    std::error_code ec;
    const std::size_t n = parse_frame_header(out.subspan(pos), h, ec);
    if (ec || n == 0) die("output header does not parse");
    if (h.masked != (role == Role::client)) die("output masking does not fit the role");
    if (h.rsv2 || h.rsv3) die("output RSV2/RSV3");
    if (!is_known_opcode(h.opcode)) die("output reserved opcode");
    if (out.size() - pos - n < h.payload_length) die("output frame truncated");
    std::vector<std::byte> payload(
        out.begin() + static_cast<std::ptrdiff_t>(pos + n),
        out.begin() + static_cast<std::ptrdiff_t>(pos + n + h.payload_length));
    if (h.masked) apply_mask(payload, h.mask);
    if (is_control(h.opcode)) {
      if (!h.fin || payload.size() > 125) die("output control frame rules");
      if (h.opcode == Opcode::close) {
        CloseInfo info;
        if (parse_close_payload(payload, info)) die("output close payload invalid");
        closed = true;
      }
    }
    pos += n + static_cast<std::size_t>(h.payload_length);
  }
}

// How run() hands the bytes to the connection.
enum class Feed { whole, split, held };

std::vector<std::string> run(const std::uint8_t* data, std::size_t size, Role role,
                             std::uint8_t mode, Feed feed) {
  const bool split = feed != Feed::whole;
  ConnectionConfig cfg;
  cfg.role = role;
  cfg.partial_messages = (mode & 0x40) != 0;
  cfg.rsv1_allowed = (mode & 0x80) != 0;
  if ((mode & 0x20) != 0) cfg.max_message_size = 64;
  Connection conn(cfg);
  Checker checker(conn, (mode & 0x10) != 0);
  std::vector<std::byte> buf(reinterpret_cast<const std::byte*>(data),
                             reinterpret_cast<const std::byte*>(data) + size);
  std::vector<std::byte> wire;
  std::size_t pos = 0;
  std::uint32_t rng = 0x9E3779B9u ^ mode;
  // Feed::held: bytes receive_holding() left unconsumed, passed again in
  // front of the next read (as the session reads the rest behind them).
  std::vector<std::byte> held;
  while (pos < buf.size()) {
    std::size_t n = buf.size() - pos;
    if (split) {
      // Read sizes from the mode byte: 1..16 bytes, varying by a tiny LCG.
      rng = rng * 1664525u + 1013904223u;
      n = std::min<std::size_t>(n, 1 + ((rng >> 24) & (mode & 0x0F)));
    }
    // Each read in its own exact-size buffer, so reads past it are caught.
    std::vector<std::byte> piece(buf.begin() + static_cast<std::ptrdiff_t>(pos),
                                 buf.begin() + static_cast<std::ptrdiff_t>(pos + n));
    if (feed == Feed::held) {
      held.insert(held.end(), piece.begin(), piece.end());
      const auto r = conn.receive_holding(held, checker, std::size_t{1} << 20);
      if (r.held > held.size()) die("receive_holding held more than it was given");
      if (r.held != 0 && (r.frame_size <= r.held || r.frame_size > (std::size_t{1} << 20)))
        die("receive_holding held a frame that is whole or over the limit");
      held.erase(held.begin(), held.end() - static_cast<std::ptrdiff_t>(r.held));
    } else {
      conn.receive(piece, checker);
    }
    pos += n;
    // Drain the output now and then, as a transport would.
    if ((rng & 3) == 0 && conn.has_output()) {
      auto w = conn.begin_write();
      wire.insert(wire.end(), w.begin(), w.end());
      conn.end_write();
    }
  }
  // The rest never came: the connection keeps the held bytes.
  if (!held.empty()) conn.receive(held, checker);
  auto w = conn.begin_write();
  wire.insert(wire.end(), w.begin(), w.end());
  conn.end_write();
  check_output(wire, role);
  if (conn.close_sent() && conn.send_message(SocketMessageType::binary, {}) == std::error_code{})
    die("send after close accepted");
  std::vector<std::string> ev = std::move(checker.events);
  if (cfg.partial_messages) ev.push_back("partial");
  return ev;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  ++data;
  --size;
  for (Role role : {Role::server, Role::client}) {
    const auto whole = run(data, size, role, mode, Feed::whole);
    const auto split = run(data, size, role, mode, Feed::split);
    if (whole != split) die("events depend on how the input is split");
    if (run(data, size, role, mode, Feed::held) != whole)
      die("events depend on frames held by receive_holding");
  }
  return 0;
}
