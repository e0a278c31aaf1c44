// duplex/websocket_events.hpp: event registration tokens and the argument types
// of the socket events (message received, closed, reconnecting, reconnected,
// custom certificate validation).
//
// Events follow C++/WinRT: `auto t = ws.closed(handler);` registers a handler and
// returns a token; `ws.closed(t);` revokes it. Several handlers may be
// registered; they run in registration order on the socket's event loop. After
// a revoke returns, that handler does not start again.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <duplex/data_reader.hpp>
#include <duplex/message_type.hpp>
#include <duplex/websocket_control.hpp>

namespace duplex {

/// Identifies a registered event handler; pass it back to revoke.
struct EventToken {
  std::uint64_t value = 0;
  explicit operator bool() const noexcept { return value != 0; }
  friend bool operator==(EventToken, EventToken) = default;
};

/// Arguments of MessageWebSocket::message_received. Valid only during the
/// handler: data() and text() view the receive buffer.
class MessageWebSocketMessageReceivedEventArgs {
public:
  MessageWebSocketMessageReceivedEventArgs(SocketMessageType type, std::span<const std::byte> data,
                                           bool complete) noexcept
      : type_(type), data_(data), complete_(complete) {}

  /// Type of the message (of its first frame).
  [[nodiscard]] SocketMessageType message_type() const noexcept { return type_; }
  /// False for a piece that is not the last of its message (partial mode).
  [[nodiscard]] bool is_message_complete() const noexcept { return complete_; }
  /// The payload (of this piece in partial mode).
  [[nodiscard]] std::span<const std::byte> data() const noexcept { return data_; }
  /// The payload as characters (UTF-8 for utf8 messages; a piece may end in
  /// the middle of a code point in partial mode).
  [[nodiscard]] std::string_view text() const noexcept {
    return {reinterpret_cast<const char*>(data_.data()), data_.size()};
  }
  /// A DataReader over the payload (valid during the handler, like data()).
  [[nodiscard]] DataReader get_data_reader() const noexcept { return DataReader(data_); }

private:
  SocketMessageType type_;
  std::span<const std::byte> data_;
  bool complete_;
};

/// Arguments of the closed event (Windows: WebSocketClosedEventArgs).
class WebSocketClosedEventArgs {
public:
  WebSocketClosedEventArgs(std::uint16_t code, std::string reason, std::error_code error)
      : code_(code), reason_(std::move(reason)), error_(error) {}
  /// The peer's close code; 1005 if its close frame had none; 1006 when the
  /// connection ended without a close handshake.
  [[nodiscard]] std::uint16_t code() const noexcept { return code_; }
  [[nodiscard]] const std::string& reason() const noexcept { return reason_; }
  /// Why the connection ended abnormally (dead_peer, timed_out, a protocol
  /// error, a reset...); empty after a clean close handshake. get_status() maps it.
  [[nodiscard]] std::error_code error() const noexcept { return error_; }

private:
  std::uint16_t code_;
  std::string reason_;
  std::error_code error_;
};

/// Arguments of MessageWebSocket::reconnecting (ReconnectOptions): raised
/// before each reconnect attempt, when its wait starts.
class WebSocketReconnectingEventArgs {
public:
  WebSocketReconnectingEventArgs(std::size_t attempt, std::chrono::milliseconds delay,
                                 std::error_code error) noexcept
      : attempt_(attempt), delay_(delay), error_(error) {}
  /// 1 for the first attempt after a drop, then 2, 3, ...
  [[nodiscard]] std::size_t attempt() const noexcept { return attempt_; }
  /// How long the socket waits before this attempt (backoff with jitter).
  [[nodiscard]] std::chrono::milliseconds delay() const noexcept { return delay_; }
  /// Why the socket is disconnected: for attempt 1 what ended the connection
  /// (connection_reset, dead_peer, timed_out...; `error::closed` when the
  /// server closed with a code that is reconnected, such as 1001), then the
  /// previous attempt's connect error. get_status() maps it.
  [[nodiscard]] std::error_code error() const noexcept { return error_; }

private:
  std::size_t attempt_;
  std::chrono::milliseconds delay_;
  std::error_code error_;
};

/// Arguments of MessageWebSocket::reconnected: the connection is open again.
class WebSocketReconnectedEventArgs {
public:
  explicit WebSocketReconnectedEventArgs(std::size_t attempt) noexcept : attempt_(attempt) {}
  /// The attempt that succeeded (as in WebSocketReconnectingEventArgs).
  [[nodiscard]] std::size_t attempt() const noexcept { return attempt_; }

private:
  std::size_t attempt_;
};

namespace detail {
struct ValidationState;
}

/// Lets a custom validation handler finish asynchronously: call complete()
/// when the decision (reject() or not) is made. The connect waits (bounded by
/// the connect timeout). Destroying a deferral without complete() completes it.
class Deferral {
public:
  Deferral() = default;
  explicit Deferral(std::shared_ptr<detail::ValidationState> s) : state_(std::move(s)) {}
  Deferral(Deferral&&) noexcept = default;
  Deferral& operator=(Deferral&& other) noexcept {
    if (this != &other) {
      complete();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  ~Deferral() { complete(); }
  /// Ends the deferral; thread-safe; idempotent.
  void complete() noexcept;

private:
  std::shared_ptr<detail::ValidationState> state_;
};

/// Arguments of server_custom_validation_requested (Windows:
/// WebSocketServerCustomValidationRequestedEventArgs), raised during a wss
/// connect after the built-in checks passed (or their errors were ignorable).
class WebSocketServerCustomValidationRequestedEventArgs {
public:
  explicit WebSocketServerCustomValidationRequestedEventArgs(
      std::shared_ptr<detail::ValidationState> s)
      : state_(std::move(s)) {}
  [[nodiscard]] const Certificate& server_certificate() const;
  [[nodiscard]] const std::vector<ChainValidationResult>& server_certificate_errors() const;
  [[nodiscard]] SocketSslErrorSeverity server_certificate_error_severity() const;
  [[nodiscard]] const std::vector<Certificate>& server_intermediate_certificates() const;
  /// Rejects the server: connect_async fails with `error::certificate_rejected`.
  void reject() const noexcept;
  /// Defers the decision until the returned Deferral completes.
  [[nodiscard]] Deferral get_deferral() const;

private:
  std::shared_ptr<detail::ValidationState> state_;
};

}  // namespace duplex
