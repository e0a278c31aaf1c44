// DataWriter: typed writes into an owned byte buffer.
#include <duplex/data_writer.hpp>

#include <bit>
#include <limits>
#include <stdexcept>
#include <string>

#include "data_text.hpp"

namespace duplex {
namespace {

// Validates `value` and returns the number of bytes it takes in `encoding`;
// throws std::invalid_argument naming the offending byte offset.
std::size_t measure(std::string_view value, UnicodeEncoding encoding, const char* who) {
  std::size_t bytes = 0;
  for (std::size_t pos = 0; pos < value.size();) {
    const detail::Utf8Step step = detail::decode_utf8_at(value, pos);
    if (step.length == 0) {
      throw std::invalid_argument(std::string(who) +
                                  ": value must be valid UTF-8 (invalid sequence at byte " +
                                  std::to_string(pos) + ")");
    }
    if (encoding == UnicodeEncoding::utf8) {
      bytes += step.length;
    } else {
      // Code points above the Basic Multilingual Plane take a surrogate pair.
      bytes += step.code_point >= 0x10000 ? 4 : 2;
    }
    pos += step.length;
  }
  return bytes;
}

}  // namespace

void DataWriter::write_unsigned(std::uint64_t value, std::size_t size) {
  const std::size_t start = buffer_.size();
  buffer_.resize(start + size);
  std::byte* out = buffer_.data() + start;
  for (std::size_t i = 0; i < size; ++i) {
    const std::size_t shift = 8 * (byte_order_ == ByteOrder::little_endian ? i : size - 1 - i);
    out[i] = static_cast<std::byte>((value >> shift) & 0xFFu);
  }
}

void DataWriter::write_byte(std::uint8_t value) {
  buffer_.push_back(static_cast<std::byte>(value));
}

void DataWriter::write_bytes(std::span<const std::byte> value) {
  buffer_.insert(buffer_.end(), value.begin(), value.end());
}

void DataWriter::write_boolean(bool value) {
  write_byte(value ? 1 : 0);
}

void DataWriter::write_int16(std::int16_t value) {
  write_unsigned(static_cast<std::uint16_t>(value), 2);
}
void DataWriter::write_int32(std::int32_t value) {
  write_unsigned(static_cast<std::uint32_t>(value), 4);
}
void DataWriter::write_int64(std::int64_t value) {
  write_unsigned(static_cast<std::uint64_t>(value), 8);
}
void DataWriter::write_uint16(std::uint16_t value) {
  write_unsigned(value, 2);
}
void DataWriter::write_uint32(std::uint32_t value) {
  write_unsigned(value, 4);
}
void DataWriter::write_uint64(std::uint64_t value) {
  write_unsigned(value, 8);
}

void DataWriter::write_single(float value) {
  static_assert(sizeof(float) == 4 && std::numeric_limits<float>::is_iec559);
  write_unsigned(std::bit_cast<std::uint32_t>(value), 4);
}

void DataWriter::write_double(double value) {
  static_assert(sizeof(double) == 8 && std::numeric_limits<double>::is_iec559);
  write_unsigned(std::bit_cast<std::uint64_t>(value), 8);
}

std::size_t DataWriter::measure_string(std::string_view value) const {
  return measure(value, encoding_, "DataWriter::measure_string");
}

std::size_t DataWriter::write_string(std::string_view value) {
  // Validate first, so that an invalid string writes nothing.
  const std::size_t bytes = measure(value, encoding_, "DataWriter::write_string");
  if (encoding_ == UnicodeEncoding::utf8) {
    const auto* first = reinterpret_cast<const std::byte*>(value.data());
    buffer_.insert(buffer_.end(), first, first + value.size());
    return bytes;
  }
  buffer_.reserve(buffer_.size() + bytes);
  // The UTF-16 code unit order follows the encoding, not byte_order().
  const bool little = encoding_ == UnicodeEncoding::utf16le;
  const auto put_unit = [&](char32_t unit) {
    const auto lo = static_cast<std::byte>(unit & 0xFFu);
    const auto hi = static_cast<std::byte>((unit >> 8) & 0xFFu);
    buffer_.push_back(little ? lo : hi);
    buffer_.push_back(little ? hi : lo);
  };
  for (std::size_t pos = 0; pos < value.size();) {
    const detail::Utf8Step step = detail::decode_utf8_at(value, pos);
    if (step.code_point >= 0x10000) {
      // RFC 2781 section 2.1: U' = U - 0x10000 split into two 10-bit halves.
      const char32_t u = step.code_point - 0x10000;
      put_unit(0xD800 | (u >> 10));
      put_unit(0xDC00 | (u & 0x3FF));
    } else {
      put_unit(step.code_point);
    }
    pos += step.length;
  }
  return bytes;
}

std::vector<std::byte> DataWriter::detach_buffer() noexcept {
  std::vector<std::byte> out = std::move(buffer_);
  buffer_.clear();  // a moved-from vector is valid but unspecified
  return out;
}

}  // namespace duplex
