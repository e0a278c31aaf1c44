// detail/event_mutex.hpp: the lock of one socket's event handlers, and their
// lists.
//
// Events are raised on the socket's loop thread, once per message on the hot
// path; the handler lists and the owner change rarely, from any thread. So the
// lock is biased towards the loop: raising an event (DispatchGuard) marks the
// socket busy with one atomic exchange and checks that no other thread waits;
// a change (Guard) takes a mutex, announces itself and waits until no event is
// being raised. A change that meets a raise in progress waits for its handlers
// to return, as with an ordinary mutex; a raise that meets a waiting change
// steps back and takes the mutex behind it.
//
// A handler may call back into its own socket (register, revoke, move or
// destroy it): the thread raising the event re-enters without locking (a
// per-thread list records the event locks this thread holds). So a handler
// may be revoked while a list is being walked, possibly the one running: a
// revoke only marks it, the walk skips it (and no other), and the outermost
// guard takes the marked handlers out of their lists when it releases the
// lock, destroying them once it is released (their destructors may lock again).
//
// Each handler is one allocation (a Handler with its callable behind it), in
// a singly linked list in the order added: no list storage, no shared_ptr.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <utility>

#include "detail/always_inline.hpp"
#include "detail/tiny_mutex.hpp"

namespace duplex::detail {

class EventMutex {
public:
  /// A registered handler: its token's id, its event and whether it was
  /// revoked; the callable follows in the derived HandlerOf<Fn>. 24 B
  /// before the callable: with a std::function, one 64 B malloc chunk.
  struct Handler {
    Handler(std::uint64_t token, std::uint8_t kind) noexcept : id(token & max_id), event(kind) {}
    virtual ~Handler() = default;
    Handler(const Handler&) = delete;
    Handler& operator=(const Handler&) = delete;
    Handler* next = nullptr;  ///< the next of its list (guarded by the lock)
    std::uint64_t id : 55;    ///< the token's value
    std::uint64_t event : 8;  ///< the owner's event number
    /// Revoked: skipped by walks, unlinked when the outermost guard releases.
    std::uint64_t revoked : 1 = 0;
  };
  template <class Fn>
  struct HandlerOf final : Handler {
    HandlerOf(std::uint64_t token, std::uint8_t kind, Fn f)
        : Handler(token, kind), fn(std::move(f)) {}
    const Fn fn;
  };
  /// Largest token value (the ids are counted from 1).
  static constexpr std::uint64_t max_id = (std::uint64_t{1} << 55) - 1;
  /// The number of lists (a socket keeps its per-message handlers apart).
  static constexpr std::size_t list_count = 2;

  EventMutex() = default;
  EventMutex(const EventMutex&) = delete;
  EventMutex& operator=(const EventMutex&) = delete;
  /// Destroys every handler (nobody holds the lock any more).
  ~EventMutex() {
    for (auto* head : lists_) destroy_chain(head);
  }

  /// The first handler of list `i` (walk with ->next, skipping the revoked);
  /// the lock held.
  [[nodiscard]] DUPLEX_ALWAYS_INLINE Handler* head(std::size_t i) const noexcept {
    return lists_[i];
  }
  /// Appends `h` (owned from now on) to list `i`; the lock held by a Guard.
  /// A walk in progress reaches it.
  void append(std::size_t i, Handler* h) noexcept {
    Handler** at = &lists_[i];
    while (*at != nullptr) at = &(*at)->next;
    *at = h;
  }
  /// Revokes `h` (in one of the lists); the lock held by a Guard. It is
  /// not called again; it is destroyed after the outermost guard releases
  /// the lock (it may be the handler running on this thread).
  void revoke(Handler& h) noexcept {
    h.revoked = 1;
    revoked_ = true;
  }

private:
  struct Frame {
    const EventMutex* mutex;
    const Frame* prev;
  };

  static void destroy_chain(Handler* h) noexcept {
    while (h != nullptr) delete std::exchange(h, h->next);
  }
  // The outermost guard, the lock still held (no walk is in progress on any
  // thread): unlinks the revoked handlers and returns them as a chain.
  [[nodiscard]] Handler* take_revoked() noexcept {
    revoked_ = false;
    Handler* chain = nullptr;
    for (auto& head : lists_) {
      for (Handler** at = &head; *at != nullptr;) {
        Handler* h = *at;
        if (h->revoked == 0) {
          at = &h->next;
          continue;
        }
        *at = h->next;
        h->next = chain;
        chain = h;
      }
    }
    return chain;
  }

  // The part both guards share: the per-thread record of the locks held.
  class Holder {
  protected:
    DUPLEX_ALWAYS_INLINE explicit Holder(EventMutex& m) noexcept : m_(m), owns_(!m.held_here()) {}
    void enter() noexcept {
      frame_.prev = held_;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"  // unlinked by leave()
#endif
      held_ = &frame_;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
    }
    // Unlinks the frame. Handlers revoked meanwhile are destroyed by the
    // caller once the lock is released (their destructors may re-lock).
    void leave() noexcept {
      held_ = frame_.prev;
    }
    EventMutex& m_;
    bool owns_;
    Frame frame_{&m_, nullptr};
  };

public:
  /// Held while the handlers of an event run; on the loop thread only.
  class DispatchGuard : Holder {
  public:
    // Forced inline (GCC): taken once per read; the call cost more than the body.
    DUPLEX_ALWAYS_INLINE explicit DispatchGuard(EventMutex& m) noexcept : Holder(m) {
      if (!owns_) return;
      m_.busy_.store(true, std::memory_order_seq_cst);
      if (m_.waiting_.load(std::memory_order_seq_cst) != 0) {
        // A change waits: let it finish, then hold the mutex instead.
        release_busy();
        m_.mutex_.lock();
        locked_ = true;
      }
      enter();
    }
    DUPLEX_ALWAYS_INLINE ~DispatchGuard() {
      if (!owns_) return;
      leave();
      if (m_.revoked_) [[unlikely]] {
        Handler* revoked = m_.take_revoked();
        unlock();
        destroy_chain(revoked);  // the lock released
        return;
      }
      unlock();
    }
    DispatchGuard(const DispatchGuard&) = delete;
    DispatchGuard& operator=(const DispatchGuard&) = delete;

  private:
    DUPLEX_ALWAYS_INLINE void unlock() noexcept {
      if (locked_)
        m_.mutex_.unlock();
      else
        release_busy();
    }
    void release_busy() noexcept {
      m_.busy_.store(false, std::memory_order_seq_cst);
      if (m_.waiting_.load(std::memory_order_seq_cst) != 0) m_.busy_.notify_all();
    }
    bool locked_ = false;
  };

  /// Held to read or change the handlers and the owner; any thread. Waits for
  /// the handlers of an event being raised on another thread to return.
  class Guard : Holder {
  public:
    explicit Guard(EventMutex& m) : Holder(m) {
      if (!owns_) return;
      m_.mutex_.lock();
      m_.waiting_.fetch_add(1, std::memory_order_seq_cst);
      while (m_.busy_.load(std::memory_order_seq_cst)) m_.busy_.wait(true);
      enter();
    }
    ~Guard() { unlock(); }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

    /// Releases early (only if this guard took the lock).
    void unlock() noexcept {
      if (!owns_) return;
      owns_ = false;
      leave();
      Handler* revoked = m_.revoked_ ? m_.take_revoked() : nullptr;
      m_.waiting_.fetch_sub(1, std::memory_order_seq_cst);
      m_.mutex_.unlock();
      destroy_chain(revoked);
    }
  };

  /// True when this thread holds the lock (inside a handler of this socket).
  [[nodiscard]] DUPLEX_ALWAYS_INLINE bool held_here() const noexcept {
    for (const Frame* f = held_; f; f = f->prev)
      if (f->mutex == this) return true;
    return false;
  }

  /// True when this lock is the innermost one this thread holds (the usual
  /// case inside a handler of this socket): held_here() without its walk.
  [[nodiscard]] DUPLEX_ALWAYS_INLINE bool held_innermost() const noexcept {
    return held_ != nullptr && held_->mutex == this;
  }

private:
  DUPLEX_INITIAL_EXEC static inline thread_local const Frame* held_ = nullptr;
  // 24 B in all, no padding.
  std::atomic<bool> busy_{false};          ///< an event is being raised
  bool revoked_ = false;                   ///< a handler is marked revoked
  std::atomic<std::uint16_t> waiting_{0};  ///< changes waiting or in progress (threads)
  TinyMutex mutex_;                        ///< orders the changes
  Handler* lists_[list_count] = {};
};

}  // namespace duplex::detail
