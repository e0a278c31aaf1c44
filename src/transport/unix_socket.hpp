// transport/unix_socket.hpp: Unix domain stream sockets (ws+unix:// clients,
// WebSocketListener::listen_unix) carried in the TCP-typed socket of every
// connection.
//
// Why in a TcpSocket: a connection's socket type is fixed at compile time on
// the data path (transport::Stream, the session's reads and writes). On Linux,
// Asio's stream socket operations are recv/send/shutdown/close on the
// descriptor, the same calls for AF_UNIX as for AF_INET, so an AF_UNIX
// descriptor assigned to a TcpSocket behaves as a stream socket with no change
// to the types, the code or the cost of the TCP path. What differs is kept
// here: connecting and binding by path, and reading the endpoints (Asio's TCP
// endpoint cannot hold a path). TCP options (TCP_NODELAY) fail on such a
// socket and are ignored where they are set.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

#include <sys/socket.h>

#include <duplex/websocket_control.hpp>

#include "transport/tcp.hpp"

namespace duplex::transport {

/// True when a connect "host" names a Unix socket: an absolute path (a DNS
/// name or an IP address never starts with '/'; parse_websocket_uri puts the
/// socket path of a ws+unix URI there).
[[nodiscard]] inline bool is_unix_path(std::string_view host) noexcept {
  return !host.empty() && host.front() == '/';
}

/// Longest socket path (sockaddr_un::sun_path holds 108 bytes with its NUL).
inline constexpr std::size_t max_unix_path = 107;

/// Connects a new non-blocking AF_UNIX stream socket to `path` and assigns it
/// to `socket` (closed before). A Unix connect completes at once or fails: no
/// file (ENOENT), nobody listening (ECONNREFUSED), backlog full (EAGAIN), a
/// path over max_unix_path (ENAMETOOLONG). Returns the error, if any.
std::error_code connect_unix(TcpSocket& socket, const std::string& path);

/// A listening AF_UNIX stream socket bound to `path` (which must not exist:
/// EADDRINUSE otherwise), with `backlog`; its descriptor, or -1 with `ec`.
int listen_unix(const std::string& path, int backlog, std::error_code& ec);

/// The local or remote endpoint of `socket` as the library reports it: the
/// numeric address and port for TCP; for a Unix socket, the socket path (the
/// bound one, "" for an unnamed client end) and port 0.
HostEndpoint host_endpoint(const TcpSocket& socket, bool local);

/// An IP endpoint as the kernel reports it, kept raw (20 bytes) so that a
/// connection formats it only when asked (host_endpoint() builds a string
/// per address).
struct RawEndpoint {
  std::array<std::uint8_t, 16> address{};  ///< network order; IPv4 in the first 4 bytes
  std::uint32_t scope_id = 0;              ///< IPv6 link-local scope
  std::uint16_t port = 0;                  ///< host order
  std::uint8_t family = 0;                 ///< 0: none, 4: IPv4, 6: IPv6
};

/// Reads the local or remote IP endpoint of descriptor `fd` into `out`.
/// False when it is not an IP endpoint (a Unix socket: use host_endpoint)
/// or cannot be read (`out` is then {}, as host_endpoint's {"", 0}).
bool raw_endpoint(int fd, bool local, RawEndpoint& out);

/// The IP endpoint in `addr` (`len` bytes, as accept() returned it) into
/// `out`; false for another family (AF_UNIX) or a short address.
bool raw_endpoint(const sockaddr* addr, std::size_t len, RawEndpoint& out);

/// `e` as host_endpoint() reports it: numeric address and port; {"", 0} for
/// family 0.
HostEndpoint to_host_endpoint(const RawEndpoint& e);
/// The same written into `out`, reusing its string's storage.
void to_host_endpoint(const RawEndpoint& e, HostEndpoint& out);

}  // namespace duplex::transport
