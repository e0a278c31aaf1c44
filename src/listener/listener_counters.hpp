// listener/listener_counters.hpp: the counters one listener loop keeps for
// WebSocketListener::metrics(). Written on the loop's thread with relaxed
// atomics (no fence, no shared cache line across loops), read from any thread
// and summed at scrape time (src/listener_metrics.cpp).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace duplex::detail {

struct alignas(64) LoopCounters {
  /// Answers are counted by status: 101, then 200-599 at index status - 200 + 1.
  static constexpr std::size_t status_slots = 401;
  static constexpr std::size_t slot(int status) noexcept {
    return status == 101 ? 0 : static_cast<std::size_t>(status - 200 + 1);
  }
  static constexpr int status_of(std::size_t slot) noexcept {
    return slot == 0 ? 101 : static_cast<int>(slot) - 1 + 200;
  }
  static void bump(std::atomic<std::uint64_t>& c) noexcept {
    // Relaxed: a counter orders nothing; per loop, so no cache line is shared.
    c.fetch_add(1, std::memory_order_relaxed);
  }
  void answered(bool http, int status) noexcept {
    if (status != 101 && (status < 200 || status > 599)) return;
    bump((http ? http_answers : websocket_answers)[slot(status)]);
  }

  std::atomic<std::uint64_t> handshakes_pending{0};  ///< a gauge: +1 at accept, -1 at the end
  std::atomic<std::uint64_t> handshake_errors{0};
  std::array<std::atomic<std::uint64_t>, status_slots> websocket_answers{};
  std::array<std::atomic<std::uint64_t>, status_slots> http_answers{};
};

}  // namespace duplex::detail
