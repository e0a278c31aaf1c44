// duplex/stream_websocket.hpp: StreamWebSocket, a WebSocket used as a binary
// byte stream (files, video): the input stream reads the payload of received
// messages as one stream of bytes, the output stream sends written bytes as
// binary messages. Large payloads are never held whole in memory: received
// messages are streamed piece by piece, and reading from the socket pauses
// while unread input fills its buffer (a slow reader slows the peer); writes
// wait while the outbound buffer is full (a slow peer slows the writer).
//
// Event loop, thread safety, lifetime and async operations: as MessageWebSocket
// (see message_websocket.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include <asio/io_context.hpp>

#include <duplex/cancellation.hpp>
#include <duplex/detail/socket_base.hpp>
#include <duplex/detail/socket_ops.hpp>
#include <duplex/error.hpp>
#include <duplex/task.hpp>
#include <duplex/websocket_control.hpp>
#include <duplex/websocket_events.hpp>

namespace duplex {

class StreamWebSocket;

namespace detail {
StreamWebSocket make_stream_websocket(std::shared_ptr<Session> s);
}

/// The receiving half of a StreamWebSocket (Windows: IInputStream).
class WebSocketInputStream {
public:
  explicit WebSocketInputStream(std::shared_ptr<detail::Session> s) : session_(std::move(s)) {}

  /// Reads into `buffer` (which must stay valid until completion) and completes
  /// with the number of bytes read as soon as any data is there: the bytes of
  /// received binary messages, across message boundaries. Completes with 0
  /// (and no error) at the end of the stream (the peer closed). One read at a
  /// time. Errors: not_connected, timed_out (receive_timeout() passed without
  /// data; the socket stays usable), operation_aborted (cancelled; the socket
  /// stays usable), or the reason the connection failed.
  template <class CompletionToken = UseTask>
  auto read_async(std::span<std::byte> buffer, CompletionToken&& token = {}) {
    return read_async(buffer, CancellationToken{}, std::forward<CompletionToken>(token));
  }
  template <class CompletionToken = UseTask>
  auto read_async(std::span<std::byte> buffer, CancellationToken ct, CompletionToken&& token = {}) {
    return detail::initiate<void(std::error_code, std::size_t)>(
        detail::session_executor(*session_), std::forward<CompletionToken>(token),
        [s = session_, buffer, ct = std::move(ct)](detail::CompletionHandler h) mutable {
          detail::start_read(std::move(s), buffer, std::move(ct), std::move(h));
        });
  }

private:
  std::shared_ptr<detail::Session> session_;
};

/// The sending half of a StreamWebSocket (Windows: IOutputStream).
class WebSocketOutputStream {
public:
  explicit WebSocketOutputStream(std::shared_ptr<detail::Session> s) : session_(std::move(s)) {}

  /// Sends `data` (which must stay valid until completion) as binary
  /// messages of at most outbound_buffer_size_in_bytes() each, and completes
  /// with data.size() once all of it is accepted into the outbound buffer.
  /// Errors: not_connected, closed, timed_out (send_timeout(): the connection
  /// is failed), operation_aborted (cancelled: before any byte was accepted
  /// the socket stays usable, after that the connection is failed).
  template <class CompletionToken = UseTask>
  auto write_async(std::span<const std::byte> data, CompletionToken&& token = {}) {
    return write_async(data, CancellationToken{}, std::forward<CompletionToken>(token));
  }
  template <class CompletionToken = UseTask>
  auto write_async(std::span<const std::byte> data, CancellationToken ct,
                   CompletionToken&& token = {}) {
    return detail::initiate<void(std::error_code, std::size_t)>(
        detail::session_executor(*session_), std::forward<CompletionToken>(token),
        [s = session_, data, ct = std::move(ct)](detail::CompletionHandler h) mutable {
          detail::start_write(std::move(s), data, std::move(ct), std::move(h));
        });
  }

private:
  std::shared_ptr<detail::Session> session_;
};

extern template class detail::SocketBase<StreamWebSocket, StreamWebSocketControl>;

/// A WebSocket used as a byte stream (Windows: StreamWebSocket). Besides the
/// members below, it has those of detail::SocketBase (documented in
/// duplex/detail/socket_base.hpp): control() (a StreamWebSocketControl),
/// information(), get_executor(), set_request_header(), connect_async(),
/// close(), close_async(), and the closed and
/// server_custom_validation_requested events, whose handlers
/// (ClosedHandler, ServerCustomValidationRequestedHandler) receive this
/// socket as a StreamWebSocket&.
class StreamWebSocket : public detail::SocketBase<StreamWebSocket, StreamWebSocketControl> {
public:
  /// A client socket on the library's default event loop.
  StreamWebSocket() = default;
  /// A client socket on `context` (run it with one thread).
  explicit StreamWebSocket(asio::io_context& context) : SocketBase(context) {}
  /// Takes `other`'s connection and handlers (which now receive this socket);
  /// `other` may then only be assigned to or destroyed.
  StreamWebSocket(StreamWebSocket&& other) noexcept = default;
  /// Fails this socket's connection as the destructor does, then takes
  /// `other`'s (as the move constructor).
  StreamWebSocket& operator=(StreamWebSocket&& other) noexcept = default;
  StreamWebSocket(const StreamWebSocket&) = delete;
  StreamWebSocket& operator=(const StreamWebSocket&) = delete;
  /// As MessageWebSocket's (see message_websocket.hpp, Lifetime).
  ~StreamWebSocket() = default;

  /// The stream of received bytes.
  [[nodiscard]] WebSocketInputStream input_stream() const { return WebSocketInputStream(session_); }
  /// The stream of bytes to send.
  [[nodiscard]] WebSocketOutputStream output_stream() const {
    return WebSocketOutputStream(session_);
  }

private:
  friend StreamWebSocket detail::make_stream_websocket(std::shared_ptr<detail::Session> s);
  explicit StreamWebSocket(std::shared_ptr<detail::Session> s) : SocketBase(std::move(s)) {}
};

}  // namespace duplex
