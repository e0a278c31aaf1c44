// session_events.cpp: a session's event handlers (detail/session_events.hpp).
#include "detail/session_events.hpp"

#include <duplex/stream_websocket.hpp>

namespace duplex::detail {

void SessionEvents::remove(EventToken t) noexcept {
  // Marked, not destroyed: the handler may be the one running, or a list may
  // be being walked on this thread (no handler after it is skipped). The
  // outermost guard unlinks it.
  EventMutex::Guard lock(mutex_);
  for (std::size_t i = 0; i < EventMutex::list_count; ++i) {
    for (auto* h = mutex_.head(i); h != nullptr; h = h->next)
      if (h->id == t.value && !h->revoked) return mutex_.revoke(*h);
  }
}

bool SessionEvents::has(Event event) const noexcept {
  for (auto* h = mutex_.head(other_list); h != nullptr; h = h->next)
    if (h->event == static_cast<std::uint8_t>(event) && !h->revoked) return true;
  return false;
}

void SessionEvents::set_owner(void* owner, bool on_loop_thread) noexcept {
  // owner_ is read only by the handlers, which run on the loop thread under
  // the event lock. On that thread none of them is running now (or this
  // thread holds the lock already): no lock to take. A socket handed out by a
  // listener is moved several times there, so this is the usual case.
  if (on_loop_thread) {
    owner_ = owner;
    return;
  }
  EventMutex::Guard lock(mutex_);
  owner_ = owner;
}

void SessionEvents::detach() noexcept {
  EventMutex::Guard lock(mutex_);
  detached_ = true;
  owner_ = nullptr;
  for (std::size_t i = 0; i < EventMutex::list_count; ++i) {
    for (auto* h = mutex_.head(i); h != nullptr; h = h->next)
      if (!h->revoked) mutex_.revoke(*h);
  }
}

void SessionEvents::raise_closed(const WebSocketClosedEventArgs& args) {
  // One walk for the three forms, so handlers run in the order they were added.
  for (auto* h = mutex_.head(other_list); h != nullptr && !detached(); h = h->next) {
    if (h->revoked) continue;
    switch (static_cast<Event>(h->event)) {
      case Event::closed: static_cast<const HandlerOf<ClosedFn>*>(h)->fn(owner_, args); break;
      case Event::message_closed:
        static_cast<const HandlerOf<MessageClosedFn>*>(h)->fn(
            *static_cast<MessageWebSocket*>(owner_), args);
        break;
      case Event::stream_closed:
        static_cast<const HandlerOf<StreamClosedFn>*>(h)->fn(*static_cast<StreamWebSocket*>(owner_),
                                                             args);
        break;
      default: break;
    }
  }
}

}  // namespace duplex::detail
