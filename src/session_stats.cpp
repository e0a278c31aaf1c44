// session_stats.cpp: a session's bandwidth statistics (detail/session_stats.hpp).
#include "detail/session_stats.hpp"

namespace duplex::detail {

void SessionStats::publish_rates(Clock::time_point now) noexcept {
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(now - window_start_).count();
  const auto rate = [&](std::uint64_t now_bytes, std::uint64_t start_bytes) {
    return (now_bytes - start_bytes) * 8 * 1'000'000 / static_cast<std::uint64_t>(us);
  };
  const auto sent = counts_.bytes_sent.load(std::memory_order_relaxed);
  const auto received = counts_.bytes_received.load(std::memory_order_relaxed);
  counts_.out_bps.store(rate(sent, sent_at_start_), std::memory_order_relaxed);
  counts_.in_bps.store(rate(received, received_at_start_), std::memory_order_relaxed);
  window_start_ = now;
  sent_at_start_ = sent;
  received_at_start_ = received;
}

void SessionStats::reset() noexcept {
  sent_at_start_ = received_at_start_ = 0;
  for (auto* c : {&counts_.bytes_sent, &counts_.bytes_received, &counts_.messages_sent,
                  &counts_.messages_received, &counts_.frames_sent, &counts_.frames_received,
                  &counts_.out_bps, &counts_.in_bps})
    c->store(0, std::memory_order_relaxed);
}

BandwidthStatistics SessionStats::read(const protocol::ConnectionStats* loop) const noexcept {
  BandwidthStatistics b;
  b.bytes_sent = counts_.bytes_sent.load(std::memory_order_relaxed);
  b.bytes_received = counts_.bytes_received.load(std::memory_order_relaxed);
  if (loop != nullptr) {
    b.messages_sent = loop->messages_sent;
    b.messages_received = loop->messages_received;
    b.frames_sent = loop->frames_sent;
    b.frames_received = loop->frames_received;
  } else {
    b.messages_sent = counts_.messages_sent.load(std::memory_order_relaxed);
    b.messages_received = counts_.messages_received.load(std::memory_order_relaxed);
    b.frames_sent = counts_.frames_sent.load(std::memory_order_relaxed);
    b.frames_received = counts_.frames_received.load(std::memory_order_relaxed);
  }
  b.outbound_bits_per_second = counts_.out_bps.load(std::memory_order_relaxed);
  b.inbound_bits_per_second = counts_.in_bps.load(std::memory_order_relaxed);
  return b;
}

}  // namespace duplex::detail
