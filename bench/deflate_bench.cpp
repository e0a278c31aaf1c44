// permessage-deflate micro-benchmarks: compress and inflate typical JSON
// messages of 100 B, 1 KiB and 64 KiB, with and without context takeover.
// Throughput is in uncompressed bytes per second; the counter `ratio` is the
// compressed size over the original. Memory per idle connection is reported by
// BM_IdleConnectionMemory (counters, in bytes).
#include <duplex/protocol/connection.hpp>
#include <duplex/protocol/deflate.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace duplex::protocol;

// Chat/telemetry-like JSON; each call gives a different message of the same shape.
std::string json_message(std::size_t size, std::uint32_t seed) {
  std::mt19937 rng(seed);
  static const char* names[] = {"alice", "bob", "carol", "dave", "erin", "frank"};
  std::string s =
      "{\"type\":\"update\",\"seq\":" + std::to_string(rng() % 1000000) + ",\"items\":[";
  while (s.size() + 2 < size) {
    s += "{\"id\":" + std::to_string(rng() % 100000) + ",\"user\":\"" + names[rng() % 6] +
         "\",\"online\":" + ((rng() & 1) ? "true" : "false") +
         ",\"lat\":" + std::to_string(rng() % 180) + "." + std::to_string(rng() % 10000) +
         ",\"text\":\"message number " + std::to_string(rng() % 1000) + "\"},";
  }
  s.resize(size - 2);
  s += "]}";
  return s;
}

std::vector<std::vector<std::byte>> messages(std::size_t size) {
  // Distinct messages, enough that a repeat is out of a 32 KiB window.
  std::vector<std::vector<std::byte>> out;
  std::size_t count = std::clamp<std::size_t>((std::size_t{4} << 20) / size, 16, 1024);
  for (std::uint32_t i = 0; i < count; ++i) {
    std::string s = json_message(size, i + 1);
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    out.emplace_back(p, p + s.size());
  }
  return out;
}

DeflateParams params(bool no_context_takeover, int level) {
  DeflateParams p;
  p.server_no_context_takeover = no_context_takeover;
  p.client_no_context_takeover = no_context_takeover;
  p.compression_level = level;
  p.compress_threshold = 0;
  return p;
}

void BM_Compress(benchmark::State& state) {
  auto size = static_cast<std::size_t>(state.range(0));
  bool nct = state.range(1) != 0;
  int level = static_cast<int>(state.range(2));
  auto msgs = messages(size);
  DeflateEncoder e(params(nct, level), Role::server);
  std::vector<std::byte> out;
  std::size_t i = 0, in_bytes = 0, out_bytes = 0;
  for (auto _ : state) {
    out.clear();
    e.compress(msgs[i++ % msgs.size()], true, out);
    benchmark::DoNotOptimize(out.data());
    in_bytes += size;
    out_bytes += out.size();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(in_bytes));
  state.counters["ratio"] = static_cast<double>(out_bytes) / static_cast<double>(in_bytes);
}

void BM_Inflate(benchmark::State& state) {
  auto size = static_cast<std::size_t>(state.range(0));
  bool nct = state.range(1) != 0;
  int level = static_cast<int>(state.range(2));
  auto msgs = messages(size);
  // Compress a long run of messages in order, so takeover data refers back.
  const std::size_t run = msgs.size();
  DeflateEncoder e(params(nct, level), Role::server);
  std::vector<std::vector<std::byte>> compressed(run);
  for (std::size_t k = 0; k < run; ++k) e.compress(msgs[k % msgs.size()], true, compressed[k]);
  DeflateDecoder d(params(nct, level), Role::client);
  std::vector<std::byte> out;
  std::size_t k = 0, bytes = 0;
  for (auto _ : state) {
    if (k == run) {
      // Start the sequence again on a fresh decoder (takeover history), untimed.
      state.PauseTiming();
      d = DeflateDecoder(params(nct, level), Role::client);
      k = 0;
      state.ResumeTiming();
    }
    out.clear();
    if (d.inflate(compressed[k++], true, out, size)) state.SkipWithError("inflate failed");
    benchmark::DoNotOptimize(out.data());
    bytes += size;
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}

void args(benchmark::internal::Benchmark* b) {
  for (std::int64_t size : {100, 1024, 65536})
    for (std::int64_t nct : {0, 1})
      for (std::int64_t level : {1, 3, 6}) b->Args({size, nct, level});
  b->ArgNames({"size", "no_takeover", "level"});
}

BENCHMARK(BM_Compress)->Apply(args);
BENCHMARK(BM_Inflate)->Apply(args);

// The compression ratio of each memory setting (docs/deflate.md, docs/server.md):
// the same JSON corpus compressed in order at level 3, with context takeover
// at 15 bits (DeflateOptions{}), at 12 bits (a client under the listener's
// defaults), and without (the server under the listener's defaults).
void BM_Ratio(benchmark::State& state) {
  auto size = static_cast<std::size_t>(state.range(0));
  DeflateParams p = params(state.range(1) != 0, 3);
  p.server_max_window_bits = static_cast<std::uint8_t>(state.range(2));
  auto msgs = messages(size);
  DeflateEncoder e(p, Role::server);
  std::vector<std::byte> out;
  std::size_t i = 0, in_bytes = 0, out_bytes = 0;
  for (auto _ : state) {
    out.clear();
    e.compress(msgs[i++ % msgs.size()], true, out);
    in_bytes += size;
    out_bytes += out.size();
  }
  state.counters["ratio"] = static_cast<double>(out_bytes) / static_cast<double>(in_bytes);
}
BENCHMARK(BM_Ratio)
    ->ArgsProduct({{100, 300, 1024, 65536}, {0}, {15, 12}})
    ->ArgsProduct({{100, 300, 1024, 65536}, {1}, {15}})
    ->ArgNames({"size", "no_takeover", "window_bits"})
    ->Iterations(1024);

// zlib memory held per idle connection (one encoder and one decoder, after one
// message each way), with and without context takeover.
void BM_IdleConnectionMemory(benchmark::State& state) {
  bool nct = state.range(0) != 0;
  int window = static_cast<int>(state.range(1));
  int mem_level = static_cast<int>(state.range(2));
  DeflateParams p = params(nct, 3);
  p.server_max_window_bits = p.client_max_window_bits = static_cast<std::uint8_t>(window);
  p.memory_level = mem_level;
  auto msg = messages(1024)[0];
  std::size_t per_connection = 0, in_use_delta = 0, enc_bytes = 0, dec_bytes = 0;
  for (auto _ : state) {
    trim_deflate_cache();
    std::size_t before = zlib_memory_in_use();
    constexpr int connections = 100;
    std::vector<DeflateEncoder> enc;
    std::vector<DeflateDecoder> dec;
    for (int i = 0; i < connections; ++i) {
      enc.emplace_back(p, Role::server);
      dec.emplace_back(p, Role::server);
      std::vector<std::byte> c, out;
      enc.back().compress(msg, true, c);
      if (dec.back().inflate(c, true, out, msg.size())) state.SkipWithError("inflate failed");
    }
    per_connection = enc_bytes = dec_bytes = 0;
    for (int i = 0; i < connections; ++i) {
      enc_bytes += enc[i].memory_in_use();
      dec_bytes += dec[i].memory_in_use();
    }
    enc_bytes /= connections;
    dec_bytes /= connections;
    per_connection = enc_bytes + dec_bytes;
    in_use_delta = (zlib_memory_in_use() - before) / connections;
  }
  state.counters["zlib_bytes_per_idle_connection"] = static_cast<double>(per_connection);
  state.counters["deflate_bytes"] = static_cast<double>(enc_bytes);
  state.counters["inflate_bytes"] = static_cast<double>(dec_bytes);
  state.counters["zlib_bytes_total_per_connection"] = static_cast<double>(in_use_delta);
  state.counters["object_bytes"] =
      static_cast<double>(sizeof(DeflateEncoder) + sizeof(DeflateDecoder));
}
BENCHMARK(BM_IdleConnectionMemory)
    ->Args({0, 15, 8})
    ->Args({1, 15, 8})
    ->Args({0, 10, 4})
    ->Args({1, 10, 4})
    ->ArgNames({"no_takeover", "window_bits", "mem_level"})
    ->Iterations(1);

}  // namespace

namespace {

// One server Connection echoing compressed client messages: receive (inflate),
// then send_message (compress) and take the output, per iteration. With fixed
// iteration counts, `valgrind --tool=callgrind` on two counts gives the
// instructions per echoed message (see docs/deflate.md).
struct EchoHandler : duplex::protocol::ConnectionHandler {
  duplex::protocol::Connection* conn = nullptr;
  void on_message(duplex::SocketMessageType t, std::span<const std::byte> d, bool) override {
    conn->send_message(t, d);
  }
  void on_close(std::uint16_t, std::string_view) override {}
  void on_error(std::error_code) override {}
};

void BM_EchoCompressed(benchmark::State& state) {
  auto size = static_cast<std::size_t>(state.range(0));
  bool nct = state.range(1) != 0;
  DeflateParams p = params(nct, 3);
  // The client's frames, made once: a run of distinct messages, each masked.
  ConnectionConfig cc;
  cc.role = Role::client;
  cc.deflate = p;
  Connection client(cc);
  auto msgs = messages(size);
  std::vector<std::vector<std::byte>> wire;
  for (const auto& m : msgs) {
    client.send_message(duplex::SocketMessageType::utf8, m);
    auto w = client.begin_write();
    wire.emplace_back(w.begin(), w.end());
    client.end_write();
  }
  ConnectionConfig sc;
  sc.role = Role::server;
  sc.deflate = p;
  auto server = std::make_unique<Connection>(sc);
  EchoHandler h;
  h.conn = server.get();
  std::vector<std::byte> in;
  std::size_t k = 0;
  for (auto _ : state) {
    if (k == wire.size()) {
      // Start over on a fresh server (takeover history), untimed.
      state.PauseTiming();
      server = std::make_unique<Connection>(sc);
      h.conn = server.get();
      k = 0;
      state.ResumeTiming();
    }
    in = wire[k++];  // receive() unmasks in place
    server->receive(in, h);
    auto out = server->begin_write();
    benchmark::DoNotOptimize(out.data());
    server->end_write();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EchoCompressed)
    ->Args({100, 0})
    ->Args({100, 1})
    ->Args({1024, 0})
    ->Args({1024, 1})
    ->ArgNames({"size", "no_takeover"});

}  // namespace
