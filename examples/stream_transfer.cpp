// Sends N bytes (default 1 GiB) through a StreamWebSocket to a duplex listener
// on loopback that reads them as a stream and answers with the count; reports
// throughput and the process's peak memory, which stays flat (bounded buffers
// and backpressure), whatever N is.
//
// Usage: example_stream_transfer [MiB]
#include <duplex/stream_websocket.hpp>
#include <duplex/websocket_listener.hpp>

#include <sys/resource.h>

#include <chrono>
#include <cstring>
#include <future>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace {

/// Reads the server side until `total` bytes arrived, then writes the count.
struct Sink : std::enable_shared_from_this<Sink> {
  duplex::StreamWebSocket ws;
  std::uint64_t total;
  std::uint64_t got = 0;
  std::vector<std::byte> buffer = std::vector<std::byte>(256 * 1024);
  std::byte answer[8]{};
  Sink(duplex::StreamWebSocket s, std::uint64_t n) : ws(std::move(s)), total(n) {}

  void read() {
    ws.input_stream().read_async(std::span<std::byte>(buffer),
                                 [self = shared_from_this()](std::error_code ec, std::size_t n) {
                                   if (ec || n == 0) return;
                                   self->got += n;
                                   if (self->got < self->total) return self->read();
                                   std::memcpy(self->answer, &self->got, sizeof self->got);
                                   self->ws.output_stream().write_async(
                                       std::span<const std::byte>(self->answer),
                                       [self](std::error_code, std::size_t) {});
                                 });
  }
};

}  // namespace

int main(int argc, char** argv) {
  const std::uint64_t mib = argc > 1 ? std::stoull(argv[1]) : 1024;
  const std::uint64_t total = mib << 20;

  duplex::WebSocketListenerOptions options;
  options.threads = 1;
  options.socket_type = duplex::ListenerSocketType::stream_websocket;
  duplex::WebSocketListener listener(options);
  std::promise<std::shared_ptr<Sink>> sink_promise;
  listener.connection_received([&](duplex::WebSocketListenerConnectionReceivedEventArgs& e) {
    auto sink = std::make_shared<Sink>(e.take_stream_websocket(), total);
    sink->read();
    sink_promise.set_value(sink);
  });
  auto port = listener.listen("127.0.0.1", 0).port;

  try {
    duplex::StreamWebSocket ws;
    ws.connect_async("ws://127.0.0.1:" + std::to_string(port) + "/").get();
    auto sink = sink_promise.get_future().get();
    std::vector<std::byte> chunk(1 << 20, std::byte{0x5a});
    const auto start = std::chrono::steady_clock::now();
    for (std::uint64_t sent = 0; sent < total; sent += chunk.size())
      ws.output_stream().write_async(std::span<const std::byte>(chunk)).get();
    std::byte answer[8];
    std::size_t have = 0;
    while (have < sizeof answer) {
      auto n = ws.input_stream()
                   .read_async(std::span<std::byte>(answer + have, sizeof answer - have))
                   .get();
      if (n == 0) throw std::runtime_error("server closed early");
      have += n;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::uint64_t received = 0;
    std::memcpy(&received, answer, sizeof received);
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    std::cout << "sent " << mib << " MiB, server read " << (received >> 20) << " MiB in " << seconds
              << " s (" << static_cast<double>(total) / (1 << 20) / seconds << " MiB/s); peak RSS "
              << usage.ru_maxrss / 1024 << " MiB\n";
    ws.close_async().get();
    sink->ws.close();
    sink.reset();
    return received == total ? 0 : 1;
  } catch (const std::system_error& e) {
    std::cerr << duplex::to_string(duplex::get_status(e.code())) << ": " << e.what() << '\n';
    return 1;
  }
}
