// Session behaviour: send and close timeouts, keep-alive round-trip time,
// unsolicited pongs, sends from many threads, destruction with pending sends.
#include <gtest/gtest.h>

#include <atomic>

#include <duplex/message_websocket.hpp>
#include <duplex/protocol/handshake.hpp>

#include "client_test_support.hpp"

using namespace std::chrono_literals;
using duplex::MessageWebSocket;

namespace {

struct Closed {
  duplex::test::Flag flag;
  std::uint16_t code = 0;
  std::error_code error;
  void attach(MessageWebSocket& ws) {
    ws.closed([this](MessageWebSocket&, const duplex::WebSocketClosedEventArgs& a) {
      code = a.code();
      error = a.error();
      flag.set();
    });
  }
};

std::unique_ptr<duplex::test::PeerProcess>& peer() {
  static std::unique_ptr<duplex::test::PeerProcess> p;
  return p;
}

class ClientSession : public duplex::test::PeerSuite {
protected:
  static void SetUpTestSuite() {
    start_suite([] {
      peer() = std::make_unique<duplex::test::PeerProcess>("ws_echo_server.py",
                                                           std::vector<std::string>{});
    });
  }
  static void TearDownTestSuite() { peer().reset(); }
  static std::string url() { return "ws://127.0.0.1:" + std::to_string(peer()->port()) + "/"; }
};

}  // namespace

TEST_F(ClientSession, SendTimeoutFailsTheConnection) {
  duplex::test::RawServer server(duplex::test::answer_handshake);  // then never reads
  MessageWebSocket ws;
  ws.control().outbound_buffer_size_in_bytes(64 * 1024);
  ws.control().send_timeout(300ms);
  // After the send timeout a 1008 close frame waits behind the data; a peer
  // that never reads never gets it, and the close timeout tears TCP down.
  ws.control().close_timeout(300ms);
  Closed closed;
  closed.attach(ws);
  ws.connect_async("ws://127.0.0.1:" + std::to_string(server.port()) + "/").get();
  std::vector<std::byte> big(16 << 20);
  std::error_code ec;
  for (int i = 0; i < 4 && !ec; ++i)
    ec = ws.send_async(std::span<const std::byte>(big)).get_result().ec;
  EXPECT_EQ(ec, duplex::error::timed_out);
  ASSERT_TRUE(closed.flag.wait(5s));
  EXPECT_EQ(closed.error, duplex::error::timed_out);
  EXPECT_EQ(closed.code, 1006);
}

TEST_F(ClientSession, CloseTimeoutBoundsAnUnansweredClose) {
  duplex::test::RawServer server(duplex::test::answer_handshake);  // never answers the close
  MessageWebSocket ws;
  ws.control().close_timeout(200ms);
  Closed closed;
  closed.attach(ws);
  ws.connect_async("ws://127.0.0.1:" + std::to_string(server.port()) + "/").get();
  auto start = std::chrono::steady_clock::now();
  auto ec = ws.close_async(1000, "bye").get_result().ec;
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(ec, duplex::error::timed_out);
  EXPECT_GE(took, 190ms);
  EXPECT_LT(took, 2s);
  ASSERT_TRUE(closed.flag.wait());
  EXPECT_EQ(closed.code, 1006);
  EXPECT_EQ(closed.error, duplex::error::timed_out);
}

TEST_F(ClientSession, KeepAliveMeasuresRoundTripTime) {
  MessageWebSocket ws;
  ws.control().keep_alive_interval(30ms);
  ws.connect_async(url()).get();
  EXPECT_FALSE(ws.information().ping_round_trip_time());
  std::optional<std::chrono::microseconds> rtt;
  for (int i = 0; i < 200 && !rtt; ++i) {
    std::this_thread::sleep_for(10ms);
    rtt = ws.information().ping_round_trip_time();
  }
  ASSERT_TRUE(rtt);
  EXPECT_GT(rtt->count(), 0);
  EXPECT_LT(*rtt, 1s);
  ws.close_async().get();
}

TEST_F(ClientSession, SendsUnsolicitedPongs) {
  std::atomic<int> pongs{0};
  duplex::test::Flag seen;
  duplex::test::RawServer server([&](asio::ip::tcp::socket& s) {
    duplex::test::answer_handshake(s);
    std::array<std::uint8_t, 64> buf;
    std::error_code ec;
    // A masked empty pong from a client is 0x8A 0x80 + 4 mask bytes.
    for (int i = 0; i < 20 && pongs < 2; ++i) {
      auto n = s.read_some(asio::buffer(buf), ec);
      if (ec) break;
      for (std::size_t j = 0; j + 1 < n; j += 6)
        if (buf[j] == 0x8A && buf[j + 1] == 0x80) ++pongs;
    }
    seen.set();
  });
  MessageWebSocket ws;
  ws.control().desired_unsolicited_pong_interval(50ms);
  ws.connect_async("ws://127.0.0.1:" + std::to_string(server.port()) + "/").get();
  ASSERT_TRUE(seen.wait(5s));
  EXPECT_GE(pongs, 2);
}

TEST_F(ClientSession, SendsFromManyThreadsAllArrive) {
  MessageWebSocket ws;
  std::atomic<int> received{0};
  duplex::test::Flag all;
  constexpr int threads = 4, each = 250;
  ws.message_received([&](MessageWebSocket&, const auto&) {
    if (++received == threads * each) all.set();
  });
  ws.connect_async(url()).get();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&ws, t] {
      for (int i = 0; i < each; ++i) {
        auto text = "t" + std::to_string(t) + "-" + std::to_string(i);
        auto r = ws.send_async(text).get_result();
        EXPECT_FALSE(r.ec) << r.ec.message();
      }
    });
  }
  for (auto& th : pool) th.join();
  ASSERT_TRUE(all.wait());
  EXPECT_EQ(ws.information().bandwidth_statistics().messages_sent,
            static_cast<std::uint64_t>(threads * each));
  ws.close_async().get();
}

TEST_F(ClientSession, DestroyingAbortsSendsWaitingForRoom) {
  duplex::test::RawServer server(duplex::test::answer_handshake);  // never reads
  auto ws = std::make_unique<MessageWebSocket>();
  ws->control().outbound_buffer_size_in_bytes(1024);
  ws->connect_async("ws://127.0.0.1:" + std::to_string(server.port()) + "/").get();
  std::vector<std::byte> big(16 << 20);
  ws->send_async(std::span<const std::byte>(big)).get();  // accepted: the buffer had room
  auto waiting = ws->send_async(std::span<const std::byte>(big));
  ws.reset();
  EXPECT_EQ(waiting.get_result().ec, duplex::error::operation_aborted);
}

TEST_F(ClientSession, CancellingASendWaitingForRoomKeepsTheSocket) {
  duplex::test::RawServer server(duplex::test::answer_handshake);  // never reads
  MessageWebSocket ws;
  ws.control().outbound_buffer_size_in_bytes(1024);
  Closed closed;
  closed.attach(ws);
  ws.connect_async("ws://127.0.0.1:" + std::to_string(server.port()) + "/").get();
  std::vector<std::byte> big(16 << 20);
  ws.send_async(std::span<const std::byte>(big)).get();
  duplex::CancellationSource source;
  auto waiting = ws.send_async(std::span<const std::byte>(big), source.token());
  source.cancel();
  EXPECT_EQ(waiting.get_result().ec, duplex::error::operation_aborted);
  // Nothing of it went out: the connection is still open.
  EXPECT_FALSE(closed.flag.wait(100ms));
}
