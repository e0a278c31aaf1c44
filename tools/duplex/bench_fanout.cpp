// tools/duplex/bench_fanout.cpp: the fan-out mode of `duplex bench`. One
// publisher and N subscribers (duplex MessageWebSocket clients, all on one
// client event loop of their own) on one path of a pubsub server: without a
// URL, a TopicRegistry and a one-loop listener in this process (the server
// of `duplex pubsub-server`). Each binary message starts with its sequence
// number and the publisher's steady-clock time; every subscriber checks the
// sequence (lost, reordered) and records the publish-to-delivery latency. The
// publisher keeps at most `window` publishes not yet delivered everywhere.
// Against servers by URL (other processes, maybe several nodes behind a
// broker), probes go first: a message with the sequence number ~0 sent until
// every subscriber saw one, so no subscription is still on its way when the
// measured publishes start.
#include "bench_fanout.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <duplex/message_websocket.hpp>
#include <duplex/topics.hpp>
#include <duplex/websocket_listener.hpp>

namespace duplex::cli {
namespace {

using Clock = std::chrono::steady_clock;

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
          .count());
}

/// The server of `duplex pubsub-server`, one loop, in this process.
struct LocalServer {
  TopicRegistry topics;
  std::mutex mutex;
  std::vector<std::shared_ptr<MessageWebSocket>> sockets;
  WebSocketListener listener{[] {
    WebSocketListenerOptions o;
    o.threads = 1;
    o.outbound_buffer_size = 4 << 20;  // the subscribers read as fast as they can
    return o;
  }()};
  std::string url;
  LocalServer() {
    listener.connection_received([this](WebSocketListenerConnectionReceivedEventArgs& args) {
      auto ws = std::make_shared<MessageWebSocket>(args.take_message_websocket());
      const std::string topic(args.request().path());
      ws->message_received([this, topic](MessageWebSocket& self, const auto& m) {
        topics.publish(topic, m.data(), m.message_type(), self);
      });
      topics.subscribe(*ws, topic);
      std::lock_guard lock(mutex);
      sockets.push_back(ws);
    });
    url = "ws://127.0.0.1:" + std::to_string(listener.listen("127.0.0.1", 0).port) + "/bench";
  }
};

/// The sequence number of a probe (not counted, not checked).
constexpr std::uint64_t probe_seq = ~std::uint64_t{0};

struct Run {
  explicit Run(const FanoutOptions& o) : options(o) {}
  const FanoutOptions& options;
  asio::io_context io{1};
  std::vector<std::unique_ptr<MessageWebSocket>> subs;
  std::unique_ptr<MessageWebSocket> pub;
  // [client loop]
  std::vector<std::uint64_t> next;  ///< per subscriber: the sequence expected
  std::uint64_t published = 0, deliveries = 0, lost = 0, reordered = 0;
  std::vector<std::uint32_t> latency_us;
  bool publishing = true;
  std::vector<std::byte> payload;
  std::vector<bool> probed;  ///< per subscriber: a probe reached it
  std::size_t probed_count = 0;

  void on_message(std::size_t i, std::span<const std::byte> d) {
    std::uint64_t seq = 0, t = 0;
    if (d.size() < 16) return;
    std::memcpy(&seq, d.data(), 8);
    std::memcpy(&t, d.data() + 8, 8);
    if (seq == probe_seq) {
      if (!probed[i]) {
        probed[i] = true;
        ++probed_count;
      }
      return;
    }
    ++deliveries;
    if (seq > next[i]) lost += seq - next[i];
    if (seq < next[i]) ++reordered;
    next[i] = std::max(next[i], seq + 1);
    if (latency_us.size() < (1u << 24))
      latency_us.push_back(static_cast<std::uint32_t>((now_ns() - t) / 1000));
    pump();
  }

  void send_probe() {
    std::memcpy(payload.data(), &probe_seq, 8);
    pub->send_async(std::span<const std::byte>(payload), [](std::error_code) {});
  }

  /// Publishes while the window has room.
  void pump() {
    const auto n = options.subscribers;
    // deliveries / n: publishes delivered everywhere (at least).
    while (publishing && published < options.window + deliveries / n) {
      const auto t = now_ns();
      std::memcpy(payload.data(), &published, 8);
      std::memcpy(payload.data() + 8, &t, 8);
      pub->send_async(std::span<const std::byte>(payload), [](std::error_code) {});
      ++published;
    }
  }
};

}  // namespace

int run_fanout_bench(const FanoutOptions& options) {
  if (options.subscribers == 0) throw std::invalid_argument("--fanout: at least one subscriber");
  if (options.size < 16)
    throw std::invalid_argument("--size: at least 16 bytes in fan-out mode (sequence and time)");
  if (options.url.empty() && !options.subscriber_urls.empty())
    throw std::invalid_argument("--subscribe-url: needs the publisher's URL too");
  std::unique_ptr<LocalServer> server;
  std::string url = options.url;
  if (url.empty()) {
    server = std::make_unique<LocalServer>();
    url = server->url;
  }
  const auto& sub_urls =
      options.subscriber_urls.empty() ? std::vector<std::string>{url} : options.subscriber_urls;
  Run run(options);
  run.payload.assign(options.size, std::byte{'x'});
  run.next.assign(options.subscribers, 0);
  run.probed.assign(options.subscribers, false);
  auto work = asio::make_work_guard(run.io);
  std::thread client([&] { run.io.run(); });
  try {
    for (std::size_t i = 0; i < options.subscribers; ++i) {
      auto ws = std::make_unique<MessageWebSocket>(run.io);
      ws->message_received(
          [&run, i](MessageWebSocket&, const auto& m) { run.on_message(i, m.data()); });
      ws->connect_async(sub_urls[i % sub_urls.size()]).get();
      run.subs.push_back(std::move(ws));
    }
    run.pub = std::make_unique<MessageWebSocket>(run.io);
    run.pub->control().message_type(SocketMessageType::binary);
    run.pub->connect_async(url).get();
  } catch (...) {
    work.reset();
    run.io.stop();
    client.join();
    throw;
  }
  // Every subscription is in place before the first publish (the server
  // subscribes on open; a probe would need a round trip per subscriber).
  if (server) {
    const auto end = Clock::now() + std::chrono::seconds(10);
    while (server->topics.subscriber_count("/bench") < options.subscribers + 1 &&
           Clock::now() < end)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  } else {
    // A probe every 50 ms until each subscriber saw one (bounded: 10 s).
    const auto end = Clock::now() + std::chrono::seconds(10);
    std::size_t probed = 0;
    while (Clock::now() < end) {
      std::promise<std::size_t> p;
      asio::post(run.io, [&] {
        if (run.probed_count < options.subscribers) run.send_probe();
        p.set_value(run.probed_count);
      });
      probed = p.get_future().get();
      if (probed == options.subscribers) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (probed < options.subscribers) {
      std::promise<void> closed;
      asio::post(run.io, [&] {
        for (auto& s : run.subs) s.reset();
        run.pub.reset();
        closed.set_value();
      });
      closed.get_future().wait();
      work.reset();
      run.io.stop();
      client.join();
      throw std::runtime_error("--fanout: " + std::to_string(options.subscribers - probed) +
                               " subscribers got no probe in 10 s (not on the publisher's topic?)");
    }
  }
  const auto start = Clock::now();
  asio::post(run.io, [&] { run.pump(); });
  std::this_thread::sleep_for(std::chrono::duration<double>(options.duration));
  std::promise<void> stopped;
  asio::post(run.io, [&] {
    run.publishing = false;
    stopped.set_value();
  });
  stopped.get_future().wait();
  // Drain: what was published reaches everyone (bounded wait).
  const auto drain_end = Clock::now() + std::chrono::seconds(5);
  std::uint64_t published = 0, deliveries = 0;
  for (;;) {
    std::promise<std::pair<std::uint64_t, std::uint64_t>> p;
    asio::post(run.io, [&] { p.set_value({run.published, run.deliveries}); });
    std::tie(published, deliveries) = p.get_future().get();
    if (deliveries >= published * options.subscribers || Clock::now() >= drain_end) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::promise<void> closed;
  asio::post(run.io, [&] {
    for (auto& s : run.subs) s.reset();
    run.pub.reset();
    closed.set_value();
  });
  closed.get_future().wait();
  work.reset();
  run.io.stop();
  client.join();

  auto& lat = run.latency_us;
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double q) {
    return lat.empty()
               ? 0u
               : lat[std::min(lat.size() - 1,
                              static_cast<std::size_t>(q * static_cast<double>(lat.size())))];
  };
  const std::uint64_t missing =
      published * options.subscribers - std::min(deliveries, published * options.subscribers);
  const std::uint64_t lost = std::max(run.lost, missing);
  const double dps = static_cast<double>(deliveries) / seconds;
  if (options.json) {
    std::cout << "{\"mode\":\"fanout\",\"subscribers\":" << options.subscribers
              << ",\"size\":" << options.size << ",\"published\":" << published
              << ",\"deliveries\":" << deliveries << ",\"seconds\":" << seconds
              << ",\"deliveries_per_second\":" << static_cast<std::uint64_t>(dps)
              << ",\"p50_us\":" << pct(0.5) << ",\"p99_us\":" << pct(0.99) << ",\"lost\":" << lost
              << ",\"reordered\":" << run.reordered << "}\n";
  } else {
    std::cout << "fan-out: 1 publisher, " << options.subscribers << " subscribers, " << options.size
              << " B messages\n"
              << "  published    " << published << " ("
              << static_cast<std::uint64_t>(static_cast<double>(published) / seconds) << "/s)\n"
              << "  deliveries   " << deliveries << " (" << static_cast<std::uint64_t>(dps)
              << "/s)\n"
              << "  latency      p50 " << pct(0.5) << " us, p99 " << pct(0.99) << " us\n"
              << "  lost " << lost << ", reordered " << run.reordered << '\n';
  }
  return lost == 0 && run.reordered == 0 ? 0 : 1;
}

}  // namespace duplex::cli
