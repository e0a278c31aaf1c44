// DataReader and DataWriter: exact bytes in both byte orders and encodings,
// round trips, and the errors (reading past the end, invalid text).
#include <duplex/data_reader.hpp>
#include <duplex/data_writer.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace duplex {
namespace {

std::vector<std::byte> bytes(std::initializer_list<int> values) {
  std::vector<std::byte> out;
  for (int v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

std::vector<std::byte> written(const DataWriter& w) {
  return {w.data().begin(), w.data().end()};
}

// Runs `f`, expects std::out_of_range, and returns its message.
template <class F>
std::string out_of_range_message(F&& f) {
  try {
    f();
  } catch (const std::out_of_range& e) {
    return e.what();
  }
  ADD_FAILURE() << "no std::out_of_range";
  return {};
}

TEST(DataWriter, DefaultsAreLittleEndianUtf8) {
  DataWriter w;
  EXPECT_EQ(w.byte_order(), ByteOrder::little_endian);
  EXPECT_EQ(w.unicode_encoding(), UnicodeEncoding::utf8);
  EXPECT_EQ(w.unstored_buffer_length(), 0u);
}

TEST(DataWriter, Int16LittleAndBigEndian) {
  DataWriter w;
  w.write_int16(0x1234);
  w.set_byte_order(ByteOrder::big_endian);
  w.write_int16(0x1234);
  EXPECT_EQ(written(w), bytes({0x34, 0x12, 0x12, 0x34}));
}

TEST(DataWriter, Int32LittleAndBigEndian) {
  DataWriter w;
  w.write_int32(0x01020304);
  w.set_byte_order(ByteOrder::big_endian);
  w.write_int32(0x01020304);
  EXPECT_EQ(written(w), bytes({4, 3, 2, 1, 1, 2, 3, 4}));
}

TEST(DataWriter, Uint64LittleAndBigEndian) {
  DataWriter w;
  w.write_uint64(0x0102030405060708ull);
  w.set_byte_order(ByteOrder::big_endian);
  w.write_uint64(0x0102030405060708ull);
  EXPECT_EQ(written(w), bytes({8, 7, 6, 5, 4, 3, 2, 1, 1, 2, 3, 4, 5, 6, 7, 8}));
}

TEST(DataWriter, NegativeIntegersAreTwosComplement) {
  DataWriter w;
  w.write_int16(-2);
  w.write_int32(-1);
  w.set_byte_order(ByteOrder::big_endian);
  w.write_int64(-256);
  // -2 (LE), -1 (LE), then -256 (BE).
  EXPECT_EQ(written(w), bytes({0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                               0xFF, 0xFF, 0x00}));
}

TEST(DataWriter, Uint16And32BigEndian) {
  DataWriter w;
  w.set_byte_order(ByteOrder::big_endian);
  w.write_uint16(0xBEEF);
  w.write_uint32(0xDEADBEEF);
  EXPECT_EQ(written(w), bytes({0xBE, 0xEF, 0xDE, 0xAD, 0xBE, 0xEF}));
}

TEST(DataWriter, SingleAndDoubleAreIeee754) {
  DataWriter w;
  w.write_single(1.0f);  // 0x3F800000
  w.set_byte_order(ByteOrder::big_endian);
  w.write_double(-2.0);  // 0xC000000000000000
  EXPECT_EQ(written(w), bytes({0x00, 0x00, 0x80, 0x3F, 0xC0, 0, 0, 0, 0, 0, 0, 0}));
}

TEST(DataWriter, ByteBooleanAndBytes) {
  DataWriter w;
  w.write_byte(0xAB);
  w.write_boolean(true);
  w.write_boolean(false);
  const auto payload = bytes({1, 2, 3});
  w.write_bytes(payload);
  w.write_bytes({});
  EXPECT_EQ(written(w), bytes({0xAB, 1, 0, 1, 2, 3}));
  EXPECT_EQ(w.unstored_buffer_length(), 6u);
}

TEST(DataWriter, StringUtf8ReturnsBytes) {
  DataWriter w;
  EXPECT_EQ(w.write_string("h\xC3\xA9"), 3u);  // "hé"
  EXPECT_EQ(written(w), bytes({'h', 0xC3, 0xA9}));
  EXPECT_EQ(w.write_string(""), 0u);
  EXPECT_EQ(w.unstored_buffer_length(), 3u);
}

TEST(DataWriter, StringUtf16LeAndBe) {
  DataWriter w;
  w.set_unicode_encoding(UnicodeEncoding::utf16le);
  EXPECT_EQ(w.write_string("A\xC3\xA9"), 4u);
  w.set_unicode_encoding(UnicodeEncoding::utf16be);
  EXPECT_EQ(w.write_string("A\xC3\xA9"), 4u);
  EXPECT_EQ(written(w), bytes({0x41, 0, 0xE9, 0, 0, 0x41, 0, 0xE9}));
}

TEST(DataWriter, StringUtf16SurrogatePair) {
  // U+1F600 GRINNING FACE is D83D DE00 in UTF-16.
  DataWriter w;
  w.set_unicode_encoding(UnicodeEncoding::utf16be);
  EXPECT_EQ(w.write_string("\xF0\x9F\x98\x80"), 4u);
  w.set_unicode_encoding(UnicodeEncoding::utf16le);
  EXPECT_EQ(w.write_string("\xF0\x9F\x98\x80"), 4u);
  EXPECT_EQ(written(w), bytes({0xD8, 0x3D, 0xDE, 0x00, 0x3D, 0xD8, 0x00, 0xDE}));
}

TEST(DataWriter, StringUtf16IgnoresByteOrder) {
  DataWriter w;
  w.set_byte_order(ByteOrder::big_endian);
  w.set_unicode_encoding(UnicodeEncoding::utf16le);
  w.write_string("A");
  EXPECT_EQ(written(w), bytes({0x41, 0x00}));
}

TEST(DataWriter, MeasureStringMatchesWrite) {
  DataWriter w;
  const std::string s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";  // a é € 😀
  EXPECT_EQ(w.measure_string(s), 10u);
  w.set_unicode_encoding(UnicodeEncoding::utf16le);
  EXPECT_EQ(w.measure_string(s), 10u);  // 1 + 1 + 1 + 2 units
  EXPECT_EQ(w.unstored_buffer_length(), 0u);
  EXPECT_EQ(w.write_string(s), w.measure_string(s));
}

TEST(DataWriter, InvalidUtf8IsRejectedAndWritesNothing) {
  for (const char* bad :
       {"\xFF", "ab\xC3", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xE0\x80\xAF", "\x80"}) {
    for (auto enc : {UnicodeEncoding::utf8, UnicodeEncoding::utf16le}) {
      DataWriter w;
      w.set_unicode_encoding(enc);
      w.write_byte(7);
      EXPECT_THROW(w.write_string(bad), std::invalid_argument) << bad;
      EXPECT_EQ(w.unstored_buffer_length(), 1u);
    }
  }
  DataWriter w;
  try {
    w.write_string("ok\xFF");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(
        e.what(),
        "DataWriter::write_string: value must be valid UTF-8 (invalid sequence at byte 2)");
  }
}

TEST(DataWriter, DetachBufferEmptiesAndKeepsSettings) {
  DataWriter w;
  w.set_byte_order(ByteOrder::big_endian);
  w.write_uint16(1);
  const std::vector<std::byte> out = w.detach_buffer();
  EXPECT_EQ(out, bytes({0, 1}));
  EXPECT_EQ(w.unstored_buffer_length(), 0u);
  EXPECT_TRUE(w.data().empty());
  EXPECT_EQ(w.byte_order(), ByteOrder::big_endian);
  w.write_uint16(2);
  EXPECT_EQ(written(w), bytes({0, 2}));
}

TEST(DataReader, ReadsLittleEndianByDefault) {
  const auto b = bytes({0x34, 0x12, 4, 3, 2, 1});
  DataReader r(b);
  EXPECT_EQ(r.byte_order(), ByteOrder::little_endian);
  EXPECT_EQ(r.unicode_encoding(), UnicodeEncoding::utf8);
  EXPECT_EQ(r.read_uint16(), 0x1234);
  EXPECT_EQ(r.read_int32(), 0x01020304);
  EXPECT_EQ(r.unconsumed_buffer_length(), 0u);
}

TEST(DataReader, ReadsBigEndian) {
  const auto b = bytes({0x12, 0x34, 1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8});
  DataReader r(b);
  r.set_byte_order(ByteOrder::big_endian);
  EXPECT_EQ(r.read_int16(), 0x1234);
  EXPECT_EQ(r.read_uint32(), 0x01020304u);
  EXPECT_EQ(r.read_uint64(), 0x0102030405060708ull);
}

TEST(DataReader, SignedValuesAndExtremes) {
  const auto b = bytes({0x00, 0x80, 0xFF, 0xFF, 0xFF, 0x7F, 0, 0, 0, 0, 0, 0, 0, 0x80});
  DataReader r(b);
  EXPECT_EQ(r.read_int16(), std::numeric_limits<std::int16_t>::min());
  EXPECT_EQ(r.read_int32(), std::numeric_limits<std::int32_t>::max());
  EXPECT_EQ(r.read_int64(), std::numeric_limits<std::int64_t>::min());
}

TEST(DataReader, BooleanIsAnyNonZeroByte) {
  const auto b = bytes({0, 1, 0x80});
  DataReader r(b);
  EXPECT_FALSE(r.read_boolean());
  EXPECT_TRUE(r.read_boolean());
  EXPECT_TRUE(r.read_boolean());
}

TEST(DataReader, ReadBytesAndBufferView) {
  const auto b = bytes({9, 8, 7, 6, 5});
  DataReader r(b);
  EXPECT_EQ(r.read_byte(), 9);
  std::vector<std::byte> out(2);
  r.read_bytes(out);
  EXPECT_EQ(out, bytes({8, 7}));
  const auto view = r.read_buffer(2);
  ASSERT_EQ(view.size(), 2u);
  EXPECT_EQ(view.data(), b.data() + 3);  // a view, not a copy
  EXPECT_EQ(r.unconsumed_buffer_length(), 0u);
  r.read_bytes({});  // reading nothing at the end is fine
  EXPECT_TRUE(r.read_buffer(0).empty());
}

TEST(DataReader, ReadPastEndNamesSizesAndConsumesNothing) {
  const auto b = bytes({1, 2, 3});
  DataReader r(b);
  EXPECT_EQ(out_of_range_message([&] { r.read_int32(); }),
            "DataReader::read_int32: needs 4 bytes but only 3 are unconsumed");
  EXPECT_EQ(r.unconsumed_buffer_length(), 3u);
  EXPECT_EQ(r.read_uint16(), 0x0201);
  EXPECT_EQ(out_of_range_message([&] { r.read_double(); }),
            "DataReader::read_double: needs 8 bytes but only 1 is unconsumed");
  EXPECT_EQ(r.read_byte(), 3);
  EXPECT_EQ(out_of_range_message([&] { r.read_byte(); }),
            "DataReader::read_byte: needs 1 byte but only 0 are unconsumed");
}

TEST(DataReader, EveryReadChecksTheEnd) {
  const std::vector<std::byte> empty;
  DataReader r(empty);
  std::vector<std::byte> one(1);
  EXPECT_THROW(r.read_byte(), std::out_of_range);
  EXPECT_THROW(r.read_boolean(), std::out_of_range);
  EXPECT_THROW(r.read_bytes(one), std::out_of_range);
  EXPECT_THROW(r.read_buffer(1), std::out_of_range);
  EXPECT_THROW(r.read_int16(), std::out_of_range);
  EXPECT_THROW(r.read_uint16(), std::out_of_range);
  EXPECT_THROW(r.read_int32(), std::out_of_range);
  EXPECT_THROW(r.read_uint32(), std::out_of_range);
  EXPECT_THROW(r.read_int64(), std::out_of_range);
  EXPECT_THROW(r.read_uint64(), std::out_of_range);
  EXPECT_THROW(r.read_single(), std::out_of_range);
  EXPECT_THROW(r.read_double(), std::out_of_range);
  EXPECT_THROW(r.read_string(1), std::out_of_range);
  EXPECT_EQ(r.read_string(0), "");
}

TEST(DataReader, ReadStringUtf8) {
  const std::string s = "h\xC3\xA9llo";
  DataReader r(s);
  EXPECT_EQ(r.read_string(3), "h\xC3\xA9");
  EXPECT_EQ(r.read_string(3), "llo");
}

TEST(DataReader, ReadStringUtf8RejectsSplitAndInvalid) {
  const std::string s = "h\xC3\xA9";
  DataReader r(s);
  EXPECT_THROW(r.read_string(2), std::range_error);  // ends inside "é"
  EXPECT_EQ(r.unconsumed_buffer_length(), 3u);
  const std::string bad = "a\xC0\x80";
  DataReader r2(bad);
  try {
    r2.read_string(3);
    FAIL() << "no exception";
  } catch (const std::range_error& e) {
    EXPECT_STREQ(e.what(), "DataReader::read_string: invalid UTF-8 at byte 1 of the string");
  }
  EXPECT_EQ(r2.unconsumed_buffer_length(), 3u);
}

TEST(DataReader, ReadStringUtf16CountsCodeUnits) {
  // "A€😀" in UTF-16BE: 0041 20AC D83D DE00
  const auto be = bytes({0x00, 0x41, 0x20, 0xAC, 0xD8, 0x3D, 0xDE, 0x00});
  DataReader r(be);
  r.set_unicode_encoding(UnicodeEncoding::utf16be);
  EXPECT_EQ(r.read_string(4), "A\xE2\x82\xAC\xF0\x9F\x98\x80");
  const auto le = bytes({0x41, 0x00, 0xAC, 0x20});
  DataReader r2(le);
  r2.set_unicode_encoding(UnicodeEncoding::utf16le);
  EXPECT_EQ(r2.read_string(1), "A");
  EXPECT_EQ(r2.read_string(1), "\xE2\x82\xAC");
  EXPECT_THROW(r2.read_string(1), std::out_of_range);
}

TEST(DataReader, Utf16InvalidSequencesThrowRangeError) {
  const auto lone_low = bytes({0xDC, 0x00, 0x00, 0x41});
  const auto high_at_end = bytes({0x00, 0x41, 0xD8, 0x3D});
  const auto high_then_char = bytes({0xD8, 0x3D, 0x00, 0x41});
  for (const auto* b : {&lone_low, &high_at_end, &high_then_char}) {
    DataReader r(*b);
    r.set_unicode_encoding(UnicodeEncoding::utf16be);
    EXPECT_THROW(r.read_string(2), std::range_error);
    EXPECT_EQ(r.unconsumed_buffer_length(), 4u);
  }
  // A count that splits a surrogate pair is an error too.
  const auto pair = bytes({0xD8, 0x3D, 0xDE, 0x00});
  DataReader r(pair);
  r.set_unicode_encoding(UnicodeEncoding::utf16be);
  try {
    r.read_string(1);
    FAIL() << "no exception";
  } catch (const std::range_error& e) {
    EXPECT_STREQ(
        e.what(),
        "DataReader::read_string: invalid UTF-16 at code unit 0 (high surrogate at the end)");
  }
}

TEST(DataReaderWriter, RoundTripAllTypesBothByteOrders) {
  for (auto order : {ByteOrder::little_endian, ByteOrder::big_endian}) {
    DataWriter w;
    w.set_byte_order(order);
    w.write_byte(200);
    w.write_boolean(true);
    w.write_int16(-12345);
    w.write_uint16(54321);
    w.write_int32(-123456789);
    w.write_uint32(4000000000u);
    w.write_int64(-1234567890123456789ll);
    w.write_uint64(18000000000000000000ull);
    w.write_single(3.5f);
    w.write_double(-1.0e300);
    w.write_single(std::numeric_limits<float>::infinity());
    w.write_double(std::numeric_limits<double>::quiet_NaN());
    const std::vector<std::byte> buffer = w.detach_buffer();
    EXPECT_EQ(buffer.size(), 1u + 1 + 2 + 2 + 4 + 4 + 8 + 8 + 4 + 8 + 4 + 8);

    DataReader r(buffer);
    r.set_byte_order(order);
    EXPECT_EQ(r.read_byte(), 200);
    EXPECT_TRUE(r.read_boolean());
    EXPECT_EQ(r.read_int16(), -12345);
    EXPECT_EQ(r.read_uint16(), 54321);
    EXPECT_EQ(r.read_int32(), -123456789);
    EXPECT_EQ(r.read_uint32(), 4000000000u);
    EXPECT_EQ(r.read_int64(), -1234567890123456789ll);
    EXPECT_EQ(r.read_uint64(), 18000000000000000000ull);
    EXPECT_EQ(r.read_single(), 3.5f);
    EXPECT_EQ(r.read_double(), -1.0e300);
    EXPECT_TRUE(std::isinf(r.read_single()));
    EXPECT_TRUE(std::isnan(r.read_double()));
    EXPECT_EQ(r.unconsumed_buffer_length(), 0u);
  }
}

TEST(DataReaderWriter, MismatchedByteOrderReadsSwapped) {
  DataWriter w;
  w.write_uint32(0x11223344);
  const auto buffer = w.detach_buffer();
  DataReader r(buffer);
  r.set_byte_order(ByteOrder::big_endian);
  EXPECT_EQ(r.read_uint32(), 0x44332211u);
}

TEST(DataReaderWriter, RoundTripStringsInEveryEncoding) {
  const std::string text = "Hello, w\xC3\xB6rld \xE2\x82\xAC \xF0\x9F\x98\x80 \xE4\xB8\xAD";
  for (auto enc : {UnicodeEncoding::utf8, UnicodeEncoding::utf16le, UnicodeEncoding::utf16be}) {
    DataWriter w;
    w.set_unicode_encoding(enc);
    const std::size_t n = w.measure_string(text);
    w.write_uint32(static_cast<std::uint32_t>(n));
    EXPECT_EQ(w.write_string(text), n);
    w.write_string("!");
    const auto buffer = w.detach_buffer();

    DataReader r(buffer);
    r.set_unicode_encoding(enc);
    const std::uint32_t length = r.read_uint32();
    const std::size_t units = enc == UnicodeEncoding::utf8 ? length : length / 2;
    EXPECT_EQ(r.read_string(units), text);
    EXPECT_EQ(r.read_string(1), "!");
    EXPECT_EQ(r.unconsumed_buffer_length(), 0u);
  }
}

TEST(DataReaderWriter, RoundTripEveryBmpAndSupplementaryCodePointSample) {
  // Every 97th code point, skipping surrogates, through UTF-16 and back.
  std::string text;
  DataWriter probe;
  for (char32_t cp = 1; cp <= 0x10FFFF; cp += 97) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    std::string one;
    if (cp < 0x80) {
      one.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      one += static_cast<char>(0xC0 | (cp >> 6));
      one += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      one += static_cast<char>(0xE0 | (cp >> 12));
      one += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      one += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      one += static_cast<char>(0xF0 | (cp >> 18));
      one += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      one += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      one += static_cast<char>(0x80 | (cp & 0x3F));
    }
    text += one;
  }
  for (auto enc : {UnicodeEncoding::utf16le, UnicodeEncoding::utf16be}) {
    DataWriter w;
    w.set_unicode_encoding(enc);
    const std::size_t n = w.write_string(text);
    const auto buffer = w.detach_buffer();
    DataReader r(buffer);
    r.set_unicode_encoding(enc);
    EXPECT_EQ(r.read_string(n / 2), text);
  }
}

}  // namespace
}  // namespace duplex
