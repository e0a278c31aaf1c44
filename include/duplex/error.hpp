// duplex/error.hpp: the library's error codes and the WebErrorStatus map.
//
// Every failure in duplex is a std::error_code. Codes of the `duplex::error`
// enumeration come from the protocol core, the handshake and the session; HTTP
// status codes received during the opening handshake use `http_category()`,
// those an HTTP proxy answers to CONNECT `proxy_category()`; Asio's and
// OpenSSL's codes pass through unchanged. `get_status(ec)` maps any of
// them to the Windows-style `WebErrorStatus`.
//
// Thread safety: everything here is a pure function or a constant.
#pragma once

#include <cstdint>
#include <string_view>
#include <system_error>

namespace duplex {

/// One enumerator per distinct failure. Values are stable (they appear in logs).
enum class error {
  // --- RFC 6455 framing and messages (the connection is failed with the
  //     close code given by close_code_for()) --------------------------------
  reserved_bits = 1,        ///< RSV1-3 set without an extension that claims it (1002)
  reserved_opcode,          ///< opcode 3-7 or 0xB-0xF (1002)
  fragmented_control,       ///< control frame without FIN (1002)
  control_too_long,         ///< control frame payload over 125 bytes (1002)
  unexpected_continuation,  ///< continuation frame outside a fragmented message (1002)
  expected_continuation,    ///< new data frame inside a fragmented message (1002)
  non_minimal_length,       ///< length not in its shortest encoding (1002)
  length_top_bit,           ///< 64-bit length with the most significant bit set (1002)
  unmasked_client_frame,    ///< a server received an unmasked frame (1002)
  masked_server_frame,      ///< a client received a masked frame (1002)
  invalid_close_payload,    ///< close frame with a one-byte payload (1002)
  invalid_close_code,       ///< close code not allowed on the wire (1002)
  invalid_utf8,             ///< text message or close reason not valid UTF-8 (1007)
  message_too_big,          ///< message over the max message size (1009)
  bad_compressed_data,      ///< permessage-deflate data that does not inflate (1007)

  // --- Opening handshake ------------------------------------------------------
  bad_http_message,      ///< malformed HTTP request or response
  header_too_large,      ///< header block over the limit
  bad_method,            ///< request method is not GET
  bad_http_version,      ///< not HTTP/1.1 or later
  missing_host,          ///< request without Host
  bad_upgrade,           ///< Upgrade header missing or without "websocket"
  bad_connection,        ///< Connection header missing or without "upgrade"
  bad_key,               ///< Sec-WebSocket-Key missing or not 16 bytes in base64
  bad_version,           ///< Sec-WebSocket-Version is not 13
  bad_accept,            ///< Sec-WebSocket-Accept does not match the key
  unexpected_status,     ///< server answered with a status other than 101
  unexpected_protocol,   ///< server selected a subprotocol that was not offered
  unexpected_extension,  ///< server accepted an extension that was not offered
  bad_extension_offer,   ///< malformed or invalid extension parameters
  handshake_refused,     ///< the server side refused the request (hook or limit)

  // --- Session ------------------------------------------------------------------
  closed,                ///< the WebSocket is closed (normal close handshake done)
  not_connected,         ///< operation needs an open connection
  already_connected,     ///< connect or a control setter after connect
  timed_out,             ///< an operation's timeout expired
  operation_aborted,     ///< the socket was destroyed or the operation cancelled
  connection_reset,      ///< the peer dropped the TCP connection (close 1006)
  buffer_full,           ///< the outbound buffer is full (backpressure)
  dead_peer,             ///< no pong within the keep-alive pong timeout
  host_not_resolved,     ///< the host name did not resolve
  cannot_connect,        ///< no resolved address accepted the TCP connection
  proxy_failed,          ///< SOCKS5 refusal, bad proxy answer (HTTP refusal: proxy_category)
  certificate_rejected,  ///< the custom validation handler rejected the certificate
  /// The trusted CA file, client certificate or key set on the control could
  /// not be loaded at connect (changed since the setter checked it).
  certificate_file_unusable,
  /// A send while an auto-reconnecting socket is disconnected, with
  /// ReconnectSendPolicy::fail (or a frame send, under either policy).
  reconnecting,
  /// A send while an auto-reconnecting socket is disconnected, with
  /// ReconnectSendPolicy::queue, when the queue is at its bound
  /// (ReconnectOptions::max_queued_messages or max_queued_bytes).
  reconnect_queue_full,
};

/// Groups of errors, for `ec == condition::protocol_violation` tests.
enum class condition {
  protocol_violation = 1,  ///< the peer broke RFC 6455 / RFC 7692 framing rules
  handshake_failed,        ///< the opening handshake did not succeed
  timed_out,               ///< any timeout
};

/// The error category of `duplex::error`. Name: "duplex".
const std::error_category& error_category() noexcept;
/// The category of `duplex::condition`. Name: "duplex.condition".
const std::error_category& condition_category() noexcept;
/// HTTP status codes received in the opening handshake; value = status code.
const std::error_category& http_category() noexcept;
/// HTTP status codes an HTTP proxy answered to CONNECT other than 2xx (it could
/// not, or would not, open the tunnel); value = status code, message e.g.
/// "proxy answered CONNECT with HTTP status 502 (the tunnel to the server was
/// not opened)". Name: "duplex.proxy".
/// get_status() maps them to `cannot_connect` (407 to
/// `proxy_authentication_required`), never to the server's statuses.
const std::error_category& proxy_category() noexcept;
/// OpenSSL X.509 verification results (value = X509_V_ERR_*), for a server
/// certificate that failed verification during a wss:// connect. Defined in the
/// `duplex` library.
const std::error_category& x509_category() noexcept;

std::error_code make_error_code(error e) noexcept;
std::error_condition make_error_condition(condition c) noexcept;
/// An error_code holding HTTP status `status` in http_category().
std::error_code make_http_error(int status) noexcept;
/// An error_code holding a proxy's HTTP status `status` in proxy_category().
std::error_code make_proxy_error(int status) noexcept;

/// The close code a protocol error is failed with (RFC 6455 7.4.1): 1002 for
/// framing errors, 1007 for invalid data, 1009 for too big; 1011 otherwise.
std::uint16_t close_code_for(error e) noexcept;

/// The Windows.Web.WebErrorStatus values that can occur here; numeric values
/// match Windows (HTTP statuses are their own number).
enum class WebErrorStatus : int {
  unknown = 0,
  certificate_common_name_is_incorrect = 1,
  certificate_expired = 2,
  certificate_contains_errors = 3,
  certificate_revoked = 4,
  certificate_is_invalid = 5,
  server_unreachable = 6,
  timeout = 7,
  error_http_invalid_server_response = 8,
  connection_aborted = 9,
  connection_reset = 10,
  disconnected = 11,
  cannot_connect = 14,
  host_name_not_resolved = 15,
  operation_canceled = 16,
  unexpected_status_code = 18,
  unexpected_client_error = 20,
  unexpected_server_error = 21,
  multiple_choices = 300,
  moved_permanently = 301,
  found = 302,
  see_other = 303,
  not_modified = 304,
  use_proxy = 305,
  temporary_redirect = 307,
  bad_request = 400,
  unauthorized = 401,
  payment_required = 402,
  forbidden = 403,
  not_found = 404,
  method_not_allowed = 405,
  not_acceptable = 406,
  proxy_authentication_required = 407,
  request_timeout = 408,
  conflict = 409,
  gone = 410,
  length_required = 411,
  precondition_failed = 412,
  request_entity_too_large = 413,
  request_uri_too_long = 414,
  unsupported_media_type = 415,
  requested_range_not_satisfiable = 416,
  expectation_failed = 417,
  internal_server_error = 500,
  not_implemented = 501,
  bad_gateway = 502,
  service_unavailable = 503,
  gateway_timeout = 504,
  http_version_not_supported = 505,
};

/// Maps any error (duplex's, an HTTP status, Asio's system/netdb/misc/ssl
/// codes, OpenSSL's X.509 verification results) to a WebErrorStatus.
/// A default-constructed (success) code maps to `unknown`.
/// Defined in the `duplex` library (it knows Asio's and OpenSSL's categories).
WebErrorStatus get_status(std::error_code ec) noexcept;

/// The enumerator's name, e.g. "host_name_not_resolved".
std::string_view to_string(WebErrorStatus s) noexcept;

}  // namespace duplex

template <>
struct std::is_error_code_enum<duplex::error> : std::true_type {};
template <>
struct std::is_error_condition_enum<duplex::condition> : std::true_type {};
