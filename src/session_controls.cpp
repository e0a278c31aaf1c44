// session_controls.cpp: a session's controls and information
// (detail/session_controls.hpp).
#include "detail/session_controls.hpp"

#include <stdexcept>

#include "transport/uri.hpp"

namespace duplex::detail {

void SessionControls::check_configurable() const {
  if (!config_)
    throw std::logic_error("control: a server-role socket takes its settings from the listener");
  if (connect_called_.load())
    throw std::logic_error("control: settings can change only before connect_async");
}

void SessionControls::check_proxy() const {
  std::lock_guard lock(mutex_);
  if (!config_->proxy.empty()) (void)transport::parse_proxy_uri(config_->proxy);
}

SessionInfo SessionControls::info() const {
  std::lock_guard lock(mutex_);
  SessionInfo info = rest_ ? *rest_ : SessionInfo{};
  if (local_.family != 0) info.local = transport::to_host_endpoint(local_);
  if (remote_.family != 0) info.remote = transport::to_host_endpoint(remote_);
  return info;
}

SessionInfo& SessionControls::info_locked() {
  if (!rest_) rest_ = std::make_unique<SessionInfo>();
  return *rest_;
}

void SessionControls::set_endpoints_locked(transport::TcpSocket& socket) {
  // A Unix socket's endpoints are paths: formatted once, kept in rest_.
  if (!transport::raw_endpoint(socket.native_handle(), true, local_))
    info_locked().local = transport::host_endpoint(socket, true);
  if (!transport::raw_endpoint(socket.native_handle(), false, remote_))
    info_locked().remote = transport::host_endpoint(socket, false);
}

void SessionControls::set_endpoints_locked(int fd) {
  transport::raw_endpoint(fd, true, local_);
  transport::raw_endpoint(fd, false, remote_);
}

void SessionControls::clear_information() noexcept {
  std::lock_guard lock(mutex_);
  local_ = remote_ = {};
  rest_.reset();
}

}  // namespace duplex::detail
