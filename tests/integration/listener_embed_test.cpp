// duplex inside an application's own Asio server (issue 12). The listener on
// the application's io_contexts: no thread of its own, connections spread over
// the contexts, stop() and destruction while the application's threads run
// them or after they stopped, and run() returning once the listener stopped
// and its sockets are gone. adopt(): connections the test accepts with a
// plain Asio acceptor (TCP, and TLS with its own ssl::context) and whose
// request it reads with duplex's parser, then served by the listener.
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

#include <poll.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>

#include <duplex/protocol/handshake.hpp>

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

// --- adopt ------------------------------------------------------------------

using asio::ip::tcp;

// Waits up to 5 s for `fd` to be readable: the test's blocking reads and
// accepts are bounded in time.
bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 5000) == 1;
}

tcp::acceptor loopback_acceptor(asio::io_context& ctx) {
  return tcp::acceptor(ctx, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
}

tcp::socket accept_one(tcp::acceptor& acceptor) {
  if (!readable(acceptor.native_handle())) throw std::runtime_error("no connection within 5 s");
  return acceptor.accept();
}

// Feeds what `read_some(buffer)` returns to duplex's parser until a request
// is complete: the request and the bytes after it.
template <class ReadSome>
std::pair<protocol::HttpRequest, std::string> parse_request(ReadSome read_some) {
  std::string buf;
  protocol::HttpRequest request;
  for (int i = 0; i < 64; ++i) {
    char chunk[1024];
    const std::size_t n = read_some(asio::buffer(chunk));
    buf.append(chunk, n);
    std::error_code ec;
    const std::size_t used = protocol::parse_http_request(buf, request, ec);
    if (ec) throw std::system_error(ec, "parse_http_request");
    if (used != 0) return {std::move(request), buf.substr(used)};
  }
  throw std::runtime_error("request not complete after 64 reads");
}

// A blocking read of a plain TCP socket, bounded by poll().
std::pair<protocol::HttpRequest, std::string> read_request(tcp::socket& s) {
  return parse_request([&](asio::mutable_buffer b) {
    if (!readable(s.native_handle())) throw std::runtime_error("no request within 5 s");
    return s.read_some(b);
  });
}

// Runs `ctx` (the test's own, run by nobody else) until `done` or 5 s.
void run_until(asio::io_context& ctx, const bool& done) {
  ctx.restart();
  const auto end = Clock::now() + 5s;
  while (!done && Clock::now() < end) ctx.run_one_for(100ms);
  if (!done) throw std::runtime_error("not done within 5 s");
}

// The TLS handshake and the request, read with asynchronous operations on
// the test's `ctx` (the stream may hold decrypted bytes that poll() on the
// socket cannot see).
std::pair<protocol::HttpRequest, std::string> handshake_and_read(
    asio::io_context& ctx, asio::ssl::stream<tcp::socket>& stream) {
  bool done = false;
  std::error_code ec;
  stream.async_handshake(asio::ssl::stream_base::server, [&](std::error_code e) {
    ec = e;
    done = true;
  });
  run_until(ctx, done);
  if (ec) throw std::system_error(ec, "TLS handshake");
  return parse_request([&](asio::mutable_buffer b) {
    done = false;
    std::size_t n = 0;
    stream.async_read_some(b, [&](std::error_code e, std::size_t k) {
      ec = e;
      n = k;
      done = true;
    });
    run_until(ctx, done);
    if (ec) throw std::system_error(ec, "read");
    return n;
  });
}

// Records the request each hook call saw.
struct Seen {
  std::string path;
  bool secure = false;
  std::string remote_host;
};

std::string port_url(const char* scheme, const tcp::acceptor& a, const char* path) {
  return std::string(scheme) + "://127.0.0.1:" + std::to_string(a.local_endpoint().port()) + path;
}

TEST(ListenerAdopt, TcpConnectionFromTheApplicationsAcceptorOnItsOwnContext) {
  // The application runs one io_context: the listener and its own acceptor
  // live on it; the listener never listens.
  asio::io_context ctx(1);
  WebSocketListenerOptions o;
  o.supported_protocols = {"chat"};
  o.deflate.enable = true;
  WebSocketListener listener(ctx, o);
  Inbox<Seen> seen;
  listener.handshake_requested([&](WebSocketHandshakeContext& h) {
    seen.push(
        {std::string(h.request().path()), h.request().secure, h.request().remote_address.host});
  });
  EchoApp app(listener);
  auto acceptor = loopback_acceptor(ctx);
  std::promise<std::thread::id> runner_id;
  auto runner = std::async(std::launch::async, [&] {
    runner_id.set_value(std::this_thread::get_id());
    asio::executor_work_guard<asio::io_context::executor_type> work(ctx.get_executor());
    ctx.run();
  });

  std::promise<std::error_code> connected;  // before the client: outlives its handler
  Client c;
  c.ws.control().supported_protocols({"chat"});
  DeflateOptions d;
  d.enable = true;
  c.ws.control().deflate(d);
  c.ws.connect_async(port_url("ws", acceptor, "/chat?room=1"),
                     [&](std::error_code ec) { connected.set_value(ec); });
  tcp::socket s = accept_one(acceptor);
  auto [request, rest] = read_request(s);
  EXPECT_EQ(request.target, "/chat?room=1");
  EXPECT_TRUE(rest.empty());
  listener.adopt(std::move(s), std::move(request), rest);
  EXPECT_FALSE(s.is_open());

  auto f = connected.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  ASSERT_FALSE(f.get());
  EXPECT_EQ(c.ws.information().protocol(), "chat");
  EXPECT_TRUE(c.ws.information().deflate_parameters().has_value());
  ASSERT_TRUE(seen.wait_for_count(1, 5s));
  EXPECT_EQ(seen.items()[0].path, "/chat");
  EXPECT_FALSE(seen.items()[0].secure);
  EXPECT_EQ(seen.items()[0].remote_host, "127.0.0.1");
  c.ws.send_async("over the adopted socket").get();
  ASSERT_TRUE(c.messages.wait_for_count(1, 5s));
  EXPECT_EQ(c.messages.items()[0], "over the adopted socket");
  EXPECT_EQ(app.threads(), std::set<std::thread::id>{runner_id.get_future().get()});
  const auto m = listener.metrics();
  EXPECT_EQ(m.websocket_answers.at(101), 1u);

  c.ws.close_async(1000, "bye").get();
  ASSERT_TRUE(app.closed.wait_for_count(1, 5s));
  EXPECT_EQ(listener.stop(1s), 0u);
  app.clear();
  acceptor.close();
  ctx.stop();
  EXPECT_EQ(runner.wait_for(5s), std::future_status::ready);
}

TEST(ListenerAdopt, BadRequestsGetTheListenersAnswers) {
  WebSocketListenerOptions o;
  o.threads = 1;
  WebSocketListener listener(o);
  EchoApp app(listener);
  asio::io_context ctx;
  auto acceptor = loopback_acceptor(ctx);
  const auto answer_to = [&](const std::string& raw) {
    RawClient c;
    if (!c.connect(acceptor.local_endpoint().port())) return std::string("no connect");
    c.send(raw);
    tcp::socket s = accept_one(acceptor);
    auto [request, rest] = read_request(s);
    listener.adopt(std::move(s), std::move(request), rest);
    const std::string response = c.read_response(5s);
    return response.substr(0, response.find("\r\n"));
  };
  // RFC 6455 4.2.1: the key must be base64 of 16 bytes.
  EXPECT_EQ(answer_to("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: bad\r\nSec-WebSocket-Version: 13\r\n\r\n"),
            "HTTP/1.1 400 Bad Request");
  // No upgrade at all, no http_requested handler: 426.
  EXPECT_EQ(answer_to("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), "HTTP/1.1 426 Upgrade Required");
  // Version 12: 426 too, telling the version spoken.
  EXPECT_EQ(
      answer_to(upgrade_request("/", "").replace(upgrade_request("/", "").find("13"), 2, "12")),
      "HTTP/1.1 426 Upgrade Required");
  EXPECT_EQ(app.opened.items().size(), 0u);
  const auto m = listener.metrics();
  EXPECT_EQ(m.websocket_answers.at(400), 1u);
  EXPECT_EQ(m.websocket_answers.at(426), 2u);
}

TEST(ListenerAdopt, PlainHttpAndTheConnectionLimitAsForAcceptedConnections) {
  WebSocketListenerOptions o;
  o.threads = 1;
  o.max_connections = 1;
  WebSocketListener listener(o);
  listener.http_requested([](const HttpServerRequest& req, HttpServerResponse& res) {
    res.body(std::string(req.path()) + " " + req.body);
  });
  EchoApp app(listener);
  asio::io_context ctx;
  auto acceptor = loopback_acceptor(ctx);
  const auto adopt_raw = [&](RawClient& c, const std::string& raw) {
    if (!c.connect(acceptor.local_endpoint().port())) throw std::runtime_error("no connect");
    c.send(raw);
    tcp::socket s = accept_one(acceptor);
    auto [request, rest] = read_request(s);
    listener.adopt(std::move(s), std::move(request), rest);
  };
  // A plain request (its body partly in `rest`) goes to the HTTP handler.
  {
    RawClient c;
    adopt_raw(c, "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
    const std::string response = c.read_response(5s);
    EXPECT_EQ(response.substr(0, response.find("\r\n")), "HTTP/1.1 200 OK");
    EXPECT_EQ(response.substr(response.size() - 11), "/echo hello");
  }
  // Its slot comes back once the client has gone (the answer's linger ends).
  ASSERT_TRUE(wait_until([&] { return listener.connection_count() == 0; }, 5s));
  // One WebSocket holds the only slot: the next upgrade is answered 503.
  RawClient first;
  adopt_raw(first, upgrade_request("/"));
  EXPECT_EQ(first.read_response(5s).substr(0, 34), "HTTP/1.1 101 Switching Protocols\r\n");
  ASSERT_TRUE(app.opened.wait_for_count(1, 5s));
  RawClient second;
  adopt_raw(second, upgrade_request("/"));
  const std::string busy = second.read_response(5s);
  EXPECT_EQ(busy.substr(0, busy.find("\r\n")), "HTTP/1.1 503 Service Unavailable");
  EXPECT_EQ(listener.metrics().websocket_answers.at(503), 1u);
}

TEST(ListenerAdopt, TlsStreamHandshakenByTheApplication) {
  const TestCertificates certs;
  ASSERT_TRUE(certs.ok());
  asio::ssl::context tls(asio::ssl::context::tls_server);
  tls.use_certificate_chain_file(certs.file("server.pem"));
  tls.use_private_key_file(certs.file("server.key"), asio::ssl::context::pem);

  WebSocketListenerOptions o;
  o.threads = 2;  // its own loops: the stream moves from the test's context to one of them
  WebSocketListener listener(o);
  Inbox<Seen> seen;
  listener.handshake_requested([&](WebSocketHandshakeContext& h) {
    seen.push(
        {std::string(h.request().path()), h.request().secure, h.request().remote_address.host});
  });
  EchoApp app(listener);
  asio::io_context ctx;
  auto acceptor = loopback_acceptor(ctx);

  std::promise<std::error_code> connected;  // before the client: outlives its handler
  Client c;
  c.ws.control().trusted_ca_file(certs.file("ca.pem"));
  c.ws.connect_async(port_url("wss", acceptor, "/secure"),
                     [&](std::error_code ec) { connected.set_value(ec); });
  asio::ssl::stream<tcp::socket> stream(accept_one(acceptor), tls);
  auto [request, rest] = handshake_and_read(ctx, stream);
  listener.adopt(std::move(stream), std::move(request), rest);

  auto f = connected.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  ASSERT_FALSE(f.get());
  ASSERT_TRUE(seen.wait_for_count(1, 5s));
  EXPECT_EQ(seen.items()[0].path, "/secure");
  EXPECT_TRUE(seen.items()[0].secure);
  for (int i = 0; i < 3; ++i) c.ws.send_async("tls " + std::to_string(i)).get();
  ASSERT_TRUE(c.messages.wait_for_count(3, 5s));
  EXPECT_EQ(c.messages.items()[2], "tls 2");
  EXPECT_EQ(listener.stop(3s), 0u);
  ASSERT_TRUE(c.closed.wait_for_count(1, 5s));
  EXPECT_EQ(c.closed.items()[0].code, 1001);
}

TEST(ListenerAdopt, MisuseIsRefusedAtTheCall) {
  WebSocketListenerOptions o;
  o.threads = 1;
  WebSocketListener listener(o);
  asio::io_context ctx;
  const auto what = [](auto call) {
    try {
      call();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  protocol::HttpRequest request;
  EXPECT_EQ(what([&] { listener.adopt(tcp::socket(ctx), request); }),
            "adopt: socket: must be open");
  tcp::socket unconnected(ctx);
  unconnected.open(tcp::v4());
  EXPECT_EQ(what([&] { listener.adopt(std::move(unconnected), request); }),
            "adopt: socket: must be a connected TCP socket");

  // A connected socket whose TLS handshake never ran.
  asio::ssl::context tls(asio::ssl::context::tls_server);
  auto acceptor = loopback_acceptor(ctx);
  RawClient raw;
  ASSERT_TRUE(raw.connect(acceptor.local_endpoint().port()));
  asio::ssl::stream<tcp::socket> stream(accept_one(acceptor), tls);
  EXPECT_EQ(what([&] { listener.adopt(std::move(stream), request); }),
            "adopt: stream must have completed its TLS handshake in the server role");

  listener.stop();
  RawClient raw2;
  ASSERT_TRUE(raw2.connect(acceptor.local_endpoint().port()));
  tcp::socket s = accept_one(acceptor);
  EXPECT_EQ(what([&] { listener.adopt(std::move(s), request); }),
            "adopt: the listener was stopped");
}

}  // namespace
}  // namespace duplex::test
