// StreamWebSocket against Python `websockets`: a 64 MiB byte stream echoed with
// backpressure, read timeouts and cancellation that leave the socket usable.
#include <gtest/gtest.h>

#include <duplex/protocol/handshake.hpp>
#include <duplex/stream_websocket.hpp>

#include "client_test_support.hpp"

using namespace std::chrono_literals;
using duplex::StreamWebSocket;

namespace {

class ClientStream : public duplex::test::PeerSuite {
protected:
  static void SetUpTestSuite() {
    start_suite([] {
      peer() = std::make_unique<duplex::test::PeerProcess>("ws_echo_server.py",
                                                           std::vector<std::string>{});
    });
  }
  static void TearDownTestSuite() { peer().reset(); }
  static std::unique_ptr<duplex::test::PeerProcess>& peer() {
    static std::unique_ptr<duplex::test::PeerProcess> p;
    return p;
  }
  static std::string url() { return "ws://127.0.0.1:" + std::to_string(peer()->port()) + "/"; }
};

std::byte byte_at(std::size_t i) {
  return static_cast<std::byte>((i * 131 + (i >> 12)) & 0xff);
}

}  // namespace

TEST_F(ClientStream, Echoes64MiBWithBackpressure) {
  constexpr std::size_t total = 64u << 20;
  StreamWebSocket ws;
  ws.control().outbound_buffer_size_in_bytes(256 * 1024);
  ws.connect_async(url()).get();
  std::thread writer([&] {
    std::vector<std::byte> chunk(1 << 20);
    for (std::size_t sent = 0; sent < total; sent += chunk.size()) {
      for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = byte_at(sent + i);
      auto n = ws.output_stream().write_async(std::span<const std::byte>(chunk)).get();
      ASSERT_EQ(n, chunk.size());
    }
  });
  std::vector<std::byte> buf(200'000);
  std::size_t got = 0;
  bool same = true;
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (got < total && std::chrono::steady_clock::now() < deadline) {
    auto n = ws.input_stream().read_async(std::span<std::byte>(buf)).get();
    ASSERT_GT(n, 0u) << "end of stream after " << got << " bytes";
    for (std::size_t i = 0; i < n && same; ++i) same = buf[i] == byte_at(got + i);
    got += n;
  }
  writer.join();
  EXPECT_EQ(got, total);
  EXPECT_TRUE(same) << "echoed bytes differ";
  auto stats = ws.information().bandwidth_statistics();
  EXPECT_GE(stats.bytes_sent, total);
  EXPECT_GE(stats.bytes_received, total);
  ws.close_async().get();
  // The end of the stream reads as 0 bytes.
  EXPECT_EQ(ws.input_stream().read_async(std::span<std::byte>(buf)).get(), 0u);
}

TEST_F(ClientStream, ReadTimeoutAndCancelLeaveTheSocketUsable) {
  StreamWebSocket ws;
  ws.control().receive_timeout(200ms);
  ws.connect_async(url()).get();
  std::vector<std::byte> buf(64);
  auto start = std::chrono::steady_clock::now();
  auto r = ws.input_stream().read_async(std::span<std::byte>(buf)).get_result();
  EXPECT_EQ(r.ec, duplex::error::timed_out);
  EXPECT_EQ(duplex::get_status(r.ec), duplex::WebErrorStatus::timeout);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 190ms);

  duplex::CancellationSource source;
  auto pending = ws.input_stream().read_async(std::span<std::byte>(buf), source.token());
  source.cancel();
  EXPECT_EQ(pending.get_result().ec, duplex::error::operation_aborted);

  std::string hello = "still usable";
  ws.output_stream().write_async(std::as_bytes(std::span(hello))).get();
  std::string echoed;
  while (echoed.size() < hello.size()) {
    auto n = ws.input_stream().read_async(std::span<std::byte>(buf)).get();
    ASSERT_GT(n, 0u);
    echoed.append(reinterpret_cast<const char*>(buf.data()), n);
  }
  EXPECT_EQ(echoed, hello);
  ws.close_async().get();
}

TEST_F(ClientStream, ReadBeforeConnectIsNotConnected) {
  StreamWebSocket ws;
  std::vector<std::byte> buf(8);
  auto r = ws.input_stream().read_async(std::span<std::byte>(buf)).get_result();
  EXPECT_EQ(r.ec, duplex::error::not_connected);
  auto w = ws.output_stream().write_async(std::span<const std::byte>(buf)).get_result();
  EXPECT_EQ(w.ec, duplex::error::not_connected);
}

TEST_F(ClientStream, RatesAndClosedEvent) {
  StreamWebSocket ws;
  duplex::test::Flag closed;
  std::uint16_t code = 0;
  ws.closed([&](StreamWebSocket&, const duplex::WebSocketClosedEventArgs& a) {
    code = a.code();
    closed.set();
  });
  ws.connect_async(url()).get();
  std::vector<std::byte> chunk(64 * 1024), buf(64 * 1024);
  // Traffic for a little over a second: the rate estimate covers a 1 s window.
  auto until = std::chrono::steady_clock::now() + 1200ms;
  std::size_t pending = 0;
  while (std::chrono::steady_clock::now() < until) {
    pending += ws.output_stream().write_async(std::span<const std::byte>(chunk)).get();
    while (pending > 0) pending -= ws.input_stream().read_async(std::span<std::byte>(buf)).get();
  }
  auto stats = ws.information().bandwidth_statistics();
  EXPECT_GT(stats.outbound_bits_per_second, 0u);
  EXPECT_GT(stats.inbound_bits_per_second, 0u);
  EXPECT_GT(stats.frames_sent, 1u);
  ws.close(4001, "enough");
  ASSERT_TRUE(closed.wait());
  EXPECT_EQ(code, 4001);  // the peer echoes our close code
}

TEST_F(ClientStream, CancellingAHalfAcceptedWriteFailsTheConnection) {
  // A server that answers the handshake and then never reads.
  duplex::test::RawServer server([](asio::ip::tcp::socket& s) {
    auto req = duplex::test::read_request(s);
    auto at = req.find("Sec-WebSocket-Key: ") + 19;
    auto key = req.substr(at, req.find("\r\n", at) - at);
    std::string answer =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " +
        duplex::protocol::compute_accept(key) + "\r\n\r\n";
    std::error_code ec;
    asio::write(s, asio::buffer(answer), ec);
  });
  StreamWebSocket ws;
  ws.control().outbound_buffer_size_in_bytes(64 * 1024);
  duplex::test::Flag closed;
  std::error_code why;
  ws.closed([&](StreamWebSocket&, const duplex::WebSocketClosedEventArgs& a) {
    why = a.error();
    closed.set();
  });
  ws.connect_async("ws://127.0.0.1:" + std::to_string(server.port()) + "/").get();
  std::vector<std::byte> big(64 << 20);
  duplex::CancellationSource source;
  auto write = ws.output_stream().write_async(std::span<const std::byte>(big), source.token());
  EXPECT_FALSE(closed.wait(200ms));  // part of it is accepted, the rest waits for room
  source.cancel();
  EXPECT_EQ(write.get_result().ec, duplex::error::operation_aborted);
  ASSERT_TRUE(closed.wait());
  EXPECT_EQ(why, duplex::error::operation_aborted);
}
