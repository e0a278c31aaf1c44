// Unix domain sockets against Node's `ws`, both ways: Node's client on a
// ws+unix:// URI against a duplex listener on listen_unix(), and a duplex
// client on a ws+unix:// URI against Node's server listening on a socket file.
#include <duplex/message_websocket.hpp>
#include <duplex/websocket_listener.hpp>

#include <gtest/gtest.h>

#include <stdlib.h>

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>

#include "run_process.hpp"

#if !defined(DUPLEX_INTEROP_PEERS_DIR) || !defined(DUPLEX_NODE_MODULES)
#error "DUPLEX_INTEROP_PEERS_DIR and DUPLEX_NODE_MODULES must be defined"
#endif

namespace {

using namespace std::chrono_literals;
using duplex::MessageWebSocket;
using duplex::test::BackgroundProcess;
using duplex::test::run_process;

constexpr const char* node_peer = DUPLEX_INTEROP_PEERS_DIR "/unix_node_peer.js";

// A fresh directory for the socket file, removed with everything in it; Node
// finds `ws` through NODE_PATH.
class UnixInterop : public ::testing::Test {
protected:
  void SetUp() override {
    ::setenv("NODE_PATH", DUPLEX_NODE_MODULES, 1);
    std::string templ = (std::filesystem::temp_directory_path() / "duplex-unix-XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  [[nodiscard]] std::string socket_path() const { return (dir_ / "ws.sock").string(); }

private:
  std::filesystem::path dir_;
};

TEST_F(UnixInterop, NodeClientToDuplexListener) {
  duplex::WebSocketListenerOptions o;
  o.threads = 2;
  duplex::WebSocketListener listener(o);
  std::mutex m;
  std::optional<duplex::WebSocketRequest> seen;
  std::deque<MessageWebSocket> sockets;
  listener.connection_received([&](duplex::WebSocketListenerConnectionReceivedEventArgs& a) {
    auto ws = a.take_message_websocket();
    ws.message_received([](MessageWebSocket& s, const auto& msg) {
      s.control().message_type(msg.message_type());
      s.send_async(msg.data(), [](std::error_code) {});
    });
    std::lock_guard lock(m);
    seen = a.request();
    sockets.push_back(std::move(ws));
  });
  listener.listen_unix(socket_path());

  const auto r = run_process({"node", node_peer, "client", "--url",
                              "ws+unix://" + socket_path() + ":/node?x=1", "--timeout", "10"},
                             60s);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "ok open\nok text echo\nok binary echo\nok close 1000 echoed\n");
  listener.stop(1s);
  std::lock_guard lock(m);
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->target, "/node?x=1");
  EXPECT_EQ(seen->local_address.host, socket_path());
  sockets.clear();
}

TEST_F(UnixInterop, DuplexClientToNodeServer) {
  BackgroundProcess node({"node", node_peer, "server", "--socket", socket_path()});
  ASSERT_EQ(node.read_line(30s), "listening on " + socket_path());

  MessageWebSocket ws;
  std::mutex m;
  std::condition_variable cv;
  std::deque<std::pair<duplex::SocketMessageType, std::string>> inbox;
  std::optional<std::uint16_t> closed;
  ws.message_received([&](MessageWebSocket&, const auto& msg) {
    std::lock_guard lock(m);
    inbox.emplace_back(
        msg.message_type(),
        std::string(reinterpret_cast<const char*>(msg.data().data()), msg.data().size()));
    cv.notify_all();
  });
  ws.closed([&](MessageWebSocket&, const duplex::WebSocketClosedEventArgs& c) {
    std::lock_guard lock(m);
    closed = c.code();
    cv.notify_all();
  });
  auto next = [&]() -> std::optional<std::pair<duplex::SocketMessageType, std::string>> {
    std::unique_lock lock(m);
    if (!cv.wait_for(lock, 10s, [&] { return !inbox.empty(); })) return std::nullopt;
    auto v = inbox.front();
    inbox.pop_front();
    return v;
  };

  ws.connect_async("ws+unix://" + socket_path() + ":/duplex?y=2").get();
  EXPECT_EQ(ws.information().remote_address().host, socket_path());
  ws.control().message_type(duplex::SocketMessageType::utf8);
  ws.send_async("target?").get();
  auto got = next();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->second, "/duplex?y=2 localhost");
  ws.send_async("hello over a socket file").get();
  got = next();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->first, duplex::SocketMessageType::utf8);
  EXPECT_EQ(got->second, "hello over a socket file");
  ws.control().message_type(duplex::SocketMessageType::binary);
  std::string big(70000, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31);
  ws.send_async(
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(big.data()), big.size()))
      .get();
  got = next();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->first, duplex::SocketMessageType::binary);
  EXPECT_TRUE(got->second == big) << got->second.size() << " bytes";
  ws.close(1000, "done");
  std::unique_lock lock(m);
  ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return closed.has_value(); }));
  EXPECT_EQ(*closed, 1000);
}

}  // namespace
