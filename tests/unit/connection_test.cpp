// The Connection state machine, grouped like RFC 6455's sections: framing,
// masking, pings/pongs, reserved bits, opcodes, fragmentation, UTF-8, close,
// limits, sending. Error paths are checked from the queued close frame's bytes.
#include <duplex/error.hpp>
#include <duplex/protocol/connection.hpp>

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include "protocol_test_util.hpp"

namespace duplex::protocol {
namespace {

using test::Bytes;
using test::bytes;
using test::cat;
using test::client_frame;
using test::Recorder;
using test::server_frame;

std::string err(error e) {
  return "error:" + make_error_code(e).message();
}

// A frame as the peer of a connection with role `r` sends it.
Bytes peer_frame(Role r, int b0, const Bytes& payload) {
  return r == Role::server ? client_frame(b0, payload) : server_frame(b0, payload);
}
Bytes peer_frame(Role r, int b0, std::string_view payload) {
  return peer_frame(r, b0, test::bytes(payload));
}

// Partial mode here delivers each piece as it arrives (threshold 1), so the
// tests see the pieces the wire made; the threshold has its own tests
// (ConnectionPartialThreshold).
ConnectionConfig config(Role r, bool partial = false) {
  ConnectionConfig c;
  c.role = r;
  c.partial_messages = partial;
  c.partial_message_threshold = 1;
  return c;
}

// Everything the connection queued, parsed; `ok` false on a malformed stream.
std::vector<test::WireFrame> output_frames(Connection& c, bool* ok = nullptr) {
  auto w = c.begin_write();
  Bytes b(w.begin(), w.end());
  c.end_write();
  return test::parse_frames(b, ok);
}

// The close code of the last queued frame (-1 when it is not a close frame).
int queued_close_code(Connection& c) {
  auto frames = output_frames(c);
  if (frames.empty()) return -1;
  return test::close_code_of(frames.back());
}

struct Fixture {
  explicit Fixture(Role r, bool partial = false) : conn(config(r, partial)) {}
  explicit Fixture(ConnectionConfig cfg) : conn(cfg) {}
  void feed(Bytes b) {
    inputs.push_back(std::move(b));
    conn.receive(inputs.back(), rec);
  }
  Connection conn;
  Recorder rec;
  std::vector<Bytes> inputs;
};

// ================================ Framing (5.2, 5.7) =================================

TEST(ConnectionFraming, ServerReceivesRfcMaskedHello) {
  Fixture f(Role::server);
  f.feed(bytes({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{"text:Hello"});
  EXPECT_FALSE(f.conn.has_output());
  EXPECT_EQ(f.conn.state(), ConnectionState::open);
}

TEST(ConnectionFraming, ClientReceivesRfcUnmaskedHello) {
  Fixture f(Role::client);
  f.feed(bytes({0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{"text:Hello"});
}

TEST(ConnectionFraming, ClientReceivesRfcFragmentedHello) {
  Fixture f(Role::client);
  f.feed(bytes({0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f}));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{"text:Hello"});
}

TEST(ConnectionFraming, PartialModeDeliversRfcFragmentsAsPieces) {
  Fixture f(Role::client, true);
  f.feed(bytes({0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f}));
  EXPECT_EQ(f.rec.events, (std::vector<std::string>{"text+:Hel", "text:lo"}));
}

TEST(ConnectionFraming, Receives256ByteBinary) {
  for (Role r : {Role::client, Role::server}) {
    Bytes payload(256);
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::byte>(i);
    Fixture f(r);
    const Bytes frame = peer_frame(r, 0x82, payload);
    EXPECT_EQ(frame[1] & std::byte{0x7F}, std::byte{0x7E});
    f.feed(frame);
    ASSERT_EQ(f.rec.events.size(), 1u);
    EXPECT_EQ(f.rec.events[0], "binary:" + test::str(payload));
  }
}

TEST(ConnectionFraming, Receives64KiBBinary) {
  for (Role r : {Role::client, Role::server}) {
    Bytes payload(65536);
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::byte>(i * 7);
    Fixture f(r);
    const Bytes frame = peer_frame(r, 0x82, payload);
    EXPECT_EQ(frame[1] & std::byte{0x7F}, std::byte{0x7F});
    f.feed(frame);
    ASSERT_EQ(f.rec.events.size(), 1u);
    EXPECT_EQ(f.rec.events[0], "binary:" + test::str(payload));
  }
}

TEST(ConnectionFraming, EmptyMessages) {
  Fixture f(Role::server);
  f.feed(cat(client_frame(0x81, {}), client_frame(0x82, {})));
  EXPECT_EQ(f.rec.events, (std::vector<std::string>{"text:", "binary:"}));
}

TEST(ConnectionFraming, ManyMessagesInOneBuffer) {
  Bytes in;
  std::vector<std::string> expect;
  for (int i = 0; i < 50; ++i) {
    const std::string m = "m" + std::to_string(i);
    in = cat(in, client_frame(i % 2 ? 0x82 : 0x81, test::bytes(m)));
    expect.push_back((i % 2 ? "binary:" : "text:") + m);
  }
  Fixture f(Role::server);
  f.feed(in);
  EXPECT_EQ(f.rec.events, expect);
  EXPECT_EQ(f.conn.stats().messages_received, 50u);
  EXPECT_EQ(f.conn.stats().frames_received, 50u);
  EXPECT_EQ(f.conn.stats().bytes_received, in.size());
}

class PointerCheck : public Recorder {
public:
  const std::byte* lo = nullptr;
  const std::byte* hi = nullptr;
  int inside = 0, outside = 0;
  void on_message(SocketMessageType t, std::span<const std::byte> d, bool c) override {
    (d.data() >= lo && d.data() + d.size() <= hi ? inside : outside)++;
    Recorder::on_message(t, d, c);
  }
};

TEST(ConnectionFraming, WholeMessageIsAViewIntoTheReceiveBuffer) {
  Connection c(config(Role::server));
  PointerCheck h;
  Bytes in = cat(client_frame(0x81, test::bytes("zero")), client_frame(0x82, test::bytes("copy")));
  h.lo = in.data();
  h.hi = in.data() + in.size();
  c.receive(in, h);
  EXPECT_EQ(h.inside, 2);
  EXPECT_EQ(h.outside, 0);
  // Unmasked in place.
  EXPECT_EQ(test::str(std::span(in).subspan(6, 4)), "zero");
}

TEST(ConnectionFraming, SplitMessageIsReassembledOutsideTheBuffer) {
  Connection c(config(Role::server));
  PointerCheck h;
  Bytes in = client_frame(0x81, test::bytes("split message"));
  Bytes a(in.begin(), in.begin() + 9), b(in.begin() + 9, in.end());
  h.lo = b.data();
  h.hi = b.data() + b.size();
  c.receive(a, h);
  c.receive(b, h);
  EXPECT_EQ(h.outside, 1);
  EXPECT_EQ(h.events, std::vector<std::string>{"text:split message"});
}

TEST(ConnectionFraming, SplitHeaderAtEveryByte) {
  const Bytes frame = client_frame(0x82, Bytes(70000, std::byte{0x5A}));
  for (std::size_t cut = 1; cut < 14; ++cut) {
    auto run = test::run_split(config(Role::server), frame, {cut});
    ASSERT_EQ(run.events.size(), 1u) << cut;
    EXPECT_EQ(run.events[0].size(), 7u + 70000u);
  }
}

TEST(ConnectionFraming, OneByteAtATime) {
  Bytes in = cat(cat(client_frame(0x01, test::bytes("He")), client_frame(0x89, test::bytes("p"))),
                 client_frame(0x80, test::bytes("llo")));
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < in.size(); ++i) cuts.push_back(i);
  auto run = test::run_split(config(Role::server), in, cuts);
  EXPECT_EQ(run.events, (std::vector<std::string>{"ping:p", "text:Hello"}));
}

TEST(ConnectionFraming, EmptyReceiveDoesNothing) {
  Fixture f(Role::server);
  f.feed({});
  EXPECT_TRUE(f.rec.events.empty());
  EXPECT_FALSE(f.conn.has_output());
}

// ================================ Masking (5.1, 5.3) =================================

TEST(ConnectionMasking, ServerRejectsUnmaskedFrame) {
  Fixture f(Role::server);
  f.feed(server_frame(0x81, test::bytes("Hello")));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::unmasked_client_frame)});
  EXPECT_EQ(f.conn.state(), ConnectionState::closed);
  bool ok = false;
  auto out = output_frames(f.conn, &ok);
  ASSERT_TRUE(ok);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].masked);
  EXPECT_EQ(test::close_code_of(out[0]), 1002);
}

TEST(ConnectionMasking, ClientRejectsMaskedFrame) {
  Fixture f(Role::client);
  f.feed(client_frame(0x81, test::bytes("Hello")));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::masked_server_frame)});
  bool ok = false;
  auto out = output_frames(f.conn, &ok);
  ASSERT_TRUE(ok);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].masked);  // RFC 6455 5.3: even the client's close is masked
  EXPECT_EQ(test::close_code_of(out[0]), 1002);
}

TEST(ConnectionMasking, ServerRejectsUnmaskedControlFrame) {
  Fixture f(Role::server);
  f.feed(server_frame(0x89, {}));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::unmasked_client_frame)});
}

TEST(ConnectionMasking, ClientSendsMaskedFramesWithFreshKeys) {
  Connection c(config(Role::client));
  std::set<std::vector<std::byte>> keys;
  for (int i = 0; i < 20; ++i)
    ASSERT_FALSE(c.send_message(SocketMessageType::binary, test::bytes("same payload")));
  auto w = c.begin_write();
  Bytes out(w.begin(), w.end());
  c.end_write();
  bool ok = false;
  auto frames = test::parse_frames(out, &ok);
  ASSERT_TRUE(ok);
  ASSERT_EQ(frames.size(), 20u);
  for (std::size_t i = 0; i < frames.size(); ++i) {
    EXPECT_TRUE(frames[i].masked);
    EXPECT_EQ(test::str(frames[i].payload), "same payload");
    const std::size_t at = i * (2 + 4 + 12) + 2;
    keys.insert(Bytes(out.begin() + static_cast<std::ptrdiff_t>(at),
                      out.begin() + static_cast<std::ptrdiff_t>(at + 4)));
  }
  // 20 keys from a CSPRNG: a repeat has probability ~2^-24.
  EXPECT_EQ(keys.size(), 20u);
}

TEST(ConnectionMasking, ClientKeysStayFreshAcrossPoolRefills) {
  Connection c(config(Role::client));
  // The pool draws 4,096 keys per thread at a time: this crosses two refills.
  constexpr std::size_t frames = 2 * 4096 + 100;
  std::set<std::vector<std::byte>> keys;
  for (std::size_t i = 0; i < frames; ++i) {
    ASSERT_FALSE(c.send_message(SocketMessageType::binary, {}));
    auto w = c.begin_write();
    ASSERT_EQ(w.size(), 6u);
    keys.insert(Bytes(w.begin() + 2, w.end()));
    c.end_write();
  }
  // Random 32-bit keys: about a 1 % chance of one repeat among 8,292, and
  // under 1e-7 of three; a pool served twice would repeat thousands.
  EXPECT_GE(keys.size(), frames - 2);
}

// The key pool's store is a thread-local object too: a client frame sent by a
// thread-local destructor that runs after it (one constructed before the
// thread's first frame) still gets fresh keys, and touches no freed memory
// (the asan preset checks that).
TEST(ConnectionMasking, FramesFromALaterThreadLocalDestructorGetFreshKeys) {
  std::vector<Bytes> keys;
  std::thread([&keys] {
    struct SendsAtExit {
      std::vector<Bytes>* out;
      ~SendsAtExit() {
        Connection c(config(Role::client));
        for (int i = 0; i < 3; ++i) {
          if (c.send_message(SocketMessageType::binary, {})) return;
          auto w = c.begin_write();
          out->emplace_back(w.begin() + 2, w.end());
          c.end_write();
        }
      }
    };
    thread_local SendsAtExit at_exit{&keys};  // before the store: destroyed after it
    Connection c(config(Role::client));
    ASSERT_FALSE(c.send_message(SocketMessageType::binary, {}));  // makes the store
  }).join();
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_NE(keys[0], keys[1]);
  EXPECT_NE(keys[1], keys[2]);
  EXPECT_NE(keys[0], keys[2]);
}

// A child of fork() does not mask with the keys its parent drew and has not
// used yet: the parent's next key and the child's first differ.
TEST(ConnectionMasking, AForkedChildDrawsItsOwnKeys) {
  const auto key_of_next_frame = [] {
    Connection c(config(Role::client));
    EXPECT_FALSE(c.send_message(SocketMessageType::binary, {}));
    auto w = c.begin_write();
    Bytes key(w.begin() + 2, w.end());
    c.end_write();
    return key;
  };
  (void)key_of_next_frame();  // this thread now holds a draw of unused keys
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    const Bytes k = key_of_next_frame();
    const bool ok = k.size() == 4 && ::write(fds[1], k.data(), 4) == 4;
    ::_exit(ok ? 0 : 1);
  }
  ::close(fds[1]);
  const Bytes parent = key_of_next_frame();
  Bytes from_child(4);
  const auto n = ::read(fds[0], from_child.data(), 4);
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_EQ(n, 4);
  EXPECT_NE(from_child, parent);
}

TEST(ConnectionMasking, ServerSendsUnmaskedFrames) {
  Connection c(config(Role::server));
  ASSERT_FALSE(c.send_message(SocketMessageType::utf8, test::bytes("Hello")));
  auto w = c.begin_write();
  EXPECT_EQ(Bytes(w.begin(), w.end()), bytes({0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}));
  c.end_write();
}

// ================================ Pings and pongs (5.5.2, 5.5.3) =====================

TEST(ConnectionPing, ServerAnswersRfcPingWithPong) {
  Fixture f(Role::server);
  f.feed(client_frame(0x89, test::bytes("Hello")));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{"ping:Hello"});
  auto w = f.conn.begin_write();
  EXPECT_EQ(Bytes(w.begin(), w.end()), bytes({0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}));
  f.conn.end_write();
}

TEST(ConnectionPing, EveryPingGetsItsPongWhileNothingIsBeingWritten) {
  // Autobahn 2.10: ten pings in one read, ten pongs, in order.
  Fixture f(Role::server);
  Bytes in;
  for (int i = 0; i < 10; ++i) in = cat(in, client_frame(0x89, test::bytes(std::to_string(i))));
  f.feed(in);
  auto out = output_frames(f.conn);
  ASSERT_EQ(out.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(out[i].payload, test::bytes(std::to_string(i)));
}

TEST(ConnectionPing, WhileAWriteIsInFlightANewerPongReplacesTheWaitingOne) {
  // RFC 6455 5.5.3: a peer that pings faster than it reads holds one pong.
  for (Role r : {Role::server, Role::client}) {
    Fixture f(r);
    ASSERT_FALSE(f.conn.send_message(SocketMessageType::binary, test::bytes("data")));
    const auto first = f.conn.begin_write();  // the write is in flight from here
    const std::size_t written = first.size();
    for (int i = 0; i < 1000; ++i)
      f.feed(peer_frame(r, 0x89, std::string(100, 'a') + std::to_string(i)));
    // One pong of 104 bytes waits, whatever the number of pings.
    EXPECT_LE(f.conn.buffered_amount(), 2u + 4u + 104u)
        << (r == Role::server ? "server" : "client");
    f.conn.end_write();
    auto out = output_frames(f.conn);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].b0, 0x8a);
    EXPECT_EQ(out[0].payload, test::bytes(std::string(100, 'a') + "999"));
    EXPECT_GT(written, 0u);
  }
}

TEST(ConnectionPing, APongBehindOtherFramesIsNotMovedAcrossThem) {
  // Only a pong that is still last in the queue is replaced: frames keep
  // their order.
  Fixture f(Role::server);
  ASSERT_FALSE(f.conn.send_message(SocketMessageType::binary, test::bytes("a")));
  (void)f.conn.begin_write();
  f.feed(client_frame(0x89, test::bytes("1")));
  ASSERT_FALSE(f.conn.send_message(SocketMessageType::utf8, test::bytes("b")));
  f.feed(client_frame(0x89, test::bytes("2")));
  f.feed(client_frame(0x89, test::bytes("3")));
  f.conn.end_write();
  auto out = output_frames(f.conn);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].payload, test::bytes("1"));
  EXPECT_EQ(out[1].payload, test::bytes("b"));
  EXPECT_EQ(out[2].payload, test::bytes("3"));
}

TEST(ConnectionPing, ClientAnswersPingWithMaskedPong) {
  Fixture f(Role::client);
  f.feed(bytes({0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}));
  auto out = output_frames(f.conn);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].b0, 0x8a);
  EXPECT_TRUE(out[0].masked);
  EXPECT_EQ(test::str(out[0].payload), "Hello");
}

TEST(ConnectionPing, EmptyAndMaximalPings) {
  Fixture f(Role::server);
  f.feed(cat(client_frame(0x89, {}), client_frame(0x89, Bytes(125, std::byte{'x'}))));
  ASSERT_EQ(f.rec.events.size(), 2u);
  auto out = output_frames(f.conn);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(out[0].payload.empty());
  EXPECT_EQ(out[1].payload.size(), 125u);
}

TEST(ConnectionPing, PingOver125BytesIsProtocolError) {
  Fixture f(Role::server);
  f.feed(client_frame(0x89, Bytes(126, std::byte{'x'})));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::control_too_long)});
  EXPECT_EQ(queued_close_code(f.conn), 1002);
}

TEST(ConnectionPing, FragmentedPingIsProtocolError) {
  Fixture f(Role::server);
  f.feed(client_frame(0x09, test::bytes("x")));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::fragmented_control)});
  EXPECT_EQ(queued_close_code(f.conn), 1002);
}

TEST(ConnectionPing, UnsolicitedPongIsDeliveredAndNotAnswered) {
  Fixture f(Role::server);
  f.feed(client_frame(0x8A, test::bytes("beat")));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{"pong:beat"});
  EXPECT_FALSE(f.conn.has_output());
}

TEST(ConnectionPing, AutoPongOffQueuesNothing) {
  ConnectionConfig cfg = config(Role::server);
  cfg.auto_pong = false;
  Fixture f(cfg);
  f.feed(client_frame(0x89, test::bytes("x")));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{"ping:x"});
  EXPECT_FALSE(f.conn.has_output());
}

TEST(ConnectionPing, PingBetweenFragmentsIsAnsweredInOrder) {
  Fixture f(Role::server);
  f.feed(cat(cat(client_frame(0x01, test::bytes("frag")), client_frame(0x89, test::bytes("p"))),
             client_frame(0x80, test::bytes("ment"))));
  EXPECT_EQ(f.rec.events, (std::vector<std::string>{"ping:p", "text:fragment"}));
  auto out = output_frames(f.conn);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].b0, 0x8A);
}

TEST(ConnectionPing, SplitPingPayloadIsReassembled) {
  const Bytes in = client_frame(0x89, test::bytes("0123456789"));
  for (std::size_t cut = 1; cut < in.size(); ++cut) {
    auto run = test::run_split(config(Role::server), in, {cut, cut + 3});
    EXPECT_EQ(run.events, std::vector<std::string>{"ping:0123456789"}) << cut;
    EXPECT_EQ(run.output, server_frame(0x8A, test::bytes("0123456789"))) << cut;
  }
}

TEST(ConnectionPing, NoPongAfterOurClose) {
  Fixture f(Role::server);
  ASSERT_FALSE(f.conn.send_close(1000, ""));
  f.conn.begin_write();
  f.conn.end_write();
  f.feed(client_frame(0x89, test::bytes("late")));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{"ping:late"});
  EXPECT_FALSE(f.conn.has_output());
}

TEST(ConnectionPing, TenPingsTenPongsInOrder) {
  Bytes in;
  for (int i = 0; i < 10; ++i) in = cat(in, client_frame(0x89, test::bytes(std::to_string(i))));
  Fixture f(Role::server);
  f.feed(in);
  auto out = output_frames(f.conn);
  ASSERT_EQ(out.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(test::str(out[i].payload), std::to_string(i));
}

// ================================ Reserved bits (5.2) ================================

class ReservedBits : public ::testing::TestWithParam<std::tuple<Role, int, int>> {};

TEST_P(ReservedBits, FailWith1002) {
  auto [role, bits, op] = GetParam();
  Fixture f(role);
  // A valid message first: it is delivered before the failure.
  f.feed(cat(peer_frame(role, 0x81, "ok"), peer_frame(role, 0x80 | bits | op, "x")));
  EXPECT_EQ(f.rec.events, (std::vector<std::string>{"text:ok", err(error::reserved_bits)}));
  EXPECT_EQ(queued_close_code(f.conn), 1002);
  EXPECT_EQ(f.conn.state(), ConnectionState::closed);
}

INSTANTIATE_TEST_SUITE_P(Rsv, ReservedBits,
                         ::testing::Combine(::testing::Values(Role::client, Role::server),
                                            ::testing::Values(0x40, 0x20, 0x10, 0x70),
                                            ::testing::Values(0x1, 0x2, 0x9, 0xA)));

TEST(ConnectionReservedBits, Rsv1AllowedMarksMessageCompressed) {
  ConnectionConfig cfg = config(Role::server);
  cfg.rsv1_allowed = true;
  Connection c(cfg);
  struct H : Recorder {
    Connection* c = nullptr;
    std::vector<bool> compressed;
    void on_message(SocketMessageType t, std::span<const std::byte> d, bool done) override {
      compressed.push_back(c->message_compressed());
      Recorder::on_message(t, d, done);
    }
  } h;
  h.c = &c;
  // Not UTF-8: a compressed payload is checked after inflating, not here.
  Bytes in = cat(client_frame(0xC1, bytes({0xFF, 0x00})), client_frame(0x81, test::bytes("a")));
  c.receive(in, h);
  ASSERT_EQ(h.events.size(), 2u);
  EXPECT_EQ(h.compressed, (std::vector<bool>{true, false}));
}

TEST(ConnectionReservedBits, Rsv1AllowedOnlyOnFirstDataFrame) {
  ConnectionConfig cfg = config(Role::server);
  cfg.rsv1_allowed = true;
  auto run = test::run_whole(
      cfg, cat(client_frame(0x41, test::bytes("a")), client_frame(0xC0, test::bytes("b"))));
  EXPECT_EQ(run.events, std::vector<std::string>{err(error::reserved_bits)});
  run = test::run_whole(cfg, client_frame(0xC9, {}));
  EXPECT_EQ(run.events, std::vector<std::string>{err(error::reserved_bits)});
  run = test::run_whole(cfg, client_frame(0xA1, {}));
  EXPECT_EQ(run.events, std::vector<std::string>{err(error::reserved_bits)});
}

// ================================ Opcodes (5.2) ======================================

class ReservedOpcode : public ::testing::TestWithParam<std::tuple<Role, int>> {};

TEST_P(ReservedOpcode, FailsWith1002AfterEarlierMessages) {
  auto [role, op] = GetParam();
  Fixture f(role);
  f.feed(cat(peer_frame(role, 0x82, "before"), peer_frame(role, 0x80 | op, "payload")));
  EXPECT_EQ(f.rec.events, (std::vector<std::string>{"binary:before", err(error::reserved_opcode)}));
  EXPECT_EQ(queued_close_code(f.conn), 1002);
}

INSTANTIATE_TEST_SUITE_P(Opcodes, ReservedOpcode,
                         ::testing::Combine(::testing::Values(Role::client, Role::server),
                                            ::testing::Values(3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE,
                                                              0xF)));

TEST(ConnectionOpcode, ReservedOpcodeFailsOnItsFirstByte) {
  Fixture f(Role::server);
  f.feed(bytes({0x83}));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::reserved_opcode)});
}

// ================================ Fragmentation (5.4) ================================

TEST(ConnectionFragmentation, ContinuationWithoutStartIsProtocolError) {
  Fixture f(Role::server);
  f.feed(client_frame(0x80, test::bytes("x")));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::unexpected_continuation)});
  EXPECT_EQ(queued_close_code(f.conn), 1002);
}

TEST(ConnectionFragmentation, ContinuationAfterFinishedMessageIsProtocolError) {
  Fixture f(Role::server);
  f.feed(cat(client_frame(0x81, test::bytes("done")), client_frame(0x00, test::bytes("x"))));
  EXPECT_EQ(f.rec.events,
            (std::vector<std::string>{"text:done", err(error::unexpected_continuation)}));
}

TEST(ConnectionFragmentation, NewMessageInsideFragmentedOneIsProtocolError) {
  for (int op : {0x01, 0x02, 0x81, 0x82}) {
    Fixture f(Role::server);
    f.feed(cat(client_frame(0x01, test::bytes("a")), client_frame(op, test::bytes("b"))));
    EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::expected_continuation)}) << op;
    EXPECT_EQ(queued_close_code(f.conn), 1002);
  }
}

TEST(ConnectionFragmentation, ManyFragmentsIncludingEmptyOnes) {
  Bytes in = client_frame(0x02, {});
  std::string expect;
  for (int i = 0; i < 30; ++i) {
    const std::string piece = i % 3 ? std::to_string(i) : "";
    expect += piece;
    in = cat(in, client_frame(0x00, test::bytes(piece)));
  }
  in = cat(in, client_frame(0x80, {}));
  Fixture f(Role::server);
  f.feed(in);
  EXPECT_EQ(f.rec.events, std::vector<std::string>{"binary:" + expect});
  EXPECT_EQ(f.conn.stats().messages_received, 1u);
  EXPECT_EQ(f.conn.stats().frames_received, 32u);
}

TEST(ConnectionFragmentation, PartialModeSkipsEmptyNonFinalPieces) {
  Fixture f(Role::server, true);
  f.feed(cat(cat(client_frame(0x01, {}), client_frame(0x00, test::bytes("ab"))),
             client_frame(0x80, {})));
  EXPECT_EQ(f.rec.events, (std::vector<std::string>{"text+:ab", "text:"}));
}

TEST(ConnectionFragmentation, PartialModeDeliversPiecesAsTheyArrive) {
  Fixture f(Role::server, true);
  const Bytes frame = client_frame(0x82, test::bytes("abcdefghij"));
  f.feed(Bytes(frame.begin(), frame.begin() + 9));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{"binary+:abc"});
  f.feed(Bytes(frame.begin() + 9, frame.begin() + 12));
  f.feed(Bytes(frame.begin() + 12, frame.end()));
  EXPECT_EQ(f.rec.events, (std::vector<std::string>{"binary+:abc", "binary+:def", "binary:ghij"}));
}

TEST(ConnectionFragmentation, ControlFramesBetweenFragments) {
  Fixture f(Role::client);
  f.feed(cat(cat(cat(server_frame(0x01, test::bytes("a")), server_frame(0x8A, test::bytes("p"))),
                 cat(server_frame(0x00, test::bytes("b")), server_frame(0x89, {}))),
             server_frame(0x80, test::bytes("c"))));
  EXPECT_EQ(f.rec.events, (std::vector<std::string>{"pong:p", "ping:", "text:abc"}));
}

TEST(ConnectionFragmentation, CloseBetweenFragmentsDropsTheUnfinishedMessage) {
  Fixture f(Role::client);
  f.feed(cat(cat(server_frame(0x01, test::bytes("a")), server_frame(0x88, bytes({0x03, 0xE8}))),
             server_frame(0x80, test::bytes("b"))));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{"close:1000:"});
}

// ================================ UTF-8 (5.6, 8.1) ===================================

TEST(ConnectionUtf8, InvalidTextFailsWith1007) {
  Fixture f(Role::server);
  f.feed(
      cat(client_frame(0x81, test::bytes("fine")), client_frame(0x81, bytes({0xCE, 0xBA, 0xFF}))));
  EXPECT_EQ(f.rec.events, (std::vector<std::string>{"text:fine", err(error::invalid_utf8)}));
  EXPECT_EQ(queued_close_code(f.conn), 1007);
}

// The client's small-frame path checks unmasked text without unmasking it:
// a non-ASCII byte at any place of every length up to 40 (the 16-byte, 8-byte
// and single-byte steps) is seen, and valid UTF-8 there passes.
TEST(ConnectionUtf8, ClientChecksSmallUnmaskedTextAtEveryLengthAndPlace) {
  for (std::size_t len = 2; len <= 40; ++len) {
    for (std::size_t at = 0; at + 1 < len; ++at) {
      Bytes bad(len, std::byte{'a'});
      bad[at] = std::byte{0xFF};
      Fixture f(Role::client);
      f.feed(server_frame(0x81, bad));
      ASSERT_EQ(f.rec.events, std::vector<std::string>{err(error::invalid_utf8)})
          << "length " << len << ", 0xFF at " << at;
      Bytes good(len, std::byte{'a'});
      good[at] = std::byte{0xC3};
      good[at + 1] = std::byte{0xA9};
      Fixture g(Role::client);
      g.feed(server_frame(0x81, good));
      ASSERT_EQ(g.rec.events.size(), 1u) << "length " << len << ", U+00E9 at " << at;
      EXPECT_EQ(g.rec.events[0].rfind("text:", 0), 0u);
    }
  }
}

TEST(ConnectionUtf8, TruncatedAtMessageEndFailsWith1007) {
  Fixture f(Role::server);
  f.feed(client_frame(0x81, bytes({'a', 0xE2, 0x82})));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::invalid_utf8)});
  EXPECT_EQ(queued_close_code(f.conn), 1007);
}

TEST(ConnectionUtf8, CodePointSplitAcrossFragmentsIsValid) {
  Fixture f(Role::server);
  f.feed(cat(cat(client_frame(0x01, bytes({'x', 0xF0, 0x9F})), client_frame(0x00, bytes({0x98}))),
             client_frame(0x80, bytes({0x80, 'y'}))));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{"text:x\xf0\x9f\x98\x80y"});
}

TEST(ConnectionUtf8, FailsFastMidFragmentBeforeTheFrameEnds) {
  // Header of a 100-byte text frame, then only 6 payload bytes, the 4th invalid.
  Bytes frame = client_frame(0x81, cat(bytes({'a', 'b', 'c', 0xC0}), Bytes(96, std::byte{'z'})));
  Fixture f(Role::server);
  f.feed(Bytes(frame.begin(), frame.begin() + 6 + 6));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::invalid_utf8)});
  EXPECT_EQ(queued_close_code(f.conn), 1007);
}

TEST(ConnectionUtf8, FailsFastInLaterFragmentInPartialMode) {
  Fixture f(Role::server, true);
  f.feed(client_frame(0x01, test::bytes("good ")));
  Bytes second = client_frame(0x00, cat(bytes({0xED, 0xA0}), Bytes(50, std::byte{'z'})));
  f.feed(Bytes(second.begin(), second.begin() + 6 + 2));
  EXPECT_EQ(f.rec.events, (std::vector<std::string>{"text+:good ", err(error::invalid_utf8)}));
}

TEST(ConnectionUtf8, BinaryIsNotChecked) {
  Fixture f(Role::server);
  f.feed(client_frame(0x82, bytes({0xFF, 0xC0, 0xED, 0xA0, 0x80})));
  ASSERT_EQ(f.rec.events.size(), 1u);
  EXPECT_EQ(f.rec.events[0].substr(0, 7), "binary:");
}

TEST(ConnectionUtf8, ValidatorResetsBetweenMessages) {
  Fixture f(Role::server);
  // A message ending mid-sequence fails; a fresh connection shows two
  // complete messages do not leak state into each other.
  f.feed(
      cat(client_frame(0x81, bytes({0xC3, 0xA9})), client_frame(0x81, bytes({0xE2, 0x82, 0xAC}))));
  EXPECT_EQ(f.rec.events, (std::vector<std::string>{"text:\xc3\xa9", "text:\xe2\x82\xac"}));
}

TEST(ConnectionUtf8, CloseReasonInvalidUtf8Fails1007) {
  Fixture f(Role::server);
  f.feed(client_frame(0x88, bytes({0x03, 0xE8, 0xFF})));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::invalid_utf8)});
  EXPECT_EQ(queued_close_code(f.conn), 1007);
}

// ================================ Close (5.5.1, 7) ===================================

TEST(ConnectionClose, PeerCloseIsEchoedWithItsCodeAndReason) {
  Fixture f(Role::server);
  f.feed(client_frame(0x88, cat(bytes({0x03, 0xE8}), test::bytes("bye"))));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{"close:1000:bye"});
  EXPECT_TRUE(f.conn.close_received());
  EXPECT_TRUE(f.conn.close_sent());
  EXPECT_EQ(f.conn.state(), ConnectionState::closed);
  auto w = f.conn.begin_write();
  EXPECT_EQ(Bytes(w.begin(), w.end()), bytes({0x88, 0x05, 0x03, 0xE8, 'b', 'y', 'e'}));
  f.conn.end_write();
}

TEST(ConnectionClose, ApplicationCodeIsEchoed) {
  Fixture f(Role::client);
  f.feed(server_frame(0x88, bytes({0x0F, 0xA0})));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{"close:4000:"});
  auto out = output_frames(f.conn);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].masked);
  EXPECT_EQ(test::close_code_of(out[0]), 4000);
}

TEST(ConnectionClose, EmptyCloseGives1005AndEmptyEcho) {
  Fixture f(Role::server);
  f.feed(client_frame(0x88, {}));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{"close:1005:"});
  auto w = f.conn.begin_write();
  EXPECT_EQ(Bytes(w.begin(), w.end()), bytes({0x88, 0x00}));
  f.conn.end_write();
}

TEST(ConnectionClose, OneBytePayloadIsProtocolError) {
  Fixture f(Role::server);
  f.feed(client_frame(0x88, bytes({0x03})));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::invalid_close_payload)});
  EXPECT_EQ(queued_close_code(f.conn), 1002);
}

class InvalidCloseCode : public ::testing::TestWithParam<int> {};
TEST_P(InvalidCloseCode, IsProtocolError) {
  const int code = GetParam();
  Fixture f(Role::server);
  f.feed(client_frame(0x88, bytes({code >> 8, code & 0xFF})));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::invalid_close_code)});
  EXPECT_EQ(queued_close_code(f.conn), 1002);
}
INSTANTIATE_TEST_SUITE_P(Codes, InvalidCloseCode,
                         ::testing::Values(0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999,
                                           5000, 65535));

class ValidCloseCode : public ::testing::TestWithParam<int> {};
TEST_P(ValidCloseCode, IsEchoed) {
  const int code = GetParam();
  Fixture f(Role::server);
  f.feed(client_frame(0x88, bytes({code >> 8, code & 0xFF})));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{"close:" + std::to_string(code) + ":"});
  EXPECT_EQ(queued_close_code(f.conn), code);
}
INSTANTIATE_TEST_SUITE_P(Codes, ValidCloseCode,
                         ::testing::Values(1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                           1012, 1013, 1014, 3000, 3999, 4000, 4999));

TEST(ConnectionClose, NothingIsDeliveredAfterPeerClose) {
  Fixture f(Role::server);
  f.feed(cat(cat(client_frame(0x81, test::bytes("before")), client_frame(0x88, {})),
             cat(client_frame(0x81, test::bytes("after")), client_frame(0x89, {}))));
  f.feed(client_frame(0x81, test::bytes("later")));
  EXPECT_EQ(f.rec.events, (std::vector<std::string>{"text:before", "close:1005:"}));
  auto out = output_frames(f.conn);
  ASSERT_EQ(out.size(), 1u);  // the echo; no pong for the ping after the close
}

TEST(ConnectionClose, OurCloseThenPeerCloseIsNotEchoed) {
  Fixture f(Role::server);
  ASSERT_FALSE(f.conn.send_close(1001, "going"));
  EXPECT_EQ(f.conn.state(), ConnectionState::closing);
  auto out = output_frames(f.conn);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].payload, cat(bytes({0x03, 0xE9}), test::bytes("going")));
  // Data the peer sent before seeing our close is still delivered.
  f.feed(
      cat(client_frame(0x81, test::bytes("in flight")), client_frame(0x88, bytes({0x03, 0xE9}))));
  EXPECT_EQ(f.rec.events, (std::vector<std::string>{"text:in flight", "close:1001:"}));
  EXPECT_EQ(f.conn.state(), ConnectionState::closed);
  EXPECT_FALSE(f.conn.has_output());
}

TEST(ConnectionClose, SendingAfterCloseFails) {
  Connection c(config(Role::client));
  ASSERT_FALSE(c.send_close(1000, ""));
  EXPECT_EQ(c.send_message(SocketMessageType::utf8, test::bytes("x")), error::closed);
  EXPECT_EQ(c.send_fragment(SocketMessageType::binary, {}, true), error::closed);
  EXPECT_EQ(c.send_ping({}), error::closed);
  EXPECT_EQ(c.send_pong({}), error::closed);
  EXPECT_EQ(c.send_close(1000, ""), error::closed);
}

TEST(ConnectionClose, SendCloseAfterPeerCloseDoesNothing) {
  Fixture f(Role::server);
  f.feed(client_frame(0x88, bytes({0x03, 0xE8})));
  f.conn.begin_write();
  f.conn.end_write();
  EXPECT_FALSE(f.conn.send_close(1000, ""));
  EXPECT_FALSE(f.conn.has_output());
}

TEST(ConnectionClose, SendCloseChecksArguments) {
  Connection c(config(Role::server));
  EXPECT_EQ(c.send_close(1006, ""), std::errc::invalid_argument);
  EXPECT_EQ(c.send_close(1000, std::string(124, 'a')), std::errc::invalid_argument);
  EXPECT_EQ(c.send_close(1000, "\xff"), std::errc::invalid_argument);
  EXPECT_FALSE(c.has_output());
  EXPECT_EQ(c.state(), ConnectionState::open);
  EXPECT_FALSE(c.send_close(1005, ""));
  auto w = c.begin_write();
  EXPECT_EQ(Bytes(w.begin(), w.end()), bytes({0x88, 0x00}));
  c.end_write();
}

TEST(ConnectionClose, PongsForEarlierPingsLeaveBeforeTheErrorClose) {
  Fixture f(Role::server);
  f.feed(cat(cat(client_frame(0x89, test::bytes("1")), client_frame(0x81, test::bytes("m"))),
             client_frame(0x83, {})));
  EXPECT_EQ(f.rec.events,
            (std::vector<std::string>{"ping:1", "text:m", err(error::reserved_opcode)}));
  auto out = output_frames(f.conn);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].b0, 0x8A);
  EXPECT_EQ(test::close_code_of(out[1]), 1002);
}

TEST(ConnectionClose, ErrorAfterOurCloseQueuesNoSecondClose) {
  Fixture f(Role::server);
  ASSERT_FALSE(f.conn.send_close(1000, ""));
  f.conn.begin_write();
  f.conn.end_write();
  f.feed(client_frame(0x83, {}));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::reserved_opcode)});
  EXPECT_FALSE(f.conn.has_output());
  EXPECT_EQ(f.conn.state(), ConnectionState::closed);
}

TEST(ConnectionClose, NothingIsDeliveredAfterAnError) {
  Fixture f(Role::server);
  f.feed(cat(client_frame(0x83, {}), client_frame(0x81, test::bytes("x"))));
  f.feed(client_frame(0x81, test::bytes("y")));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::reserved_opcode)});
  EXPECT_EQ(output_frames(f.conn).size(), 1u);
}

// ================================ Limits ==============================================

TEST(ConnectionLimits, MessageTooBigFailsAsSoonAsTheLengthIsKnown) {
  ConnectionConfig cfg = config(Role::server);
  cfg.max_message_size = 1000;
  Fixture f(cfg);
  // Only the 4 header bytes of a 1001-byte frame: no payload needed to decide.
  f.feed(bytes({0x82, 0xFE, 0x03, 0xE9}));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::message_too_big)});
  EXPECT_EQ(queued_close_code(f.conn), 1009);
}

TEST(ConnectionLimits, ExactlyTheMaximumIsAccepted) {
  ConnectionConfig cfg = config(Role::server);
  cfg.max_message_size = 1000;
  Fixture f(cfg);
  f.feed(client_frame(0x82, Bytes(1000, std::byte{1})));
  ASSERT_EQ(f.rec.events.size(), 1u);
  EXPECT_EQ(f.rec.events[0].size(), 7u + 1000u);
}

TEST(ConnectionLimits, FragmentsAddUpToTooBig) {
  ConnectionConfig cfg = config(Role::server);
  cfg.max_message_size = 10;
  Fixture f(cfg);
  f.feed(cat(
      cat(client_frame(0x01, test::bytes("12345")), client_frame(0x89, Bytes(20, std::byte{'p'}))),
      cat(client_frame(0x00, test::bytes("12345")), client_frame(0x80, test::bytes("1")))));
  ASSERT_EQ(f.rec.events.size(), 2u);
  EXPECT_EQ(f.rec.events[1], err(error::message_too_big));
  EXPECT_EQ(queued_close_code(f.conn), 1009);
}

TEST(ConnectionLimits, PartialModeEnforcesTheLimitToo) {
  ConnectionConfig cfg = config(Role::server, true);
  cfg.max_message_size = 4;
  Fixture f(cfg);
  f.feed(client_frame(0x82, test::bytes("12345")));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::message_too_big)});
}

TEST(ConnectionLimits, UnlimitedAcceptsHugeDeclaredLength) {
  ConnectionConfig cfg = config(Role::client, true);
  cfg.max_message_size = ConnectionConfig::unlimited;
  Fixture f(cfg);
  f.feed(bytes({0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 'a'}));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{"binary+:a"});
}

TEST(ConnectionLimits, LengthTopBitIsProtocolError) {
  ConnectionConfig cfg = config(Role::client);
  cfg.max_message_size = ConnectionConfig::unlimited;
  Fixture f(cfg);
  f.feed(bytes({0x82, 0x7F, 0x80}));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::length_top_bit)});
  EXPECT_EQ(queued_close_code(f.conn), 1002);
}

TEST(ConnectionLimits, NonMinimalLengthIsProtocolError) {
  for (const Bytes& in :
       {bytes({0x82, 0x7E, 0x00, 0x05}), bytes({0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0x01, 0})}) {
    Fixture f(Role::client);
    f.feed(in);
    EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::non_minimal_length)});
    EXPECT_EQ(queued_close_code(f.conn), 1002);
  }
}

TEST(ConnectionLimits, DefaultLimitIs64MiB) {
  Fixture f(Role::client);
  EXPECT_EQ(f.conn.config().max_message_size, std::uint64_t{64} << 20);
  f.feed(bytes({0x82, 0x7F, 0, 0, 0, 0, 0x04, 0, 0, 1}));
  EXPECT_EQ(f.rec.events, std::vector<std::string>{err(error::message_too_big)});
}

// ================================ Sending =============================================

TEST(ConnectionSend, ServerFragmentsAreRfcBytes) {
  Connection c(config(Role::server));
  ASSERT_FALSE(c.send_fragment(SocketMessageType::utf8, test::bytes("Hel"), false));
  ASSERT_FALSE(c.send_fragment(SocketMessageType::utf8, test::bytes("lo"), true));
  auto w = c.begin_write();
  EXPECT_EQ(Bytes(w.begin(), w.end()),
            bytes({0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f}));
  c.end_write();
  EXPECT_EQ(c.stats().messages_sent, 1u);
  EXPECT_EQ(c.stats().frames_sent, 2u);
}

TEST(ConnectionSend, LengthEncodings) {
  for (std::size_t n : {0u, 125u, 126u, 256u, 65535u, 65536u, 100000u}) {
    Connection c(config(Role::server));
    ASSERT_FALSE(c.send_message(SocketMessageType::binary, Bytes(n, std::byte{9})));
    bool ok = false;
    auto w = c.begin_write();
    Bytes out(w.begin(), w.end());
    c.end_write();
    auto frames = test::parse_frames(out, &ok);
    ASSERT_TRUE(ok) << n;
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(frames[0].payload.size(), n);
    EXPECT_EQ(out.size(), n + (n <= 125 ? 2 : n <= 65535 ? 4 : 10));
  }
}

TEST(ConnectionSend, Rfc256And64KiBHeaders) {
  Connection c(config(Role::server));
  ASSERT_FALSE(c.send_message(SocketMessageType::binary, Bytes(256)));
  auto w = c.begin_write();
  EXPECT_EQ(Bytes(w.begin(), w.begin() + 4), bytes({0x82, 0x7E, 0x01, 0x00}));
  c.end_write();
  ASSERT_FALSE(c.send_message(SocketMessageType::binary, Bytes(65536)));
  w = c.begin_write();
  EXPECT_EQ(Bytes(w.begin(), w.begin() + 10), bytes({0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0}));
  c.end_write();
}

TEST(ConnectionSend, InvalidUtf8IsRefusedAndNothingQueued) {
  Connection c(config(Role::client));
  EXPECT_EQ(c.send_message(SocketMessageType::utf8, bytes({0xC0, 0x80})), error::invalid_utf8);
  EXPECT_EQ(c.send_message(SocketMessageType::utf8, bytes({0xE2, 0x82})), error::invalid_utf8);
  EXPECT_FALSE(c.has_output());
  EXPECT_FALSE(c.send_message(SocketMessageType::binary, bytes({0xC0, 0x80})));
}

TEST(ConnectionSend, Utf8IsCheckedAcrossFragments) {
  Connection c(config(Role::server));
  ASSERT_FALSE(c.send_fragment(SocketMessageType::utf8, bytes({'a', 0xE2}), false));
  ASSERT_FALSE(c.send_fragment(SocketMessageType::utf8, bytes({0x82}), false));
  // A bad piece is refused and the checker keeps its state: a good retry works.
  EXPECT_EQ(c.send_fragment(SocketMessageType::utf8, bytes({'x'}), false), error::invalid_utf8);
  EXPECT_EQ(c.send_fragment(SocketMessageType::utf8, {}, true), error::invalid_utf8);
  ASSERT_FALSE(c.send_fragment(SocketMessageType::utf8, bytes({0xAC}), true));
  auto frames = output_frames(c);
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].b0, 0x01);
  EXPECT_EQ(frames[1].b0, 0x00);
  EXPECT_EQ(frames[2].b0, 0x80);
}

TEST(ConnectionSend, NewMessageDuringFragmentedSendIsRefused) {
  Connection c(config(Role::server));
  ASSERT_FALSE(c.send_fragment(SocketMessageType::binary, test::bytes("a"), false));
  EXPECT_EQ(c.send_message(SocketMessageType::binary, test::bytes("b")),
            error::expected_continuation);
  // Control frames may go between fragments.
  EXPECT_FALSE(c.send_ping(test::bytes("p")));
  EXPECT_FALSE(c.send_fragment(SocketMessageType::binary, test::bytes("c"), true));
  EXPECT_FALSE(c.send_message(SocketMessageType::binary, test::bytes("d")));
  auto frames = output_frames(c);
  ASSERT_EQ(frames.size(), 4u);
  EXPECT_EQ(frames[0].b0, 0x02);
  EXPECT_EQ(frames[1].b0, 0x89);
  EXPECT_EQ(frames[2].b0, 0x80);
  EXPECT_EQ(frames[3].b0, 0x82);
}

TEST(ConnectionSend, ControlPayloadOver125IsRefused) {
  Connection c(config(Role::server));
  EXPECT_EQ(c.send_ping(Bytes(126)), error::control_too_long);
  EXPECT_EQ(c.send_pong(Bytes(126)), error::control_too_long);
  EXPECT_FALSE(c.has_output());
  EXPECT_FALSE(c.send_ping(Bytes(125)));
  EXPECT_FALSE(c.send_pong(Bytes(125)));
}

TEST(ConnectionSend, CompressedMessageNeedsRsv1Allowed) {
  Connection plain(config(Role::server));
  EXPECT_EQ(plain.send_compressed_message(SocketMessageType::utf8, bytes({1})),
            error::reserved_bits);
  ConnectionConfig cfg = config(Role::server);
  cfg.rsv1_allowed = true;
  Connection c(cfg);
  ASSERT_FALSE(c.send_compressed_message(SocketMessageType::utf8, bytes({0xFF})));
  auto w = c.begin_write();
  EXPECT_EQ(Bytes(w.begin(), w.end()), bytes({0xC1, 0x01, 0xFF}));
  c.end_write();
}

TEST(ConnectionSend, DoubleBufferKeepsHandedOutBytesStable) {
  Connection c(config(Role::server));
  ASSERT_FALSE(c.send_message(SocketMessageType::utf8, test::bytes("first")));
  auto w = c.begin_write();
  const Bytes snapshot(w.begin(), w.end());
  ASSERT_FALSE(c.send_message(SocketMessageType::utf8, Bytes(5000, std::byte{'x'})));
  EXPECT_EQ(Bytes(w.begin(), w.end()), snapshot);
  EXPECT_EQ(c.buffered_amount(), 5004u);
  // A second begin_write during the write returns the same bytes.
  auto again = c.begin_write();
  EXPECT_EQ(again.data(), w.data());
  c.end_write();
  auto next = c.begin_write();
  EXPECT_EQ(next.size(), 5004u);
  c.end_write();
  EXPECT_FALSE(c.has_output());
  EXPECT_TRUE(c.begin_write().empty());
}

TEST(ConnectionSend, SteadyStateReusesTheTwoBuffers) {
  Connection c(config(Role::server));
  std::set<const std::byte*> seen;
  for (int i = 0; i < 100; ++i) {
    ASSERT_FALSE(c.send_message(SocketMessageType::binary, Bytes(100)));
    auto w = c.begin_write();
    if (i >= 2) seen.insert(w.data());
    c.end_write();
  }
  EXPECT_LE(seen.size(), 2u);
}

TEST(ConnectionSend, StatsCountWireBytes) {
  Connection c(config(Role::client));
  ASSERT_FALSE(c.send_message(SocketMessageType::binary, Bytes(10)));
  ASSERT_FALSE(c.send_ping({}));
  EXPECT_EQ(c.stats().bytes_sent, (2u + 4u + 10u) + (2u + 4u));
  EXPECT_EQ(c.stats().frames_sent, 2u);
  EXPECT_EQ(c.stats().messages_sent, 1u);
  EXPECT_EQ(c.buffered_amount(), c.stats().bytes_sent);
}

TEST(ConnectionSend, EchoFromInsideTheHandler) {
  Connection server(config(Role::server));
  Recorder r;
  r.echo_to = &server;
  Bytes in = cat(client_frame(0x81, test::bytes("one")), client_frame(0x82, test::bytes("two")));
  server.receive(in, r);
  auto w = server.begin_write();
  EXPECT_EQ(Bytes(w.begin(), w.end()),
            cat(server_frame(0x81, test::bytes("one")), server_frame(0x82, test::bytes("two"))));
  server.end_write();
}

TEST(ConnectionSend, ClientToServerRoundTrip) {
  Connection client(config(Role::client)), server(config(Role::server));
  ASSERT_FALSE(client.send_message(SocketMessageType::utf8, test::bytes("h\xc3\xa9llo")));
  ASSERT_FALSE(client.send_fragment(SocketMessageType::binary, test::bytes("ab"), false));
  ASSERT_FALSE(client.send_ping(test::bytes("?")));
  ASSERT_FALSE(client.send_fragment(SocketMessageType::binary, test::bytes("cd"), true));
  ASSERT_FALSE(client.send_close(1000, "done"));
  auto w = client.begin_write();
  Bytes wire(w.begin(), w.end());
  client.end_write();
  Recorder r;
  server.receive(wire, r);
  EXPECT_EQ(r.events, (std::vector<std::string>{"text:h\xc3\xa9llo", "ping:?", "binary:abcd",
                                                "close:1000:done"}));
  // The server's answers go back to the client.
  auto sw = server.begin_write();
  Bytes back(sw.begin(), sw.end());
  server.end_write();
  Recorder cr;
  client.receive(back, cr);
  EXPECT_EQ(cr.events, (std::vector<std::string>{"pong:?", "close:1000:done"}));
  EXPECT_EQ(client.state(), ConnectionState::closed);
}

TEST(ConnectionSend, EverySmallLengthIsCopiedExactlyAndInvalidTextLeavesNoTrace) {
  std::mt19937 rng(125);
  for (Role r : {Role::server, Role::client})
    for (std::size_t n = 0; n <= 130; ++n) {
      Connection c(config(r));
      Bytes payload(n);
      for (auto& b : payload) b = static_cast<std::byte>(rng() & 0xFF);
      Bytes ascii(n);
      for (auto& b : ascii) b = static_cast<std::byte>('a' + rng() % 26);
      ASSERT_FALSE(c.send_message(SocketMessageType::binary, payload));
      ASSERT_FALSE(c.send_message(SocketMessageType::utf8, ascii));
      const std::size_t before = c.buffered_amount();
      if (n != 0) {
        // The same ASCII text with one byte made invalid, at a random place.
        Bytes bad = ascii;
        bad[rng() % n] = std::byte{0xFF};
        ASSERT_EQ(c.send_message(SocketMessageType::utf8, bad), error::invalid_utf8) << n;
      }
      EXPECT_EQ(c.buffered_amount(), before) << n;
      EXPECT_EQ(c.stats().messages_sent, 2u);
      EXPECT_EQ(c.stats().frames_sent, 2u);
      EXPECT_EQ(c.stats().bytes_sent, before) << n;
      bool ok = false;
      auto frames = output_frames(c, &ok);
      ASSERT_TRUE(ok) << n;
      ASSERT_EQ(frames.size(), 2u) << n;
      EXPECT_EQ(frames[0].payload, payload) << n;
      EXPECT_EQ(frames[1].payload, ascii) << n;
      EXPECT_EQ(frames[1].b0, 0x81);
    }
}

// Text with bytes above 0x7F is checked after the copy: valid UTF-8 stays,
// whether the output had room (the short path) or had to grow.
TEST(ConnectionSend, SmallNonAsciiTextIsKeptWithAndWithoutRoom) {
  for (Role r : {Role::server, Role::client}) {
    Connection c(config(r));
    const Bytes text = test::bytes("h\xc3\xa9llo \xe2\x82\xac");
    ASSERT_FALSE(c.send_message(SocketMessageType::utf8, text));  // grows the output
    ASSERT_FALSE(c.send_message(SocketMessageType::utf8, text));  // fits
    EXPECT_EQ(c.stats().messages_sent, 2u);
    EXPECT_EQ(c.stats().bytes_sent, c.buffered_amount());
    bool ok = false;
    auto frames = output_frames(c, &ok);
    ASSERT_TRUE(ok);
    ASSERT_EQ(frames.size(), 2u);
    EXPECT_EQ(frames[0].payload, text);
    EXPECT_EQ(frames[1].payload, text);
    EXPECT_EQ(frames[1].b0, 0x81);
  }
}

TEST(ConnectionSend, FirstPieceTypeHoldsForTheWholeMessage) {
  Connection c(config(Role::server));
  ASSERT_FALSE(c.send_fragment(SocketMessageType::binary, bytes({0xFF}), false));
  // A later piece named utf8 is still a binary continuation: no UTF-8 check.
  ASSERT_FALSE(c.send_fragment(SocketMessageType::utf8, bytes({0xFE}), true));
  auto frames = output_frames(c);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].b0, 0x02);
  EXPECT_EQ(frames[1].b0, 0x80);
}

TEST(ConnectionSend, LargeBurstThenSmallMessages) {
  Connection c(config(Role::client));
  ASSERT_FALSE(c.send_message(SocketMessageType::binary, Bytes(1 << 20, std::byte{3})));
  auto frames = output_frames(c);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].payload, Bytes(1 << 20, std::byte{3}));
  for (int i = 0; i < 3; ++i) {
    ASSERT_FALSE(c.send_message(SocketMessageType::utf8, test::bytes("small")));
    auto f = output_frames(c);
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(test::str(f[0].payload), "small");
  }
}

TEST(ConnectionFraming, LargeSplitMessageThenSmallOnes) {
  Fixture f(Role::server);
  const Bytes big = client_frame(0x82, Bytes(600000, std::byte{'B'}));
  f.feed(Bytes(big.begin(), big.begin() + 1000));
  f.feed(Bytes(big.begin() + 1000, big.end()));
  f.feed(cat(client_frame(0x81, test::bytes("s1")), client_frame(0x81, test::bytes("s2"))));
  const Bytes split = client_frame(0x81, test::bytes("split"));
  f.feed(Bytes(split.begin(), split.begin() + 8));
  f.feed(Bytes(split.begin() + 8, split.end()));
  ASSERT_EQ(f.rec.events.size(), 4u);
  EXPECT_EQ(f.rec.events[0], "binary:" + std::string(600000, 'B'));
  EXPECT_EQ(f.rec.events[1], "text:s1");
  EXPECT_EQ(f.rec.events[2], "text:s2");
  EXPECT_EQ(f.rec.events[3], "text:split");
}

TEST(ConnectionFraming, ReceiveStatsCountFramesMessagesAndBytes) {
  Fixture f(Role::server);
  const Bytes in = cat(cat(client_frame(0x01, test::bytes("a")), client_frame(0x89, {})),
                       client_frame(0x80, test::bytes("b")));
  f.feed(in);
  EXPECT_EQ(f.conn.stats().frames_received, 3u);
  EXPECT_EQ(f.conn.stats().messages_received, 1u);
  EXPECT_EQ(f.conn.stats().bytes_received, in.size());
}

TEST(ConnectionFraming, MovedConnectionKeepsItsState) {
  Connection a(config(Role::server));
  Recorder r;
  const Bytes frame = client_frame(0x81, test::bytes("moved"));
  Bytes first(frame.begin(), frame.begin() + 4), rest(frame.begin() + 4, frame.end());
  a.receive(first, r);
  ASSERT_FALSE(a.send_ping(test::bytes("q")));
  Connection b(std::move(a));
  b.receive(rest, r);
  EXPECT_EQ(r.events, std::vector<std::string>{"text:moved"});
  auto out = output_frames(b);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].b0, 0x89);
}

// ================================ Failing at the offending byte =======================

// Feeds `in` one byte at a time; returns the index of the byte during which
// the error was raised (or -1), and checks no event comes after it.
long error_index(const ConnectionConfig& cfg, Bytes in) {
  Connection c(cfg);
  Recorder r;
  for (std::size_t i = 0; i < in.size(); ++i) {
    c.receive(std::span(in.data() + i, 1), r);
    if (r.error) {
      const std::size_t events = r.events.size();
      for (std::size_t k = i + 1; k < in.size(); ++k) c.receive(std::span(in.data() + k, 1), r);
      EXPECT_EQ(r.events.size(), events);
      return static_cast<long>(i);
    }
  }
  return -1;
}

TEST(ConnectionFailFast, EachRuleFailsAtItsByteNotEarlierNotLater) {
  const Bytes ok = client_frame(0x81, test::bytes("ok"));  // 8 bytes
  const long k = static_cast<long>(ok.size());
  ConnectionConfig server = config(Role::server);
  ConnectionConfig small = server;
  small.max_message_size = 1000;
  struct Case {
    const char* name;
    ConnectionConfig cfg;
    Bytes input;
    long index;
  };
  const Case cases[] = {
      {"rsv1", server, cat(ok, client_frame(0xC1, test::bytes("x"))), k},
      {"reserved opcode", server, cat(ok, client_frame(0x83, test::bytes("x"))), k},
      {"fragmented ping", server, cat(ok, client_frame(0x09, {})), k},
      {"unexpected continuation", server, cat(ok, client_frame(0x80, {})), k},
      {"unmasked", server, cat(ok, server_frame(0x81, test::bytes("x"))), k + 1},
      {"ping too long", server, cat(ok, client_frame(0x89, Bytes(126))), k + 1},
      {"non-minimal 16", server, cat(ok, test::make_frame(0x82, Bytes(5), true, {1, 2, 3, 4}, 2)),
       k + 3},
      {"non-minimal 64", server, cat(ok, test::make_frame(0x82, Bytes(300), true, {1, 2, 3, 4}, 8)),
       k + 7},
      {"length top bit", server,
       cat(ok, bytes({0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4})), k + 2},
      {"too big", small, cat(ok, client_frame(0x82, Bytes(1001))), k + 3},
      {"utf8 surrogate", server, cat(ok, client_frame(0x81, bytes({'a', 0xED, 0xA0, 0x80}))),
       k + 6 + 2},
      {"utf8 above max", server, cat(ok, client_frame(0x81, bytes({0xF4, 0x90, 0x80, 0x80}))),
       k + 6 + 1},
      {"utf8 truncated at end", server, cat(ok, client_frame(0x81, bytes({'a', 0xE2, 0x82}))),
       k + 6 + 2},
      {"utf8 across fragments", server,
       cat(cat(ok, client_frame(0x01, bytes({'a', 0xE2}))), client_frame(0x80, bytes({'b'}))),
       k + 8 + 6},
      {"close one byte", server, cat(ok, client_frame(0x88, bytes({0x03}))), k + 6},
      {"close bad code", server, cat(ok, client_frame(0x88, bytes({0x03, 0xEC}))), k + 7},
  };
  for (const auto& c : cases) EXPECT_EQ(error_index(c.cfg, c.input), c.index) << c.name;
}

// ================================ Every split =========================================

struct StreamCase {
  const char* name;
  Role role;
  Bytes input;
  std::vector<std::string> events;  ///< full-mode events
  int close_code;                   ///< code of the last queued frame, 0: none queued
};

std::vector<StreamCase> stream_cases() {
  const Role S = Role::server, C = Role::client;
  auto pf = [](Role r, int b0, const Bytes& p) { return peer_frame(r, b0, p); };
  auto t = [](std::string_view s) { return test::bytes(s); };
  std::vector<StreamCase> v;
  v.push_back({"hello", S, pf(S, 0x81, t("Hello")), {"text:Hello"}, 0});
  v.push_back({"two_messages",
               C,
               cat(pf(C, 0x81, t("a")), pf(C, 0x82, t("bc"))),
               {"text:a", "binary:bc"},
               0});
  v.push_back({"fragmented_with_ping",
               S,
               cat(cat(pf(S, 0x01, t("Hel")), pf(S, 0x89, t("P"))), pf(S, 0x80, t("lo"))),
               {"ping:P", "text:Hello"},
               0});
  v.push_back({"medium_binary",
               S,
               pf(S, 0x82, Bytes(300, std::byte{'m'})),
               {"binary:" + std::string(300, 'm')},
               0});
  v.push_back({"large_binary",
               C,
               pf(C, 0x82, Bytes(70000, std::byte{'L'})),
               {"binary:" + std::string(70000, 'L')},
               0});
  v.push_back({"utf8_split",
               S,
               cat(pf(S, 0x01, Bytes{std::byte{0xF0}, std::byte{0x9F}}),
                   pf(S, 0x80, Bytes{std::byte{0x98}, std::byte{0x80}})),
               {"text:\xf0\x9f\x98\x80"},
               0});
  v.push_back({"close_then_junk",
               S,
               cat(cat(pf(S, 0x81, t("x")), pf(S, 0x88, bytes({0x03, 0xE8, 'o', 'k'}))),
                   bytes({0xFF, 0xFF})),
               {"text:x", "close:1000:ok"},
               1000});
  v.push_back({"pong_then_message",
               C,
               cat(pf(C, 0x8A, t("pp")), pf(C, 0x81, t("m"))),
               {"pong:pp", "text:m"},
               0});
  v.push_back({"reserved_opcode",
               S,
               cat(pf(S, 0x81, t("ok")), pf(S, 0x85, t("zz"))),
               {"text:ok", err(error::reserved_opcode)},
               1002});
  v.push_back({"rsv2",
               C,
               cat(pf(C, 0x82, t("ok")), pf(C, 0xA2, t("zz"))),
               {"binary:ok", err(error::reserved_bits)},
               1002});
  v.push_back({"bad_utf8_mid",
               S,
               cat(pf(S, 0x81, t("ok")), pf(S, 0x81, bytes({'a', 'b', 0xED, 0xA0, 0x80, 'c'}))),
               {"text:ok", err(error::invalid_utf8)},
               1007});
  v.push_back({"bad_utf8_fragment",
               S,
               cat(pf(S, 0x01, t("abc")), pf(S, 0x80, bytes({0xF4, 0x90, 0x80, 0x80}))),
               {err(error::invalid_utf8)},
               1007});
  v.push_back({"truncated_utf8_end",
               C,
               pf(C, 0x81, bytes({0xE2, 0x82})),
               {err(error::invalid_utf8)},
               1007});
  v.push_back({"unexpected_continuation",
               S,
               pf(S, 0x80, t("x")),
               {err(error::unexpected_continuation)},
               1002});
  v.push_back({"expected_continuation",
               C,
               cat(pf(C, 0x01, t("x")), pf(C, 0x81, t("y"))),
               {err(error::expected_continuation)},
               1002});
  v.push_back({"fragmented_ping", S, pf(S, 0x09, t("x")), {err(error::fragmented_control)}, 1002});
  v.push_back({"long_ping",
               C,
               pf(C, 0x89, Bytes(126, std::byte{'p'})),
               {err(error::control_too_long)},
               1002});
  v.push_back({"unmasked_to_server",
               S,
               server_frame(0x81, t("x")),
               {err(error::unmasked_client_frame)},
               1002});
  v.push_back(
      {"masked_to_client", C, client_frame(0x81, t("x")), {err(error::masked_server_frame)}, 1002});
  v.push_back(
      {"close_one_byte", S, pf(S, 0x88, bytes({0x03})), {err(error::invalid_close_payload)}, 1002});
  v.push_back({"close_bad_code",
               C,
               pf(C, 0x88, bytes({0x03, 0xEE})),
               {err(error::invalid_close_code)},
               1002});
  v.push_back({"close_bad_reason",
               S,
               pf(S, 0x88, bytes({0x03, 0xE8, 0xC0})),
               {err(error::invalid_utf8)},
               1007});
  v.push_back({"non_minimal_16",
               C,
               cat(pf(C, 0x81, t("a")), bytes({0x82, 0x7E, 0x00, 0x10})),
               {"text:a", err(error::non_minimal_length)},
               1002});
  v.push_back({"length_top_bit",
               C,
               bytes({0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0}),
               {err(error::length_top_bit)},
               1002});
  v.push_back({"too_big",
               C,
               bytes({0x82, 0x7F, 0, 0, 0, 0, 0x10, 0, 0, 0}),
               {err(error::message_too_big)},
               1009});
  v.push_back({"ping_pong_close",
               S,
               cat(cat(pf(S, 0x89, t("1")), pf(S, 0x8A, t("2"))), pf(S, 0x88, bytes({0x0F, 0xA0}))),
               {"ping:1", "pong:2", "close:4000:"},
               4000});
  return v;
}

class EverySplit : public ::testing::TestWithParam<StreamCase> {};

void expect_output(const StreamCase& c, const test::Run& run, const std::string& where) {
  bool ok = false;
  auto frames = test::parse_frames(run.output, &ok);
  ASSERT_TRUE(ok) << where;
  for (const auto& f : frames) ASSERT_EQ(f.masked, c.role == Role::client) << where;
  if (c.close_code == 0) {
    for (const auto& f : frames) ASSERT_NE(f.b0 & 0x0F, 0x8) << where;
  } else {
    ASSERT_FALSE(frames.empty()) << where;
    ASSERT_EQ(test::close_code_of(frames.back()), c.close_code) << where;
    ASSERT_EQ(run.state, ConnectionState::closed) << where;
  }
}

TEST_P(EverySplit, SameEventsAtEverySplitPoint) {
  const StreamCase& c = GetParam();
  ConnectionConfig cfg = config(c.role);
  const auto whole = test::run_whole(cfg, c.input);
  ASSERT_EQ(whole.events, c.events);
  expect_output(c, whole, "whole");
  // Every single split point (sampled for the large case), then two split points.
  const std::size_t n = c.input.size();
  const std::size_t step = n > 2000 ? 97 : 1;
  for (std::size_t i = 0; i <= n; i += step) {
    const auto run = test::run_split(cfg, c.input, {i});
    ASSERT_EQ(run.events, c.events) << "split at " << i;
    expect_output(c, run, "split at " + std::to_string(i));
  }
  if (n <= 64)
    for (std::size_t i = 0; i <= n; ++i)
      for (std::size_t j = i; j <= n; ++j) {
        const auto run = test::run_split(cfg, c.input, {i, j});
        ASSERT_EQ(run.events, c.events) << "split at " << i << "," << j;
      }
}

TEST_P(EverySplit, SameEventsAtRandomSplits) {
  const StreamCase& c = GetParam();
  std::mt19937 rng(0x6455);
  for (bool partial : {false, true}) {
    ConnectionConfig cfg = config(c.role, partial);
    for (int trial = 0; trial < 150; ++trial) {
      const auto cuts = test::random_cuts(c.input.size(), rng);
      const auto run = test::run_split(cfg, c.input, cuts);
      const auto events = partial ? test::merge_pieces(run.events) : run.events;
      ASSERT_EQ(events, c.events) << "trial " << trial << " partial " << partial;
      expect_output(c, run, "trial " + std::to_string(trial));
    }
  }
}

TEST_P(EverySplit, PartialModeOneByteAtATime) {
  const StreamCase& c = GetParam();
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < c.input.size(); ++i) cuts.push_back(i);
  const auto run = test::run_split(config(c.role, true), c.input, cuts);
  EXPECT_EQ(test::merge_pieces(run.events), c.events);
}

INSTANTIATE_TEST_SUITE_P(Streams, EverySplit, ::testing::ValuesIn(stream_cases()),
                         [](const auto& p) { return std::string(p.param.name); });

// ============================ Direct frames (zero copy) ============================

Bytes patterned(std::size_t n) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = std::byte{static_cast<unsigned char>(i * 13 + 5)};
  return b;
}

// A large server frame: only its header is produced; header then payload, as
// the caller writes them, are exactly the frame send_message would queue.
TEST(ConnectionDirect, LargeServerFrameGivesTheHeaderOnly) {
  for (std::size_t n : {Connection::direct_min_payload, std::size_t{65535}, std::size_t{70000}}) {
    Connection direct_conn(config(Role::server));
    Connection queued_conn(config(Role::server));
    const Bytes payload = patterned(n);
    Connection::DirectFrame d;
    ASSERT_FALSE(direct_conn.send_message(SocketMessageType::binary, payload, true, &d));
    ASSERT_FALSE(queued_conn.send_message(SocketMessageType::binary, payload, true));
    ASSERT_EQ(d.header_size, n <= 0xFFFF ? 4u : 10u) << n;
    EXPECT_FALSE(direct_conn.has_output());
    Bytes wire(d.header.begin(), d.header.begin() + static_cast<std::ptrdiff_t>(d.header_size));
    wire.insert(wire.end(), payload.begin(), payload.end());
    auto q = queued_conn.begin_write();
    EXPECT_EQ(wire, Bytes(q.begin(), q.end())) << n;
    EXPECT_EQ(direct_conn.stats().messages_sent, 1u);
    EXPECT_EQ(direct_conn.stats().frames_sent, 1u);
    EXPECT_EQ(direct_conn.stats().bytes_sent, wire.size());
  }
}

// What the caller could not write goes back with append_output, in order,
// before the next frame; the peer reads both messages.
TEST(ConnectionDirect, UnwrittenRestIsAppendedInOrder) {
  Connection server(config(Role::server));
  const Bytes big = patterned(40000);
  Connection::DirectFrame d;
  ASSERT_FALSE(server.send_fragment(SocketMessageType::binary, big, false, true, &d));
  ASSERT_EQ(d.header_size, 4u);
  // Say the kernel took the header and 1000 payload bytes.
  Bytes taken(d.header.begin(), d.header.begin() + 4);
  taken.insert(taken.end(), big.begin(), big.begin() + 1000);
  server.append_output(std::span<const std::byte>(big).subspan(1000));
  ASSERT_FALSE(server.send_fragment(SocketMessageType::binary, test::bytes("end"), true));
  auto rest = server.begin_write();
  taken.insert(taken.end(), rest.begin(), rest.end());
  Fixture client(Role::client);
  client.feed(taken);
  ASSERT_EQ(client.rec.events.size(), 1u);
  Bytes expected = big;
  for (char c : std::string("end")) expected.push_back(std::byte{static_cast<unsigned char>(c)});
  EXPECT_EQ(client.rec.events[0], "binary:" + test::str(expected));
}

// Masked (client) frames, small frames and compressed frames are queued as usual.
TEST(ConnectionDirect, OtherFramesAreQueued) {
  const Bytes big = patterned(Connection::direct_min_payload);
  Connection client(config(Role::client));
  Connection::DirectFrame d;
  ASSERT_FALSE(client.send_message(SocketMessageType::binary, big, true, &d));
  EXPECT_EQ(d.header_size, 0u);
  EXPECT_TRUE(client.has_output());

  Connection server(config(Role::server));
  ASSERT_FALSE(server.send_message(SocketMessageType::binary, patterned(1000), true, &d));
  EXPECT_EQ(d.header_size, 0u);
  EXPECT_TRUE(server.has_output());

  ConnectionConfig deflating = config(Role::server);
  deflating.rsv1_allowed = true;
  deflating.deflate = protocol::DeflateParams{};
  Connection compressing(deflating);
  ASSERT_FALSE(compressing.send_message(SocketMessageType::binary, big, true, &d));
  EXPECT_EQ(d.header_size, 0u);
  EXPECT_TRUE(compressing.has_output());
  // Text is still checked: invalid UTF-8 is refused, nothing produced.
  Connection text(config(Role::server));
  Bytes bad = patterned(Connection::direct_min_payload);
  bad[100] = std::byte{0xFF};
  EXPECT_EQ(text.send_message(SocketMessageType::utf8, bad, true, &d),
            make_error_code(error::invalid_utf8));
  EXPECT_FALSE(text.has_output());
  EXPECT_EQ(text.stats().frames_sent, 0u);
}

// --- Partial mode: pieces of at least partial_message_threshold bytes --------------

// Records each piece's size and whether it was a view of the input buffer.
class PieceRecorder : public ConnectionHandler {
public:
  struct Piece {
    std::size_t size;
    bool complete;
    bool view_of_input;
  };
  std::vector<Piece> pieces;
  std::string bytes;  ///< every piece, concatenated
  std::span<const std::byte> input;
  std::vector<std::string> other;

  void on_message(SocketMessageType, std::span<const std::byte> d, bool complete) override {
    const bool view = !d.empty() && d.data() >= input.data() &&
                      d.data() + d.size() <= input.data() + input.size();
    pieces.push_back({d.size(), complete, view});
    bytes += test::str(d);
  }
  void on_ping(std::span<const std::byte> p) override { other.push_back("ping:" + test::str(p)); }
  void on_close(std::uint16_t code, std::string_view) override {
    other.push_back("close:" + std::to_string(code));
  }
  void on_error(std::error_code ec) override { other.push_back("error:" + ec.message()); }
};

ConnectionConfig threshold_config(std::size_t threshold) {
  ConnectionConfig c;
  c.role = Role::server;
  c.partial_messages = true;
  c.partial_message_threshold = threshold;
  return c;
}

// `count` frames of `size` bytes each (a message sent in tiny fragments), and
// the message's bytes.
std::pair<Bytes, std::string> tiny_fragments(std::size_t count, std::size_t size) {
  Bytes in;
  std::string all;
  for (std::size_t i = 0; i < count; ++i) {
    std::string piece(size, static_cast<char>('a' + i % 26));
    all += piece;
    const int b0 = (i + 1 == count ? 0x80 : 0x00) | (i == 0 ? 0x02 : 0x00);
    in = cat(in, client_frame(b0, test::bytes(piece)));
  }
  return {in, all};
}

TEST(ConnectionPartialThreshold, DefaultIs64KiB) {
  EXPECT_EQ(ConnectionConfig{}.partial_message_threshold, std::size_t{64} << 10);
}

TEST(ConnectionPartialThreshold, GathersTinyFramesIntoPiecesOfTheThreshold) {
  // 100 frames of 64 bytes, threshold 1000: pieces of 1024 (16 frames), and
  // the 256 bytes left at the end.
  auto [in, all] = tiny_fragments(100, 64);
  Connection c(threshold_config(1000));
  PieceRecorder r;
  r.input = in;
  c.receive(in, r);
  ASSERT_EQ(r.pieces.size(), 7u);
  for (std::size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(r.pieces[i].size, 1024u) << i;
    EXPECT_FALSE(r.pieces[i].complete);
  }
  EXPECT_EQ(r.pieces[6].size, 256u);
  EXPECT_TRUE(r.pieces[6].complete);
  EXPECT_EQ(r.bytes, all);
  EXPECT_EQ(c.stats().messages_received, 1u);
  EXPECT_EQ(c.stats().frames_received, 100u);
}

TEST(ConnectionPartialThreshold, EverySplitGivesPiecesOfAtLeastTheThreshold) {
  auto [in, all] = tiny_fragments(40, 30);  // 1200 bytes in 30-byte frames
  for (std::size_t a = 0; a <= in.size(); ++a) {
    for (std::size_t b = a; b <= in.size(); b += 37) {
      Connection c(threshold_config(250));
      PieceRecorder r;
      Bytes copy = in;
      c.receive(std::span(copy.data(), a), r);
      c.receive(std::span(copy.data() + a, b - a), r);
      c.receive(std::span(copy.data() + b, copy.size() - b), r);
      ASSERT_EQ(r.bytes, all) << a << " " << b;
      ASSERT_FALSE(r.pieces.empty());
      for (std::size_t i = 0; i + 1 < r.pieces.size(); ++i) {
        ASSERT_GE(r.pieces[i].size, 250u) << a << " " << b << " piece " << i;
        ASSERT_FALSE(r.pieces[i].complete);
      }
      ASSERT_TRUE(r.pieces.back().complete);
      // Nothing is held back once the threshold is reached: at most one piece
      // of 250..279 bytes per 250 (frames add 30 at a time).
      ASSERT_LE(r.pieces.size(), 1200u / 250 + 1) << a << " " << b;
    }
  }
}

TEST(ConnectionPartialThreshold, LargeChunkIsDeliveredAsAViewOfTheInput) {
  // Zero copy: a frame that reaches the threshold alone is not gathered.
  Bytes payload(5000, std::byte{'x'});
  Bytes in = client_frame(0x02, payload);  // non-final: the piece comes at once
  Connection c(threshold_config(1000));
  PieceRecorder r;
  r.input = in;
  c.receive(in, r);
  ASSERT_EQ(r.pieces.size(), 1u);
  EXPECT_EQ(r.pieces[0].size, 5000u);
  EXPECT_TRUE(r.pieces[0].view_of_input);
  EXPECT_FALSE(r.pieces[0].complete);
  // A small final frame ends the message as its own (short) piece, also a view.
  Bytes end = client_frame(0x80, test::bytes("end"));
  r.input = end;
  c.receive(end, r);
  ASSERT_EQ(r.pieces.size(), 2u);
  EXPECT_EQ(r.pieces[1].size, 3u);
  EXPECT_TRUE(r.pieces[1].complete);
  EXPECT_TRUE(r.pieces[1].view_of_input);
}

TEST(ConnectionPartialThreshold, ControlFramesBetweenFragmentsDoNotFlush) {
  Bytes in = cat(client_frame(0x01, test::bytes("abc")), client_frame(0x89, test::bytes("p")));
  in = cat(in, client_frame(0x80, test::bytes("def")));
  Connection c(threshold_config(100));
  PieceRecorder r;
  c.receive(in, r);
  ASSERT_EQ(r.pieces.size(), 1u);
  EXPECT_TRUE(r.pieces[0].complete);
  EXPECT_EQ(r.bytes, "abcdef");
  EXPECT_EQ(r.other, std::vector<std::string>{"ping:p"});
}

TEST(ConnectionPartialThreshold, ErrorDropsTheGatheredBytes) {
  // Invalid UTF-8 fails at its byte; the bytes gathered before it are never
  // delivered (the message never completes), and nothing follows the error.
  Bytes in =
      cat(client_frame(0x01, test::bytes("good ")), client_frame(0x00, bytes({0xED, 0xA0, 0x80})));
  Connection c(threshold_config(100));
  PieceRecorder r;
  c.receive(in, r);
  EXPECT_TRUE(r.pieces.empty());
  EXPECT_EQ(r.other, std::vector<std::string>{err(error::invalid_utf8)});
}

TEST(ConnectionPartialThreshold, ZeroMeansEveryPieceAsItArrives) {
  auto [in, all] = tiny_fragments(5, 10);
  Connection c(threshold_config(0));
  PieceRecorder r;
  c.receive(in, r);
  EXPECT_EQ(r.pieces.size(), 5u);
  EXPECT_EQ(r.bytes, all);
}

// ============================ Holding a cut-off frame ============================
// receive_holding() leaves a large whole message cut off at the end of its
// bytes unconsumed; the session then reads the rest after it and passes the
// frame again, or passes the held bytes to receive() (the connection copies).

// Compares each event with the whole-input run's, in order, without building
// strings of the large payloads.
class CompareRecorder : public ConnectionHandler {
public:
  explicit CompareRecorder(const std::vector<std::string>& expect) : expect_(expect) {}
  std::size_t count = 0;
  bool ok = true;
  const std::byte* last_data = nullptr;
  void on_message(SocketMessageType type, std::span<const std::byte> data, bool complete) override {
    last_data = data.data();
    check(std::string(type == SocketMessageType::utf8 ? "text" : "binary") + (complete ? "" : "+") +
              ":",
          data);
  }
  void on_ping(std::span<const std::byte> p) override { check("ping:", p); }
  void on_pong(std::span<const std::byte> p) override { check("pong:", p); }
  void on_close(std::uint16_t code, std::string_view reason) override {
    check("close:" + std::to_string(code) + ":" + std::string(reason), {});
  }
  void on_error(std::error_code ec) override { check("error:" + ec.message(), {}); }

private:
  void check(const std::string& head, std::span<const std::byte> data) {
    const std::size_t i = count++;
    if (i >= expect_.size()) {
      ok = false;
      return;
    }
    const std::string& e = expect_[i];
    ok = ok && e.size() == head.size() + data.size() && e.compare(0, head.size(), head) == 0 &&
         (data.empty() || std::memcmp(e.data() + head.size(), data.data(), data.size()) == 0);
  }
  const std::vector<std::string>& expect_;
};

// A stream with two frames that may be held (exactly hold_min_payload, and a
// larger text with multi-byte UTF-8) between ones that may not.
Bytes holding_stream() {
  Bytes big(Connection::hold_min_payload);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i * 7 + 3);
  std::string text;
  while (text.size() < Connection::hold_min_payload + 50) text += "h\xC3\xA9llo \xE2\x82\xAC ";
  Bytes in = client_frame(0x81, test::bytes("a"));
  in = cat(in, client_frame(0x82, big));
  in = cat(in, client_frame(0x89, test::bytes("p")));
  in = cat(in, client_frame(0x81, test::bytes(text)));
  in = cat(in, client_frame(0x82, Bytes(200, std::byte{'z'})));
  return cat(in, client_frame(0x88, bytes({0x03, 0xe8})));
}

TEST(ConnectionHold, EverySplitPointGivesTheWholeInputsEventsOutputAndStats) {
  const Bytes input = holding_stream();
  auto partial = config(Role::server, true);
  partial.partial_message_threshold = std::size_t{64} << 10;
  for (const auto& cfg : {config(Role::server), partial}) {
    const test::Run whole = test::run_whole(cfg, input);
    ASSERT_EQ(whole.events.size(), 6u);
    const std::size_t hold_max = 64 << 10;
    for (std::size_t cut = 0; cut <= input.size(); ++cut) {
      for (const bool again : {true, false}) {
        // again: the held bytes and the rest in one buffer, as after a read
        // right behind them; else the held bytes alone, then the rest.
        Bytes buf(input.begin(), input.begin() + static_cast<std::ptrdiff_t>(cut));
        Connection c(cfg);
        CompareRecorder rec(whole.events);
        const auto r = c.receive_holding(buf, rec, hold_max);
        ASSERT_LE(r.held, buf.size());
        const std::size_t held = r.held;
        if (held != 0) {
          // Only a whole-message frame of at least hold_min_payload is held, and
          // it is really cut off.
          ASSERT_GE(r.frame_size, Connection::hold_min_payload) << cut;
          ASSERT_GT(r.frame_size, held) << cut;
          ASSERT_EQ(c.stats().bytes_received, buf.size() - held) << cut;
        }
        Bytes held_bytes(buf.end() - static_cast<std::ptrdiff_t>(held), buf.end());
        Bytes rest(input.begin() + static_cast<std::ptrdiff_t>(cut), input.end());
        if (again) {
          Bytes next = cat(held_bytes, rest);
          const auto r2 = c.receive_holding(next, rec, hold_max);
          ASSERT_EQ(r2.held, 0u) << cut;
        } else {
          c.receive(held_bytes, rec);
          c.receive(rest, rec);
        }
        ASSERT_TRUE(rec.ok) << "cut " << cut << " again " << again;
        ASSERT_EQ(rec.count, whole.events.size()) << "cut " << cut << " again " << again;
        auto w = c.begin_write();
        ASSERT_EQ(Bytes(w.begin(), w.end()), whole.output) << cut;
        c.end_write();
        ASSERT_EQ(c.state(), whole.state);
        ASSERT_EQ(c.stats().bytes_received, input.size()) << cut;
        ASSERT_EQ(c.stats().frames_received, 6u) << cut;
        ASSERT_EQ(c.stats().messages_received, 4u) << cut;
      }
    }
  }
}

TEST(ConnectionHold, HeldFrameIsUntouchedAndThenDeliveredAsAViewOfTheNextBuffer) {
  Bytes payload(Connection::hold_min_payload + 10, std::byte{'x'});
  const Bytes first = client_frame(0x81, test::bytes("first"));
  const Bytes frame = client_frame(0x82, payload);
  const Bytes input = cat(first, frame);
  Bytes buf(input.begin(), input.end() - 100);
  const Bytes before = buf;
  Connection c(config(Role::server));
  std::vector<std::string> expect{"text:first", "binary:" + test::str(payload)};
  CompareRecorder rec(expect);
  const auto r = c.receive_holding(buf, rec, 1 << 20);
  EXPECT_EQ(r.held, buf.size() - first.size());
  EXPECT_EQ(r.frame_size, frame.size());
  EXPECT_EQ(rec.count, 1u);
  // Still masked: the bytes are passed again as they came.
  EXPECT_TRUE(std::equal(buf.begin() + static_cast<std::ptrdiff_t>(first.size()), buf.end(),
                         before.begin() + static_cast<std::ptrdiff_t>(first.size())));
  EXPECT_EQ(c.stats().frames_received, 1u);
  Bytes next = frame;
  const auto r2 = c.receive_holding(next, rec, 1 << 20);
  EXPECT_EQ(r2.held, 0u);
  EXPECT_TRUE(rec.ok);
  EXPECT_EQ(rec.count, 2u);
  EXPECT_EQ(rec.last_data, next.data() + (frame.size() - payload.size()));
}

TEST(ConnectionHold, OnlyLargeWholeMessagesWithinTheLimitAreHeld) {
  const Bytes large(Connection::hold_min_payload, std::byte{'L'});
  const auto held = [](ConnectionConfig cfg, const Bytes& in, std::size_t hold_max) {
    Connection c(cfg);
    Recorder rec;
    Bytes buf(in.begin(), in.end() - 1);
    return c.receive_holding(buf, rec, hold_max).held;
  };
  const Bytes whole = client_frame(0x82, large);
  EXPECT_EQ(held(config(Role::server), whole, 1 << 20), whole.size() - 1);
  // The limit counts the header: exactly the frame's size holds it.
  EXPECT_EQ(held(config(Role::server), whole, whole.size()), whole.size() - 1);
  EXPECT_EQ(held(config(Role::server), whole, whole.size() - 1), 0u);
  EXPECT_EQ(held(config(Role::server), whole, 0), 0u);
  // Smaller than hold_min_payload.
  const Bytes small = client_frame(0x82, Bytes(Connection::hold_min_payload - 1));
  EXPECT_EQ(held(config(Role::server), small, 1 << 20), 0u);
  // The first frame of a fragmented message, and a continuation.
  EXPECT_EQ(held(config(Role::server), client_frame(0x02, large), 1 << 20), 0u);
  EXPECT_EQ(held(config(Role::server),
                 cat(client_frame(0x02, test::bytes("a")), client_frame(0x80, large)), 1 << 20),
            0u);
  // Partial mode: held while the part present is below the piece threshold
  // (it would be gathered, a copy), else that part goes out as a view.
  auto partial = config(Role::server, true);
  partial.partial_message_threshold = Connection::hold_min_payload;
  EXPECT_EQ(held(partial, whole, 1 << 20), whole.size() - 1);
  partial.partial_message_threshold = Connection::hold_min_payload - 1;
  EXPECT_EQ(held(partial, whole, 1 << 20), 0u);
  EXPECT_EQ(held(config(Role::server, true), whole, 1 << 20), 0u);
  // A client holds the server's unmasked frames alike.
  const Bytes from_server = server_frame(0x81, Bytes(Connection::hold_min_payload, std::byte{'s'}));
  EXPECT_EQ(held(config(Role::client), from_server, 1 << 20), from_server.size() - 1);
  // RSV1: held when it only marks the message (rsv1_allowed), not when the
  // connection inflates it (deflate).
  auto rsv1 = config(Role::server);
  rsv1.rsv1_allowed = true;
  EXPECT_EQ(held(rsv1, client_frame(0xC2, large), 1 << 20), whole.size() - 1);
  auto deflate = config(Role::server);
  deflate.deflate = DeflateParams{};
  EXPECT_EQ(held(deflate, client_frame(0xC2, large), 1 << 20), 0u);
}

TEST(ConnectionHold, AnErrorBeforeTheCutConsumesEverything) {
  const Bytes input = cat(client_frame(0x83, test::bytes("x")),
                          client_frame(0x82, Bytes(Connection::hold_min_payload)));
  Bytes buf(input.begin(), input.end() - 5);
  Connection c(config(Role::server));
  Recorder rec;
  EXPECT_EQ(c.receive_holding(buf, rec, 1 << 20).held, 0u);
  EXPECT_EQ(rec.events, std::vector<std::string>{err(error::reserved_opcode)});
  EXPECT_EQ(queued_close_code(c), 1002);
}

}  // namespace
}  // namespace duplex::protocol
