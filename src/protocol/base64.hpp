// Base64 (RFC 4648 section 4, the standard alphabet with padding) for the
// opening handshake: Sec-WebSocket-Key and Sec-WebSocket-Accept.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace duplex::detail {

/// The length of the base64 text for `n` bytes (padding included).
constexpr std::size_t base64_encoded_size(std::size_t n) noexcept {
  return (n + 2) / 3 * 4;
}

/// Writes the base64 text of `bytes` at `out`, which has room for
/// base64_encoded_size(bytes.size()) characters; returns the end of the text.
char* base64_encode(std::span<const std::uint8_t> bytes, char* out) noexcept;

/// Appends the base64 text of `bytes` to `out`.
void base64_encode(std::span<const std::uint8_t> bytes, std::string& out);

/// The base64 text of `bytes`.
std::string base64_encode(std::span<const std::uint8_t> bytes);
std::string base64_encode(std::string_view bytes);

/// Decodes canonical base64 text: the standard alphabet only, a length that is
/// a multiple of 4, padding only at the end, and zero bits in the unused low
/// bits of the last symbol (RFC 4648 3.5, so each byte string has exactly one
/// accepted text). Anything else, white space included, gives std::nullopt.
std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text);
/// How many bytes base64_decode(text) would give (std::nullopt when it gives
/// none), without making them: checks a text that is only compared.
std::optional<std::size_t> base64_decoded_size(std::string_view text) noexcept;
/// True when base64_decode(text) would give exactly `n` bytes: the same rules,
/// checked in one pass over the text without decoding it.
bool base64_decodes_to(std::string_view text, std::size_t n) noexcept;

}  // namespace duplex::detail
