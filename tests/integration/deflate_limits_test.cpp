// permessage-deflate against hostile or broken peers, on real sockets: a
// decompression bomb is stopped with 1009 within the message size limit,
// data that does not inflate closes with 1007, RSV1 without the extension
// with 1002, and a server answering with an extension or a parameter the
// client did not offer fails the connect. Both roles: a raw client against
// the listener, a scripted raw server against the duplex client.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <duplex/error.hpp>

#include "deflate_test_support.hpp"

namespace {

using namespace std::chrono_literals;
using duplex::DeflateOptions;
using duplex::MessageWebSocket;
using duplex::protocol::Role;
using duplex::test::RawClient;
using duplex::test::upgrade_request;
using duplex::test::deflate::Client;
using duplex::test::deflate::compress_message;
using duplex::test::deflate::compressed_zeros;
using duplex::test::deflate::EchoServer;
using duplex::test::deflate::frame;
using duplex::test::deflate::peak_rss;
using duplex::test::deflate::read_until_close;
using duplex::test::deflate::ScriptedServer;

DeflateOptions on() {
  DeflateOptions d;
  d.enable = true;
  return d;
}

constexpr std::uint8_t fin_text_rsv1 = 0x80 | 0x40 | 0x1;
constexpr std::uint8_t fin_binary_rsv1 = 0x80 | 0x40 | 0x2;

// A raw client through the opening handshake, offering permessage-deflate.
// Returns the 101 answer (and what followed it in `rest`).
std::string raw_handshake(RawClient& raw, std::uint16_t port, std::string& rest,
                          std::string_view offer = "permessage-deflate") {
  if (!raw.connect(port)) return {};
  const std::string extra = "Sec-WebSocket-Extensions: " + std::string(offer) + "\r\n";
  if (!raw.send(upgrade_request("/", extra))) return {};
  std::string in;
  const auto end = duplex::test::Clock::now() + 3s;
  while (in.find("\r\n\r\n") == std::string::npos && duplex::test::Clock::now() < end)
    in += raw.read_some(100ms);
  const auto head = in.find("\r\n\r\n");
  if (head == std::string::npos) return in;
  rest = in.substr(head + 4);
  return in.substr(0, head + 4);
}

std::vector<duplex::test::deflate::Frame> raw_frames_until_close(RawClient& raw,
                                                                 std::string rest = {}) {
  return read_until_close(
      [&](std::chrono::milliseconds t, bool* closed) { return raw.read_some(t, closed); }, 10s,
      std::move(rest));
}

// --- server role -------------------------------------------------------------------

TEST(DeflateLimits, ServerAnswersTheOfferAndInflatesARawClientsMessage) {
  EchoServer server(on());
  RawClient raw;
  std::string rest;
  const auto answer = raw_handshake(raw, server.listener.local_port(), rest,
                                    "x-unknown; a=1, permessage-deflate; client_max_window_bits");
  ASSERT_EQ(answer.substr(0, 12), "HTTP/1.1 101");
  EXPECT_NE(answer.find("\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"), std::string::npos)
      << answer;
  // RFC 7692 7.2.3.1's "Hello" example, byte for byte.
  const std::string hello("\xf2\x48\xcd\xc9\xc9\x07\x00", 7);
  ASSERT_TRUE(raw.send(frame(fin_text_rsv1, hello, true)));
  ASSERT_TRUE(raw.send(frame(0x88, std::string("\x03\xe8", 2), true)));
  const auto frames = raw_frames_until_close(raw, rest);
  ASSERT_EQ(frames.size(), 2u);
  // "Hello" is under the 64-byte threshold: echoed uncompressed (no RSV1).
  EXPECT_EQ(frames[0].b0, 0x81);
  EXPECT_EQ(frames[0].payload, "Hello");
  EXPECT_EQ(frames[1].close_code(), 1000);
}

TEST(DeflateLimits, ServerStopsADecompressionBombWith1009WithinTheLimit) {
  constexpr std::uint64_t limit = 1 << 20;
  EchoServer server(on(), false, limit);
  // 256 MiB of zeros in about 256 KB: inflating it all would show in the RSS.
  const std::string bomb = compressed_zeros(256, Role::client);
  ASSERT_LT(bomb.size(), 1u << 20);
  RawClient raw;
  std::string rest;
  const auto answer = raw_handshake(raw, server.listener.local_port(), rest);
  ASSERT_EQ(answer.substr(0, 12), "HTTP/1.1 101");
  const std::size_t rss_before = peak_rss();
  ASSERT_TRUE(raw.send(frame(fin_binary_rsv1, bomb, true)));
  const auto frames = raw_frames_until_close(raw, rest);
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.back().opcode(), 0x8);
  EXPECT_EQ(frames.back().close_code(), 1009);
  EXPECT_EQ(server.messages.load(), 0);
  ASSERT_TRUE(server.closed.wait_for_count(1, 5s));
  EXPECT_EQ(server.closed.items()[0].error, duplex::error::message_too_big);
  // At most the limit plus a buffer of work, not 256 MiB.
  EXPECT_LT(peak_rss(), rss_before + (64u << 20));
}

TEST(DeflateLimits, ServerClosesInvalidCompressedDataWith1007) {
  EchoServer server(on());
  RawClient raw;
  std::string rest;
  ASSERT_EQ(raw_handshake(raw, server.listener.local_port(), rest).substr(0, 12), "HTTP/1.1 101");
  // A DEFLATE block of the reserved type 11.
  ASSERT_TRUE(raw.send(frame(fin_binary_rsv1, std::string("\xff\xff\xff\xff", 4), true)));
  const auto frames = raw_frames_until_close(raw, rest);
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.back().close_code(), 1007);
  ASSERT_TRUE(server.closed.wait_for_count(1, 5s));
  EXPECT_TRUE(server.closed.items()[0].error);
}

TEST(DeflateLimits, ServerClosesRsv1WithoutTheExtensionWith1002) {
  EchoServer server(DeflateOptions{});
  RawClient raw;
  std::string rest;
  const auto answer = raw_handshake(raw, server.listener.local_port(), rest);
  ASSERT_EQ(answer.substr(0, 12), "HTTP/1.1 101");
  EXPECT_EQ(answer.find("Sec-WebSocket-Extensions"), std::string::npos);
  ASSERT_TRUE(raw.send(frame(fin_text_rsv1, compress_message("hello", Role::client), true)));
  const auto frames = raw_frames_until_close(raw, rest);
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.back().close_code(), 1002);
}

TEST(DeflateLimits, ServerDeclinesAMalformedOfferAndStaysUncompressed) {
  EchoServer server(on());
  RawClient raw;
  std::string rest;
  const auto answer =
      raw_handshake(raw, server.listener.local_port(), rest, "permessage-deflate; =bad");
  ASSERT_EQ(answer.substr(0, 12), "HTTP/1.1 101");
  EXPECT_EQ(answer.find("Sec-WebSocket-Extensions"), std::string::npos);
}

TEST(DeflateLimits, ListenerAndControlRejectBadParameters) {
  duplex::WebSocketListenerOptions o;
  o.deflate = on();
  o.deflate.server_max_window_bits = 16;
  EXPECT_THROW(
      {
        try {
          duplex::WebSocketListener l(o);
        } catch (const std::invalid_argument& e) {
          EXPECT_NE(std::string(e.what()).find("server_max_window_bits"), std::string::npos);
          throw;
        }
      },
      std::invalid_argument);
  MessageWebSocket ws;
  DeflateOptions d = on();
  d.compression_level = 10;
  EXPECT_THROW(ws.control().deflate(d), std::invalid_argument);
  EXPECT_FALSE(ws.control().deflate().enable);  // unchanged, off by default
}

TEST(DeflateLimits, PartialMessageThresholdIsChecked) {
  // Listener option and client control: 1..64 MiB, 64 KiB by default.
  const auto expect_rejected = [](auto&& make) {
    try {
      make();
      ADD_FAILURE() << "no exception";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("partial_message_threshold: must be 1..67108864"),
                std::string::npos)
          << e.what();
    }
  };
  duplex::WebSocketListenerOptions o;
  EXPECT_EQ(o.partial_message_threshold, std::size_t{64} << 10);
  for (std::size_t bad : {std::size_t{0}, (std::size_t{64} << 20) + 1}) {
    o.partial_message_threshold = bad;
    expect_rejected([&] { duplex::WebSocketListener l(o); });
  }
  MessageWebSocket ws;
  EXPECT_EQ(ws.control().partial_message_threshold(), std::size_t{64} << 10);
  expect_rejected([&] { ws.control().partial_message_threshold(0); });
  expect_rejected([&] { ws.control().partial_message_threshold((std::size_t{64} << 20) + 1); });
  EXPECT_EQ(ws.control().partial_message_threshold(), std::size_t{64} << 10);  // unchanged
  ws.control().partial_message_threshold(1);
  EXPECT_EQ(ws.control().partial_message_threshold(), 1u);
  ws.control().partial_message_threshold(std::size_t{64} << 20);
  EXPECT_EQ(ws.control().partial_message_threshold(), std::size_t{64} << 20);
}

TEST(DeflateLimits, ListenerDefaultsBoundTheZlibStatePerConnection) {
  // The listener starts from default_server_deflate_config(), not DeflateOptions{}.
  const DeflateOptions d = duplex::WebSocketListenerOptions{}.deflate;
  EXPECT_FALSE(d.enable);
  EXPECT_TRUE(d.server_no_context_takeover);
  EXPECT_FALSE(d.client_no_context_takeover);
  EXPECT_EQ(d.client_max_window_bits, 12);
  EXPECT_TRUE(d.client_no_context_takeover_unless_window_limited);
  EXPECT_FALSE(DeflateOptions{}.server_no_context_takeover);
  EXPECT_FALSE(DeflateOptions{}.client_no_context_takeover_unless_window_limited);
}

// --- client role -------------------------------------------------------------------

TEST(DeflateLimits, ClientOffersTheConfiguredParameters) {
  ScriptedServer server("permessage-deflate; server_no_context_takeover", "");
  DeflateOptions d = on();
  d.server_no_context_takeover = true;
  d.client_max_window_bits = 12;
  Client c(d);
  c.ws.connect_async(server.url()).get();
  EXPECT_EQ(c.ws.information().extensions(), "permessage-deflate; server_no_context_takeover");
  const auto p = c.ws.information().deflate_parameters();
  ASSERT_TRUE(p.has_value());
  EXPECT_TRUE(p->server_no_context_takeover);
  EXPECT_EQ(p->client_max_window_bits, 12);  // what we announced binds us
  c.ws.close_async().get();
  ASSERT_TRUE(server.wait_done(5s));
  EXPECT_NE(server.request().find("\r\nSec-WebSocket-Extensions: permessage-deflate; "
                                  "server_no_context_takeover; client_max_window_bits=12\r\n"),
            std::string::npos)
      << server.request();
}

TEST(DeflateLimits, ClientWithoutDeflateOffersNothing) {
  ScriptedServer server("", "");
  Client c(std::nullopt);
  c.ws.connect_async(server.url()).get();
  c.ws.close_async().get();
  ASSERT_TRUE(server.wait_done(5s));
  EXPECT_EQ(server.request().find("Sec-WebSocket-Extensions"), std::string::npos);
}

TEST(DeflateLimits, ClientInflatesTheRfcExamplesFromARawServer) {
  // RFC 7692 7.2.3.1 ("Hello" compressed), then 7.2.3.3's "Hello" with no
  // compression (BTYPE 00) as one compressed message, then a message in two
  // compressed fragments (RSV1 on the first frame only).
  const std::string hello("\xf2\x48\xcd\xc9\xc9\x07\x00", 7);
  const std::string stored("\x00\x05\x00\xfa\xffHello\x00", 11);
  const std::string script =
      frame(fin_text_rsv1, hello, false) + frame(fin_text_rsv1, stored, false) +
      frame(0x40 | 0x1, hello.substr(0, 3), false) + frame(0x80 | 0x0, hello.substr(3), false);
  ScriptedServer server("permessage-deflate", script);
  Client c;
  c.ws.connect_async(server.url()).get();
  ASSERT_TRUE(c.messages.wait_for_count(3, 5s));
  for (const auto& m : c.messages.items()) EXPECT_EQ(m.data, "Hello");
  c.ws.close_async().get();
}

TEST(DeflateLimits, ClientStopsADecompressionBombWith1009) {
  const std::string bomb = compressed_zeros(256, Role::server);
  ScriptedServer server("permessage-deflate", frame(fin_binary_rsv1, bomb, false));
  Client c;
  c.ws.control().max_message_size(1 << 20);
  const std::size_t rss_before = peak_rss();
  c.ws.connect_async(server.url()).get();
  ASSERT_TRUE(c.closed.wait_for_count(1, 10s));
  EXPECT_EQ(c.closed.items()[0].error, duplex::error::message_too_big);
  EXPECT_EQ(c.messages.items().size(), 0u);
  ASSERT_TRUE(server.wait_done(10s));
  const auto frames = server.frames();
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.back().close_code(), 1009);
  EXPECT_LT(peak_rss(), rss_before + (64u << 20));
}

TEST(DeflateLimits, ClientClosesInvalidCompressedDataWith1007) {
  ScriptedServer server("permessage-deflate",
                        frame(fin_text_rsv1, std::string("\xff\xff\xff\xff", 4), false));
  Client c;
  c.ws.connect_async(server.url()).get();
  ASSERT_TRUE(c.closed.wait_for_count(1, 10s));
  EXPECT_TRUE(c.closed.items()[0].error);
  ASSERT_TRUE(server.wait_done(10s));
  const auto frames = server.frames();
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.back().close_code(), 1007);
}

TEST(DeflateLimits, ClientClosesRsv1WithoutTheExtensionWith1002) {
  ScriptedServer server("", frame(fin_text_rsv1, compress_message("hello", Role::server), false));
  Client c(std::nullopt);
  c.ws.connect_async(server.url()).get();
  ASSERT_TRUE(c.closed.wait_for_count(1, 10s));
  ASSERT_TRUE(server.wait_done(10s));
  const auto frames = server.frames();
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.back().close_code(), 1002);
}

// A connect against a server answering `extensions` fails with `expected`.
void expect_connect_fails(const std::string& extensions, std::optional<DeflateOptions> offer,
                          duplex::error expected) {
  ScriptedServer server(extensions, "", 5s);
  Client c(offer);
  auto r = c.ws.connect_async(server.url()).get_result();
  EXPECT_FALSE(r) << extensions;
  EXPECT_EQ(r.ec, expected) << extensions << ": " << r.ec.message();
  server.wait_done(6s);
}

TEST(DeflateLimits, ClientFailsTheConnectOnAnswersItDidNotOffer) {
  using duplex::error;
  // Compression not offered at all.
  expect_connect_fails("permessage-deflate", std::nullopt, error::unexpected_extension);
  // Another extension.
  expect_connect_fails("x-webkit-deflate-frame", on(), error::unexpected_extension);
  // permessage-deflate twice.
  expect_connect_fails("permessage-deflate, permessage-deflate", on(), error::unexpected_extension);
  // An unknown parameter.
  expect_connect_fails("permessage-deflate; foo", on(), error::bad_extension_offer);
  // client_max_window_bits when the offer did not name it.
  DeflateOptions no_cmwb = on();
  no_cmwb.offer_client_max_window_bits = false;
  expect_connect_fails("permessage-deflate; client_max_window_bits=10", no_cmwb,
                       error::bad_extension_offer);
  // A server window above the one offered.
  DeflateOptions small = on();
  small.server_max_window_bits = 10;
  expect_connect_fails("permessage-deflate; server_max_window_bits=12", small,
                       error::bad_extension_offer);
  // server_no_context_takeover asked for but not granted.
  DeflateOptions nct = on();
  nct.server_no_context_takeover = true;
  expect_connect_fails("permessage-deflate", nct, error::bad_extension_offer);
  // A value out of range.
  expect_connect_fails("permessage-deflate; server_max_window_bits=7", on(),
                       error::bad_extension_offer);
}

}  // namespace
