// Micro-benchmarks of the sans-I/O core: masking, UTF-8 validation, frame
// header parsing, and Connection::receive() of small masked frames.
// Run: build/release/bench/protocol_bench
#include <duplex/protocol/connection.hpp>
#include <duplex/protocol/frame.hpp>
#include <duplex/protocol/utf8.hpp>

#include <benchmark/benchmark.h>

#include <cstring>
#include <string>
#include <vector>

namespace {

using namespace duplex::protocol;
using duplex::SocketMessageType;

constexpr std::size_t k64KiB = 64 * 1024;
constexpr MaskKey key{std::byte{0x37}, std::byte{0xfa}, std::byte{0x21}, std::byte{0x3d}};

void BM_Unmask64KiB(benchmark::State& state) {
  std::vector<std::byte> buf(k64KiB, std::byte{0x42});
  for (auto _ : state) {
    apply_mask(buf, key, 0);
    benchmark::DoNotOptimize(buf.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * buf.size()));
}
BENCHMARK(BM_Unmask64KiB);

void BM_Unmask64KiBUnaligned(benchmark::State& state) {
  std::vector<std::byte> buf(k64KiB + 8, std::byte{0x42});
  std::span<std::byte> s(buf.data() + 3, k64KiB);
  for (auto _ : state) {
    apply_mask(s, key, 1);
    benchmark::DoNotOptimize(buf.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * s.size()));
}
BENCHMARK(BM_Unmask64KiBUnaligned);

void BM_CopyMasked64KiB(benchmark::State& state) {
  std::vector<std::byte> src(k64KiB, std::byte{0x42}), dst(k64KiB);
  for (auto _ : state) {
    copy_masked(dst, src, key, 0);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * src.size()));
}
BENCHMARK(BM_CopyMasked64KiB);

std::string ascii_text(std::size_t n) {
  std::string s;
  const std::string line = "The quick brown fox jumps over the lazy dog 0123456789.\n";
  while (s.size() < n) s += line;
  s.resize(n);
  return s;
}

// Mixed text: Latin with accents, Greek, Cyrillic, CJK and emoji, with spaces
// and punctuation, as in real multilingual chat messages.
std::string mixed_text(std::size_t n) {
  const std::string parts[] = {
      "caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9"
      "e ",
      "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 ",
      "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82, \xd0\xbc\xd0\xb8\xd1\x80! ",
      "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c\xe3\x80\x82",
      "\xf0\x9f\x98\x80\xf0\x9f\x8e\x89 ",
      "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83"
      "\x88 ",
  };
  std::string s;
  for (std::size_t i = 0; s.size() < n; ++i) s += parts[i % 6];
  // Cut at a code point boundary.
  while (s.size() > n) s.pop_back();
  while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) s.pop_back();
  if (!s.empty() && static_cast<unsigned char>(s.back()) >= 0xC0) s.pop_back();
  return s;
}

void BM_Utf8Ascii64KiB(benchmark::State& state) {
  const std::string s = ascii_text(k64KiB);
  for (auto _ : state) {
    bool ok = is_valid_utf8(s);
    benchmark::DoNotOptimize(ok);
    if (!ok) state.SkipWithError("not valid");
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * s.size()));
}
BENCHMARK(BM_Utf8Ascii64KiB);

void BM_Utf8Mixed64KiB(benchmark::State& state) {
  const std::string s = mixed_text(k64KiB);
  for (auto _ : state) {
    bool ok = is_valid_utf8(s);
    benchmark::DoNotOptimize(ok);
    if (!ok) state.SkipWithError("not valid");
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * s.size()));
}
BENCHMARK(BM_Utf8Mixed64KiB);

void BM_ParseFrameHeader(benchmark::State& state) {
  // Four header shapes, cycled: 7-bit unmasked, 7-bit masked, 16-bit masked, 64-bit.
  const std::vector<std::vector<std::byte>> headers = {
      {std::byte{0x81}, std::byte{0x05}},
      {std::byte{0x81}, std::byte{0x85}, std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}},
      {std::byte{0x82}, std::byte{0xFE}, std::byte{0x01}, std::byte{0x00}, std::byte{1},
       std::byte{2}, std::byte{3}, std::byte{4}},
      {std::byte{0x82}, std::byte{0x7F}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0},
       std::byte{0}, std::byte{1}, std::byte{0}, std::byte{0}},
  };
  std::size_t i = 0;
  for (auto _ : state) {
    FrameHeader h;
    std::error_code ec;
    std::size_t n = parse_frame_header(headers[i & 3], h, ec);
    benchmark::DoNotOptimize(n);
    benchmark::DoNotOptimize(h);
    ++i;
  }
}
BENCHMARK(BM_ParseFrameHeader);

class CountingHandler final : public ConnectionHandler {
public:
  std::size_t messages = 0, bytes = 0;
  void on_message(SocketMessageType, std::span<const std::byte> d, bool) override {
    ++messages;
    bytes += d.size();
  }
  void on_close(std::uint16_t, std::string_view) override {}
  void on_error(std::error_code) override { std::abort(); }
};

// A batch of masked frames with payload `size`, as a client sends them. The
// key is zero so unmasking in place leaves the batch unchanged and it can be
// fed again (the masking code runs all the same).
std::vector<std::byte> masked_batch(std::size_t count, std::size_t size, bool text) {
  std::vector<std::byte> out;
  for (std::size_t i = 0; i < count; ++i) {
    out.push_back(std::byte{static_cast<unsigned char>(text ? 0x81 : 0x82)});
    out.push_back(std::byte{static_cast<unsigned char>(0x80 | size)});
    for (int k = 0; k < 4; ++k) out.push_back(std::byte{0});
    for (std::size_t k = 0; k < size; ++k) out.push_back(std::byte{'a'});
  }
  return out;
}

void receive_batch(benchmark::State& state, bool text) {
  const std::size_t count = 1000;
  const auto size = static_cast<std::size_t>(state.range(0));
  std::vector<std::byte> batch = masked_batch(count, size, text);
  ConnectionConfig cfg;
  cfg.role = Role::server;
  Connection conn(cfg);
  CountingHandler h;
  for (auto _ : state) {
    conn.receive(batch, h);
    benchmark::DoNotOptimize(h.messages);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * count));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * batch.size()));
  state.counters["ns_per_msg"] =
      benchmark::Counter(static_cast<double>(state.iterations() * count),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_ReceiveSmallBinary(benchmark::State& state) {
  receive_batch(state, false);
}
BENCHMARK(BM_ReceiveSmallBinary)->Arg(16)->Arg(125);
void BM_ReceiveSmallText(benchmark::State& state) {
  receive_batch(state, true);
}
BENCHMARK(BM_ReceiveSmallText)->Arg(16)->Arg(125);

// Receive and echo back (server role), then hand the output to a fake write.
class EchoHandler final : public ConnectionHandler {
public:
  Connection* conn = nullptr;
  void on_message(SocketMessageType t, std::span<const std::byte> d, bool) override {
    conn->send_message(t, d);
  }
  void on_close(std::uint16_t, std::string_view) override {}
  void on_error(std::error_code) override { std::abort(); }
};

void BM_ReceiveAndEchoSmall(benchmark::State& state) {
  const std::size_t count = 1000;
  std::vector<std::byte> batch = masked_batch(count, 16, true);
  ConnectionConfig cfg;
  cfg.role = Role::server;
  Connection conn(cfg);
  EchoHandler h;
  h.conn = &conn;
  for (auto _ : state) {
    conn.receive(batch, h);
    auto w = conn.begin_write();
    benchmark::DoNotOptimize(w.data());
    conn.end_write();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * count));
  state.counters["ns_per_msg"] =
      benchmark::Counter(static_cast<double>(state.iterations() * count),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_ReceiveAndEchoSmall);

}  // namespace
