// TopicBroker against real brokers: each test starts its own redis-server or
// nats-server on a free loopback port and stops it by pid. Two "nodes" (a
// registry, a listener and a broker each) in one process: messages cross
// exactly once, in order per publisher; a broker outage keeps local delivery
// going, is counted, and the nodes resubscribe after the restart.
#ifdef DUPLEX_HAVE_BROKERS

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <duplex/message_websocket.hpp>
#include <duplex/topic_broker.hpp>
#include <duplex/topics.hpp>
#include <duplex/websocket_listener.hpp>

#include "listener_test_util.hpp"

extern char** environ;

namespace duplex::test {
namespace {

std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

bool accepts(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

/// A redis-server or nats-server of our own on 127.0.0.1.
class BrokerProcess {
public:
  BrokerProcess(std::string kind, std::uint16_t port) : kind_(std::move(kind)), port_(port) {
    start();
  }
  ~BrokerProcess() { stop(); }
  void start() {
    const auto p = std::to_string(port_);
    std::vector<std::string> args;
    if (kind_ == "redis")
      args = {"redis-server", "--port",      p,   "--bind",
              "127.0.0.1",    "--save",      "",  "--appendonly",
              "no",           "--daemonize", "no"};
    else
      args = {"nats-server", "-a", "127.0.0.1", "-p", p};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    const int rc = posix_spawnp(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) throw std::runtime_error("cannot start " + args[0]);
    if (!wait_until([&] { return accepts(port_); }, 10s))
      throw std::runtime_error(args[0] + " does not accept");
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  [[nodiscard]] std::string url() const { return kind_ + "://127.0.0.1:" + std::to_string(port_); }

private:
  std::string kind_;
  std::uint16_t port_;
  pid_t pid_ = -1;
};

/// One node: a registry, a listener whose clients subscribe to their path,
/// and a broker.
struct Node {
  Node(const std::string& url, TopicBrokerOptions o = {}) {
    WebSocketListenerOptions lo;
    lo.threads = 2;
    listener = std::make_unique<WebSocketListener>(lo);
    listener->connection_received([this](WebSocketListenerConnectionReceivedEventArgs& args) {
      auto ws = std::make_shared<MessageWebSocket>(args.take_message_websocket());
      topics.subscribe(*ws, args.request().path());
      std::lock_guard lock(mutex);
      sockets.push_back(ws);
    });
    port = listener->listen("127.0.0.1", 0).port;
    broker = std::make_unique<TopicBroker>(topics, url, o);
  }
  ~Node() {
    broker.reset();
    listener.reset();
  }
  TopicRegistry topics;
  std::mutex mutex;
  std::vector<std::shared_ptr<MessageWebSocket>> sockets;
  std::unique_ptr<WebSocketListener> listener;
  std::unique_ptr<TopicBroker> broker;
  std::uint16_t port = 0;
};

struct Receiver {
  std::mutex mutex;
  std::vector<std::string> got;
  std::atomic<std::size_t> count{0};   ///< messages other than "probe"
  std::atomic<std::size_t> probes{0};  ///< "probe" messages (set-up checks)
  void connect(std::uint16_t port, const std::string& path) {
    ws.message_received([this](MessageWebSocket&, const auto& args) {
      if (args.text() == "probe") {
        probes.fetch_add(1);
        return;
      }
      std::lock_guard lock(mutex);
      got.emplace_back(args.text());
      count.fetch_add(1);
    });
    ws.connect_async("ws://127.0.0.1:" + std::to_string(port) + path).get();
  }
  // Last: destroyed first, so no handler runs on the members above after them.
  MessageWebSocket ws;
};

class TopicBrokers : public ::testing::TestWithParam<std::string> {};

TEST_P(TopicBrokers, MessagesCrossNodesOnceInOrderPerPublisher) {
  BrokerProcess server(GetParam(), free_port());
  Node n1(server.url()), n2(server.url());
  ASSERT_TRUE(n1.broker->wait_connected(10s));
  ASSERT_TRUE(n2.broker->wait_connected(10s));
  Receiver a, b;
  a.connect(n1.port, "/room");
  b.connect(n2.port, "/room");
  ASSERT_TRUE(wait_until([&] { return n1.broker->statistics().broker_topics == 1; }, 5s));
  ASSERT_TRUE(wait_until([&] { return n2.broker->statistics().broker_topics == 1; }, 5s));
  // The broker subscription is in place once a probe crosses both ways.
  ASSERT_TRUE(wait_until(
      [&] {
        n1.topics.publish("/room", "probe");
        return wait_until([&] { return b.probes > 0; }, 100ms);
      },
      5s));
  const std::size_t base = 0;
  constexpr int per = 2000;
  std::thread p1([&] {
    for (int i = 0; i < per; ++i) n1.topics.publish("/room", "1:" + std::to_string(i));
  });
  std::thread p2([&] {
    for (int i = 0; i < per; ++i) n2.topics.publish("/room", "2:" + std::to_string(i));
  });
  p1.join();
  p2.join();
  for (auto* r : {&a, &b}) {
    ASSERT_TRUE(wait_until([&] { return r->count >= base + 2 * per; }, 20s)) << r->count;
    std::lock_guard lock(r->mutex);
    std::map<int, int> next;
    for (std::size_t k = base; k < r->got.size(); ++k) {
      const auto& m = r->got[k];
      const int pub = m[0] - '0';
      const int i = std::stoi(m.substr(2));
      ASSERT_EQ(i, next[pub]) << "publisher " << pub << " out of order or twice";
      next[pub] = i + 1;
    }
    EXPECT_EQ(next[1], per);
    EXPECT_EQ(next[2], per);
  }
  // Exactly once: a marker published after everything reaches each receiver
  // (b on its own node, a through the broker) after every earlier message,
  // so a duplicate would show in the count once the marker is in.
  n2.topics.publish("/room", "end");
  for (auto* r : {&a, &b}) {
    ASSERT_TRUE(wait_until(
        [&] {
          std::lock_guard lock(r->mutex);
          return !r->got.empty() && r->got.back() == "end";
        },
        5s))
        << r->count;
    EXPECT_EQ(r->count, base + 2 * per + 1);
  }
  EXPECT_EQ(n1.broker->statistics().lost, 0u);
  // The last local subscriber leaves: the node unsubscribes at the broker.
  a.ws.close();
  EXPECT_TRUE(wait_until([&] { return n1.broker->statistics().broker_topics == 0; }, 5s));
}

TEST_P(TopicBrokers, OutageKeepsLocalDeliveryThenResubscribes) {
  const auto port = free_port();
  auto server = std::make_unique<BrokerProcess>(GetParam(), port);
  TopicBrokerOptions o;
  o.reconnect_min = 50ms;
  o.reconnect_max = 200ms;
  Node n1(server->url(), o), n2(server->url(), o);
  std::atomic<int> downs{0};
  n1.broker->state_changed([&](BrokerState s) {
    if (s == BrokerState::disconnected) downs.fetch_add(1);
  });
  ASSERT_TRUE(n1.broker->wait_connected(10s));
  ASSERT_TRUE(n2.broker->wait_connected(10s));
  Receiver a, b;
  a.connect(n1.port, "/o");
  b.connect(n2.port, "/o");
  ASSERT_TRUE(wait_until(
      [&] {
        n1.topics.publish("/o", "probe");
        return wait_until([&] { return b.probes > 0; }, 100ms);
      },
      5s));
  server->stop();
  ASSERT_TRUE(wait_until([&] { return n1.broker->state() == BrokerState::disconnected; }, 10s));
  EXPECT_GE(downs.load(), 1);
  const auto a0 = a.count.load(), b0 = b.count.load();
  EXPECT_EQ(n1.topics.publish("/o", "during"), PublishStatus::local_only);
  ASSERT_TRUE(wait_until([&] { return a.count == a0 + 1; }, 5s));  // local delivery goes on
  EXPECT_GE(n1.broker->statistics().not_relayed, 1u);
  EXPECT_GE(n1.topics.statistics().not_relayed, 1u);
  server = std::make_unique<BrokerProcess>(GetParam(), port);
  ASSERT_TRUE(n1.broker->wait_connected(10s));
  ASSERT_TRUE(n2.broker->wait_connected(10s));
  // Resubscribed: a message crosses again.
  ASSERT_TRUE(wait_until(
      [&] {
        n1.topics.publish("/o", "after");
        return wait_until([&] { return b.count > b0; }, 100ms);
      },
      10s));
  EXPECT_GE(n1.broker->statistics().reconnects, 1u);
  std::lock_guard lock(b.mutex);
  EXPECT_EQ(b.got.back(), "after");
}

TEST_P(TopicBrokers, RefusePolicyDeliversNothingDuringOutage) {
  const auto port = free_port();
  auto server = std::make_unique<BrokerProcess>(GetParam(), port);
  TopicBrokerOptions o;
  o.outage = BrokerOutagePolicy::refuse;
  Node n1(server->url(), o);
  ASSERT_TRUE(n1.broker->wait_connected(10s));
  Receiver a;
  a.connect(n1.port, "/r");
  ASSERT_TRUE(wait_until([&] { return n1.topics.subscriber_count("/r") == 1; }, 5s));
  server->stop();
  ASSERT_TRUE(wait_until([&] { return n1.broker->state() == BrokerState::disconnected; }, 10s));
  EXPECT_EQ(n1.topics.publish("/r", "x"), PublishStatus::refused);
  EXPECT_EQ(n1.topics.statistics().published, 0u);
  EXPECT_EQ(n1.broker->statistics().not_relayed, 1u);
}

TEST_P(TopicBrokers, UnreachableAtStartIsReported) {
  const auto port = free_port();  // nothing listens there
  TopicRegistry topics;
  TopicBroker broker(topics, GetParam() + "://127.0.0.1:" + std::to_string(port));
  EXPECT_FALSE(broker.wait_connected(300ms));
  EXPECT_EQ(broker.state(), BrokerState::connecting);
  EXPECT_EQ(topics.publish("/t", "x"), PublishStatus::local_only);
}

INSTANTIATE_TEST_SUITE_P(Brokers, TopicBrokers, ::testing::Values("redis", "nats"));

TEST(TopicBrokerUrl, IsCheckedAtStart) {
  auto what = [](std::string_view url) {
    try {
      TopicBroker::parse_url(url);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  EXPECT_EQ(what("http://127.0.0.1:1"),
            "broker url \"http://127.0.0.1:1\": scheme must be redis or nats, not \"http\"");
  EXPECT_EQ(what("redis://:6379"), "broker url \"redis://:6379\": host must not be empty");
  EXPECT_EQ(what("nats://h:0"), "broker url \"nats://h:0\": port must be a number from 1 to 65535");
  EXPECT_EQ(what("nats://h:70000"),
            "broker url \"nats://h:70000\": port must be a number from 1 to 65535");
  EXPECT_EQ(what("redis://h:x"),
            "broker url \"redis://h:x\": port must be a number from 1 to 65535");
  EXPECT_EQ(what("redis://h:1/db"),
            "broker url \"redis://h:1/db\": only HOST:PORT may follow the scheme (no user, path "
            "or query)");
  EXPECT_EQ(what("localhost:6379"),
            "broker url \"localhost:6379\": must be redis://HOST:PORT or nats://HOST:PORT");
  const auto u = TopicBroker::parse_url("redis://[::1]:7000");
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, 7000);
  EXPECT_EQ(TopicBroker::parse_url("nats://example.org").port, 4222);
  TopicRegistry topics;
  EXPECT_THROW(TopicBroker(topics, "redis://h:1", TopicBrokerOptions{.reconnect_min = {}}),
               std::invalid_argument);
}

}  // namespace
}  // namespace duplex::test

#endif  // DUPLEX_HAVE_BROKERS
