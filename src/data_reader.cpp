// DataReader: typed reads from the front of a byte view.
#include <duplex/data_reader.hpp>

#include <bit>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string_view>

#include "data_text.hpp"

namespace duplex {

const std::byte* DataReader::take(std::size_t size, const char* what) {
  const std::size_t available = unconsumed_buffer_length();
  if (size > available) {
    throw std::out_of_range(std::string("DataReader::") + what + ": needs " + std::to_string(size) +
                            " byte" + (size == 1 ? "" : "s") + " but only " +
                            std::to_string(available) + (available == 1 ? " is" : " are") +
                            " unconsumed");
  }
  const std::byte* p = bytes_.data() + position_;
  position_ += size;
  return p;
}

std::uint64_t DataReader::read_unsigned(std::size_t size, const char* what) {
  const std::byte* p = take(size, what);
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < size; ++i) {
    const std::size_t shift = 8 * (byte_order_ == ByteOrder::little_endian ? i : size - 1 - i);
    value |= static_cast<std::uint64_t>(std::to_integer<std::uint8_t>(p[i])) << shift;
  }
  return value;
}

std::uint8_t DataReader::read_byte() {
  return std::to_integer<std::uint8_t>(*take(1, "read_byte"));
}

void DataReader::read_bytes(std::span<std::byte> out) {
  const std::byte* p = take(out.size(), "read_bytes");
  if (!out.empty()) std::memcpy(out.data(), p, out.size());
}

std::span<const std::byte> DataReader::read_buffer(std::size_t length) {
  const std::byte* p = take(length, "read_buffer");
  return {p, length};
}

bool DataReader::read_boolean() {
  return *take(1, "read_boolean") != std::byte{0};
}

std::int16_t DataReader::read_int16() {
  return static_cast<std::int16_t>(read_unsigned(2, "read_int16"));
}
std::int32_t DataReader::read_int32() {
  return static_cast<std::int32_t>(read_unsigned(4, "read_int32"));
}
std::int64_t DataReader::read_int64() {
  return static_cast<std::int64_t>(read_unsigned(8, "read_int64"));
}
std::uint16_t DataReader::read_uint16() {
  return static_cast<std::uint16_t>(read_unsigned(2, "read_uint16"));
}
std::uint32_t DataReader::read_uint32() {
  return static_cast<std::uint32_t>(read_unsigned(4, "read_uint32"));
}
std::uint64_t DataReader::read_uint64() {
  return read_unsigned(8, "read_uint64");
}

float DataReader::read_single() {
  static_assert(sizeof(float) == 4 && std::numeric_limits<float>::is_iec559);
  return std::bit_cast<float>(static_cast<std::uint32_t>(read_unsigned(4, "read_single")));
}

double DataReader::read_double() {
  static_assert(sizeof(double) == 8 && std::numeric_limits<double>::is_iec559);
  return std::bit_cast<double>(read_unsigned(8, "read_double"));
}

std::string DataReader::read_string(std::size_t code_unit_count) {
  const bool utf8 = encoding_ == UnicodeEncoding::utf8;
  const std::size_t unit_size = utf8 ? 1 : 2;
  if (code_unit_count > std::numeric_limits<std::size_t>::max() / unit_size) {
    throw std::out_of_range("DataReader::read_string: code_unit_count " +
                            std::to_string(code_unit_count) + " is too large");
  }
  const std::size_t size = code_unit_count * unit_size;
  // Check the length before decoding, and decode before consuming, so that a
  // read that throws consumes nothing.
  const std::size_t start = position_;
  const std::byte* p = take(size, "read_string");
  position_ = start;
  std::string out;
  if (utf8) {
    const std::string_view text(reinterpret_cast<const char*>(p), size);
    for (std::size_t pos = 0; pos < text.size();) {
      const detail::Utf8Step step = detail::decode_utf8_at(text, pos);
      if (step.length == 0) {
        throw std::range_error("DataReader::read_string: invalid UTF-8 at byte " +
                               std::to_string(pos) + " of the string");
      }
      pos += step.length;
    }
    out.assign(text);
  } else {
    const bool little = encoding_ == UnicodeEncoding::utf16le;
    const auto unit = [&](std::size_t i) {
      const auto b0 = std::to_integer<char32_t>(p[2 * i]);
      const auto b1 = std::to_integer<char32_t>(p[2 * i + 1]);
      return little ? (b1 << 8) | b0 : (b0 << 8) | b1;
    };
    out.reserve(size);
    const auto fail = [](std::size_t i, const char* why) {
      return std::range_error("DataReader::read_string: invalid UTF-16 at code unit " +
                              std::to_string(i) + " (" + why + ")");
    };
    for (std::size_t i = 0; i < code_unit_count; ++i) {
      const char32_t u = unit(i);
      // RFC 2781 section 2.2: a high surrogate must be followed by a low one,
      // and a low surrogate never stands alone.
      if (u >= 0xDC00 && u <= 0xDFFF) throw fail(i, "unpaired low surrogate");
      if (u >= 0xD800 && u <= 0xDBFF) {
        if (i + 1 == code_unit_count) throw fail(i, "high surrogate at the end");
        const char32_t low = unit(i + 1);
        if (low < 0xDC00 || low > 0xDFFF) throw fail(i, "high surrogate without a low one");
        detail::append_utf8(out, 0x10000 + (((u - 0xD800) << 10) | (low - 0xDC00)));
        ++i;
      } else {
        detail::append_utf8(out, u);
      }
    }
  }
  position_ = start + size;
  return out;
}

}  // namespace duplex
