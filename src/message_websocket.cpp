// MessageWebSocket: the public type over a detail::Session.
#include <duplex/message_websocket.hpp>

#include "detail/event_loop.hpp"
#include "detail/server_factory.hpp"
#include "detail/session.hpp"

namespace duplex {

MessageWebSocket::MessageWebSocket() : MessageWebSocket(detail::default_io_context()) {}

MessageWebSocket::MessageWebSocket(asio::io_context& context)
    : MessageWebSocket(std::make_shared<detail::Session>(
          context.get_executor(), detail::Session::Kind::message, protocol::Role::client)) {}

MessageWebSocket::MessageWebSocket(std::shared_ptr<detail::Session> s) : session_(std::move(s)) {
  session_->set_owner(this);
}

MessageWebSocket::MessageWebSocket(MessageWebSocket&& other) noexcept
    : session_(std::move(other.session_)) {
  if (session_) session_->set_owner(this);
}

MessageWebSocket& MessageWebSocket::operator=(MessageWebSocket&& other) noexcept {
  if (this != &other) {
    if (session_) session_->detach();
    session_ = std::move(other.session_);
    if (session_) session_->set_owner(this);
  }
  return *this;
}

MessageWebSocket::~MessageWebSocket() {
  if (session_) session_->detach();
}

MessageWebSocketControl MessageWebSocket::control() const {
  return MessageWebSocketControl(session_);
}
MessageWebSocketInformation MessageWebSocket::information() const {
  return MessageWebSocketInformation(session_);
}
asio::any_io_executor MessageWebSocket::get_executor() const noexcept {
  return session_->executor();
}

void MessageWebSocket::set_request_header(std::string_view name, std::string_view value) {
  session_->set_request_header(name, value);
}

void MessageWebSocket::close(std::uint16_t code, std::string_view reason) {
  detail::check_close(code, reason);
  session_->close(code, std::string(reason), {}, {});
}

EventToken MessageWebSocket::message_received(MessageReceivedHandler handler) {
  if (!handler) throw std::invalid_argument("message_received: handler must not be empty");
  return session_->add_message_handler(std::move(handler));
}
void MessageWebSocket::message_received(EventToken token) noexcept {
  if (session_) session_->remove_handler(token);
}

EventToken MessageWebSocket::closed(ClosedHandler handler) {
  if (!handler) throw std::invalid_argument("closed: handler must not be empty");
  return session_->add_closed_handler(
      [h = std::move(handler)](void* owner, const WebSocketClosedEventArgs& a) {
        h(*static_cast<MessageWebSocket*>(owner), a);
      });
}
void MessageWebSocket::closed(EventToken token) noexcept {
  if (session_) session_->remove_handler(token);
}

EventToken MessageWebSocket::server_custom_validation_requested(
    ServerCustomValidationRequestedHandler handler) {
  if (!handler)
    throw std::invalid_argument("server_custom_validation_requested: handler must not be empty");
  return session_->add_validation_handler(
      [h = std::move(handler)](void* owner,
                               const WebSocketServerCustomValidationRequestedEventArgs& a) {
        h(*static_cast<MessageWebSocket*>(owner), a);
      });
}
void MessageWebSocket::server_custom_validation_requested(EventToken token) noexcept {
  if (session_) session_->remove_handler(token);
}

namespace detail {

MessageWebSocket make_message_websocket(std::shared_ptr<Session> s) {
  return MessageWebSocket(std::move(s));
}

MessageWebSocket make_server_message_websocket(asio::io_context::executor_type ex,
                                               transport::Stream stream,
                                               std::span<const std::byte> leftover,
                                               const ServerSessionOptions& options) {
  auto s = std::make_shared<Session>(ex, Session::Kind::message, protocol::Role::server);
  s->start_server(std::move(stream), leftover, options);
  return make_message_websocket(std::move(s));
}

}  // namespace detail
}  // namespace duplex
