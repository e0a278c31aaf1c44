// duplex/protocol/handshake.hpp: the RFC 6455 section 4 opening handshake.
//
// HTTP/1.1 header-block parsing (incremental, bounded), the client's request and
// the validation of the server's answer, the server's parsing of the request and
// its 101 (or error) answer. Pure functions; the key generator draws from
// OpenSSL's RAND_bytes. Thread safety: all functions are reentrant.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace duplex::protocol {

struct HttpHeader {
  std::string name;
  std::string value;  ///< surrounding white space removed
};
using HttpHeaders = std::vector<HttpHeader>;

/// RFC 9110 5.1: field names compare case-insensitively.
bool iequals(std::string_view a, std::string_view b) noexcept;
/// The value of the first header named `name`, if any.
std::optional<std::string_view> find_header(const HttpHeaders& headers,
                                            std::string_view name) noexcept;
/// True when any header named `name` holds `token` in its comma-separated list
/// (case-insensitive; repeated headers count as one list).
bool header_has_token(const HttpHeaders& headers, std::string_view name,
                      std::string_view token) noexcept;
/// The comma-separated elements of every header named `name`, trimmed, empty
/// elements dropped, in order.
std::vector<std::string> header_list(const HttpHeaders& headers, std::string_view name);

/// Bound on the header block (request line or status line included): a peer
/// that sends more is refused (431 on the server) instead of buffered forever.
inline constexpr std::size_t default_max_header_size = 16 * 1024;

struct HttpRequest {
  std::string method;
  std::string target;   ///< origin-form: "/path?query"
  int version_minor = 1;  ///< HTTP/1.<minor>
  HttpHeaders headers;
};

struct HttpResponse {
  int status = 0;
  std::string reason;
  int version_minor = 1;
  HttpHeaders headers;
};

/// Incremental parsers of a header block. Return the number of bytes of the
/// block (through the empty line) once it is complete; 0 while it is incomplete
/// and shorter than `max_size`. On malformed input set `ec` to
/// `error::bad_http_message` (or `error::header_too_large` when no end is found
/// within `max_size` bytes) and return 0. `data` is everything received so far;
/// the bytes after the block (the first WebSocket frames) are not consumed.
std::size_t parse_http_request(std::string_view data, HttpRequest& out, std::error_code& ec,
                               std::size_t max_size = default_max_header_size);
std::size_t parse_http_response(std::string_view data, HttpResponse& out,
                                std::error_code& ec,
                                std::size_t max_size = default_max_header_size);

// --- Client -------------------------------------------------------------------

/// A fresh Sec-WebSocket-Key: base64 of 16 bytes from a CSPRNG (RFC 6455 4.1).
std::string generate_key();
/// Sec-WebSocket-Accept for `key`: base64(SHA-1(key + the RFC 6455 GUID)).
std::string compute_accept(std::string_view key);

struct ClientHandshakeOptions {
  std::string host;    ///< Host header value ("example.com", "example.com:8080", "[::1]:9000")
  std::string target = "/";  ///< request target: "/path?query"
  std::string origin;  ///< Origin header; empty: none
  std::vector<std::string> protocols;  ///< Sec-WebSocket-Protocol offer, in preference order
  std::string extensions;  ///< Sec-WebSocket-Extensions offer; empty: none
  HttpHeaders headers;     ///< extra headers (the caller has checked them)
};

/// The GET request for `options` with `key`.
std::string build_client_request(const ClientHandshakeOptions& options, std::string_view key);

struct ClientHandshakeResult {
  std::string protocol;    ///< selected subprotocol; empty: none
  std::string extensions;  ///< Sec-WebSocket-Extensions answer, for the extension negotiator
};

/// Checks the server's answer (RFC 6455 4.1, client steps 1-6): status 101 (else
/// make_http_error(status)), Upgrade: websocket and Connection: upgrade (tokens,
/// case-insensitive), the accept hash for `key`, and a subprotocol only if
/// offered. Extensions are returned as they are, for the negotiator to check.
std::error_code validate_server_response(const HttpResponse& response, std::string_view key,
                                         std::span<const std::string> offered_protocols,
                                         ClientHandshakeResult& out);

// --- Server -------------------------------------------------------------------

struct ServerHandshakeRequest {
  std::string target;
  std::string host;
  std::string origin;                  ///< empty: none
  std::string key;
  std::vector<std::string> protocols;  ///< offered subprotocols, in order
  std::string extensions;              ///< raw Sec-WebSocket-Extensions offer (joined)
};

/// Checks a client's request (RFC 6455 4.2.1): GET, HTTP/1.1 or later, Host,
/// Upgrade/Connection tokens, a key that decodes to 16 bytes, version 13.
/// Errors: bad_method, bad_http_version, missing_host, bad_upgrade,
/// bad_connection, bad_key, bad_version (answer it with
/// build_error_response(426, ...) and `Sec-WebSocket-Version: 13`).
std::error_code validate_client_request(const HttpRequest& request, ServerHandshakeRequest& out);

/// The 101 answer: Upgrade, Connection, Sec-WebSocket-Accept for `key`, the
/// selected protocol and extensions when not empty, then `extra` headers.
std::string build_server_response(std::string_view key, std::string_view protocol,
                                  std::string_view extensions, const HttpHeaders& extra = {});

/// A complete HTTP error answer with `Connection: close`, a plain-text body and
/// its Content-Length, e.g. 400, 404, 426 (with Sec-WebSocket-Version: 13),
/// 431, 503.
std::string build_error_response(int status, std::string_view body,
                                 const HttpHeaders& extra = {});

/// The standard reason phrase for an HTTP status ("Not Found"); "Unknown" if none.
std::string_view reason_phrase(int status) noexcept;

/// The HTTP status a server answers for a request that failed validation with
/// `ec` (400, 405, 426, 431, ...).
int status_for(std::error_code ec) noexcept;

/// True if `name` is a valid HTTP field name (token) and `value` holds no CR,
/// LF or NUL: what set_request_header accepts.
bool is_valid_header(std::string_view name, std::string_view value) noexcept;

}  // namespace duplex::protocol
