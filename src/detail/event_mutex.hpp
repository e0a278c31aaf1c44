// detail/event_mutex.hpp: the lock of one socket's event handlers.
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
// per-thread list records the event locks this thread holds). A handler
// removed while the lock is held may be the one running: `retire` keeps it
// alive until the outermost guard releases the lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "detail/always_inline.hpp"
#include "detail/tiny_mutex.hpp"

namespace duplex::detail {

class EventMutex {
  using Retired = std::vector<std::shared_ptr<const void>>;
  struct Frame {
    const EventMutex* mutex;
    const Frame* prev;
  };

  // The part both guards share: the per-thread record and the retired list.
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
    // Unlinks the frame. Handlers retired meanwhile are destroyed by the
    // caller once the lock is released (their destructors may re-lock).
    void leave() noexcept {
      held_ = frame_.prev;
    }
    [[nodiscard]] std::unique_ptr<Retired> take_retired() noexcept {
      return std::move(m_.retired_);
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
      if (m_.retired_) [[unlikely]] {
        auto retired = take_retired();
        unlock();
        return;  // `retired` goes now, the lock released
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
      auto retired = take_retired();
      m_.waiting_.fetch_sub(1, std::memory_order_seq_cst);
      m_.mutex_.unlock();
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

  /// Keeps a handler removed under the lock alive until the lock is released
  /// (it may be running on this thread). Call with the lock held.
  void retire(std::shared_ptr<const void> handler) noexcept {
    // Out of memory here would leave no safe choice: terminate (noexcept).
    if (!handler) return;
    if (!retired_) retired_ = std::make_unique<Retired>();
    retired_->push_back(std::move(handler));
  }

private:
  DUPLEX_INITIAL_EXEC static inline thread_local const Frame* held_ = nullptr;
  std::atomic<bool> busy_{false};          ///< an event is being raised
  std::atomic<std::uint32_t> waiting_{0};  ///< changes waiting or in progress
  TinyMutex mutex_;                        ///< orders the changes
  /// Made by the first retire (rare): 8 bytes per socket until then.
  std::unique_ptr<Retired> retired_;
};

}  // namespace duplex::detail
