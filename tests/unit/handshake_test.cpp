// The RFC 6455 section 4 opening handshake: keys, the client's request and the
// server's checks, the server's answers and the client's checks.
#include <gtest/gtest.h>
#include <duplex/error.hpp>
#include <duplex/protocol/handshake.hpp>

#include <set>
#include <stdexcept>
#include <string>

#include "protocol/base64.hpp"

namespace {

using namespace duplex::protocol;
using duplex::error;

// RFC 6455 1.3 and 4.2.2: the example key and its accept value.
constexpr const char* rfc_key = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr const char* rfc_accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

// Expects `f()` to throw std::invalid_argument whose text holds `needle`.
template <class F>
void expect_invalid(F&& f, std::string_view needle) {
  try {
    f();
    ADD_FAILURE() << "no exception, expected one naming " << needle;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string_view(e.what()).find(needle), std::string_view::npos) << e.what();
  }
}

HttpRequest parse_request(std::string_view text) {
  HttpRequest req;
  std::error_code ec;
  EXPECT_EQ(parse_http_request(text, req, ec), text.size()) << ec.message() << "\n" << text;
  return req;
}
HttpResponse parse_response(std::string_view text) {
  HttpResponse res;
  std::error_code ec;
  EXPECT_EQ(parse_http_response(text, res, ec), text.size()) << ec.message() << "\n" << text;
  return res;
}

// --- keys -------------------------------------------------------------------------------

TEST(HandshakeKey, ComputeAcceptMatchesRfc6455Example) {
  EXPECT_EQ(compute_accept(rfc_key), rfc_accept);
}

TEST(HandshakeKey, ComputeAcceptOfOtherKeys) {
  // Computed independently: printf '%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11' KEY
  // | openssl sha1 -binary | base64
  EXPECT_EQ(compute_accept("x3JJHMbDL1EzLkh9GBhXDw=="), "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
  EXPECT_EQ(compute_accept("AQIDBAUGBwgJCgsMDQ4PEA=="), "C/0nmHhBztSRGR1CwL6Tf4ZjwpY=");
  EXPECT_EQ(compute_accept(""), "Kfh9QIsMVZcl6xEPYxPHzW8SZ8w=");
}

TEST(HandshakeKey, GeneratedKeysAreBase64Of16FreshBytes) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const auto key = generate_key();
    ASSERT_EQ(key.size(), 24u);
    EXPECT_EQ(key.substr(22), "==");
    const auto bytes = duplex::detail::base64_decode(key);
    ASSERT_TRUE(bytes.has_value()) << key;
    EXPECT_EQ(bytes->size(), 16u);
    seen.insert(key);
  }
  // 100 draws of 128 random bits never collide unless the source is broken.
  EXPECT_EQ(seen.size(), 100u);
}

// --- client request ---------------------------------------------------------------------

TEST(ClientRequest, BuildsTheMinimalRequestByteForByte) {
  ClientHandshakeOptions o;
  o.host = "server.example.com";
  o.target = "/chat";
  EXPECT_EQ(build_client_request(o, rfc_key),
            "GET /chat HTTP/1.1\r\n"
            "Host: server.example.com\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "\r\n");
}

TEST(ClientRequest, BuildsEveryOptionalHeaderInOrder) {
  ClientHandshakeOptions o;
  o.host = "[::1]:9000";
  o.target = "/a?b=c";
  o.origin = "http://example.com";
  o.protocols = {"chat", "superchat"};
  o.extensions = "permessage-deflate; client_max_window_bits";
  o.headers = {{"Authorization", "Bearer abc"}, {"X-Trace", "1"}};
  EXPECT_EQ(build_client_request(o, rfc_key),
            "GET /a?b=c HTTP/1.1\r\n"
            "Host: [::1]:9000\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Origin: http://example.com\r\n"
            "Sec-WebSocket-Protocol: chat, superchat\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            "Authorization: Bearer abc\r\n"
            "X-Trace: 1\r\n"
            "\r\n");
}

TEST(ClientRequest, RefusesBadHost) {
  ClientHandshakeOptions o;
  expect_invalid([&] { build_client_request(o, rfc_key); }, "options.host");
  o.host = "a b";
  expect_invalid([&] { build_client_request(o, rfc_key); }, "options.host");
  o.host = "a\r\nX-Evil: 1";
  expect_invalid([&] { build_client_request(o, rfc_key); }, "options.host");
  for (const char* h : {"user@host", "host/path", "\"q\"", "caf\xC3\xA9"}) {
    o.host = h;
    expect_invalid([&] { build_client_request(o, rfc_key); }, "options.host");
  }
}

TEST(ClientRequest, RefusesBadTarget) {
  ClientHandshakeOptions o;
  o.host = "h";
  for (const char* t : {"", "chat", "*", "/a b", "/a\r\nX: 1", "/\xC3\xA9", "/\x7F"}) {
    o.target = t;
    expect_invalid([&] { build_client_request(o, rfc_key); }, "options.target");
  }
}

TEST(ClientRequest, RefusesKeysThatAreNotBase64Of16Bytes) {
  ClientHandshakeOptions o;
  o.host = "h";
  for (const char* k : {"", "abc", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ==\r\n",
                        "dGhlIHNhbXBsZSBub25jZSE=", "dGhlIHNhbXBsZSBub25jZR=="})
    expect_invalid([&] { build_client_request(o, k); }, "key");
}

TEST(ClientRequest, RefusesBadProtocols) {
  ClientHandshakeOptions o;
  o.host = "h";
  for (const char* p : {"", "a b", "a,b", "a;b", "caf\xC3\xA9", "\"q\""}) {
    o.protocols = {"ok", p};
    expect_invalid([&] { build_client_request(o, rfc_key); }, "options.protocols");
  }
  o.protocols = {"chat", "other", "chat"};
  expect_invalid([&] { build_client_request(o, rfc_key); }, "repeat");
}

TEST(ClientRequest, RefusesControlsInOriginAndExtensions) {
  ClientHandshakeOptions o;
  o.host = "h";
  o.origin = "http://a\r\nX: 1";
  expect_invalid([&] { build_client_request(o, rfc_key); }, "options.origin");
  o.origin.clear();
  o.extensions = "permessage-deflate\n";
  expect_invalid([&] { build_client_request(o, rfc_key); }, "options.extensions");
}

TEST(ClientRequest, RefusesInvalidOrReservedExtraHeaders) {
  ClientHandshakeOptions o;
  o.host = "h";
  for (const HttpHeader& h :
       {HttpHeader{"Sec-WebSocket-Key", "x"}, HttpHeader{"host", "x"}, HttpHeader{"X Y", "1"},
        HttpHeader{"X", "a\r\nY: b"}, HttpHeader{"", "1"}, HttpHeader{"CONNECTION", "close"}}) {
    o.headers = {h};
    expect_invalid([&] { build_client_request(o, rfc_key); }, "options.headers");
  }
}

TEST(ClientRequest, RefusesOriginGivenTwice) {
  ClientHandshakeOptions o;
  o.host = "h";
  o.headers = {{"origin", "http://b"}};
  EXPECT_NE(build_client_request(o, rfc_key).find("origin: http://b\r\n"), std::string::npos);
  o.origin = "http://a";
  expect_invalid([&] { build_client_request(o, rfc_key); }, "Origin");
}

// --- server checks of the request ----------------------------------------------------------

std::string request_with(std::string_view replace, std::string_view by) {
  std::string r =
      "GET /chat HTTP/1.1\r\n"
      "Host: server.example.com\r\n"
      "Upgrade: websocket\r\n"
      "Connection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Origin: http://example.com\r\n"
      "Sec-WebSocket-Protocol: chat, superchat\r\n"
      "Sec-WebSocket-Version: 13\r\n"
      "\r\n";
  if (!replace.empty()) {
    const auto at = r.find(replace);
    EXPECT_NE(at, std::string::npos) << replace;
    r.replace(at, replace.size(), by);
  }
  return r;
}

std::error_code validate_request_text(std::string_view text) {
  ServerHandshakeRequest out;
  return validate_client_request(parse_request(text), out);
}

TEST(ServerValidation, AcceptsTheRfcExampleRequest) {
  ServerHandshakeRequest out;
  ASSERT_FALSE(validate_client_request(parse_request(request_with("", "")), out));
  EXPECT_EQ(out.target, "/chat");
  EXPECT_EQ(out.host, "server.example.com");
  EXPECT_EQ(out.origin, "http://example.com");
  EXPECT_EQ(out.key, rfc_key);
  EXPECT_EQ(out.protocols, (std::vector<std::string>{"chat", "superchat"}));
  EXPECT_EQ(out.extensions, "");
}

// check_client_request is validate_client_request without the copies: the
// same answer for each request, and views of the same values.
TEST(ServerValidation, CheckGivesValidateAnswerAsViews) {
  const std::pair<std::string_view, std::string_view> variants[] = {
      {"", ""},
      {"GET /", "POST /"},
      {"HTTP/1.1", "HTTP/1.0"},
      {"GET /chat", "GET chat"},
      {"Host: server.example.com\r\n", ""},
      {"Host: server.example.com", "Host: a b"},
      {"Upgrade: websocket", "Upgrade: h2c"},
      {"Connection: Upgrade", "Connection: close"},
      {"Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"},
      {"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR=="},
      {"Sec-WebSocket-Protocol: chat, superchat", "Sec-WebSocket-Protocol: chat, a b"},
      {"Sec-WebSocket-Protocol: chat, superchat\r\n", ""},
      {"Origin: http://example.com\r\n", ""},
      {"Host:", "Transfer-Encoding: chunked\r\nHost:"},
      {"Host:", "Content-Length: 1\r\nHost:"},
      {"Host:", "Sec-WebSocket-Extensions: a\r\nsec-websocket-extensions: b\r\nHost:"},
  };
  for (const auto& [replace, by] : variants) {
    const auto request = parse_request(request_with(replace, by));
    ServerHandshakeRequest copied;
    ClientRequestView view;
    const auto ec = validate_client_request(request, copied);
    EXPECT_EQ(check_client_request(request, view), ec) << by;
    if (ec) continue;
    EXPECT_EQ(view.host, copied.host) << by;
    EXPECT_EQ(view.origin, copied.origin) << by;
    EXPECT_EQ(view.key, copied.key) << by;
    EXPECT_EQ(view.has_protocols, !copied.protocols.empty()) << by;
    EXPECT_EQ(view.has_extensions, !copied.extensions.empty()) << by;
    std::vector<std::string> protocols = {"stale", "stale", "stale"};
    header_list(request.headers, "Sec-WebSocket-Protocol", protocols);
    EXPECT_EQ(protocols, copied.protocols) << by;
    std::string extensions = "stale";
    join_header(request.headers, "Sec-WebSocket-Extensions", extensions);
    EXPECT_EQ(extensions, copied.extensions) << by;
  }
}

// Header names are recognised by a word compare that folds letters only:
// each letter in either case matches, any other byte must be exact (a CR
// where the name has '-' is 0x0D, which 0x20 folds onto '-').
TEST(ServerValidation, RecognisesNamesInAnyLetterCaseAndNothingElse) {
  const std::string_view names[] = {"Host", "Upgrade", "Connection", "Sec-WebSocket-Key",
                                    "Sec-WebSocket-Version"};
  const auto base = [] {
    HttpRequest r;
    r.method = "GET";
    r.target = "/";
    r.headers = {{"Host", "a"},
                 {"Upgrade", "websocket"},
                 {"Connection", "Upgrade"},
                 {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                 {"Sec-WebSocket-Version", "13"}};
    return r;
  };
  ClientRequestView view;
  for (std::size_t h = 0; h < std::size(names); ++h) {
    for (std::size_t i = 0; i < names[h].size(); ++i) {
      auto r = base();
      char& c = r.headers[h].name[i];
      const bool letter = (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
      c = static_cast<char>(letter ? c ^ 0x20 : '\r');
      const auto ec = check_client_request(r, view);
      if (letter)
        EXPECT_FALSE(ec) << r.headers[h].name;
      else
        EXPECT_TRUE(ec) << h << " " << i;
      // One byte changed into a letter it is not: never the same name.
      auto other = base();
      other.headers[h].name[i] = letter ? '-' : 'x';
      EXPECT_TRUE(check_client_request(other, view)) << other.headers[h].name;
    }
  }
  // Tokens of Upgrade and Connection, alone or in lists, in any case.
  auto r = base();
  r.headers[1].value = "WebSocket";
  r.headers[2].value = "UPGRADE";
  EXPECT_FALSE(check_client_request(r, view));
  r.headers[1].value = "websockets";
  EXPECT_EQ(check_client_request(r, view), error::bad_upgrade);
  r.headers[1].value = "h2c ,  websocket";
  r.headers[2].value = "upgrad";
  EXPECT_EQ(check_client_request(r, view), error::bad_connection);
}

TEST(ServerValidation, AcceptsCaseVariantsAndTokenLists) {
  const auto text = request_with("Upgrade: websocket\r\nConnection: Upgrade\r\n",
                                 "upgrade: h2c, WebSocket\r\nCONNECTION: keep-alive, upgrade\r\n"
                                 "sec-websocket-extensions: a; x=1\r\n"
                                 "Sec-WebSocket-Extensions: b\r\n"
                                 "sec-websocket-protocol: v3\r\n");
  ServerHandshakeRequest out;
  ASSERT_FALSE(validate_client_request(parse_request(text), out));
  EXPECT_EQ(out.extensions, "a; x=1, b");
  EXPECT_EQ(out.protocols, (std::vector<std::string>{"v3", "chat", "superchat"}));
}

TEST(ServerValidation, AcceptsAbsoluteFormAndLaterMinorVersions) {
  EXPECT_FALSE(
      validate_request_text(request_with("GET /chat", "GET wss://server.example.com/chat")));
  EXPECT_FALSE(validate_request_text(request_with("HTTP/1.1", "HTTP/1.2")));
  EXPECT_FALSE(validate_request_text(request_with("Host:", "Content-Length: 0\r\nHost:")));
}

TEST(ServerValidation, RefusesOtherMethods) {
  EXPECT_EQ(validate_request_text(request_with("GET /", "POST /")), error::bad_method);
  EXPECT_EQ(validate_request_text(request_with("GET /", "get /")), error::bad_method);
  EXPECT_EQ(validate_request_text(request_with("GET /", "HEAD /")), error::bad_method);
}

TEST(ServerValidation, RefusesHttp10) {
  EXPECT_EQ(validate_request_text(request_with("HTTP/1.1", "HTTP/1.0")), error::bad_http_version);
}

TEST(ServerValidation, RefusesTargetsThatAreNotOriginOrAbsoluteForm) {
  for (const char* t :
       {"GET *", "GET chat", "GET server.example.com:80", "GET ://x/", "GET ws://", "GET 1ws://x/"})
    EXPECT_EQ(validate_request_text(request_with("GET /chat", t)), error::bad_http_message) << t;
  HttpRequest empty_target = parse_request(request_with("", ""));
  empty_target.target.clear();
  ServerHandshakeRequest out;
  EXPECT_EQ(validate_client_request(empty_target, out), error::bad_http_message);
}

TEST(ServerValidation, RefusesARequestBody) {
  EXPECT_EQ(validate_request_text(request_with("Host:", "Content-Length: 5\r\nHost:")),
            error::bad_http_message);
  EXPECT_EQ(validate_request_text(request_with("Host:", "Transfer-Encoding: chunked\r\nHost:")),
            error::bad_http_message);
}

TEST(ServerValidation, HostTakesRfc3986CharactersOnly) {
  for (const char* ok : {"a", "[::1]:9000", "xn--bcher-kva.example:80", "a-b.c_d~e%41!$&'()*+,;="})
    EXPECT_EQ(
        validate_request_text(request_with("Host: server.example.com", "Host: " + std::string(ok))),
        std::error_code())
        << ok;
  for (const char* bad :
       {"a/b", "a@b", "a\"b", "a<b", "a{b", "a\\b", "a^b", "a|b", "a`b", "\xC3\xA9"})
    EXPECT_EQ(validate_request_text(
                  request_with("Host: server.example.com", "Host: " + std::string(bad))),
              error::bad_http_message)
        << bad;
}

TEST(ServerValidation, RefusesMissingEmptyOrRepeatedHost) {
  EXPECT_EQ(validate_request_text(request_with("Host: server.example.com\r\n", "")),
            error::missing_host);
  EXPECT_EQ(validate_request_text(request_with("Host: server.example.com", "Host:")),
            error::missing_host);
  EXPECT_EQ(
      validate_request_text(request_with("Host: server.example.com\r\n", "Host: a\r\nHost: b\r\n")),
      error::bad_http_message);
}

TEST(ServerValidation, RefusesMissingOrWrongUpgrade) {
  EXPECT_EQ(validate_request_text(request_with("Upgrade: websocket\r\n", "")), error::bad_upgrade);
  EXPECT_EQ(validate_request_text(request_with("Upgrade: websocket", "Upgrade: h2c")),
            error::bad_upgrade);
  EXPECT_EQ(validate_request_text(request_with("Upgrade: websocket", "Upgrade: websockets")),
            error::bad_upgrade);
}

TEST(ServerValidation, RefusesMissingOrWrongConnection) {
  EXPECT_EQ(validate_request_text(request_with("Connection: Upgrade\r\n", "")),
            error::bad_connection);
  EXPECT_EQ(validate_request_text(request_with("Connection: Upgrade", "Connection: keep-alive")),
            error::bad_connection);
  EXPECT_EQ(validate_request_text(request_with("Connection: Upgrade", "Connection: close")),
            error::bad_connection);
}

TEST(ServerValidation, RefusesMissingOrOtherVersions) {
  EXPECT_EQ(validate_request_text(request_with("Sec-WebSocket-Version: 13\r\n", "")),
            error::bad_version);
  for (const char* v : {"8", "14", "13, 8", "013", "", "thirteen"})
    EXPECT_EQ(validate_request_text(request_with("Sec-WebSocket-Version: 13",
                                                 "Sec-WebSocket-Version: " + std::string(v))),
              error::bad_version)
        << v;
  EXPECT_EQ(validate_request_text(request_with("Sec-WebSocket-Version: 13",
                                               "Sec-WebSocket-Version: 13\r\n"
                                               "Sec-WebSocket-Version: 13")),
            error::bad_version);
}

TEST(ServerValidation, VersionIsCheckedBeforeTheKey) {
  // A version-8 client with a key we would refuse still learns we speak 13.
  auto text = request_with("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
  const std::string key_line = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
  text.replace(text.find(key_line), key_line.size(), "Sec-WebSocket-Key: short");
  const auto ec = validate_request_text(text);
  EXPECT_EQ(ec, error::bad_version);
  EXPECT_EQ(status_for(ec), 426);
  // With version 13, the same key is refused.
  text.replace(text.find("Version: 8"), 10, "Version: 13");
  EXPECT_EQ(validate_request_text(text), error::bad_key);
}

TEST(ServerValidation, RefusesMissingOrMalformedKeys) {
  EXPECT_EQ(
      validate_request_text(request_with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")),
      error::bad_key);
  for (const char* k :
       {"", "dGhlIHNhbXBsZSBub25j", /* 15 bytes: */ "dGhlIHNhbXBsZSBub25jZQ=",
        "AAAAAAAAAAAAAAAAAAAA", /* 17 bytes: */ "dGhlIHNhbXBsZSBub25jZSE=",
        /* non-canonical: */ "dGhlIHNhbXBsZSBub25jZR==", "dGhlIHNhbXBsZSBub25jZQ",
        "dGhlIHNhbXBsZSBub25jZQ==dGhl", "dGhlIHNhbXBsZSBub2-jZQ==", "dGhlIHNhbXBsZSBub2 jZQ=="})
    EXPECT_EQ(validate_request_text(request_with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                                 "Sec-WebSocket-Key: " + std::string(k))),
              error::bad_key)
        << k;
  EXPECT_EQ(validate_request_text(request_with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                               "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==")),
            error::bad_key);
}

TEST(ServerValidation, RefusesProtocolsThatAreNotTokens) {
  EXPECT_EQ(validate_request_text(request_with("chat, superchat", "chat, \"super\"")),
            error::bad_http_message);
  EXPECT_EQ(validate_request_text(request_with("chat, superchat", "chat, a/b")),
            error::bad_http_message);
}

TEST(ServerValidation, LeavesOutputUntouchedOnFailure) {
  ServerHandshakeRequest out;
  out.host = "before";
  EXPECT_EQ(validate_client_request(parse_request(request_with("Version: 13", "Version: 7")), out),
            error::bad_version);
  EXPECT_EQ(out.host, "before");
  EXPECT_TRUE(out.key.empty());
}

TEST(ServerValidation, ErrorsAreHandshakeFailures) {
  const auto ec = validate_request_text(request_with("GET /", "PUT /"));
  EXPECT_EQ(ec, duplex::condition::handshake_failed);
  EXPECT_NE(ec, duplex::condition::protocol_violation);
}

// --- server answers ------------------------------------------------------------------------

TEST(ServerResponse, BuildsTheRfcExampleByteForByte) {
  EXPECT_EQ(build_server_response(rfc_key, "chat", ""),
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "Sec-WebSocket-Protocol: chat\r\n"
            "\r\n");
}

TEST(ServerResponse, AddsExtensionsAndExtraHeaders) {
  EXPECT_EQ(build_server_response(rfc_key, "", "permessage-deflate; server_no_context_takeover",
                                  {{"Set-Cookie", "a=b"}}),
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
            "Set-Cookie: a=b\r\n"
            "\r\n");
}

TEST(ServerResponse, RefusesBadArguments) {
  expect_invalid([] { build_server_response("", "", ""); }, "key");
  expect_invalid([] { build_server_response("a\r\nb", "", ""); }, "key");
  expect_invalid([] { build_server_response(rfc_key, "a b", ""); }, "protocol");
  expect_invalid([] { build_server_response(rfc_key, "", "x\r\n"); }, "extensions");
  expect_invalid(
      [] {
        build_server_response(rfc_key, "", "", {{"Sec-WebSocket-Accept", "x"}});
      },
      "extra");
  expect_invalid([] { build_server_response(rfc_key, "", "", {{"X", " padded"}}); }, "extra");
}

TEST(ServerResponse, WritesTheSameAnswerIntoAReusedString) {
  std::string out = "stale contents that must not survive";
  write_server_response(out, rfc_key, "chat", "permessage-deflate", {{"Set-Cookie", "a=b"}});
  EXPECT_EQ(out,
            build_server_response(rfc_key, "chat", "permessage-deflate", {{"Set-Cookie", "a=b"}}));
  const auto* storage = out.data();
  write_server_response(out, rfc_key, "", "");
  EXPECT_EQ(out, build_server_response(rfc_key, "", ""));
  EXPECT_EQ(out.data(), storage);  // the shorter answer reused the storage
}

TEST(ServerResponse, WriteRefusesBadArgumentsLeavingTheStringAlone) {
  std::string out = "kept";
  expect_invalid([&] { write_server_response(out, "", "", ""); }, "key");
  expect_invalid([&] { write_server_response(out, rfc_key, "a b", ""); }, "protocol");
  expect_invalid([&] { write_server_response(out, rfc_key, "", "x\r\n"); }, "extensions");
  EXPECT_EQ(out, "kept");
}

TEST(ErrorResponse, BuildsA400ByteForByte) {
  EXPECT_EQ(build_error_response(400, "bad request\n"),
            "HTTP/1.1 400 Bad Request\r\n"
            "Connection: close\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: 12\r\n"
            "\r\n"
            "bad request\n");
}

TEST(ErrorResponse, A426NamesVersion13Once) {
  const auto res = parse_response(build_error_response(426, ""));
  EXPECT_EQ(res.status, 426);
  EXPECT_EQ(res.reason, "Upgrade Required");
  EXPECT_EQ(header_list(res.headers, "Sec-WebSocket-Version"), std::vector<std::string>{"13"});
  // Given by the caller, it is not repeated.
  const auto text = build_error_response(426, "x", {{"Sec-WebSocket-Version", "13"}});
  EXPECT_EQ(
      header_list(parse_response(text.substr(0, text.size() - 1)).headers, "Sec-WebSocket-Version"),
      std::vector<std::string>{"13"});
}

TEST(ErrorResponse, A405ListsGet) {
  const auto res = parse_response(build_error_response(405, ""));
  EXPECT_EQ(res.reason, "Method Not Allowed");
  EXPECT_EQ(find_header(res.headers, "Allow"), "GET");
  const auto other = build_error_response(405, "", {{"Allow", "GET, HEAD"}});
  EXPECT_EQ(header_list(parse_response(other).headers, "Allow"),
            (std::vector<std::string>{"GET", "HEAD"}));
}

TEST(ErrorResponse, ContentLengthMatchesTheBodyAndExtrasFollow) {
  const std::string body(1000, 'z');
  const auto text = build_error_response(431, body, {{"Retry-After", "5"}});
  HttpResponse res;
  std::error_code ec;
  const auto head = parse_http_response(text, res, ec);
  ASSERT_GT(head, 0u) << ec.message();
  EXPECT_EQ(res.status, 431);
  EXPECT_EQ(res.reason, "Request Header Fields Too Large");
  EXPECT_EQ(find_header(res.headers, "Content-Length"), "1000");
  EXPECT_EQ(find_header(res.headers, "Connection"), "close");
  EXPECT_EQ(res.headers.back().name, "Retry-After");
  EXPECT_EQ(text.substr(head), body);
}

TEST(ErrorResponse, RefusesBadArguments) {
  for (int s : {0, 99, 100, 101, 199, 204, 304, 600, -400})
    expect_invalid([&] { build_error_response(s, ""); }, "status");
  for (const HttpHeader& h :
       {HttpHeader{"Connection", "keep-alive"}, HttpHeader{"content-length", "1"},
        HttpHeader{"Content-Type", "x"}, HttpHeader{"Transfer-Encoding", "chunked"}})
    expect_invalid([&] { build_error_response(400, "", {h}); }, "extra");
  expect_invalid([] { build_error_response(400, "", {{"X", "a\nb"}}); }, "extra");
  expect_invalid([] { build_error_response(400, "", {{"X:", "a"}}); }, "extra");
}

TEST(ErrorResponse, ReasonPhrases) {
  EXPECT_EQ(reason_phrase(101), "Switching Protocols");
  EXPECT_EQ(reason_phrase(200), "OK");
  EXPECT_EQ(reason_phrase(400), "Bad Request");
  EXPECT_EQ(reason_phrase(403), "Forbidden");
  EXPECT_EQ(reason_phrase(404), "Not Found");
  EXPECT_EQ(reason_phrase(503), "Service Unavailable");
  EXPECT_EQ(reason_phrase(505), "HTTP Version Not Supported");
  EXPECT_EQ(reason_phrase(299), "Unknown");
  EXPECT_EQ(reason_phrase(-1), "Unknown");
  // An unknown status still gives a parseable status line.
  EXPECT_EQ(parse_response(build_error_response(499, "")).reason, "Unknown");
}

TEST(ErrorResponse, StatusForEachValidationError) {
  using duplex::make_error_code;
  EXPECT_EQ(status_for(make_error_code(error::bad_version)), 426);
  EXPECT_EQ(status_for(make_error_code(error::header_too_large)), 431);
  EXPECT_EQ(status_for(make_error_code(error::bad_method)), 405);
  EXPECT_EQ(status_for(make_error_code(error::bad_http_version)), 505);
  EXPECT_EQ(status_for(make_error_code(error::handshake_refused)), 403);
  for (auto e : {error::bad_http_message, error::missing_host, error::bad_upgrade,
                 error::bad_connection, error::bad_key, error::bad_extension_offer})
    EXPECT_EQ(status_for(make_error_code(e)), 400);
  EXPECT_EQ(status_for(duplex::make_http_error(404)), 404);
  EXPECT_EQ(status_for(duplex::make_http_error(503)), 503);
  EXPECT_EQ(status_for(duplex::make_http_error(200)), 400);
  EXPECT_EQ(status_for(std::make_error_code(std::errc::invalid_argument)), 400);
}

TEST(HeaderRules, IsValidHeader) {
  EXPECT_TRUE(is_valid_header("Authorization", "Bearer x"));
  EXPECT_TRUE(is_valid_header("X-Empty", ""));
  EXPECT_TRUE(is_valid_header("X-Tab", "a\tb"));
  EXPECT_TRUE(is_valid_header("X-Utf8", "caf\xC3\xA9"));
  EXPECT_TRUE(is_valid_header("Origin", "http://a"));
  EXPECT_TRUE(is_valid_header("Cookie", "a=b; c=d"));
  EXPECT_FALSE(is_valid_header("", "x"));
  EXPECT_FALSE(is_valid_header("X Y", "x"));
  EXPECT_FALSE(is_valid_header("X:", "x"));
  EXPECT_FALSE(is_valid_header("X\r\nY", "x"));
  EXPECT_FALSE(is_valid_header("X", "a\rb"));
  EXPECT_FALSE(is_valid_header("X", "a\nb"));
  EXPECT_FALSE(is_valid_header("X", std::string_view("a\0b", 3)));
  EXPECT_FALSE(is_valid_header("X", "a\x7F"));
  EXPECT_FALSE(is_valid_header("X", " lead"));
  EXPECT_FALSE(is_valid_header("X", "trail\t"));
}

TEST(HeaderRules, LibraryHeadersAreReserved) {
  for (const char* n : {"Host", "upgrade", "CONNECTION", "Sec-WebSocket-Key",
                        "sec-websocket-version", "Sec-WebSocket-Accept", "Sec-WebSocket-Protocol",
                        "Sec-WebSocket-Extensions", "Content-Length", "Transfer-Encoding"}) {
    EXPECT_TRUE(is_reserved_header(n)) << n;
    EXPECT_FALSE(is_valid_header(n, "x")) << n;
  }
  EXPECT_FALSE(is_reserved_header("Origin"));
  EXPECT_FALSE(is_reserved_header("Hosts"));
  EXPECT_FALSE(is_reserved_header("Sec-WebSocket-Keys"));
}

// --- client checks of the answer -----------------------------------------------------------

std::string response_with(std::string_view replace, std::string_view by) {
  std::string r =
      "HTTP/1.1 101 Switching Protocols\r\n"
      "Upgrade: websocket\r\n"
      "Connection: Upgrade\r\n"
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
      "\r\n";
  if (!replace.empty()) {
    const auto at = r.find(replace);
    EXPECT_NE(at, std::string::npos) << replace;
    r.replace(at, replace.size(), by);
  }
  return r;
}

const std::vector<std::string> offered = {"chat", "superchat"};

std::error_code validate_response_text(std::string_view text,
                                       const std::vector<std::string>& protocols = offered) {
  ClientHandshakeResult out;
  return validate_server_response(parse_response(text), rfc_key, protocols, out);
}

TEST(ClientValidation, AcceptsTheRfcExampleAnswer) {
  ClientHandshakeResult out;
  ASSERT_FALSE(
      validate_server_response(parse_response(response_with("", "")), rfc_key, offered, out));
  EXPECT_EQ(out.protocol, "");
  EXPECT_EQ(out.extensions, "");
}

TEST(ClientValidation, AcceptsCaseVariantsAndTokenLists) {
  EXPECT_FALSE(validate_response_text(
      response_with("Upgrade: websocket\r\nConnection: Upgrade",
                    "UPGRADE: WebSocket\r\nconnection: keep-alive, upgrade")));
  EXPECT_FALSE(validate_response_text(
      response_with("Connection: Upgrade", "Connection: keep-alive\r\nConnection: Upgrade")));
}

TEST(ClientValidation, ReturnsTheSelectedProtocolAndRawExtensions) {
  ClientHandshakeResult out;
  const auto text = response_with("\r\n\r\n",
                                  "\r\nSec-WebSocket-Protocol: superchat\r\n"
                                  "Sec-WebSocket-Extensions: permessage-deflate; "
                                  "server_max_window_bits=10\r\n"
                                  "sec-websocket-extensions: x-other\r\n\r\n");
  ASSERT_FALSE(validate_server_response(parse_response(text), rfc_key, offered, out));
  EXPECT_EQ(out.protocol, "superchat");
  EXPECT_EQ(out.extensions, "permessage-deflate; server_max_window_bits=10, x-other");
}

TEST(ClientValidation, OtherStatusesAreHttpErrors) {
  for (int status : {200, 400, 403, 404, 426, 500, 503}) {
    const auto text = "HTTP/1.1 " + std::to_string(status) + " " +
                      std::string(reason_phrase(status)) + "\r\nContent-Length: 0\r\n\r\n";
    const auto ec = validate_response_text(text);
    EXPECT_EQ(ec, duplex::make_http_error(status));
    EXPECT_EQ(ec.category(), duplex::http_category());
    EXPECT_EQ(ec, duplex::condition::handshake_failed);
  }
}

TEST(ClientValidation, RefusesMissingOrWrongUpgrade) {
  EXPECT_EQ(validate_response_text(response_with("Upgrade: websocket\r\n", "")),
            error::bad_upgrade);
  EXPECT_EQ(validate_response_text(response_with("Upgrade: websocket", "Upgrade: h2c")),
            error::bad_upgrade);
}

TEST(ClientValidation, RefusesMissingOrWrongConnection) {
  EXPECT_EQ(validate_response_text(response_with("Connection: Upgrade\r\n", "")),
            error::bad_connection);
  EXPECT_EQ(validate_response_text(response_with("Connection: Upgrade", "Connection: close")),
            error::bad_connection);
}

TEST(ClientValidation, RefusesMissingWrongOrRepeatedAccept) {
  const std::string line = "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
  EXPECT_EQ(validate_response_text(response_with(line + "\r\n", "")), error::bad_accept);
  EXPECT_EQ(validate_response_text(response_with(line, "Sec-WebSocket-Accept: x")),
            error::bad_accept);
  // Base64 is case-sensitive, and the value is not a list.
  EXPECT_EQ(validate_response_text(
                response_with(line, "Sec-WebSocket-Accept: S3PPLMBITXAQ9KYGZZHZRBK+XOO=")),
            error::bad_accept);
  EXPECT_EQ(validate_response_text(response_with(line, line + "\r\n" + line)), error::bad_accept);
  EXPECT_EQ(validate_response_text(response_with(line, line + ", x")), error::bad_accept);
  // The accept of another key.
  EXPECT_EQ(validate_response_text(response_with(
                line, "Sec-WebSocket-Accept: " + compute_accept("AQIDBAUGBwgJCgsMDQ4PEA=="))),
            error::bad_accept);
}

TEST(ClientValidation, RefusesProtocolsNotOffered) {
  const auto with_protocol = [](std::string_view lines) {
    return response_with("\r\n\r\n", "\r\n" + std::string(lines) + "\r\n\r\n");
  };
  EXPECT_EQ(validate_response_text(with_protocol("Sec-WebSocket-Protocol: other")),
            error::unexpected_protocol);
  // Subprotocol names compare case-sensitively.
  EXPECT_EQ(validate_response_text(with_protocol("Sec-WebSocket-Protocol: Chat")),
            error::unexpected_protocol);
  EXPECT_EQ(validate_response_text(with_protocol("Sec-WebSocket-Protocol: chat, superchat")),
            error::unexpected_protocol);
  EXPECT_EQ(validate_response_text(
                with_protocol("Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat")),
            error::unexpected_protocol);
  EXPECT_EQ(validate_response_text(with_protocol("Sec-WebSocket-Protocol:")),
            error::unexpected_protocol);
  EXPECT_EQ(validate_response_text(with_protocol("Sec-WebSocket-Protocol: chat"), {}),
            error::unexpected_protocol);
}

TEST(ClientValidation, LeavesOutputUntouchedOnFailure) {
  ClientHandshakeResult out;
  out.protocol = "before";
  const auto text = response_with("\r\n\r\n", "\r\nSec-WebSocket-Protocol: nope\r\n\r\n");
  EXPECT_EQ(validate_server_response(parse_response(text), rfc_key, offered, out),
            error::unexpected_protocol);
  EXPECT_EQ(out.protocol, "before");
}

// --- both sides ------------------------------------------------------------------------------

TEST(HandshakeRoundTrip, ClientRequestServerAnswerClientCheck) {
  ClientHandshakeOptions o;
  o.host = "example.com:8080";
  o.target = "/ws?x=1";
  o.origin = "https://example.com";
  o.protocols = {"v2.json", "v1.json"};
  o.extensions = "permessage-deflate; client_max_window_bits";
  o.headers = {{"Cookie", "s=1"}};
  const auto key = generate_key();

  ServerHandshakeRequest seen;
  ASSERT_FALSE(validate_client_request(parse_request(build_client_request(o, key)), seen));
  EXPECT_EQ(seen.host, o.host);
  EXPECT_EQ(seen.target, o.target);
  EXPECT_EQ(seen.origin, o.origin);
  EXPECT_EQ(seen.key, key);
  EXPECT_EQ(seen.protocols, o.protocols);
  EXPECT_EQ(seen.extensions, o.extensions);

  const auto answer = build_server_response(seen.key, seen.protocols[1], "permessage-deflate");
  ClientHandshakeResult result;
  ASSERT_FALSE(validate_server_response(parse_response(answer), key, o.protocols, result));
  EXPECT_EQ(result.protocol, "v1.json");
  EXPECT_EQ(result.extensions, "permessage-deflate");

  // The same answer does not satisfy a client that sent another key.
  EXPECT_EQ(validate_server_response(parse_response(answer), generate_key(), o.protocols, result),
            error::bad_accept);
}

}  // namespace
