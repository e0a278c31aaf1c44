// MessageWebSocket: the public type over a detail::Session.
#include <duplex/message_websocket.hpp>

#include <stdexcept>

#include "detail/server_factory.hpp"
#include "detail/session.hpp"

namespace duplex {

EventToken MessageWebSocket::message_received(MessageReceivedHandler handler) {
  if (!handler) throw std::invalid_argument("message_received: handler must not be empty");
  return session_->events().add_message(std::move(handler));
}
void MessageWebSocket::message_received(EventToken token) noexcept {
  if (session_) session_->events().remove(token);
}

EventToken MessageWebSocket::reconnecting(ReconnectingHandler handler) {
  if (!handler) throw std::invalid_argument("reconnecting: handler must not be empty");
  return session_->events().add_reconnecting(std::move(handler));
}
void MessageWebSocket::reconnecting(EventToken token) noexcept {
  if (session_) session_->events().remove(token);
}
EventToken MessageWebSocket::reconnected(ReconnectedHandler handler) {
  if (!handler) throw std::invalid_argument("reconnected: handler must not be empty");
  return session_->events().add_reconnected(std::move(handler));
}
void MessageWebSocket::reconnected(EventToken token) noexcept {
  if (session_) session_->events().remove(token);
}

namespace detail {

MessageWebSocket make_message_websocket(std::shared_ptr<Session> s) {
  return MessageWebSocket(std::move(s));
}

MessageWebSocket make_server_message_websocket(asio::io_context::executor_type ex,
                                               transport::Stream stream,
                                               std::span<const std::byte> leftover,
                                               const ServerSessionOptions& options) {
  return make_message_websocket(
      make_server_session(ex, Session::Kind::message, std::move(stream), leftover, options));
}

}  // namespace detail
}  // namespace duplex
