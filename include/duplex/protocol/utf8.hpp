// duplex/protocol/utf8.hpp: incremental UTF-8 validation (RFC 3629).
//
// Part of the sans-I/O core. Thread safety: a Utf8Validator is a plain value;
// distinct objects may be used from distinct threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace duplex::protocol {

/// Validates UTF-8 text fed in pieces of any size, so a text message can be
/// checked fragment by fragment and rejected at the first byte after which no
/// continuation could make it valid (RFC 6455 8.1: fail the connection as soon
/// as invalid UTF-8 is seen). Rejects overlong forms, surrogates (U+D800 to
/// U+DFFF), code points above U+10FFFF and stray continuation bytes. ASCII runs
/// are checked a word at a time.
class Utf8Validator {
public:
  /// Feeds the next piece. Returns false once the text so far can no longer be
  /// the start of valid UTF-8; it then stays false until reset().
  bool feed(std::span<const std::byte> data) noexcept;
  bool feed(std::string_view data) noexcept {
    return feed(std::as_bytes(std::span(data.data(), data.size())));
  }
  /// True when everything fed is valid and ends on a code point boundary (call
  /// at the end of the message: a truncated sequence there is invalid).
  [[nodiscard]] bool complete() const noexcept { return state_ == 0; }
  /// True while no invalid byte has been seen.
  [[nodiscard]] bool ok() const noexcept { return state_ != reject_; }
  void reset() noexcept { state_ = 0; }

private:
  static constexpr std::uint8_t reject_ = 0xFF;
  std::uint8_t state_ = 0;     ///< 0: at a boundary; reject_: failed; else mid-sequence
  std::uint32_t partial_ = 0;  ///< implementation state for a split sequence
};

/// Whole-buffer check: true when `text` is complete, valid UTF-8.
bool is_valid_utf8(std::string_view text) noexcept;
bool is_valid_utf8(std::span<const std::byte> text) noexcept;

}  // namespace duplex::protocol
