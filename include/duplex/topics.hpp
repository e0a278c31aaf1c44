// duplex/topics.hpp: TopicRegistry, publish once and deliver to every socket
// subscribed to a topic, on every event loop of a listener (and, through a
// TopicRelay such as a broker, on other processes).
//
//   duplex::TopicRegistry topics;
//   listener.connection_received([&](auto& args) {
//     auto ws = std::make_shared<duplex::MessageWebSocket>(args.take_message_websocket());
//     topics.subscribe(*ws, args.request().path());
//     ...
//   });
//   topics.publish("/rooms/a", "hello");  // any thread
//
// Model (docs/pubsub.md has the whole story):
// - A topic is any non-empty string; it exists while it has a subscriber.
// - publish() frames the message once (one unmasked server frame, shared by
//   reference count) and hands it to each event loop that has subscribers of
//   the topic (one post per loop for all the publishes waiting there, never
//   one per subscriber); on that loop each subscriber's write queue takes a
//   reference to a frame from 1 KiB (written in place with sendmsg, in order
//   with its other output; plain TCP) and a copy of a smaller one, or of any
//   frame over TLS (docs/pubsub.md, "Shared frames").
// - Order: the messages of one publishing thread on one topic reach each
//   subscriber in publish order. There is no order between publishers.
// - A subscriber whose outbound data is at its limit (the listener's
//   outbound_buffer_size) is "slow": TopicRegistryOptions::slow_subscriber
//   decides whether the message is dropped for it (and counted) or it is
//   closed. The others are never held back.
// - A socket that closes leaves all its topics by itself (its closed event).
//   The registry holds each subscriber's connection until then, so a delivery
//   needs no lock per subscriber; a socket destroyed without that event
//   reaching the registry (destroyed in an earlier closed handler, which drops
//   the later ones) is let go at the next delivery to it or within a second
//   (a sweep on its loop, armed while the loop has subscribers).
//
// Thread safety: every member may be called from any thread, including from
// the sockets' event handlers. Lifetime: the registry may be destroyed before
// or after the sockets; messages already posted to a loop are still
// delivered; after the destructor returns no registry code runs in a socket's
// closed event, and each loop lets go of the connections it held (on its own
// thread, or when its io_context shuts down).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <duplex/message_type.hpp>
#include <duplex/message_websocket.hpp>

namespace duplex {

/// What publish() does for a subscriber whose outbound data is at or over its
/// limit (or whose own sends wait for room) when a message reaches it.
enum class SlowSubscriberPolicy : std::uint8_t {
  /// The message is not queued for it, and counted in TopicStatistics::dropped;
  /// it stays subscribed and gets later messages once it drained. Default: one
  /// slow reader of a feed should not lose its connection for a burst.
  drop,
  /// It is closed with 1008 (policy violation), reason "slow subscriber".
  close_policy_violation,
  /// It is closed with 1013 (try again later), reason "slow subscriber".
  close_try_again_later,
};

/// Settings of a TopicRegistry.
struct TopicRegistryOptions {
  SlowSubscriberPolicy slow_subscriber = SlowSubscriberPolicy::drop;
};

/// Counters of a TopicRegistry (a snapshot; each value is exact on its own,
/// the set is not taken atomically).
struct TopicStatistics {
  std::size_t topics = 0;         ///< topics with at least one subscriber
  std::size_t subscriptions = 0;  ///< (socket, topic) pairs
  std::uint64_t published = 0;    ///< publish() and publish_local() calls that reached a loop
  std::uint64_t deliveries = 0;   ///< messages queued to a subscriber
  std::uint64_t dropped = 0;      ///< messages not queued to a slow or busy subscriber
  std::uint64_t slow_closed = 0;  ///< subscribers closed by the slow-subscriber policy
  std::uint64_t not_relayed = 0;  ///< publishes the relay did not carry (local only or refused)
  /// permessage-deflate compressions: one per publish, loop and set of
  /// parameters among subscribers without server context takeover.
  std::uint64_t compressions = 0;
};

/// The outcome of a publish().
enum class PublishStatus : std::uint8_t {
  published,   ///< delivered locally and, with a relay, handed to it
  local_only,  ///< the relay could not take it (broker down): delivered locally only
  refused,     ///< the relay could not take it and its setting refuses: not delivered
};

/// What a registry tells its relay (a broker back end) and asks of it. The
/// registry calls these with its lock held: an implementation must not call
/// back into the registry from them, and should only record or post work.
class TopicRelay {
public:
  virtual ~TopicRelay() = default;
  /// `topic` got its first subscriber in this process (`active`), or lost its
  /// last one.
  virtual void topic_active(const std::string& topic, bool active) = 0;
  /// Carry a message published here to the other processes. Returns
  /// `published` when taken, else `local_only` or `refused` (the relay's
  /// outage setting).
  virtual PublishStatus relay(std::string_view topic, std::span<const std::byte> data,
                              SocketMessageType type) = 0;
};

/// Topics: subscriptions of server-role MessageWebSockets, and publishing to
/// them. Not copyable or movable (sockets' closed handlers refer to it).
class TopicRegistry {
public:
  /// A registry with `options` (all values valid). Starts no thread.
  explicit TopicRegistry(TopicRegistryOptions options = {});
  TopicRegistry(const TopicRegistry&) = delete;
  TopicRegistry& operator=(const TopicRegistry&) = delete;
  /// Forgets every subscription; see the lifetime note above.
  ~TopicRegistry();

  /// Subscribes `socket` to `topic`. Returns true if it was not subscribed
  /// yet, false if it already was or the socket is already closed (nothing
  /// changes). Messages published after this returns reach it.
  /// Throws std::invalid_argument if `topic` is empty, `socket` was moved
  /// from, or `socket` is not a server-role socket (one a WebSocketListener
  /// handed out: topics send unmasked server frames).
  bool subscribe(const MessageWebSocket& socket, std::string_view topic);
  /// Unsubscribes `socket` from `topic`; returns false if it was not
  /// subscribed. A message already posted to its loop may still reach it.
  /// Throws std::invalid_argument as subscribe().
  bool unsubscribe(const MessageWebSocket& socket, std::string_view topic);
  /// Unsubscribes `socket` from all its topics; returns how many. Throws
  /// std::invalid_argument if `socket` was moved from.
  std::size_t unsubscribe_all(const MessageWebSocket& socket);

  /// Publishes `data` as one message of `type` to every subscriber of `topic`
  /// in this process and, with a relay, hands it to the relay. Returns at
  /// once: delivery happens on the subscribers' loops. Never throws for a
  /// relay failure (see PublishStatus). Throws std::invalid_argument if
  /// `topic` is empty or a `utf8` message is not valid UTF-8 (RFC 6455 5.6).
  PublishStatus publish(std::string_view topic, std::span<const std::byte> data,
                        SocketMessageType type);
  /// publish() to every subscriber but `except` (the socket the message came
  /// from, in a chat room); other processes get it as from publish().
  PublishStatus publish(std::string_view topic, std::span<const std::byte> data,
                        SocketMessageType type, const MessageWebSocket& except);
  /// publish() of a text (`utf8`) message.
  PublishStatus publish(std::string_view topic, std::string_view text);
  /// Delivers to this process's subscribers only, without the relay: what a
  /// broker back end calls for a message from another process. Throws as
  /// publish().
  void publish_local(std::string_view topic, std::span<const std::byte> data,
                     SocketMessageType type);

  /// Subscribers of `topic` in this process.
  [[nodiscard]] std::size_t subscriber_count(std::string_view topic) const;
  /// The counters.
  [[nodiscard]] TopicStatistics statistics() const;

  /// Installs `relay` (or none, with nullptr): it is told at once of every
  /// topic that has subscribers, then of each change. The registry keeps it
  /// alive until replaced or the registry is destroyed.
  void set_relay(std::shared_ptr<TopicRelay> relay);

  /// Implementation detail (src/topics.cpp).
  class Impl;

private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace duplex
