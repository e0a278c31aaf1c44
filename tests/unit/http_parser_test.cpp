// HTTP/1.1 header-block parsing for the opening handshake (RFC 9112 2-5, as
// used by RFC 6455 4): complete blocks, every split point, strictness, limits.
#include <gtest/gtest.h>
#include <duplex/error.hpp>
#include <duplex/protocol/handshake.hpp>

#include <random>
#include <string>

namespace {

using namespace duplex::protocol;
using duplex::error;

// What Chromium sends for `new WebSocket("ws://localhost:8080/chat", ["chat"])`.
const std::string browser_request =
    "GET /chat?room=1 HTTP/1.1\r\n"
    "Host: localhost:8080\r\n"
    "Connection: Upgrade\r\n"
    "Pragma: no-cache\r\n"
    "Cache-Control: no-cache\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36\r\n"
    "Upgrade: websocket\r\n"
    "Origin: http://localhost:8080\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    "Sec-WebSocket-Protocol: chat\r\n"
    "\r\n";

const std::string server_response =
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    "Sec-WebSocket-Protocol: chat\r\n"
    "\r\n";

bool same(const HttpHeaders& a, const HttpHeaders& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].name != b[i].name || a[i].value != b[i].value) return false;
  return true;
}
bool same(const HttpRequest& a, const HttpRequest& b) {
  return a.method == b.method && a.target == b.target && a.version_minor == b.version_minor &&
         same(a.headers, b.headers);
}
bool same(const HttpResponse& a, const HttpResponse& b) {
  return a.status == b.status && a.reason == b.reason && a.version_minor == b.version_minor &&
         same(a.headers, b.headers);
}

std::error_code request_error(std::string_view data,
                              std::size_t max_size = default_max_header_size) {
  HttpRequest req;
  std::error_code ec;
  const auto n = parse_http_request(data, req, ec, max_size);
  if (ec) {
    EXPECT_EQ(n, 0u);
  }
  return ec;
}
std::error_code response_error(std::string_view data) {
  HttpResponse res;
  std::error_code ec;
  const auto n = parse_http_response(data, res, ec);
  if (ec) {
    EXPECT_EQ(n, 0u);
  }
  return ec;
}

std::string with_header_line(std::string_view line) {
  return "GET / HTTP/1.1\r\nHost: a\r\n" + std::string(line) + "\r\n\r\n";
}

// --- complete blocks ---------------------------------------------------------------

TEST(HttpParser, ParsesBrowserRequest) {
  HttpRequest req;
  std::error_code ec;
  ASSERT_EQ(parse_http_request(browser_request, req, ec), browser_request.size());
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(req.method, "GET");
  EXPECT_EQ(req.target, "/chat?room=1");
  EXPECT_EQ(req.version_minor, 1);
  ASSERT_EQ(req.headers.size(), 13u);
  EXPECT_EQ(req.headers[0].name, "Host");
  EXPECT_EQ(req.headers[0].value, "localhost:8080");
  EXPECT_EQ(req.headers[4].name, "User-Agent");
  EXPECT_EQ(req.headers[4].value.substr(0, 12), "Mozilla/5.0 ");
  EXPECT_EQ(req.headers[12].name, "Sec-WebSocket-Protocol");
  EXPECT_EQ(req.headers[12].value, "chat");
}

TEST(HttpParser, ParsesServerResponse) {
  HttpResponse res;
  std::error_code ec;
  ASSERT_EQ(parse_http_response(server_response, res, ec), server_response.size());
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(res.status, 101);
  EXPECT_EQ(res.reason, "Switching Protocols");
  EXPECT_EQ(res.version_minor, 1);
  ASSERT_EQ(res.headers.size(), 4u);
  EXPECT_EQ(res.headers[2].value, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(HttpParser, LeavesBytesAfterTheBlockUnconsumed) {
  // The server may send its first frame right behind the 101.
  const std::string data = server_response + "\x81\x05hello";
  HttpResponse res;
  std::error_code ec;
  EXPECT_EQ(parse_http_response(data, res, ec), server_response.size());
  EXPECT_FALSE(ec);
}

TEST(HttpParser, TrimsWhiteSpaceAroundValuesOnly) {
  HttpRequest req;
  std::error_code ec;
  const auto msg = with_header_line("X-Thing: \t  a  b\t \t");
  ASSERT_EQ(parse_http_request(msg, req, ec), msg.size());
  ASSERT_EQ(req.headers.size(), 2u);
  EXPECT_EQ(req.headers[1].value, "a  b");
}

TEST(HttpParser, AcceptsEmptyValuesAndValuesWithColons) {
  HttpRequest req;
  std::error_code ec;
  const std::string msg =
      "GET / HTTP/1.1\r\nHost: example.com:8080\r\nX-Empty:\r\nX-Sp:   \r\n\r\n";
  ASSERT_EQ(parse_http_request(msg, req, ec), msg.size());
  ASSERT_EQ(req.headers.size(), 3u);
  EXPECT_EQ(req.headers[0].value, "example.com:8080");
  EXPECT_EQ(req.headers[1].value, "");
  EXPECT_EQ(req.headers[2].value, "");
}

TEST(HttpParser, KeepsNameCaseAndRepeatedHeadersInOrder) {
  HttpRequest req;
  std::error_code ec;
  const std::string msg = "GET / HTTP/1.1\r\nhOsT: a\r\nX-A: 1\r\nx-a: 2\r\n\r\n";
  ASSERT_EQ(parse_http_request(msg, req, ec), msg.size());
  ASSERT_EQ(req.headers.size(), 3u);
  EXPECT_EQ(req.headers[0].name, "hOsT");
  EXPECT_EQ(req.headers[1].value, "1");
  EXPECT_EQ(req.headers[2].name, "x-a");
  EXPECT_EQ(req.headers[2].value, "2");
}

TEST(HttpParser, AcceptsTabsAndObsTextInValues) {
  HttpRequest req;
  std::error_code ec;
  const auto msg = with_header_line("X-Name: caf\xC3\xA9\tbar");
  ASSERT_EQ(parse_http_request(msg, req, ec), msg.size()) << ec.message();
  EXPECT_EQ(req.headers[1].value, "caf\xC3\xA9\tbar");
}

TEST(HttpParser, AcceptsAbsoluteFormAndRawUtf8Targets) {
  HttpRequest req;
  std::error_code ec;
  std::string msg = "GET ws://example.com/chat HTTP/1.1\r\nHost: example.com\r\n\r\n";
  ASSERT_EQ(parse_http_request(msg, req, ec), msg.size());
  EXPECT_EQ(req.target, "ws://example.com/chat");
  msg = "GET /caf\xC3\xA9 HTTP/1.1\r\nHost: example.com\r\n\r\n";
  ASSERT_EQ(parse_http_request(msg, req, ec), msg.size());
  EXPECT_EQ(req.target, "/caf\xC3\xA9");
}

TEST(HttpParser, ParsesOtherMinorVersions) {
  HttpRequest req;
  std::error_code ec;
  std::string msg = "GET / HTTP/1.0\r\n\r\n";
  ASSERT_EQ(parse_http_request(msg, req, ec), msg.size());
  EXPECT_EQ(req.version_minor, 0);
  EXPECT_TRUE(req.headers.empty());
  msg = "GET / HTTP/1.9\r\nHost: a\r\n\r\n";
  ASSERT_EQ(parse_http_request(msg, req, ec), msg.size());
  EXPECT_EQ(req.version_minor, 9);
}

TEST(HttpParser, RefusesOtherMajorVersionsAsBadHttpVersion) {
  EXPECT_EQ(request_error("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), error::bad_http_version);
  EXPECT_EQ(request_error("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), error::bad_http_version);
  EXPECT_EQ(response_error("HTTP/2.0 101 Switching Protocols\r\n\r\n"), error::bad_http_version);
}

TEST(HttpParser, ReusesTheOutputObjectWithoutStaleHeaders) {
  HttpRequest req;
  std::error_code ec;
  ASSERT_EQ(parse_http_request(browser_request, req, ec), browser_request.size());
  const std::string small = "POST /x HTTP/1.1\r\nA: b\r\n\r\n";
  ASSERT_EQ(parse_http_request(small, req, ec), small.size());
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.target, "/x");
  ASSERT_EQ(req.headers.size(), 1u);
  EXPECT_EQ(req.headers[0].name, "A");
  EXPECT_EQ(req.headers[0].value, "b");
}

TEST(HttpParser, ParsesManyHeaders) {
  std::string msg = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 500; ++i)
    msg += "X-" + std::to_string(i) + ": v" + std::to_string(i) + "\r\n";
  msg += "\r\n";
  HttpRequest req;
  std::error_code ec;
  ASSERT_EQ(parse_http_request(msg, req, ec), msg.size());
  ASSERT_EQ(req.headers.size(), 500u);
  EXPECT_EQ(req.headers[499].name, "X-499");
  EXPECT_EQ(req.headers[499].value, "v499");
}

// --- split points --------------------------------------------------------------------

TEST(HttpParser, RequestIsIncompleteAtEverySplitPointThenIdentical) {
  HttpRequest whole;
  std::error_code ec;
  ASSERT_EQ(parse_http_request(browser_request, whole, ec), browser_request.size());
  for (std::size_t k = 0; k < browser_request.size(); ++k) {
    HttpRequest part;
    EXPECT_EQ(parse_http_request(std::string_view(browser_request).substr(0, k), part, ec), 0u)
        << k;
    EXPECT_FALSE(ec) << k << ": " << ec.message();
  }
  HttpRequest again;
  EXPECT_EQ(parse_http_request(browser_request, again, ec), browser_request.size());
  EXPECT_TRUE(same(whole, again));
}

TEST(HttpParser, ResponseIsIncompleteAtEverySplitPointThenIdentical) {
  HttpResponse whole;
  std::error_code ec;
  ASSERT_EQ(parse_http_response(server_response, whole, ec), server_response.size());
  for (std::size_t k = 0; k < server_response.size(); ++k) {
    HttpResponse part;
    EXPECT_EQ(parse_http_response(std::string_view(server_response).substr(0, k), part, ec), 0u)
        << k;
    EXPECT_FALSE(ec) << k;
  }
}

TEST(HttpParser, ResumedScanGivesTheSameResultForEveryStepSize) {
  HttpRequest whole;
  std::error_code ec;
  ASSERT_EQ(parse_http_request(browser_request, whole, ec), browser_request.size());
  for (std::size_t step = 1; step <= 40; ++step) {
    HttpRequest part;
    std::size_t scanned = 0;
    std::size_t got = 0;
    std::size_t fed = 0;
    while (got == 0 && fed < browser_request.size()) {
      fed = std::min(fed + step, browser_request.size());
      got = parse_http_request(std::string_view(browser_request).substr(0, fed), part, ec,
                               default_max_header_size, scanned);
      ASSERT_FALSE(ec) << step;
      EXPECT_LE(scanned, fed);
    }
    EXPECT_EQ(got, browser_request.size()) << step;
    EXPECT_TRUE(same(whole, part)) << step;
  }
}

TEST(HttpParser, ResumedScanOfResponseWithTrailingFrameBytes) {
  const std::string data = server_response + "\x81\x02hi";
  HttpResponse whole;
  std::error_code ec;
  ASSERT_EQ(parse_http_response(data, whole, ec), server_response.size());
  for (std::size_t step = 1; step <= 9; ++step) {
    HttpResponse part;
    std::size_t scanned = 0;
    std::size_t got = 0;
    for (std::size_t fed = step; got == 0; fed += step) {
      fed = std::min(fed, data.size());
      got = parse_http_response(std::string_view(data).substr(0, fed), part, ec,
                                default_max_header_size, scanned);
      ASSERT_FALSE(ec);
      if (fed == data.size()) break;
    }
    EXPECT_EQ(got, server_response.size()) << step;
    EXPECT_TRUE(same(whole, part)) << step;
  }
}

// --- line endings ---------------------------------------------------------------------

TEST(HttpParser, RefusesBareLfAsSoonAsItArrives) {
  // The block is not complete, yet the bare LF already makes it malformed.
  EXPECT_EQ(request_error("GET / HTTP/1.1\nHost"), error::bad_http_message);
  EXPECT_EQ(request_error("\n"), error::bad_http_message);
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\nHost: a\n"), error::bad_http_message);
  EXPECT_EQ(response_error("HTTP/1.1 101 OK\n\n"), error::bad_http_message);
}

// The block's end is searched 16 bytes at a time: line ends at every offset
// from a 16-byte boundary, found at once, at every split point and resumed.
TEST(HttpParser, LineEndsAtEveryOffsetGiveTheSameRequestAtEverySplitPoint) {
  for (std::size_t pad = 0; pad <= 33; ++pad) {
    const std::string text = "GET /" + std::string(pad, 'p') +
                             " HTTP/1.1\r\nHost: a\r\nX-Pad: " + std::string(pad, 'v') +
                             "\r\nUpgrade: websocket\r\n\r\n";
    HttpRequest whole;
    std::error_code ec;
    ASSERT_EQ(parse_http_request(text, whole, ec), text.size()) << pad;
    ASSERT_EQ(whole.headers.size(), 3u);
    EXPECT_EQ(whole.headers[1].value, std::string(pad, 'v'));
    for (std::size_t k = 0; k < text.size(); ++k) {
      HttpRequest part;
      ASSERT_EQ(parse_http_request(std::string_view(text).substr(0, k), part, ec), 0u)
          << pad << " " << k;
      ASSERT_FALSE(ec) << pad << " " << k;
      // Resumed: the first k bytes, then the rest.
      std::size_t scanned = 0;
      ASSERT_EQ(parse_http_request(std::string_view(text).substr(0, k), part, ec,
                                   default_max_header_size, scanned),
                0u);
      ASSERT_EQ(parse_http_request(text, part, ec, default_max_header_size, scanned), text.size());
      ASSERT_TRUE(same(whole, part)) << pad << " " << k;
    }
  }
}

TEST(HttpParser, RefusesABareLfAtEveryOffset) {
  const std::string good = "GET / HTTP/1.1\r\nHost: a\r\nX-Long: 0123456789abcdefghij\r\n\r\n";
  // Every CR of the block, in turn, dropped: its LF is bare.
  for (std::size_t at = good.find('\r'); at != std::string::npos; at = good.find('\r', at + 1)) {
    std::string bad = good;
    bad.erase(at, 1);
    EXPECT_EQ(request_error(bad), error::bad_http_message) << at;
    // Also as soon as the bare LF has arrived, before the block is complete.
    EXPECT_EQ(request_error(std::string_view(bad).substr(0, at + 1)), error::bad_http_message)
        << at;
  }
}

TEST(HttpParser, RefusesBareLfEndingTheBlock) {
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\nHost: a\r\n\n"), error::bad_http_message);
}

TEST(HttpParser, RefusesBareCrInsideLines) {
  EXPECT_EQ(request_error(with_header_line("X: a\rb")), error::bad_http_message);
  EXPECT_EQ(request_error(with_header_line("X: ab\r")), error::bad_http_message);
  EXPECT_EQ(request_error("GET /\r HTTP/1.1\r\n\r\n"), error::bad_http_message);
  EXPECT_EQ(response_error("HTTP/1.1 101 Swi\rtching\r\n\r\n"), error::bad_http_message);
}

// --- header lines -----------------------------------------------------------------------

TEST(HttpParser, RefusesObsFold) {
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n"), error::bad_http_message);
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\nX-A: one\r\n\ttwo\r\n\r\n"), error::bad_http_message);
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), error::bad_http_message);
}

TEST(HttpParser, RefusesWhiteSpaceBeforeTheColon) {
  // RFC 9112 5.1: such a request must be refused with 400.
  EXPECT_EQ(request_error(with_header_line("Host : a")), error::bad_http_message);
  EXPECT_EQ(request_error(with_header_line("Host\t: a")), error::bad_http_message);
}

TEST(HttpParser, RefusesLinesWithoutColonOrName) {
  EXPECT_EQ(request_error(with_header_line("NoColonHere")), error::bad_http_message);
  EXPECT_EQ(request_error(with_header_line(": value")), error::bad_http_message);
}

TEST(HttpParser, RefusesNonTokenCharactersInNames) {
  for (const char* line : {"X@Y: 1", "X(Y): 1", "X\"Y: 1", "X/Y: 1", "X[Y]: 1", "X,Y: 1", "X;Y: 1",
                           "X=Y: 1", "X{Y}: 1", "X\\Y: 1", "X\x7FY: 1", "X\xC3\xA9: 1", "X?Y: 1"})
    EXPECT_EQ(request_error(with_header_line(line)), error::bad_http_message) << line;
  // All of RFC 9110's tchar punctuation is allowed.
  EXPECT_FALSE(request_error(with_header_line("!#$%&'*+-.^_`|~09azAZ: 1")));
}

TEST(HttpParser, RefusesNulAndControlsInValues) {
  using namespace std::string_literals;
  for (const auto& line : {"X: a\0b"s, "X: \x01"s, "X: a\x1F"s, "X: a\x7F"s, "X: \x0B"s})
    EXPECT_EQ(request_error(with_header_line(line)), error::bad_http_message);
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\nX: a\0\r\n\r\n"s), error::bad_http_message);
}

TEST(HttpParser, RefusesAControlAtEveryPositionOfALongValue) {
  // Long values are checked a word at a time; a bad byte anywhere must count.
  const std::string clean = "~ \x80\xFF!az09 " + std::string(40, 'v') + "\x7E";
  for (std::size_t k = 0; k < clean.size(); ++k) {
    for (char bad : {'\x00', '\x01', '\x0A', '\x0D', '\x1F', '\x7F'}) {
      std::string value = clean;
      value[k] = bad;
      EXPECT_EQ(request_error(with_header_line("X: " + value)), error::bad_http_message)
          << k << " " << int(bad);
    }
    std::string tabbed = clean;
    tabbed[k] = '\t';
    EXPECT_FALSE(request_error(with_header_line("X: " + tabbed))) << k;
  }
  EXPECT_FALSE(request_error(with_header_line("X: " + clean)));
}

// --- start lines -------------------------------------------------------------------------

// The request line is read in one pass: a version followed by more than the
// line end is malformed even when its major is not 1 (the version's format
// is checked only once the line is known to end after it).
TEST(HttpParser, ReadsTheRequestLineInOnePass) {
  EXPECT_EQ(request_error("GET / HTTP/2.0x\r\nHost: a\r\n\r\n"), error::bad_http_message);
  EXPECT_EQ(request_error("GET / HTTP/2.0 \r\nHost: a\r\n\r\n"), error::bad_http_message);
  EXPECT_EQ(request_error("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"), error::bad_http_message);
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\r\nHost: a\r\n\r\n"), error::bad_http_message);
  EXPECT_EQ(request_error("GET / \r\n\r\n"), error::bad_http_message);
  HttpRequest req;
  std::error_code ec;
  const std::string bare = "OPTIONS * HTTP/1.0\r\n\r\n";
  ASSERT_EQ(parse_http_request(bare, req, ec), bare.size()) << ec.message();
  EXPECT_EQ(req.method, "OPTIONS");
  EXPECT_EQ(req.target, "*");
  EXPECT_EQ(req.version_minor, 0);
  EXPECT_TRUE(req.headers.empty());
}

TEST(HttpParser, RefusesMalformedRequestLines) {
  for (const char* line :
       {"GET /", "GET", "", "GET  / HTTP/1.1", "GET / HTTP/1.1 ", " GET / HTTP/1.1",
        "G@T / HTTP/1.1", "GET / http/1.1", "GET / HTTP/1.10", "GET / HTTP/11", "GET / HTTP/1",
        "GET / HTTP/1.x", "GET / HTTPS/1.1", "GET /a b HTTP/1.1", "GET /\x01 HTTP/1.1",
        "GET\t/ HTTP/1.1", "GET / HTTP/1.1\t"}) {
    const std::string msg = std::string(line) + "\r\nHost: a\r\n\r\n";
    EXPECT_EQ(request_error(msg), error::bad_http_message) << '"' << line << '"';
  }
}

TEST(HttpParser, RefusesLeadingEmptyLine) {
  // RFC 9112 2.2 lets a server skip it; we refuse, as for every other leniency.
  EXPECT_EQ(request_error("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), error::bad_http_message);
  EXPECT_EQ(request_error("\r\n\r\n"), error::bad_http_message);
}

TEST(HttpParser, ParsesStatusLineVariants) {
  HttpResponse res;
  std::error_code ec;
  for (const auto& [line, status, reason] :
       {std::tuple{"HTTP/1.1 101 Switching Protocols", 101, "Switching Protocols"},
        {"HTTP/1.1 101", 101, ""},
        {"HTTP/1.1 101 ", 101, ""},
        {"HTTP/1.0 404 Not\tFound ", 404, "Not\tFound "},
        {"HTTP/1.1 599 x", 599, "x"},
        {"HTTP/1.1 100 Continue", 100, "Continue"}}) {
    const std::string msg = std::string(line) + "\r\n\r\n";
    ASSERT_EQ(parse_http_response(msg, res, ec), msg.size()) << line << ": " << ec.message();
    EXPECT_EQ(res.status, status);
    EXPECT_EQ(res.reason, reason);
  }
}

TEST(HttpParser, RefusesMalformedStatusLines) {
  for (const char* line :
       {"HTTP/1.1 1010 X", "HTTP/1.1 10 X", "HTTP/1.1 abc X", "HTTP/1.1  101 X", "HTTP/1.1 099 X",
        "HTTP/1.1 600 X", "HTTP/1.1 101X", "ICY 200 OK", "HTTP/1.1", "http/1.1 101 X",
        "HTTP/1.1 1 1 X", "HTTP/1.1 -10 X", "HTTP/1.1 101 a\x01", "HTTP/1.1\t101 X", ""}) {
    const std::string msg = std::string(line) + "\r\nUpgrade: websocket\r\n\r\n";
    EXPECT_EQ(response_error(msg), error::bad_http_message) << '"' << line << '"';
  }
}

// --- limits ---------------------------------------------------------------------------------

std::string request_of_size(std::size_t size) {
  std::string msg = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ";
  const std::size_t fixed = msg.size() + 4;  // value, then "\r\n\r\n"
  msg.append(size - fixed, 'p');
  msg.append("\r\n\r\n");
  return msg;
}

TEST(HttpParser, AcceptsABlockOfExactlyMaxSize) {
  const auto msg = request_of_size(1000);
  ASSERT_EQ(msg.size(), 1000u);
  HttpRequest req;
  std::error_code ec;
  EXPECT_EQ(parse_http_request(msg, req, ec, 1000), 1000u);
  EXPECT_FALSE(ec);
}

TEST(HttpParser, RefusesABlockOneByteOverMaxSize) {
  const auto msg = request_of_size(1001);
  EXPECT_EQ(request_error(msg, 1000), error::header_too_large);
  // Also when the trailing bytes have not arrived yet: 1000 bytes without an end.
  EXPECT_EQ(request_error(std::string_view(msg).substr(0, 1000), 1000), error::header_too_large);
  // 999 bytes could still end within the bound.
  EXPECT_FALSE(request_error(std::string_view(msg).substr(0, 999), 1000));
}

TEST(HttpParser, DefaultLimitIs16KiB) {
  EXPECT_EQ(default_max_header_size, 16384u);
  EXPECT_FALSE(request_error(request_of_size(16384)));
  EXPECT_EQ(request_error(request_of_size(16385)), error::header_too_large);
  HttpResponse res;
  std::error_code ec;
  const std::string endless = "HTTP/1.1 101 OK\r\nX: " + std::string(20000, 'a');
  EXPECT_EQ(parse_http_response(endless, res, ec), 0u);
  EXPECT_EQ(ec, error::header_too_large);
}

TEST(HttpParser, LimitHoldsWithResumedScan) {
  const auto msg = request_of_size(1001);
  HttpRequest req;
  std::error_code ec;
  std::size_t scanned = 0;
  for (std::size_t fed = 100; fed < 1000; fed += 100) {
    EXPECT_EQ(parse_http_request(std::string_view(msg).substr(0, fed), req, ec, 1000, scanned), 0u);
    EXPECT_FALSE(ec);
  }
  EXPECT_EQ(parse_http_request(msg, req, ec, 1000, scanned), 0u);
  EXPECT_EQ(ec, error::header_too_large);
}

// --- garbage ------------------------------------------------------------------------------

TEST(HttpParser, RefusesTlsClientHello) {
  // A TLS client speaking to a plain port: binary, no line ends at first.
  std::string hello = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
  hello.append(300, '\x5a');
  EXPECT_FALSE(request_error(hello, 400));  // still could be a (strange) request
  hello.append(100, '\x00');
  EXPECT_EQ(request_error(hello, 400), error::header_too_large);
  hello[5] = '\n';
  EXPECT_EQ(request_error(hello, 400), error::bad_http_message);
}

TEST(HttpParser, RandomPiecesNeverYieldABlockThatDoesNotEndInAnEmptyLine) {
  std::mt19937 rng(20261124);
  const std::string_view starts[] = {"GET / HTTP/1.1\r\n", "HTTP/1.1 101 OK\r\n", "GET /"};
  const std::string_view pieces[] = {"Host", ":",    " ",    "\t",       "a",        "\r\n", "\r",
                                     "\n",   "\x01", "\x80", "HTTP/1.1", "\r\n\r\n", ","};
  int complete = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string data(starts[rng() % 3]);
    for (auto n = rng() % 8; n > 0; --n) data += pieces[rng() % std::size(pieces)];
    if (rng() % 2) data += "\r\n\r\n";
    HttpRequest req;
    HttpResponse res;
    std::error_code ec1;
    std::error_code ec2;
    const auto n1 = parse_http_request(data, req, ec1, 48);
    const auto n2 = parse_http_response(data, res, ec2, 48);
    for (auto [n, ec] : {std::pair{n1, ec1}, std::pair{n2, ec2}}) {
      if (n == 0) continue;
      ++complete;
      ASSERT_FALSE(ec);
      ASSERT_LE(n, 48u);
      ASSERT_EQ(data.substr(n - 4, 4), "\r\n\r\n");
      ASSERT_EQ(data.find('\n'), data.find("\r\n") + 1);
    }
  }
  // Many inputs complete, and each of them was checked above.
  EXPECT_GT(complete, 1000);
}

TEST(HttpParser, ValidRequestWithRandomByteFlipsNeverReadsBeyondTheBlock) {
  std::mt19937 rng(7);
  int refused = 0;
  for (int round = 0; round < 2000; ++round) {
    std::string data = browser_request;
    data[rng() % data.size()] = static_cast<char>(rng() % 32);  // a control byte
    HttpRequest req;
    std::error_code ec;
    const auto n = parse_http_request(data, req, ec);
    if (ec) ++refused;
    if (n != 0) {
      // Only a control byte swapped for an HTAB inside a value can keep it valid.
      EXPECT_EQ(n, data.size());
    }
  }
  EXPECT_GT(refused, 1700);
}

// --- header access ------------------------------------------------------------------------

TEST(HttpHeaderAccess, IequalsIsAsciiCaseInsensitive) {
  EXPECT_TRUE(iequals("Upgrade", "uPGRADE"));
  EXPECT_TRUE(iequals("", ""));
  EXPECT_TRUE(iequals("Sec-WebSocket-Key", "sec-websocket-key"));
  EXPECT_FALSE(iequals("Upgrade", "Upgrades"));
  EXPECT_FALSE(iequals("a", "b"));
  // Only ASCII letters fold: '@' (0x40) is not '`' (0x60), and bytes over 0x7F compare exactly.
  EXPECT_FALSE(iequals("@", "`"));
  EXPECT_FALSE(iequals("[", "{"));
  EXPECT_FALSE(iequals("\xC3\xA9", "\xC3\x89"));
  // Longer than a word: equal words skipped, a differing one checked per byte.
  EXPECT_TRUE(iequals("Sec-WebSocket-Extensions", "SEC-WEBSOCKET-EXTENSIONS"));
  EXPECT_TRUE(iequals("Sec-WebSocket-Extensions", "Sec-WebSocket-Extensions"));
  EXPECT_FALSE(iequals("Sec-WebSocket-Extensions", "Sec-WebSocket-Extensionz"));
  EXPECT_FALSE(iequals("sec-websocket-extensions", "sec_websocket-extensions"));
  EXPECT_FALSE(iequals("@bcdefghijk", "`bcdefghijk"));
  EXPECT_FALSE(iequals("abcdefgh[", "ABCDEFGH{"));
}

TEST(HttpHeaderAccess, FindHeaderReturnsFirstMatchCaseInsensitively) {
  const HttpHeaders h = {{"X-A", "1"}, {"x-a", "2"}, {"Host", "h"}};
  EXPECT_EQ(find_header(h, "x-A"), "1");
  EXPECT_EQ(find_header(h, "HOST"), "h");
  EXPECT_FALSE(find_header(h, "X-B").has_value());
  EXPECT_FALSE(find_header(h, "X-").has_value());
}

TEST(HttpHeaderAccess, HeaderHasTokenFindsTokensInLists) {
  const HttpHeaders h = {{"Connection", "keep-alive, Upgrade"}};
  EXPECT_TRUE(header_has_token(h, "connection", "upgrade"));
  EXPECT_TRUE(header_has_token(h, "Connection", "KEEP-ALIVE"));
  EXPECT_FALSE(header_has_token(h, "Connection", "close"));
  EXPECT_FALSE(header_has_token(h, "Upgrade", "upgrade"));
}

TEST(HttpHeaderAccess, HeaderHasTokenHandlesWhiteSpaceAndEmptyElements) {
  EXPECT_TRUE(header_has_token({{"Connection", "keep-alive,Upgrade"}}, "Connection", "upgrade"));
  EXPECT_TRUE(header_has_token({{"Connection", " , ,\tUpgrade\t, "}}, "Connection", "upgrade"));
  EXPECT_TRUE(header_has_token({{"Connection", "Upgrade"}}, "Connection", "upgrade"));
  EXPECT_FALSE(header_has_token({{"Connection", ""}}, "Connection", "upgrade"));
  EXPECT_FALSE(header_has_token({{"Connection", ", ,"}}, "Connection", ""));
}

TEST(HttpHeaderAccess, HeaderHasTokenMatchesWholeElementsOnly) {
  EXPECT_FALSE(header_has_token({{"Connection", "Upgrades"}}, "Connection", "upgrade"));
  EXPECT_FALSE(header_has_token({{"Connection", "xUpgrade"}}, "Connection", "upgrade"));
  EXPECT_FALSE(header_has_token({{"Connection", "Up grade"}}, "Connection", "upgrade"));
  EXPECT_FALSE(header_has_token({{"Upgrade", "websocket/13"}}, "Upgrade", "websocket"));
  EXPECT_FALSE(header_has_token({{"Connection", "\"a, upgrade\""}}, "Connection", "upgrade"));
}

TEST(HttpHeaderAccess, HeaderHasTokenJoinsRepeatedHeaders) {
  const HttpHeaders h = {{"Connection", "keep-alive"}, {"Host", "x"}, {"CONNECTION", "Upgrade"}};
  EXPECT_TRUE(header_has_token(h, "Connection", "upgrade"));
  EXPECT_TRUE(header_has_token(h, "Connection", "keep-alive"));
}

TEST(HttpHeaderAccess, HeaderListSplitsJoinsAndTrims) {
  const HttpHeaders h = {{"Sec-WebSocket-Protocol", "chat, superchat"},
                         {"Other", "x"},
                         {"sec-websocket-protocol", " ,v2.json ,, "}};
  EXPECT_EQ(header_list(h, "Sec-WebSocket-Protocol"),
            (std::vector<std::string>{"chat", "superchat", "v2.json"}));
  EXPECT_TRUE(header_list(h, "Missing").empty());
}

TEST(HttpHeaderAccess, HeaderListKeepsCommasInsideQuotedStrings) {
  const HttpHeaders h = {
      {"Sec-WebSocket-Extensions", "foo; x=\"a,b\", permessage-deflate; y=\"q\\\",r\", z"}};
  EXPECT_EQ(header_list(h, "Sec-WebSocket-Extensions"),
            (std::vector<std::string>{"foo; x=\"a,b\"", "permessage-deflate; y=\"q\\\",r\"", "z"}));
  // An unterminated quote runs to the end of the value.
  EXPECT_EQ(header_list({{"X", "a, \"b, c"}}, "X"), (std::vector<std::string>{"a", "\"b, c"}));
  // A backslash ending the value escapes nothing and the element is kept.
  EXPECT_EQ(header_list({{"X", "a, \"b\\"}}, "X"), (std::vector<std::string>{"a", "\"b\\"}));
}

}  // namespace
