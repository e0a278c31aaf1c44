// detail/reconnect.hpp: automatic reconnection of a client MessageWebSocket
// (ReconnectOptions): the backoff schedule, pure and seeded so tests can check
// its bounds, and the session's reconnect state. The state machine itself is
// in src/reconnect.cpp, beside the session it restarts.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <random>
#include <string>
#include <system_error>

#include <asio/steady_timer.hpp>

#include <duplex/websocket_control.hpp>

#include "detail/session.hpp"

namespace duplex::detail {

/// Throws std::invalid_argument, naming the field and its rule, for options
/// the setter must refuse.
void check_reconnect_options(const ReconnectOptions& o);

/// The delays between reconnect attempts: exponential, capped, with jitter.
/// Attempt n (from 1) has the base delay min(max_delay, initial_delay *
/// 2^(n-1)) and waits a delay drawn uniformly in [base * (1 - jitter), base],
/// at least 1 ms. The random draws come from a generator seeded with
/// options.jitter_seed (a random seed when 0): the same seed gives the same
/// delays.
class ReconnectBackoff {
public:
  explicit ReconnectBackoff(const ReconnectOptions& o);
  /// The base delay of attempt `attempt` (>= 1), before jitter.
  [[nodiscard]] static std::chrono::milliseconds base_delay(const ReconnectOptions& o,
                                                            std::size_t attempt) noexcept;
  /// The delay of attempt `attempt` (>= 1), jitter drawn.
  std::chrono::milliseconds next(std::size_t attempt);

private:
  std::chrono::milliseconds initial_, max_;
  double jitter_;
  std::mt19937_64 random_;
};

/// [loop] A session's reconnect state, made at the first connect when
/// ReconnectOptions::enable is set.
struct Session::Reconnect {
  Reconnect(const asio::io_context::executor_type& ex, std::string u, const ReconnectOptions& o)
      : options(o), uri(std::move(u)), backoff(o), timer(ex) {}

  const ReconnectOptions options;
  const std::string uri;  ///< as given to connect_async
  ReconnectBackoff backoff;
  asio::steady_timer timer;       ///< the wait before the next attempt
  std::size_t attempt = 0;        ///< the attempt waited for or in progress (1...)
  bool waiting = false;           ///< disconnected: reconnecting
  bool stopped = false;           ///< the application closed or destroyed the socket
  std::error_code last_error;     ///< why the socket is disconnected
  std::deque<PendingSend> queue;  ///< sends made while disconnected (queue policy)
  std::size_t queued_bytes = 0;
  unsigned drain_turns = 0;  ///< loop turns given to the lost connection's completions
  /// A message sent in pieces was unfinished at the reconnect: its head went
  /// on the lost connection, so its remaining pieces fail (up to its final).
  bool drop_pieces = false;
};

}  // namespace duplex::detail
