// detail/session_controls.hpp: a session's cold state read from any thread,
// under one lock: the controls (until connect) and the information (the
// endpoints, the negotiated subprotocol and extensions, the round-trip time,
// the server's certificate). Nothing here is touched per message.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include <duplex/websocket_control.hpp>

#include "detail/session_config.hpp"
#include "detail/tiny_mutex.hpp"
#include "transport/stream.hpp"
#include "transport/unix_socket.hpp"

namespace duplex::detail {

/// A socket's information as its accessors report it.
struct SessionInfo {
  HostEndpoint local, remote;
  std::string protocol, extensions;
  std::optional<std::chrono::microseconds> rtt;
  /// wss:// client: the server's certificate and how it validated (set
  /// once, read-only after); null otherwise.
  std::shared_ptr<const ValidationState> server_tls;
  std::optional<protocol::DeflateParams> deflate;  ///< negotiated permessage-deflate
};

class SessionControls {
public:
  /// `client`: the controls are kept here until connect; a server-role
  /// session has none (its settings are its listener's).
  explicit SessionControls(bool client)
      : config_(client ? std::make_unique<SessionConfig>() : nullptr) {}

  // --- Controls (any thread) --------------------------------------------------
  /// Runs f(config) under the lock. Throws std::logic_error for a server-role
  /// session and once connect_async was called.
  template <class F>
  void configure(F&& f) {
    std::lock_guard lock(mutex_);
    check_configurable();
    f(*config_);
  }
  /// Runs f(config) under the lock; a server-role session's are its
  /// listener's `settings` (read under this lock: they are set under it).
  template <class F>
  auto read_config(F&& f, const std::shared_ptr<const LoopSettings>& settings) const {
    std::lock_guard lock(mutex_);
    if (config_) return f(std::as_const(*config_));
    SessionConfig listener;
    listener.loop = *settings;
    return f(std::as_const(listener));
  }
  /// A copy of the controls as connect_async found them (client role).
  [[nodiscard]] SessionConfig config() const {
    std::lock_guard lock(mutex_);
    return *config_;
  }
  /// connect_async: throws std::invalid_argument for a proxy control that is
  /// not a valid proxy URI (client role).
  void check_proxy() const;
  /// Marks the socket connected (the controls are fixed from here on);
  /// true when it already was.
  bool mark_connected() noexcept { return connect_called_.exchange(true); }

  // --- Information ------------------------------------------------------------
  /// The information, formatted on each call (the endpoints are kept raw).
  [[nodiscard]] SessionInfo info() const;
  /// The lock for the *_locked members below, which the session's loop uses
  /// to set what it learns while connecting and opening.
  [[nodiscard]] std::unique_lock<TinyMutex> lock() const { return std::unique_lock(mutex_); }
  /// The information other than the IP endpoints, made if need be.
  SessionInfo& info_locked();
  /// Reads the endpoints of `socket` (IP endpoints raw, a Unix socket's paths
  /// formatted once).
  void set_endpoints_locked(transport::TcpSocket& socket);
  /// The IP endpoints of TCP descriptor `fd`.
  void set_endpoints_locked(int fd);
  void set_endpoints_locked(const transport::RawEndpoint& local,
                            const transport::RawEndpoint& remote) noexcept {
    local_ = local;
    remote_ = remote;
  }
  /// Forgets the information of a lost connection (auto-reconnect).
  void clear_information() noexcept;

private:
  void check_configurable() const;

  mutable TinyMutex mutex_;
  std::atomic<bool> connect_called_{false};
  std::unique_ptr<SessionConfig> config_;  ///< the controls; client role only
  transport::RawEndpoint local_, remote_;  ///< IP endpoints (family 0: none)
  std::unique_ptr<SessionInfo> rest_;      ///< null: all empty; holds Unix endpoints
};

}  // namespace duplex::detail
