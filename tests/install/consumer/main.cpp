// A user's program built against an installed duplex: it must find the headers,
// link both libraries and compute a real result.
#include <duplex/error.hpp>
#include <duplex/protocol/handshake.hpp>

#include <cstdio>

int main() {
  // RFC 6455 1.3's example key and its accept value.
  auto accept = duplex::protocol::compute_accept("dGhlIHNhbXBsZSBub25jZQ==");
  if (accept != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") return 1;
  if (duplex::get_status(duplex::error::timed_out) != duplex::WebErrorStatus::timeout) return 1;
  std::puts("consumer ok");
  return 0;
}
