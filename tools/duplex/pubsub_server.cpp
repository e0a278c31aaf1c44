// duplex pubsub-server: a topic server. A client's topic is its URL path;
// every text or binary message a client sends reaches every other client of
// that path, on this node and, with --redis or --nats, on every node that
// uses the same broker. Prints "listening on ws://HOST:PORT/" once ready and
// stops cleanly (1001 to every connection) on SIGINT or SIGTERM. A broker that
// cannot be reached at start is an error (exit 1).
#include <CLI/CLI.hpp>

#include <csignal>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

#include <duplex/message_websocket.hpp>
#include <duplex/topics.hpp>
#include <duplex/websocket_listener.hpp>
#ifdef DUPLEX_HAVE_BROKERS
#include <duplex/topic_broker.hpp>
#endif

#include "common.hpp"
#include "deflate_options.hpp"
#include "server_metrics.hpp"

namespace duplex::cli {
namespace {

struct PubsubServerCommand {
  std::string host = "127.0.0.1";
  std::uint16_t port = 9002;
  std::size_t threads = 0;
  std::string redis, nats;
  std::string tls_cert, tls_key;
  DeflateFlags deflate;
  double stop_timeout = 5.0;
  double broker_timeout = 5.0;
  std::string slow = "drop";
  std::string metrics_path;
};

// The registry's counters as Prometheus families, appended to the --metrics
// page: what pubsub-server sends is counted there (one delivery per
// subscriber a message is queued to), not per socket.
std::string topic_families(const TopicRegistry& topics) {
  const TopicStatistics st = topics.statistics();
  std::string out;
  metric_family(out, "duplex_topics", "gauge", "Topics with at least one subscriber.");
  metric_sample(out, "duplex_topics", st.topics);
  metric_family(out, "duplex_topic_subscriptions", "gauge", "(socket, topic) subscriptions.");
  metric_sample(out, "duplex_topic_subscriptions", st.subscriptions);
  metric_family(out, "duplex_topic_published_total", "counter",
                "Messages published (from clients, and from the broker) that reached a loop.");
  metric_sample(out, "duplex_topic_published_total", st.published);
  metric_family(out, "duplex_topic_deliveries_total", "counter",
                "Messages queued to a subscriber (the messages this server sent).");
  metric_sample(out, "duplex_topic_deliveries_total", st.deliveries);
  metric_family(out, "duplex_topic_dropped_total", "counter",
                "Messages not queued to a slow subscriber (--slow drop).");
  metric_sample(out, "duplex_topic_dropped_total", st.dropped);
  metric_family(out, "duplex_topic_slow_closed_total", "counter",
                "Subscribers closed by the slow-subscriber policy.");
  metric_sample(out, "duplex_topic_slow_closed_total", st.slow_closed);
  metric_family(out, "duplex_topic_not_relayed_total", "counter",
                "Publishes the broker did not carry (local only or refused).");
  metric_sample(out, "duplex_topic_not_relayed_total", st.not_relayed);
  return out;
}

SlowSubscriberPolicy slow_policy(const std::string& s) {
  if (s == "drop") return SlowSubscriberPolicy::drop;
  if (s == "close-1008") return SlowSubscriberPolicy::close_policy_violation;
  if (s == "close-1013") return SlowSubscriberPolicy::close_try_again_later;
  throw std::invalid_argument("--slow must be drop, close-1008 or close-1013");
}

const char* state_name(int s) {
  static const char* names[] = {"connecting", "connected", "disconnected", "stopped"};
  return names[s];
}

int run_pubsub_server(PubsubServerCommand& c) {
  const auto stop_timeout = seconds_option(c.stop_timeout, "--stop-timeout");
  const auto broker_timeout = seconds_option(c.broker_timeout, "--broker-timeout");
  TopicRegistryOptions topt;
  topt.slow_subscriber = slow_policy(c.slow);
  TopicRegistry topics(topt);

  WebSocketListenerOptions lo;
  lo.threads = c.threads;
  lo.deflate = c.deflate.to_options();
  if (!c.tls_cert.empty()) {
    ListenerTlsOptions tls;
    tls.certificate_chain_file = c.tls_cert;
    tls.private_key_file = c.tls_key;
    lo.tls = tls;
  }
  const std::string broker_url = !c.redis.empty() ? c.redis : c.nats;
#ifdef DUPLEX_HAVE_BROKERS
  std::unique_ptr<TopicBroker> broker;
  if (!broker_url.empty()) {
    broker = std::make_unique<TopicBroker>(topics, broker_url);  // checks the URL
    if (!broker->wait_connected(broker_timeout)) {
      std::cerr << "duplex: cannot reach the broker at " << broker_url << std::endl;
      return exit_failure;
    }
    broker->state_changed([url = broker_url](BrokerState s) {
      std::lock_guard lock(output_mutex());
      std::cerr << "broker " << url << ": " << state_name(static_cast<int>(s)) << std::endl;
    });
  }
#else
  (void)broker_timeout;
  if (!broker_url.empty())
    throw std::invalid_argument("--redis/--nats: this build has no broker back ends");
#endif

  // Open sockets, owned here until they close.
  std::mutex mutex;
  std::unordered_map<MessageWebSocket*, std::shared_ptr<MessageWebSocket>> sockets;
  block_stop_signals();
  WebSocketListener listener(lo);
  std::shared_ptr<ServerMetrics> metrics;
  if (!c.metrics_path.empty()) {
    metrics = std::make_shared<ServerMetrics>(false);
    listener.http_requested(metrics_handler(c.metrics_path, listener, metrics,
                                            [&topics] { return topic_families(topics); }));
  }
  listener.connection_received([&](WebSocketListenerConnectionReceivedEventArgs& args) {
    auto ws = std::make_shared<MessageWebSocket>(args.take_message_websocket());
    const std::string topic(args.request().path());
    if (metrics) metrics->opened();
    ws->message_received([&topics, topic, &metrics](MessageWebSocket& self, const auto& m) {
      if (metrics) metrics->received(m.data().size(), true);
      topics.publish(topic, m.data(), m.message_type(), self);
    });
    ws->closed([&](MessageWebSocket& self, const WebSocketClosedEventArgs& closed) {
      if (metrics) metrics->closed(closed.code(), static_cast<bool>(closed.error()));
      // The socket is destroyed below, in this handler, so the registry's own
      // closed handler (registered after this one) would not run: leave here.
      topics.unsubscribe_all(self);
      std::shared_ptr<MessageWebSocket> last;
      std::lock_guard lock(mutex);
      auto it = sockets.find(&self);
      if (it == sockets.end()) return;
      last = std::move(it->second);  // destroyed after the lock, in this handler
      sockets.erase(it);
    });
    {
      std::lock_guard lock(mutex);
      sockets.emplace(ws.get(), ws);
    }
    topics.subscribe(*ws, topic);
  });
  const auto ep = listener.listen(c.host, c.port);
  {
    std::lock_guard lock(output_mutex());
    const bool v6 = ep.host.find(':') != std::string::npos;
    std::cout << "listening on " << (c.tls_cert.empty() ? "ws" : "wss") << "://"
              << (v6 ? "[" + ep.host + "]" : ep.host) << ':' << ep.port << "/\n"
              << std::flush;
  }
  int sig = 0;
  while ((sig = wait_for_signal(std::chrono::seconds(1))) == 0) {
  }
  const std::size_t cut = listener.stop(stop_timeout);
  // Destroyed outside the lock: a closed handler may be waiting for it.
  decltype(sockets) rest;
  {
    std::lock_guard lock(mutex);
    rest.swap(sockets);
  }
  rest.clear();
  const auto st = topics.statistics();
  std::lock_guard lock(output_mutex());
  std::cerr << "stopped (" << (sig == SIGINT ? "SIGINT" : "SIGTERM") << "): " << st.published
            << " published, " << st.deliveries << " deliveries, " << st.dropped << " dropped, "
            << st.not_relayed << " not relayed";
#ifdef DUPLEX_HAVE_BROKERS
  if (broker) {
    const auto b = broker->statistics();
    std::cerr << "; broker: " << b.relayed << " relayed, " << b.received << " received, " << b.lost
              << " lost, " << b.reconnects << " reconnects";
  }
#endif
  if (cut) std::cerr << ", " << cut << " connections cut";
  std::cerr << std::endl;
  return exit_ok;
}

}  // namespace

void add_pubsub_server_command(CLI::App& app, int& exit_status) {
  auto c = std::make_shared<PubsubServerCommand>();
  CLI::App* cmd = app.add_subcommand(
      "pubsub-server",
      "Run a topic server: a client's topic is its URL path; each message reaches every other "
      "client of that path, on every node with --redis/--nats; prints 'listening on "
      "ws://HOST:PORT/' when ready; SIGINT/SIGTERM stop it");
  cmd->add_option("--host", c->host, "Numeric address to listen on (IPv4 or IPv6)")
      ->capture_default_str();
  cmd->add_option("--port", c->port, "Port to listen on (0: an ephemeral port)")
      ->capture_default_str();
  cmd->add_option("--threads", c->threads, "Event-loop threads (0: one per core)")
      ->capture_default_str();
  auto* redis =
      cmd->add_option("--redis", c->redis, "Relay through Redis pub/sub: redis://HOST:PORT");
  auto* nats = cmd->add_option("--nats", c->nats, "Relay through NATS: nats://HOST:PORT");
  redis->excludes(nats);
  cmd->add_option("--broker-timeout", c->broker_timeout,
                  "Seconds to wait for the broker at start (then exit 1)")
      ->capture_default_str();
  cmd->add_option("--slow", c->slow,
                  "Slow subscriber policy: drop (count), close-1008 or close-1013")
      ->capture_default_str();
  auto* cert = cmd->add_option("--tls-cert", c->tls_cert,
                               "PEM certificate chain: serve wss:// (with --tls-key)")
                   ->check(CLI::ExistingFile);
  auto* key = cmd->add_option("--tls-key", c->tls_key, "PEM private key of --tls-cert")
                  ->check(CLI::ExistingFile);
  cert->needs(key);
  key->needs(cert);
  cmd->add_option("--stop-timeout", c->stop_timeout,
                  "On SIGINT/SIGTERM, wait this many seconds for connections to close")
      ->capture_default_str();
  cmd->add_option("--metrics", c->metrics_path,
                  "Serve Prometheus metrics at this path over plain HTTP on the same port "
                  "(e.g. /metrics; other plain HTTP requests get 404)");
  add_deflate_options(*cmd, c->deflate);
  cmd->callback([c, &exit_status] { exit_status = run_pubsub_server(*c); });
}

}  // namespace duplex::cli
