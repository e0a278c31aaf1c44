// protocol::request_body_length and build_http_response: the plain HTTP
// additions of the handshake module (a listener's http_requested handler).
#include <duplex/error.hpp>
#include <duplex/protocol/handshake.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace {

using duplex::protocol::build_http_response;
using duplex::protocol::HttpRequest;
using duplex::protocol::request_body_length;
using duplex::protocol::status_for;

HttpRequest request_with(duplex::protocol::HttpHeaders headers) {
  HttpRequest r;
  r.method = "POST";
  r.target = "/";
  r.headers = std::move(headers);
  return r;
}

// The status the listener answers, or 0 with `length` set.
int outcome(const HttpRequest& r, std::size_t max, std::size_t& length) {
  const auto ec = request_body_length(r, max, length);
  return ec ? status_for(ec) : 0;
}

TEST(RequestBodyLength, NoHeadersMeansNoBody) {
  std::size_t n = 99;
  EXPECT_EQ(outcome(request_with({{"Host", "h"}}), 10, n), 0);
  EXPECT_EQ(n, 0u);
}

TEST(RequestBodyLength, ContentLengthUpToTheLimit) {
  std::size_t n = 0;
  EXPECT_EQ(outcome(request_with({{"Content-Length", "10"}}), 10, n), 0);
  EXPECT_EQ(n, 10u);
  EXPECT_EQ(outcome(request_with({{"content-length", "0"}}), 0, n), 0);
  EXPECT_EQ(n, 0u);
  // RFC 9112 6.3 item 5: repeated identical values are one length.
  EXPECT_EQ(outcome(request_with({{"Content-Length", "4"}, {"Content-Length", "4"}}), 10, n), 0);
  EXPECT_EQ(n, 4u);
}

TEST(RequestBodyLength, RefusalsNameTheirStatus) {
  std::size_t n = 7;
  EXPECT_EQ(outcome(request_with({{"Content-Length", "11"}}), 10, n), 413);
  // Longer than any size_t: still 413, not an overflow into a small number.
  EXPECT_EQ(outcome(request_with({{"Content-Length", "184467440737095516160"}}), SIZE_MAX, n), 413);
  EXPECT_EQ(outcome(request_with({{"Content-Length", ""}}), 10, n), 400);
  EXPECT_EQ(outcome(request_with({{"Content-Length", "+5"}}), 10, n), 400);
  EXPECT_EQ(outcome(request_with({{"Content-Length", "5, 5"}}), 10, n), 400);
  EXPECT_EQ(outcome(request_with({{"Content-Length", "4"}, {"Content-Length", "5"}}), 10, n), 400);
  EXPECT_EQ(outcome(request_with({{"Transfer-Encoding", "chunked"}}), 10, n), 411);
  EXPECT_EQ(outcome(request_with({{"Transfer-Encoding", "gzip, Chunked"}}), 10, n), 411);
  EXPECT_EQ(outcome(request_with({{"Transfer-Encoding", "gzip"}}), 10, n), 501);
  EXPECT_EQ(outcome(request_with({{"Transfer-Encoding", "chunked, gzip"}}), 10, n), 501);
  // RFC 9112 6.1: Transfer-Encoding decides over Content-Length.
  EXPECT_EQ(
      outcome(request_with({{"Content-Length", "3"}, {"Transfer-Encoding", "chunked"}}), 10, n),
      411);
  EXPECT_EQ(n, 7u);  // written only on success
}

TEST(BuildHttpResponse, StatusHeadersLengthAndBody) {
  EXPECT_EQ(build_http_response(200, {{"Content-Type", "text/plain"}}, "ok\n"),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            "Content-Length: 3\r\n\r\nok\n");
  // RFC 9110 9.3.2: HEAD keeps the length, drops the body.
  EXPECT_EQ(build_http_response(404, {}, "gone", true),
            "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 4\r\n\r\n");
  EXPECT_EQ(build_http_response(204, {}, ""),
            "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
}

TEST(BuildHttpResponse, RefusesWhatCannotBeSent) {
  try {
    build_http_response(101, {}, "");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "build_http_response: status must be within 200-599");
  }
  try {
    build_http_response(304, {}, "x");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "build_http_response: a 204 or 304 answer must have an empty body");
  }
  EXPECT_THROW(build_http_response(200, {{"Content-Length", "1"}}, "x"), std::invalid_argument);
  EXPECT_THROW(build_http_response(200, {{"connection", "keep-alive"}}, ""), std::invalid_argument);
  EXPECT_THROW(build_http_response(200, {{"X", "a\r\nb"}}, ""), std::invalid_argument);
  EXPECT_THROW(build_http_response(200, {{"X Y", "a"}}, ""), std::invalid_argument);
}

}  // namespace
