// Opening-handshake costs on the server: parsing a browser's upgrade request,
// validating it, and building the 101 answer.
// Run: build/release/bench/handshake_bench
#include <benchmark/benchmark.h>
#include <duplex/protocol/handshake.hpp>

#include <string>

namespace {

using namespace duplex::protocol;

// What Chromium 120 sends for `new WebSocket("ws://localhost:8080/chat", ["chat"])`.
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

// Steady state: the request object is reused, so its strings do not allocate.
void BM_ParseBrowserRequest(benchmark::State& state) {
  HttpRequest req;
  std::error_code ec;
  for (auto _ : state) {
    auto n = parse_http_request(browser_request, req, ec);
    benchmark::DoNotOptimize(n);
    benchmark::DoNotOptimize(req);
  }
  if (ec || req.headers.size() != 13) state.SkipWithError("parse failed");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * browser_request.size()));
}
BENCHMARK(BM_ParseBrowserRequest);

// A fresh request object per connection: the allocations included.
void BM_ParseBrowserRequestFresh(benchmark::State& state) {
  std::error_code ec;
  for (auto _ : state) {
    HttpRequest req;
    auto n = parse_http_request(browser_request, req, ec);
    benchmark::DoNotOptimize(n);
    benchmark::DoNotOptimize(req);
  }
  if (ec) state.SkipWithError("parse failed");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * browser_request.size()));
}
BENCHMARK(BM_ParseBrowserRequestFresh);

// The request arriving in 64-byte reads, with the resumed scan.
void BM_ParseBrowserRequestIn64ByteReads(benchmark::State& state) {
  HttpRequest req;
  std::error_code ec;
  for (auto _ : state) {
    std::size_t scanned = 0;
    std::size_t n = 0;
    for (std::size_t fed = 64; n == 0; fed += 64) {
      const auto view = std::string_view(browser_request).substr(0, fed);
      n = parse_http_request(view, req, ec, default_max_header_size, scanned);
      if (ec || fed >= browser_request.size()) break;
    }
    benchmark::DoNotOptimize(n);
  }
  if (ec) state.SkipWithError("parse failed");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * browser_request.size()));
}
BENCHMARK(BM_ParseBrowserRequestIn64ByteReads);

// The server's whole part: parse, validate, answer (SHA-1 and base64 included).
void BM_ServerHandshake(benchmark::State& state) {
  HttpRequest req;
  ServerHandshakeRequest accepted;
  std::error_code ec;
  for (auto _ : state) {
    parse_http_request(browser_request, req, ec);
    if (validate_client_request(req, accepted)) state.SkipWithError("validation failed");
    auto answer = build_server_response(accepted.key, accepted.protocols.front(), "");
    benchmark::DoNotOptimize(answer);
  }
}
BENCHMARK(BM_ServerHandshake);

void BM_ComputeAccept(benchmark::State& state) {
  for (auto _ : state) {
    auto accept = compute_accept("dGhlIHNhbXBsZSBub25jZQ==");
    benchmark::DoNotOptimize(accept);
  }
}
BENCHMARK(BM_ComputeAccept);

}  // namespace
