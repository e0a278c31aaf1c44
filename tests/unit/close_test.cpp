// RFC 6455 5.5.1 and 7.4: close payloads and codes.
#include <duplex/error.hpp>
#include <duplex/protocol/close.hpp>

#include <gtest/gtest.h>

#include "protocol_test_util.hpp"

namespace duplex::protocol {
namespace {

using test::Bytes;
using test::bytes;

TEST(CloseCode, RegisteredCodesAreValid) {
  for (int c : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
    EXPECT_TRUE(is_valid_close_code(static_cast<std::uint16_t>(c))) << c;
}

TEST(CloseCode, ReservedAndUnassignedCodesAreInvalid) {
  for (int c : {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535})
    EXPECT_FALSE(is_valid_close_code(static_cast<std::uint16_t>(c))) << c;
}

TEST(CloseCode, ApplicationRangeIsValidEverywhere) {
  for (int c = 0; c <= 65535; ++c) {
    const bool expect =
        (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
    ASSERT_EQ(is_valid_close_code(static_cast<std::uint16_t>(c)), expect) << c;
  }
}

TEST(ClosePayload, EmptyMeansNoStatus) {
  CloseInfo info;
  EXPECT_FALSE(parse_close_payload({}, info));
  EXPECT_EQ(info.code, close_code::no_status);
  EXPECT_TRUE(info.reason.empty());
}

TEST(ClosePayload, OneByteIsInvalid) {
  CloseInfo info;
  EXPECT_EQ(parse_close_payload(bytes({0x03}), info), error::invalid_close_payload);
}

TEST(ClosePayload, ParsesCodeAndReason) {
  CloseInfo info;
  const Bytes p = test::cat(bytes({0x03, 0xE8}), test::bytes("bye \xe2\x82\xac"));
  EXPECT_FALSE(parse_close_payload(p, info));
  EXPECT_EQ(info.code, 1000);
  EXPECT_EQ(info.reason, "bye \xe2\x82\xac");
}

TEST(ClosePayload, CodeOnly) {
  CloseInfo info;
  EXPECT_FALSE(parse_close_payload(bytes({0x0F, 0xA0}), info));
  EXPECT_EQ(info.code, 4000);
  EXPECT_TRUE(info.reason.empty());
}

TEST(ClosePayload, RejectsInvalidCodes) {
  for (int c : {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000}) {
    CloseInfo info;
    EXPECT_EQ(parse_close_payload(bytes({c >> 8, c & 0xFF}), info), error::invalid_close_code) << c;
  }
}

TEST(ClosePayload, RejectsInvalidUtf8Reason) {
  CloseInfo info;
  EXPECT_EQ(parse_close_payload(bytes({0x03, 0xE8, 0xCE, 0xBA, 0xED, 0xA0, 0x80}), info),
            error::invalid_utf8);
  EXPECT_EQ(parse_close_payload(bytes({0x03, 0xE8, 'a', 0xE2, 0x82}), info), error::invalid_utf8);
}

TEST(ClosePayload, RejectsOver125Bytes) {
  Bytes p = bytes({0x03, 0xE8});
  p.resize(126, std::byte{'x'});
  CloseInfo info;
  EXPECT_EQ(parse_close_payload(p, info), error::control_too_long);
  p.resize(125);
  EXPECT_FALSE(parse_close_payload(p, info));
  EXPECT_EQ(info.reason.size(), 123u);
}

TEST(ClosePayload, WritesCodeInNetworkOrderThenReason) {
  std::array<std::byte, 125> out{};
  const std::size_t n = write_close_payload(1001, "away", out);
  ASSERT_EQ(n, 6u);
  EXPECT_EQ(Bytes(out.begin(), out.begin() + 6),
            test::cat(bytes({0x03, 0xE9}), test::bytes("away")));
}

TEST(ClosePayload, NoStatusWritesNothing) {
  std::array<std::byte, 125> out{};
  EXPECT_EQ(write_close_payload(close_code::no_status, {}, out), 0u);
}

TEST(ClosePayload, WriteThenParseRoundTrips) {
  for (int c : {1000, 1003, 1011, 3000, 4999}) {
    std::array<std::byte, 125> out{};
    const std::size_t n = write_close_payload(static_cast<std::uint16_t>(c), "r\xc3\xa9", out);
    CloseInfo info;
    EXPECT_FALSE(parse_close_payload(std::span(out).first(n), info));
    EXPECT_EQ(info.code, c);
    EXPECT_EQ(info.reason, "r\xc3\xa9");
  }
}

TEST(CloseArguments, AcceptsValidCloses) {
  EXPECT_TRUE(check_close_arguments(1000, "").empty());
  EXPECT_TRUE(check_close_arguments(4000, "done \xe2\x9c\x93").empty());
  EXPECT_TRUE(check_close_arguments(close_code::no_status, "").empty());
  EXPECT_TRUE(check_close_arguments(1000, std::string(123, 'a')).empty());
}

TEST(CloseArguments, NamesTheBrokenRule) {
  EXPECT_NE(check_close_arguments(1006, "").find("code"), std::string_view::npos);
  EXPECT_NE(check_close_arguments(999, "").find("code"), std::string_view::npos);
  EXPECT_NE(check_close_arguments(1000, std::string(124, 'a')).find("123 bytes"),
            std::string_view::npos);
  EXPECT_NE(check_close_arguments(1000, "\xff").find("UTF-8"), std::string_view::npos);
  EXPECT_NE(check_close_arguments(close_code::no_status, "x").find("reason"),
            std::string_view::npos);
}

}  // namespace
}  // namespace duplex::protocol
