// tools/duplex/bench_fanout.hpp: `duplex bench --fanout N`, one publisher and
// N subscribers on one topic of a pubsub server.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace duplex::cli {

struct FanoutOptions {
  std::string url;  ///< ws:// URL of a pubsub-server path; empty: one in this process
  /// Where the subscribers connect, spread round-robin (other nodes of the
  /// same topic); empty: `url`. The publisher always connects to `url`.
  std::vector<std::string> subscriber_urls;
  std::size_t subscribers = 0;
  std::size_t size = 16;    ///< payload bytes (at least 16: sequence and timestamp)
  std::size_t window = 64;  ///< publishes not yet delivered to every subscriber
  double duration = 5.0;    ///< seconds of publishing
  bool json = false;
};

/// Runs the fan-out benchmark and prints deliveries/s, publish-to-delivery
/// latency p50/p99, and lost and reordered messages. Against a server by
/// URL, the publisher first sends probes until every subscriber got one
/// (its subscription is in place on every node), then measures. Returns 0,
/// or 1 when a message was lost or reordered. Throws std::invalid_argument
/// for a size under 16, no subscribers or subscriber URLs without a URL,
/// std::runtime_error when a connection fails or a subscriber gets no probe
/// within 10 s.
int run_fanout_bench(const FanoutOptions& options);

}  // namespace duplex::cli
