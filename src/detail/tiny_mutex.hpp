// detail/tiny_mutex.hpp: a 4-byte mutex for locks that are almost never
// contended (a socket's controls and event handlers), where std::mutex's
// 40 bytes were a tenth of an idle connection's session.
#pragma once

#include <atomic>
#include <cstdint>

namespace duplex::detail {

/// Lockable (std::lock_guard, std::unique_lock); not recursive. Uncontended,
/// lock and unlock are one atomic operation each; a contended lock sleeps in
/// the kernel (std::atomic::wait) instead of spinning.
class TinyMutex {
public:
  void lock() noexcept {
    std::uint32_t seen = free;
    if (state_.compare_exchange_strong(seen, locked, std::memory_order_acquire)) return;
    // Contended: mark the lock as having sleepers, and sleep until it is free.
    if (seen != contended) seen = state_.exchange(contended, std::memory_order_acquire);
    while (seen != free) {
      state_.wait(contended, std::memory_order_relaxed);
      seen = state_.exchange(contended, std::memory_order_acquire);
    }
  }
  bool try_lock() noexcept {
    std::uint32_t seen = free;
    return state_.compare_exchange_strong(seen, locked, std::memory_order_acquire);
  }
  void unlock() noexcept {
    if (state_.exchange(free, std::memory_order_release) == contended) state_.notify_one();
  }

private:
  static constexpr std::uint32_t free = 0, locked = 1, contended = 2;
  std::atomic<std::uint32_t> state_{free};
};

}  // namespace duplex::detail
