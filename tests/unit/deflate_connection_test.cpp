// permessage-deflate inside the Connection: RSV1 rules, streaming inflate in
// both delivery modes, limits on the inflated size, compressed sends, and both
// roles talking to each other.
#include <duplex/error.hpp>
#include <duplex/protocol/connection.hpp>
#include <duplex/protocol/deflate.hpp>

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "protocol_test_util.hpp"

namespace duplex::protocol {
namespace {

using test::Bytes;
using test::client_frame;
using test::Recorder;
using test::server_frame;

Bytes hex(std::string_view s) {
  Bytes out;
  int hi = -1;
  for (char c : s) {
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) continue;
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<std::byte>(hi * 16 + v));
      hi = -1;
    }
  }
  return out;
}

DeflateParams params(bool no_context_takeover = false, std::size_t threshold = 0) {
  DeflateParams p;
  p.server_no_context_takeover = no_context_takeover;
  p.client_no_context_takeover = no_context_takeover;
  p.compress_threshold = threshold;
  return p;
}

ConnectionConfig config(Role role, std::optional<DeflateParams> p = params()) {
  ConnectionConfig c;
  c.role = role;
  c.deflate = p;
  return c;
}

std::string err(error e) {
  return "error:" + make_error_code(e).message();
}

Bytes take_output(Connection& c) {
  auto w = c.begin_write();
  Bytes out(w.begin(), w.end());
  c.end_write();
  return out;
}

std::vector<test::WireFrame> frames(Connection& c) {
  bool ok = false;
  auto f = test::parse_frames(take_output(c), &ok);
  EXPECT_TRUE(ok);
  return f;
}

std::string inflate_all(const Bytes& payload, bool no_context_takeover = true) {
  DeflateDecoder d(params(no_context_takeover), Role::client);
  Bytes out;
  EXPECT_FALSE(d.inflate(payload, true, out, 1u << 30));
  return test::str(out);
}

std::string json(std::size_t n, std::uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::string s;
  while (s.size() < n)
    s += "{\"id\":" + std::to_string(rng() % 1000) + ",\"ok\":" + ((rng() & 1) ? "true" : "false") +
         ",\"name\":\"n" + std::to_string(rng() % 50) + "\"},";
  s.resize(n);
  return s;
}

// --- Receiving -------------------------------------------------------------------------

TEST(DeflateConnection, ReceivesRfcExamples) {
  // RFC 7692 7.2.3.1 and 7.2.3.2 as frames from a client.
  Bytes in = test::cat(client_frame(0xC1, hex("f2 48 cd c9 c9 07 00")),
                       client_frame(0xC1, hex("f2 00 11 00 00")));
  in = test::cat(in, client_frame(0x81, test::bytes("plain")));
  auto run = test::run_whole(config(Role::server), in);
  EXPECT_EQ(run.events, (std::vector<std::string>{"text:Hello", "text:Hello", "text:plain"}));
  EXPECT_TRUE(run.output.empty());
}

TEST(DeflateConnection, FragmentedCompressedMessageAtEverySplit) {
  // RFC 7692 7.2.3.1, fragmented: RSV1 on the first frame only, and a ping
  // between the fragments.
  Bytes in = test::cat(client_frame(0x41, hex("f2 48 cd")), client_frame(0x89, test::bytes("p")));
  in = test::cat(in, client_frame(0x80, hex("c9 c9 07 00")));
  in = test::cat(in, client_frame(0xC2, hex("00")));  // RFC 7692 7.2.3.6: empty message
  const std::vector<std::string> expected{"ping:p", "text:Hello", "binary:"};
  for (bool partial : {false, true}) {
    ConnectionConfig cfg = config(Role::server);
    cfg.partial_messages = partial;
    for (std::size_t a = 0; a <= in.size(); ++a) {
      for (std::size_t b = a; b <= in.size(); b += 3) {
        auto run = test::run_split(cfg, in, {a, b});
        ASSERT_EQ(test::merge_pieces(run.events), expected) << a << " " << b << " " << partial;
      }
    }
  }
}

TEST(DeflateConnection, PartialModeStreamsInflatedPieces) {
  // A large compressed message in several frames: each piece is delivered as
  // it inflates, before the message ends.
  std::string s = json(200000);
  DeflateEncoder e(params(), Role::client);
  Bytes in;
  for (std::size_t i = 0; i < s.size(); i += 50000) {
    Bytes c;
    bool fin = i + 50000 >= s.size();
    e.compress(test::bytes(std::string_view(s).substr(i, 50000)), fin, c);
    in = test::cat(in, client_frame((fin ? 0x80 : 0) | (i == 0 ? 0x41 : 0x00), c));
  }
  ConnectionConfig cfg = config(Role::server);
  cfg.partial_messages = true;
  cfg.partial_message_threshold = 1;  // every inflated slice as it comes
  Connection c(cfg);
  Recorder r;
  c.receive(in, r);
  ASSERT_GE(r.events.size(), 4u);
  for (std::size_t i = 0; i + 1 < r.events.size(); ++i)
    EXPECT_EQ(r.events[i].rfind("text+:", 0), 0u);
  EXPECT_EQ(test::merge_pieces(r.events), std::vector<std::string>{"text:" + s});
  EXPECT_EQ(c.stats().messages_received, 1u);
}

TEST(DeflateConnection, Rsv1RulesStillHold) {
  // RFC 7692 6: RSV1 only on the first frame of a data message; never on
  // control frames or continuations; RSV2/RSV3 stay reserved.
  struct Case {
    Bytes in;
    std::string event;
  };
  const Case cases[] = {
      {test::cat(client_frame(0x41, hex("f2 48 cd")), client_frame(0xC0, hex("c9 c9 07 00"))),
       err(error::reserved_bits)},
      {client_frame(0xC9, {}), err(error::reserved_bits)},
      {client_frame(0xCA, {}), err(error::reserved_bits)},
      {client_frame(0xC8, {}), err(error::reserved_bits)},
      {client_frame(0xE1, hex("f2 48 cd c9 c9 07 00")), err(error::reserved_bits)},
      {client_frame(0xD1, hex("f2 48 cd c9 c9 07 00")), err(error::reserved_bits)},
  };
  for (const auto& c : cases) {
    auto run = test::run_whole(config(Role::server), c.in);
    EXPECT_EQ(run.events, std::vector<std::string>{c.event});
  }
  // Without the extension RSV1 is an error too.
  auto run = test::run_whole(config(Role::server, std::nullopt),
                             client_frame(0xC1, hex("f2 48 cd c9 c9 07 00")));
  EXPECT_EQ(run.events, std::vector<std::string>{err(error::reserved_bits)});
}

int close_code(const Bytes& output) {
  auto f = test::parse_frames(output);
  return f.empty() ? -1 : test::close_code_of(f.back());
}

TEST(DeflateConnection, BombFailsWith1009AtTheInflatedLimit) {
  // 16 MiB of zeros is ~16 KiB compressed: well under the limit on the wire.
  DeflateParams p = params(true);
  p.compression_level = 9;
  DeflateEncoder e(p, Role::client);
  Bytes zeros(16u << 20), c;
  e.compress(zeros, true, c);
  ASSERT_LT(c.size(), 64u * 1024);
  for (bool partial : {false, true}) {
    ConnectionConfig cfg = config(Role::server, params(true));
    cfg.max_message_size = 1u << 20;
    cfg.partial_messages = partial;
    Bytes in = test::cat(client_frame(0x81, test::bytes("before")), client_frame(0xC2, c));
    Connection conn(cfg);
    struct Counter : Recorder {
      std::size_t delivered = 0;
      void on_message(SocketMessageType t, std::span<const std::byte> d, bool done) override {
        delivered += d.size();
        if (t == SocketMessageType::utf8) Recorder::on_message(t, d, done);
      }
    } r;
    conn.receive(in, r);
    EXPECT_EQ(r.events.back(), err(error::message_too_big));
    EXPECT_EQ(r.events.front(), "text:before");
    // Partial mode delivers at most the limit before failing.
    EXPECT_LE(r.delivered, 6u + (1u << 20));
    EXPECT_EQ(close_code(take_output(conn)), 1009);
  }
}

TEST(DeflateConnection, PartialModePiecesStayBoundedWithoutALimit) {
  // A stream (partial mode) with no message size limit: a highly compressed
  // frame is delivered in pieces of about 1 MiB at most, never all at once.
  DeflateParams p = params(true);
  p.compression_level = 9;
  DeflateEncoder e(p, Role::client);
  Bytes zeros(16u << 20), c;
  e.compress(zeros, true, c);
  ConnectionConfig cfg = config(Role::server, params(true));
  cfg.max_message_size = ConnectionConfig::unlimited;
  cfg.partial_messages = true;
  Connection conn(cfg);
  struct Sizes : ConnectionHandler {
    std::size_t total = 0, largest = 0, pieces = 0;
    bool complete = false;
    void on_message(SocketMessageType, std::span<const std::byte> d, bool done) override {
      total += d.size();
      largest = std::max(largest, d.size());
      ++pieces;
      complete = done;
    }
    void on_close(std::uint16_t, std::string_view) override {}
    void on_error(std::error_code) override { ADD_FAILURE(); }
  } h;
  Bytes in = client_frame(0xC2, c);
  conn.receive(in, h);
  EXPECT_TRUE(h.complete);
  EXPECT_EQ(h.total, zeros.size());
  EXPECT_GT(h.pieces, 10u);
  EXPECT_LE(h.largest, 1100u * 1024);
}

TEST(DeflateConnection, LimitCountsInflatedBytesAcrossFragments) {
  std::string s = json(3000);
  DeflateEncoder e(params(true), Role::client);
  Bytes a, b;
  e.compress(test::bytes(std::string_view(s).substr(0, 1500)), false, a);
  e.compress(test::bytes(std::string_view(s).substr(1500)), true, b);
  Bytes in = test::cat(client_frame(0x41, a), client_frame(0x80, b));
  ConnectionConfig cfg = config(Role::server, params(true));
  cfg.max_message_size = 3000;
  EXPECT_EQ(test::run_whole(cfg, in).events, std::vector<std::string>{"text:" + s});
  cfg.max_message_size = 2999;
  auto run = test::run_whole(cfg, in);
  EXPECT_EQ(run.events, std::vector<std::string>{err(error::message_too_big)});
  EXPECT_EQ(close_code(run.output), 1009);
}

TEST(DeflateConnection, BadDataFailsWith1007) {
  for (bool partial : {false, true}) {
    ConnectionConfig cfg = config(Role::client);
    cfg.partial_messages = partial;
    auto run = test::run_whole(cfg, server_frame(0xC2, hex("ff ff ff ff")));
    EXPECT_EQ(run.events, std::vector<std::string>{err(error::bad_compressed_data)});
    EXPECT_EQ(close_code(run.output), 1007);
    EXPECT_EQ(run.state, ConnectionState::closed);
  }
}

TEST(DeflateConnection, InflatedTextIsCheckedAsItStreams) {
  // Invalid UTF-8 in the first fragment fails at once, before the message ends.
  DeflateEncoder e(params(true), Role::server);
  Bytes bad;
  e.compress(test::bytes({'a', 0xFF, 'b'}), false, bad);
  Connection c(config(Role::client, params(true)));
  Recorder r;
  Bytes in = server_frame(0x41, bad);
  c.receive(in, r);
  EXPECT_EQ(r.events, std::vector<std::string>{err(error::invalid_utf8)});
  Bytes out = take_output(c);
  EXPECT_EQ(close_code(out), 1007);
  // A code point split between fragments is fine; a message ending inside one is not.
  DeflateEncoder e2(params(true), Role::server);
  Bytes p1, p2;
  e2.compress(test::bytes({'a', 0xC3}), false, p1);
  e2.compress(test::bytes({0xA9}), true, p2);
  auto run = test::run_whole(config(Role::client, params(true)),
                             test::cat(server_frame(0x41, p1), server_frame(0x80, p2)));
  EXPECT_EQ(run.events, std::vector<std::string>{"text:a\xC3\xA9"});
  DeflateEncoder e3(params(true), Role::server);
  Bytes cut;
  e3.compress(test::bytes({'a', 0xC3}), true, cut);
  run = test::run_whole(config(Role::client, params(true)), server_frame(0xC1, cut));
  EXPECT_EQ(run.events, std::vector<std::string>{err(error::invalid_utf8)});

  // Invalid text followed by corrupt DEFLATE data in the same frame: the text
  // comes first in the message, so it is the error, whole or split.
  DeflateEncoder e4(params(true), Role::server);
  Bytes both;
  e4.compress(test::bytes({'a', 0xFF}), false, both);
  both = test::cat(both, hex("ff ff ff ff"));
  for (bool partial : {false, true}) {
    ConnectionConfig cfg = config(Role::client, params(true));
    cfg.partial_messages = partial;
    for (std::size_t at = 0; at < both.size() + 2; ++at) {
      run = test::run_split(cfg, server_frame(0xC1, both), {at});
      EXPECT_EQ(test::merge_pieces(run.events), std::vector<std::string>{err(error::invalid_utf8)})
          << at;
    }
  }
}

// --- Sending -----------------------------------------------------------------------------

TEST(DeflateConnection, SendsCompressedMessagesWithRsv1) {
  for (Role role : {Role::client, Role::server}) {
    Connection c(config(role, params(true, 10)));
    ASSERT_FALSE(c.send_message(SocketMessageType::utf8, test::bytes("Hello, Hello, Hello")));
    ASSERT_FALSE(c.send_message(SocketMessageType::utf8, test::bytes("short")));
    ASSERT_FALSE(
        c.send_message(SocketMessageType::binary, test::bytes("not compressed, asked"), false));
    ASSERT_FALSE(c.send_ping(test::bytes("ping payload that is long enough")));
    auto f = frames(c);
    ASSERT_EQ(f.size(), 4u);
    EXPECT_EQ(f[0].b0, 0xC1);
    EXPECT_EQ(f[0].masked, role == Role::client);
    EXPECT_EQ(inflate_all(f[0].payload), "Hello, Hello, Hello");
    // Below the threshold, opted out, and control frames: plain.
    EXPECT_EQ(f[1].b0, 0x81);
    EXPECT_EQ(test::str(f[1].payload), "short");
    EXPECT_EQ(f[2].b0, 0x82);
    EXPECT_EQ(f[3].b0, 0x89);
    EXPECT_EQ(test::str(f[3].payload), "ping payload that is long enough");
  }
}

TEST(DeflateConnection, SendsCompressedFragments) {
  Connection c(config(Role::server, params(true)));
  ASSERT_FALSE(c.send_fragment(SocketMessageType::utf8, test::bytes("Hello, "), false));
  ASSERT_FALSE(c.send_ping(test::bytes("p")));
  ASSERT_FALSE(c.send_fragment(SocketMessageType::utf8, test::bytes("World"), false));
  ASSERT_FALSE(c.send_fragment(SocketMessageType::utf8, {}, true));
  // Opted out on the first piece: the whole message is plain.
  ASSERT_FALSE(c.send_fragment(SocketMessageType::binary, test::bytes("raw"), false, false));
  ASSERT_FALSE(c.send_fragment(SocketMessageType::binary, test::bytes("!"), true, true));
  auto f = frames(c);
  ASSERT_EQ(f.size(), 6u);
  EXPECT_EQ(f[0].b0, 0x41);  // RSV1 + text, no FIN
  EXPECT_EQ(f[1].b0, 0x89);
  EXPECT_EQ(f[2].b0, 0x00);  // continuation: no RSV1
  EXPECT_EQ(f[3].b0, 0x80);
  EXPECT_EQ(f[3].payload, hex("00"));  // RFC 7692 7.2.3.6
  Bytes all = test::cat(test::cat(f[0].payload, f[2].payload), f[3].payload);
  EXPECT_EQ(inflate_all(all), "Hello, World");
  EXPECT_EQ(f[4].b0, 0x02);
  EXPECT_EQ(f[5].b0, 0x80);
  EXPECT_EQ(test::str(f[5].payload), "!");
}

TEST(DeflateConnection, EightBitWindowSendsPlain) {
  DeflateParams p = params();
  p.server_max_window_bits = 8;
  Connection server(config(Role::server, p));
  ASSERT_FALSE(server.send_message(SocketMessageType::utf8, test::bytes(json(500))));
  auto f = frames(server);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].b0, 0x81);
  // The client still compresses to it, and it inflates.
  Connection client(config(Role::client, p));
  ASSERT_FALSE(client.send_message(SocketMessageType::utf8, test::bytes(json(500))));
  Bytes wire = take_output(client);
  EXPECT_EQ(static_cast<int>(wire[0]), 0xC1);
  Recorder r;
  server.receive(wire, r);
  EXPECT_EQ(r.events, std::vector<std::string>{"text:" + json(500)});
}

// --- Both roles --------------------------------------------------------------------------

TEST(DeflateConnection, ClientAndServerExchangeManyMessages) {
  // 0: takeover both ways, 1: none, 2: only the client keeps its window.
  for (int nct : {0, 1, 2}) {
    for (bool partial : {false, true}) {
      DeflateParams p = params(nct == 1, 16);
      if (nct == 2) p.server_no_context_takeover = true;
      ConnectionConfig sc = config(Role::server, p);
      ConnectionConfig cc = config(Role::client, p);
      sc.partial_messages = partial;
      cc.partial_messages = partial;
      Connection server(sc), client(cc);
      Recorder at_server, at_client;
      at_server.echo_to = partial ? nullptr : &server;
      std::vector<std::string> sent;
      std::mt19937 rng(42);
      for (int i = 0; i < 60; ++i) {
        std::size_t n = (i % 6 == 0) ? 70000 + rng() % 1000 : rng() % 3000;
        std::string s = json(n, static_cast<std::uint32_t>(i));
        sent.push_back("text:" + s);
        if (i % 5 == 3) {
          // In pieces, some of them empty.
          ASSERT_FALSE(client.send_fragment(
              SocketMessageType::utf8, test::bytes(std::string_view(s).substr(0, n / 2)), false));
          ASSERT_FALSE(client.send_fragment(SocketMessageType::utf8, {}, false));
          ASSERT_FALSE(client.send_fragment(SocketMessageType::utf8,
                                            test::bytes(std::string_view(s).substr(n / 2)), true));
        } else {
          auto ec = client.send_message(SocketMessageType::utf8, test::bytes(s));
          ASSERT_FALSE(ec) << ec.message() << " " << i;
        }
        // Client to server in uneven reads, the echo back in one.
        Bytes wire = take_output(client);
        for (std::size_t at = 0, len = 0; at < wire.size(); at += len) {
          len = std::min<std::size_t>(wire.size() - at, 1000 + rng() % 5000);
          server.receive(std::span(wire.data() + at, len), at_server);
        }
        // In partial mode the recorder echoes only whole pieces it saw complete;
        // echo from the merged view instead.
        if (partial) {
          auto merged = test::merge_pieces(at_server.events);
          std::string last = merged.back().substr(5);
          ASSERT_FALSE(server.send_message(SocketMessageType::utf8, test::bytes(last)));
        }
        Bytes back = take_output(server);
        client.receive(back, at_client);
      }
      EXPECT_EQ(test::merge_pieces(at_server.events), sent) << nct << partial;
      EXPECT_EQ(test::merge_pieces(at_client.events), sent) << nct << partial;
      EXPECT_EQ(server.stats().messages_received, 60u);
      EXPECT_EQ(client.stats().messages_received, 60u);
      EXPECT_EQ(server.state(), ConnectionState::open);
    }
  }
}

TEST(DeflateConnection, IdleConnectionsWithoutTakeoverHoldNoZlibState) {
  trim_deflate_cache();
  const std::size_t base = zlib_memory_in_use();
  std::vector<Connection> servers;
  std::vector<Connection> clients;
  servers.reserve(200);
  clients.reserve(200);
  for (int i = 0; i < 200; ++i) {
    servers.emplace_back(config(Role::server, params(true)));
    clients.emplace_back(config(Role::client, params(true)));
    Recorder r;
    ASSERT_FALSE(clients.back().send_message(SocketMessageType::utf8, test::bytes(json(2000))));
    Bytes wire = take_output(clients.back());
    servers.back().receive(wire, r);
    ASSERT_EQ(r.events.size(), 1u);
  }
  // Only the thread's cached streams: the same for 1 or 200 connections.
  EXPECT_LT(zlib_memory_in_use() - base, 400u * 1024);
  trim_deflate_cache();
  EXPECT_EQ(zlib_memory_in_use(), base);
}

TEST(DeflateConnection, PartialModeGathersInflatedPiecesToTheThreshold) {
  // A compressed message whose compressed data comes in 64-byte fragments
  // (Autobahn 9.x-style): inflated a 1 KiB slice at a time, it is delivered in
  // pieces of at least the threshold, not one per slice or per frame.
  std::string s = json(300000);
  DeflateEncoder e(params(), Role::client);
  Bytes compressed;
  e.compress(test::bytes(s), true, compressed);
  Bytes in;
  for (std::size_t i = 0; i < compressed.size(); i += 64) {
    const bool fin = i + 64 >= compressed.size();
    const Bytes piece(
        compressed.begin() + static_cast<std::ptrdiff_t>(i),
        compressed.begin() + static_cast<std::ptrdiff_t>(fin ? compressed.size() : i + 64));
    in = test::cat(in, client_frame((fin ? 0x80 : 0) | (i == 0 ? 0x41 : 0x00), piece));
  }
  for (std::size_t threshold : {std::size_t{64} << 10, std::size_t{5000}}) {
    ConnectionConfig cfg = config(Role::server);
    cfg.partial_messages = true;
    cfg.partial_message_threshold = threshold;
    std::mt19937 rng(7);
    for (int round = 0; round < 20; ++round) {
      auto run = test::run_split(cfg, in, test::random_cuts(in.size(), rng));
      ASSERT_EQ(test::merge_pieces(run.events), std::vector<std::string>{"text:" + s}) << round;
      // Every piece but the last holds at least the threshold ("text+:" prefix).
      for (std::size_t i = 0; i + 1 < run.events.size(); ++i)
        ASSERT_GE(run.events[i].size() - 6, threshold) << threshold << " piece " << i;
      ASSERT_LE(run.events.size(), s.size() / threshold + 1) << threshold;
    }
  }
}

TEST(DeflateConnection, PartialModeSmallCompressedMessageIsOnePiece) {
  // Under the threshold a compressed message comes as one piece, whatever the
  // splits (the gathered bytes wait in the connection between calls).
  std::string s = json(3000);
  DeflateEncoder e(params(), Role::client);
  Bytes c;
  e.compress(test::bytes(s), true, c);
  const Bytes in = client_frame(0xC1, c);
  ConnectionConfig cfg = config(Role::server);
  cfg.partial_messages = true;
  for (std::size_t a = 0; a <= in.size(); ++a) {
    auto run = test::run_split(cfg, in, {a});
    ASSERT_EQ(run.events, std::vector<std::string>{"text:" + s}) << a;
  }
}

}  // namespace
}  // namespace duplex::protocol
