// echo_service.hpp: the echo server behind `duplex echo-server` and `duplex demo`.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <duplex/message_websocket.hpp>
#include <duplex/websocket_listener.hpp>

#include "server_metrics.hpp"

namespace duplex::cli {

struct EchoServerOptions {
  std::string host = "127.0.0.1";  // loopback: exposing a server is the user's choice
  std::uint16_t port = 0;
  std::string tls_certificate_file;  // both set: wss://
  std::string tls_private_key_file;
  std::size_t threads = 0;                                   // 0: one per core
  std::uint64_t max_message_size = std::uint64_t{64} << 20;  // as the library's default
  std::vector<std::string> protocols;
  std::vector<std::string> allowed_origins;
  bool verbose = false;  // one line per connection event on stderr
  bool json = false;     // those lines as JSON on stdout
  // permessage-deflate (off unless --deflate), with the listener's defaults.
  DeflateOptions deflate = protocol::default_server_deflate_config();
  // Messages are echoed piece by piece, one frame per piece: pieces of at
  // least this many bytes (the last of a message may be smaller), so a message
  // that came in tiny frames, or compressed, does not go back in thousands of
  // frames (Node ws refuses more than 16,384).
  std::size_t partial_message_threshold =
      MessageWebSocketControl::default_partial_message_threshold;

  /// Non-empty: Prometheus metrics over plain HTTP at this path (--metrics).
  std::string metrics_path;
};

/// Counters of an echo server (all connections so far).
struct EchoStats {
  std::uint64_t connections = 0;
  std::uint64_t messages = 0;
  std::uint64_t bytes = 0;
};

/// A WebSocket echo server: every message goes back with its type, and the
/// peer's close is answered with its code. Listens from construction; stop()
/// (or the destructor) closes every connection with 1001.
class EchoServer {
public:
  explicit EchoServer(const EchoServerOptions& options);
  ~EchoServer();
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;

  /// "ws://HOST:PORT/" (or wss://) of the bound endpoint.
  [[nodiscard]] std::string url() const { return url_; }
  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] EchoStats stats() const;

  /// Graceful shutdown bounded by `timeout`; returns the connections cut.
  std::size_t stop(std::chrono::milliseconds timeout);

private:
  struct Shared {
    std::mutex mutex;
    // The open sockets, each in a slot of its own (16 B: no node, no box),
    // found by its slot number; a deque never moves its elements, so a
    // socket stays where its handlers' owner pointer says while others come
    // and go. A closed socket's slot is reused by the next connection.
    std::deque<MessageWebSocket> sockets;
    std::vector<std::uint32_t> free_slots;
    std::uint32_t next_id = 1;  ///< for the log (32 bits: the handlers stay small)
    std::atomic<std::uint64_t> connections{0};
    std::atomic<std::uint64_t> messages{0};
    std::atomic<std::uint64_t> bytes{0};
    std::shared_ptr<ServerMetrics> metrics;  // with metrics_path only
    bool verbose = false;
    bool json = false;
  };

  std::shared_ptr<Shared> shared_;
  std::unique_ptr<WebSocketListener> listener_;
  std::string url_;
  std::uint16_t port_ = 0;
};

}  // namespace duplex::cli
