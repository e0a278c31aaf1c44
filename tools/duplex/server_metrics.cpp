// Traffic counters of the CLI's servers and their Prometheus page.
#include "server_metrics.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace duplex::cli {

std::size_t ServerMetrics::shard_index() noexcept {
  // Each thread (each listener loop) gets its own shard, round-robin.
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t index = next.fetch_add(1, std::memory_order_relaxed) % shard_count;
  return index;
}

std::uint64_t ServerMetrics::total(std::atomic<std::uint64_t> Shard::*field) const noexcept {
  std::uint64_t n = 0;
  for (const auto& s : shards_) n += (s.*field).load(std::memory_order_relaxed);
  return n;
}

void ServerMetrics::closed(std::uint16_t code, bool failed) {
  std::lock_guard lock(close_mutex_);
  ++close_codes_[code];
  if (failed) ++failed_;
}

void metric_family(std::string& out, const char* name, const char* type, const char* help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void metric_sample(std::string& out, const char* name, std::uint64_t value, const char* label,
                   const std::string& label_value) {
  out.append(name);
  if (label) out.append("{").append(label).append("=\"").append(label_value).append("\"}");
  out.append(" ").append(std::to_string(value)).append("\n");
}

namespace {

void family(std::string& out, const char* name, const char* type, const char* help) {
  metric_family(out, name, type, help);
}

void sample(std::string& out, const char* name, std::uint64_t value, const char* label = nullptr,
            const std::string& label_value = {}) {
  metric_sample(out, name, value, label, label_value);
}

void by_status(std::string& out, const char* name, const std::map<int, std::uint64_t>& counts) {
  for (const auto& [status, n] : counts) sample(out, name, n, "status", std::to_string(status));
}

}  // namespace

std::string ServerMetrics::prometheus(const ListenerMetrics& listener) const {
  std::string out;
  out.reserve(4096);
  family(out, "duplex_connections_open", "gauge",
         "Connections handshaking or open (counted against max_connections).");
  sample(out, "duplex_connections_open", listener.open_connections);
  family(out, "duplex_connections_opened_total", "counter",
         "WebSocket connections handed to the server.");
  sample(out, "duplex_connections_opened_total", total(&Shard::opened));
  family(out, "duplex_handshakes_total", "counter",
         "Answers to WebSocket upgrade requests by status (101: accepted; else refused).");
  by_status(out, "duplex_handshakes_total", listener.websocket_answers);
  family(out, "duplex_http_requests_total", "counter",
         "Plain HTTP requests answered, by status (this page's own request is counted after "
         "it is answered).");
  by_status(out, "duplex_http_requests_total", listener.http_answers);
  family(out, "duplex_messages_received_total", "counter", "WebSocket messages received.");
  sample(out, "duplex_messages_received_total", total(&Shard::messages_received));
  if (counts_sent_) {
    family(out, "duplex_messages_sent_total", "counter", "WebSocket messages sent (queued).");
    sample(out, "duplex_messages_sent_total", total(&Shard::messages_sent));
  }
  family(out, "duplex_received_bytes_total", "counter",
         "WebSocket message payload bytes received (after decompression).");
  sample(out, "duplex_received_bytes_total", total(&Shard::bytes_received));
  if (counts_sent_) {
    family(out, "duplex_sent_bytes_total", "counter",
           "WebSocket message payload bytes sent (queued, before compression).");
    sample(out, "duplex_sent_bytes_total", total(&Shard::bytes_sent));
  }
  {
    std::lock_guard lock(close_mutex_);
    family(out, "duplex_closes_total", "counter",
           "Closed WebSocket connections by close code (1006: no close frame).");
    for (const auto& [code, n] : close_codes_)
      sample(out, "duplex_closes_total", n, "code", std::to_string(code));
    family(out, "duplex_connection_errors_total", "counter",
           "WebSocket connections that ended with an error (failed, timed out, cut).");
    sample(out, "duplex_connection_errors_total", failed_);
  }
  family(out, "duplex_loop_handshakes_pending", "gauge",
         "Connections in the handshake stage on each event loop (its handshake queue depth).");
  for (std::size_t i = 0; i < listener.loops.size(); ++i)
    sample(out, "duplex_loop_handshakes_pending", listener.loops[i].handshakes_pending, "loop",
           std::to_string(i));
  family(out, "duplex_loop_handshake_errors_total", "counter",
         "Handshakes on each event loop that ended without an answer (TLS failure, client left, "
         "timeout).");
  for (std::size_t i = 0; i < listener.loops.size(); ++i)
    sample(out, "duplex_loop_handshake_errors_total", listener.loops[i].handshake_errors, "loop",
           std::to_string(i));
  return out;
}

WebSocketListener::HttpRequestedHandler metrics_handler(
    std::string path, const WebSocketListener& listener,
    std::shared_ptr<const ServerMetrics> metrics, std::function<std::string()> extra) {
  const bool valid = !path.empty() && path.front() == '/' &&
                     path.find_first_of("? \t\r\n") == std::string::npos &&
                     std::none_of(path.begin(), path.end(),
                                  [](char c) { return static_cast<unsigned char>(c) < 0x20; });
  if (!valid)
    throw std::invalid_argument(
        "--metrics: path must start with '/' and hold no '?', white space or control characters");
  return [path = std::move(path), &listener, metrics = std::move(metrics),
          extra = std::move(extra)](const HttpServerRequest& req, HttpServerResponse& res) {
    if (req.path() != path) {
      res.status(404);
      return res.body("not found\n");
    }
    if (req.method != "GET" && req.method != "HEAD") {
      res.status(405);
      res.add_header("Allow", "GET, HEAD");
      return res.body("method not allowed\n");
    }
    std::string page = metrics->prometheus(listener.metrics());
    if (extra) page += extra();
    res.body(std::move(page), "text/plain; version=0.0.4; charset=utf-8");
  };
}

}  // namespace duplex::cli
