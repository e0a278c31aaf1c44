// The echo server shared by `duplex echo-server` and `duplex demo`.
#include "echo_service.hpp"

#include <iostream>
#include <optional>
#include <utility>

#include "common.hpp"

namespace duplex::cli {
namespace {

WebSocketListenerOptions listener_options(const EchoServerOptions& o) {
  WebSocketListenerOptions lo;
  lo.threads = o.threads;
  lo.max_message_size = o.max_message_size;
  lo.supported_protocols = o.protocols;
  lo.allowed_origins = o.allowed_origins;
  lo.deflate = o.deflate;
  // Pieces are echoed as they arrive: no reassembly copy of large messages.
  // Each piece has at least partial_message_threshold bytes (or ends its
  // message), so the echo's frames are at least that large.
  lo.receive_mode = MessageWebSocketReceiveMode::partial_message;
  lo.partial_message_threshold = o.partial_message_threshold;
  if (!o.tls_certificate_file.empty() || !o.tls_private_key_file.empty()) {
    if (o.tls_certificate_file.empty() || o.tls_private_key_file.empty()) {
      throw std::invalid_argument("--tls-cert and --tls-key must be given together");
    }
    ListenerTlsOptions tls;
    tls.certificate_chain_file = o.tls_certificate_file;
    tls.private_key_file = o.tls_private_key_file;
    lo.tls = std::move(tls);
  }
  return lo;
}

void log_event(bool json, const std::string& json_line, const std::string& text_line) {
  std::lock_guard lock(output_mutex());
  if (json) {
    std::cout << json_line << '\n' << std::flush;
  } else {
    std::cerr << text_line << std::endl;
  }
}

// The permessage-deflate parameters agreed with a client, if any.
void log_extensions(bool json, std::uint64_t id, const std::string& extensions) {
  if (extensions.empty()) return;
  log_event(json,
            "{\"event\":\"extensions\",\"id\":" + std::to_string(id) +
                ",\"extensions\":" + json_string(extensions) + "}",
            "[" + std::to_string(id) + "] extensions: " + extensions);
}

}  // namespace

EchoServer::EchoServer(const EchoServerOptions& options) : shared_(std::make_shared<Shared>()) {
  shared_->verbose = options.verbose;
  shared_->json = options.json;
  listener_ = std::make_unique<WebSocketListener>(listener_options(options));
  if (!options.metrics_path.empty()) {
    shared_->metrics = std::make_shared<ServerMetrics>();
    listener_->http_requested(metrics_handler(options.metrics_path, *listener_, shared_->metrics));
  }

  listener_->connection_received(
      [shared = shared_](WebSocketListenerConnectionReceivedEventArgs& args) {
        MessageWebSocket* socket = nullptr;
        std::uint32_t id = 0;
        std::uint32_t slot = 0;
        {
          std::lock_guard lock(shared->mutex);
          id = shared->next_id++;
          if (shared->free_slots.empty()) {
            slot = static_cast<std::uint32_t>(shared->sockets.size());
            socket = &shared->sockets.emplace_back(args.take_message_websocket());
          } else {
            slot = shared->free_slots.back();
            shared->free_slots.pop_back();
            socket = &shared->sockets[slot];
            *socket = args.take_message_websocket();
          }
        }
        MessageWebSocket& ws = *socket;
        shared->connections.fetch_add(1, std::memory_order_relaxed);
        if (shared->metrics) shared->metrics->opened();
        if (shared->verbose) {
          log_extensions(shared->json, id, ws.information().extensions());
          const auto& remote = args.request().remote_address;
          const std::string peer = remote.host + ":" + std::to_string(remote.port);
          log_event(shared->json,
                    "{\"event\":\"open\",\"id\":" + std::to_string(id) + ",\"peer\":" +
                        json_string(peer) + ",\"protocol\":" + json_string(args.protocol()) + "}",
                    "[" + std::to_string(id) + "] open from " + peer +
                        (args.protocol().empty() ? "" : " (subprotocol " + args.protocol() + ")"));
        }

        // The socket's handlers capture `Shared` by address: small enough for
        // std::function to hold without an allocation per connection. Every
        // socket is destroyed in stop(), before `shared_`, and no handler of a
        // destroyed socket runs.
        ws.message_received(
            [shared = shared.get(), mid_message = false](
                MessageWebSocket& s, const MessageWebSocketMessageReceivedEventArgs& m) mutable {
              const bool last = m.is_message_complete();
              if (last) shared->messages.fetch_add(1, std::memory_order_relaxed);
              shared->bytes.fetch_add(m.data().size(), std::memory_order_relaxed);
              if (shared->metrics) {
                shared->metrics->received(m.data().size(), last);
                shared->metrics->sent(m.data().size(), last);
              }
              // Same type back. A message that arrived whole goes back whole; one that
              // arrived in pieces goes back as the frames of one message, each piece
              // (at least partial_message_threshold bytes, but the last) as one frame,
              // at once. A send copies what it does not write before returning; its task
              // may be dropped: a failed send fails the connection (the closed event).
              SendOptions same_type;
              same_type.message_type = m.message_type();
              if (!mid_message && last)
                (void)s.send_async(m.data(), same_type);
              else if (!last)
                (void)s.send_nonfinal_frame_async(m.data(), same_type);
              else
                (void)s.send_final_frame_async(m.data(), same_type);
              mid_message = !last;
            });
        ws.closed([shared = shared.get(), id, slot](MessageWebSocket&,
                                                    const WebSocketClosedEventArgs& c) {
          if (shared->metrics) shared->metrics->closed(c.code(), static_cast<bool>(c.error()));
          if (shared->verbose) {
            const std::string err = c.error() ? describe_error(c.error()) : std::string();
            log_event(shared->json,
                      "{\"event\":\"closed\",\"id\":" + std::to_string(id) + ",\"code\":" +
                          std::to_string(c.code()) + ",\"reason\":" + json_string(c.reason()) +
                          ",\"error\":" + json_string(err) + "}",
                      "[" + std::to_string(id) + "] closed " + std::to_string(c.code()) +
                          (c.reason().empty() ? "" : " " + c.reason()) +
                          (err.empty() ? "" : " (" + err + ")"));
          }
          // The socket may be destroyed in its own handler (message_websocket.hpp).
          // It is moved out and destroyed once the lock is released.
          std::optional<MessageWebSocket> gone;
          std::lock_guard lock(shared->mutex);
          if (slot < shared->sockets.size()) {
            gone.emplace(std::move(shared->sockets[slot]));
            shared->free_slots.push_back(slot);
          }
        });
      });

  const HostEndpoint bound = listener_->listen(options.host, options.port);
  port_ = bound.port;
  url_ = make_url(!options.tls_certificate_file.empty(), options.host, port_);
}

EchoServer::~EchoServer() {
  stop(std::chrono::seconds(1));
}

EchoStats EchoServer::stats() const {
  return {shared_->connections.load(), shared_->messages.load(), shared_->bytes.load()};
}

std::size_t EchoServer::stop(std::chrono::milliseconds timeout) {
  if (!listener_) return 0;
  const std::size_t cut = listener_->stop(timeout);
  listener_.reset();
  // The loops are stopped: the remaining sockets can go.
  std::deque<MessageWebSocket> rest;
  {
    std::lock_guard lock(shared_->mutex);
    rest.swap(shared_->sockets);
    shared_->free_slots.clear();
  }
  return cut;
}

}  // namespace duplex::cli
