// StreamWebSocket: the public type over a detail::Session (stream kind).
#include <duplex/stream_websocket.hpp>

#include "detail/event_loop.hpp"
#include "detail/server_factory.hpp"
#include "detail/session.hpp"

namespace duplex {

StreamWebSocket::StreamWebSocket() : StreamWebSocket(detail::default_io_context()) {}

StreamWebSocket::StreamWebSocket(asio::io_context& context)
    : StreamWebSocket(std::make_shared<detail::Session>(
          context.get_executor(), detail::Session::Kind::stream, protocol::Role::client)) {}

StreamWebSocket::StreamWebSocket(std::shared_ptr<detail::Session> s) : session_(std::move(s)) {
  session_->set_owner(this);
}

StreamWebSocket::StreamWebSocket(StreamWebSocket&& other) noexcept
    : session_(std::move(other.session_)) {
  if (session_) session_->set_owner(this);
}

StreamWebSocket& StreamWebSocket::operator=(StreamWebSocket&& other) noexcept {
  if (this != &other) {
    if (session_) session_->detach();
    session_ = std::move(other.session_);
    if (session_) session_->set_owner(this);
  }
  return *this;
}

StreamWebSocket::~StreamWebSocket() {
  if (session_) session_->detach();
}

StreamWebSocketControl StreamWebSocket::control() const {
  return StreamWebSocketControl(session_);
}
StreamWebSocketInformation StreamWebSocket::information() const {
  return StreamWebSocketInformation(session_);
}
asio::any_io_executor StreamWebSocket::get_executor() const noexcept {
  return session_->executor();
}

void StreamWebSocket::set_request_header(std::string_view name, std::string_view value) {
  session_->set_request_header(name, value);
}

void StreamWebSocket::close(std::uint16_t code, std::string_view reason) {
  detail::check_close(code, reason);
  session_->close(code, std::string(reason), {}, {});
}

EventToken StreamWebSocket::closed(ClosedHandler handler) {
  if (!handler) throw std::invalid_argument("closed: handler must not be empty");
  return session_->add_closed_handler(
      [h = std::move(handler)](void* owner, const WebSocketClosedEventArgs& a) {
        h(*static_cast<StreamWebSocket*>(owner), a);
      });
}
void StreamWebSocket::closed(EventToken token) noexcept {
  if (session_) session_->remove_handler(token);
}

EventToken StreamWebSocket::server_custom_validation_requested(
    ServerCustomValidationRequestedHandler handler) {
  if (!handler)
    throw std::invalid_argument("server_custom_validation_requested: handler must not be empty");
  return session_->add_validation_handler(
      [h = std::move(handler)](void* owner,
                               const WebSocketServerCustomValidationRequestedEventArgs& a) {
        h(*static_cast<StreamWebSocket*>(owner), a);
      });
}
void StreamWebSocket::server_custom_validation_requested(EventToken token) noexcept {
  if (session_) session_->remove_handler(token);
}

namespace detail {

StreamWebSocket make_stream_websocket(std::shared_ptr<Session> s) {
  return StreamWebSocket(std::move(s));
}

StreamWebSocket make_server_stream_websocket(asio::io_context::executor_type ex,
                                             transport::Stream stream,
                                             std::span<const std::byte> leftover,
                                             const ServerSessionOptions& options) {
  auto s = std::make_shared<Session>(ex, Session::Kind::stream, protocol::Role::server);
  s->start_server(std::move(stream), leftover, options);
  return make_stream_websocket(std::move(s));
}

}  // namespace detail
}  // namespace duplex
