// The duplex error category, its conditions, and the HTTP status category.
#include <duplex/error.hpp>

#include <string>

namespace duplex {
namespace {

const char* describe(error e) noexcept {
  switch (e) {
    case error::reserved_bits: return "reserved bit set without a negotiated extension";
    case error::reserved_opcode: return "reserved opcode";
    case error::fragmented_control: return "fragmented control frame";
    case error::control_too_long: return "control frame payload longer than 125 bytes";
    case error::unexpected_continuation: return "continuation frame outside a fragmented message";
    case error::expected_continuation: return "new data frame inside a fragmented message";
    case error::non_minimal_length: return "frame length not minimally encoded";
    case error::length_top_bit: return "64-bit frame length with the top bit set";
    case error::unmasked_client_frame: return "unmasked frame from a client";
    case error::masked_server_frame: return "masked frame from a server";
    case error::invalid_close_payload: return "close frame with a one-byte payload";
    case error::invalid_close_code: return "invalid close code";
    case error::invalid_utf8: return "invalid UTF-8 in text";
    case error::message_too_big: return "message larger than the maximum message size";
    case error::bad_compressed_data: return "compressed data does not inflate";
    case error::bad_http_message: return "malformed HTTP message";
    case error::header_too_large: return "HTTP header block too large";
    case error::bad_method: return "handshake request method is not GET";
    case error::bad_http_version: return "HTTP version is not 1.1 or later";
    case error::missing_host: return "handshake request without Host";
    case error::bad_upgrade: return "missing or wrong Upgrade header";
    case error::bad_connection: return "missing or wrong Connection header";
    case error::bad_key: return "missing or invalid Sec-WebSocket-Key";
    case error::bad_version: return "unsupported Sec-WebSocket-Version (13 is required)";
    case error::bad_accept: return "Sec-WebSocket-Accept does not match the key";
    case error::unexpected_status: return "server did not answer 101 Switching Protocols";
    case error::unexpected_protocol: return "server selected a subprotocol that was not offered";
    case error::unexpected_extension: return "server accepted an extension that was not offered";
    case error::bad_extension_offer: return "invalid extension parameters";
    case error::handshake_refused: return "handshake refused";
    case error::closed: return "the WebSocket is closed";
    case error::not_connected: return "the WebSocket is not connected";
    case error::already_connected: return "the WebSocket is already connected";
    case error::timed_out: return "operation timed out";
    case error::operation_aborted: return "operation aborted";
    case error::connection_reset: return "connection dropped by the peer";
    case error::buffer_full: return "outbound buffer full";
    case error::dead_peer: return "no pong from the peer within the keep-alive timeout";
    case error::host_not_resolved: return "host name not resolved";
    case error::cannot_connect: return "cannot connect to any resolved address";
    case error::proxy_failed: return "proxy refused or failed";
    case error::certificate_rejected:
      return "server certificate rejected by the validation handler";
    case error::certificate_file_unusable:
      return "the trusted CA file, client certificate or key cannot be loaded";
    case error::reconnecting: return "the connection dropped and is being re-established";
    case error::reconnect_queue_full: return "the queue of sends waiting for the reconnect is full";
  }
  return "unknown duplex error";
}

class ErrorCategory final : public std::error_category {
public:
  const char* name() const noexcept override { return "duplex"; }
  std::string message(int ev) const override { return describe(static_cast<error>(ev)); }
  std::error_condition default_error_condition(int ev) const noexcept override {
    auto e = static_cast<error>(ev);
    if (e >= error::reserved_bits && e <= error::bad_compressed_data)
      return condition::protocol_violation;
    if (e >= error::bad_http_message && e <= error::handshake_refused)
      return condition::handshake_failed;
    if (e == error::timed_out) return condition::timed_out;
    return {ev, *this};
  }
};

class ConditionCategory final : public std::error_category {
public:
  const char* name() const noexcept override { return "duplex.condition"; }
  std::string message(int ev) const override {
    switch (static_cast<condition>(ev)) {
      case condition::protocol_violation: return "WebSocket protocol violation";
      case condition::handshake_failed: return "WebSocket opening handshake failed";
      case condition::timed_out: return "timed out";
    }
    return "unknown condition";
  }
  bool equivalent(const std::error_code& code, int cv) const noexcept override {
    if (code.category() == duplex::error_category())
      return code.default_error_condition() == std::error_condition(cv, *this);
    if (static_cast<condition>(cv) == condition::handshake_failed)
      return code.category() == http_category();
    if (static_cast<condition>(cv) == condition::timed_out) return code == std::errc::timed_out;
    return false;
  }
};

class HttpCategory final : public std::error_category {
public:
  const char* name() const noexcept override { return "duplex.http"; }
  std::string message(int ev) const override { return "HTTP status " + std::to_string(ev); }
};

class ProxyCategory final : public std::error_category {
public:
  const char* name() const noexcept override { return "duplex.proxy"; }
  std::string message(int ev) const override {
    return "proxy answered CONNECT with HTTP status " + std::to_string(ev) +
           " (the tunnel to the server was not opened)";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const ErrorCategory c;
  return c;
}
const std::error_category& condition_category() noexcept {
  static const ConditionCategory c;
  return c;
}
const std::error_category& http_category() noexcept {
  static const HttpCategory c;
  return c;
}
const std::error_category& proxy_category() noexcept {
  static const ProxyCategory c;
  return c;
}
std::error_code make_error_code(error e) noexcept {
  return {static_cast<int>(e), error_category()};
}
std::error_condition make_error_condition(condition c) noexcept {
  return {static_cast<int>(c), condition_category()};
}
std::error_code make_http_error(int status) noexcept {
  return {status, http_category()};
}
std::error_code make_proxy_error(int status) noexcept {
  return {status, proxy_category()};
}

std::uint16_t close_code_for(error e) noexcept {
  switch (e) {
    case error::invalid_utf8:
    case error::bad_compressed_data:
      // RFC 6455 7.4.1: 1007 for data inconsistent with the message type.
      return 1007;
    case error::message_too_big: return 1009;
    default:
      if (e >= error::reserved_bits && e <= error::invalid_close_code) return 1002;
      return 1011;
  }
}

}  // namespace duplex
