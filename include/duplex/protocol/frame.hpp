// duplex/protocol/frame.hpp: RFC 6455 section 5 frame headers and masking.
//
// Part of the sans-I/O protocol core: pure functions on byte spans, no I/O, no
// allocation. Thread safety: all functions are reentrant.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <system_error>

namespace duplex::protocol {

/// RFC 6455 5.2 opcodes. Values 3-7 and 0xB-0xF are reserved.
enum class Opcode : std::uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA,
};

/// RFC 6455 5.5: control frames have the high bit of the opcode set.
constexpr bool is_control(Opcode op) noexcept {
  return (static_cast<std::uint8_t>(op) & 0x8) != 0;
}
/// True for the six opcodes RFC 6455 defines.
constexpr bool is_known_opcode(Opcode op) noexcept {
  auto v = static_cast<std::uint8_t>(op);
  return v <= 0x2 || (v >= 0x8 && v <= 0xA);
}

using MaskKey = std::array<std::byte, 4>;

/// A decoded frame header.
struct FrameHeader {
  bool fin = true;
  bool rsv1 = false;
  bool rsv2 = false;
  bool rsv3 = false;
  Opcode opcode = Opcode::binary;
  bool masked = false;
  MaskKey mask{};  ///< meaningful only when `masked`
  std::uint64_t payload_length = 0;
};

/// The largest header: 2 + 8 (64-bit length) + 4 (mask key).
inline constexpr std::size_t max_frame_header_size = 14;
/// RFC 6455 5.5: control frame payloads are at most 125 bytes.
inline constexpr std::size_t max_control_payload = 125;

/// Size in bytes of the encoded header for `h` (2 to 14), with the minimal
/// length encoding.
std::size_t frame_header_size(const FrameHeader& h) noexcept;

/// Parses the frame header at the start of `data`.
/// Returns the header's size (2 to 14) when it is complete, or 0 when `data`
/// holds only part of it (nothing is consumed; call again with more bytes).
/// Sets `ec` (and returns 0) on a structural error: `error::length_top_bit`
/// (RFC 6455 5.2: the most significant bit of a 64-bit length must be 0) or
/// `error::non_minimal_length` (5.2: the minimal number of bytes must be used).
/// Semantic rules (reserved bits, opcodes, control frames, masking by role) are
/// the connection's: see Connection. Works on any split of the input.
std::size_t parse_frame_header(std::span<const std::byte> data, FrameHeader& out,
                               std::error_code& ec) noexcept;

/// Writes the header `h` with the minimal length encoding into `out` and returns
/// its size (frame_header_size(h)).
std::size_t write_frame_header(const FrameHeader& h,
                               std::span<std::byte, max_frame_header_size> out) noexcept;

/// XORs `data` with `key` in place (RFC 6455 5.3), starting at byte `offset` of
/// the key (0-3), a machine word or SIMD lane at a time for any alignment and
/// length. Returns the key offset for the byte after `data`, so that a payload
/// split across reads is unmasked piece by piece. Masking is its own inverse.
std::size_t apply_mask(std::span<std::byte> data, MaskKey key, std::size_t offset = 0) noexcept;
/// True when masking large payloads uses the AVX2 loop: on x86-64 with AVX2,
/// unless the environment variable DUPLEX_NO_AVX2 was set (non-empty) when the
/// library was loaded, which keeps the SSE2 loop (for tests and comparisons).
/// Thread-safe; fixed for the life of the process.
[[nodiscard]] bool mask_uses_avx2() noexcept;

/// Copies `src` to `dst` (same size, may not overlap) while masking: the client
/// send path, one pass over the payload.
std::size_t copy_masked(std::span<std::byte> dst, std::span<const std::byte> src, MaskKey key,
                        std::size_t offset = 0) noexcept;

}  // namespace duplex::protocol
