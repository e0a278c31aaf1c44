// duplex/detail/socket_base.hpp: SocketBase, the members MessageWebSocket and
// StreamWebSocket share (construction, moves, settings, connect, close, and the
// closed and certificate validation events). Not for applications: use the two
// socket types, which inherit these members; this is where they are documented.
//
// SocketBase<Derived, Control> is the CRTP base of exactly two types, both
// explicitly instantiated in src/socket_base.cpp, so its compiled members stay
// out of the public headers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/io_context.hpp>

#include <duplex/cancellation.hpp>
#include <duplex/detail/socket_ops.hpp>
#include <duplex/task.hpp>
#include <duplex/websocket_control.hpp>
#include <duplex/websocket_events.hpp>

namespace duplex::detail {

/// What a socket type `Derived` (MessageWebSocket or StreamWebSocket, whose
/// settings handle is `Control`) shares with the other one. Event handlers
/// receive the socket as `Derived&`.
///
/// Event loop, thread safety and lifetime: those of the derived socket (see
/// message_websocket.hpp): every member may be called from any thread, and
/// handlers may call any member, including the destructor.
template <class Derived, class Control>
class SocketBase {
public:
  /// Handler of the closed event: the socket and why it closed.
  using ClosedHandler = std::function<void(Derived&, const WebSocketClosedEventArgs&)>;
  /// Handler of the server_custom_validation_requested event: the socket and
  /// the server's certificate, to accept or reject.
  using ServerCustomValidationRequestedHandler =
      std::function<void(Derived&, const WebSocketServerCustomValidationRequestedEventArgs&)>;

  SocketBase(const SocketBase&) = delete;
  SocketBase& operator=(const SocketBase&) = delete;

  /// The settings (a handle; see websocket_control.hpp). It stays usable after
  /// the socket is gone (setters then throw std::logic_error).
  [[nodiscard]] Control control() const;
  /// The read-only facts about the connection (a handle, like control()).
  [[nodiscard]] WebSocketInformation information() const;
  /// The executor of the socket's event loop.
  [[nodiscard]] asio::any_io_executor get_executor() const noexcept;

  /// Adds a header to the opening handshake request. Only before connect
  /// (std::logic_error after). std::invalid_argument if `name` is not an HTTP
  /// token, `value` holds CR, LF or NUL, or the header is one the handshake
  /// sets itself (Host, Upgrade, Connection, Sec-WebSocket-*).
  void set_request_header(std::string_view name, std::string_view value);

  /// Connects to a `ws://` or `wss://` URI: resolve, TCP (racing up to 5
  /// addresses, RFC 8305), proxy, TLS, opening handshake; or to a Unix domain
  /// socket with `ws+unix:///path/to.sock` (Node's `ws` form; a request
  /// target may follow a ':', as in `ws+unix:///tmp/s.sock:/chat?x=1`; Host
  /// is "localhost"; never through a proxy; no TLS). Bounded by
  /// control().connect_timeout(). Throws std::invalid_argument for a bad URI
  /// or scheme, std::logic_error if connect was already called. Completes with
  /// an error mapped by get_status(): host_not_resolved, cannot_connect,
  /// timed_out, an HTTP status (http_category), handshake errors, X.509
  /// errors (x509_category), certificate_rejected, operation_aborted; for a
  /// Unix socket the system error of its connect (no such file, refused).
  template <class CompletionToken = UseTask>
  auto connect_async(std::string_view uri, CompletionToken&& token = {}) {
    return connect_async(uri, CancellationToken{}, std::forward<CompletionToken>(token));
  }
  /// connect_async, cancellable through `ct` (completes with
  /// operation_aborted).
  template <class CompletionToken = UseTask>
  auto connect_async(std::string_view uri, CancellationToken ct, CompletionToken&& token = {}) {
    check_connect(*session_, uri);
    return initiate<void(std::error_code)>(
        get_executor(), std::forward<CompletionToken>(token),
        [s = session_, u = std::string(uri), ct = std::move(ct)](CompletionHandler h) mutable {
          start_connect(std::move(s), std::move(u), std::move(ct), std::move(h));
        });
  }

  /// Starts the close handshake (RFC 6455 7.1.2) and returns at once; the
  /// closed event follows when the peer answers, or after close_timeout().
  /// Throws std::invalid_argument for a code not allowed (RFC 6455 7.4) or a
  /// reason over 123 bytes or not UTF-8. Without a connection: nothing.
  /// While connect_async (or, for a socket from a listener, its opening) is
  /// still in progress, the close frame is sent as soon as the socket opens.
  /// A StreamWebSocket's unread input is dropped, and reading goes on to find
  /// the peer's close frame. A MessageWebSocket that is reconnecting
  /// (MessageWebSocketControl::reconnect) stops at once: no attempt follows,
  /// its queued sends complete with `error::closed`, and the closed event
  /// fires (1006, the last connection error).
  void close(std::uint16_t code = 1000, std::string_view reason = {});
  /// Like close(), completing when the connection is closed (peer's close
  /// frame received and TCP closed, or failed after close_timeout():
  /// timed_out). Cancelling it fails the connection at once.
  template <class CompletionToken = UseTask>
  auto close_async(std::uint16_t code = 1000, std::string_view reason = {},
                   CompletionToken&& token = {}) {
    return close_async(code, reason, CancellationToken{}, std::forward<CompletionToken>(token));
  }
  /// close_async, cancelled through `ct`.
  template <class CompletionToken = UseTask>
  auto close_async(std::uint16_t code, std::string_view reason, CancellationToken ct,
                   CompletionToken&& token = {}) {
    check_close(code, reason);
    return initiate<void(std::error_code)>(get_executor(), std::forward<CompletionToken>(token),
                                           [s = session_, code, r = std::string(reason),
                                            ct = std::move(ct)](CompletionHandler h) mutable {
                                             start_close(std::move(s), code, std::move(r),
                                                         std::move(ct), std::move(h));
                                           });
  }

  /// Registers a handler for the end of the connection (once). With
  /// auto-reconnect (MessageWebSocketControl::reconnect) it fires once for
  /// the socket, when it is closed for good: a drop that is reconnected
  /// raises `reconnecting` instead. Throws std::invalid_argument for an
  /// empty handler.
  EventToken closed(ClosedHandler handler);
  /// Revokes a closed handler; an unknown or revoked token: nothing.
  void closed(EventToken token) noexcept;
  /// Registers a certificate validation handler (wss), run during connect.
  /// Throws std::invalid_argument for an empty handler.
  EventToken server_custom_validation_requested(ServerCustomValidationRequestedHandler handler);
  /// Revokes a validation handler; an unknown or revoked token: nothing.
  void server_custom_validation_requested(EventToken token) noexcept;

protected:
  /// The library's internal access to the session (the topic registry).
  friend struct SessionAccess;
  /// A client socket on the library's default event loop.
  SocketBase();
  /// A client socket on `context`.
  explicit SocketBase(asio::io_context& context);
  /// Adopts `s` (a server-role session from the listener, or a new one).
  explicit SocketBase(std::shared_ptr<Session> s);
  /// Takes `other`'s connection; its handlers now receive this socket.
  SocketBase(SocketBase&& other) noexcept;
  /// Closes this socket's connection (as the destructor) and takes `other`'s.
  SocketBase& operator=(SocketBase&& other) noexcept;
  /// Fails the connection if open; see the derived socket's lifetime rules.
  ~SocketBase();

  /// The shared state; empty only after a move from this socket.
  std::shared_ptr<Session> session_;
};

}  // namespace duplex::detail
