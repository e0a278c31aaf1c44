// server_metrics.hpp: what a CLI server counts about its WebSocket traffic, and
// the Prometheus text page (with the listener's own counters) that its
// `--metrics PATH` serves through the listener's http_requested handler. Shared
// by the servers of the CLI (echo-server, pubsub-server).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <duplex/websocket_listener.hpp>

namespace duplex::cli {

/// Traffic counters. The per-message calls are made on the connection's loop
/// thread and cost one relaxed atomic add on a cache line of that thread's own
/// (shards by thread, so each loop writes its own); prometheus() sums them.
/// Every member is thread-safe.
class ServerMetrics {
public:
  /// `counts_sent`: the server calls sent() for what it sends; false for a
  /// server whose sends are counted elsewhere (pubsub-server: the topic
  /// registry's deliveries), so the page leaves out the sent families rather
  /// than show zeros.
  explicit ServerMetrics(bool counts_sent = true) noexcept : counts_sent_(counts_sent) {}

  /// A WebSocket connection was handed to the server.
  void opened() noexcept { bump(&Shard::opened, 1); }
  /// A piece of a message arrived; `complete`: it ended the message.
  void received(std::size_t bytes, bool complete) noexcept {
    bump(&Shard::bytes_received, bytes);
    if (complete) bump(&Shard::messages_received, 1);
  }
  /// A piece of a message was queued for sending; `complete`: it ends one.
  void sent(std::size_t bytes, bool complete) noexcept {
    bump(&Shard::bytes_sent, bytes);
    if (complete) bump(&Shard::messages_sent, 1);
  }
  /// A connection closed with close code `code` (1006: no close frame) and,
  /// when it failed, an error.
  void closed(std::uint16_t code, bool failed);

  /// The page in the Prometheus text exposition format (version 0.0.4) for
  /// these counters and `listener`'s (WebSocketListener::metrics()).
  [[nodiscard]] std::string prometheus(const ListenerMetrics& listener) const;

private:
  struct alignas(64) Shard {
    std::atomic<std::uint64_t> opened{0};
    std::atomic<std::uint64_t> messages_received{0};
    std::atomic<std::uint64_t> bytes_received{0};
    std::atomic<std::uint64_t> messages_sent{0};
    std::atomic<std::uint64_t> bytes_sent{0};
  };
  static constexpr std::size_t shard_count = 64;  // above the usual loop count
  static std::size_t shard_index() noexcept;
  void bump(std::atomic<std::uint64_t> Shard::*field, std::uint64_t n) noexcept {
    (shards_[shard_index()].*field).fetch_add(n, std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t total(std::atomic<std::uint64_t> Shard::*field) const noexcept;

  bool counts_sent_;
  std::array<Shard, shard_count> shards_{};
  // Closes are once per connection, not per message: a map under a mutex.
  mutable std::mutex close_mutex_;
  std::map<std::uint16_t, std::uint64_t> close_codes_;
  std::uint64_t failed_ = 0;
};

/// An http_requested handler that serves `metrics` and `listener`'s counters
/// at `path` (GET or HEAD; 405 with `Allow: GET, HEAD` for other methods) and
/// answers 404 elsewhere. `extra`, when set, is called on each scrape (on the
/// connection's loop, any loop) and its text, whole metric families in the
/// same format, is appended to the page. `listener` must outlive the handler
/// (it is the listener the handler is set on). Throws std::invalid_argument
/// if `path` does not start with '/' or holds '?', white space or controls.
WebSocketListener::HttpRequestedHandler metrics_handler(
    std::string path, const WebSocketListener& listener,
    std::shared_ptr<const ServerMetrics> metrics, std::function<std::string()> extra = {});

/// Appends to `out` the HELP and TYPE lines of the family `name`.
void metric_family(std::string& out, const char* name, const char* type, const char* help);
/// Appends to `out` one sample `name{label="label_value"} value` (no label
/// when `label` is null).
void metric_sample(std::string& out, const char* name, std::uint64_t value,
                   const char* label = nullptr, const std::string& label_value = {});

}  // namespace duplex::cli
