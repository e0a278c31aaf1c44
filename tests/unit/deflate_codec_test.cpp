// permessage-deflate data path: RFC 7692 7.2.3 examples byte for byte, round
// trips, limits, invalid data, stream borrowing.
#include <duplex/error.hpp>
#include <duplex/protocol/connection.hpp>
#include <duplex/protocol/deflate.hpp>

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace duplex::protocol {
namespace {

using Bytes = std::vector<std::byte>;

Bytes hex(std::string_view s) {
  Bytes out;
  int hi = -1;
  for (char c : s) {
    int v;
    if (c >= '0' && c <= '9')
      v = c - '0';
    else if (c >= 'a' && c <= 'f')
      v = c - 'a' + 10;
    else
      continue;
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<std::byte>(hi * 16 + v));
      hi = -1;
    }
  }
  return out;
}

Bytes bytes(std::string_view s) {
  Bytes b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}

std::string text(const Bytes& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

DeflateParams params(bool no_context_takeover) {
  DeflateParams p;
  p.server_no_context_takeover = no_context_takeover;
  p.client_no_context_takeover = no_context_takeover;
  p.compress_threshold = 0;
  return p;
}

Bytes compress(DeflateEncoder& e, std::string_view s) {
  Bytes out;
  e.compress(bytes(s), true, out);
  return out;
}

std::error_code inflate(DeflateDecoder& d, const Bytes& in, Bytes& out,
                        std::uint64_t max = ConnectionConfig::unlimited) {
  out.clear();
  return d.inflate(in, true, out, max);
}

// JSON-like text, deterministic.
std::string json(std::size_t size, std::uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::string s = "[";
  while (s.size() < size) {
    s += "{\"id\":" + std::to_string(rng() % 100000) + ",\"name\":\"user" +
         std::to_string(rng() % 1000) + "\",\"active\":" + ((rng() & 1) ? "true" : "false") +
         ",\"score\":" + std::to_string(rng() % 1000) + "." + std::to_string(rng() % 100) + "},";
  }
  s.resize(size);
  return s;
}

Bytes random_bytes(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  Bytes b(n);
  for (auto& x : b) x = static_cast<std::byte>(rng());
  return b;
}

// --- RFC 7692 7.2.3 examples -----------------------------------------------------------

TEST(DeflateEncoder, HelloIsRfcExample) {
  // RFC 7692 7.2.3.1: "Hello" is f2 48 cd c9 c9 07 00.
  DeflateEncoder e(params(true), Role::server);
  EXPECT_EQ(compress(e, "Hello"), hex("f2 48 cd c9 c9 07 00"));
}

TEST(DeflateEncoder, NoContextTakeoverRepeatsTheSameBytes) {
  // RFC 7692 7.2.3.2: without takeover both messages compress alike.
  for (Role role : {Role::client, Role::server}) {
    DeflateEncoder e(params(true), role);
    EXPECT_EQ(compress(e, "Hello"), hex("f2 48 cd c9 c9 07 00"));
    EXPECT_EQ(compress(e, "Hello"), hex("f2 48 cd c9 c9 07 00"));
    EXPECT_EQ(e.memory_in_use(), 0u);
  }
}

TEST(DeflateEncoder, ContextTakeoverSharesTheWindow) {
  // RFC 7692 7.2.3.2: the second "Hello" is a back-reference, f2 00 11 00 00.
  for (int level : {1, 3, 6, 9}) {
    DeflateParams p = params(false);
    p.compression_level = level;
    DeflateEncoder e(p, Role::client);
    EXPECT_EQ(compress(e, "Hello"), hex("f2 48 cd c9 c9 07 00")) << level;
    EXPECT_EQ(compress(e, "Hello"), hex("f2 00 11 00 00")) << level;
    EXPECT_GT(e.memory_in_use(), 0u);
  }
}

TEST(DeflateEncoder, EmptyMessageIsOneByte) {
  // RFC 7692 7.2.3.6: an empty message is an empty stored block without its tail.
  DeflateEncoder fresh(params(true), Role::server);
  EXPECT_EQ(compress(fresh, ""), hex("00"));
  // With takeover, after a message zlib has nothing to flush: still 0x00.
  DeflateEncoder e(params(false), Role::server);
  compress(e, "Hello");
  EXPECT_EQ(compress(e, ""), hex("00"));
  EXPECT_EQ(compress(e, "Hello"), hex("f2 00 11 00 00"));
}

TEST(DeflateEncoder, FragmentsEndOnSyncFlush) {
  DeflateEncoder e(params(true), Role::client);
  Bytes a, b, c;
  e.compress(bytes("Hel"), false, a);
  EXPECT_TRUE(e.in_message());
  e.compress(bytes("lo"), false, b);
  e.compress({}, true, c);
  EXPECT_FALSE(e.in_message());
  // Non-final pieces keep their 00 00 ff ff; the empty last piece is 0x00.
  ASSERT_GE(a.size(), 4u);
  EXPECT_EQ(Bytes(a.end() - 4, a.end()), hex("00 00 ff ff"));
  EXPECT_EQ(Bytes(b.end() - 4, b.end()), hex("00 00 ff ff"));
  EXPECT_EQ(c, hex("00"));
  DeflateDecoder d(params(true), Role::server);
  Bytes out;
  ASSERT_FALSE(d.inflate(a, false, out, 100));
  ASSERT_FALSE(d.inflate(b, false, out, 100));
  ASSERT_FALSE(d.inflate(c, true, out, 100));
  EXPECT_EQ(text(out), "Hello");
}

TEST(DeflateDecoder, RfcExamples) {
  struct Case {
    const char* name;
    const char* payload;
  };
  // RFC 7692 7.2.3.1, 7.2.3.3, 7.2.3.4, 7.2.3.5.
  const Case cases[] = {
      {"one compressed block", "f2 48 cd c9 c9 07 00"},
      {"no compression", "00 05 00 fa ff 48 65 6c 6c 6f 00"},
      {"BFINAL set", "f3 48 cd c9 c9 07 00 00"},
      {"two blocks", "f2 48 05 00 00 00 ff ff ca c9 c9 07 00"},
  };
  for (const auto& c : cases) {
    for (bool nct : {true, false}) {
      DeflateDecoder d(params(nct), Role::client);
      Bytes out;
      ASSERT_FALSE(inflate(d, hex(c.payload), out)) << c.name;
      EXPECT_EQ(text(out), "Hello") << c.name;
      // The decoder is ready for the next message.
      ASSERT_FALSE(inflate(d, hex("f2 48 cd c9 c9 07 00"), out)) << c.name;
      EXPECT_EQ(text(out), "Hello") << c.name;
    }
  }
}

TEST(DeflateDecoder, FragmentedRfcExample) {
  // RFC 7692 7.2.3.1, fragmented: f2 48 cd | c9 c9 07 00.
  DeflateDecoder d(params(true), Role::server);
  Bytes out;
  ASSERT_FALSE(d.inflate(hex("f2 48 cd"), false, out, 100));
  EXPECT_TRUE(d.in_message());
  ASSERT_FALSE(d.inflate(hex("c9 c9 07 00"), true, out, 100));
  EXPECT_FALSE(d.in_message());
  EXPECT_EQ(text(out), "Hello");
}

TEST(DeflateDecoder, EmptyFragmentExample) {
  // RFC 7692 7.2.3.6: 0x00 alone is an empty message.
  DeflateDecoder d(params(false), Role::client);
  Bytes out;
  ASSERT_FALSE(inflate(d, hex("00"), out));
  EXPECT_TRUE(out.empty());
  // An empty payload (zlib with nothing to flush, as Python's websockets sends).
  ASSERT_FALSE(inflate(d, {}, out));
  EXPECT_TRUE(out.empty());
  ASSERT_FALSE(inflate(d, hex("f2 48 cd c9 c9 07 00"), out));
  EXPECT_EQ(text(out), "Hello");
}

TEST(DeflateDecoder, SharedWindowExample) {
  // RFC 7692 7.2.3.2: the second message refers back into the first.
  DeflateDecoder d(params(false), Role::client);
  Bytes out;
  ASSERT_FALSE(inflate(d, hex("f2 48 cd c9 c9 07 00"), out));
  ASSERT_FALSE(inflate(d, hex("f2 00 11 00 00"), out));
  EXPECT_EQ(text(out), "Hello");
  // Without takeover the back-reference points before the start: invalid.
  DeflateDecoder fresh(params(true), Role::client);
  ASSERT_FALSE(inflate(fresh, hex("f2 48 cd c9 c9 07 00"), out));
  EXPECT_EQ(inflate(fresh, hex("f2 00 11 00 00"), out), error::bad_compressed_data);
}

TEST(DeflateDecoder, WindowSurvivesBfinal) {
  // A peer that ends each message with BFINAL (RFC 7692 7.2.3.4) and keeps its
  // window: the next message may refer to the previous one.
  DeflateDecoder d(params(false), Role::client);
  Bytes out;
  ASSERT_FALSE(inflate(d, hex("f3 48 cd c9 c9 07 00"), out));
  EXPECT_EQ(text(out), "Hello");
  ASSERT_FALSE(inflate(d, hex("f2 00 11 00 00"), out));
  EXPECT_EQ(text(out), "Hello");
}

TEST(DeflateDecoder, PiecesAfterSyncFlushAndEmptyLastPiece) {
  // Python's websockets fragments: each piece ends with a sync flush, the
  // trailing 00 00 ff ff is kept on non-final pieces, the last piece is empty.
  DeflateDecoder d(params(false), Role::server);
  Bytes out;
  ASSERT_FALSE(d.inflate(hex("f2 48 cd c9 c9 07 00 00 00 ff ff"), false, out, 100));
  ASSERT_FALSE(d.inflate({}, true, out, 100));
  EXPECT_EQ(text(out), "Hello");
  ASSERT_FALSE(inflate(d, hex("f2 00 11 00 00"), out));
  EXPECT_EQ(text(out), "Hello");
}

// --- Invalid data ------------------------------------------------------------------------

TEST(DeflateDecoder, RejectsInvalidData) {
  const char* cases[] = {
      "ff ff ff ff",                    // BTYPE 11 is reserved
      "00 05 00 00 00 48 65 6c 6c 6f",  // stored block whose NLEN is not ~LEN
      "f2 48",                          // truncated in the middle of a block
      "f2 48 cd c9 c9 07",              // block not closed by the message end
      "04 c0 21 00 00",                 // dynamic block with a bad code length set
      "f2 00 11 00 00",                 // distance before the start of the window
  };
  for (const char* c : cases) {
    for (bool nct : {true, false}) {
      DeflateDecoder d(params(nct), Role::client);
      Bytes out;
      EXPECT_EQ(inflate(d, hex(c), out), error::bad_compressed_data) << c;
      EXPECT_FALSE(d.in_message());
      // After an error the next message starts afresh.
      ASSERT_FALSE(inflate(d, hex("f2 48 cd c9 c9 07 00"), out)) << c;
      EXPECT_EQ(text(out), "Hello");
    }
  }
}

TEST(DeflateDecoder, GarbageNeverCrashes) {
  // Random input: either an error or some output, never more than the limit.
  for (std::uint32_t seed = 0; seed < 500; ++seed) {
    auto in = random_bytes(1 + seed % 300, seed);
    DeflateDecoder d(params(seed % 2 == 0), Role::client);
    Bytes out;
    auto ec = inflate(d, in, out, 4096);
    if (ec) {
      EXPECT_TRUE(ec == error::bad_compressed_data || ec == error::message_too_big) << seed;
    } else {
      EXPECT_LE(out.size(), 4096u);
    }
  }
}

// --- Limits -------------------------------------------------------------------------------

Bytes zeros_compressed(std::size_t n) {
  DeflateParams p = params(true);
  p.compression_level = 9;
  DeflateEncoder e(p, Role::client);
  Bytes in(n), out;
  e.compress(in, true, out);
  return out;
}

TEST(DeflateDecoder, BombStopsAtTheLimit) {
  // 64 MiB of zeros is about 64 KiB compressed: a ratio of 1000.
  Bytes bomb = zeros_compressed(std::size_t{64} << 20);
  EXPECT_LT(bomb.size(), 100u * 1024);
  for (std::uint64_t limit :
       {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{1000}, std::uint64_t{1} << 20}) {
    DeflateDecoder d(params(true), Role::server);
    Bytes out;
    EXPECT_EQ(inflate(d, bomb, out, limit), error::message_too_big) << limit;
    // Never more than limit + 1 bytes produced.
    EXPECT_LE(out.size(), limit + 1) << limit;
    EXPECT_LE(d.message_size(), limit + 1);
  }
}

TEST(DeflateDecoder, LimitIsExact) {
  std::string s = json(10000);
  DeflateEncoder e(params(true), Role::client);
  Bytes c = compress(e, s);
  DeflateDecoder d(params(true), Role::server);
  Bytes out;
  EXPECT_FALSE(inflate(d, c, out, s.size()));
  EXPECT_EQ(text(out), s);
  EXPECT_EQ(inflate(d, c, out, s.size() - 1), error::message_too_big);
}

TEST(DeflateDecoder, LimitCoversAllPiecesOfAMessage) {
  std::string s = json(5000);
  DeflateEncoder e(params(true), Role::client);
  Bytes a, b;
  e.compress(bytes(std::string_view(s).substr(0, 2500)), false, a);
  e.compress(bytes(std::string_view(s).substr(2500)), true, b);
  DeflateDecoder d(params(true), Role::server);
  Bytes out;
  // Partial delivery: the caller empties `out` between pieces.
  ASSERT_FALSE(d.inflate(a, false, out, 4000));
  EXPECT_EQ(out.size(), 2500u);
  out.clear();
  EXPECT_EQ(d.inflate(b, true, out, 4000), error::message_too_big);
  EXPECT_LE(d.message_size(), 4001u);
}

// --- Round trips ----------------------------------------------------------------------------

TEST(DeflateCodec, RoundTripsAtManySizes) {
  const std::size_t sizes[] = {0,    1,    2,    5,     63,    64,    100,    125,   126,
                               1000, 1024, 4095, 16384, 65535, 65536, 100000, 300000};
  for (bool nct : {true, false}) {
    DeflateEncoder e(params(nct), Role::client);
    DeflateDecoder d(params(nct), Role::server);
    for (std::size_t n : sizes) {
      for (int kind = 0; kind < 2; ++kind) {
        Bytes in = kind == 0 ? bytes(json(n, static_cast<std::uint32_t>(n))) : random_bytes(n, 7);
        Bytes c, out;
        e.compress(in, true, c);
        ASSERT_FALSE(d.inflate(c, true, out, n)) << n << " " << kind << " " << nct;
        ASSERT_EQ(out, in) << n << " " << kind << " " << nct;
      }
    }
  }
}

TEST(DeflateCodec, RoundTripsEveryWindowAndLevel) {
  std::string s = json(70000, 3);
  for (int bits = 9; bits <= 15; ++bits) {
    for (int level : {-1, 0, 1, 9}) {
      DeflateParams p = params(false);
      p.server_max_window_bits = static_cast<std::uint8_t>(bits);
      p.client_max_window_bits = static_cast<std::uint8_t>(bits);
      p.compression_level = level;
      p.memory_level = bits % 9 + 1;
      DeflateEncoder e(p, Role::server);
      DeflateDecoder d(p, Role::client);
      for (int round = 0; round < 3; ++round) {
        Bytes c, out;
        e.compress(bytes(s), true, c);
        ASSERT_FALSE(d.inflate(c, true, out, s.size())) << bits << " " << level;
        ASSERT_EQ(text(out), s);
      }
    }
  }
}

TEST(DeflateCodec, EverySplitOfTheCompressedMessage) {
  // The peer's fragmentation is arbitrary: every split point gives the same message.
  for (std::string s : {std::string("Hello"), json(300, 5), std::string(500, 'a')}) {
    DeflateEncoder e(params(true), Role::client);
    Bytes c;
    e.compress(bytes(s), true, c);
    for (std::size_t cut = 0; cut <= c.size(); ++cut) {
      DeflateDecoder d(params(true), Role::server);
      Bytes out;
      ASSERT_FALSE(d.inflate(std::span(c).first(cut), false, out, 100000));
      ASSERT_FALSE(d.inflate(std::span(c).subspan(cut), true, out, 100000));
      ASSERT_EQ(text(out), s) << cut;
    }
    // With takeover: consecutive messages on one decoder, each split elsewhere.
    DeflateEncoder et(params(false), Role::client);
    DeflateDecoder dt(params(false), Role::server);
    for (std::size_t cut = 0; cut < 40; ++cut) {
      Bytes ct, out;
      et.compress(bytes(s), true, ct);
      std::size_t at = cut % (ct.size() + 1);
      ASSERT_FALSE(dt.inflate(std::span(ct).first(at), false, out, 100000));
      ASSERT_FALSE(dt.inflate(std::span(ct).subspan(at), true, out, 100000));
      ASSERT_EQ(text(out), s) << cut;
    }
  }
}

TEST(DeflateCodec, StreamedMessageInManyPieces) {
  std::string s = json(50000, 9);
  for (bool nct : {true, false}) {
    DeflateEncoder e(params(nct), Role::client);
    DeflateDecoder d(params(nct), Role::server);
    for (int round = 0; round < 3; ++round) {
      std::vector<Bytes> frames;
      for (std::size_t i = 0; i < s.size(); i += 7000) {
        Bytes f;
        auto piece = std::string_view(s).substr(i, 7000);
        e.compress(bytes(piece), i + 7000 >= s.size(), f);
        frames.push_back(f);
      }
      Bytes out;
      for (std::size_t i = 0; i < frames.size(); ++i)
        ASSERT_FALSE(d.inflate(frames[i], i + 1 == frames.size(), out, s.size()));
      ASSERT_EQ(text(out), s);
    }
  }
}

TEST(DeflateCodec, InteroperatesWithPlainZlib) {
  // A peer using zlib directly: raw deflate, sync flush, tail removed.
  std::string s = json(20000, 11);
  z_stream z{};
  ASSERT_EQ(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  DeflateDecoder d(params(false), Role::client);
  DeflateEncoder e(params(false), Role::server);
  z_stream zi{};
  ASSERT_EQ(inflateInit2(&zi, -15), Z_OK);
  for (int round = 0; round < 3; ++round) {
    Bytes c(s.size() + 1024);
    z.next_in = reinterpret_cast<Bytef*>(s.data());
    z.avail_in = static_cast<uInt>(s.size());
    z.next_out = reinterpret_cast<Bytef*>(c.data());
    z.avail_out = static_cast<uInt>(c.size());
    ASSERT_EQ(deflate(&z, Z_SYNC_FLUSH), Z_OK);
    c.resize(c.size() - z.avail_out - 4);
    Bytes out;
    ASSERT_FALSE(inflate(d, c, out));
    ASSERT_EQ(text(out), s);

    // And the other way: our output plus the tail inflates with plain zlib.
    Bytes ours = compress(e, s);
    ours.insert(ours.end(), {std::byte{0}, std::byte{0}, std::byte{0xff}, std::byte{0xff}});
    std::string back(s.size(), '\0');
    zi.next_in = reinterpret_cast<Bytef*>(ours.data());
    zi.avail_in = static_cast<uInt>(ours.size());
    zi.next_out = reinterpret_cast<Bytef*>(back.data());
    zi.avail_out = static_cast<uInt>(back.size());
    int rc = ::inflate(&zi, Z_SYNC_FLUSH);
    ASSERT_TRUE(rc == Z_OK || rc == Z_BUF_ERROR);
    ASSERT_EQ(zi.avail_out, 0u);
    ASSERT_EQ(back, s);
  }
  deflateEnd(&z);
  inflateEnd(&zi);
}

// --- Parameters and memory ----------------------------------------------------------------

TEST(DeflateCodec, EightBitWindowMeansUncompressed) {
  DeflateParams p = params(false);
  p.server_max_window_bits = 8;
  EXPECT_FALSE(p.can_compress(Role::server));
  EXPECT_TRUE(p.can_compress(Role::client));
  DeflateEncoder server(p, Role::server);
  EXPECT_FALSE(server.enabled());
  EXPECT_FALSE(server.should_compress(1000));
  DeflateEncoder client(p, Role::client);
  EXPECT_TRUE(client.enabled());
  // The client inflates what an 8-bit (or, from zlib, 9-bit) server sends.
  DeflateParams nine = p;
  nine.server_max_window_bits = 9;
  DeflateEncoder peer(nine, Role::server);
  DeflateDecoder d(p, Role::client);
  std::string s = json(5000);
  Bytes c, out;
  peer.compress(bytes(s), true, c);
  ASSERT_FALSE(d.inflate(c, true, out, s.size()));
  EXPECT_EQ(text(out), s);
}

TEST(DeflateCodec, Threshold) {
  DeflateParams p = params(true);
  p.compress_threshold = 100;
  DeflateEncoder e(p, Role::client);
  EXPECT_FALSE(e.should_compress(99));
  EXPECT_TRUE(e.should_compress(100));
  DeflateEncoder none;
  EXPECT_FALSE(none.enabled());
  EXPECT_FALSE(none.should_compress(1000));
}

TEST(DeflateCodec, NoContextTakeoverHoldsNoMemoryWhileIdle) {
  trim_deflate_cache();
  std::size_t base = zlib_memory_in_use();
  {
    std::vector<DeflateEncoder> enc;
    std::vector<DeflateDecoder> dec;
    for (int i = 0; i < 50; ++i) {
      enc.emplace_back(params(true), Role::server);
      dec.emplace_back(params(true), Role::server);
    }
    std::string s = json(2000);
    for (int i = 0; i < 50; ++i) {
      Bytes c, out;
      enc[i].compress(bytes(s), true, c);
      ASSERT_FALSE(dec[i].inflate(c, true, out, s.size()));
      EXPECT_EQ(enc[i].memory_in_use(), 0u);
      EXPECT_EQ(dec[i].memory_in_use(), 0u);
    }
    // One deflate and one inflate stream serve them all, cached for the thread.
    std::size_t cached = zlib_memory_in_use() - base;
    EXPECT_GT(cached, 0u);
    EXPECT_LT(cached, 400u * 1024);
    // A message in progress holds a stream; finishing it gives it back.
    Bytes c;
    enc[0].compress(bytes(s), false, c);
    EXPECT_GT(enc[0].memory_in_use(), 0u);
    enc[1].compress(bytes(s), false, c);
    EXPECT_GT(enc[1].memory_in_use(), 0u);
    enc[0].compress({}, true, c);
    enc[1].abort_message();
    EXPECT_EQ(enc[0].memory_in_use(), 0u);
    EXPECT_EQ(enc[1].memory_in_use(), 0u);
  }
  trim_deflate_cache();
  EXPECT_EQ(zlib_memory_in_use(), base);
}

TEST(DeflateCodec, ContextTakeoverKeepsItsStreams) {
  trim_deflate_cache();
  std::size_t base = zlib_memory_in_use();
  {
    DeflateEncoder e(params(false), Role::client);
    DeflateDecoder d(params(false), Role::client);
    // Nothing until the first message.
    EXPECT_EQ(e.memory_in_use(), 0u);
    EXPECT_EQ(zlib_memory_in_use(), base);
    Bytes c, out;
    e.compress(bytes(json(3000)), true, c);
    ASSERT_FALSE(d.inflate(c, true, out, 1u << 20));
    // deflate: 2^(15+2) window + 2^(8+9) hash and more; inflate: 32 KiB window + state.
    EXPECT_GT(e.memory_in_use(), 256u * 1024);
    EXPECT_GT(d.memory_in_use(), 32u * 1024);
    EXPECT_EQ(zlib_memory_in_use() - base, e.memory_in_use() + d.memory_in_use());
    DeflateEncoder moved = std::move(e);
    EXPECT_EQ(e.memory_in_use(), 0u);
    EXPECT_GT(moved.memory_in_use(), 0u);
  }
  EXPECT_EQ(zlib_memory_in_use(), base);
}

TEST(DeflateCodec, SteadyStateReusesBuffers) {
  std::string s = json(1000);
  for (bool nct : {true, false}) {
    DeflateEncoder e(params(nct), Role::client);
    DeflateDecoder d(params(nct), Role::server);
    Bytes c, out;
    // Warm up, then the buffers keep their storage.
    for (int i = 0; i < 3; ++i) {
      c.clear();
      out.clear();
      e.compress(bytes(s), true, c);
      ASSERT_FALSE(d.inflate(c, true, out, s.size()));
    }
    const std::byte* cp = c.data();
    const std::byte* op = out.data();
    for (int i = 0; i < 100; ++i) {
      c.clear();
      out.clear();
      e.compress(bytes(s), true, c);
      ASSERT_FALSE(d.inflate(c, true, out, s.size()));
      ASSERT_EQ(c.data(), cp);
      ASSERT_EQ(out.data(), op);
    }
    EXPECT_EQ(text(out), s);
  }
}

}  // namespace
}  // namespace duplex::protocol
