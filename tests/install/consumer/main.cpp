// A user's program built against an installed duplex: it must find the headers,
// link every library duplex needs (OpenSSL's SHA1 and RAND_bytes, zlib, threads)
// and compute a real result: a WebSocket echo over loopback.
#include <duplex/error.hpp>
#include <duplex/message_websocket.hpp>
#include <duplex/protocol/handshake.hpp>
#include <duplex/websocket_listener.hpp>

#include <chrono>
#include <cstdio>
#include <future>
#include <mutex>
#include <optional>
#include <string>

int main() {
  // RFC 6455 1.3's example key and its accept value.
  auto accept = duplex::protocol::compute_accept("dGhlIHNhbXBsZSBub25jZQ==");
  if (accept != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") return 1;
  if (duplex::get_status(duplex::error::timed_out) != duplex::WebErrorStatus::timeout) return 1;

  // An echo server on an ephemeral loopback port, and a client of it.
  std::mutex mutex;
  std::optional<duplex::MessageWebSocket> server_side;
  duplex::WebSocketListener listener;
  listener.connection_received([&](duplex::WebSocketListenerConnectionReceivedEventArgs& args) {
    auto ws = args.take_message_websocket();
    ws.message_received([](duplex::MessageWebSocket& self, const auto& message) {
      self.send_async(message.text()).then([](std::error_code) {});
    });
    std::lock_guard lock(mutex);
    server_side.emplace(std::move(ws));
  });
  listener.listen("127.0.0.1", 0);

  duplex::MessageWebSocket client;
  std::promise<std::string> echoed;
  client.message_received([&](duplex::MessageWebSocket&, const auto& message) {
    echoed.set_value(std::string(message.text()));
  });
  client.connect_async("ws://127.0.0.1:" + std::to_string(listener.local_port()) + "/").get();
  client.send_async("consumer").get();
  auto reply = echoed.get_future();
  if (reply.wait_for(std::chrono::seconds(10)) != std::future_status::ready) return 2;
  if (reply.get() != "consumer") return 3;
  client.close_async(1000, "done").get();
  listener.stop(std::chrono::seconds(5));
  std::puts("consumer ok");
  return 0;
}
