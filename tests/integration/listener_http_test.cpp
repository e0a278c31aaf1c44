// Plain HTTP beside WebSocket on a WebSocketListener (http_requested), driven
// by a raw TCP client: what the handler sees, what it answers, the limits the
// listener enforces before it runs, and the WebSocket path on the same port.
#include <duplex/websocket_listener.hpp>

#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <stdexcept>
#include <string>

#include "listener_test_util.hpp"

namespace {

using namespace std::chrono_literals;
using duplex::HttpServerRequest;
using duplex::HttpServerResponse;
using duplex::WebSocketListener;
using duplex::WebSocketListenerOptions;
using duplex::test::RawClient;
using duplex::test::upgrade_request;

WebSocketListenerOptions small_options() {
  WebSocketListenerOptions o;
  o.threads = 2;
  o.handshake_timeout = 3s;
  o.max_http_body_size = 1024;
  return o;
}

std::string status_line(const std::string& response) {
  return response.substr(0, response.find("\r\n"));
}

std::string body_of(const std::string& response) {
  const auto end = response.find("\r\n\r\n");
  return end == std::string::npos ? std::string() : response.substr(end + 4);
}

bool has_line(const std::string& response, std::string_view line) {
  const auto head = response.substr(0, response.find("\r\n\r\n") + 2);
  return head.find(std::string("\r\n").append(line).append("\r\n")) != std::string::npos;
}

// One request on a fresh connection; the whole answer, read to the server's close.
std::string exchange(std::uint16_t port, std::string_view request) {
  RawClient c;
  if (!c.connect(port) || !c.send(request)) return {};
  auto response = c.read_response();
  EXPECT_TRUE(c.wait_closed(3s)) << "the server keeps the connection after its answer";
  return response;
}

// A listener whose handler records the request and answers as `answer` says.
class HttpListener {
public:
  explicit HttpListener(std::function<void(const HttpServerRequest&, HttpServerResponse&)> answer,
                        WebSocketListenerOptions options = small_options())
      : listener_(options) {
    listener_.http_requested(
        [this, answer = std::move(answer)](const HttpServerRequest& req, HttpServerResponse& res) {
          {
            std::lock_guard lock(mutex_);
            seen_ = req;
            ++calls_;
          }
          answer(req, res);
        });
    listener_.listen("127.0.0.1", 0);
  }
  std::uint16_t port() const { return listener_.local_port(); }
  HttpServerRequest seen() {
    std::lock_guard lock(mutex_);
    return seen_;
  }
  int calls() {
    std::lock_guard lock(mutex_);
    return calls_;
  }
  WebSocketListener& listener() { return listener_; }

private:
  WebSocketListener listener_;
  std::mutex mutex_;
  HttpServerRequest seen_;
  int calls_ = 0;
};

TEST(ListenerHttp, HandlerSeesRequestAndItsAnswerIsSent) {
  HttpListener server([](const HttpServerRequest& req, HttpServerResponse& res) {
    res.status(201);
    res.add_header("X-Path", std::string(req.path()));
    res.body("{\"query\":\"" + std::string(req.query()) + "\",\"body\":\"" + req.body + "\"}",
             "application/json");
  });
  const auto response = exchange(server.port(),
                                 "POST /items/7?sort=asc&x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                 "Content-Type: text/plain\r\nContent-Length: 5\r\n"
                                 "X-Custom: hello\r\n\r\nabcde");
  EXPECT_EQ(status_line(response), "HTTP/1.1 201 Created");
  EXPECT_TRUE(has_line(response, "Content-Type: application/json")) << response;
  EXPECT_TRUE(has_line(response, "X-Path: /items/7")) << response;
  EXPECT_TRUE(has_line(response, "Connection: close")) << response;
  EXPECT_EQ(body_of(response), "{\"query\":\"sort=asc&x=1\",\"body\":\"abcde\"}");

  const auto seen = server.seen();
  EXPECT_EQ(seen.method, "POST");
  EXPECT_EQ(seen.target, "/items/7?sort=asc&x=1");
  EXPECT_EQ(seen.path(), "/items/7");
  EXPECT_EQ(seen.query(), "sort=asc&x=1");
  EXPECT_EQ(seen.version_minor, 1);
  EXPECT_EQ(seen.header("x-custom").value_or(""), "hello");
  EXPECT_EQ(seen.body, "abcde");
  EXPECT_EQ(seen.remote_address.host, "127.0.0.1");
  EXPECT_EQ(seen.local_address.port, server.port());
  EXPECT_FALSE(seen.secure);
}

TEST(ListenerHttp, BodySentInPiecesAndAfterExpectContinue) {
  HttpListener server([](const HttpServerRequest& req, HttpServerResponse& res) {
    res.body(std::to_string(req.body.size()) + ":" + req.body);
  });
  {
    RawClient c;
    ASSERT_TRUE(c.connect(server.port()));
    ASSERT_TRUE(c.send("PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123"));
    // Nothing is answered before the whole body is there.
    EXPECT_EQ(c.read_some(100ms), "");
    ASSERT_TRUE(c.send("456789"));
    const auto response = c.read_response();
    EXPECT_EQ(status_line(response), "HTTP/1.1 200 OK");
    EXPECT_EQ(body_of(response), "10:0123456789");
  }
  {
    // RFC 9110 10.1.1: the client waits for 100 before its body.
    RawClient c;
    ASSERT_TRUE(c.connect(server.port()));
    ASSERT_TRUE(
        c.send("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"));
    EXPECT_EQ(c.read_response(), "HTTP/1.1 100 Continue\r\n\r\n");
    ASSERT_TRUE(c.send("abc"));
    const auto response = c.read_response();
    EXPECT_EQ(status_line(response), "HTTP/1.1 200 OK");
    EXPECT_EQ(body_of(response), "3:abc");
  }
}

TEST(ListenerHttp, HeadAnswerHasTheHeadersWithoutTheBody) {
  HttpListener server(
      [](const HttpServerRequest&, HttpServerResponse& res) { res.body("hello world\n"); });
  const auto response = exchange(server.port(), "HEAD /healthz HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(status_line(response), "HTTP/1.1 200 OK");
  EXPECT_TRUE(has_line(response, "Content-Length: 12")) << response;
  EXPECT_EQ(body_of(response), "");
  EXPECT_EQ(server.seen().method, "HEAD");
}

TEST(ListenerHttp, LimitsAreEnforcedBeforeTheHandlerRuns) {
  HttpListener server([](const HttpServerRequest&, HttpServerResponse& res) { res.body("ran"); });
  // Over max_http_body_size (1024): refused by its Content-Length alone.
  auto r = exchange(server.port(), "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1025\r\n\r\n");
  EXPECT_EQ(status_line(r), "HTTP/1.1 413 Content Too Large");
  // RFC 9110 15.5.12: a chunked body may come again with a length.
  r = exchange(server.port(),
               "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  EXPECT_EQ(status_line(r), "HTTP/1.1 411 Length Required");
  // RFC 9112 6.1: a coding we do not implement.
  r = exchange(server.port(), "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n");
  EXPECT_EQ(status_line(r), "HTTP/1.1 501 Not Implemented");
  // RFC 9112 6.3: a length that is not a number, or two that differ.
  r = exchange(server.port(), "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n");
  EXPECT_EQ(status_line(r), "HTTP/1.1 400 Bad Request");
  r = exchange(server.port(),
               "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab");
  EXPECT_EQ(status_line(r), "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(server.calls(), 0);
  // Exactly at the limit: taken.
  r = exchange(server.port(), "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1024\r\n\r\n" +
                                  std::string(1024, 'b'));
  EXPECT_EQ(status_line(r), "HTTP/1.1 200 OK");
  EXPECT_EQ(server.calls(), 1);
}

TEST(ListenerHttp, HandlerFailureIsAnswered500) {
  HttpListener server([](const HttpServerRequest& req, HttpServerResponse& res) {
    if (req.path() == "/throw") throw std::runtime_error("boom");
    // A 204 cannot carry a body: the answer cannot be built.
    res.status(204);
    res.body("not allowed");
  });
  EXPECT_EQ(status_line(exchange(server.port(), "GET /throw HTTP/1.1\r\nHost: h\r\n\r\n")),
            "HTTP/1.1 500 Internal Server Error");
  EXPECT_EQ(status_line(exchange(server.port(), "GET /204 HTTP/1.1\r\nHost: h\r\n\r\n")),
            "HTTP/1.1 500 Internal Server Error");
}

TEST(ListenerHttp, WebSocketUpgradeStillWorksOnTheSamePort) {
  WebSocketListener listener(small_options());
  std::promise<std::string> opened;
  listener.http_requested(
      [](const HttpServerRequest&, HttpServerResponse& res) { res.body("page"); });
  listener.connection_received([&](duplex::WebSocketListenerConnectionReceivedEventArgs& args) {
    opened.set_value(args.request().target);
  });
  listener.listen("127.0.0.1", 0);
  RawClient c;
  ASSERT_TRUE(c.connect(listener.local_port()));
  ASSERT_TRUE(c.send(upgrade_request("/ws")));
  EXPECT_EQ(status_line(c.read_response()), "HTTP/1.1 101 Switching Protocols");
  auto f = opened.get_future();
  ASSERT_EQ(f.wait_for(3s), std::future_status::ready);
  EXPECT_EQ(f.get(), "/ws");
  // A broken upgrade is still refused as an upgrade, not given to the handler.
  const auto r =
      exchange(listener.local_port(), "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_EQ(status_line(r), "HTTP/1.1 400 Bad Request");
}

TEST(ListenerHttp, WithoutHandlerPlainRequestsStay426) {
  WebSocketListener listener(small_options());
  listener.listen("127.0.0.1", 0);
  const auto r = exchange(listener.local_port(), "GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(status_line(r), "HTTP/1.1 426 Upgrade Required");
  EXPECT_TRUE(has_line(r, "Upgrade: websocket")) << r;
}

TEST(ListenerHttp, SettersCheckTheirArguments) {
  HttpServerResponse res;
  EXPECT_EQ(res.status(), 200);
  try {
    res.status(101);
    FAIL() << "101 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "HttpServerResponse::status: status must be within 200-599");
  }
  EXPECT_THROW(res.status(600), std::invalid_argument);
  try {
    res.add_header("Content-Length", "3");
    FAIL() << "Content-Length accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "HttpServerResponse::add_header: name must not be Connection, Content-Length or "
                 "Transfer-Encoding (set by the listener)");
  }
  try {
    res.add_header("Bad Name", "x");
    FAIL() << "a name with a space accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "HttpServerResponse::add_header: name must be an HTTP token");
  }
  EXPECT_THROW(res.add_header("X-A", "a\r\nX-Injected: 1"), std::invalid_argument);
  EXPECT_THROW(res.body("x", "text/html\n"), std::invalid_argument);
  res.add_header("Upgrade", "h2c");  // a plain answer may name the handshake's headers
  res.body("<p>hi</p>", "text/html");
  res.body("<p>hi</p>", "text/html; charset=utf-8");
  ASSERT_EQ(res.headers().size(), 2u);
  EXPECT_EQ(res.headers()[1].value, "text/html; charset=utf-8");
}

TEST(ListenerHttp, HandlerOnlyBeforeListen) {
  WebSocketListener listener(small_options());
  listener.listen("127.0.0.1", 0);
  try {
    listener.http_requested([](const HttpServerRequest&, HttpServerResponse&) {});
    FAIL() << "accepted after listen()";
  } catch (const std::logic_error& e) {
    EXPECT_STREQ(e.what(), "http_requested: set handlers before listen()");
  }
}

}  // namespace
