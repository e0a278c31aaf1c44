// detail/event_loop.hpp: per-event-loop state shared by the connections of one
// io_context: the timer sweep that drives every connection's deadlines (no timer
// object per connection), and the library's default io_context.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

namespace duplex::detail {

using Clock = std::chrono::steady_clock;

/// Something with deadlines; on_deadline(now) handles what is due and returns
/// its next deadline (time_point::max() when none).
class TimerClient {
public:
  virtual ~TimerClient() = default;
  virtual Clock::time_point on_deadline(Clock::time_point now) = 0;

private:
  friend class LoopTimers;
  bool timer_registered_ = false;  ///< in its loop's client list
};

/// One per io_context (an Asio service). Used only on the loop's thread.
class LoopTimers : public asio::execution_context::service {
public:
  using key_type = LoopTimers;
  static inline asio::execution_context::id id;
  explicit LoopTimers(asio::execution_context& ctx);
  ~LoopTimers() override;

  /// Makes sure `client` is asked at (or shortly after) `deadline`. The
  /// client stays registered while on_deadline returns a deadline.
  void schedule(const std::shared_ptr<TimerClient>& client, Clock::time_point deadline);
  /// `client` has no deadline any more (it ended): it leaves the list, and
  /// when no client is left the timer is cancelled, so an io_context whose
  /// connections all ended has no pending wait (its run() may return).
  void release(TimerClient& client);

private:
  void shutdown() override;
  void arm(Clock::time_point at);
  void on_timer();

  std::unique_ptr<asio::steady_timer> timer_;
  Clock::time_point armed_ = Clock::time_point::max();
  std::vector<std::weak_ptr<TimerClient>> clients_;
  std::vector<std::weak_ptr<TimerClient>> scratch_;
  bool in_sweep_ = false;
  Clock::time_point sweep_min_ = Clock::time_point::max();
  bool stopped_ = false;
};

/// The library-wide io_context, run by a background thread started on first
/// use and joined at exit.
asio::io_context& default_io_context();

/// The read buffer of the calling thread (64 KiB), shared by every plain TCP
/// connection whose loop runs on this thread: a read fills it and the bytes are
/// consumed before the next read.
std::span<std::byte> thread_read_buffer();

}  // namespace duplex::detail
