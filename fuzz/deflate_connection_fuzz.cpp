// Fuzzes a Connection with permessage-deflate: arbitrary frames (compressed or
// not) fed whole in full mode and split in partial mode must give the same
// messages and the same error, and partial pieces but a message's last hold
// at least the partial threshold. Input: byte 0 = flags (bit 0: server role,
// bit 1: no context takeover, bits 2-7: split step), then the wire bytes.
#include <duplex/error.hpp>
#include <duplex/protocol/connection.hpp>
#include <duplex/protocol/deflate.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

using namespace duplex;
using namespace duplex::protocol;

namespace {

struct Collector : ConnectionHandler {
  std::vector<std::string> events;
  std::string pending;
  std::uint64_t limit = 0;
  std::size_t min_piece = 0;  ///< partial mode: every piece but the last is at least this
  void on_message(SocketMessageType t, std::span<const std::byte> d, bool complete) override {
    if (d.size() > limit) std::abort();
    if (!complete && d.size() < min_piece) std::abort();
    pending.append(reinterpret_cast<const char*>(d.data()), d.size());
    if (pending.size() > limit) std::abort();
    if (complete) {
      events.push_back((t == SocketMessageType::utf8 ? "t:" : "b:") + pending);
      pending.clear();
    }
  }
  void on_ping(std::span<const std::byte>) override { events.push_back("ping"); }
  void on_pong(std::span<const std::byte>) override { events.push_back("pong"); }
  void on_close(std::uint16_t code, std::string_view) override {
    events.push_back("close:" + std::to_string(code));
  }
  void on_error(std::error_code ec) override { events.push_back("error:" + ec.message()); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t flags = data[0];
  std::vector<std::byte> wire(reinterpret_cast<const std::byte*>(data + 1),
                              reinterpret_cast<const std::byte*>(data + size));
  DeflateParams p;
  p.server_no_context_takeover = flags & 2;
  p.client_no_context_takeover = flags & 2;
  ConnectionConfig cfg;
  cfg.role = (flags & 1) ? Role::server : Role::client;
  cfg.deflate = p;
  cfg.max_message_size = 1 << 16;

  Collector whole;
  whole.limit = cfg.max_message_size;
  {
    std::vector<std::byte> copy = wire;
    Connection c(cfg);
    c.receive(copy, whole);
  }
  Collector split;
  split.limit = cfg.max_message_size;
  {
    ConnectionConfig partial = cfg;
    partial.partial_messages = true;
    // Pieces gathered to a threshold that varies with the input (1..512).
    partial.partial_message_threshold = 1 + (size * 31) % 512;
    split.min_piece = partial.partial_message_threshold;
    Connection c(partial);
    std::vector<std::byte> copy = wire;
    const std::size_t step = 1 + (flags >> 2);
    for (std::size_t at = 0; at < copy.size(); at += step)
      c.receive(std::span(copy).subspan(at, std::min(step, copy.size() - at)), split);
  }
  if (whole.events != split.events) std::abort();
  return 0;
}
