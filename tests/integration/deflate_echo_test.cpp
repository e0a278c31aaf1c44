// permessage-deflate end to end: the duplex client against the duplex server
// (WebSocketListener) with compression on: negotiation as seen by both
// sides' information, both context-takeover modes, window bits, fragmented
// and partial-mode compressed messages, large messages, the per-message
// opt-out, and a server that declines.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "deflate_test_support.hpp"

namespace {

using namespace std::chrono_literals;
using duplex::DeflateOptions;
using duplex::MessageWebSocket;
using duplex::SendOptions;
using duplex::SocketMessageType;
using duplex::StreamWebSocket;
using duplex::test::deflate::bytes;
using duplex::test::deflate::Client;
using duplex::test::deflate::EchoServer;
using duplex::test::deflate::json_text;
using duplex::test::deflate::random_bytes;

DeflateOptions on() {
  DeflateOptions d;
  d.enable = true;
  return d;
}

// Sends `texts` as utf8 messages and checks every echo, in order.
void echo_all(Client& c, const std::vector<std::string>& texts) {
  c.ws.control().message_type(SocketMessageType::utf8);
  for (const auto& t : texts) c.ws.send_async(t).get();
  ASSERT_TRUE(c.messages.wait_for_count(texts.size(), 20s));
  const auto got = c.messages.items();
  for (std::size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(got[i].type, SocketMessageType::utf8);
    EXPECT_EQ(got[i].data.size(), texts[i].size()) << "message " << i;
    EXPECT_TRUE(got[i].data == texts[i]) << "message " << i;
  }
}

std::vector<std::string> telemetry(std::size_t count, std::size_t size) {
  std::vector<std::string> v;
  for (std::size_t i = 0; i < count; ++i) v.push_back(json_text(size, static_cast<unsigned>(i)));
  return v;
}

TEST(DeflateEcho, ContextTakeoverNegotiatesAndCompressesBothWays) {
  EchoServer server(on());
  Client c;
  c.ws.connect_async(server.url()).get();
  // The duplex client offers client_max_window_bits without a value; the
  // server takes the defaults: no parameter in the answer.
  EXPECT_EQ(c.ws.information().extensions(), "permessage-deflate");
  const auto p = c.ws.information().deflate_parameters();
  ASSERT_TRUE(p.has_value());
  EXPECT_FALSE(p->server_no_context_takeover);
  EXPECT_FALSE(p->client_no_context_takeover);
  ASSERT_TRUE(server.opened.wait_for_count(1, 3s));
  const auto s = server.opened.items()[0];
  EXPECT_EQ(s.extensions, "permessage-deflate");
  ASSERT_TRUE(s.params.has_value());
  EXPECT_EQ(*s.params, *p);

  const auto texts = telemetry(50, 2000);
  echo_all(c, texts);
  // 100 KB of JSON each way: with a shared window across messages it shrinks
  // far below the text's size (frame headers included).
  const auto st = c.ws.information().bandwidth_statistics();
  EXPECT_LT(st.bytes_sent, 50u * 2000 / 5);
  EXPECT_LT(st.bytes_received, 50u * 2000 / 5);
  c.ws.close_async().get();
  ASSERT_TRUE(server.closed.wait_for_count(1, 3s));
  EXPECT_EQ(server.closed.items()[0].code, 1000);
  EXPECT_FALSE(server.closed.items()[0].error);
}

TEST(DeflateEcho, ClientAsksNoContextTakeoverBothWays) {
  EchoServer server(on());
  DeflateOptions d = on();
  d.server_no_context_takeover = true;
  d.client_no_context_takeover = true;
  Client c(d);
  c.ws.connect_async(server.url()).get();
  EXPECT_EQ(c.ws.information().extensions(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
  const auto p = c.ws.information().deflate_parameters();
  ASSERT_TRUE(p.has_value());
  EXPECT_TRUE(p->server_no_context_takeover);
  EXPECT_TRUE(p->client_no_context_takeover);
  const auto texts = telemetry(50, 2000);
  echo_all(c, texts);
  // Each message compressed alone: still well below the text's size.
  const auto st = c.ws.information().bandwidth_statistics();
  EXPECT_LT(st.bytes_sent, 50u * 2000 / 2);
  EXPECT_LT(st.bytes_received, 50u * 2000 / 2);
  c.ws.close_async().get();
}

TEST(DeflateEcho, ServerImposesNoContextTakeoverAndSmallWindows) {
  DeflateOptions sd = on();
  sd.server_no_context_takeover = true;
  sd.client_no_context_takeover = true;
  sd.server_max_window_bits = 10;
  sd.client_max_window_bits = 11;
  EchoServer server(sd);
  Client c;  // offers the defaults, client_max_window_bits without a value
  c.ws.connect_async(server.url()).get();
  EXPECT_EQ(c.ws.information().extensions(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=10; client_max_window_bits=11");
  const auto p = c.ws.information().deflate_parameters();
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->server_max_window_bits, 10);
  EXPECT_EQ(p->client_max_window_bits, 11);
  // Messages larger than both windows, so back-references must respect them.
  echo_all(c, telemetry(10, 20000));
  c.ws.close_async().get();
}

TEST(DeflateEcho, ClientLimitsTheServerWindow) {
  EchoServer server(on());
  DeflateOptions d = on();
  d.server_max_window_bits = 9;
  d.client_max_window_bits = 12;
  Client c(d);
  c.ws.connect_async(server.url()).get();
  EXPECT_EQ(c.ws.information().extensions(),
            "permessage-deflate; server_max_window_bits=9; client_max_window_bits=12");
  echo_all(c, telemetry(10, 20000));
  c.ws.close_async().get();
}

TEST(DeflateEcho, FragmentedCompressedMessages) {
  EchoServer server(on());
  Client c;
  c.ws.connect_async(server.url()).get();
  c.ws.control().message_type(SocketMessageType::utf8);
  // One message in pieces of uneven sizes; the piece boundaries split
  // multi-byte UTF-8 sequences too.
  std::string text;
  for (int i = 0; i < 3000; ++i) text += "caf\xC3\xA9 \xE2\x9C\x93 " + std::to_string(i % 10) + ";";
  const std::size_t cuts[] = {1, 4, 1000, 1001, 5003, 20000, text.size()};
  std::size_t at = 0;
  for (std::size_t cut : cuts) {
    auto piece = bytes(text).subspan(at, cut - at);
    if (cut == text.size())
      c.ws.send_final_frame_async(piece).get();
    else
      c.ws.send_nonfinal_frame_async(piece).get();
    at = cut;
  }
  // And a second fragmented message right after, on the same context.
  const std::string second = json_text(30000, 7);
  c.ws.send_nonfinal_frame_async(bytes(second).first(12345)).get();
  c.ws.send_final_frame_async(bytes(second).subspan(12345)).get();
  ASSERT_TRUE(c.messages.wait_for_count(2, 10s));
  const auto got = c.messages.items();
  EXPECT_TRUE(got[0].data == text);
  EXPECT_TRUE(got[1].data == second);
  EXPECT_LT(c.ws.information().bandwidth_statistics().bytes_sent,
            (text.size() + second.size()) / 4);
  c.ws.close_async().get();
}

TEST(DeflateEcho, PartialModeReceivesACompressedMessageInPieces) {
  EchoServer server(on());
  Client c;
  c.ws.control().receive_mode(duplex::MessageWebSocketReceiveMode::partial_message);
  c.ws.connect_async(server.url()).get();
  c.ws.control().message_type(SocketMessageType::binary);
  const std::string big = json_text(8 << 20, 3);
  c.ws.send_async(big).get();
  // Pieces until the one marked complete; their concatenation is the message.
  std::string all;
  std::size_t pieces = 0;
  const auto end = duplex::test::Clock::now() + 30s;
  bool complete = false;
  while (!complete && duplex::test::Clock::now() < end) {
    if (!c.messages.wait_for_count(pieces + 1, 1s)) continue;
    const auto got = c.messages.items();
    for (; pieces < got.size(); ++pieces) {
      all += got[pieces].data;
      complete = got[pieces].complete;
    }
  }
  ASSERT_TRUE(complete);
  EXPECT_EQ(all.size(), big.size());
  EXPECT_TRUE(all == big);
  // 8 MiB inflated from far fewer bytes: delivered as it inflates, not at once.
  EXPECT_GT(pieces, 1u);
  c.ws.close_async().get();
}

TEST(DeflateEcho, StreamSocketsCompressBothWays) {
  EchoServer server(on(), /*stream=*/true);
  StreamWebSocket c;
  c.control().deflate(on());
  c.connect_async(server.url()).get();
  ASSERT_TRUE(c.information().deflate_parameters().has_value());
  const std::string text = json_text(4 << 20, 11);
  auto write = c.output_stream().write_async(bytes(text));
  std::string in(text.size(), '\0');
  std::size_t got = 0;
  const auto end = duplex::test::Clock::now() + 30s;
  while (got < in.size() && duplex::test::Clock::now() < end) {
    auto span = std::span(reinterpret_cast<std::byte*>(in.data()) + got, in.size() - got);
    const std::size_t n = c.input_stream().read_async(span).get();
    if (n == 0) break;
    got += n;
  }
  write.get();
  ASSERT_EQ(got, in.size());
  EXPECT_TRUE(in == text);
  const auto st = c.information().bandwidth_statistics();
  EXPECT_LT(st.bytes_sent, text.size() / 4);
  EXPECT_LT(st.bytes_received, text.size() / 4);
  c.close_async().get();
}

TEST(DeflateEcho, LargeMessagesCompressibleAndNot) {
  EchoServer server(on());
  Client c;
  c.ws.connect_async(server.url()).get();
  c.ws.control().message_type(SocketMessageType::binary);
  const std::string compressible = json_text(16 << 20, 5);
  const std::string noise = random_bytes(4 << 20);
  c.ws.send_async(compressible).get();
  c.ws.send_async(noise).get();
  ASSERT_TRUE(c.messages.wait_for_count(2, 60s));
  const auto got = c.messages.items();
  EXPECT_TRUE(got[0].data == compressible);
  EXPECT_TRUE(got[1].data == noise);
  // Noise does not shrink: about its own size; JSON a fraction of its.
  const auto st = c.ws.information().bandwidth_statistics();
  EXPECT_LT(st.bytes_sent, noise.size() + compressible.size() / 4);
  EXPECT_GT(st.bytes_sent, noise.size());
  c.ws.close_async().get();
}

TEST(DeflateEcho, SendOptionsOptsOutPerMessage) {
  EchoServer server(on());
  Client c;
  c.ws.connect_async(server.url()).get();
  c.ws.control().message_type(SocketMessageType::utf8);
  const std::string text = json_text(64 * 1024, 9);
  // Wire bytes sent, read once the echo is back (so the write has completed).
  const auto sent_after_echo = [&](std::size_t n) {
    EXPECT_TRUE(c.messages.wait_for_count(n, 10s));
    return c.ws.information().bandwidth_statistics().bytes_sent;
  };
  c.ws.send_async(text, SendOptions{.compress = false}).get();
  const auto plain = sent_after_echo(1);
  EXPECT_GE(plain, text.size());  // sent as is
  c.ws.send_async(text).get();
  const auto compressed = sent_after_echo(2) - plain;
  EXPECT_LT(compressed, text.size() / 4);
  // A fragmented message follows its first piece's option.
  c.ws.send_nonfinal_frame_async(bytes(text).first(1000), SendOptions{.compress = false}).get();
  c.ws.send_final_frame_async(bytes(text).subspan(1000)).get();
  const auto third = sent_after_echo(3) - plain - compressed;
  EXPECT_GE(third, text.size());
  for (const auto& m : c.messages.items()) EXPECT_TRUE(m.data == text);
  c.ws.close_async().get();
}

TEST(DeflateEcho, SmallMessagesUnderTheThresholdStayUncompressed) {
  EchoServer server(on());
  DeflateOptions d = on();
  d.compress_threshold = 1000;
  Client c(d);
  c.ws.connect_async(server.url()).get();
  c.ws.control().message_type(SocketMessageType::utf8);
  const std::string small = json_text(999, 2);
  c.ws.send_async(small).get();
  ASSERT_TRUE(c.messages.wait_for_count(1, 5s));
  EXPECT_GE(c.ws.information().bandwidth_statistics().bytes_sent, small.size());
  EXPECT_TRUE(c.messages.items()[0].data == small);
  c.ws.close_async().get();
}

TEST(DeflateEcho, ServerWithoutDeflateDeclines) {
  EchoServer server(DeflateOptions{});
  Client c;
  c.ws.connect_async(server.url()).get();
  EXPECT_EQ(c.ws.information().extensions(), "");
  EXPECT_FALSE(c.ws.information().deflate_parameters().has_value());
  ASSERT_TRUE(server.opened.wait_for_count(1, 3s));
  EXPECT_FALSE(server.opened.items()[0].params.has_value());
  const auto texts = telemetry(3, 5000);
  echo_all(c, texts);
  c.ws.close_async().get();
  // Read after the close completed: by then every write's count is published
  // (an echo can be delivered before its own write's completion is handled).
  EXPECT_GE(c.ws.information().bandwidth_statistics().bytes_sent, 15000u);
}

TEST(DeflateEcho, ClientWithoutDeflateGetsNoExtension) {
  EchoServer server(on());
  Client c(std::nullopt);
  c.ws.connect_async(server.url()).get();
  EXPECT_EQ(c.ws.information().extensions(), "");
  ASSERT_TRUE(server.opened.wait_for_count(1, 3s));
  EXPECT_EQ(server.opened.items()[0].extensions, "");
  echo_all(c, telemetry(2, 3000));
  c.ws.close_async().get();
}

TEST(DeflateEcho, CompressesOverTls) {
  static const duplex::test::TestCertificates certs;
  ASSERT_TRUE(certs.ok());
  duplex::ListenerTlsOptions tls;
  tls.certificate_chain_file = certs.file("server.pem");
  tls.private_key_file = certs.file("server.key");
  EchoServer server(on(), false, std::uint64_t{64} << 20, tls);
  Client c;
  c.ws.control().trusted_ca_file(certs.file("ca.pem"));
  c.ws.connect_async(server.url()).get();
  ASSERT_TRUE(c.ws.information().deflate_parameters().has_value());
  ASSERT_TRUE(c.ws.information().server_certificate().has_value());
  const auto texts = telemetry(20, 5000);
  echo_all(c, texts);
  c.ws.close_async().get();
}

TEST(DeflateEcho, ManyConnectionsWithoutContextTakeover) {
  DeflateOptions sd = on();
  sd.server_no_context_takeover = true;
  sd.client_no_context_takeover = true;
  EchoServer server(sd);
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 20; ++i) {
    clients.push_back(std::make_unique<Client>());
    clients.back()->ws.connect_async(server.url()).get();
    clients.back()->ws.control().message_type(SocketMessageType::utf8);
  }
  // Interleaved messages on every connection: the per-loop zlib streams they
  // borrow never mix one connection's data with another's.
  for (int round = 0; round < 5; ++round)
    for (std::size_t i = 0; i < clients.size(); ++i)
      clients[i]->ws.send_async(json_text(3000, static_cast<unsigned>(round * 100 + i))).get();
  for (std::size_t i = 0; i < clients.size(); ++i) {
    ASSERT_TRUE(clients[i]->messages.wait_for_count(5, 10s));
    const auto got = clients[i]->messages.items();
    for (int round = 0; round < 5; ++round)
      EXPECT_TRUE(got[static_cast<std::size_t>(round)].data ==
                  json_text(3000, static_cast<unsigned>(round * 100 + i)));
  }
  for (auto& c : clients) c->ws.close_async().get();
}

}  // namespace
