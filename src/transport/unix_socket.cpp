// Unix domain stream sockets in the TCP-typed socket (transport/unix_socket.hpp).
#include "transport/unix_socket.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>

namespace duplex::transport {

namespace {

std::error_code last_error() {
  return {errno, std::system_category()};
}

bool make_address(const std::string& path, sockaddr_un& addr, socklen_t& len, std::error_code& ec) {
  if (path.empty() || path.size() > max_unix_path || path.find('\0') != std::string::npos) {
    ec = std::make_error_code(std::errc::filename_too_long);
    if (path.empty() || path.find('\0') != std::string::npos)
      ec = std::make_error_code(std::errc::invalid_argument);
    return false;
  }
  std::memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return true;
}

}  // namespace

std::error_code connect_unix(TcpSocket& socket, const std::string& path) {
  std::error_code ec;
  sockaddr_un addr;
  socklen_t len = 0;
  if (!make_address(path, addr, len, ec)) return ec;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return last_error();
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    ec = last_error();
    ::close(fd);
    return ec;
  }
  socket.close(ec);
  // The protocol object only tells Asio the family for later option calls;
  // the descriptor stays AF_UNIX.
  socket.assign(asio::ip::tcp::v4(), fd, ec);
  if (ec) ::close(fd);
  return ec;
}

int listen_unix(const std::string& path, int backlog, std::error_code& ec) {
  sockaddr_un addr;
  socklen_t len = 0;
  if (!make_address(path, addr, len, ec)) return -1;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ec = last_error();
    return -1;
  }
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0 ||
      ::listen(fd, backlog) != 0) {
    ec = last_error();
    ::close(fd);
    return -1;
  }
  return fd;
}

HostEndpoint host_endpoint(const TcpSocket& socket, bool local) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  const int fd = const_cast<TcpSocket&>(socket).native_handle();
  const int r = local ? ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len)
                      : ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (r != 0) return {};
  if (ss.ss_family == AF_UNIX) {
    const auto& un = reinterpret_cast<const sockaddr_un&>(ss);
    const std::size_t max =
        len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
    return {std::string(un.sun_path, strnlen(un.sun_path, std::min(max, sizeof un.sun_path))), 0};
  }
  if (ss.ss_family == AF_INET) {
    // Dotted decimal by hand: glibc's inet_ntop formats each byte with
    // sprintf, a few thousand instructions per accepted connection.
    const auto& in = reinterpret_cast<const sockaddr_in&>(ss);
    const auto* b = reinterpret_cast<const unsigned char*>(&in.sin_addr.s_addr);
    std::array<char, 16> text{};
    std::size_t n = 0;
    for (int i = 0; i < 4; ++i) {
      if (i != 0) text[n++] = '.';
      const unsigned v = b[i];
      if (v >= 100) text[n++] = static_cast<char>('0' + v / 100);
      if (v >= 10) text[n++] = static_cast<char>('0' + v / 10 % 10);
      text[n++] = static_cast<char>('0' + v % 10);
    }
    return {std::string(text.data(), n), ntohs(in.sin_port)};
  }
  // IPv6: the address read above, as Asio's endpoint (no second system call).
  asio::ip::tcp::endpoint e;
  if (len > e.capacity()) return {};
  std::memcpy(e.data(), &ss, len);
  e.resize(len);
  return {e.address().to_string(), e.port()};
}

}  // namespace duplex::transport
