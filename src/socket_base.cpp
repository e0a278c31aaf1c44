// SocketBase: the members MessageWebSocket and StreamWebSocket share, over a
// detail::Session, compiled once per socket type.
#include <duplex/detail/socket_base.hpp>

#include <stdexcept>
#include <type_traits>

#include <duplex/message_websocket.hpp>
#include <duplex/stream_websocket.hpp>

#include "detail/event_loop.hpp"
#include "detail/session.hpp"

namespace duplex::detail {

namespace {

// The session kind that serves each socket type.
template <class Derived>
constexpr Session::Kind session_kind =
    std::is_same_v<Derived, StreamWebSocket> ? Session::Kind::stream : Session::Kind::message;

}  // namespace

template <class Derived, class Control>
SocketBase<Derived, Control>::SocketBase() : SocketBase(default_io_context()) {}

template <class Derived, class Control>
SocketBase<Derived, Control>::SocketBase(asio::io_context& context)
    : SocketBase(std::make_shared<Session>(context.get_executor(), session_kind<Derived>,
                                           protocol::Role::client)) {}

// Events are raised with the owner as a Derived* (the session casts it back),
// so the owner is the whole socket, not this base.
template <class Derived, class Control>
SocketBase<Derived, Control>::SocketBase(std::shared_ptr<Session> s) : session_(std::move(s)) {
  session_->set_owner(static_cast<Derived*>(this));
}

template <class Derived, class Control>
SocketBase<Derived, Control>::SocketBase(SocketBase&& other) noexcept
    : session_(std::move(other.session_)) {
  if (session_) session_->set_owner(static_cast<Derived*>(this));
}

template <class Derived, class Control>
SocketBase<Derived, Control>& SocketBase<Derived, Control>::operator=(SocketBase&& other) noexcept {
  if (this != &other) {
    if (session_) session_->detach();
    session_ = std::move(other.session_);
    if (session_) session_->set_owner(static_cast<Derived*>(this));
  }
  return *this;
}

template <class Derived, class Control>
SocketBase<Derived, Control>::~SocketBase() {
  if (session_) session_->detach();
}

template <class Derived, class Control>
Control SocketBase<Derived, Control>::control() const {
  return Control(session_);
}

template <class Derived, class Control>
WebSocketInformation SocketBase<Derived, Control>::information() const {
  return WebSocketInformation(session_);
}

template <class Derived, class Control>
asio::any_io_executor SocketBase<Derived, Control>::get_executor() const noexcept {
  return session_->executor();
}

template <class Derived, class Control>
void SocketBase<Derived, Control>::set_request_header(std::string_view name,
                                                      std::string_view value) {
  session_->set_request_header(name, value);
}

template <class Derived, class Control>
void SocketBase<Derived, Control>::close(std::uint16_t code, std::string_view reason) {
  check_close(code, reason);
  session_->close(code, std::string(reason), {}, {});
}

template <class Derived, class Control>
EventToken SocketBase<Derived, Control>::closed(ClosedHandler handler) {
  if (!handler) throw std::invalid_argument("closed: handler must not be empty");
  return session_->events().add_closed(std::move(handler));
}

template <class Derived, class Control>
void SocketBase<Derived, Control>::closed(EventToken token) noexcept {
  if (session_) session_->events().remove(token);
}

template <class Derived, class Control>
EventToken SocketBase<Derived, Control>::server_custom_validation_requested(
    ServerCustomValidationRequestedHandler handler) {
  if (!handler)
    throw std::invalid_argument("server_custom_validation_requested: handler must not be empty");
  return session_->events().add_validation(
      [h = std::move(handler)](void* owner,
                               const WebSocketServerCustomValidationRequestedEventArgs& a) {
        h(*static_cast<Derived*>(owner), a);
      });
}

template <class Derived, class Control>
void SocketBase<Derived, Control>::server_custom_validation_requested(EventToken token) noexcept {
  if (session_) session_->events().remove(token);
}

template class SocketBase<MessageWebSocket, MessageWebSocketControl>;
template class SocketBase<StreamWebSocket, StreamWebSocketControl>;

}  // namespace duplex::detail
