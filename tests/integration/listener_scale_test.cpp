// WebSocketListener at scale: 10,000 concurrent idle WebSocket connections on
// loopback, held open by one listener, with the user-space memory each idle
// connection costs measured (mallinfo2 and /proc/self/statm deltas) and
// reported. Clients are raw non-library sockets, so the library's memory is the
// server's alone.
#include <duplex/message_websocket.hpp>
#include <duplex/websocket_listener.hpp>

#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "listener_test_util.hpp"

namespace {

using namespace std::chrono_literals;
using duplex::test::Clock;

constexpr std::size_t connections = 10'000;
constexpr std::size_t batch = 500;

// Bytes malloc hands out (all arenas, mmapped chunks included).
std::size_t heap_in_use() {
  const auto mi = ::mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

// Resident set size in bytes.
std::size_t resident() {
  std::ifstream statm("/proc/self/statm");
  std::size_t size = 0, rss = 0;
  statm >> size >> rss;
  return rss * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

// Makes room for both ends of every connection in this process.
bool raise_fd_limit(rlim_t want) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return false;
  if (rl.rlim_cur >= want) return true;
  if (rl.rlim_max < want) rl.rlim_max = want;  // root may raise the hard limit
  rl.rlim_cur = want;
  return ::setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

// A masked text frame (client to server, RFC 6455 5.3) with a short payload.
std::string masked_text(const std::string& payload) {
  std::string f;
  f += static_cast<char>(0x81);
  f += static_cast<char>(0x80 | payload.size());
  const char mask[4] = {0x12, 0x34, 0x56, 0x78};
  f.append(mask, 4);
  for (std::size_t i = 0; i < payload.size(); ++i) f += static_cast<char>(payload[i] ^ mask[i % 4]);
  return f;
}

// The client side runs in a forked process (each process then needs only
// one end of every connection in its descriptor table; the parent's heap
// holds the server's memory alone). Commands over a pipe: the child connects
// and handshakes every connection, reports "ok", then on "echo" sends a text
// frame on a sample of connections and checks the echoes, and on "quit" exits.
[[noreturn]] void client_process(std::uint16_t port, int cmd_fd, int report_fd) {
  auto report = [&](const std::string& line) {
    const std::string l = line + "\n";
    (void)!::write(report_fd, l.data(), l.size());
  };
  auto command = [&] {
    std::string c;
    char ch;
    while (::read(cmd_fd, &ch, 1) == 1 && ch != '\n') c += ch;
    return c;
  };
  if (!raise_fd_limit(connections + 256)) {
    report("error: cannot raise RLIMIT_NOFILE in the client process");
    ::_exit(1);
  }
  const std::string request = duplex::test::upgrade_request();
  std::vector<duplex::test::RawClient> clients(connections);
  for (std::size_t first = 0; first < connections; first += batch) {
    const std::size_t last = std::min(connections, first + batch);
    for (std::size_t i = first; i < last; ++i) {
      if (!clients[i].connect(port) || !clients[i].send(request)) {
        report("error: connect " + std::to_string(i));
        ::_exit(1);
      }
    }
    for (std::size_t i = first; i < last; ++i) {
      const auto response = clients[i].read_response(5s);
      if (response.substr(0, 12) != "HTTP/1.1 101") {
        report("error: handshake " + std::to_string(i) + ": " + response.substr(0, 40));
        ::_exit(1);
      }
    }
  }
  report("ok");
  if (command() == "echo") {
    std::size_t echoed = 0;
    for (std::size_t i = 0; i < connections; i += connections / 20) {
      const std::string payload = "conn-" + std::to_string(i);
      if (!clients[i].send(masked_text(payload))) break;
      std::string got;
      const auto end = Clock::now() + 3s;
      while (got.size() < payload.size() + 2 && Clock::now() < end)
        got += clients[i].read_some(100ms);
      if (got.size() == payload.size() + 2 && got.substr(2) == payload) ++echoed;
    }
    report("echoed " + std::to_string(echoed));
  }
  (void)command();  // "quit": dropping the clients closes every connection
  ::_exit(0);
}

std::string read_line(int fd, std::chrono::milliseconds timeout) {
  std::string line;
  const auto end = Clock::now() + timeout;
  while (Clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char ch;
    if (::read(fd, &ch, 1) != 1) break;
    if (ch == '\n') return line;
    line += ch;
  }
  return line;
}

TEST(ListenerScale, HoldsTenThousandIdleConnections) {
  if (!raise_fd_limit(connections + 512))
    GTEST_SKIP() << "cannot raise RLIMIT_NOFILE to " << connections + 512;

  duplex::WebSocketListenerOptions o;
  o.threads = 2;
  duplex::WebSocketListener listener(o);
  std::mutex m;
  std::vector<duplex::MessageWebSocket> sockets;
  sockets.reserve(connections + 16);
  listener.connection_received([&](duplex::WebSocketListenerConnectionReceivedEventArgs& args) {
    auto ws = args.take_message_websocket();
    ws.message_received([](duplex::MessageWebSocket& s, const auto& a) {
      s.control().message_type(a.message_type());
      s.send_async(a.data(), [](std::error_code) {});
    });
    std::lock_guard lock(m);
    sockets.push_back(std::move(ws));
  });
  listener.listen("127.0.0.1", 0);
  const auto port = listener.local_port();

  // Warm up both loops and the allocator with a few connections first, so
  // the baseline holds the per-loop state (read buffers, timer services).
  {
    std::vector<duplex::test::RawClient> warm(8);
    for (auto& c : warm) {
      ASSERT_TRUE(c.connect(port));
      ASSERT_TRUE(c.send(duplex::test::upgrade_request()));
      ASSERT_EQ(c.read_response().substr(0, 12), "HTTP/1.1 101");
    }
  }
  ASSERT_TRUE(duplex::test::wait_until([&] { return listener.connection_count() == 0; }, 5s));
  {
    std::lock_guard lock(m);
    sockets.clear();
  }
  ::malloc_trim(0);
  const std::size_t heap0 = heap_in_use();
  const std::size_t rss0 = resident();

  int cmd[2], rep[2];
  ASSERT_EQ(::pipe2(cmd, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(rep, O_CLOEXEC), 0);
  const auto start = Clock::now();
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(cmd[1]);
    ::close(rep[0]);
    client_process(port, cmd[0], rep[1]);
  }
  ::close(cmd[0]);
  ::close(rep[1]);
  auto send_command = [&](const char* c) { (void)!::write(cmd[1], c, std::strlen(c)); };
  struct Reap {
    pid_t pid;
    int cmd_fd, rep_fd;
    ~Reap() {
      ::close(cmd_fd);  // the child's next read sees EOF and it exits
      ::close(rep_fd);
      int status = 0;
      ::waitpid(pid, &status, 0);
    }
  } reap{child, cmd[1], rep[0]};

  const auto ready = read_line(rep[0], 60s);
  ASSERT_EQ(ready, "ok");
  ASSERT_TRUE(duplex::test::wait_until(
      [&] {
        std::lock_guard lock(m);
        return sockets.size() == connections;
      },
      10s));
  EXPECT_EQ(listener.connection_count(), connections);
  const auto opened = Clock::now() - start;

  const std::size_t heap1 = heap_in_use();
  const std::size_t rss1 = resident();
  const double heap_per = (static_cast<double>(heap1) - static_cast<double>(heap0)) / connections;
  const double rss_per = (static_cast<double>(rss1) - static_cast<double>(rss0)) / connections;
  std::printf(
      "[ scale    ] %zu idle connections opened in %.2f s; server user-space memory per idle "
      "connection: heap %.0f B (mallinfo2), resident %.0f B (statm)\n",
      connections, std::chrono::duration<double>(opened).count(), heap_per, rss_per);
  RecordProperty("connections", static_cast<int>(connections));
  RecordProperty("heap_bytes_per_idle_connection", static_cast<int>(heap_per));
  RecordProperty("resident_bytes_per_idle_connection", static_cast<int>(rss_per));
  // The architecture's budget is under 1 KiB of library state per idle
  // connection; today the session object alone is about 3 KiB (measured:
  // about 4.2 KiB in all, see docs). This bound catches a regression such as
  // a read buffer kept per idle connection (8 KiB or more each).
  // (Under a sanitizer mallinfo2 reports nothing: no bound then.)
  if (heap1 != 0) {
    EXPECT_LT(heap_per, 6144.0);
  }

  // Every connection is alive: a sample of them echo.
  send_command("echo\n");
  EXPECT_EQ(read_line(rep[0], 20s), "echoed 20");

  // Clients leave; the server gives every slot back.
  send_command("quit\n");
  EXPECT_TRUE(duplex::test::wait_until([&] { return listener.connection_count() == 0; }, 15s));
  listener.stop(1s);
  std::lock_guard lock(m);
  sockets.clear();
}

}  // namespace
