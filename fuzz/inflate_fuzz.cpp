// Fuzzes the permessage-deflate decoder with arbitrary compressed messages, and
// the encoder/decoder pair with arbitrary plain messages.
// Input: byte 0 = flags (bit 0: no context takeover, bits 1-3: window bits - 8,
// bits 4-7: piece size selector), byte 1 = limit selector, then the data.
// Invariants: no crash; never more than limit + 1 bytes of output; only the two
// documented errors; what the encoder makes inflates back to the input.
#include <duplex/error.hpp>
#include <duplex/protocol/connection.hpp>
#include <duplex/protocol/deflate.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

using namespace duplex::protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::uint8_t flags = data[0];
  const std::uint64_t limit = std::uint64_t{1} << (data[1] % 21);  // 1 B .. 1 MiB
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data + 2), size - 2);

  DeflateParams p;
  p.server_no_context_takeover = flags & 1;
  p.client_no_context_takeover = flags & 1;
  p.server_max_window_bits = static_cast<std::uint8_t>(8 + ((flags >> 1) & 7));
  p.client_max_window_bits = p.server_max_window_bits;
  p.compress_threshold = 0;
  const std::size_t piece = 1 + (flags >> 4) * 17;

  // 1. Arbitrary input as two compressed messages, in pieces.
  DeflateDecoder d(p, Role::client);
  std::vector<std::byte> out;
  for (int message = 0; message < 2; ++message) {
    out.clear();
    std::error_code ec;
    for (std::size_t at = 0;; at += piece) {
      std::size_t n = at < in.size() ? std::min(piece, in.size() - at) : 0;
      bool fin = at + n >= in.size();
      ec = d.inflate(in.subspan(std::min(at, in.size()), n), fin, out, limit);
      if (out.size() > limit + 1) std::abort();
      if (ec || fin) break;
    }
    if (ec && ec != duplex::error::bad_compressed_data && ec != duplex::error::message_too_big)
      std::abort();
    if (!ec && out.size() > limit) std::abort();
    if (d.in_message()) std::abort();
  }

  // 2. The input as plain text: compress in pieces and inflate back.
  DeflateEncoder e(p, Role::server);
  if (!e.enabled()) return 0;  // 8-bit window: sent uncompressed
  DeflateDecoder back(p, Role::client);
  for (int message = 0; message < 2; ++message) {
    std::vector<std::byte> c;
    out.clear();
    for (std::size_t at = 0;; at += piece) {
      std::size_t n = at < in.size() ? std::min(piece, in.size() - at) : 0;
      bool fin = at + n >= in.size();
      c.clear();
      e.compress(in.subspan(std::min(at, in.size()), n), fin, c);
      if (back.inflate(c, fin, out, in.size())) std::abort();
      if (fin) break;
    }
    if (out.size() != in.size() || (!in.empty() && std::memcmp(out.data(), in.data(), in.size())))
      std::abort();
  }
  return 0;
}
