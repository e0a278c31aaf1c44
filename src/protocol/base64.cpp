// Base64 encoder and strict decoder (RFC 4648 section 4).
#include "protocol/base64.hpp"

#include <array>

namespace duplex::detail {
namespace {

constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// 0-63 for alphabet symbols, 64 for '=', 255 for anything else.
constexpr std::uint8_t pad_value = 64;
constexpr std::uint8_t invalid_value = 255;
constexpr std::array<std::uint8_t, 256> make_decode_table() {
  std::array<std::uint8_t, 256> t{};
  for (auto& v : t) v = invalid_value;
  for (std::uint8_t i = 0; i < 64; ++i) t[static_cast<unsigned char>(alphabet[i])] = i;
  t['='] = pad_value;
  return t;
}
constexpr auto decode_table = make_decode_table();

}  // namespace

char* base64_encode(std::span<const std::uint8_t> bytes, char* p) noexcept {
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v = (std::uint32_t{bytes[i]} << 16) | (std::uint32_t{bytes[i + 1]} << 8) |
                            std::uint32_t{bytes[i + 2]};
    p[0] = alphabet[(v >> 18) & 63];
    p[1] = alphabet[(v >> 12) & 63];
    p[2] = alphabet[(v >> 6) & 63];
    p[3] = alphabet[v & 63];
    p += 4;
  }
  // RFC 4648 4: a final group of 1 or 2 bytes is padded with '=' to 4 symbols.
  const std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    const std::uint32_t v = std::uint32_t{bytes[i]} << 16;
    *p++ = alphabet[(v >> 18) & 63];
    *p++ = alphabet[(v >> 12) & 63];
    *p++ = '=';
    *p++ = '=';
  } else if (rest == 2) {
    const std::uint32_t v = (std::uint32_t{bytes[i]} << 16) | (std::uint32_t{bytes[i + 1]} << 8);
    *p++ = alphabet[(v >> 18) & 63];
    *p++ = alphabet[(v >> 12) & 63];
    *p++ = alphabet[(v >> 6) & 63];
    *p++ = '=';
  }
  return p;
}

void base64_encode(std::span<const std::uint8_t> bytes, std::string& out) {
  const std::size_t start = out.size();
  out.resize(start + base64_encoded_size(bytes.size()));
  base64_encode(bytes, out.data() + start);
}

std::string base64_encode(std::span<const std::uint8_t> bytes) {
  std::string out;
  base64_encode(bytes, out);
  return out;
}

std::string base64_encode(std::string_view bytes) {
  return base64_encode(
      std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
}

namespace {

// The canonical decoder: calls emit(byte) for each byte of `text`, in order;
// false (after emitting some bytes, perhaps) when `text` is not canonical.
template <class Emit>
bool decode(std::string_view text, Emit&& emit) {
  // RFC 4648 3.2: padded text comes in whole groups of 4 symbols.
  if (text.size() % 4 != 0) return false;
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const std::uint8_t a = decode_table[static_cast<unsigned char>(text[i])];
    const std::uint8_t b = decode_table[static_cast<unsigned char>(text[i + 1])];
    const std::uint8_t c = decode_table[static_cast<unsigned char>(text[i + 2])];
    const std::uint8_t d = decode_table[static_cast<unsigned char>(text[i + 3])];
    const bool last = i + 4 == text.size();
    if (a >= 64 || b >= 64) return false;
    if (c < 64 && d < 64) {
      const std::uint32_t v = (std::uint32_t{a} << 18) | (std::uint32_t{b} << 12) |
                              (std::uint32_t{c} << 6) | std::uint32_t{d};
      emit(static_cast<std::uint8_t>(v >> 16));
      emit(static_cast<std::uint8_t>(v >> 8));
      emit(static_cast<std::uint8_t>(v));
      continue;
    }
    // RFC 4648 3.3: padding only ends the text, and is never followed by data.
    if (!last) return false;
    if (c == pad_value && d == pad_value) {
      // RFC 4648 3.5: the 4 unused bits must be zero for a canonical encoding.
      if ((b & 0x0F) != 0) return false;
      emit(static_cast<std::uint8_t>((a << 2) | (b >> 4)));
    } else if (c < 64 && d == pad_value) {
      // RFC 4648 3.5: the 2 unused bits must be zero.
      if ((c & 0x03) != 0) return false;
      emit(static_cast<std::uint8_t>((a << 2) | (b >> 4)));
      emit(static_cast<std::uint8_t>(((b & 0x0F) << 4) | (c >> 2)));
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text) {
  std::vector<std::uint8_t> out;
  out.reserve(text.size() / 4 * 3);
  if (!decode(text, [&out](std::uint8_t byte) { out.push_back(byte); })) return std::nullopt;
  return out;
}

std::optional<std::size_t> base64_decoded_size(std::string_view text) noexcept {
  std::size_t n = 0;
  if (!decode(text, [&n](std::uint8_t) { ++n; })) return std::nullopt;
  return n;
}

bool base64_decodes_to(std::string_view text, std::size_t n) noexcept {
  if (text.size() != base64_encoded_size(n)) return false;
  // RFC 4648 4: 1 or 2 bytes in the last group leave 2 or 1 '=' after it.
  const std::size_t pad = (3 - n % 3) % 3;
  const std::size_t symbols = text.size() - pad;
  // Alphabet symbols decode to 0-63; '=' (64) and anything else (255) set a
  // higher bit, so one test after the loop finds them all.
  const auto value = [&text](std::size_t i) {
    return decode_table[static_cast<unsigned char>(text[i])];
  };
  std::uint8_t all = 0;
  std::size_t i = 0;
  for (; i + 4 <= symbols; i += 4)
    all |= static_cast<std::uint8_t>(value(i) | value(i + 1) | value(i + 2) | value(i + 3));
  for (; i < symbols; ++i) all |= value(i);
  if (all >= 64) return false;
  for (i = symbols; i < text.size(); ++i)
    if (text[i] != '=') return false;
  if (pad == 0) return true;
  // RFC 4648 3.5: the unused low bits of the last symbol are zero (4 of them
  // before "==", 2 before "=").
  return (value(symbols - 1) & (pad == 2 ? 0x0F : 0x03)) == 0;
}

}  // namespace duplex::detail
