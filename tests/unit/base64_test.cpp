// Base64 (RFC 4648) as used by Sec-WebSocket-Key and Sec-WebSocket-Accept.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "protocol/base64.hpp"

namespace {

using duplex::detail::base64_decode;
using duplex::detail::base64_encode;

std::string decode_to_string(std::string_view text) {
  auto bytes = base64_decode(text);
  if (!bytes) return "<invalid>";
  return std::string(bytes->begin(), bytes->end());
}

struct Vector {
  const char* plain;
  const char* encoded;
};
// RFC 4648 section 10 test vectors.
constexpr Vector rfc4648_vectors[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

TEST(Base64, EncodesRfc4648Vectors) {
  for (const auto& v : rfc4648_vectors)
    EXPECT_EQ(base64_encode(std::string_view(v.plain)), v.encoded);
}

TEST(Base64, DecodesRfc4648Vectors) {
  for (const auto& v : rfc4648_vectors)
    EXPECT_EQ(decode_to_string(v.encoded), v.plain) << v.encoded;
}

TEST(Base64, EncodesEveryByteValueAndBothHighSymbols) {
  // 0xFB 0xEF 0xFF uses '+' and '/', the two symbols outside letters and digits.
  const std::uint8_t bytes[] = {0xFB, 0xEF, 0xFF, 0x00};
  EXPECT_EQ(base64_encode(std::span<const std::uint8_t>(bytes, 3)), "++//");
  EXPECT_EQ(base64_encode(std::span<const std::uint8_t>(bytes, 4)), "++//AA==");
}

TEST(Base64, AppendsToExistingText) {
  std::string out = "key=";
  const std::uint8_t bytes[] = {'f', 'o'};
  duplex::detail::base64_encode(std::span<const std::uint8_t>(bytes), out);
  EXPECT_EQ(out, "key=Zm8=");
}

TEST(Base64, RoundTripsRandomBytesOfEveryLengthUpTo64) {
  std::mt19937 rng(6455);
  for (std::size_t n = 0; n <= 64; ++n) {
    std::vector<std::uint8_t> bytes(n);
    for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
    const auto text = base64_encode(std::span<const std::uint8_t>(bytes));
    EXPECT_EQ(text.size(), duplex::detail::base64_encoded_size(n));
    const auto back = base64_decode(text);
    ASSERT_TRUE(back.has_value()) << text;
    EXPECT_EQ(*back, bytes) << text;
    EXPECT_EQ(duplex::detail::base64_decoded_size(text), n) << text;
  }
}

TEST(Base64, DecodedSizeRefusesWhatDecodeRefuses) {
  for (const char* t : {"Z", "Zm9-", "Zm 9", "Z===", "Zg=v", "Zm8=Zm8=", "Zh==", "Zm9="}) {
    EXPECT_FALSE(base64_decode(t)) << t;
    EXPECT_FALSE(duplex::detail::base64_decoded_size(t)) << t;
  }
}

TEST(Base64, RejectsLengthNotMultipleOfFour) {
  for (const char* t : {"Z", "Zg", "Zg=", "Zm9vY", "Zm9vYmFy="})
    EXPECT_FALSE(base64_decode(t)) << t;
}

TEST(Base64, RejectsCharactersOutsideTheAlphabet) {
  // URL-safe symbols, white space and NUL are not part of the standard alphabet.
  for (const char* t : {"Zm9-", "Zm9_", "Zm 9", "Zm9v\r\n", "Zm9.", "Zm9v\tAAA"})
    EXPECT_FALSE(base64_decode(t)) << t;
  EXPECT_FALSE(base64_decode(std::string_view("Zm\0v", 4)));
}

TEST(Base64, RejectsMisplacedPadding) {
  for (const char* t : {"====", "Z===", "=g==", "Zg=v", "Zg==Zm8=", "Zm8=Zm8=", "Z=8="})
    EXPECT_FALSE(base64_decode(t)) << t;
}

TEST(Base64, RejectsNonCanonicalTrailingBits) {
  // RFC 4648 3.5: "Zh==" and "Zm9=" carry bits that the canonical form zeroes.
  EXPECT_FALSE(base64_decode("Zh=="));
  EXPECT_FALSE(base64_decode("Zm9="));
  EXPECT_EQ(decode_to_string("Zg=="), "f");
  EXPECT_EQ(decode_to_string("Zm8="), "fo");
}

}  // namespace

// base64_decodes_to(text, n) is "base64_decoded_size(text) == n", checked in
// one pass: every text of lengths 0-8 over symbols that cover each rule
// (alphabet ends, padding, a symbol with low bits set, one outside the
// alphabet) gives the same answer for every n.
TEST(Base64, DecodesToAgreesWithDecodedSizeOnEveryShortText) {
  const std::string symbols = "AZaz09+/=h-";
  std::vector<std::string> texts = {""};
  for (std::size_t len = 1; len <= 8; ++len) {
    std::vector<std::string> longer;
    for (const auto& t : texts)
      if (t.size() == len - 1)
        for (char c : symbols) {
          // Lengths that are not a multiple of 4 are refused by the size
          // check alone: a few of them suffice.
          if (len % 4 != 0 && c != 'A' && c != '=') continue;
          longer.push_back(t + c);
        }
    texts.insert(texts.end(), longer.begin(), longer.end());
  }
  for (const auto& t : texts) {
    const auto size = duplex::detail::base64_decoded_size(t);
    for (std::size_t n = 0; n <= 7; ++n)
      ASSERT_EQ(duplex::detail::base64_decodes_to(t, n), size == n) << t << " n=" << n;
  }
}

TEST(Base64, DecodesToAcceptsAWebSocketKey) {
  EXPECT_TRUE(duplex::detail::base64_decodes_to("dGhlIHNhbXBsZSBub25jZQ==", 16));
  EXPECT_FALSE(duplex::detail::base64_decodes_to("dGhlIHNhbXBsZSBub25jZR==", 16));
  EXPECT_FALSE(duplex::detail::base64_decodes_to("dGhlIHNhbXBsZSBub25jZQ=", 16));
  EXPECT_FALSE(duplex::detail::base64_decodes_to("dGhlIHNhbXBsZSBub25j ZQ=", 16));
  EXPECT_FALSE(duplex::detail::base64_decodes_to("dGhlIHNhbXBsZSBub25jZQ==", 15));
}
