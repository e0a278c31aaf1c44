// detail/session_config.hpp: what a session is configured with. The settings
// the loop reads while a connection is open (LoopSettings, shared by a
// listener's sessions), the controls that only matter until connect
// (SessionConfig), a server session's options from the listener, and the
// state of a custom certificate validation.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <duplex/message_websocket.hpp>
#include <duplex/protocol/connection.hpp>
#include <duplex/protocol/handshake.hpp>
#include <duplex/websocket_control.hpp>

#include "transport/connect.hpp"
#include "transport/unix_socket.hpp"

namespace duplex::detail {

using std::chrono::milliseconds;

/// The settings the loop reads while a connection is open. A client takes a
/// copy of its controls' at connect; the sessions of a listener share the
/// listener's. Never changed once a session holds them.
struct LoopSettings {
  std::size_t outbound_buffer_size = std::size_t{1} << 20;
  std::uint64_t max_message_size = std::uint64_t{64} << 20;
  milliseconds unsolicited_pong_interval{0};
  milliseconds keep_alive_interval{0};
  milliseconds keep_alive_timeout{10'000};
  milliseconds connect_timeout{60'000};
  milliseconds send_timeout{30'000};
  milliseconds receive_timeout{30'000};
  milliseconds close_timeout{5'000};
  MessageWebSocketReceiveMode receive_mode = MessageWebSocketReceiveMode::full_message;
  std::size_t partial_message_threshold =
      MessageWebSocketControl::default_partial_message_threshold;
  bool no_delay = true;
  /// The protocol core's settings of the message connections that use these
  /// settings, derived from the fields above by share(); their connections
  /// reference it (no copy each). Empty: each connection has its own copy.
  std::optional<protocol::ConnectionConfig> message_connection;
  /// Derives message_connection for connections in `role` (once the fields
  /// above are final).
  void share(protocol::Role role);
};

/// Everything the controls set: the loop's settings, and what is only needed
/// while connecting (it lives in the connect state after connect).
struct SessionConfig {
  LoopSettings loop;
  std::vector<std::string> protocols;
  std::optional<Credential> server_credential;
  std::string proxy;
  std::optional<Credential> proxy_credential;
  std::vector<ChainValidationResult> ignorable_errors;
  std::string trusted_ca_file;
  std::optional<ClientCertificate> client_certificate;
  protocol::HttpHeaders request_headers;
  protocol::DeflateConfig deflate;  ///< permessage-deflate offer (off by default)
  ReconnectOptions reconnect;       ///< auto-reconnect (message client only; off by default)
};

/// Shared state of a custom certificate validation (event args, deferrals).
struct ValidationState {
  Certificate certificate;
  std::vector<ChainValidationResult> errors;
  SocketSslErrorSeverity severity = SocketSslErrorSeverity::none;
  std::vector<Certificate> intermediates;
  std::atomic<bool> rejected{false};
  std::atomic<int> deferrals{0};
  std::function<void()> on_all_complete;  ///< posts the decision to the loop
};

/// Settings of a server-role session created by the listener.
struct ServerSessionOptions {
  std::string protocol;                            ///< negotiated subprotocol ("" if none)
  std::string extensions;                          ///< negotiated extensions answer ("" if none)
  std::shared_ptr<const LoopSettings> settings;    ///< the listener's, shared
  std::optional<protocol::DeflateParams> deflate;  ///< negotiated permessage-deflate
  /// The connection's IP endpoints as the listener read them (both set or
  /// neither; null: the session reads them from the socket).
  const transport::RawEndpoint* local = nullptr;
  const transport::RawEndpoint* remote = nullptr;
  /// The caller opens the session (open_server_now) and starts its reading
  /// (after_open) itself, on the loop, instead of the two handlers
  /// start_server would post; start_server's `leftover` is then unused.
  bool open_later = false;
};

}  // namespace duplex::detail
