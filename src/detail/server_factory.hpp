// detail/server_factory.hpp: creating server-role sockets from an accepted,
// already-handshaken connection (used by WebSocketListener).
//
// The socket starts reading after the current handler returns (the read loop
// is posted to `ex`'s loop), so the caller may register event handlers on the
// returned socket first. Call these on the loop of `ex`.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <utility>

#include <asio/io_context.hpp>

#include <duplex/message_websocket.hpp>
#include <duplex/stream_websocket.hpp>

#include "detail/session.hpp"
#include "transport/stream.hpp"

namespace duplex::detail {

/// A server-role session of `kind` over `stream` (see the functions below),
/// started: it reads once the current handler returns.
inline std::shared_ptr<Session> make_server_session(asio::io_context::executor_type ex,
                                                    Session::Kind kind, transport::Stream stream,
                                                    std::span<const std::byte> leftover,
                                                    const ServerSessionOptions& options) {
  auto s = std::make_shared<Session>(ex, kind, protocol::Role::server);
  s->start_server(std::move(stream), leftover, options);
  return s;
}

/// A server-role MessageWebSocket over `stream` (TCP or TLS, opening handshake
/// done). `leftover`: bytes read after the request's header block (the first
/// frames), copied. `options`: negotiated protocol/extensions and limits.
MessageWebSocket make_server_message_websocket(asio::io_context::executor_type ex,
                                               transport::Stream stream,
                                               std::span<const std::byte> leftover,
                                               const ServerSessionOptions& options);

/// The same for a StreamWebSocket.
StreamWebSocket make_server_stream_websocket(asio::io_context::executor_type ex,
                                             transport::Stream stream,
                                             std::span<const std::byte> leftover,
                                             const ServerSessionOptions& options);

}  // namespace duplex::detail
