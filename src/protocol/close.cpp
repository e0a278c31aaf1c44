// RFC 6455 5.5.1 and 7.4: close frame payloads and close codes.
#include <duplex/error.hpp>
#include <duplex/protocol/close.hpp>
#include <duplex/protocol/frame.hpp>
#include <duplex/protocol/utf8.hpp>

#include <cstring>

namespace duplex::protocol {

bool is_valid_close_code(std::uint16_t code) noexcept {
  // RFC 6455 7.4.1 and the IANA registry: 1004 is reserved, 1005, 1006 and 1015
  // are reserved for reporting and never sent; 3000-4999 are for libraries and
  // applications; everything else is unassigned or reserved.
  if (code >= 1000 && code <= 1003) return true;
  if (code >= 1007 && code <= 1014) return true;
  return code >= 3000 && code <= 4999;
}

std::error_code parse_close_payload(std::span<const std::byte> payload, CloseInfo& out) noexcept {
  out = CloseInfo{};
  if (payload.empty()) return {};
  // RFC 6455 5.5: control frame payloads are at most 125 bytes.
  if (payload.size() > max_control_payload) return make_error_code(error::control_too_long);
  // RFC 6455 5.5.1: a body starts with a two-byte code, so one byte is malformed.
  if (payload.size() == 1) return make_error_code(error::invalid_close_payload);
  const auto code = static_cast<std::uint16_t>((static_cast<unsigned>(payload[0]) << 8) |
                                               static_cast<unsigned>(payload[1]));
  if (!is_valid_close_code(code)) return make_error_code(error::invalid_close_code);
  const auto reason = payload.subspan(2);
  // RFC 6455 5.5.1: the reason is UTF-8 text.
  if (!is_valid_utf8(reason)) return make_error_code(error::invalid_utf8);
  out.code = code;
  out.reason = std::string_view(reinterpret_cast<const char*>(reason.data()), reason.size());
  return {};
}

std::size_t write_close_payload(std::uint16_t code, std::string_view reason,
                                std::span<std::byte, 125> out) noexcept {
  if (code == close_code::no_status) return 0;
  out[0] = std::byte{static_cast<std::uint8_t>(code >> 8)};
  out[1] = std::byte{static_cast<std::uint8_t>(code)};
  const std::size_t n = reason.size() < max_close_reason ? reason.size() : max_close_reason;
  if (n != 0) std::memcpy(out.data() + 2, reason.data(), n);
  return 2 + n;
}

std::string_view check_close_arguments(std::uint16_t code, std::string_view reason) noexcept {
  // RFC 6455 5.5.1: without a code there is no room for a reason.
  if (code == close_code::no_status) {
    if (!reason.empty()) return "reason: must be empty when no close code (1005) is sent";
    return {};
  }
  // RFC 6455 7.4: only registered codes and 3000-4999 may be sent.
  if (!is_valid_close_code(code))
    return "code: must be 1000-1003, 1007-1014 or 3000-4999 (RFC 6455 7.4)";
  // RFC 6455 5.5: 125 bytes of payload, 2 of them for the code.
  if (reason.size() > max_close_reason) return "reason: must be at most 123 bytes (RFC 6455 5.5)";
  // RFC 6455 5.5.1: the reason is UTF-8 text.
  if (!is_valid_utf8(reason)) return "reason: must be valid UTF-8 (RFC 6455 5.5.1)";
  return {};
}

}  // namespace duplex::protocol
