// detail/event_loop.hpp: per-event-loop state shared by the connections of one
// io_context: the poller that drives every open connection's descriptor (one
// epoll set per loop, outside Asio's per-socket reactor), the timer sweep that
// drives every connection's deadlines (no timer object per connection), and the
// library's default io_context.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <system_error>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>

#include <sys/epoll.h>

#include "detail/always_inline.hpp"

namespace duplex::detail {

using Clock = std::chrono::steady_clock;

/// Something with deadlines, in its loop's LoopTimers list while it has one
/// (intrusive: no allocation, no list storage). Used on the loop's thread: a
/// client is destroyed there, or after its loop's services shut down (a
/// client unlinks itself when destroyed).
class TimerClient {
public:
  virtual ~TimerClient() { timer_unlink(); }
  /// Handles what is due at `now`; schedules again (LoopTimers::schedule)
  /// for what is left. May destroy the client (nothing touches it after).
  virtual void on_deadline(Clock::time_point now) = 0;

protected:
  TimerClient() = default;
  TimerClient(const TimerClient&) = delete;
  TimerClient& operator=(const TimerClient&) = delete;

  /// True while in its loop's timer list (a deadline is scheduled).
  [[nodiscard]] bool timer_linked() const noexcept { return timer_pprev_ != nullptr; }

private:
  friend class LoopTimers;
  void timer_unlink() noexcept {
    if (timer_pprev_ == nullptr) return;
    *timer_pprev_ = timer_next_;
    if (timer_next_ != nullptr) timer_next_->timer_pprev_ = timer_pprev_;
    timer_next_ = nullptr;
    timer_pprev_ = nullptr;
  }
  TimerClient* timer_next_ = nullptr;
  TimerClient** timer_pprev_ = nullptr;  ///< what points at it (null: not in a list)
};

/// One per io_context (an Asio service). Used only on the loop's thread.
class LoopTimers : public asio::execution_context::service {
public:
  using key_type = LoopTimers;
  static inline asio::execution_context::id id;
  explicit LoopTimers(asio::execution_context& ctx);
  ~LoopTimers() override;

  /// Makes sure `client` is asked at (or shortly after) `deadline`. The
  /// client stays in the list until a sweep finds nothing due, or release().
  void schedule(TimerClient& client, Clock::time_point deadline);
  /// `client` has no deadline any more (it ended): it leaves the list, and
  /// when no client is left the timer is cancelled, so an io_context whose
  /// connections all ended has no pending wait (its run() may return).
  void release(TimerClient& client);

private:
  void shutdown() override;
  void arm(Clock::time_point at);
  void on_timer();
  static void link(TimerClient*& head, TimerClient& client) noexcept;

  std::unique_ptr<asio::steady_timer> timer_;
  Clock::time_point armed_ = Clock::time_point::max();
  TimerClient* clients_ = nullptr;  ///< the registered clients
  TimerClient* pending_ = nullptr;  ///< during a sweep: the clients not yet asked
  bool in_sweep_ = false;
  Clock::time_point sweep_min_ = Clock::time_point::max();
  bool stopped_ = false;
};

/// A descriptor driven by its loop's LoopPoller: told which of input, output
/// and hang-up (EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLHUP, EPOLLERR) became ready.
/// Edge-triggered: an event is reported when readiness changes (new bytes, room
/// freed), so a client reads until EAGAIN, or keeps a short read as "drained",
/// before it waits for the next event.
class PollClient {
public:
  virtual void on_poll(std::uint32_t events) = 0;

protected:
  ~PollClient() = default;

private:
  friend class LoopPoller;
  /// The client's owner, kept while registered (never null then: a client
  /// whose owner is not a shared_ptr passes an aliasing pointer to itself).
  std::shared_ptr<void> poll_keep_;
  PollClient* poll_prev_ = nullptr;  ///< the loop's list of registered clients
  PollClient* poll_next_ = nullptr;
};

/// One per io_context (an Asio service); used only on the loop's thread.
///
/// Why: Asio's reactor gives each socket its own state, allocates an operation
/// per wait, takes three mutexes per completion and re-arms the descriptor with
/// epoll_ctl at every wait. Here each loop owns one epoll set, a connection's
/// descriptor is added once (edge-triggered, input and output), and the
/// io_context waits on the set as one descriptor: one Asio wait per batch of
/// ready connections instead of one per connection per message, so timers,
/// posts and completion tokens on the same io_context keep working.
class LoopPoller : public asio::execution_context::service {
public:
  using key_type = LoopPoller;
  static inline asio::execution_context::id id;
  explicit LoopPoller(asio::execution_context& ctx);
  ~LoopPoller() override;

  /// Adds `fd` (non-blocking, owned by `client` until remove_and_close) to the
  /// set. `keep` (the client's owner) stays alive while it is registered, so an
  /// event never reaches a destroyed client. Returns epoll_ctl's error.
  std::error_code add(int fd, PollClient& client, std::shared_ptr<void> keep);
  /// Takes `fd` out of the set and closes it. No event reaches `client` after
  /// this returns, not even one of the batch being dispatched (constant time:
  /// the batch skips a client whose owner is no longer kept, and the owner
  /// lives until the batch ends); its owner is released after the current
  /// handler (never inside a call of the client).
  void remove_and_close(int fd, PollClient& client) noexcept;
  /// The same without closing `fd`: it leaves the set (it may then be added
  /// again, for another client). Returns epoll_ctl's error.
  std::error_code remove(int fd, PollClient& client) noexcept;
  /// Whether `client` is registered (on the loop's thread).
  [[nodiscard]] static bool registered(const PollClient& client) noexcept;

private:
  void shutdown() override;
  void arm();
  void dispatch();
  void release_later(std::shared_ptr<void> keep);
  void unlink(PollClient& client) noexcept;
  /// Destroys the owners released so far (their storage kept for the next).
  void drop_released() noexcept;

  static constexpr int batch_size = 64;
  int epfd_ = -1;
  std::unique_ptr<asio::posix::stream_descriptor> wait_;
  bool waiting_ = false;
  bool stopped_ = false;
  std::size_t count_ = 0;
  PollClient* head_ = nullptr;
  std::array<epoll_event, batch_size> batch_{};
  int batch_count_ = 0;  ///< events of the batch being dispatched (0: none)
  std::vector<std::shared_ptr<void>> released_;
  std::vector<std::shared_ptr<void>> dropping_;  ///< released_'s previous storage
  bool release_posted_ = false;
};

inline bool LoopPoller::registered(const PollClient& client) noexcept {
  return client.poll_keep_ != nullptr;
}

/// The loop services of `ctx` without Asio's lookup (a mutex and a walk of
/// the context's service list, about 330 instructions, several times per
/// connection): each thread remembers the context it asked for last and its
/// services. Any LoopPoller or LoopTimers shutting down or destroyed (its
/// context going) bumps a global epoch, which voids every thread's memory, so a later context
/// at the same address never gets a stale service.
namespace loop_tls {
struct Services {
  asio::execution_context* ctx = nullptr;
  std::uint64_t epoch = 0;
  LoopPoller* poller = nullptr;
  LoopTimers* timers = nullptr;
};
DUPLEX_INITIAL_EXEC inline thread_local Services services{};
}  // namespace loop_tls
inline std::atomic<std::uint64_t> loop_services_epoch{1};
loop_tls::Services& loop_services_slow(asio::io_context& ctx) noexcept;
DUPLEX_ALWAYS_INLINE inline loop_tls::Services& loop_services(asio::io_context& ctx) noexcept {
  auto& s = loop_tls::services;
  if (s.ctx == &ctx && s.epoch == loop_services_epoch.load(std::memory_order_relaxed)) [[likely]]
    return s;
  return loop_services_slow(ctx);
}
/// `ctx`'s LoopPoller (made on first use, as by asio::use_service).
DUPLEX_ALWAYS_INLINE inline LoopPoller& loop_poller(asio::io_context& ctx) {
  auto& s = loop_services(ctx);
  if (s.poller == nullptr) [[unlikely]]
    s.poller = &asio::use_service<LoopPoller>(ctx);
  return *s.poller;
}
/// `ctx`'s LoopTimers (made on first use, as by asio::use_service).
DUPLEX_ALWAYS_INLINE inline LoopTimers& loop_timers(asio::io_context& ctx) {
  auto& s = loop_services(ctx);
  if (s.timers == nullptr) [[unlikely]]
    s.timers = &asio::use_service<LoopTimers>(ctx);
  return *s.timers;
}

/// The library-wide io_context, run by a background thread started on first
/// use and joined at exit.
asio::io_context& default_io_context();

/// The read buffer of the calling thread (512 KiB), shared by every plain TCP
/// connection whose loop runs on this thread: a read fills it and the bytes are
/// consumed before the next read.
inline constexpr std::size_t thread_read_buffer_size = std::size_t{512} << 10;
/// Room behind the read buffer (same allocation) for the rest of a large
/// message cut off at the end of a read (Connection::receive_holding): a frame
/// of up to this size, header included, completes there without being moved.
inline constexpr std::size_t thread_read_buffer_reserve = std::size_t{256} << 10;
namespace loop_tls {
// Constant-initialised (no guard, no destructor): one load per access. The
// buffer itself is owned by thread_read_buffer_slow()'s thread_local holder.
DUPLEX_INITIAL_EXEC inline thread_local std::byte* read_buffer = nullptr;
// The time a batch of the poller started (epoch: none in progress).
DUPLEX_INITIAL_EXEC inline thread_local Clock::time_point batch_now{};
}  // namespace loop_tls
std::span<std::byte> thread_read_buffer_slow();
DUPLEX_ALWAYS_INLINE inline std::span<std::byte> thread_read_buffer() {
  if (loop_tls::read_buffer != nullptr) [[likely]]
    return {loop_tls::read_buffer, thread_read_buffer_size};
  return thread_read_buffer_slow();
}

/// Now, to the precision of a loop turn: inside a batch of the poller, the
/// time the batch started (one clock read per batch, not per message).
DUPLEX_ALWAYS_INLINE inline Clock::time_point loop_now() noexcept {
  const auto t = loop_tls::batch_now;
  return t != Clock::time_point{} ? t : Clock::now();
}

}  // namespace duplex::detail
