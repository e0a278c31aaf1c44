// duplex/protocol/close.hpp: close frame payloads and close codes (RFC 6455 5.5.1, 7.4).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <system_error>

namespace duplex::protocol {

/// Close status codes (RFC 6455 7.4.1 and the IANA registry).
namespace close_code {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;
inline constexpr std::uint16_t protocol_error = 1002;
inline constexpr std::uint16_t unsupported_data = 1003;
inline constexpr std::uint16_t no_status = 1005;  ///< never on the wire: no code received
inline constexpr std::uint16_t abnormal = 1006;   ///< never on the wire: dropped connection
inline constexpr std::uint16_t invalid_payload = 1007;
inline constexpr std::uint16_t policy_violation = 1008;
inline constexpr std::uint16_t message_too_big = 1009;
inline constexpr std::uint16_t mandatory_extension = 1010;
inline constexpr std::uint16_t internal_error = 1011;
inline constexpr std::uint16_t service_restart = 1012;
inline constexpr std::uint16_t try_again_later = 1013;
inline constexpr std::uint16_t bad_gateway = 1014;
inline constexpr std::uint16_t tls_handshake = 1015;  ///< never on the wire
}  // namespace close_code

/// True for a code that may appear in a close frame: 1000-1003, 1007-1014
/// (registered), and 3000-4999 (libraries, applications). 1004-1006, 1015,
/// 0-999, 1016-2999 and 5000+ are rejected.
bool is_valid_close_code(std::uint16_t code) noexcept;

/// RFC 6455 5.5: a close payload holds at most 125 bytes, 2 for the code.
inline constexpr std::size_t max_close_reason = 123;

struct CloseInfo {
  std::uint16_t code = close_code::no_status;
  std::string_view reason;  ///< views the parsed payload
};

/// Parses a received close payload: empty gives code 1005 and no reason; one byte
/// is `error::invalid_close_payload`; a code that is not valid on the wire is
/// `error::invalid_close_code`; a reason that is not UTF-8 is `error::invalid_utf8`.
std::error_code parse_close_payload(std::span<const std::byte> payload, CloseInfo& out) noexcept;

/// Writes a close payload (code in network order, then the reason) into `out` and
/// returns its size. `code` 1005 writes an empty payload (no code). The caller
/// checks arguments first with check_close_arguments.
std::size_t write_close_payload(std::uint16_t code, std::string_view reason,
                                std::span<std::byte, 125> out) noexcept;

/// Checks a close the local side wants to send: code 1005 with an empty reason
/// (no status), or a valid code with a UTF-8 reason of at most 123 bytes.
/// Returns a message naming the broken rule, or an empty view when valid.
std::string_view check_close_arguments(std::uint16_t code, std::string_view reason) noexcept;

}  // namespace duplex::protocol
