// RFC 6455 5.2 frame header codec: byte-exact vectors (5.7 examples), length
// encodings, structural errors, every split.
#include <duplex/error.hpp>
#include <duplex/protocol/frame.hpp>

#include <gtest/gtest.h>

#include "protocol_test_util.hpp"

namespace duplex::protocol {
namespace {

using test::Bytes;
using test::bytes;

std::size_t parse(const Bytes& b, FrameHeader& h, std::error_code& ec) {
  return parse_frame_header(std::span<const std::byte>(b), h, ec);
}

Bytes write(const FrameHeader& h) {
  std::array<std::byte, max_frame_header_size> buf{};
  const std::size_t n = write_frame_header(h, buf);
  return Bytes(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
}

// --- RFC 6455 5.7 examples ------------------------------------------------------

TEST(FrameDecoder, Rfc5_7UnmaskedHello) {
  const Bytes f = bytes({0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f});
  FrameHeader h;
  std::error_code ec;
  ASSERT_EQ(parse(f, h, ec), 2u);
  EXPECT_FALSE(ec);
  EXPECT_TRUE(h.fin);
  EXPECT_EQ(h.opcode, Opcode::text);
  EXPECT_FALSE(h.masked);
  EXPECT_EQ(h.payload_length, 5u);
  EXPECT_EQ(test::str(std::span(f).subspan(2)), "Hello");
}

TEST(FrameDecoder, Rfc5_7MaskedHello) {
  Bytes f = bytes({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58});
  FrameHeader h;
  std::error_code ec;
  ASSERT_EQ(parse(f, h, ec), 6u);
  EXPECT_TRUE(h.masked);
  EXPECT_EQ(h.mask, (MaskKey{std::byte{0x37}, std::byte{0xfa}, std::byte{0x21}, std::byte{0x3d}}));
  EXPECT_EQ(h.payload_length, 5u);
  auto payload = std::span(f).subspan(6);
  EXPECT_EQ(apply_mask(payload, h.mask), 1u);
  EXPECT_EQ(test::str(payload), "Hello");
}

TEST(FrameDecoder, Rfc5_7FragmentedHello) {
  const Bytes first = bytes({0x01, 0x03, 0x48, 0x65, 0x6c});
  const Bytes second = bytes({0x80, 0x02, 0x6c, 0x6f});
  FrameHeader h;
  std::error_code ec;
  ASSERT_EQ(parse(first, h, ec), 2u);
  EXPECT_FALSE(h.fin);
  EXPECT_EQ(h.opcode, Opcode::text);
  EXPECT_EQ(h.payload_length, 3u);
  ASSERT_EQ(parse(second, h, ec), 2u);
  EXPECT_TRUE(h.fin);
  EXPECT_EQ(h.opcode, Opcode::continuation);
  EXPECT_EQ(h.payload_length, 2u);
}

TEST(FrameDecoder, Rfc5_7UnmaskedPing) {
  const Bytes f = bytes({0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f});
  FrameHeader h;
  std::error_code ec;
  ASSERT_EQ(parse(f, h, ec), 2u);
  EXPECT_EQ(h.opcode, Opcode::ping);
  EXPECT_TRUE(is_control(h.opcode));
  EXPECT_EQ(h.payload_length, 5u);
}

TEST(FrameDecoder, Rfc5_7MaskedPong) {
  Bytes f = bytes({0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58});
  FrameHeader h;
  std::error_code ec;
  ASSERT_EQ(parse(f, h, ec), 6u);
  EXPECT_EQ(h.opcode, Opcode::pong);
  auto payload = std::span(f).subspan(6);
  apply_mask(payload, h.mask);
  EXPECT_EQ(test::str(payload), "Hello");
}

TEST(FrameDecoder, Rfc5_7Binary256Header) {
  const Bytes f = bytes({0x82, 0x7E, 0x01, 0x00});
  FrameHeader h;
  std::error_code ec;
  ASSERT_EQ(parse(f, h, ec), 4u);
  EXPECT_EQ(h.opcode, Opcode::binary);
  EXPECT_EQ(h.payload_length, 256u);
}

TEST(FrameDecoder, Rfc5_7Binary64KiBHeader) {
  const Bytes f = bytes({0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00});
  FrameHeader h;
  std::error_code ec;
  ASSERT_EQ(parse(f, h, ec), 10u);
  EXPECT_EQ(h.payload_length, 65536u);
}

TEST(FrameEncoder, Rfc5_7UnmaskedHello) {
  FrameHeader h;
  h.opcode = Opcode::text;
  h.payload_length = 5;
  EXPECT_EQ(write(h), bytes({0x81, 0x05}));
}

TEST(FrameEncoder, Rfc5_7MaskedHello) {
  FrameHeader h;
  h.opcode = Opcode::text;
  h.payload_length = 5;
  h.masked = true;
  h.mask = {std::byte{0x37}, std::byte{0xfa}, std::byte{0x21}, std::byte{0x3d}};
  EXPECT_EQ(write(h), bytes({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d}));
  Bytes payload = test::bytes("Hello");
  apply_mask(payload, h.mask);
  EXPECT_EQ(payload, bytes({0x7f, 0x9f, 0x4d, 0x51, 0x58}));
}

TEST(FrameEncoder, Rfc5_7FragmentedHello) {
  FrameHeader h;
  h.fin = false;
  h.opcode = Opcode::text;
  h.payload_length = 3;
  EXPECT_EQ(write(h), bytes({0x01, 0x03}));
  h.fin = true;
  h.opcode = Opcode::continuation;
  h.payload_length = 2;
  EXPECT_EQ(write(h), bytes({0x80, 0x02}));
}

TEST(FrameEncoder, Rfc5_7PingAndPong) {
  FrameHeader h;
  h.opcode = Opcode::ping;
  h.payload_length = 5;
  EXPECT_EQ(write(h), bytes({0x89, 0x05}));
  h.opcode = Opcode::pong;
  h.masked = true;
  h.mask = {std::byte{0x37}, std::byte{0xfa}, std::byte{0x21}, std::byte{0x3d}};
  EXPECT_EQ(write(h), bytes({0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d}));
}

TEST(FrameEncoder, Rfc5_7Binary256And64KiB) {
  FrameHeader h;
  h.opcode = Opcode::binary;
  h.payload_length = 256;
  EXPECT_EQ(write(h), bytes({0x82, 0x7E, 0x01, 0x00}));
  h.payload_length = 65536;
  EXPECT_EQ(write(h), bytes({0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00}));
}

// --- Length encodings --------------------------------------------------------------

TEST(FrameEncoder, UsesMinimalLengthAtEveryBoundary) {
  const std::pair<std::uint64_t, std::size_t> cases[] = {
      {0, 2},        {1, 2},           {125, 2},
      {126, 4},      {127, 4},         {0xFFFF, 4},
      {0x10000, 10}, {0xFFFFFFFF, 10}, {0x7FFFFFFFFFFFFFFF, 10}};
  for (auto [len, size] : cases) {
    FrameHeader h;
    h.payload_length = len;
    EXPECT_EQ(frame_header_size(h), size) << len;
    EXPECT_EQ(write(h).size(), size) << len;
    h.masked = true;
    EXPECT_EQ(frame_header_size(h), size + 4) << len;
    EXPECT_EQ(write(h).size(), size + 4) << len;
  }
}

TEST(FrameCodec, RoundTripsAllFieldCombinations) {
  const std::uint64_t lengths[] = {0, 5, 125, 126, 300, 0xFFFF, 0x10000, 1ull << 40};
  for (int bits = 0; bits < 16; ++bits)
    for (int op : {0, 1, 2, 3, 8, 9, 10, 15})
      for (bool masked : {false, true})
        for (std::uint64_t len : lengths) {
          FrameHeader h;
          h.fin = bits & 1;
          h.rsv1 = bits & 2;
          h.rsv2 = bits & 4;
          h.rsv3 = bits & 8;
          h.opcode = static_cast<Opcode>(op);
          h.masked = masked;
          if (masked) h.mask = {std::byte{1}, std::byte{0x80}, std::byte{0xff}, std::byte{7}};
          h.payload_length = len;
          const Bytes w = write(h);
          FrameHeader g;
          std::error_code ec;
          ASSERT_EQ(parse(w, g, ec), w.size());
          ASSERT_FALSE(ec);
          EXPECT_EQ(g.fin, h.fin);
          EXPECT_EQ(g.rsv1, h.rsv1);
          EXPECT_EQ(g.rsv2, h.rsv2);
          EXPECT_EQ(g.rsv3, h.rsv3);
          EXPECT_EQ(g.opcode, h.opcode);
          EXPECT_EQ(g.masked, h.masked);
          EXPECT_EQ(g.mask, h.mask);
          EXPECT_EQ(g.payload_length, h.payload_length);
        }
}

TEST(FrameDecoder, ParsesLargest63BitLength) {
  const Bytes f = bytes({0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF});
  FrameHeader h;
  std::error_code ec;
  ASSERT_EQ(parse(f, h, ec), 10u);
  EXPECT_EQ(h.payload_length, 0x7FFFFFFFFFFFFFFFull);
}

TEST(FrameDecoder, RejectsLengthTopBit) {
  const Bytes f = bytes({0x82, 0x7F, 0x80, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00});
  FrameHeader h;
  std::error_code ec;
  EXPECT_EQ(parse(f, h, ec), 0u);
  EXPECT_EQ(ec, error::length_top_bit);
}

TEST(FrameDecoder, RejectsLengthTopBitAsSoonAsItsByteArrives) {
  const Bytes f = bytes({0x82, 0x7F, 0x80});
  FrameHeader h;
  std::error_code ec;
  EXPECT_EQ(parse(f, h, ec), 0u);
  EXPECT_EQ(ec, error::length_top_bit);
}

TEST(FrameDecoder, RejectsNonMinimal16BitLength) {
  for (int len : {0, 1, 125}) {
    const Bytes f = bytes({0x82, 0x7E, 0x00, len});
    FrameHeader h;
    std::error_code ec;
    EXPECT_EQ(parse(f, h, ec), 0u);
    EXPECT_EQ(ec, error::non_minimal_length) << len;
  }
}

TEST(FrameDecoder, RejectsNonMinimal64BitLength) {
  for (int hi : {0x00, 0xFF}) {
    const Bytes f = bytes({0x82, 0x7F, 0, 0, 0, 0, 0, 0, hi, 0xFF});
    FrameHeader h;
    std::error_code ec;
    EXPECT_EQ(parse(f, h, ec), 0u);
    EXPECT_EQ(ec, error::non_minimal_length);
  }
}

TEST(FrameDecoder, RejectsNonMinimal64BitLengthOnceHighBytesAreZero) {
  // The six high bytes are zero: no later byte can make the length need 64 bits.
  const Bytes f = bytes({0x82, 0x7F, 0, 0, 0, 0, 0, 0});
  FrameHeader h;
  std::error_code ec;
  EXPECT_EQ(parse(f, h, ec), 0u);
  EXPECT_EQ(ec, error::non_minimal_length);
  const Bytes g = bytes({0x82, 0x7F, 0, 0, 0, 0, 0});
  ec.clear();
  EXPECT_EQ(parse(g, h, ec), 0u);
  EXPECT_FALSE(ec);
}

TEST(FrameDecoder, AcceptsSmallest16And64BitLengths) {
  FrameHeader h;
  std::error_code ec;
  EXPECT_EQ(parse(bytes({0x82, 0x7E, 0x00, 0x7E}), h, ec), 4u);
  EXPECT_EQ(h.payload_length, 126u);
  EXPECT_EQ(parse(bytes({0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0}), h, ec), 10u);
  EXPECT_EQ(h.payload_length, 0x10000u);
  EXPECT_FALSE(ec);
}

TEST(FrameDecoder, ReportsReservedBitsAndOpcodesWithoutJudging) {
  // Semantic rules are the connection's; the codec reports the fields.
  FrameHeader h;
  std::error_code ec;
  ASSERT_EQ(parse(bytes({0xF3, 0x00}), h, ec), 2u);
  EXPECT_TRUE(h.rsv1 && h.rsv2 && h.rsv3);
  EXPECT_EQ(static_cast<int>(h.opcode), 3);
  EXPECT_FALSE(is_known_opcode(h.opcode));
}

TEST(FrameDecoder, NeedsMoreOnEveryStrictPrefix) {
  const Bytes frames[] = {
      bytes({0x81, 0x05}),
      bytes({0x81, 0x85, 1, 2, 3, 4}),
      bytes({0x82, 0x7E, 0x01, 0x00}),
      bytes({0x82, 0xFE, 0x01, 0x00, 1, 2, 3, 4}),
      bytes({0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0}),
      bytes({0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 9, 8, 7, 6}),
  };
  for (const auto& f : frames) {
    FrameHeader whole;
    std::error_code ec;
    ASSERT_EQ(parse(f, whole, ec), f.size());
    for (std::size_t cut = 0; cut < f.size(); ++cut) {
      FrameHeader h;
      std::error_code e;
      EXPECT_EQ(parse_frame_header(std::span(f).first(cut), h, e), 0u) << cut;
      EXPECT_FALSE(e) << cut;
    }
    // Trailing payload bytes do not change the header.
    Bytes longer = f;
    longer.resize(f.size() + 20, std::byte{0xAA});
    FrameHeader h;
    EXPECT_EQ(parse(longer, h, ec), f.size());
    EXPECT_EQ(h.payload_length, whole.payload_length);
    EXPECT_EQ(h.mask, whole.mask);
  }
}

TEST(FrameDecoder, IsControlAndKnownOpcodeTables) {
  for (int v = 0; v < 16; ++v) {
    const auto op = static_cast<Opcode>(v);
    EXPECT_EQ(is_control(op), v >= 8) << v;
    EXPECT_EQ(is_known_opcode(op), v <= 2 || (v >= 8 && v <= 10)) << v;
  }
}

}  // namespace
}  // namespace duplex::protocol
