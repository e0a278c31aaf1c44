// Plain HTTP beside WebSocket: the request and response types of the
// http_requested handler, and the listener's side of running it.
#include <duplex/http_server.hpp>
#include <duplex/websocket_listener.hpp>

#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

#include "listener/listener_impl.hpp"

namespace duplex {

// --- HttpServerRequest ------------------------------------------------------------

std::string_view HttpServerRequest::path() const noexcept {
  return protocol::target_path(target);
}

std::string_view HttpServerRequest::query() const noexcept {
  return protocol::target_query(target);
}

std::optional<std::string_view> HttpServerRequest::header(std::string_view name) const noexcept {
  return protocol::find_header(headers, name);
}

// --- HttpServerResponse -----------------------------------------------------------

namespace {

bool is_answer_header(std::string_view name) noexcept {
  return protocol::iequals(name, "Connection") || protocol::iequals(name, "Content-Length") ||
         protocol::iequals(name, "Transfer-Encoding");
}

// The value rule of protocol::is_valid_header (whose name rule also refuses
// the WebSocket handshake's names, which a plain answer may use).
bool is_valid_value(std::string_view value) noexcept {
  return protocol::is_valid_header("X", value);
}

}  // namespace

void HttpServerResponse::status(int status) {
  // A 1xx is not a final answer; 101 belongs to the WebSocket upgrade.
  if (status < 200 || status > 599)
    throw std::invalid_argument("HttpServerResponse::status: status must be within 200-599");
  status_ = status;
}

void HttpServerResponse::add_header(std::string_view name, std::string_view value) {
  if (!protocol::is_token(name))
    throw std::invalid_argument("HttpServerResponse::add_header: name must be an HTTP token");
  if (is_answer_header(name))
    throw std::invalid_argument(
        "HttpServerResponse::add_header: name must not be Connection, Content-Length or "
        "Transfer-Encoding (set by the listener)");
  if (!is_valid_value(value))
    throw std::invalid_argument(
        "HttpServerResponse::add_header: value must hold no control characters and no white "
        "space at either end");
  headers_.push_back({std::string(name), std::string(value)});
}

void HttpServerResponse::body(std::string body, std::string_view content_type) {
  if (!is_valid_value(content_type))
    throw std::invalid_argument(
        "HttpServerResponse::body: content_type must hold no control characters and no white "
        "space at either end");
  std::erase_if(headers_, [](const protocol::HttpHeader& h) {
    return protocol::iequals(h.name, "Content-Type");
  });
  if (!content_type.empty()) headers_.push_back({"Content-Type", std::string(content_type)});
  body_ = std::move(body);
}

// --- WebSocketListener ------------------------------------------------------------

void WebSocketListener::http_requested(HttpRequestedHandler handler) {
  impl_->set_http_handler(std::move(handler));
}

namespace detail {

void ListenerImpl::set_http_handler(WebSocketListener::HttpRequestedHandler h) {
  std::lock_guard lock(mutex_);
  if (started_) throw std::logic_error("http_requested: set handlers before listen()");
  on_http_ = std::move(h);
}

std::string ListenerImpl::run_http_handler(const HttpServerRequest& request, int& status) {
  // RFC 9110 9.3.2: a HEAD answer is the GET answer without its body.
  const bool head = request.method == "HEAD";
  try {
    HttpServerResponse response;
    on_http_(request, response);
    auto answer =
        protocol::build_http_response(response.status(), response.headers(), response.body(), head);
    status = response.status();
    return answer;
  } catch (...) {
    // The handler failed, or filled an answer that cannot be sent (a body
    // with 204 or 304): the request is not answered as if it had succeeded.
    status = 500;
    return protocol::build_http_response(500, {{"Content-Type", "text/plain; charset=utf-8"}},
                                         "internal server error\n", head);
  }
}

}  // namespace detail

}  // namespace duplex
