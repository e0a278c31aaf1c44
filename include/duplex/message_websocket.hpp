// duplex/message_websocket.hpp: MessageWebSocket, a WebSocket that sends and
// receives whole messages (or, in partial mode, pieces of messages).
//
//   duplex::MessageWebSocket ws;
//   ws.control().message_type(duplex::SocketMessageType::utf8);
//   ws.message_received([](duplex::MessageWebSocket&, const auto& args) {
//     std::cout << args.text() << '\n';
//   });
//   ws.connect_async("ws://127.0.0.1:9000/").get();
//   ws.send_async("Hello, world!").get();
//   ws.close();
//
// Event loop: a socket runs on the io_context given to its constructor, or, by
// default, on a library-wide io_context run by a background thread (started on
// first use, joined at exit). Events and completion handlers (without an
// associated executor of their own) run on that loop's thread.
//
// Thread safety: every member may be called from any thread; calls from other
// threads are posted to the loop. Handlers may call any member, including the
// destructor.
//
// Lifetime: destroying the socket fails the connection if it is open, completes
// pending operations with `error::operation_aborted`, and no event handler
// starts after the destructor returns.
//
// Async operations: each takes an optional CancellationToken and a completion
// token (default duplex::use_task, returning duplex::Task). Handlers never run
// inside the initiating call.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

#include <asio/io_context.hpp>

#include <duplex/cancellation.hpp>
#include <duplex/detail/socket_base.hpp>
#include <duplex/detail/socket_ops.hpp>
#include <duplex/error.hpp>
#include <duplex/message_type.hpp>
#include <duplex/task.hpp>
#include <duplex/websocket_control.hpp>
#include <duplex/websocket_events.hpp>

namespace duplex {

class MessageWebSocket;

/// Per-message options of a send (MessageWebSocket::send_async and the frame
/// sends).
struct SendOptions {
  /// With permessage-deflate negotiated: false sends this message uncompressed
  /// (data already compressed, or a secret that must not share a compression
  /// context with data an attacker chooses, CRIME/BREACH). True (default):
  /// compressed when at least DeflateOptions::compress_threshold bytes. A
  /// message sent in pieces follows the option of its first piece. Without
  /// the extension it changes nothing.
  bool compress = true;
  /// This message's type, instead of control().message_type() (which stays
  /// as it is): an echo sends back each message with its own type this way.
  /// For a message sent in pieces, the first piece's type holds.
  std::optional<SocketMessageType> message_type = std::nullopt;
};

namespace detail {
MessageWebSocket make_message_websocket(std::shared_ptr<Session> s);
}

extern template class detail::SocketBase<MessageWebSocket, MessageWebSocketControl>;

/// A WebSocket of whole messages (Windows: MessageWebSocket). Besides the
/// members below, it has those of detail::SocketBase (documented in
/// duplex/detail/socket_base.hpp): control() (a MessageWebSocketControl),
/// information(), get_executor(), set_request_header(), connect_async(),
/// close(), close_async(), and the closed and
/// server_custom_validation_requested events, whose handlers
/// (ClosedHandler, ServerCustomValidationRequestedHandler) receive this
/// socket as a MessageWebSocket&.
class MessageWebSocket : public detail::SocketBase<MessageWebSocket, MessageWebSocketControl> {
public:
  /// Handler of the message_received event: the socket and the message.
  using MessageReceivedHandler =
      std::function<void(MessageWebSocket&, const MessageWebSocketMessageReceivedEventArgs&)>;

  /// A client socket on the library's default event loop.
  MessageWebSocket() = default;
  /// A client socket on `context` (run it with one thread).
  explicit MessageWebSocket(asio::io_context& context) : SocketBase(context) {}
  /// Takes `other`'s connection and handlers (which now receive this socket);
  /// `other` may then only be assigned to or destroyed.
  MessageWebSocket(MessageWebSocket&& other) noexcept = default;
  /// Fails this socket's connection as the destructor does, then takes
  /// `other`'s (as the move constructor).
  MessageWebSocket& operator=(MessageWebSocket&& other) noexcept = default;
  MessageWebSocket(const MessageWebSocket&) = delete;
  MessageWebSocket& operator=(const MessageWebSocket&) = delete;
  /// See Lifetime above.
  ~MessageWebSocket() = default;

  /// Sends one message of type control().message_type(). The data is copied
  /// before the call returns. Completes when the message is accepted into the
  /// outbound buffer (at once while it has room: called with the default token
  /// on the socket's loop, e.g. in an event handler, it returns a Task that is
  /// already ready, and costs no allocation). Throws std::invalid_argument
  /// for a utf8 message that is not valid UTF-8, and std::logic_error while a
  /// message sent in frames (send_nonfinal_frame_async) is unfinished (RFC
  /// 6455 5.4: messages do not interleave). Errors: not_connected,
  /// closed (a close was sent or received), timed_out, operation_aborted;
  /// with auto-reconnect (control().reconnect()) while disconnected:
  /// reconnecting or reconnect_queue_full, by its send_policy (a queued send
  /// completes when the reconnected connection takes it).
  /// Cancelling a send still waiting for room leaves the socket usable.
  template <class CompletionToken = UseTask>
  auto send_async(std::span<const std::byte> data, CompletionToken&& token = {}) {
    return send_impl(detail::SendKind::whole, data, CancellationToken{},
                     std::forward<CompletionToken>(token));
  }
  template <class CompletionToken = UseTask>
  auto send_async(std::span<const std::byte> data, CancellationToken ct,
                  CompletionToken&& token = {}) {
    return send_impl(detail::SendKind::whole, data, std::move(ct),
                     std::forward<CompletionToken>(token));
  }
  /// Sends `text`'s bytes as one message of type control().message_type().
  template <class CompletionToken = UseTask>
  auto send_async(std::string_view text, CompletionToken&& token = {}) {
    return send_impl(detail::SendKind::whole, as_bytes(text), CancellationToken{},
                     std::forward<CompletionToken>(token));
  }
  template <class CompletionToken = UseTask>
  auto send_async(std::string_view text, CancellationToken ct, CompletionToken&& token = {}) {
    return send_impl(detail::SendKind::whole, as_bytes(text), std::move(ct),
                     std::forward<CompletionToken>(token));
  }

  /// send_async with per-message `options` (SendOptions: compression, type).
  template <class CompletionToken = UseTask>
  auto send_async(std::span<const std::byte> data, SendOptions options,
                  CompletionToken&& token = {}) {
    return send_impl(detail::SendKind::whole, data, CancellationToken{},
                     std::forward<CompletionToken>(token), options);
  }
  template <class CompletionToken = UseTask>
  auto send_async(std::span<const std::byte> data, SendOptions options, CancellationToken ct,
                  CompletionToken&& token = {}) {
    return send_impl(detail::SendKind::whole, data, std::move(ct),
                     std::forward<CompletionToken>(token), options);
  }
  template <class CompletionToken = UseTask>
  auto send_async(std::string_view text, SendOptions options, CompletionToken&& token = {}) {
    return send_impl(detail::SendKind::whole, as_bytes(text), CancellationToken{},
                     std::forward<CompletionToken>(token), options);
  }
  template <class CompletionToken = UseTask>
  auto send_async(std::string_view text, SendOptions options, CancellationToken ct,
                  CompletionToken&& token = {}) {
    return send_impl(detail::SendKind::whole, as_bytes(text), std::move(ct),
                     std::forward<CompletionToken>(token), options);
  }

  /// Sends one piece of a message that more pieces follow (a frame without
  /// FIN); the first piece's type (control().message_type()) holds for the
  /// message. UTF-8 is checked across pieces, at the call, in call order: a
  /// piece that makes the text invalid throws std::invalid_argument (a code
  /// point may still be split between pieces). Otherwise as send_async.
  template <class CompletionToken = UseTask>
  auto send_nonfinal_frame_async(std::span<const std::byte> data, CompletionToken&& token = {}) {
    return send_impl(detail::SendKind::nonfinal, data, CancellationToken{},
                     std::forward<CompletionToken>(token));
  }
  template <class CompletionToken = UseTask>
  auto send_nonfinal_frame_async(std::span<const std::byte> data, CancellationToken ct,
                                 CompletionToken&& token = {}) {
    return send_impl(detail::SendKind::nonfinal, data, std::move(ct),
                     std::forward<CompletionToken>(token));
  }
  /// send_nonfinal_frame_async with per-message `options`; the first piece's
  /// options hold for the whole message.
  template <class CompletionToken = UseTask>
  auto send_nonfinal_frame_async(std::span<const std::byte> data, SendOptions options,
                                 CompletionToken&& token = {}) {
    return send_impl(detail::SendKind::nonfinal, data, CancellationToken{},
                     std::forward<CompletionToken>(token), options);
  }
  template <class CompletionToken = UseTask>
  auto send_nonfinal_frame_async(std::span<const std::byte> data, SendOptions options,
                                 CancellationToken ct, CompletionToken&& token = {}) {
    return send_impl(detail::SendKind::nonfinal, data, std::move(ct),
                     std::forward<CompletionToken>(token), options);
  }
  /// Sends the last piece of a message sent in pieces (or a whole message).
  /// Throws std::invalid_argument when a utf8 message would end invalid or
  /// in the middle of a code point (RFC 6455 5.6).
  template <class CompletionToken = UseTask>
  auto send_final_frame_async(std::span<const std::byte> data, CompletionToken&& token = {}) {
    return send_impl(detail::SendKind::final, data, CancellationToken{},
                     std::forward<CompletionToken>(token));
  }
  template <class CompletionToken = UseTask>
  auto send_final_frame_async(std::span<const std::byte> data, CancellationToken ct,
                              CompletionToken&& token = {}) {
    return send_impl(detail::SendKind::final, data, std::move(ct),
                     std::forward<CompletionToken>(token));
  }

  /// send_final_frame_async with per-message `options` (used when this piece
  /// is the whole message; otherwise the first piece's options hold).
  template <class CompletionToken = UseTask>
  auto send_final_frame_async(std::span<const std::byte> data, SendOptions options,
                              CompletionToken&& token = {}) {
    return send_impl(detail::SendKind::final, data, CancellationToken{},
                     std::forward<CompletionToken>(token), options);
  }
  template <class CompletionToken = UseTask>
  auto send_final_frame_async(std::span<const std::byte> data, SendOptions options,
                              CancellationToken ct, CompletionToken&& token = {}) {
    return send_impl(detail::SendKind::final, data, std::move(ct),
                     std::forward<CompletionToken>(token), options);
  }

  /// Registers a handler for each received message (or piece, in partial
  /// mode). Register before connect_async to see the first message. Throws
  /// std::invalid_argument for an empty handler.
  EventToken message_received(MessageReceivedHandler handler);
  /// Revokes a message handler; an unknown or revoked token: nothing.
  void message_received(EventToken token) noexcept;

  /// Handler of the reconnecting event: the socket, the attempt and its delay.
  using ReconnectingHandler =
      std::function<void(MessageWebSocket&, const WebSocketReconnectingEventArgs&)>;
  /// Handler of the reconnected event: the socket and the attempt that worked.
  using ReconnectedHandler =
      std::function<void(MessageWebSocket&, const WebSocketReconnectedEventArgs&)>;

  /// Registers a handler raised before each reconnect attempt (only with
  /// control().reconnect().enable; see ReconnectOptions), on the socket's
  /// loop, when the attempt's wait starts. A handler may call close() (or
  /// destroy the socket) to stop reconnecting: the attempt is not made.
  /// Throws std::invalid_argument for an empty handler.
  EventToken reconnecting(ReconnectingHandler handler);
  /// Revokes a reconnecting handler; an unknown or revoked token: nothing.
  void reconnecting(EventToken token) noexcept;
  /// Registers a handler raised when a reconnect attempt opened the
  /// connection, on the socket's loop, before any message of the new
  /// connection is delivered and before the sends queued while disconnected
  /// leave: what it sends (send_async on the loop thread, as here) goes out
  /// ahead of them. The place to resubscribe or authenticate again. Throws
  /// std::invalid_argument for an empty handler.
  EventToken reconnected(ReconnectedHandler handler);
  /// Revokes a reconnected handler; an unknown or revoked token: nothing.
  void reconnected(EventToken token) noexcept;

private:
  friend MessageWebSocket detail::make_message_websocket(std::shared_ptr<detail::Session> s);
  explicit MessageWebSocket(std::shared_ptr<detail::Session> s) : SocketBase(std::move(s)) {}

  static std::span<const std::byte> as_bytes(std::string_view t) noexcept {
    return {reinterpret_cast<const std::byte*>(t.data()), t.size()};
  }
  // The send path: an event handler's send_async (a Task, on the loop thread)
  // is done at once with no operation object; kept small so that it inlines
  // into the handler. Everything else goes through send_queued().
  template <class CompletionToken>
  auto send_impl(detail::SendKind kind, std::span<const std::byte> data, CancellationToken ct,
                 CompletionToken&& token, SendOptions options = {}) {
    if constexpr (std::is_same_v<std::decay_t<CompletionToken>, UseTask>) {
      if (kind == detail::SendKind::whole) {
        const auto to = detail::plain_send(*session_, options.message_type, data.size());
        if (to.connection != nullptr) [[likely]] {
          const std::error_code ec = detail::send_plain(to, data, options.compress);
          if (!ec) [[likely]]
            return Task<void>::ready({ec});
          return send_failed(ec, data, options);
        }
      }
    }
    return send_queued(kind, data, std::move(ct), std::forward<CompletionToken>(token), options,
                       false);
  }
  // A whole message send_plain refused: a bad argument throws, other errors
  // complete the send.
#if defined(__GNUC__)
  [[gnu::noinline]]
#endif
  Task<void>
  send_failed(std::error_code ec, std::span<const std::byte> data, SendOptions options) {
    detail::check_send(*session_, detail::SendKind::whole, data, options.message_type);
    return Task<void>::ready({ec});
  }
  // `tried`: try_send_now already ran for this whole message and gave false.
  template <class CompletionToken>
#if defined(__GNUC__)
  [[gnu::noinline]]
#endif
  auto
  send_queued(detail::SendKind kind, std::span<const std::byte> data, CancellationToken ct,
              CompletionToken&& token, SendOptions options, bool tried) {
    const bool compress = options.compress;
    // Frame sends are checked in call order, here, whatever thread sends.
    if (kind != detail::SendKind::whole)
      detail::check_frame(*session_, kind, data, options.message_type);
    if constexpr (std::is_same_v<std::decay_t<CompletionToken>, UseTask>) {
      // On the loop (an event handler): done at once, no operation object.
      std::error_code ec = detail::no_error;
      if (!tried && detail::try_send_now(*session_, kind, data, options.message_type, compress, ec))
        return Task<void>::ready({ec});
    }
    auto type = detail::check_send(*session_, kind, data, options.message_type);
    return detail::initiate_send(
        get_executor(), std::forward<CompletionToken>(token),
        [s = session_.get(), kind, type, data, compress](std::error_code& ec) {
          return detail::try_send_now(*s, kind, data, type, compress, ec);
        },
        [s = session_, kind, type, data, ct = std::move(ct),
         compress](detail::CompletionHandler h) mutable {
          detail::start_send(std::move(s), kind, type, data, std::move(ct), std::move(h), compress);
        });
  }
};

}  // namespace duplex
