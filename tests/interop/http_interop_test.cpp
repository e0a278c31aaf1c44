// Plain HTTP beside WebSocket, from clients we did not write: curl (health
// check, bodies, refusals) and headless Chromium loading a page served by the
// http_requested handler that opens a WebSocket and calls fetch() on the same
// origin. The listener runs in this process on 127.0.0.1 port 0.
#include <duplex/message_websocket.hpp>
#include <duplex/websocket_listener.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "run_process.hpp"

#ifndef DUPLEX_INTEROP_PEERS_DIR
#error "DUPLEX_INTEROP_PEERS_DIR must name tests/interop/peers"
#endif

namespace {

using namespace std::chrono_literals;
using duplex::HttpServerRequest;
using duplex::HttpServerResponse;
using duplex::MessageWebSocket;
using duplex::test::run_process;

// The page: opens a WebSocket to the origin it came from, sends one message
// and waits for its echo; posts to /api and reads the JSON answer.
constexpr std::string_view page = R"html(<!doctype html>
<html><head><meta charset="utf-8"><title>duplex same origin</title></head><body>
<script>
function runCheck(timeoutMs) {
  const echo = new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}/echo`);
    const timer = setTimeout(() => resolve("timeout"), timeoutMs);
    ws.onopen = () => ws.send("hello from the page");
    ws.onmessage = (e) => { clearTimeout(timer); ws.close(1000); resolve("echo:" + e.data); };
    ws.onerror = () => { clearTimeout(timer); resolve("error"); };
  });
  const api = fetch("/api?from=page", {method: "POST", body: "ping"})
      .then((r) => r.json()).then((j) => j.method + " " + j.query + " " + j.body)
      .catch((e) => "fetch failed: " + e);
  return Promise.all([echo, api]).then((v) => v.join(" | "));
}
window.pageReady = true;
</script></body></html>
)html";

// A listener serving the page at "/", JSON at "/api", "ok" at "/healthz", 404
// elsewhere, and echoing every WebSocket message.
class PageServer {
public:
  PageServer() : listener_(options()) {
    listener_.http_requested([this](const HttpServerRequest& req, HttpServerResponse& res) {
      if (req.path() == "/") return res.body(std::string(page), "text/html; charset=utf-8");
      if (req.path() == "/healthz") return res.body("ok\n");
      if (req.path() == "/api")
        return res.body("{\"method\":\"" + req.method + "\",\"query\":\"" +
                            std::string(req.query()) + "\",\"body\":\"" + req.body + "\"}",
                        "application/json");
      res.status(404);
      res.body("no such page\n");
    });
    listener_.connection_received([this](duplex::WebSocketListenerConnectionReceivedEventArgs& a) {
      auto ws = a.take_message_websocket();
      ws.message_received([](MessageWebSocket& s, const auto& m) {
        s.control().message_type(m.message_type());
        s.send_async(m.data(), [](std::error_code) {});
      });
      std::lock_guard lock(mutex_);
      origins_.push_back(a.request().origin);
      sockets_.push_back(std::move(ws));
    });
    listener_.listen("127.0.0.1", 0);
  }
  ~PageServer() {
    listener_.stop(1s);
    std::lock_guard lock(mutex_);
    sockets_.clear();
  }
  std::string base() const { return "http://127.0.0.1:" + std::to_string(listener_.local_port()); }
  std::vector<std::string> origins() {
    std::lock_guard lock(mutex_);
    return origins_;
  }

private:
  static duplex::WebSocketListenerOptions options() {
    duplex::WebSocketListenerOptions o;
    o.threads = 2;
    o.max_http_body_size = 1024;
    return o;
  }
  duplex::WebSocketListener listener_;
  std::mutex mutex_;
  std::vector<std::string> origins_;
  std::vector<MessageWebSocket> sockets_;
};

// curl's answer: status code, then the body (-w appends the code after it).
struct CurlAnswer {
  int exit_code;
  std::string body;
  std::string status;
};

CurlAnswer curl(std::vector<std::string> args) {
  std::vector<std::string> argv = {"curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_process(argv, 20s);
  const auto nl = r.out.rfind('\n');
  if (nl == std::string::npos) return {r.exit_code, r.out, ""};
  return {r.exit_code, r.out.substr(0, nl), r.out.substr(nl + 1)};
}

TEST(HttpInterop, CurlHealthCheckBodiesAndRefusals) {
  PageServer server;
  auto a = curl({server.base() + "/healthz"});
  EXPECT_EQ(a.exit_code, 0);
  EXPECT_EQ(a.status, "200");
  EXPECT_EQ(a.body, "ok\n");

  a = curl({"-X", "POST", "--data-binary", "hello", server.base() + "/api?x=1"});
  EXPECT_EQ(a.status, "200");
  EXPECT_EQ(a.body, R"({"method":"POST","query":"x=1","body":"hello"})");

  // curl waits for the 100 (Continue) before its body.
  a = curl({"-H", "Expect: 100-continue", "--expect100-timeout", "10", "--data-binary", "later",
            server.base() + "/api"});
  EXPECT_EQ(a.status, "200");
  EXPECT_EQ(a.body, R"({"method":"POST","query":"","body":"later"})");

  a = curl({"-I", server.base() + "/"});
  EXPECT_EQ(a.status, "200");
  EXPECT_NE(a.body.find("Content-Type: text/html; charset=utf-8"), std::string::npos) << a.body;

  a = curl({server.base() + "/missing"});
  EXPECT_EQ(a.status, "404");

  a = curl({"--data-binary", std::string(1025, 'x'), server.base() + "/api"});
  EXPECT_EQ(a.status, "413");

  a = curl({"-H", "Transfer-Encoding: chunked", "--data-binary", "abc", server.base() + "/api"});
  EXPECT_EQ(a.status, "411");
}

TEST(HttpInterop, CurlWithoutHandlerGets426) {
  duplex::WebSocketListenerOptions o;
  o.threads = 1;
  duplex::WebSocketListener listener(o);
  listener.listen("127.0.0.1", 0);
  const auto a = curl({"http://127.0.0.1:" + std::to_string(listener.local_port()) + "/healthz"});
  EXPECT_EQ(a.status, "426");
}

TEST(HttpInterop, ChromiumLoadsPageThatOpensSameOriginWebSocket) {
  PageServer server;
  const auto r =
      run_process({"/usr/bin/python3", DUPLEX_INTEROP_PEERS_DIR "/same_origin_chromium.py", "--url",
                   server.base() + "/", "--expression", "runCheck(10000)", "--timeout", "30"},
                  90s);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "\"echo:hello from the page | POST from=page ping\"\n");
  // The browser told the WebSocket where the page came from (RFC 6455 10.2).
  const auto origins = server.origins();
  ASSERT_EQ(origins.size(), 1u);
  EXPECT_EQ(origins[0], server.base());
}

}  // namespace
