// topics/broker_core.hpp: the part of TopicBroker shared by its back ends:
// its event loop and thread, state and counters, the message envelope
// (node id and type), and the TopicRelay the registry calls.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <duplex/topic_broker.hpp>

namespace duplex::detail {

class BrokerCore;

/// One broker protocol, driven on the core's loop (every member [loop]).
class BrokerBackend {
public:
  virtual ~BrokerBackend() = default;
  /// Starts connecting (and reconnecting on its own after failures).
  virtual void start() = 0;
  /// Closes everything; no callback into the core follows.
  virtual void stop() = 0;
  /// The topic got its first local subscriber (`active`) or lost its last.
  virtual void set_topic(const std::string& topic, bool active) = 0;
  /// Sends an envelope (see BrokerCore::encode) on `topic`.
  virtual void publish(const std::string& topic, const std::vector<std::byte>& envelope) = 0;
  [[nodiscard]] virtual std::size_t topic_count() const = 0;
};

std::unique_ptr<BrokerBackend> make_redis_backend(BrokerCore& core, const BrokerUrl& url);
std::unique_ptr<BrokerBackend> make_nats_backend(BrokerCore& core, const BrokerUrl& url);

class BrokerCore final : public TopicRelay {
public:
  BrokerCore(TopicRegistry& registry, BrokerUrl url, TopicBrokerOptions options);
  ~BrokerCore() override;

  void start();
  /// Detaches from the registry, stops the back end and joins the thread.
  void shutdown();

  // TopicRelay (any thread; called with the registry's lock held).
  void topic_active(const std::string& topic, bool active) override;
  PublishStatus relay(std::string_view topic, std::span<const std::byte> data,
                      SocketMessageType type) override;

  // For the back ends [loop].
  asio::io_context& io() noexcept { return io_; }
  const TopicBrokerOptions& options() const noexcept { return options_; }
  void set_state(BrokerState s);
  /// An envelope arrived on `topic`: delivered locally unless it is ours.
  void on_envelope(std::string_view topic, std::span<const std::byte> envelope);
  std::atomic<std::uint64_t> relayed{0}, received{0}, own_skipped{0}, not_relayed{0}, lost{0},
      reconnects{0};

  // For TopicBroker (any thread).
  bool wait_connected(std::chrono::milliseconds timeout);
  BrokerState state() const noexcept { return state_.load(std::memory_order_acquire); }
  BrokerStatistics statistics() const;
  std::string node_id() const;
  void set_handler(TopicBroker::StateChangedHandler h);

private:
  std::vector<std::byte> encode(SocketMessageType type, std::span<const std::byte> data) const;

  TopicRegistry& registry_;
  const BrokerUrl url_;
  const TopicBrokerOptions options_;
  std::uint64_t node_ = 0;
  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
  std::thread thread_;
  std::unique_ptr<BrokerBackend> backend_;  ///< [loop]
  std::atomic<BrokerState> state_{BrokerState::connecting};
  std::atomic<std::size_t> topics_{0};
  mutable std::mutex mutex_;  ///< state waits and the handler
  std::condition_variable cv_;
  std::shared_ptr<const TopicBroker::StateChangedHandler> handler_;
  bool stopped_ = false;
};

}  // namespace duplex::detail
