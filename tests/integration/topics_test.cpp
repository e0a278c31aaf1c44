// TopicRegistry over real loopback connections: fan-out to subscribers on
// several loops, order per publisher under many publishing threads,
// subscribe/unsubscribe/close while publishes are in flight, the slow
// subscriber policies with bounded memory, argument checks, and the memory
// of 100,000 topics and subscriptions.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <duplex/message_websocket.hpp>
#include <duplex/topics.hpp>
#include <duplex/websocket_listener.hpp>

#include "listener_test_util.hpp"

namespace duplex::test {
namespace {

/// A listener whose server sockets are kept here and handed to `on_open`.
struct TopicServer {
  explicit TopicServer(WebSocketListenerOptions o = {}) : listener(make(o)) {
    listener.connection_received([this](WebSocketListenerConnectionReceivedEventArgs& args) {
      auto ws = std::make_shared<MessageWebSocket>(args.take_message_websocket());
      const std::string path(args.request().path());
      std::function<void(MessageWebSocket&, const std::string&)> f;
      {
        std::lock_guard lock(mutex);
        sockets.push_back(ws);
        f = on_open;
      }
      if (f) f(*ws, path);
      opened.fetch_add(1);
    });
    port = listener.listen("127.0.0.1", 0).port;
  }
  static WebSocketListenerOptions make(WebSocketListenerOptions o) {
    if (o.threads == 0) o.threads = 2;
    return o;
  }
  std::mutex mutex;
  std::vector<std::shared_ptr<MessageWebSocket>> sockets;
  std::function<void(MessageWebSocket&, const std::string&)> on_open;
  std::atomic<int> opened{0};
  WebSocketListener listener;
  std::uint16_t port = 0;
};

/// A client that records every text message it receives.
struct Receiver {
  std::mutex mutex;
  std::vector<std::string> got;
  std::atomic<std::size_t> count{0};
  void connect(std::uint16_t port, const std::string& path) {
    ws.message_received([this](MessageWebSocket&, const auto& args) {
      std::lock_guard lock(mutex);
      got.emplace_back(args.text());
      count.fetch_add(1);
    });
    ws.connect_async("ws://127.0.0.1:" + std::to_string(port) + path).get();
  }
  // Last: destroyed first, so no handler runs on the members above after them.
  MessageWebSocket ws;
};

TEST(Topics, PublishReachesEverySubscriberOnEveryLoop) {
  TopicRegistry topics;
  TopicServer server;
  server.on_open = [&](MessageWebSocket& ws, const std::string& path) {
    topics.subscribe(ws, path);
  };
  std::vector<std::unique_ptr<Receiver>> a, b;
  for (int i = 0; i < 4; ++i) {
    a.push_back(std::make_unique<Receiver>());
    a.back()->connect(server.port, "/a");
    b.push_back(std::make_unique<Receiver>());
    b.back()->connect(server.port, "/b");
  }
  ASSERT_TRUE(wait_until([&] { return topics.subscriber_count("/a") == 4; }, 5s));
  ASSERT_TRUE(wait_until([&] { return topics.subscriber_count("/b") == 4; }, 5s));
  EXPECT_EQ(topics.publish("/a", "to a"), PublishStatus::published);
  const std::array<std::byte, 3> bin{std::byte{0}, std::byte{0xFF}, std::byte{7}};
  topics.publish("/b", bin, SocketMessageType::binary);
  topics.publish("/nobody", "lost");
  for (auto& r : a) ASSERT_TRUE(wait_until([&] { return r->count == 1; }, 5s));
  for (auto& r : b) ASSERT_TRUE(wait_until([&] { return r->count == 1; }, 5s));
  EXPECT_EQ(a[0]->got[0], "to a");
  EXPECT_EQ(b[0]->got[0], std::string("\0\xFF\x07", 3));
  const auto st = topics.statistics();
  EXPECT_EQ(st.topics, 2u);
  EXPECT_EQ(st.subscriptions, 8u);
  EXPECT_EQ(st.published, 2u);  // "/nobody" reached no loop
  EXPECT_EQ(st.deliveries, 8u);
  EXPECT_EQ(st.dropped, 0u);
}

TEST(Topics, OrderPerPublisherFromManyThreads) {
  TopicRegistry topics;
  TopicServer server;
  server.on_open = [&](MessageWebSocket& ws, const std::string& path) {
    topics.subscribe(ws, path);
  };
  constexpr int subscribers = 4, threads = 4, per_thread = 2000;
  std::vector<std::unique_ptr<Receiver>> rs;
  for (int i = 0; i < subscribers; ++i) {
    rs.push_back(std::make_unique<Receiver>());
    rs.back()->connect(server.port, "/t");
  }
  ASSERT_TRUE(wait_until([&] { return topics.subscriber_count("/t") == subscribers; }, 5s));
  std::vector<std::thread> pubs;
  for (int t = 0; t < threads; ++t)
    pubs.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        // Bounded in-flight data: wait while far ahead of the slowest reader.
        wait_until(
            [&] {
              return topics.statistics().deliveries + 4000 >=
                     topics.statistics().published * subscribers;
            },
            5s);
        topics.publish("/t", std::to_string(t) + ":" + std::to_string(i));
      }
    });
  for (auto& p : pubs) p.join();
  for (auto& r : rs) {
    ASSERT_TRUE(wait_until([&] { return r->count == threads * per_thread; }, 20s))
        << r->count << " messages";
    std::lock_guard lock(r->mutex);
    std::map<int, int> next;
    for (const auto& m : r->got) {
      const auto colon = m.find(':');
      const int t = std::stoi(m.substr(0, colon));
      const int i = std::stoi(m.substr(colon + 1));
      ASSERT_EQ(i, next[t]) << "publisher " << t << " out of order";
      next[t] = i + 1;
    }
  }
  EXPECT_EQ(topics.statistics().dropped, 0u);
}

TEST(Topics, SubscribeUnsubscribeAndCloseWhilePublishing) {
  TopicRegistry topics;
  TopicServer server;
  std::atomic<bool> stop{false};
  std::thread publisher([&] {
    const auto end = Clock::now() + 60s;
    for (int i = 0; !stop && Clock::now() < end; ++i) {
      topics.publish("/x", "m" + std::to_string(i));
      if (i % 64 == 0) std::this_thread::yield();
    }
  });
  server.on_open = [&](MessageWebSocket& ws, const std::string&) { topics.subscribe(ws, "/x"); };
  for (int round = 0; round < 20; ++round) {
    std::vector<std::unique_ptr<Receiver>> rs;
    for (int i = 0; i < 3; ++i) {
      rs.push_back(std::make_unique<Receiver>());
      rs.back()->connect(server.port, "/x");
    }
    ASSERT_TRUE(wait_until([&] { return rs[0]->count > 0 && rs[2]->count > 0; }, 5s));
    {
      std::lock_guard lock(server.mutex);
      // Another thread than the loops: unsubscribe, resubscribe, unsubscribe all.
      auto& s = *server.sockets.back();
      EXPECT_TRUE(topics.unsubscribe(s, "/x"));
      EXPECT_FALSE(topics.unsubscribe(s, "/x"));
      EXPECT_TRUE(topics.subscribe(s, "/x"));
      EXPECT_FALSE(topics.subscribe(s, "/x"));
      EXPECT_TRUE(topics.subscribe(s, "/y"));
      EXPECT_EQ(topics.unsubscribe_all(s), 2u);
    }
    rs[0]->ws.close();  // a clean close from the client
    rs.clear();         // and the others destroyed (connections failed)
  }
  // Every closed socket left its topics by itself.
  EXPECT_TRUE(wait_until([&] { return topics.statistics().subscriptions == 0; }, 10s))
      << topics.statistics().subscriptions;
  stop = true;
  publisher.join();
  EXPECT_EQ(topics.subscriber_count("/x"), 0u);
  EXPECT_EQ(topics.statistics().topics, 0u);
}

/// A raw client with a tiny receive buffer that completes the handshake and
/// then reads nothing: its server socket's output fills up.
class StuckClient {
public:
  explicit StuckClient(std::uint16_t port, const std::string& path)
      : fd_(connect_upgraded(port, path, 4096)) {}
  StuckClient(const StuckClient&) = delete;
  StuckClient& operator=(const StuckClient&) = delete;
  ~StuckClient() { ::close(fd_); }

private:
  int fd_ = -1;
};

struct SlowCase {
  SlowSubscriberPolicy policy;
  std::uint16_t code;
};

class TopicsSlow : public ::testing::TestWithParam<SlowCase> {};

TEST_P(TopicsSlow, SlowSubscriberNeverHoldsBackTheOthers) {
  TopicRegistryOptions topt;
  topt.slow_subscriber = GetParam().policy;
  TopicRegistry topics(topt);
  WebSocketListenerOptions lopt;
  lopt.threads = 1;
  lopt.outbound_buffer_size = 64 * 1024;
  lopt.close_timeout = 200ms;
  TopicServer server(lopt);
  std::atomic<int> closed_code{0};
  server.on_open = [&](MessageWebSocket& ws, const std::string& path) {
    if (path == "/stuck")
      ws.closed([&](MessageWebSocket&, const WebSocketClosedEventArgs&) { closed_code = 1; });
    topics.subscribe(ws, "/feed");
  };
  Receiver fast;
  fast.connect(server.port, "/fast");
  StuckClient stuck(server.port, "/stuck");
  ASSERT_TRUE(wait_until([&] { return topics.subscriber_count("/feed") == 2; }, 5s));
  const std::string payload(16 * 1024, 'p');
  int sent = 0;
  // Bounded: 64 KiB of output, plus what the kernel holds (a few hundred KiB
  // on loopback with a 4 KiB receive buffer), fill well before 4,000 messages.
  for (; sent < 4000; ++sent) {
    const auto before = topics.statistics();
    topics.publish("/feed", payload);
    ASSERT_TRUE(wait_until(
        [&] {
          const auto st = topics.statistics();
          return st.deliveries + st.dropped == before.deliveries + before.dropped + 2 ||
                 (st.deliveries + st.dropped == before.deliveries + before.dropped + 1 &&
                  topics.subscriber_count("/feed") == 1);
        },
        5s));
    if (topics.statistics().dropped > 0 && GetParam().policy == SlowSubscriberPolicy::drop &&
        topics.statistics().dropped >= 10)
      break;
    if (topics.statistics().slow_closed > 0) break;
  }
  ASSERT_LT(sent, 4000) << "the stuck subscriber never became slow";
  // The fast one got every message.
  ASSERT_TRUE(wait_until([&] { return fast.count == static_cast<std::size_t>(sent + 1); }, 10s))
      << fast.count << " of " << sent + 1;
  const auto st = topics.statistics();
  // Memory bounded: what the stuck one was given is at most its outbound
  // limit plus what the kernel buffers took (far below what was published).
  const auto stuck_deliveries = st.deliveries - (sent + 1);
  EXPECT_LT(stuck_deliveries * payload.size(), 8u << 20);
  if (GetParam().policy == SlowSubscriberPolicy::drop) {
    EXPECT_GE(st.dropped, 10u);
    EXPECT_EQ(st.slow_closed, 0u);
    EXPECT_EQ(topics.subscriber_count("/feed"), 2u);
  } else {
    EXPECT_EQ(st.slow_closed, 1u);
    // Closed (after close_timeout, as it never answers) and gone from the topic.
    EXPECT_TRUE(wait_until([&] { return closed_code == 1; }, 5s));
    EXPECT_TRUE(wait_until([&] { return topics.subscriber_count("/feed") == 1; }, 5s));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Policies, TopicsSlow,
    ::testing::Values(SlowCase{SlowSubscriberPolicy::drop, 0},
                      SlowCase{SlowSubscriberPolicy::close_policy_violation, 1008},
                      SlowCase{SlowSubscriberPolicy::close_try_again_later, 1013}));

// permessage-deflate without server context takeover: one compression per
// publish and loop, shared by the subscribers that agreed the same
// parameters; a subscriber without compression gets the plain frame.
TEST(Topics, DeflateSubscribersShareOneCompressedFrame) {
  TopicRegistry topics;
  WebSocketListenerOptions lopt;
  lopt.threads = 1;
  lopt.deflate.enable = true;
  lopt.deflate.server_no_context_takeover = true;
  TopicServer server(lopt);
  server.on_open = [&](MessageWebSocket& ws, const std::string&) { topics.subscribe(ws, "/z"); };
  std::vector<std::unique_ptr<Receiver>> rs;
  for (int i = 0; i < 4; ++i) {
    rs.push_back(std::make_unique<Receiver>());
    if (i < 3) {
      DeflateOptions d;
      d.enable = true;
      rs.back()->ws.control().deflate(d);
    }
    rs.back()->connect(server.port, "/z");
  }
  ASSERT_TRUE(wait_until([&] { return topics.subscriber_count("/z") == 4; }, 5s));
  std::string text;
  while (text.size() < 8192) text += "the same words again and again; ";
  topics.publish("/z", text);
  for (auto& r : rs) ASSERT_TRUE(wait_until([&] { return r->count == 1; }, 5s));
  for (auto& r : rs) {
    std::lock_guard lock(r->mutex);
    EXPECT_EQ(r->got[0], text);
  }
  EXPECT_EQ(topics.statistics().compressions, 1u);
  // Compressed on the wire for the three that agreed, plain for the last.
  for (int i = 0; i < 3; ++i)
    EXPECT_LT(rs[i]->ws.information().bandwidth_statistics().bytes_received, 4096u) << i;
  EXPECT_GT(rs[3]->ws.information().bandwidth_statistics().bytes_received, 8192u);
}

// An application that destroys its socket in its own closed handler,
// registered before the registry's, drops the registry's handler with it
// (a destroyed socket raises no more events): the registry, which holds the
// session for its deliveries, still lets it go without any publish (its
// loop's sweep, within a second).
TEST(Topics, SocketDestroyedInAnEarlierClosedHandlerIsReleased) {
  TopicRegistry topics;
  WebSocketListenerOptions lopt;
  lopt.threads = 1;
  TopicServer server(lopt);
  server.on_open = [&](MessageWebSocket& ws, const std::string& path) {
    ws.closed([&server](MessageWebSocket& self, const WebSocketClosedEventArgs&) {
      std::shared_ptr<MessageWebSocket> last;  // destroyed here, after the lock
      std::lock_guard lock(server.mutex);
      for (auto& s : server.sockets)
        if (s.get() == &self) last = std::move(s);
    });
    topics.subscribe(ws, path);
  };
  Receiver r;
  r.connect(server.port, "/t");
  ASSERT_TRUE(wait_until([&] { return topics.subscriber_count("/t") == 1; }, 5s));
  r.ws.close_async(1000, "bye").get();
  EXPECT_TRUE(wait_until([&] { return topics.subscriber_count("/t") == 0; }, 5s));
  EXPECT_EQ(topics.statistics().subscriptions, 0u);
  EXPECT_EQ(topics.statistics().topics, 0u);
}

TEST(Topics, ArgumentsAreChecked) {
  TopicRegistry topics;
  MessageWebSocket client;  // client role, not connected
  auto what = [](auto&& f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  EXPECT_EQ(what([&] { topics.subscribe(client, ""); }), "subscribe: topic must not be empty");
  EXPECT_EQ(what([&] { topics.subscribe(client, "/a"); }),
            "subscribe: socket must be a server-role socket from a WebSocketListener");
  MessageWebSocket moved(std::move(client));
  EXPECT_EQ(what([&] { topics.unsubscribe(client, "/a"); }),  // NOLINT(bugprone-use-after-move)
            "unsubscribe: socket was moved from");
  EXPECT_EQ(what([&] { topics.publish("", "x"); }), "publish: topic must not be empty");
  const std::array<std::byte, 1> bad{std::byte{0xFF}};
  EXPECT_EQ(what([&] { topics.publish("/a", bad, SocketMessageType::utf8); }),
            "publish: a utf8 message must be valid UTF-8 (RFC 6455 5.6)");
  EXPECT_EQ(topics.publish("/a", bad, SocketMessageType::binary), PublishStatus::published);
}

/// A relay that records what the registry tells it and refuses or takes
/// publishes as told.
struct RecordingRelay : TopicRelay {
  std::mutex mutex;
  std::vector<std::pair<std::string, bool>> changes;
  std::atomic<PublishStatus> answer{PublishStatus::published};
  std::atomic<int> relayed{0};
  void topic_active(const std::string& topic, bool active) override {
    std::lock_guard lock(mutex);
    changes.emplace_back(topic, active);
  }
  PublishStatus relay(std::string_view, std::span<const std::byte>, SocketMessageType) override {
    relayed.fetch_add(1);
    return answer;
  }
};

TEST(Topics, RelayIsToldOfFirstAndLastSubscriberAndOutages) {
  TopicRegistry topics;
  auto relay = std::make_shared<RecordingRelay>();
  topics.set_relay(relay);
  TopicServer server;
  server.on_open = [&](MessageWebSocket& ws, const std::string& path) {
    topics.subscribe(ws, path);
  };
  auto r1 = std::make_unique<Receiver>();
  r1->connect(server.port, "/r");
  auto r2 = std::make_unique<Receiver>();
  r2->connect(server.port, "/r");
  ASSERT_TRUE(wait_until([&] { return topics.subscriber_count("/r") == 2; }, 5s));
  EXPECT_EQ(topics.publish("/r", "1"), PublishStatus::published);
  relay->answer = PublishStatus::local_only;
  EXPECT_EQ(topics.publish("/r", "2"), PublishStatus::local_only);
  relay->answer = PublishStatus::refused;
  EXPECT_EQ(topics.publish("/r", "3"), PublishStatus::refused);
  ASSERT_TRUE(wait_until([&] { return r1->count == 2 && r2->count == 2; }, 5s));
  EXPECT_EQ(topics.statistics().not_relayed, 2u);
  EXPECT_EQ(relay->relayed, 3);
  r1.reset();
  r2->ws.close();
  ASSERT_TRUE(wait_until([&] { return topics.subscriber_count("/r") == 0; }, 5s));
  std::lock_guard lock(relay->mutex);
  ASSERT_EQ(relay->changes.size(), 2u);
  EXPECT_EQ(relay->changes[0], std::make_pair(std::string("/r"), true));
  EXPECT_EQ(relay->changes[1], std::make_pair(std::string("/r"), false));
}

// 100,000 topics and 100,000 subscriptions (100 sockets, 1,000 topics each):
// the registry's heap, measured with mallinfo2 around the subscribes.
TEST(Topics, MemoryOf100kTopicsAndSubscriptions) {
  TopicRegistry topics;
  TopicServer server;
  std::vector<std::unique_ptr<Receiver>> rs;
  for (int i = 0; i < 100; ++i) {
    rs.push_back(std::make_unique<Receiver>());
    rs.back()->connect(server.port, "/m");
  }
  ASSERT_TRUE(wait_until([&] { return server.opened == 100; }, 10s));
  std::vector<std::shared_ptr<MessageWebSocket>> sockets;
  {
    std::lock_guard lock(server.mutex);
    sockets = server.sockets;
  }
  const auto before = mallinfo2().uordblks;
  int n = 0;
  for (std::size_t s = 0; s < sockets.size(); ++s)
    for (int t = 0; t < 1000; ++t)
      topics.subscribe(*sockets[s], "/topic/" + std::to_string(s * 1000 + t));
  n = static_cast<int>(topics.statistics().subscriptions);
  ASSERT_EQ(n, 100'000);
  ASSERT_EQ(topics.statistics().topics, 100'000u);
  // The loops' own copies are made by posted work: a message to each
  // socket's last topic is delivered after it.
  for (std::size_t s = 0; s < sockets.size(); ++s)
    topics.publish("/topic/" + std::to_string(s * 1000 + 999), "x");
  for (auto& r : rs) ASSERT_TRUE(wait_until([&] { return r->count == 1; }, 10s));
  const auto after = mallinfo2().uordblks;
  const double per = static_cast<double>(after - before) / 100'000.0;
  std::printf("topics memory: %zu bytes for 100,000 topics and subscriptions (%.0f B each)\n",
              after - before, per);
  RecordProperty("bytes_per_subscription", static_cast<int>(per));
  EXPECT_LT(per, 1024.0);
  for (auto& s : sockets) topics.unsubscribe_all(*s);
  EXPECT_EQ(topics.statistics().topics, 0u);
}

}  // namespace
}  // namespace duplex::test
