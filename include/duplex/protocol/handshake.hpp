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

/// RFC 9110 5.1: field names compare case-insensitively (ASCII only).
bool iequals(std::string_view a, std::string_view b) noexcept;
/// The value of the first header named `name`, if any. The view refers into
/// `headers` and stays valid while it is not modified.
std::optional<std::string_view> find_header(const HttpHeaders& headers,
                                            std::string_view name) noexcept;
/// True when any header named `name` holds `token` in its comma-separated list
/// (case-insensitive; repeated headers count as one list; white space around
/// elements ignored): `Connection: keep-alive, Upgrade` holds "upgrade".
bool header_has_token(const HttpHeaders& headers, std::string_view name,
                      std::string_view token) noexcept;
/// The comma-separated elements of every header named `name`, trimmed, empty
/// elements dropped, in order. A comma inside a quoted-string (RFC 9110 5.6.4)
/// does not split, so extension parameters such as `a="x,y"` stay whole.
std::vector<std::string> header_list(const HttpHeaders& headers, std::string_view name);
/// The same list written into `out` (replacing its elements, reusing their
/// storage: a server that keeps the vector fills it without allocating).
void header_list(const HttpHeaders& headers, std::string_view name, std::vector<std::string>& out);
/// Writes into `out` (replacing its contents, reusing its storage) the
/// non-empty values of every header named `name`, in order, joined with ", "
/// (RFC 9110 5.3: a list field sent as several lines is one list).
void join_header(const HttpHeaders& headers, std::string_view name, std::string& out);

/// Bound on the header block (request line or status line included): a peer
/// that sends more is refused (431 on the server) instead of buffered forever.
inline constexpr std::size_t default_max_header_size = 16 * 1024;

struct HttpRequest {
  std::string method;
  std::string target;     ///< as sent: origin-form "/path?query", or absolute-form
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
/// and shorter than `max_size`. `data` is everything received so far; the bytes
/// after the block (the first WebSocket frames) are not consumed.
///
/// Errors (`ec` set, 0 returned):
///  - `error::header_too_large`: the block does not end within `max_size` bytes
///    (a block of exactly `max_size` bytes is accepted).
///  - `error::bad_http_version`: a well-formed version whose major is not 1.
///  - `error::bad_http_message`: anything else malformed. The parser is strict,
///    because a lenient parser in front of a strict one is how requests are
///    smuggled (RFC 9112 11.2): every line ends in CRLF (RFC 9112 2.2 allows
///    refusing a bare LF; we do so as soon as it arrives, and a bare CR when
///    the block is parsed), no obs-fold
///    continuation lines (RFC 9112 5.2), field names are tokens followed
///    directly by ':' (RFC 9112 5.1), field values hold no control characters
///    but HTAB (RFC 9110 5.5), the request line is `method SP target SP
///    HTTP/d.d`, the status line `HTTP/d.d SP ddd [SP reason]` (100-599).
///
/// On success `out` is overwritten (its strings' storage is reused, so parsing
/// into the same object again does not allocate); on error or while incomplete
/// its contents are unspecified. Without `scanned`, each call scans `data` from
/// the start.
std::size_t parse_http_request(std::string_view data, HttpRequest& out, std::error_code& ec,
                               std::size_t max_size = default_max_header_size);
std::size_t parse_http_response(std::string_view data, HttpResponse& out, std::error_code& ec,
                                std::size_t max_size = default_max_header_size);

/// The same, resuming the search for the end of the block where the previous
/// call on the same growing buffer stopped, so feeding a block in N pieces
/// costs O(size) rather than O(N * size). Start with `scanned = 0`; `data` must
/// begin with the bytes given before (only appended to). The parser updates it.
std::size_t parse_http_request(std::string_view data, HttpRequest& out, std::error_code& ec,
                               std::size_t max_size, std::size_t& scanned);
std::size_t parse_http_response(std::string_view data, HttpResponse& out, std::error_code& ec,
                                std::size_t max_size, std::size_t& scanned);

// --- Client -------------------------------------------------------------------

/// A fresh Sec-WebSocket-Key: base64 of 16 bytes from a CSPRNG (RFC 6455 4.1).
/// Throws std::runtime_error if OpenSSL's generator fails (not seeded).
std::string generate_key();
/// Sec-WebSocket-Accept for `key`: base64(SHA-1(key + the RFC 6455 GUID)).
std::string compute_accept(std::string_view key);

struct ClientHandshakeOptions {
  std::string host;  ///< Host header value ("example.com", "example.com:8080", "[::1]:9000")
  std::string target = "/";            ///< request target: "/path?query"
  std::string origin;                  ///< Origin header; empty: none
  std::vector<std::string> protocols;  ///< Sec-WebSocket-Protocol offer, in preference order
  std::string extensions;              ///< Sec-WebSocket-Extensions offer; empty: none
  HttpHeaders headers;                 ///< extra headers, each is_valid_header()
};

/// The GET request for `options` with `key`: request line, Host, Upgrade,
/// Connection, Sec-WebSocket-Key, Sec-WebSocket-Version: 13, then Origin,
/// Sec-WebSocket-Protocol and Sec-WebSocket-Extensions when set, then the extra
/// headers in order. Throws std::invalid_argument (naming the field and the
/// rule) for an empty host or one with characters outside RFC 3986's host and
/// port (white space, '/', '@', controls...), a target not
/// starting with '/' or holding white space or controls, a key that is not
/// base64 of 16 bytes, a protocol that is not a token or is offered twice,
/// controls in origin or extensions, an extra header failing is_valid_header(),
/// or an extra Origin header when `options.origin` is set too.
std::string build_client_request(const ClientHandshakeOptions& options, std::string_view key);

struct ClientHandshakeResult {
  std::string protocol;    ///< selected subprotocol; empty: none
  std::string extensions;  ///< Sec-WebSocket-Extensions answer, for the extension negotiator
};

/// Checks the server's answer (RFC 6455 4.1, client steps 1-6): status 101 (else
/// make_http_error(status)), Upgrade: websocket (else bad_upgrade) and
/// Connection: upgrade (else bad_connection), as tokens of comma lists,
/// case-insensitive; exactly one Sec-WebSocket-Accept equal to
/// compute_accept(key) (else bad_accept); at most one subprotocol, and only one
/// that was offered, compared case-sensitively (else unexpected_protocol).
/// Extensions are returned as they are (repeated headers joined with ", "), for
/// the negotiator to check. `out` is written only on success.
std::error_code validate_server_response(const HttpResponse& response, std::string_view key,
                                         std::span<const std::string> offered_protocols,
                                         ClientHandshakeResult& out);

// --- Server -------------------------------------------------------------------

struct ServerHandshakeRequest {
  std::string target;
  std::string host;
  std::string origin;  ///< empty: none
  std::string key;
  std::vector<std::string> protocols;  ///< offered subprotocols, in order
  std::string extensions;              ///< raw Sec-WebSocket-Extensions offer (joined)
};

/// Checks a client's request (RFC 6455 4.2.1), in this order:
///  1. method GET (case-sensitive, RFC 9110 9.1), else bad_method;
///  2. HTTP/1.1 or later, else bad_http_version;
///  3. target in origin-form ("/...") or absolute-form ("scheme://..."), no
///     Content-Length other than 0 and no Transfer-Encoding (an upgrade
///     request has no body), subprotocols that are tokens, else
///     bad_http_message;
///  4. exactly one non-empty Host, else missing_host (two, or characters
///     outside RFC 3986's host and port: bad_http_message);
///  5. Upgrade holding the token "websocket", else bad_upgrade;
///  6. Connection holding the token "upgrade", else bad_connection;
///  7. exactly one Sec-WebSocket-Version, equal to "13", else bad_version
///     (checked before the key: a client of another version is told which one
///     we speak even if its key differs, RFC 6455 4.4);
///  8. exactly one Sec-WebSocket-Key whose canonical base64 decodes to exactly
///     16 bytes, else bad_key.
/// Answer a failure with build_error_response(status_for(ec), ...).
/// `out` is written only on success.
std::error_code validate_client_request(const HttpRequest& request, ServerHandshakeRequest& out);

/// What a valid request holds, as views into its headers (valid while the
/// request is neither modified nor destroyed): check_client_request's answer.
struct ClientRequestView {
  std::string_view host;
  std::string_view origin;      ///< empty: none
  std::string_view key;         ///< Sec-WebSocket-Key (base64 of 16 bytes)
  bool has_protocols = false;   ///< Sec-WebSocket-Protocol is present (header_list reads it)
  bool has_extensions = false;  ///< Sec-WebSocket-Extensions is present (join_header joins it)
};

/// validate_client_request's checks, in the same order and with the same
/// errors, without copying anything: a server that keeps its own strings
/// fills them from `out` once. Allocates nothing. `out` is written only on
/// success. Reentrant.
std::error_code check_client_request(const HttpRequest& request, ClientRequestView& out) noexcept;

/// The 101 answer: Upgrade, Connection, Sec-WebSocket-Accept for `key`, the
/// selected protocol and extensions when not empty, then `extra` headers.
/// Throws std::invalid_argument for an empty key, a protocol that is not a
/// token, controls in extensions, or an extra header failing is_valid_header().
std::string build_server_response(std::string_view key, std::string_view protocol,
                                  std::string_view extensions, const HttpHeaders& extra = {});
/// The same answer written into `out` (replacing its contents, reusing its
/// storage: a server that keeps one string per thread answers handshakes
/// without allocating). The same std::invalid_argument errors, thrown before
/// `out` is touched.
void write_server_response(std::string& out, std::string_view key, std::string_view protocol,
                           std::string_view extensions, const HttpHeaders& extra = {});

/// A complete HTTP/1.1 error answer: status line with reason_phrase(status),
/// `Connection: close`, `Content-Type: text/plain; charset=utf-8`,
/// Content-Length, the `extra` headers, then `body`. Headers a client needs
/// for some statuses are added unless `extra` has them: 426 gets
/// `Sec-WebSocket-Version: 13` (RFC 6455 4.4), 405 gets `Allow: GET` (RFC 9110
/// 15.5.6). Throws std::invalid_argument for a status outside 200-599 or one
/// that has no body (204, 304), or an extra header with an invalid name or
/// value, or one of Connection, Content-Type, Content-Length, Transfer-Encoding
/// (set here).
std::string build_error_response(int status, std::string_view body, const HttpHeaders& extra = {});

// --- Plain HTTP beside WebSocket ------------------------------------------------

/// Bound on the body of a plain HTTP request a listener reads (not an upgrade):
/// health checks and small JSON posts fit; a larger body is refused with 413.
inline constexpr std::size_t default_max_http_body_size = 64 * 1024;

/// The length of the body of `request` (RFC 9112 6.3), for a server that reads
/// bodies delimited by Content-Length only. Sets `length` and returns no error
/// when the request has no body (length 0) or a valid Content-Length not over
/// `max_size`. Errors, each an http_category() code naming the status to
/// answer (status_for(ec)):
///  - 411 (Length Required): Transfer-Encoding whose last coding is chunked;
///    the client may retry with a Content-Length (RFC 9110 15.5.12);
///  - 501 (Not Implemented): any other Transfer-Encoding (RFC 9112 6.1: a
///    coding the server does not understand);
///  - 400 (Bad Request): a Content-Length that is not a decimal number, or
///    several that differ (RFC 9112 6.3 item 5);
///  - 413 (Content Too Large): a length over `max_size` (checked before any
///    byte of the body is read or stored).
/// `length` is written only on success. Reentrant.
std::error_code request_body_length(const HttpRequest& request, std::size_t max_size,
                                    std::size_t& length) noexcept;

/// A complete HTTP/1.1 answer to a plain request: status line with
/// reason_phrase(status), the `headers` in order, `Connection: close` (one
/// answer per connection), `Content-Length: body.size()` (except for 204 and
/// 304, which have no body), then `body`, unless `head_request` (RFC 9110
/// 9.3.2: a HEAD answer has the headers of the GET answer, no body). Throws
/// std::invalid_argument for a status outside 200-599, a body with 204 or
/// 304, a header name that is not a token or a value with control characters
/// (is_valid_header's value rule), or a Connection, Content-Length or
/// Transfer-Encoding header (set here).
std::string build_http_response(int status, const HttpHeaders& headers, std::string_view body,
                                bool head_request = false);

/// The standard reason phrase for an HTTP status ("Not Found"); "Unknown" if none.
std::string_view reason_phrase(int status) noexcept;

/// The HTTP status a server answers for a request that failed validation with
/// `ec`: bad_version 426, header_too_large 431, bad_method 405,
/// bad_http_version 505, handshake_refused 403, an http_category() code its own
/// value (when 400-599), anything else 400.
int status_for(std::error_code ec) noexcept;

/// True for the header names the handshake functions write themselves (Host,
/// Upgrade, Connection, Sec-WebSocket-Key, -Version, -Accept, -Protocol,
/// -Extensions, Content-Length, Transfer-Encoding), compared case-insensitively:
/// a second copy from the user would make the message invalid or ambiguous.
bool is_reserved_header(std::string_view name) noexcept;

/// True if `name` is a valid HTTP field name (token, RFC 9110 5.6.2) that is not
/// is_reserved_header(), and `value` holds no control character but HTAB (so no
/// CR, LF or NUL) and no leading or trailing white space: what
/// set_request_header accepts.
bool is_valid_header(std::string_view name, std::string_view value) noexcept;

/// True if `s` is an HTTP token: one or more tchar (RFC 9110 5.6.2).
bool is_token(std::string_view s) noexcept;

/// The path of a request target (before any '?').
inline std::string_view target_path(std::string_view target) noexcept {
  return target.substr(0, target.find('?'));
}
/// The query of a request target (after the first '?'; empty without one).
inline std::string_view target_query(std::string_view target) noexcept {
  const auto q = target.find('?');
  return q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
}

}  // namespace duplex::protocol
