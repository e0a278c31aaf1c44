// Fuzzes the client side of the opening handshake: parse_http_response read by
// read, then validate_server_response against the RFC 6455 example key.
//
// Invariants (abort on failure):
//  - reading the input in pieces gives the result of reading it whole;
//  - an accepted answer is a 101 with Upgrade and Connection tokens, the one
//    right accept value, and no subprotocol or one that was offered;
//  - an answer other than 101 fails with its status in http_category().
#include <duplex/error.hpp>
#include <duplex/protocol/handshake.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "http_fuzz_common.hpp"

using namespace duplex::protocol;
using duplex::fuzz::check;

namespace {

std::size_t parse(std::string_view data, HttpResponse& out, std::error_code& ec,
                  std::size_t max_size, std::size_t* scanned) {
  return scanned ? parse_http_response(data, out, ec, max_size, *scanned)
                 : parse_http_response(data, out, ec, max_size);
}

bool same(const HttpResponse& a, const HttpResponse& b) {
  return a.status == b.status && a.reason == b.reason && a.version_minor == b.version_minor &&
         duplex::fuzz::same_headers(a.headers, b.headers);
}

constexpr std::string_view key = "dGhlIHNhbXBsZSBub25jZQ==";
const std::vector<std::string> offered = {"chat", "superchat", "v2.json"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  duplex::fuzz::Input in;
  if (!duplex::fuzz::split_input(data, size, in)) return 0;
  HttpResponse res;
  std::error_code ec;
  const auto n = duplex::fuzz::parse_checked(in, res, ec, parse, same);
  if (n == 0) return 0;
  check(res.status >= 100 && res.status <= 599, "status range");

  ClientHandshakeResult result;
  result.protocol = "untouched";
  const auto why = validate_server_response(res, key, offered, result);
  if (res.status != 101) {
    check(why == duplex::make_http_error(res.status), "non-101 gives its status");
    check(result.protocol == "untouched", "output untouched on failure");
    return 0;
  }
  if (why) {
    check(why == duplex::condition::handshake_failed, "refusal is a handshake failure");
    return 0;
  }
  check(header_has_token(res.headers, "Upgrade", "websocket"), "accepted without Upgrade");
  check(header_has_token(res.headers, "Connection", "upgrade"), "accepted without Connection");
  check(find_header(res.headers, "Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        "accepted with a wrong accept");
  check(result.protocol.empty() ||
            std::find(offered.begin(), offered.end(), result.protocol) != offered.end(),
        "accepted a protocol not offered");
  return 0;
}
