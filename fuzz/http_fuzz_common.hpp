// Shared by the HTTP fuzz targets: input layout and the incremental-parse check.
//
// Input: the first byte picks how the rest arrives (its low 6 bits + 1 are the
// read size, its top bit a 256-byte header limit instead of the default), the
// rest is the bytes received. One input so exercises many splits.
#pragma once

#include <duplex/protocol/handshake.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace duplex::fuzz {

struct Input {
  std::string_view bytes;
  std::size_t step = 1;
  std::size_t max_size = protocol::default_max_header_size;
};

inline bool split_input(const std::uint8_t* data, std::size_t size, Input& in) {
  if (size == 0) return false;
  in.bytes = std::string_view(reinterpret_cast<const char*>(data + 1), size - 1);
  in.step = (data[0] & 0x3F) + 1u;
  in.max_size = (data[0] & 0x80) != 0 ? 256 : protocol::default_max_header_size;
  return true;
}

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
  std::abort();
}
inline void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

// Parses `in` whole, then again read by read with a resumed scan, and checks
// that the reads see nothing until the whole-input result appears, identical.
// Returns the whole-input result.
template <class Message, class Parse, class Same>
std::size_t parse_checked(const Input& in, Message& whole, std::error_code& ec, Parse parse,
                          Same same) {
  const std::size_t n = parse(in.bytes, whole, ec, in.max_size, nullptr);
  check(ec ? n == 0 : n <= in.bytes.size(), "result size");
  check(n == 0 || (n >= 4 && in.bytes.substr(n - 4, 4) == "\r\n\r\n"), "block end");
  check(n <= in.max_size, "limit");

  Message part;
  std::error_code part_ec;
  std::size_t scanned = 0;
  std::size_t got = 0;
  std::size_t fed = 0;
  while (got == 0 && !part_ec && fed < in.bytes.size()) {
    fed = std::min(fed + in.step, in.bytes.size());
    got = parse(in.bytes.substr(0, fed), part, part_ec, in.max_size, &scanned);
    check(scanned <= fed, "scanned beyond the data");
  }
  // The first result of a growing buffer is the result of the whole input.
  check(got == n, "incremental size differs");
  check(part_ec == ec, "incremental error differs");
  if (n != 0) {
    check(fed >= n && fed < n + in.step, "complete block reported late");
    check(same(whole, part), "incremental result differs");
  }
  return n;
}

inline bool same_headers(const protocol::HttpHeaders& a, const protocol::HttpHeaders& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].name != b[i].name || a[i].value != b[i].value) return false;
  return true;
}

}  // namespace duplex::fuzz
