// duplex/data_writer.hpp: typed writes into a byte buffer (Windows: DataWriter).
//
// The Windows.Storage.Streams model: a DataWriter appends integers, floats,
// booleans, strings and bytes to a buffer it owns, in a chosen byte order and
// string encoding; the buffer is then sent as one binary message, for example
// with `MessageWebSocket::send_async(writer.detach_buffer())`. Unlike Windows,
// the writer is not attached to a stream: there is no StoreAsync, the bytes are
// simply in `data()` until detached.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace duplex {

/// Order of the bytes of multi-byte numbers (Windows: ByteOrder).
enum class ByteOrder : std::uint8_t {
  little_endian = 0,  ///< least significant byte first (the Windows default)
  big_endian = 1,     ///< most significant byte first ("network order")
};

/// Encoding of strings on the wire (Windows: UnicodeEncoding). Strings in C++
/// are always UTF-8 `std::string`s; this picks what the bytes look like.
enum class UnicodeEncoding : std::uint8_t {
  utf8 = 0,     ///< UTF-8, one code unit per byte (the Windows default)
  utf16le = 1,  ///< UTF-16, each 16-bit code unit little-endian, no byte order mark
  utf16be = 2,  ///< UTF-16, each 16-bit code unit big-endian, no byte order mark
};

/// Appends typed values to an internal byte buffer.
///
/// Errors: `write_string` and `measure_string` throw std::invalid_argument when
/// the value is not valid UTF-8 (nothing is written then); writes that need
/// memory may throw std::bad_alloc. Every other write is noexcept-in-spirit.
///
/// Thread safety: distinct objects are independent; one object must not be used
/// from two threads at once (as any standard container).
class DataWriter {
public:
  /// An empty writer: little-endian, UTF-8, as on Windows.
  DataWriter() = default;

  /// The byte order used by the 16/32/64-bit integer and floating-point writes.
  ByteOrder byte_order() const noexcept { return byte_order_; }
  void set_byte_order(ByteOrder order) noexcept { byte_order_ = order; }

  /// The encoding used by `write_string`.
  UnicodeEncoding unicode_encoding() const noexcept { return encoding_; }
  void set_unicode_encoding(UnicodeEncoding encoding) noexcept { encoding_ = encoding; }

  /// Number of bytes written and not yet detached (Windows: UnstoredBufferLength).
  std::size_t unstored_buffer_length() const noexcept { return buffer_.size(); }

  void write_byte(std::uint8_t value);
  void write_bytes(std::span<const std::byte> value);
  /// Writes one byte: 1 for true, 0 for false.
  void write_boolean(bool value);
  void write_int16(std::int16_t value);
  void write_int32(std::int32_t value);
  void write_int64(std::int64_t value);
  void write_uint16(std::uint16_t value);
  void write_uint32(std::uint32_t value);
  void write_uint64(std::uint64_t value);
  /// Writes the IEEE 754 binary32 representation (4 bytes).
  void write_single(float value);
  /// Writes the IEEE 754 binary64 representation (8 bytes).
  void write_double(double value);

  /// Writes `value` (UTF-8) in `unicode_encoding()`, without a length prefix or
  /// terminator, and returns the number of BYTES written (as Windows' WriteString).
  /// Note that `DataReader::read_string` takes CODE UNITS: for UTF-16 pass half
  /// of this value. Throws std::invalid_argument if `value` is not valid UTF-8.
  std::size_t write_string(std::string_view value);

  /// The number of bytes `write_string(value)` would write now, without writing
  /// (Windows: MeasureString). Throws std::invalid_argument on invalid UTF-8.
  std::size_t measure_string(std::string_view value) const;

  /// The bytes written so far. Valid until the next write, `detach_buffer` or
  /// destruction of the writer.
  std::span<const std::byte> data() const noexcept { return buffer_; }

  /// Moves the bytes out and leaves the writer empty (settings are kept)
  /// (Windows: DetachBuffer).
  std::vector<std::byte> detach_buffer() noexcept;

private:
  void write_unsigned(std::uint64_t value, std::size_t size);

  std::vector<std::byte> buffer_;
  ByteOrder byte_order_ = ByteOrder::little_endian;   // Windows' default
  UnicodeEncoding encoding_ = UnicodeEncoding::utf8;  // Windows' default
};

}  // namespace duplex
