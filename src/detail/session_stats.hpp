// detail/session_stats.hpp: a session's bandwidth statistics. The loop is the
// one writer; any thread reads them. The transport's byte counts are kept
// here only (one writer: a relaxed load and store, no locked add); the
// message and frame counts are the protocol connection's, published per
// message received and per read or write; the rates of the last second are
// worked out once a second.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include <duplex/protocol/connection.hpp>
#include <duplex/websocket_control.hpp>

#include "detail/always_inline.hpp"
#include "detail/event_loop.hpp"

namespace duplex::detail {

class SessionStats {
public:
  /// [loop] Counts `n` bytes the transport wrote / read.
  DUPLEX_ALWAYS_INLINE void count_sent(std::uint64_t n) noexcept { add(counts_.bytes_sent, n); }
  DUPLEX_ALWAYS_INLINE void count_received(std::uint64_t n) noexcept {
    add(counts_.bytes_received, n);
  }
  /// [loop] Publishes the received message and frame counts of `c` (per
  /// message: another thread a handler signals sees that message counted).
  DUPLEX_ALWAYS_INLINE void publish_received(const protocol::ConnectionStats& c) noexcept {
    counts_.messages_received.store(c.messages_received, std::memory_order_relaxed);
    counts_.frames_received.store(c.frames_received, std::memory_order_relaxed);
  }
  /// [loop] Publishes every count of `c`, and the rates once a second has
  /// passed since the last (per read and write).
  DUPLEX_ALWAYS_INLINE void publish(const protocol::ConnectionStats& c,
                                    Clock::time_point now) noexcept {
    counts_.messages_sent.store(c.messages_sent, std::memory_order_relaxed);
    publish_received(c);
    counts_.frames_sent.store(c.frames_sent, std::memory_order_relaxed);
    if (now - window_start_ >= std::chrono::seconds(1)) publish_rates(now);
  }
  /// [loop] The rate window starts (the connection opened).
  void start_window(Clock::time_point now) noexcept { window_start_ = now; }
  /// [loop] Everything back to zero (a new connection of the same socket).
  void reset() noexcept;
  /// The statistics (any thread). With `loop` (the caller runs on the loop,
  /// inside a handler): the counts of that connection as they are now, this
  /// message and the sends before included; otherwise as last published.
  [[nodiscard]] BandwidthStatistics read(const protocol::ConnectionStats* loop) const noexcept;

private:
  DUPLEX_ALWAYS_INLINE static void add(std::atomic<std::uint64_t>& to, std::uint64_t n) noexcept {
    to.store(to.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void publish_rates(Clock::time_point now) noexcept;

  struct Counts {
    std::atomic<std::uint64_t> bytes_sent{0}, bytes_received{0}, messages_sent{0},
        messages_received{0}, frames_sent{0}, frames_received{0}, out_bps{0}, in_bps{0};
  } counts_;
  // [loop] The rate window: its start, and the byte counts then.
  Clock::time_point window_start_{};
  std::uint64_t sent_at_start_ = 0, received_at_start_ = 0;
};

}  // namespace duplex::detail
