// duplex/data_reader.hpp: typed reads from a byte buffer (Windows: DataReader).
//
// A DataReader walks a received message (or any bytes) from the front, reading
// integers, floats, booleans, strings and bytes in a chosen byte order and
// string encoding. Unlike Windows, it reads a buffer that is already complete
// (a whole message, or one section of it in partial receive mode), so there is
// no LoadAsync: `unconsumed_buffer_length()` is all there is to read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <duplex/data_writer.hpp>  // ByteOrder, UnicodeEncoding

namespace duplex {

/// Reads typed values from the front of a byte view.
///
/// Lifetime: the reader is a VIEW. It does not copy the bytes; the caller keeps
/// them alive and unchanged for as long as the reader (or a span returned by
/// `read_buffer`) is used. In a `message_received` handler the message bytes are
/// valid only during the handler.
///
/// Errors: a read that needs more bytes than `unconsumed_buffer_length()` throws
/// std::out_of_range naming the read, the requested and the available sizes;
/// `read_string` throws std::range_error when the bytes are not valid UTF-8 /
/// UTF-16 or end inside a character. A read that throws consumes nothing.
///
/// Thread safety: distinct objects are independent; one object must not be used
/// from two threads at once.
class DataReader {
public:
  /// A reader over `bytes`: little-endian, UTF-8, as on Windows.
  explicit DataReader(std::span<const std::byte> bytes) noexcept : bytes_(bytes) {}
  /// A reader over a vector's bytes (the vector must outlive the reader).
  explicit DataReader(const std::vector<std::byte>& bytes) noexcept
      : bytes_(bytes.data(), bytes.size()) {}
  /// A reader over the bytes of a string (the string must outlive the reader).
  explicit DataReader(const std::string& bytes) noexcept
      : bytes_(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()) {}
  DataReader(std::vector<std::byte>&&) = delete;  // would dangle at once
  DataReader(std::string&&) = delete;             // would dangle at once

  /// The byte order used by the 16/32/64-bit integer and floating-point reads.
  ByteOrder byte_order() const noexcept { return byte_order_; }
  void set_byte_order(ByteOrder order) noexcept { byte_order_ = order; }

  /// The encoding `read_string` expects.
  UnicodeEncoding unicode_encoding() const noexcept { return encoding_; }
  void set_unicode_encoding(UnicodeEncoding encoding) noexcept { encoding_ = encoding; }

  /// Bytes not read yet (Windows: UnconsumedBufferLength).
  std::size_t unconsumed_buffer_length() const noexcept { return bytes_.size() - position_; }

  std::uint8_t read_byte();
  /// Fills all of `out` (Windows: ReadBytes fills the whole array).
  void read_bytes(std::span<std::byte> out);
  /// Returns a view of the next `length` bytes and consumes them (Windows:
  /// ReadBuffer). The view points into the reader's bytes (see Lifetime).
  std::span<const std::byte> read_buffer(std::size_t length);
  /// Reads one byte: any non-zero value is true.
  bool read_boolean();
  std::int16_t read_int16();
  std::int32_t read_int32();
  std::int64_t read_int64();
  std::uint16_t read_uint16();
  std::uint32_t read_uint32();
  std::uint64_t read_uint64();
  /// Reads an IEEE 754 binary32 (4 bytes).
  float read_single();
  /// Reads an IEEE 754 binary64 (8 bytes).
  double read_double();

  /// Reads `code_unit_count` code units in `unicode_encoding()` and returns them
  /// as UTF-8: for UTF-8 that many bytes, for UTF-16 that many 16-bit units
  /// (twice as many bytes). Throws std::out_of_range if there are not enough
  /// bytes and std::range_error if they are not valid in the encoding (including a
  /// count that ends inside a character or a surrogate pair).
  std::string read_string(std::size_t code_unit_count);

private:
  const std::byte* take(std::size_t size, const char* what);
  std::uint64_t read_unsigned(std::size_t size, const char* what);

  std::span<const std::byte> bytes_;
  std::size_t position_ = 0;
  ByteOrder byte_order_ = ByteOrder::little_endian;   // Windows' default
  UnicodeEncoding encoding_ = UnicodeEncoding::utf8;  // Windows' default
};

}  // namespace duplex
