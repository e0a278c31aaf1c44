// Auto-reconnect of a client MessageWebSocket (ReconnectOptions): a real
// `duplex echo-server` process killed (SIGKILL) or stopped (SIGTERM: 1001) and
// restarted on its port, in-process servers that close with a chosen code, the
// queue and fail policies for sends while disconnected, giving up after
// max_attempts, and no reconnect after the application's close.
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <duplex/error.hpp>
#include <duplex/message_websocket.hpp>
#include <duplex/websocket_listener.hpp>

#include <gtest/gtest.h>

#include "detail/reconnect.hpp"
#include "echo_test_support.hpp"

extern char** environ;

namespace duplex::test {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

#ifdef DUPLEX_CLI_PATH
// A `duplex echo-server` process on 127.0.0.1:`port` (0: an ephemeral port),
// stopped by its pid: kill() (SIGKILL), terminate() (SIGTERM: the server sends
// 1001 to every connection), or the destructor (SIGKILL).
class EchoServerProcess {
public:
  explicit EchoServerProcess(std::uint16_t port) {
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
    std::vector<std::string> argv{DUPLEX_CLI_PATH, "echo-server", "--host",
                                  "127.0.0.1",     "--port",      std::to_string(port)};
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    // fork + exec rather than posix_spawn: the child asks to be killed when
    // this process dies (PR_SET_PDEATHSIG), so a test aborted by a crash or a
    // timeout leaves no server behind. Only async-signal-safe calls after fork.
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) ::_exit(126);
      ::dup2(fds[1], STDOUT_FILENO);
      ::close(fds[0]);
      ::close(fds[1]);
      ::execve(args[0], args.data(), environ);
      ::_exit(127);
    }
    ::close(fds[1]);
    out_ = fds[0];
    if (pid_ < 0) {
      pid_ = -1;
      throw std::runtime_error("cannot start " + argv[0]);
    }
    // "listening on ws://127.0.0.1:PORT/" once it accepts connections.
    const auto line = read_line(10s);
    const std::string prefix = "listening on ws://127.0.0.1:";
    if (line.rfind(prefix, 0) != 0) throw std::runtime_error("echo-server said: '" + line + "'");
    port_ = static_cast<std::uint16_t>(std::stoi(line.substr(prefix.size())));
  }
  EchoServerProcess(const EchoServerProcess&) = delete;
  EchoServerProcess& operator=(const EchoServerProcess&) = delete;
  ~EchoServerProcess() {
    kill();
    if (out_ >= 0) ::close(out_);
  }

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] std::string url() const { return "ws://127.0.0.1:" + std::to_string(port_) + "/"; }

  /// SIGKILL, and reaped: its sockets are closed when this returns.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  /// SIGTERM (1001 to every connection), then reaped; true if it exited by
  /// itself within `timeout` (else it is killed).
  bool terminate(milliseconds timeout) {
    if (pid_ <= 0) return false;
    ::kill(pid_, SIGTERM);
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (::waitpid(pid_, nullptr, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= end) {
        kill();
        return false;
      }
      // Its stdout ends when it exits: wait for that (bounded), not a sleep.
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 50) > 0) {
        char buf[256];
        if (::read(out_, buf, sizeof buf) <= 0) {
          ::close(out_);
          out_ = -1;
        }
      }
    }
    pid_ = -1;
    return true;
  }

private:
  std::string read_line(milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    std::string line;
    for (;;) {
      const auto left =
          std::chrono::duration_cast<milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0) return line;
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char c = 0;
      if (::read(out_, &c, 1) != 1) return line;
      if (c == '\n') return line;
      line += c;
    }
  }

  pid_t pid_ = -1;
  int out_ = -1;
  std::uint16_t port_ = 0;
};
#endif

struct ReconnectingRecord {
  std::size_t attempt = 0;
  milliseconds delay{};
  std::error_code error;
};

// A client on an io_context of its own, run by a thread started at connect,
// recording its events. The inboxes come first: they outlive the handlers.
struct ReconnectClient {
  explicit ReconnectClient(ReconnectOptions o) {
    ws.emplace(ctx);
    ws->control().message_type(SocketMessageType::utf8);
    ws->control().connect_timeout(5s);
    ws->control().reconnect(o);
    ws->message_received(
        [this](MessageWebSocket&, const auto& a) { messages.push(std::string(a.text())); });
    ws->reconnecting([this](MessageWebSocket&, const WebSocketReconnectingEventArgs& a) {
      reconnecting.push({a.attempt(), a.delay(), a.error()});
    });
    ws->reconnected([this](MessageWebSocket& s, const WebSocketReconnectedEventArgs& a) {
      reconnected.push(a.attempt());
      // The resubscribe hook: this leaves ahead of the sends queued meanwhile.
      if (!on_reconnected.empty()) (void)s.send_async(on_reconnected);
    });
    ws->closed([this](MessageWebSocket&, const WebSocketClosedEventArgs& a) {
      closed.push({a.code(), a.reason(), a.error()});
    });
  }
  ReconnectClient(const ReconnectClient&) = delete;
  ReconnectClient& operator=(const ReconnectClient&) = delete;
  ~ReconnectClient() {
    ws.reset();
    if (runner.joinable()) {
      if (!idle(10s)) ctx.stop();
      runner.join();
    }
    // What the destruction posted (the socket's detach) runs here.
    ctx.restart();
    ctx.poll();
  }

  void connect(const std::string& url) {
    auto task = ws->connect_async(url);
    runner = std::thread([this] {
      ctx.run();
      ran_out.set_value();
    });
    task.get();
  }
  /// True once the loop's run() returned: no operation, timer or reconnect
  /// attempt is left (within `timeout`).
  bool idle(milliseconds timeout) { return done.wait_for(timeout) == std::future_status::ready; }

  Inbox<std::string> messages;
  Inbox<ReconnectingRecord> reconnecting;
  Inbox<std::size_t> reconnected;
  Inbox<ClosedRecord> closed;
  std::string on_reconnected;  ///< sent by the reconnected handler (if not empty)
  asio::io_context ctx;
  std::optional<MessageWebSocket> ws;
  std::promise<void> ran_out;
  std::future<void> done = ran_out.get_future();
  std::thread runner;
};

// What the messages of a test are called.
std::string numbered(int i) {
  return "message " + std::to_string(i);
}

// An in-process server whose first connection is closed at once with
// `first_code`; later ones echo. Counts the connections.
class ClosingServer {
public:
  explicit ClosingServer(std::uint16_t first_code) : listener(options()) {
    listener.connection_received(
        [this, first_code](WebSocketListenerConnectionReceivedEventArgs& a) {
          auto ws = a.take_message_websocket();
          const int n = ++connections;
          if (n == 1) {
            ws.close(first_code, "bye");
          } else {
            ws.message_received([](MessageWebSocket& s, const auto& m) {
              s.control().message_type(m.message_type());
              s.send_async(m.data(), [](std::error_code) {});
            });
          }
          opened.push(n);
          std::lock_guard lock(m_);
          sockets_.push_back(std::move(ws));
        });
    listener.listen("127.0.0.1", 0);
  }
  ~ClosingServer() {
    listener.stop(1s);
    std::lock_guard lock(m_);
    sockets_.clear();
  }
  [[nodiscard]] std::string url() const {
    return "ws://127.0.0.1:" + std::to_string(listener.local_port()) + "/";
  }

  WebSocketListener listener;
  std::atomic<int> connections{0};
  Inbox<int> opened;

private:
  static WebSocketListenerOptions options() {
    WebSocketListenerOptions o;
    o.threads = 1;
    return o;
  }
  std::mutex m_;
  std::vector<MessageWebSocket> sockets_;
};

ReconnectOptions fast_reconnect() {
  ReconnectOptions o;
  o.enable = true;
  o.initial_delay = 20ms;
  o.max_delay = 200ms;
  o.jitter = 0.5;
  o.max_attempts = 500;  // bounded: a test that goes wrong ends
  o.jitter_seed = 12;
  return o;
}

// The sends' completion codes, waited on with a deadline each.
std::vector<std::error_code> outcomes(std::vector<Task<void>>& tasks) {
  std::vector<std::error_code> r;
  for (auto& t : tasks) {
    try {
      t.get();
      r.push_back({});
    } catch (const std::system_error& e) {
      r.push_back(e.code());
    }
  }
  return r;
}

// --- settings ----------------------------------------------------------------------------------

TEST(ClientReconnect, OffByDefault) {
  MessageWebSocket ws;
  const auto o = ws.control().reconnect();
  EXPECT_FALSE(o.enable);
  EXPECT_EQ(o.send_policy, ReconnectSendPolicy::queue);
  EXPECT_EQ(o.max_attempts, 0u);
}

TEST(ClientReconnect, InvalidOptionsThrowNamingTheRule) {
  MessageWebSocket ws;
  auto expect_rule = [&](ReconnectOptions o, const std::string& text) {
    try {
      ws.control().reconnect(o);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()), text);
    }
  };
  auto o = fast_reconnect();
  o.initial_delay = 0ms;
  expect_rule(o, "reconnect: initial_delay must be greater than zero");
  o = fast_reconnect();
  o.max_delay = 10ms;
  expect_rule(o, "reconnect: max_delay must be at least initial_delay");
  o = fast_reconnect();
  o.jitter = 1.5;
  expect_rule(o, "reconnect: jitter must be between 0 and 1");
  o.jitter = -0.1;
  expect_rule(o, "reconnect: jitter must be between 0 and 1");
  o = fast_reconnect();
  o.max_queued_messages = 0;
  expect_rule(o,
              "reconnect: max_queued_messages must be greater than zero with "
              "ReconnectSendPolicy::queue");
  o = fast_reconnect();
  o.max_queued_bytes = 0;
  expect_rule(
      o, "reconnect: max_queued_bytes must be greater than zero with ReconnectSendPolicy::queue");
  // Without a queue, its bounds do not matter.
  o.send_policy = ReconnectSendPolicy::fail;
  EXPECT_NO_THROW(ws.control().reconnect(o));
  EXPECT_EQ(ws.control().reconnect().send_policy, ReconnectSendPolicy::fail);
}

TEST(ClientReconnect, SettingAfterConnectIsMisuse) {
  ClosingServer server(1000);
  ReconnectClient c(fast_reconnect());
  c.connect(server.url());
  EXPECT_THROW(c.ws->control().reconnect(fast_reconnect()), std::logic_error);
  EXPECT_THROW(c.ws->reconnecting(MessageWebSocket::ReconnectingHandler{}), std::invalid_argument);
  EXPECT_THROW(c.ws->reconnected(MessageWebSocket::ReconnectedHandler{}), std::invalid_argument);
}

// --- which closes are reconnected --------------------------------------------------------------

class ServerCloseCode : public ::testing::TestWithParam<std::pair<std::uint16_t, bool>> {};

TEST_P(ServerCloseCode, ReconnectsOnlyForCodesThatSayComeBack) {
  const auto [code, reconnects] = GetParam();
  ClosingServer server(code);
  ReconnectClient c(fast_reconnect());
  c.connect(server.url());
  if (reconnects) {
    ASSERT_TRUE(c.reconnected.wait_for_count(1, 10s));
    ASSERT_TRUE(server.opened.wait_for_count(2, 10s));
    const auto r = c.reconnecting.items();
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].attempt, 1u);
    // A clean close by the server is no error of ours; the code said "come back".
    EXPECT_EQ(r[0].error, make_error_code(error::closed));
    EXPECT_EQ(c.reconnected.items()[0], 1u);
    // The new connection works.
    c.ws->send_async("again").get();
    ASSERT_TRUE(c.messages.wait_for_count(1, 10s));
    EXPECT_EQ(c.messages.items()[0], "again");
    EXPECT_TRUE(c.closed.items().empty());
    c.ws->close_async(1000, "done").get();
    ASSERT_TRUE(c.closed.wait_for_count(1, 10s));
    EXPECT_EQ(c.closed.items()[0].code, 1000);
  } else {
    // The closed event comes only when the socket is not reconnecting.
    ASSERT_TRUE(c.closed.wait_for_count(1, 10s));
    EXPECT_EQ(c.closed.items()[0].code, code);
    EXPECT_TRUE(c.reconnecting.items().empty());
  }
  // Either way, after the close nothing is left to run: no reconnect follows.
  EXPECT_TRUE(c.idle(10s));
  EXPECT_EQ(server.connections.load(), reconnects ? 2 : 1);
  EXPECT_EQ(c.closed.items().size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(ClientReconnect, ServerCloseCode,
                         ::testing::Values(std::pair<std::uint16_t, bool>{1000, false},
                                           std::pair<std::uint16_t, bool>{1001, true},
                                           std::pair<std::uint16_t, bool>{1008, false},
                                           std::pair<std::uint16_t, bool>{1011, true},
                                           std::pair<std::uint16_t, bool>{1012, true},
                                           std::pair<std::uint16_t, bool>{1013, true},
                                           std::pair<std::uint16_t, bool>{4000, false}),
                         [](const auto& param_info) {
                           return "code" + std::to_string(param_info.param.first);
                         });

// --- sends while disconnected
// ---------------------------------------------------------------------

// A server that closes with 1013 (try again later) and a first delay of a
// minute: the socket stays disconnected for the whole test.
ReconnectOptions slow_reconnect(ReconnectSendPolicy policy) {
  auto o = fast_reconnect();
  o.initial_delay = 60s;
  o.max_delay = 60s;
  o.send_policy = policy;
  return o;
}

TEST(ClientReconnect, FailPolicyFailsSendsAtOnce) {
  ClosingServer server(1013);
  ReconnectClient c(slow_reconnect(ReconnectSendPolicy::fail));
  c.connect(server.url());
  ASSERT_TRUE(c.reconnecting.wait_for_count(1, 10s));
  try {
    c.ws->send_async("lost").get();
    ADD_FAILURE() << "a send while disconnected succeeded";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), make_error_code(error::reconnecting));
    EXPECT_EQ(get_status(e.code()), WebErrorStatus::disconnected);
  }
  // The application's close ends the reconnecting at once.
  c.ws->close_async(1000, "bye").get();
  ASSERT_TRUE(c.closed.wait_for_count(1, 10s));
  EXPECT_EQ(c.closed.items()[0].code, 1006);
  EXPECT_EQ(c.closed.items()[0].error, make_error_code(error::closed));
  EXPECT_TRUE(c.idle(10s));  // the minute-long wait was cancelled: no attempt follows
  EXPECT_EQ(c.reconnecting.items().size(), 1u);
  EXPECT_EQ(server.connections.load(), 1);
}

TEST(ClientReconnect, QueueIsBoundedAndClosedSendsFail) {
  ClosingServer server(1013);
  auto o = slow_reconnect(ReconnectSendPolicy::queue);
  o.max_queued_messages = 3;
  o.max_queued_bytes = 10;
  ReconnectClient c(o);
  c.connect(server.url());
  ASSERT_TRUE(c.reconnecting.wait_for_count(1, 10s));
  std::vector<Task<void>> queued;
  queued.push_back(c.ws->send_async("abcdefgh"));  // 8 bytes: queued
  queued.push_back(c.ws->send_async("xyz"));       // 11 bytes in all: over the byte bound
  queued.push_back(c.ws->send_async("ij"));        // 10: queued
  queued.push_back(c.ws->send_async(""));          // 3 messages: queued
  queued.push_back(c.ws->send_async(""));          // a 4th message: over the count bound
  // A frame send cannot wait for a new connection (its message began on the old one).
  const std::string piece = "piece";
  queued.push_back(c.ws->send_nonfinal_frame_async(std::as_bytes(std::span(piece))));
  // Closing while disconnected: the queued sends fail, the close succeeds.
  c.ws->close_async(1000, "bye").get();
  const auto r = outcomes(queued);
  const auto full = make_error_code(error::reconnect_queue_full);
  const auto closed = make_error_code(error::closed);
  EXPECT_EQ(r, (std::vector<std::error_code>{closed, full, closed, closed, full,
                                             make_error_code(error::reconnecting)}));
  ASSERT_TRUE(c.closed.wait_for_count(1, 10s));
  EXPECT_EQ(c.closed.items()[0].code, 1006);
  EXPECT_TRUE(c.idle(10s));
}

TEST(ClientReconnect, DestroyingTheSocketAbortsQueuedSends) {
  ClosingServer server(1013);
  ReconnectClient c(slow_reconnect(ReconnectSendPolicy::queue));
  c.connect(server.url());
  ASSERT_TRUE(c.reconnecting.wait_for_count(1, 10s));
  std::promise<std::error_code> result;
  c.ws->send_async("never sent", [&](std::error_code ec) { result.set_value(ec); });
  c.ws.reset();
  auto f = result.get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(f.get(), make_error_code(error::operation_aborted));
  EXPECT_TRUE(c.idle(10s));
  EXPECT_TRUE(c.closed.items().empty());  // no event after destruction
}

#ifdef DUPLEX_CLI_PATH

// --- a real server process, killed and restarted
// ---------------------------------------------------

TEST(ClientReconnect, RidesThroughAKilledAndRestartedServer) {
  std::optional<EchoServerProcess> server(std::in_place, 0);
  const auto port = server->port();
  const auto options = fast_reconnect();
  ReconnectClient c(options);
  c.on_reconnected = "resubscribe";
  c.connect(server->url());

  // Before the drop: every message echoed.
  for (int i = 1; i <= 10; ++i) c.ws->send_async(numbered(i)).get();
  ASSERT_TRUE(c.messages.wait_for_count(10, 10s));

  server->kill();
  server.reset();
  // The drop is seen, and attempt 1 fails against the closed port, so
  // attempt 2 is announced while the server is down.
  ASSERT_TRUE(c.reconnecting.wait_for_count(2, 10s));
  EXPECT_NE(c.reconnecting.items()[0].error, std::error_code{});
  EXPECT_TRUE(c.reconnected.items().empty());
  EXPECT_TRUE(c.closed.items().empty());

  // Sends while disconnected wait in the queue.
  std::vector<Task<void>> queued;
  for (int i = 11; i <= 30; ++i) queued.push_back(c.ws->send_async(numbered(i)));

  server.emplace(port);
  ASSERT_TRUE(c.reconnected.wait_for_count(1, 20s));
  for (const auto& ec : outcomes(queued)) EXPECT_FALSE(ec) << ec.message();

  // Every accepted message arrives once, in order; the reconnected handler's
  // message comes before the queued ones.
  ASSERT_TRUE(c.messages.wait_for_count(31, 10s));
  std::vector<std::string> expected;
  for (int i = 1; i <= 10; ++i) expected.push_back(numbered(i));
  expected.push_back("resubscribe");
  for (int i = 11; i <= 30; ++i) expected.push_back(numbered(i));
  EXPECT_EQ(c.messages.items(), expected);

  // Attempts count up from 1, each within its backoff bounds; the last one worked.
  const auto attempts = c.reconnecting.items();
  for (std::size_t i = 0; i < attempts.size(); ++i) {
    EXPECT_EQ(attempts[i].attempt, i + 1);
    const auto base = detail::ReconnectBackoff::base_delay(options, i + 1);
    EXPECT_LE(attempts[i].delay, base);
    EXPECT_GE(attempts[i].delay, base / 2);
    // After attempt 1, the error is the failed attempt's.
    if (i > 0) {
      EXPECT_NE(attempts[i].error, std::error_code{});
    }
  }
  ASSERT_EQ(c.reconnected.items().size(), 1u);
  EXPECT_EQ(c.reconnected.items()[0], attempts.back().attempt);

  // The application's close: no reconnect after it, and nothing left to run.
  c.ws->close_async(1000, "done").get();
  ASSERT_TRUE(c.closed.wait_for_count(1, 10s));
  EXPECT_EQ(c.closed.items()[0].code, 1000);
  EXPECT_FALSE(c.closed.items()[0].error);
  EXPECT_TRUE(c.idle(10s));
  EXPECT_EQ(c.reconnecting.items().size(), attempts.size());
  EXPECT_EQ(c.messages.items().size(), 31u);
}

TEST(ClientReconnect, GoingAwayFromAStoppedServerIsReconnected) {
  std::optional<EchoServerProcess> server(std::in_place, 0);
  const auto port = server->port();
  ReconnectClient c(fast_reconnect());
  c.connect(server->url());
  ASSERT_TRUE(server->terminate(10s));  // 1001 to every connection
  server.reset();
  ASSERT_TRUE(c.reconnecting.wait_for_count(1, 10s));
  EXPECT_EQ(c.reconnecting.items()[0].error, make_error_code(error::closed));
  server.emplace(port);
  ASSERT_TRUE(c.reconnected.wait_for_count(1, 20s));
  c.ws->send_async("back").get();
  ASSERT_TRUE(c.messages.wait_for_count(1, 10s));
  EXPECT_EQ(c.messages.items()[0], "back");
  EXPECT_TRUE(c.closed.items().empty());
}

TEST(ClientReconnect, AMessageInPiecesCutByTheDropIsNotFinishedOnTheNewConnection) {
  std::optional<EchoServerProcess> server(std::in_place, 0);
  const auto port = server->port();
  ReconnectClient c(fast_reconnect());
  c.connect(server->url());
  const std::string head = "head", tail = "tail";
  c.ws->send_nonfinal_frame_async(std::as_bytes(std::span(head))).get();
  server->kill();
  server.reset();
  ASSERT_TRUE(c.reconnecting.wait_for_count(1, 10s));
  server.emplace(port);
  ASSERT_TRUE(c.reconnected.wait_for_count(1, 20s));
  // The head went with the lost connection: the tail must not arrive alone.
  try {
    c.ws->send_final_frame_async(std::as_bytes(std::span(tail))).get();
    ADD_FAILURE() << "the tail of a cut message was sent";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), make_error_code(error::reconnecting));
  }
  // The message is over: whole messages go again.
  c.ws->send_async("whole").get();
  ASSERT_TRUE(c.messages.wait_for_count(1, 10s));
  c.ws->close_async(1000, "done").get();
  EXPECT_EQ(c.messages.items(), std::vector<std::string>{"whole"});
}

TEST(ClientReconnect, GivesUpAfterMaxAttemptsWithTheLastError) {
  std::optional<EchoServerProcess> server(std::in_place, 0);
  auto o = fast_reconnect();
  o.initial_delay = 5ms;
  o.max_delay = 20ms;
  o.max_attempts = 3;
  ReconnectClient c(o);
  c.connect(server->url());
  server->kill();
  ASSERT_TRUE(c.reconnecting.wait_for_count(1, 10s));
  std::promise<std::error_code> queued;
  c.ws->send_async("never delivered", [&](std::error_code ec) { queued.set_value(ec); });
  ASSERT_TRUE(c.closed.wait_for_count(1, 20s));
  const auto attempts = c.reconnecting.items();
  ASSERT_EQ(attempts.size(), 3u);
  for (std::size_t i = 0; i < attempts.size(); ++i) EXPECT_EQ(attempts[i].attempt, i + 1);
  const auto closed = c.closed.items()[0];
  EXPECT_EQ(closed.code, 1006);
  // The third attempt's error: the port refuses connections.
  EXPECT_EQ(get_status(closed.error), WebErrorStatus::cannot_connect) << closed.error.message();
  auto f = queued.get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(f.get(), closed.error);
  EXPECT_TRUE(c.idle(10s));
  EXPECT_TRUE(c.reconnected.items().empty());
}

#endif

}  // namespace
}  // namespace duplex::test
