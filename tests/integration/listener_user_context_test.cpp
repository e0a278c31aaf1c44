// WebSocketListener on the application's io_contexts (issue 12): no thread of
// its own, connections spread over the contexts, stop() and destruction while
// the application's threads run them or after they stopped, and run()
// returning once the listener stopped and its sockets are gone.
#include <duplex/message_websocket.hpp>
#include <duplex/websocket_listener.hpp>

#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include "echo_test_support.hpp"
#include "listener_test_util.hpp"

namespace duplex::test {
namespace {

// Echoes every message back on the sockets it takes and records the threads
// its events ran on. Sockets are destroyed by clear() (or its destructor).
class EchoApp {
public:
  explicit EchoApp(WebSocketListener& listener) {
    listener.connection_received([this](WebSocketListenerConnectionReceivedEventArgs& a) {
      auto ws = a.take_message_websocket();
      ws.message_received([this](MessageWebSocket& s, const auto& m) {
        note_thread();
        s.control().message_type(m.message_type());
        s.send_async(m.data(), [](std::error_code) {});
      });
      ws.closed([this](MessageWebSocket&, const WebSocketClosedEventArgs& c) {
        closed.push({c.code(), c.reason(), c.error()});
      });
      note_thread();
      std::lock_guard lock(m_);
      sockets_.push_back(std::make_unique<MessageWebSocket>(std::move(ws)));
      opened.push(1);
    });
  }
  ~EchoApp() { clear(); }
  EchoApp(const EchoApp&) = delete;
  EchoApp& operator=(const EchoApp&) = delete;

  void clear() {
    std::vector<std::unique_ptr<MessageWebSocket>> gone;
    std::lock_guard lock(m_);
    gone.swap(sockets_);
  }
  std::set<std::thread::id> threads() {
    std::lock_guard lock(m_);
    return threads_;
  }

  Inbox<int> opened;
  Inbox<ClosedRecord> closed;

private:
  void note_thread() {
    std::lock_guard lock(m_);
    threads_.insert(std::this_thread::get_id());
  }
  std::mutex m_;
  std::set<std::thread::id> threads_;
  std::vector<std::unique_ptr<MessageWebSocket>> sockets_;
};

struct Client {
  Client() {
    ws.message_received(
        [this](MessageWebSocket&, const auto& a) { messages.push(std::string(a.text())); });
    ws.closed([this](MessageWebSocket&, const WebSocketClosedEventArgs& a) {
      closed.push({a.code(), a.reason(), a.error()});
    });
  }
  Inbox<std::string> messages;
  Inbox<ClosedRecord> closed;
  MessageWebSocket ws;
};

std::string url_of(const WebSocketListener& l) {
  return "ws://127.0.0.1:" + std::to_string(l.local_port()) + "/";
}

TEST(ListenerOnUserContexts, ServesOnTheApplicationsThreadsAndRunReturnsAfterStop) {
  asio::io_context a(1), b(1);
  std::vector<asio::io_context*> contexts{&a, &b};
  std::optional<WebSocketListener> listener(std::in_place, contexts);
  EXPECT_EQ(listener->thread_count(), 2u);
  EchoApp app(*listener);
  listener->listen("127.0.0.1", 0);
  std::set<std::thread::id> app_threads;
  std::mutex ids_mutex;
  const auto run = [&](asio::io_context& ctx) {
    return std::async(std::launch::async, [&] {
      {
        std::lock_guard lock(ids_mutex);
        app_threads.insert(std::this_thread::get_id());
      }
      ctx.run();
    });
  };
  auto ra = run(a);
  auto rb = run(b);

  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(std::make_unique<Client>());
    clients.back()->ws.connect_async(url_of(*listener)).get();
    clients.back()->ws.send_async("hello " + std::to_string(i)).get();
  }
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(clients[i]->messages.wait_for_count(1, 5s));
    EXPECT_EQ(clients[i]->messages.items()[0], "hello " + std::to_string(i));
  }
  // Every event ran on the application's threads, and both contexts served.
  {
    std::lock_guard lock(ids_mutex);
    EXPECT_EQ(app.threads(), app_threads);
  }

  for (auto& c : clients) c->ws.close_async(1000, "bye").get();
  ASSERT_TRUE(app.closed.wait_for_count(4, 5s));
  EXPECT_EQ(listener->stop(1s), 0u);
  app.clear();
  // Stopped listener, sockets gone: nothing is left in the contexts.
  EXPECT_EQ(ra.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(rb.wait_for(5s), std::future_status::ready);
  // Destroyed after the contexts stopped: it runs them itself, briefly.
  listener.reset();
  EXPECT_TRUE(a.stopped());
}

TEST(ListenerOnUserContexts, StopSends1001WhileTheApplicationRunsTheContext) {
  asio::io_context ctx(1);
  std::optional<WebSocketListener> listener(std::in_place, ctx);
  EchoApp app(*listener);
  listener->listen("127.0.0.1", 0);
  auto runner = std::async(std::launch::async, [&] { ctx.run(); });
  Client c;
  c.ws.connect_async(url_of(*listener)).get();
  ASSERT_TRUE(app.opened.wait_for_count(1, 5s));
  EXPECT_EQ(listener->stop(3s), 0u);
  ASSERT_TRUE(c.closed.wait_for_count(1, 5s));
  EXPECT_EQ(c.closed.items()[0].code, 1001);
  // Destroyed while the application's thread still runs the context.
  listener.reset();
  app.clear();
  EXPECT_EQ(runner.wait_for(5s), std::future_status::ready);
}

TEST(ListenerOnUserContexts, StopAfterTheApplicationStoppedItsContextStillCloses) {
  asio::io_context ctx(1);
  WebSocketListener listener(ctx);
  EchoApp app(listener);
  listener.listen("127.0.0.1", 0);
  auto runner = std::async(std::launch::async, [&] { ctx.run(); });
  Client c;
  c.ws.connect_async(url_of(listener)).get();
  ASSERT_TRUE(app.opened.wait_for_count(1, 5s));
  ctx.stop();
  ASSERT_EQ(runner.wait_for(5s), std::future_status::ready);
  // Nobody runs the context now: stop() runs it on this thread for the
  // closing handshake.
  EXPECT_EQ(listener.stop(3s), 0u);
  ASSERT_TRUE(c.closed.wait_for_count(1, 5s));
  EXPECT_EQ(c.closed.items()[0].code, 1001);
  app.clear();
}

TEST(ListenerOnUserContexts, StopOnAContextThreadIsRefused) {
  asio::io_context ctx(1);
  WebSocketListener listener(ctx);
  listener.listen("127.0.0.1", 0);
  std::promise<std::string> what;
  asio::post(ctx, [&] {
    try {
      listener.stop();
      what.set_value("no exception");
    } catch (const std::logic_error& e) {
      what.set_value(e.what());
    }
  });
  auto runner = std::async(std::launch::async, [&] { ctx.run(); });
  auto f = what.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(f.get(), "stop: must not be called on one of the listener's loops");
  listener.stop();
  EXPECT_EQ(runner.wait_for(5s), std::future_status::ready);
}

TEST(ListenerOnUserContexts, BadContextsAreRefused) {
  asio::io_context a, b;
  const auto message = [](auto make) {
    try {
      make();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  std::vector<asio::io_context*> none;
  EXPECT_EQ(message([&] { WebSocketListener l(none); }),
            "contexts: must hold at least one io_context");
  std::vector<asio::io_context*> null{&a, nullptr};
  EXPECT_EQ(message([&] { WebSocketListener l(null); }), "contexts: must not hold a null pointer");
  std::vector<asio::io_context*> twice{&a, &b, &a};
  EXPECT_EQ(message([&] { WebSocketListener l(twice); }),
            "contexts: must not hold the same io_context twice");
  WebSocketListenerOptions o;
  o.threads = 3;
  std::vector<asio::io_context*> two{&a, &b};
  EXPECT_EQ(message([&] { WebSocketListener l(two, o); }),
            "threads: must be 0 or the number of contexts when the application gives "
            "io_contexts");
  o.threads = 2;
  EXPECT_EQ(message([&] { WebSocketListener l(two, o); }), "no exception");
}

}  // namespace
}  // namespace duplex::test
