// duplex/http_server.hpp: plain HTTP requests served beside WebSocket on a
// WebSocketListener's port (health checks, a page, a JSON status, metrics).
//
//   listener.http_requested([](const duplex::HttpServerRequest& req,
//                              duplex::HttpServerResponse& res) {
//     if (req.path() == "/healthz") return res.body("ok\n");
//     res.status(404);
//     res.body("not found\n");
//   });
//
// A request goes to this handler when it does not ask for a WebSocket (its
// Upgrade header does not hold "websocket"); WebSocket upgrades go the usual
// way on the same port. The handler runs on the connection's loop thread and
// answers synchronously: it fills the response before returning. Each
// connection gets one answer, with `Connection: close`, then is closed (no
// keep-alive: a load balancer's probe or a browser's page load opens a new
// connection per request). Bodies are read by Content-Length only; see
// WebSocketListener::http_requested for the limits and the error answers.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <duplex/protocol/handshake.hpp>
#include <duplex/websocket_control.hpp>

namespace duplex {

/// A plain HTTP request as the http_requested handler sees it. Values are
/// copies, valid as long as the object (the handler call).
struct HttpServerRequest {
  std::string method;             ///< as sent, case-sensitive: "GET", "HEAD", "POST"...
  std::string target;             ///< request target, e.g. "/metrics?x=1"
  int version_minor = 1;          ///< HTTP/1.<minor>
  protocol::HttpHeaders headers;  ///< every header, in order, as received
  std::string body;               ///< the body (Content-Length bytes; empty without one)
  HostEndpoint remote_address;    ///< the client's address (numeric) and port
  HostEndpoint local_address;     ///< our address and port of the connection
  bool secure = false;            ///< https (the listener's TLS)
  /// With TLS and a verified client certificate: its subject in one line;
  /// empty otherwise.
  std::string client_certificate_subject;

  /// The target's path (before '?').
  [[nodiscard]] std::string_view path() const noexcept;
  /// The target's query (after '?', without it); empty if none.
  [[nodiscard]] std::string_view query() const noexcept;
  /// The first header named `name` (case-insensitive), if any.
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const noexcept;
};

/// The answer the http_requested handler fills: status 200 with no headers
/// and an empty body until set. The listener adds `Connection: close` and
/// `Content-Length`, and leaves out the body for HEAD. Not thread-safe (used
/// on the connection's loop during the handler call); every setter checks its
/// arguments at the call.
class HttpServerResponse {
public:
  [[nodiscard]] int status() const noexcept { return status_; }
  /// Sets the status. Throws std::invalid_argument for one outside 200-599
  /// (1xx are not final answers; 101 belongs to the upgrade).
  void status(int status);

  [[nodiscard]] const protocol::HttpHeaders& headers() const noexcept { return headers_; }
  /// Adds a header. Throws std::invalid_argument for a name that is not an
  /// HTTP token, a value holding control characters (CR, LF, NUL...) or
  /// leading or trailing white space, or Connection, Content-Length or
  /// Transfer-Encoding (the listener sets them).
  void add_header(std::string_view name, std::string_view value);

  [[nodiscard]] const std::string& body() const noexcept { return body_; }
  /// Sets the body and its Content-Type (replacing a Content-Type added
  /// before; an empty `content_type` leaves none). Throws
  /// std::invalid_argument for a content type with control characters.
  void body(std::string body, std::string_view content_type = "text/plain; charset=utf-8");

private:
  int status_ = 200;
  protocol::HttpHeaders headers_;
  std::string body_;
};

}  // namespace duplex
