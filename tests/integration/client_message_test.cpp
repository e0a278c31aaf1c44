// MessageWebSocket against Python `websockets` (a peer we did not write), over
// real loopback sockets.
#include <gtest/gtest.h>

// GCC 12 at -O1 with ASan reports a false -Wmaybe-uninitialized inside Asio's
// use_future (asio/impl/use_future.hpp), which one test below uses.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <asio/use_future.hpp>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>

#include <duplex/message_websocket.hpp>

#include "client_test_support.hpp"

using namespace std::chrono_literals;
using duplex::MessageWebSocket;
using duplex::SocketMessageType;
using duplex::WebErrorStatus;

namespace {

std::unique_ptr<duplex::test::PeerProcess>& echo_peer() {
  static std::unique_ptr<duplex::test::PeerProcess> p;
  return p;
}

class ClientMessage : public duplex::test::PeerSuite {
protected:
  static void SetUpTestSuite() {
    start_suite([] {
      echo_peer() = std::make_unique<duplex::test::PeerProcess>(
          "ws_echo_server.py", std::vector<std::string>{"--protocol", "chat"});
    });
  }
  static void TearDownTestSuite() { echo_peer().reset(); }
  static std::string url(const std::string& path = "/") {
    return "ws://127.0.0.1:" + std::to_string(echo_peer()->port()) + path;
  }
};

struct Received {
  SocketMessageType type;
  std::vector<std::byte> data;
  bool complete;
};

/// Collects events of a socket for checks with deadlines. Declare it before the
/// socket it is attached to: the socket's handlers may run until the socket is
/// destroyed, so the inbox must outlive it.
struct Inbox {
  std::mutex m;
  std::condition_variable cv;
  std::deque<Received> messages;
  std::optional<std::pair<std::uint16_t, std::string>> closed;
  std::error_code closed_error;

  void attach(MessageWebSocket& ws) {
    ws.message_received([this](MessageWebSocket&, const auto& a) {
      std::lock_guard lock(m);
      messages.push_back(
          {a.message_type(), {a.data().begin(), a.data().end()}, a.is_message_complete()});
      cv.notify_all();
    });
    ws.closed([this](MessageWebSocket&, const duplex::WebSocketClosedEventArgs& a) {
      std::lock_guard lock(m);
      closed.emplace(a.code(), a.reason());
      closed_error = a.error();
      cv.notify_all();
    });
  }
  std::optional<Received> next(std::chrono::milliseconds t = 10s) {
    std::unique_lock lock(m);
    if (!cv.wait_for(lock, t, [&] { return !messages.empty(); })) return std::nullopt;
    auto r = std::move(messages.front());
    messages.pop_front();
    return r;
  }
  bool wait_closed(std::chrono::milliseconds t = 10s) {
    std::unique_lock lock(m);
    return cv.wait_for(lock, t, [&] { return closed.has_value(); });
  }
};

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

std::string as_string(const std::vector<std::byte>& v) {
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

}  // namespace

TEST_F(ClientMessage, EchoesBinaryOfEverySize) {
  Inbox inbox;
  MessageWebSocket ws;
  inbox.attach(ws);
  ws.connect_async(url()).get();
  for (std::size_t n : {0ul, 1ul, 125ul, 126ul, 65535ul, 65536ul, 1ul << 20, 16ul << 20}) {
    auto data = pattern(n, static_cast<unsigned>(n));
    ws.send_async(std::span<const std::byte>(data)).get();
    auto r = inbox.next(20s);
    ASSERT_TRUE(r) << "no echo of " << n << " bytes";
    EXPECT_EQ(r->type, SocketMessageType::binary);
    EXPECT_TRUE(r->complete);
    EXPECT_EQ(r->data.size(), n);
    EXPECT_TRUE(r->data == data) << "echo of " << n << " bytes differs";
  }
  ws.close_async(1000, "done").get();
  ASSERT_TRUE(inbox.wait_closed());
  EXPECT_EQ(inbox.closed->first, 1000);
  EXPECT_EQ(inbox.closed->second, "done");
  EXPECT_FALSE(inbox.closed_error);
}

TEST_F(ClientMessage, EchoesTextAndTypeMayChangeAfterConnect) {
  Inbox inbox;
  MessageWebSocket ws;
  inbox.attach(ws);
  ws.connect_async(url()).get();
  ws.control().message_type(SocketMessageType::utf8);
  std::string text = "h\xC3\xA9llo, \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x98\x80";
  ws.send_async(text).get();
  auto r = inbox.next();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, SocketMessageType::utf8);
  EXPECT_EQ(as_string(r->data), text);
  std::string big(3 << 20, 'x');
  ws.send_async(big).get();
  r = inbox.next();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->data.size(), big.size());
  ws.control().message_type(SocketMessageType::binary);
  ws.send_async("raw").get();
  r = inbox.next();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, SocketMessageType::binary);
  // Not UTF-8: refused at the call, before any I/O.
  ws.control().message_type(SocketMessageType::utf8);
  EXPECT_THROW(ws.send_async(std::string_view("\xC3\x28")), std::invalid_argument);
  ws.close();
  EXPECT_TRUE(inbox.wait_closed());
}

TEST_F(ClientMessage, SendsOneMessageInPieces) {
  Inbox inbox;
  std::uint32_t value = 0;
  bool read_past_end_throws = false;
  duplex::test::Flag read;
  MessageWebSocket ws;
  inbox.attach(ws);
  ws.connect_async(url()).get();
  ws.control().message_type(SocketMessageType::utf8);
  std::string a = "first \xE4\xB8", b = "\x96 second";  // a code point split across frames
  ws.send_nonfinal_frame_async(std::as_bytes(std::span(a))).get();
  ws.send_final_frame_async(std::as_bytes(std::span(b))).get();
  auto r = inbox.next();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, SocketMessageType::utf8);
  EXPECT_EQ(as_string(r->data), a + b);
  // A DataReader over a received binary message.
  ws.control().message_type(SocketMessageType::binary);
  ws.message_received([&](MessageWebSocket&, const auto& args) {
    auto reader = args.get_data_reader();
    reader.set_byte_order(duplex::ByteOrder::big_endian);
    value = reader.read_uint32();
    try {
      reader.read_byte();
    } catch (const std::out_of_range&) {
      read_past_end_throws = true;
    }
    read.set();
  });
  const std::byte be[] = {std::byte{0x01}, std::byte{0x02}, std::byte{0x03}, std::byte{0x04}};
  ws.send_async(std::span<const std::byte>(be)).get();
  ASSERT_TRUE(read.wait());
  EXPECT_EQ(value, 0x01020304u);
  EXPECT_TRUE(read_past_end_throws);
  ws.close();
}

TEST_F(ClientMessage, PartialReceiveDeliversPieces) {
  Inbox inbox;
  MessageWebSocket ws;
  ws.control().receive_mode(duplex::MessageWebSocketReceiveMode::partial_message);
  inbox.attach(ws);
  ws.connect_async(url()).get();
  auto data = pattern(4 << 20, 7);
  ws.send_async(std::span<const std::byte>(data)).get();
  std::vector<std::byte> got;
  int pieces = 0;
  for (;;) {
    auto r = inbox.next();
    ASSERT_TRUE(r);
    ++pieces;
    got.insert(got.end(), r->data.begin(), r->data.end());
    if (r->complete) break;
    ASSERT_LT(got.size(), data.size());
  }
  EXPECT_GT(pieces, 1);
  EXPECT_TRUE(got == data);
  ws.close();
}

TEST_F(ClientMessage, ServerCloseReportsCodeAndReason) {
  Inbox inbox;
  MessageWebSocket ws;
  inbox.attach(ws);
  ws.connect_async(url("/close")).get();
  ASSERT_TRUE(inbox.wait_closed());
  EXPECT_EQ(inbox.closed->first, 4000);
  EXPECT_EQ(inbox.closed->second, "bye");
  EXPECT_FALSE(inbox.closed_error);
  // After the close, sends fail with a code, not an exception.
  auto r = ws.send_async("late").get_result();
  EXPECT_EQ(r.ec, duplex::error::closed);
}

TEST_F(ClientMessage, RequestHeadersCredentialAndSubprotocol) {
  Inbox inbox;
  MessageWebSocket ws;
  ws.set_request_header("X-Duplex-Test", "yes");
  EXPECT_THROW(ws.set_request_header("Bad Name", "v"), std::invalid_argument);
  EXPECT_THROW(ws.set_request_header("X-Ok", "line\r\nbreak"), std::invalid_argument);
  EXPECT_THROW(ws.set_request_header("Sec-WebSocket-Key", "x"), std::invalid_argument);
  ws.control().server_credential({"user", "pa:ss"});
  ws.control().supported_protocols({"other", "chat"});
  inbox.attach(ws);
  ws.connect_async(url("/headers")).get();
  auto r = inbox.next();
  ASSERT_TRUE(r);
  auto json = as_string(r->data);
  EXPECT_NE(json.find("\"x-duplex-test\": \"yes\""), std::string::npos) << json;
  // base64("user:pa:ss")
  EXPECT_NE(json.find("Basic dXNlcjpwYTpzcw=="), std::string::npos) << json;
  EXPECT_EQ(ws.information().protocol(), "chat");
  auto local = ws.information().local_address();
  auto remote = ws.information().remote_address();
  EXPECT_EQ(local.host, "127.0.0.1");
  EXPECT_NE(local.port, 0);
  EXPECT_EQ(remote.host, "127.0.0.1");
  EXPECT_EQ(remote.port, echo_peer()->port());
  ws.send_async("ping-pong").get();
  ASSERT_TRUE(inbox.next());
  auto stats = ws.information().bandwidth_statistics();
  EXPECT_EQ(stats.messages_sent, 1u);
  EXPECT_EQ(stats.messages_received, 2u);
  EXPECT_GE(stats.frames_received, 2u);
  EXPECT_GE(stats.bytes_sent, 9u + 6u);
  EXPECT_GE(stats.bytes_received, json.size() + 9u);
  ws.close();
  EXPECT_TRUE(inbox.wait_closed());
}

TEST_F(ClientMessage, ControlsCheckValuesAndLockAfterConnect) {
  MessageWebSocket ws;
  auto c = ws.control();
  EXPECT_EQ(c.message_type(), SocketMessageType::binary);
  EXPECT_EQ(c.max_message_size(), 64u << 20);
  EXPECT_EQ(c.connect_timeout(), 60s);
  EXPECT_EQ(c.send_timeout(), 30s);
  EXPECT_EQ(c.receive_timeout(), 30s);
  EXPECT_TRUE(c.no_delay());
  EXPECT_THROW(c.supported_protocols({"a b"}), std::invalid_argument);
  EXPECT_THROW(c.supported_protocols({"a", "a"}), std::invalid_argument);
  EXPECT_THROW(c.connect_timeout(0ms), std::invalid_argument);
  EXPECT_THROW(c.outbound_buffer_size_in_bytes(0), std::invalid_argument);
  EXPECT_THROW(c.proxy("ftp://x:1"), std::invalid_argument);
  EXPECT_THROW(c.server_credential({"a:b", "c"}), std::invalid_argument);
  c.proxy("");
  c.max_message_size(duplex::MessageWebSocketControl::unlimited_message_size);
  c.outbound_buffer_size_in_bytes(1 << 16);
  c.keep_alive_interval(10s);
  c.no_delay(false);
  EXPECT_FALSE(c.no_delay());
  EXPECT_THROW(ws.connect_async("http://127.0.0.1/"), std::invalid_argument);
  EXPECT_THROW(ws.connect_async("ws://"), std::invalid_argument);
  EXPECT_THROW(ws.connect_async("ws://host/#frag"), std::invalid_argument);
  EXPECT_THROW(ws.connect_async("ws://host:99999/"), std::invalid_argument);
  ws.connect_async(url()).get();
  EXPECT_THROW(c.max_message_size(10), std::logic_error);
  EXPECT_THROW(c.no_delay(true), std::logic_error);
  EXPECT_THROW(ws.set_request_header("X-Late", "1"), std::logic_error);
  EXPECT_THROW(ws.connect_async(url()), std::logic_error);
  EXPECT_THROW(ws.close(999), std::invalid_argument);
  EXPECT_THROW(ws.close(1000, std::string(124, 'r')), std::invalid_argument);
  c.message_type(SocketMessageType::utf8);  // allowed at any time
  ws.close();
}

TEST_F(ClientMessage, MaxMessageSizeFailsWith1009) {
  Inbox inbox;
  MessageWebSocket ws;
  ws.control().max_message_size(1000);
  inbox.attach(ws);
  ws.connect_async(url()).get();
  auto data = pattern(5000, 1);
  ws.send_async(std::span<const std::byte>(data)).get();
  ASSERT_TRUE(inbox.wait_closed());
  EXPECT_EQ(inbox.closed_error, duplex::error::message_too_big);
  EXPECT_EQ(inbox.closed->first, 1009);
}

TEST_F(ClientMessage, AsioTokensCallbacksFuturesAndCoroutines) {
  asio::io_context ctx;
  Inbox inbox;
  MessageWebSocket ws(ctx);
  inbox.attach(ws);
  auto run_until = [&](auto pred) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!pred() && std::chrono::steady_clock::now() < deadline) {
      ctx.restart();
      ctx.run_for(20ms);
    }
    return pred();
  };
  std::optional<std::error_code> connect_ec;
  bool inside_call = true;
  ws.connect_async(url(), [&](std::error_code ec) {
    EXPECT_FALSE(inside_call) << "handler ran inside the initiating call";
    connect_ec = ec;
  });
  inside_call = false;
  ASSERT_TRUE(run_until([&] { return connect_ec.has_value(); }));
  ASSERT_FALSE(*connect_ec) << connect_ec->message();
#if defined(ASIO_HAS_CO_AWAIT)
  bool sent = false;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        co_await ws.send_async("coroutine", asio::use_awaitable);
        sent = true;
      },
      asio::detached);
  ASSERT_TRUE(run_until([&] {
    std::lock_guard lock(inbox.m);
    return sent && !inbox.messages.empty();
  }));
  EXPECT_EQ(as_string(inbox.messages.front().data), "coroutine");
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> { co_await ws.close_async(1000, "", asio::use_awaitable); },
      asio::detached);
  ASSERT_TRUE(run_until([&] {
    std::lock_guard lock(inbox.m);
    return inbox.closed.has_value();
  }));
#else
  // This compiler's Asio has no coroutine support: callbacks instead.
  bool sent = false;
  ws.send_async("coroutine", [&](std::error_code ec) {
    EXPECT_FALSE(ec);
    sent = true;
  });
  ASSERT_TRUE(run_until([&] {
    std::lock_guard lock(inbox.m);
    return sent && !inbox.messages.empty();
  }));
  EXPECT_EQ(as_string(inbox.messages.front().data), "coroutine");
  ws.close_async(1000, "", [](std::error_code) {});
  ASSERT_TRUE(run_until([&] {
    std::lock_guard lock(inbox.m);
    return inbox.closed.has_value();
  }));
#endif
  EXPECT_EQ(inbox.closed->first, 1000);
}

TEST_F(ClientMessage, TaskCoroutineThenAndFuture) {
  Inbox inbox;
  MessageWebSocket ws;
  inbox.attach(ws);
  auto fut = ws.connect_async(url(), asio::use_future);
  ASSERT_EQ(fut.wait_for(10s), std::future_status::ready);
  fut.get();
  duplex::test::Flag sent;
  std::error_code then_ec = duplex::error::timed_out;
  ws.send_async("then").then([&](std::error_code ec) {
    then_ec = ec;
    sent.set();
  });
  ASSERT_TRUE(sent.wait());
  EXPECT_FALSE(then_ec);
  ASSERT_TRUE(inbox.next());
  // A duplex::Task awaited in a plain C++20 coroutine.
  struct Fire {
    struct promise_type {
      Fire get_return_object() { return {}; }
      std::suspend_never initial_suspend() { return {}; }
      std::suspend_never final_suspend() noexcept { return {}; }
      void return_void() {}
      void unhandled_exception() { std::terminate(); }
    };
  };
  duplex::test::Flag done;
  std::error_code late_ec;
  [](MessageWebSocket& w, duplex::test::Flag& d, std::error_code& late) -> Fire {
    co_await w.send_async("awaited");
    co_await w.close_async();
    auto r = co_await w.send_async("after close").as_result();
    late = r.ec;
    d.set();
  }(ws, done, late_ec);
  ASSERT_TRUE(done.wait());
  EXPECT_EQ(late_ec, duplex::error::closed);
}

TEST_F(ClientMessage, HandlerMayDestroyTheSocket) {
  auto ws = std::make_unique<MessageWebSocket>();
  duplex::test::Flag destroyed;
  ws->message_received([&](MessageWebSocket&, const auto&) {
    ws.reset();
    destroyed.set();
  });
  ws->connect_async(url()).get();
  ws->send_async("bye").get();
  ASSERT_TRUE(destroyed.wait());
}

TEST_F(ClientMessage, AClosedHandlerRevokingItselfSkipsNoOtherHandler) {
  // A handler revoked while its event is being raised leaves the list as it
  // was for the rest of that event: the handlers after it all run, in order.
  MessageWebSocket ws;
  duplex::EventToken first;
  std::vector<int> ran;  // written on the loop thread before `last` is set
  duplex::test::Flag last;
  first = ws.closed([&](MessageWebSocket& s, const auto&) { s.closed(first); });
  ws.closed([&](MessageWebSocket&, const auto&) { ran.push_back(2); });
  ws.closed([&](MessageWebSocket&, const auto&) {
    ran.push_back(3);
    last.set();
  });
  ws.connect_async(url()).get();
  ws.close();
  ASSERT_TRUE(last.wait());
  EXPECT_EQ(ran, (std::vector<int>{2, 3}));
}

TEST_F(ClientMessage, AMessageHandlerRevokingItselfSkipsNoOtherHandler) {
  // The per-message list too: a handler revoking itself during a message
  // leaves the handlers after it to run for that message, and is not called
  // for the next. Its callable lives until the event is over.
  MessageWebSocket ws;
  duplex::EventToken first;
  std::vector<int> ran;  // written on the loop thread, read after `third` is set
  duplex::test::Flag second, third;
  auto held = std::make_shared<int>(1);
  std::weak_ptr<int> weak = held;
  bool alive_after_revoke = false;
  first = ws.message_received([&, held](MessageWebSocket& s, const auto&) {
    ran.push_back(1);
    s.message_received(first);
    alive_after_revoke = !weak.expired();
  });
  held.reset();
  ws.message_received([&](MessageWebSocket&, const auto&) { ran.push_back(2); });
  ws.message_received([&](MessageWebSocket&, const auto& a) {
    ran.push_back(3);
    if (a.data().size() == 2) second.set();
    if (a.data().size() == 3) third.set();
  });
  ws.connect_async(url()).get();
  ws.send_async("a").get();
  ws.send_async("bb").get();
  ASSERT_TRUE(second.wait());
  // Sent once "bb" was handled: its echo comes in a later read, after the
  // read that revoked the first handler released the event lock.
  ws.send_async("ccc").get();
  ASSERT_TRUE(third.wait());
  EXPECT_EQ(ran, (std::vector<int>{1, 2, 3, 2, 3, 2, 3}));
  EXPECT_TRUE(alive_after_revoke);
  EXPECT_TRUE(weak.expired());  // destroyed once the event that revoked it ended
}

TEST_F(ClientMessage, AHandlerRevokedByAnotherDuringAnEventIsNotCalled) {
  // Revoking a later handler during an event: it does not run for that event
  // (nor after); the others all do, and one added during the event runs too.
  MessageWebSocket ws;
  duplex::EventToken third;
  std::vector<int> ran;  // written on the loop thread, read after `done` is set
  duplex::test::Flag done;
  ws.closed([&](MessageWebSocket& s, const auto&) {
    ran.push_back(1);
    s.closed(third);
    s.closed([&](MessageWebSocket&, const auto&) {
      ran.push_back(5);
      done.set();
    });
  });
  ws.closed([&](MessageWebSocket&, const auto&) { ran.push_back(2); });
  third = ws.closed([&](MessageWebSocket&, const auto&) { ran.push_back(3); });
  ws.closed([&](MessageWebSocket&, const auto&) { ran.push_back(4); });
  ws.connect_async(url()).get();
  ws.close();
  ASSERT_TRUE(done.wait());
  EXPECT_EQ(ran, (std::vector<int>{1, 2, 4, 5}));
}

TEST_F(ClientMessage, EmptyHandlersAreRefusedNamingTheirEvent) {
  MessageWebSocket ws;
  const auto refused = [](auto&& add, const std::string& text) {
    try {
      add();
      ADD_FAILURE() << "no exception for: " << text;
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()), text);
    }
  };
  refused([&] { ws.closed(MessageWebSocket::ClosedHandler{}); },
          "closed: handler must not be empty");
  refused([&] { ws.reconnecting(MessageWebSocket::ReconnectingHandler{}); },
          "reconnecting: handler must not be empty");
  refused([&] { ws.reconnected(MessageWebSocket::ReconnectedHandler{}); },
          "reconnected: handler must not be empty");
  refused(
      [&] {
        ws.server_custom_validation_requested(
            MessageWebSocket::ServerCustomValidationRequestedHandler{});
      },
      "server_custom_validation_requested: handler must not be empty");
}

TEST_F(ClientMessage, DestroyingCompletesPendingOperationsAsAborted) {
  duplex::test::RawServer silent([](asio::ip::tcp::socket&) {});
  auto ws = std::make_unique<MessageWebSocket>();
  auto task = ws->connect_async("ws://127.0.0.1:" + std::to_string(silent.port()) + "/");
  ws.reset();
  auto r = task.get_result();
  EXPECT_EQ(r.ec, duplex::error::operation_aborted);
  EXPECT_EQ(duplex::get_status(r.ec), WebErrorStatus::operation_canceled);
}

TEST_F(ClientMessage, BlockingInAHandlerThrowsInsteadOfDeadlocking) {
  duplex::test::Flag done;
  bool send_ready = false;
  bool threw = false;
  int calls = 0;
  MessageWebSocket ws;
  ws.message_received([&](MessageWebSocket& self, const auto&) {
    if (calls++ > 0) return;  // the echo of "again"
    // A send with room completes at once on the loop: its task is ready and
    // get() does not block.
    auto sent = self.send_async("again");
    send_ready = sent.is_ready();
    sent.get();
    // A close waits for the server's answer: blocking on it here would
    // deadlock, so get() throws instead.
    try {
      self.close_async().get();
    } catch (const std::logic_error&) {
      threw = true;
    }
    done.set();
  });
  ws.connect_async(url()).get();
  ws.send_async("first").get();
  ASSERT_TRUE(done.wait());
  EXPECT_TRUE(send_ready);
  EXPECT_TRUE(threw);
}

namespace {

// SendOptions::message_type: one message of another type, the control left as
// it is; a bad type or text that is not UTF-8 throws at the call.
TEST_F(ClientMessage, PerMessageTypeOverridesTheControlForOneMessage) {
  Inbox inbox;
  MessageWebSocket ws;
  inbox.attach(ws);
  ws.control().message_type(SocketMessageType::binary);
  ws.connect_async(url()).get();
  duplex::SendOptions as_text;
  as_text.message_type = SocketMessageType::utf8;
  ws.send_async("h\xc3\xa9llo", as_text).get();
  ws.send_async("plain").get();
  auto first = inbox.next();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->type, SocketMessageType::utf8);
  auto second = inbox.next();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->type, SocketMessageType::binary);
  EXPECT_EQ(ws.control().message_type(), SocketMessageType::binary);

  duplex::SendOptions bad_type;
  bad_type.message_type = static_cast<SocketMessageType>(7);
  EXPECT_THROW(ws.send_async("x", bad_type), std::invalid_argument);
  EXPECT_THROW(ws.send_async("\xff", as_text), std::invalid_argument);
  ws.close();
  EXPECT_TRUE(inbox.wait_closed());
}

// On the loop (in a handler) the same checks hold: the send is done at once,
// and a bad argument still throws there without queuing anything.
TEST_F(ClientMessage, SendFromAHandlerChecksItsArgumentsToo) {
  duplex::test::Flag done;
  bool bad_utf8_threw = false, bad_type_threw = false, ready = false;
  int calls = 0;
  std::vector<std::string> echoes;
  std::mutex m;
  MessageWebSocket ws;
  ws.message_received([&](MessageWebSocket& self, const auto& a) {
    {
      std::lock_guard lock(m);
      echoes.emplace_back(reinterpret_cast<const char*>(a.data().data()), a.data().size());
    }
    if (calls++ > 0) return done.set();
    duplex::SendOptions as_text;
    as_text.message_type = SocketMessageType::utf8;
    try {
      (void)self.send_async("\xc3", as_text);  // a cut two-byte sequence
    } catch (const std::invalid_argument&) {
      bad_utf8_threw = true;
    }
    duplex::SendOptions bad_type;
    bad_type.message_type = static_cast<SocketMessageType>(9);
    try {
      (void)self.send_async("x", bad_type);
    } catch (const std::invalid_argument&) {
      bad_type_threw = true;
    }
    auto t = self.send_async("second", as_text);
    ready = t.is_ready() && !t.get_result().ec;
  });
  ws.connect_async(url()).get();
  ws.send_async("first").get();
  ASSERT_TRUE(done.wait());
  EXPECT_TRUE(bad_utf8_threw);
  EXPECT_TRUE(bad_type_threw);
  EXPECT_TRUE(ready);
  std::lock_guard lock(m);
  // Nothing of the rejected sends went out: the echoes are exactly these two.
  EXPECT_EQ(echoes, (std::vector<std::string>{"first", "second"}));
  ws.close();
}

// The handler's send has a short path for its own socket (that socket's event
// lock held innermost, nothing queued); these sends take the general one and
// must behave the same: a send on another socket from this handler is done at
// once too (same loop thread), and a whole message while this socket's framed
// message is unfinished throws std::logic_error without sending anything.
TEST_F(ClientMessage, HandlerSendsOnAnotherSocketAndMidMessageFollowTheGeneralPath) {
  duplex::test::Flag done, other_echo;
  bool other_ready = false, mid_message_threw = false;
  std::vector<std::string> echoes, other_echoes;
  std::mutex m;
  MessageWebSocket ws, other;
  other.message_received([&](MessageWebSocket&, const auto& a) {
    {
      std::lock_guard lock(m);
      other_echoes.emplace_back(reinterpret_cast<const char*>(a.data().data()), a.data().size());
    }
    other_echo.set();
  });
  int calls = 0;
  ws.message_received([&](MessageWebSocket& self, const auto& a) {
    {
      std::lock_guard lock(m);
      echoes.emplace_back(reinterpret_cast<const char*>(a.data().data()), a.data().size());
    }
    if (calls++ > 0) return done.set();
    auto t = other.send_async("to the other");
    other_ready = t.is_ready() && !t.get_result().ec;
    (void)self.send_nonfinal_frame_async(std::as_bytes(std::span(std::string_view("pie"))));
    try {
      (void)self.send_async("whole");
    } catch (const std::logic_error&) {
      mid_message_threw = true;
    }
    (void)self.send_final_frame_async(std::as_bytes(std::span(std::string_view("ces"))));
  });
  ws.connect_async(url()).get();
  other.connect_async(url()).get();
  ws.send_async("first").get();
  ASSERT_TRUE(done.wait());
  ASSERT_TRUE(other_echo.wait());
  EXPECT_TRUE(other_ready);
  EXPECT_TRUE(mid_message_threw);
  std::lock_guard lock(m);
  EXPECT_EQ(echoes, (std::vector<std::string>{"first", "pieces"}));
  EXPECT_EQ(other_echoes, (std::vector<std::string>{"to the other"}));
  ws.close();
  other.close();
}

// Events go to the socket object that holds the connection now: after a move
// on another thread, and after a move inside a handler (on the loop thread,
// where the new owner is recorded without the event lock).
TEST_F(ClientMessage, EventsReachTheSocketWhereverItWasMoved) {
  duplex::test::Flag done;
  std::vector<const MessageWebSocket*> seen;
  std::optional<MessageWebSocket> first, second;
  int calls = 0;
  MessageWebSocket ws;
  ws.message_received([&](MessageWebSocket& self, const auto&) {
    seen.push_back(&self);
    if (++calls == 1) {
      second.emplace(std::move(self));  // moved on the loop thread
      (void)second->send_async("two");
    } else {
      done.set();
    }
  });
  ws.connect_async(url()).get();
  first.emplace(std::move(ws));  // moved on this thread
  first->send_async("one").get();
  ASSERT_TRUE(done.wait());
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], &*first);
  EXPECT_EQ(seen[1], &*second);
  second->close();
}

// In a handler the statistics are exact: the message being handled and a send
// made just before are counted (they are published to other threads only once
// per read, so the handler's view comes from the loop's own counters).
TEST_F(ClientMessage, StatisticsInAHandlerCountThisMessageAndEarlierSends) {
  duplex::test::Flag done;
  std::vector<std::uint64_t> received, sent_before, sent_after;
  MessageWebSocket ws;
  ws.message_received([&](MessageWebSocket& self, const auto&) {
    received.push_back(self.information().bandwidth_statistics().messages_received);
    sent_before.push_back(self.information().bandwidth_statistics().messages_sent);
    if (received.size() < 3) (void)self.send_async("again");
    sent_after.push_back(self.information().bandwidth_statistics().messages_sent);
    if (received.size() == 3) done.set();
  });
  ws.connect_async(url()).get();
  ws.send_async("first").get();
  ASSERT_TRUE(done.wait());
  EXPECT_EQ(received, (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_EQ(sent_before, (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_EQ(sent_after, (std::vector<std::uint64_t>{2, 3, 3}));
  ws.close();
}

}  // namespace

namespace {

// A send with a callback from a handler is queued at once, but its handler
// still runs later (never inside the initiating call), with the result.
TEST_F(ClientMessage, CallbackSendFromAHandlerCompletesAfterTheCall) {
  duplex::test::Flag done;
  std::atomic<bool> returned{false};
  std::atomic<bool> ran_after_return{false};
  std::atomic<int> code{-1};
  int calls = 0;
  MessageWebSocket ws;
  ws.message_received([&](MessageWebSocket& self, const auto&) {
    if (calls++ > 0) return;
    self.send_async("from a handler", [&](std::error_code ec) {
      ran_after_return = returned.load();
      code = ec.value();
      done.set();
    });
    returned = true;
  });
  ws.connect_async(url()).get();
  ws.send_async("first").get();
  ASSERT_TRUE(done.wait());
  EXPECT_TRUE(ran_after_return.load());
  EXPECT_EQ(code.load(), 0);
  ws.close();
}

}  // namespace
