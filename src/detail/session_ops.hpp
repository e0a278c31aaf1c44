// detail/session_ops.hpp: the operations a session keeps until they
// complete (sends waiting for room, a close asked for while connecting, a
// stream read), and the state an open idle connection does not hold.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <duplex/cancellation.hpp>
#include <duplex/detail/completion_handler.hpp>
#include <duplex/detail/socket_ops.hpp>

#include "detail/event_loop.hpp"

namespace duplex::detail {

/// An operation of a socket (connect, send, close, read) until it
/// completes: its handler, its cancellation and its id in the session.
struct SessionOp {
  CompletionHandler handler;
  CancellationToken token;
  std::uint64_t token_id = 0;
  std::uint64_t id = 0;
  explicit operator bool() const noexcept { return static_cast<bool>(handler); }
};

/// A send waiting for room in the outbound buffer (or for the connection).
struct PendingSend {
  SessionOp op;
  SendKind kind;
  SocketMessageType type;
  bool stream_write;                ///< write_async: chunked, `view` not owned
  std::vector<std::byte> data;      ///< copy (message sends)
  std::span<const std::byte> view;  ///< the bytes to send (into data or the user's)
  std::size_t offset = 0;           ///< bytes already accepted
  Clock::time_point deadline;
  bool compress = true;  ///< permessage-deflate allowed for this message
};

/// A close asked for while the session was still connecting: sent as soon
/// as it opens (a close request is never dropped).
struct PendingClose {
  std::uint16_t code;
  std::string reason;
  SessionOp op;
};

/// A StreamWebSocket's input [loop] (a message socket has none).
struct StreamInput {
  std::vector<std::byte> data;                            ///< received, not yet read
  std::size_t pos = 0;                                    ///< next byte of data to hand out
  bool eof = false;                                       ///< the peer's close arrived
  SessionOp op;                                           ///< the pending read_async
  std::span<std::byte> buffer;                            ///< its buffer
  Clock::time_point deadline = Clock::time_point::max();  ///< its receive_timeout
};

/// A session's cold state [loop], made when first needed: an open idle
/// connection holds none of it.
struct SessionCold {
  std::string peer_reason;           ///< the peer's close reason
  std::vector<SessionOp> close_ops;  ///< close calls waiting for the end
  std::vector<std::byte> leftover;   ///< bytes that came with the handshake
};

}  // namespace duplex::detail
