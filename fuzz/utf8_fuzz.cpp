// Fuzzes Utf8Validator: fed in pieces chosen by the first input byte, it must
// fail exactly in the piece holding the first bad byte found by an independent
// reference decoder, and agree on completeness at the end.
#include <duplex/protocol/utf8.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "../tests/unit/utf8_reference.hpp"

namespace {
[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "utf8_fuzz mismatch: %s\n", what);
  std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  ++data;
  --size;
  bool boundary = false;
  const std::size_t bad = duplex::test::utf8_first_bad(data, size, &boundary);
  duplex::protocol::Utf8Validator v;
  std::size_t pos = 0;
  std::uint32_t rng = mode * 2654435761u + 1;
  bool failed = false;
  while (pos < size) {
    rng = rng * 1664525u + 1013904223u;
    const std::size_t limit = mode == 0 ? size : 1 + ((rng >> 20) % (1 + (mode & 0x3F)));
    const std::size_t n = std::min(limit, size - pos);
    const bool ok = v.feed(std::span(reinterpret_cast<const std::byte*>(data) + pos, n));
    const bool expect_ok = bad == duplex::test::utf8_ok || bad >= pos + n;
    if (ok != expect_ok) die("feed result differs from the reference");
    if (ok != v.ok()) die("ok() differs from feed()");
    if (!ok) {
      failed = true;
      break;
    }
    pos += n;
  }
  if (!failed && v.complete() != boundary) die("complete() differs from the reference");
  const bool whole =
      duplex::protocol::is_valid_utf8(std::span(reinterpret_cast<const std::byte*>(data), size));
  if (whole != (bad == duplex::test::utf8_ok && boundary)) die("is_valid_utf8 differs");
  return 0;
}
