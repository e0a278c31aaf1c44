// detail/session_events.hpp: a session's event handlers, the public object
// they are raised with, and the ids of its tokens and operations.
//
// Threading: handlers are added and revoked from any thread; they run on the
// session's loop thread with the event lock held, re-entered by a handler
// that registers, revokes or destroys its socket on that thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include <duplex/message_websocket.hpp>
#include <duplex/websocket_events.hpp>

#include "detail/always_inline.hpp"
#include "detail/event_mutex.hpp"

namespace duplex {
class StreamWebSocket;
}

namespace duplex::detail {

class SessionEvents {
public:
  enum class Event : std::uint8_t {
    closed,          ///< ClosedFn
    message_closed,  ///< MessageClosedFn
    stream_closed,   ///< StreamClosedFn
    validation,      ///< ValidationFn
    reconnecting,    ///< ReconnectingFn
    reconnected,     ///< ReconnectedFn
    message,         ///< MessageFn (in its own list)
  };
  /// Message handlers only exist on a MessageWebSocket: stored as given (the
  /// owner is that socket), one call per message.
  using MessageFn = MessageWebSocket::MessageReceivedHandler;
  using ClosedFn = std::function<void(void* owner, const WebSocketClosedEventArgs&)>;
  /// A socket's own closed handler, stored as given (no wrapper): the owner
  /// is that socket.
  using MessageClosedFn = std::function<void(MessageWebSocket&, const WebSocketClosedEventArgs&)>;
  using StreamClosedFn = std::function<void(StreamWebSocket&, const WebSocketClosedEventArgs&)>;
  using ValidationFn =
      std::function<void(void* owner, const WebSocketServerCustomValidationRequestedEventArgs&)>;
  using ReconnectingFn = MessageWebSocket::ReconnectingHandler;
  using ReconnectedFn = MessageWebSocket::ReconnectedHandler;

  /// Adds a handler (any thread). Throws std::invalid_argument for an empty
  /// one, naming its event.
  EventToken add_message(MessageFn f) {
    return add(Event::message, "message_received", std::move(f));
  }
  EventToken add_closed(ClosedFn f) { return add(Event::closed, "closed", std::move(f)); }
  EventToken add_closed(MessageClosedFn f) {
    return add(Event::message_closed, "closed", std::move(f));
  }
  EventToken add_closed(StreamClosedFn f) {
    return add(Event::stream_closed, "closed", std::move(f));
  }
  EventToken add_validation(ValidationFn f) {
    return add(Event::validation, "server_custom_validation_requested", std::move(f));
  }
  EventToken add_reconnecting(ReconnectingFn f) {
    return add(Event::reconnecting, "reconnecting", std::move(f));
  }
  EventToken add_reconnected(ReconnectedFn f) {
    return add(Event::reconnected, "reconnected", std::move(f));
  }
  /// Revokes the handler of `t` (any thread): it is not called after this
  /// returns, unless it is the one running.
  void remove(EventToken t) noexcept;

  /// The public object events are raised with; updated on move (any thread;
  /// `on_loop_thread`: the caller runs on the session's loop thread).
  void set_owner(void* owner, bool on_loop_thread) noexcept;
  [[nodiscard]] void* owner() const noexcept { return owner_; }
  /// The public object is being destroyed: no handler starts after this
  /// returns (each is revoked).
  void detach() noexcept;
  /// True once detach() ran.
  [[nodiscard]] bool detached() const noexcept { return detached_.load(std::memory_order_acquire); }

  /// The lock the handlers run under.
  [[nodiscard]] EventMutex& mutex() noexcept { return mutex_; }
  [[nodiscard]] const EventMutex& mutex() const noexcept { return mutex_; }
  /// [loop, lock held] Calls each message handler with `args`, in order,
  /// until the socket is detached (inline: once per message).
  DUPLEX_ALWAYS_INLINE void raise_message(const MessageWebSocketMessageReceivedEventArgs& args) {
    for (auto* h = mutex_.head(message_list); h != nullptr && !detached(); h = h->next)
      if (!h->revoked)
        static_cast<const HandlerOf<MessageFn>*>(h)->fn(*static_cast<MessageWebSocket*>(owner_),
                                                        args);
  }
  /// [loop, lock held] The closed event, its three forms in the order they
  /// were added, until the socket is detached.
  void raise_closed(const WebSocketClosedEventArgs& args);
  /// [loop, lock held] Calls f(fn) for each handler of `event` as its type
  /// Fn, in order, until the socket is detached. A handler added meanwhile is
  /// called too; one revoked meanwhile is not.
  template <class Fn, class F>
  void each(Event event, F&& f) {
    for (auto* h = mutex_.head(other_list); h != nullptr && !detached(); h = h->next) {
      if (h->event != static_cast<std::uint8_t>(event) || h->revoked) continue;
      f(static_cast<const HandlerOf<Fn>*>(h)->fn);
    }
  }
  /// [lock held] True when a handler of `event` is registered.
  [[nodiscard]] bool has(Event event) const noexcept;

  /// A new id, unique in this session, for a token or an operation (any thread).
  std::uint64_t new_id() noexcept { return next_id_.fetch_add(1, std::memory_order_relaxed); }

private:
  static constexpr std::size_t message_list = 0, other_list = 1;
  template <class Fn>
  using HandlerOf = EventMutex::HandlerOf<Fn>;
  template <class Fn>
  EventToken add(Event event, const char* what, Fn f) {
    if (!f) throw std::invalid_argument(std::string(what) + ": handler must not be empty");
    // Made outside the lock (moving `f` may run the callable's own code).
    auto node = std::make_unique<HandlerOf<Fn>>(0, static_cast<std::uint8_t>(event), std::move(f));
    EventMutex::Guard lock(mutex_);
    const auto id = new_id();
    node->id = id & EventMutex::max_id;
    mutex_.append(event == Event::message ? message_list : other_list, node.release());
    return EventToken{id};
  }

  // The mutex keeps the handler lists: the message handlers in one (walked
  // per message), the other events' in the other, in the order they were
  // added.
  EventMutex mutex_;
  void* owner_ = nullptr;
  std::atomic<std::uint64_t> next_id_{1};
  std::atomic<bool> detached_{false};  // last: Session packs its small fields behind
};

}  // namespace duplex::detail
