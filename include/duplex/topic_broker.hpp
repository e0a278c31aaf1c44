// duplex/topic_broker.hpp: TopicBroker, which carries a TopicRegistry's
// topics across processes and machines through an existing broker: Redis
// pub/sub (redis://host:port) or NATS (nats://host:port).
//
//   duplex::TopicRegistry topics;
//   duplex::TopicBroker broker(topics, "redis://127.0.0.1:6379");
//   if (!broker.wait_connected(std::chrono::seconds(5))) { /* unreachable */ }
//   topics.publish("/rooms/a", "hello");  // every node's subscribers get it
//
// Model (docs/pubsub.md):
// - The node subscribes at the broker only to the topics that have local
//   subscribers, and unsubscribes when the last one leaves.
// - publish() delivers locally at once and hands the message to the broker,
//   tagged with this node's id; a message that comes back with our own id is
//   skipped, so each subscriber gets each message exactly once.
// - Order: one publisher's messages on one topic keep their order, on this
//   node and on the others (one broker connection carries them in order).
// - Failures: while the broker is unreachable, local subscribers are still
//   served; the broker reconnects with exponential backoff and resubscribes.
//   A publish meanwhile follows TopicBrokerOptions::outage; messages that did
//   not reach the broker are counted. The state is raised as an event and is
//   in statistics().
//
// Thread safety: every member may be called from any thread. The broker runs
// one thread of its own (an Asio event loop driving the Redis connections;
// NATS' library runs its own threads, whose callbacks are posted to it).
// Lifetime: the registry must outlive the broker; the destructor detaches
// from the registry, closes the broker connections and joins the thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <duplex/topics.hpp>

namespace duplex {

namespace detail {
class BrokerCore;
}

/// The connection to the broker.
enum class BrokerState : std::uint8_t {
  connecting,    ///< first connection attempt(s), nothing relayed yet
  connected,     ///< relaying
  disconnected,  ///< lost; reconnecting with backoff
  stopped,       ///< the broker object is being destroyed
};

/// What publish() does while the broker is not connected.
enum class BrokerOutagePolicy : std::uint8_t {
  /// Deliver to this node's subscribers, count it as not relayed, and return
  /// PublishStatus::local_only. Default: a chat room on one node keeps working.
  deliver_locally,
  /// Deliver nowhere and return PublishStatus::refused, so the caller can
  /// retry or report it (nodes never see a message the others missed).
  refuse,
};

/// Settings of a TopicBroker.
struct TopicBrokerOptions {
  BrokerOutagePolicy outage = BrokerOutagePolicy::deliver_locally;
  /// First reconnect delay, doubled after each failure up to reconnect_max.
  /// 100 ms: a restarted broker is found quickly. Must be > 0.
  std::chrono::milliseconds reconnect_min{100};
  /// Largest reconnect delay. 2 s. Must be >= reconnect_min.
  std::chrono::milliseconds reconnect_max{2000};
};

/// Counters of a TopicBroker (a snapshot).
struct BrokerStatistics {
  BrokerState state = BrokerState::connecting;
  std::uint64_t relayed = 0;      ///< messages handed to the broker
  std::uint64_t received = 0;     ///< messages from other nodes delivered here
  std::uint64_t own_skipped = 0;  ///< our own messages coming back, skipped
  std::uint64_t not_relayed = 0;  ///< publishes during an outage (local only or refused)
  std::uint64_t lost = 0;         ///< handed to a connection that failed before it confirmed
  std::uint64_t reconnects = 0;   ///< connections re-established after a loss
  std::size_t broker_topics = 0;  ///< topics subscribed at the broker
};

/// The parts of a broker URL.
struct BrokerUrl {
  std::string scheme;  ///< "redis" or "nats"
  std::string host;    ///< host name or numeric address (IPv6 without brackets)
  std::uint16_t port = 0;
};

/// A registry's relay to Redis or NATS. Not copyable or movable.
class TopicBroker {
public:
  using StateChangedHandler = std::function<void(BrokerState)>;

  /// Parses `url`: `redis://HOST:PORT` or `nats://HOST:PORT` (port 1-65535;
  /// defaults 6379 and 4222 when omitted; no user, path or query). Throws
  /// std::invalid_argument naming the rule: unknown scheme, empty host, bad
  /// port, or anything after the port.
  static BrokerUrl parse_url(std::string_view url);

  /// Checks `url` and `options` (std::invalid_argument), installs itself as
  /// `registry`'s relay and starts connecting in the background (see
  /// wait_connected()). Throws std::invalid_argument also when this build has
  /// no back end for the scheme.
  TopicBroker(TopicRegistry& registry, std::string_view url, TopicBrokerOptions options = {});
  TopicBroker(const TopicBroker&) = delete;
  TopicBroker& operator=(const TopicBroker&) = delete;
  ~TopicBroker();

  /// Waits up to `timeout` for the broker to be connected; returns whether it is.
  bool wait_connected(std::chrono::milliseconds timeout);
  [[nodiscard]] BrokerState state() const noexcept;
  [[nodiscard]] BrokerStatistics statistics() const;
  /// This node's id (16 hex digits, random per broker object).
  [[nodiscard]] std::string node_id() const;
  /// Sets the handler raised on the broker's thread at each state change
  /// (replacing the previous one; empty: none). It must not destroy the broker.
  void state_changed(StateChangedHandler handler);

private:
  std::shared_ptr<detail::BrokerCore> impl_;
  TopicRegistry* registry_ = nullptr;
};

}  // namespace duplex
