// WebSocketListener::listen_unix: an acceptor on a Unix domain socket. The
// listening descriptor is carried in the listener's TCP-typed acceptor, and the
// accepted ones in TCP-typed sockets (transport/unix_socket.hpp says why), so
// accepting, limits, the handshake and stop() are the TCP listener's own.
#include <duplex/websocket_listener.hpp>

#include <unistd.h>

#include <mutex>
#include <stdexcept>
#include <system_error>

#include <asio/post.hpp>

#include "listener/listener_impl.hpp"
#include "transport/unix_socket.hpp"

namespace duplex {

HostEndpoint WebSocketListener::listen_unix(const std::string& path) {
  return impl_->listen_unix(path);
}

namespace detail {

HostEndpoint ListenerImpl::listen_unix(const std::string& path) {
  if (path.empty()) throw std::invalid_argument("listen_unix: path must not be empty");
  if (path.size() > transport::max_unix_path)
    throw std::invalid_argument("listen_unix: path must be at most 107 bytes (sockaddr_un)");
  if (path.find('\0') != std::string::npos)
    throw std::invalid_argument("listen_unix: path must not hold NUL");

  std::lock_guard lock(mutex_);
  if (stopped_) throw std::logic_error("listen_unix: the listener was stopped");
  auto& loop = *loops_[acceptors_.size() % loops_.size()];
  auto a = std::make_unique<Acceptor>(*this, loop);
  std::error_code ec;
  const int backlog = options_.backlog > 0
                          ? options_.backlog
                          : static_cast<int>(asio::ip::tcp::acceptor::max_listen_connections);
  const int fd = transport::listen_unix(path, backlog, ec);
  if (fd < 0) throw std::system_error(ec, "listen_unix: " + path);
  a->fd = fd;
  set_non_blocking(fd);
  a->unix_socket = true;
  a->endpoint = HostEndpoint{path, 0};
  Acceptor& ref = *a;
  acceptors_.push_back(std::move(a));
  start_accepting(ref);
  return ref.endpoint;
}

}  // namespace detail

}  // namespace duplex
