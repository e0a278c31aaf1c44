// Fuzzes the server side of the opening handshake: parse_http_request read by
// read, validate_client_request, and the answers built from what it accepted.
//
// Invariants (abort on failure):
//  - reading the input in pieces gives the result of reading it whole;
//  - a request that validates is answered with a 101 that the client-side
//    parser and validate_server_response accept for the same key, returning
//    the subprotocol and extensions the server chose;
//  - a request the client builder emits from what was accepted validates again
//    to the same fields;
//  - a refused request gets an error answer that parses, with its status.
#include <duplex/error.hpp>
#include <duplex/protocol/handshake.hpp>

#include <stdexcept>

#include "http_fuzz_common.hpp"

using namespace duplex::protocol;
using duplex::fuzz::check;

namespace {

std::size_t parse(std::string_view data, HttpRequest& out, std::error_code& ec,
                  std::size_t max_size, std::size_t* scanned) {
  return scanned ? parse_http_request(data, out, ec, max_size, *scanned)
                 : parse_http_request(data, out, ec, max_size);
}

bool same(const HttpRequest& a, const HttpRequest& b) {
  return a.method == b.method && a.target == b.target && a.version_minor == b.version_minor &&
         duplex::fuzz::same_headers(a.headers, b.headers);
}

void check_answer(const ServerHandshakeRequest& accepted) {
  // The server picks the last offered subprotocol, to be sure selection works.
  const std::string chosen = accepted.protocols.empty() ? "" : accepted.protocols.back();
  const auto answer =
      build_server_response(accepted.key, chosen, accepted.extensions, {{"X-Fuzz", "1"}});
  HttpResponse res;
  std::error_code ec;
  check(parse_http_response(answer, res, ec) == answer.size() && !ec, "101 answer parses");
  ClientHandshakeResult result;
  check(!validate_server_response(res, accepted.key, accepted.protocols, result),
        "101 answer validates");
  check(result.protocol == chosen, "selected protocol survives");
  check(result.extensions == accepted.extensions, "extensions survive");
}

void check_client_rebuild(const ServerHandshakeRequest& accepted) {
  ClientHandshakeOptions o;
  o.host = accepted.host;
  o.target = accepted.target;
  o.origin = accepted.origin;
  o.protocols = accepted.protocols;
  o.extensions = accepted.extensions;
  std::string text;
  try {
    text = build_client_request(o, accepted.key);
  } catch (const std::invalid_argument&) {
    // Accepted on receipt but not sent by us (absolute-form target, a repeated
    // subprotocol, raw UTF-8 in the path): nothing to compare.
    return;
  }
  HttpRequest req;
  std::error_code ec;
  check(parse_http_request(text, req, ec, text.size() + 1) == text.size() && !ec,
        "built request parses");
  ServerHandshakeRequest again;
  check(!validate_client_request(req, again), "built request validates");
  check(again.host == accepted.host && again.target == accepted.target &&
            again.origin == accepted.origin && again.key == accepted.key &&
            again.protocols == accepted.protocols && again.extensions == accepted.extensions,
        "built request round-trips");
}

void check_refusal(std::error_code why) {
  const int status = status_for(why);
  check(status >= 400 && status <= 599, "refusal status");
  const auto answer = build_error_response(status, why.message());
  HttpResponse res;
  std::error_code ec;
  const auto head = parse_http_response(answer, res, ec);
  check(head > 0 && !ec && res.status == status, "error answer parses");
  check(find_header(res.headers, "Content-Length") == std::to_string(answer.size() - head),
        "error answer length");
  if (status == 426)
    check(header_has_token(res.headers, "Sec-WebSocket-Version", "13"), "426 names 13");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  duplex::fuzz::Input in;
  if (!duplex::fuzz::split_input(data, size, in)) return 0;
  HttpRequest req;
  std::error_code ec;
  const auto n = duplex::fuzz::parse_checked(in, req, ec, parse, same);
  if (ec) {
    check_refusal(ec);
    return 0;
  }
  if (n == 0) return 0;

  // The header helpers on whatever arrived.
  for (const auto& h : req.headers) {
    check(find_header(req.headers, h.name).has_value(), "find_header finds each header");
    for (const auto& element : header_list(req.headers, h.name))
      check(!element.empty(), "header_list drops empty elements");
  }

  ServerHandshakeRequest accepted;
  const auto why = validate_client_request(req, accepted);
  // The validator recognises names by a folded word compare; the header
  // helpers use iequals: both must agree on what the request holds.
  if (why == duplex::error::bad_upgrade)
    check(!header_has_token(req.headers, "Upgrade", "websocket"), "Upgrade refused wrongly");
  if (why == duplex::error::bad_connection)
    check(!header_has_token(req.headers, "Connection", "upgrade"), "Connection refused wrongly");
  if (!why) {
    check(find_header(req.headers, "Host") == accepted.host, "host is the Host header");
    check(find_header(req.headers, "Sec-WebSocket-Key") == accepted.key, "key is the key header");
    check(find_header(req.headers, "Origin").value_or("") == accepted.origin, "origin header");
  }
  if (why) {
    check(why == duplex::condition::handshake_failed, "refusal is a handshake failure");
    check_refusal(why);
    return 0;
  }
  check(header_has_token(req.headers, "Upgrade", "websocket"), "accepted without Upgrade");
  check(accepted.key.size() == 24, "accepted key length");
  check_answer(accepted);
  check_client_rebuild(accepted);
  return 0;
}
