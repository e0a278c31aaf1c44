// WebSocketListener::metrics(): the per-loop counters (listener/listener_counters.hpp)
// summed into one snapshot.
#include <duplex/websocket_listener.hpp>

#include "listener/listener_impl.hpp"

namespace duplex {

ListenerMetrics WebSocketListener::metrics() const {
  return impl_->metrics();
}

namespace detail {

namespace {

void add_statuses(const std::array<std::atomic<std::uint64_t>, LoopCounters::status_slots>& from,
                  std::map<int, std::uint64_t>& to, std::uint64_t& total) {
  for (std::size_t i = 0; i < from.size(); ++i) {
    const auto n = from[i].load(std::memory_order_relaxed);
    if (n == 0) continue;
    to[LoopCounters::status_of(i)] += n;
    total += n;
  }
}

}  // namespace

ListenerMetrics ListenerImpl::metrics() const {
  ListenerMetrics m;
  m.open_connections = connection_count();
  // loops_ is fixed from construction; the counters are atomics.
  m.loops.reserve(loops_.size());
  for (const auto& loop : loops_) {
    const auto& c = loop->counters;
    ListenerLoopMetrics l;
    l.handshakes_pending = c.handshakes_pending.load(std::memory_order_relaxed);
    l.handshake_errors = c.handshake_errors.load(std::memory_order_relaxed);
    add_statuses(c.websocket_answers, m.websocket_answers, l.websocket_answers);
    add_statuses(c.http_answers, m.http_answers, l.http_answers);
    m.loops.push_back(l);
  }
  return m;
}

}  // namespace detail

}  // namespace duplex
