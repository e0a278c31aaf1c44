// WebSocketListener with the sockets it hands over: echo through the listener
// with the duplex client (ws and wss, message and stream sockets), graceful
// shutdown with 1001, and the protections that live past the handshake (max
// message size, keep-alive idle timeout, a client that does not read).
#include <duplex/message_websocket.hpp>
#include <duplex/stream_websocket.hpp>
#include <duplex/websocket_listener.hpp>

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "echo_test_support.hpp"
#include "listener_test_util.hpp"

namespace {

using namespace std::chrono_literals;
using duplex::MessageWebSocket;
using duplex::SocketMessageType;
using duplex::StreamWebSocket;
using duplex::WebSocketListener;
using duplex::WebSocketListenerOptions;
using duplex::test::ClosedRecord;
using duplex::test::EchoServer;
using duplex::test::Inbox;
using duplex::test::RawClient;
using duplex::test::upgrade_request;

// A duplex client that records what it receives. The inboxes come before the
// socket, so they outlive its handlers.
struct Client {
  Client() {
    ws.message_received([this](MessageWebSocket&, const auto& a) {
      messages.push({a.message_type(), std::string(a.text())});
    });
    ws.closed([this](MessageWebSocket&, const duplex::WebSocketClosedEventArgs& a) {
      closed.push({a.code(), a.reason(), a.error()});
    });
  }
  Inbox<std::pair<SocketMessageType, std::string>> messages;
  Inbox<ClosedRecord> closed;
  MessageWebSocket ws;
};

WebSocketListenerOptions options() {
  WebSocketListenerOptions o;
  o.threads = 2;
  o.handshake_timeout = 3s;
  return o;
}

TEST(ListenerEcho, MessageEchoWithDuplexClient) {
  auto o = options();
  o.supported_protocols = {"chat"};
  EchoServer server(o);
  Client c;
  c.ws.control().supported_protocols({"chat"});
  c.ws.connect_async(server.url()).get();
  EXPECT_EQ(c.ws.information().protocol(), "chat");
  ASSERT_TRUE(server.opened.wait_for_count(1, 3s));
  EXPECT_EQ(server.opened.items()[0].protocol, "chat");

  c.ws.control().message_type(SocketMessageType::utf8);
  c.ws.send_async("Hello, world! \xC3\xA9\xE2\x9C\x93").get();
  c.ws.control().message_type(SocketMessageType::binary);
  std::string big(70000, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
  c.ws.send_async(big).get();
  c.ws.send_async(std::string_view{}).get();
  ASSERT_TRUE(c.messages.wait_for_count(3, 5s));
  const auto got = c.messages.items();
  EXPECT_EQ(got[0].first, SocketMessageType::utf8);
  EXPECT_EQ(got[0].second, "Hello, world! \xC3\xA9\xE2\x9C\x93");
  EXPECT_EQ(got[1].first, SocketMessageType::binary);
  EXPECT_EQ(got[1].second, big);
  EXPECT_EQ(got[2].second, "");

  c.ws.close_async(4000, "bye").get();
  ASSERT_TRUE(server.closed.wait_for_count(1, 3s));
  EXPECT_EQ(server.closed.items()[0].code, 4000);
  EXPECT_EQ(server.closed.items()[0].reason, "bye");
  ASSERT_TRUE(c.closed.wait_for_count(1, 3s));
  EXPECT_EQ(c.closed.items()[0].code, 4000);
  EXPECT_FALSE(c.closed.items()[0].error);
  EXPECT_TRUE(
      duplex::test::wait_until([&] { return server.listener.connection_count() == 0; }, 3s));
}

TEST(ListenerEcho, StreamEchoWithDuplexClient) {
  EchoServer server(options(), /*stream=*/true);
  StreamWebSocket c;
  c.connect_async(server.url()).get();
  std::vector<std::byte> out(1 << 20);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>(i % 251);
  auto write = c.output_stream().write_async(out);
  std::vector<std::byte> in(out.size());
  std::size_t got = 0;
  const auto end = duplex::test::Clock::now() + 10s;
  while (got < in.size() && duplex::test::Clock::now() < end) {
    const std::size_t n =
        c.input_stream().read_async(std::span(in.data() + got, in.size() - got)).get();
    if (n == 0) break;
    got += n;
  }
  write.get();
  ASSERT_EQ(got, in.size());
  EXPECT_EQ(std::memcmp(in.data(), out.data(), in.size()), 0);
  c.close_async().get();
}

TEST(ListenerEcho, EchoOverTlsWithDuplexClient) {
  static const duplex::test::TestCertificates certs;
  ASSERT_TRUE(certs.ok());
  auto o = options();
  duplex::ListenerTlsOptions tls;
  tls.certificate_chain_file = certs.file("server.pem");
  tls.private_key_file = certs.file("server.key");
  o.tls = tls;
  EchoServer server(o);
  Client c;
  c.ws.control().trusted_ca_file(certs.file("ca.pem"));
  c.ws.connect_async(server.url()).get();
  c.ws.control().message_type(SocketMessageType::utf8);
  c.ws.send_async("over TLS").get();
  ASSERT_TRUE(c.messages.wait_for_count(1, 5s));
  EXPECT_EQ(c.messages.items()[0].second, "over TLS");
  c.ws.close_async().get();
}

TEST(ListenerEcho, GracefulStopClosesEveryClientWith1001) {
  EchoServer server(options());
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(std::make_unique<Client>());
    clients.back()->ws.connect_async(server.url()).get();
  }
  // The server raised connection_received for all four (it has their sockets).
  ASSERT_TRUE(server.opened.wait_for_count(4, 3s));
  const auto start = duplex::test::Clock::now();
  EXPECT_EQ(server.listener.stop(3s), 0u);  // every closing handshake finished in time
  EXPECT_LT(duplex::test::Clock::now() - start, 2s);
  for (auto& c : clients) {
    ASSERT_TRUE(c->closed.wait_for_count(1, 3s));
    EXPECT_EQ(c->closed.items()[0].code, 1001);
    EXPECT_EQ(c->closed.items()[0].reason, "server shutting down");
  }
  ASSERT_TRUE(server.closed.wait_for_count(4, 3s));
  for (const auto& r : server.closed.items()) EXPECT_EQ(r.code, 1001);
  EXPECT_EQ(server.listener.connection_count(), 0u);
}

TEST(ListenerEcho, StopCutsAClientThatDoesNotAnswerTheClose) {
  EchoServer server(options());
  RawClient raw;
  ASSERT_TRUE(raw.connect(server.listener.local_port()));
  ASSERT_TRUE(raw.send(upgrade_request()));
  const auto response = raw.read_response();
  ASSERT_EQ(response.substr(0, 12), "HTTP/1.1 101");
  ASSERT_TRUE(server.opened.wait_for_count(1, 3s));
  const auto start = duplex::test::Clock::now();
  EXPECT_EQ(server.listener.stop(300ms), 1u);
  const auto took = duplex::test::Clock::now() - start;
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 2s);
  // The raw client got the 1001 close frame (unmasked, from the server), then the end.
  std::string frames;
  bool closed = false;
  const auto end = duplex::test::Clock::now() + 3s;
  while (!closed && duplex::test::Clock::now() < end) frames += raw.read_some(100ms, &closed);
  ASSERT_GE(frames.size(), 4u);
  EXPECT_EQ(static_cast<unsigned char>(frames[0]), 0x88);
  EXPECT_EQ(static_cast<unsigned char>(frames[2]), 0x03);
  EXPECT_EQ(static_cast<unsigned char>(frames[3]), 0xE9);
  EXPECT_TRUE(closed);
  ASSERT_TRUE(server.closed.wait_for_count(1, 3s));
  EXPECT_EQ(server.closed.items()[0].code, 1006);
}

TEST(ListenerEcho, MessageOverMaxMessageSizeClosesWith1009) {
  auto o = options();
  o.max_message_size = 1024;
  EchoServer server(o);
  Client c;
  c.ws.connect_async(server.url()).get();
  c.ws.send_async(std::string(1024, 'a')).get();
  ASSERT_TRUE(c.messages.wait_for_count(1, 3s));
  c.ws.send_async(std::string(1025, 'a')).get();
  ASSERT_TRUE(server.closed.wait_for_count(1, 3s));
  EXPECT_EQ(server.closed.items()[0].error, duplex::error::message_too_big);
  ASSERT_TRUE(c.closed.wait_for_count(1, 3s));
  // The server's 1009 close frame, unless the TCP reset that follows the
  // server's close (with the rest of the message unread) overtakes it.
  const auto code = c.closed.items()[0].code;
  EXPECT_TRUE(code == 1009 || code == 1006) << code;
}

TEST(ListenerEcho, IdleClientIsPingedThenCutOff) {
  auto o = options();
  o.keep_alive_interval = 100ms;
  o.keep_alive_timeout = 150ms;
  EchoServer server(o);
  RawClient raw;
  ASSERT_TRUE(raw.connect(server.listener.local_port()));
  ASSERT_TRUE(raw.send(upgrade_request()));
  ASSERT_EQ(raw.read_response().substr(0, 12), "HTTP/1.1 101");
  const auto start = duplex::test::Clock::now();
  std::string frames;
  bool closed = false;
  while (!closed && duplex::test::Clock::now() < start + 3s)
    frames += raw.read_some(100ms, &closed);
  EXPECT_TRUE(closed);
  EXPECT_LT(duplex::test::Clock::now() - start, 2s);
  ASSERT_GE(frames.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(frames[0]), 0x89);  // a ping came first
  ASSERT_TRUE(server.closed.wait_for_count(1, 3s));
  EXPECT_EQ(server.closed.items()[0].error, duplex::error::dead_peer);
}

TEST(ListenerEcho, ClientThatDoesNotReadIsClosed) {
  auto o = options();
  o.outbound_buffer_size = 64 * 1024;
  o.send_timeout = 300ms;
  WebSocketListener listener(o);
  Inbox<ClosedRecord> closed;
  std::atomic<std::size_t> accepted_bytes{0};
  std::mutex m;
  std::vector<MessageWebSocket> sockets;
  // Each accepted send starts the next: the server pushes 32 KiB messages as
  // fast as its outbound buffer takes them.
  struct Pusher {
    static void push(MessageWebSocket& ws, std::atomic<std::size_t>& count) {
      static const std::string chunk(32 * 1024, 'x');
      ws.send_async(chunk, [&ws, &count](std::error_code ec) {
        if (ec) return;
        count += chunk.size();
        push(ws, count);
      });
    }
  };
  listener.connection_received([&](auto& args) {
    auto ws = args.take_message_websocket();
    ws.closed([&](MessageWebSocket&, const duplex::WebSocketClosedEventArgs& a) {
      closed.push({a.code(), a.reason(), a.error()});
    });
    std::lock_guard lock(m);
    sockets.push_back(std::move(ws));
    Pusher::push(sockets.back(), accepted_bytes);
  });
  listener.listen("127.0.0.1", 0);

  RawClient raw;
  ASSERT_TRUE(raw.connect(listener.local_port()));
  ASSERT_TRUE(raw.send(upgrade_request()));
  // Read only the 101 (a few bytes at a time), then never again.
  std::string head;
  while (head.find("\r\n\r\n") == std::string::npos) {
    char ch;
    if (::recv(raw.fd(), &ch, 1, 0) != 1) break;
    head += ch;
  }
  ASSERT_EQ(head.substr(0, 12), "HTTP/1.1 101");
  ASSERT_TRUE(closed.wait_for_count(1, 10s));
  EXPECT_EQ(closed.items()[0].code, 1006);
  EXPECT_EQ(duplex::get_status(closed.items()[0].error), duplex::WebErrorStatus::timeout);
  // What the server took is bounded by the kernel's buffers plus ours, not by
  // how long the client stalls.
  EXPECT_LT(accepted_bytes.load(), std::size_t{64} << 20);
  listener.stop(0ms);
  std::lock_guard lock(m);
  sockets.clear();
}

TEST(ListenerEcho, HookChoosesTheSocketTypePerRequest) {
  WebSocketListener listener(options());
  listener.handshake_requested([](duplex::WebSocketHandshakeContext& ctx) {
    EXPECT_EQ(ctx.socket_type(), duplex::ListenerSocketType::message_websocket);
    if (ctx.request().path() == "/stream")
      ctx.socket_type(duplex::ListenerSocketType::stream_websocket);
  });
  Inbox<std::string> kinds;
  std::mutex m;
  std::vector<MessageWebSocket> messages;
  std::vector<StreamWebSocket> streams;
  listener.connection_received([&](duplex::WebSocketListenerConnectionReceivedEventArgs& args) {
    if (args.socket_type() == duplex::ListenerSocketType::stream_websocket) {
      EXPECT_THROW(args.take_message_websocket(), std::logic_error);
      auto ws = args.take_stream_websocket();
      EXPECT_FALSE(args.available());
      EXPECT_THROW(args.take_stream_websocket(), std::logic_error);
      std::lock_guard lock(m);
      streams.push_back(std::move(ws));
      kinds.push("stream " + std::string(args.request().path()));
    } else {
      EXPECT_THROW(args.take_stream_websocket(), std::logic_error);
      auto ws = args.take_message_websocket();
      std::lock_guard lock(m);
      messages.push_back(std::move(ws));
      kinds.push("message " + std::string(args.request().path()));
    }
  });
  listener.listen("127.0.0.1", 0);
  const auto base = "ws://127.0.0.1:" + std::to_string(listener.local_port());
  Client a, b;
  a.ws.connect_async(base + "/stream").get();
  ASSERT_TRUE(kinds.wait_for_count(1, 3s));
  b.ws.connect_async(base + "/chat").get();
  ASSERT_TRUE(kinds.wait_for_count(2, 3s));
  EXPECT_EQ(kinds.items()[0], "stream /stream");
  EXPECT_EQ(kinds.items()[1], "message /chat");
  listener.stop(1s);
  std::lock_guard lock(m);
  messages.clear();
  streams.clear();
}

TEST(ListenerEcho, MaxConnectionsRefusesTheDuplexClientWith503) {
  auto o = options();
  o.max_connections = 2;
  EchoServer server(o);
  Client a, b, c;
  a.ws.connect_async(server.url()).get();
  b.ws.connect_async(server.url()).get();
  const auto r = c.ws.connect_async(server.url()).get_result();
  ASSERT_TRUE(r.ec);
  EXPECT_EQ(duplex::get_status(r.ec), duplex::WebErrorStatus::service_unavailable);
  // After one leaves, its slot comes back (swept within about a second).
  a.ws.close_async().get();
  ASSERT_TRUE(
      duplex::test::wait_until([&] { return server.listener.connection_count() == 1; }, 3s));
  Client d;
  d.ws.connect_async(server.url()).get();
}

TEST(ListenerEcho, FreedSlotIsFoundWithoutWaitingForTheSweep) {
  auto o = options();
  o.threads = 1;  // one loop: the sweep a refused accept asks for runs before its request
  o.max_connections = 1;
  EchoServer server(o);
  Client a;
  a.ws.connect_async(server.url()).get();
  a.ws.close_async().get();
  // The periodic sweep (every second) has not run yet; the new connection
  // still gets the slot a left.
  Client b;
  const auto r = b.ws.connect_async(server.url()).get_result();
  EXPECT_FALSE(r.ec) << r.ec.message();
}

}  // namespace
