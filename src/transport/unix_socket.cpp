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
#include <cstdint>
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

namespace {

// Reads the local or peer address of `fd`; false when it cannot be read.
bool read_address(int fd, bool local, sockaddr_storage& ss, socklen_t& len) {
  len = sizeof ss;
  const int r = local ? ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len)
                      : ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return r == 0;
}

// The IP endpoint in `ss`, or false for another family.
bool to_raw(const sockaddr_storage& ss, RawEndpoint& out) {
  if (ss.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(ss);
    out.family = 4;
    std::memcpy(out.address.data(), &in.sin_addr.s_addr, 4);
    out.port = ntohs(in.sin_port);
    return true;
  }
  if (ss.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(ss);
    out.family = 6;
    std::memcpy(out.address.data(), &in6.sin6_addr, 16);
    out.scope_id = in6.sin6_scope_id;
    out.port = ntohs(in6.sin6_port);
    return true;
  }
  return false;
}

}  // namespace

bool raw_endpoint(int fd, bool local, RawEndpoint& out) {
  out = {};
  sockaddr_storage ss{};
  socklen_t len = 0;
  return read_address(fd, local, ss, len) && to_raw(ss, out);
}

bool raw_endpoint(const sockaddr* addr, std::size_t len, RawEndpoint& out) {
  out = {};
  const std::size_t need = addr->sa_family == AF_INET    ? sizeof(sockaddr_in)
                           : addr->sa_family == AF_INET6 ? sizeof(sockaddr_in6)
                                                         : 0;
  if (need == 0 || len < need) return false;
  sockaddr_storage ss{};
  std::memcpy(&ss, addr, need);
  return to_raw(ss, out);
}

namespace {

// A byte in decimal followed by '.', padded to 4 characters.
struct DecimalByte {
  std::array<char, 4> text{};
  std::uint8_t size = 0;  ///< digits and the '.'
};
constexpr std::array<DecimalByte, 256> make_decimal_bytes() {
  std::array<DecimalByte, 256> t{};
  for (unsigned v = 0; v < 256; ++v) {
    auto& d = t[v];
    if (v >= 100) d.text[d.size++] = static_cast<char>('0' + v / 100);
    if (v >= 10) d.text[d.size++] = static_cast<char>('0' + v / 10 % 10);
    d.text[d.size++] = static_cast<char>('0' + v % 10);
    d.text[d.size++] = '.';
  }
  return t;
}
constexpr auto decimal_bytes = make_decimal_bytes();

}  // namespace

void to_host_endpoint(const RawEndpoint& e, HostEndpoint& out) {
  out.port = e.port;
  if (e.family == 4) {
    // Dotted decimal by hand: glibc's inet_ntop formats each byte with
    // sprintf, a few thousand instructions per accepted connection. Each
    // byte is 4 characters from a table ("255.", "7.") and its length.
    std::array<char, 16 + 3> text;
    std::size_t n = 0;
    for (int i = 0; i < 4; ++i) {
      const auto& d = decimal_bytes[e.address[i]];
      std::memcpy(text.data() + n, d.text.data(), 4);
      n += d.size;
    }
    out.host.clear();
    out.host.append(text.data(), n - 1);  // without the last '.'
    return;
  }
  if (e.family == 6) {
    asio::ip::address_v6::bytes_type bytes;
    std::memcpy(bytes.data(), e.address.data(), bytes.size());
    out.host = asio::ip::address_v6(bytes, e.scope_id).to_string();
    return;
  }
  out.host.clear();
  out.port = 0;
}

HostEndpoint to_host_endpoint(const RawEndpoint& e) {
  HostEndpoint out;
  to_host_endpoint(e, out);
  return out;
}

HostEndpoint host_endpoint(const TcpSocket& socket, bool local) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  const int fd = const_cast<TcpSocket&>(socket).native_handle();
  if (!read_address(fd, local, ss, len)) return {};
  if (ss.ss_family == AF_UNIX) {
    const auto& un = reinterpret_cast<const sockaddr_un&>(ss);
    const std::size_t max =
        len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
    return {std::string(un.sun_path, strnlen(un.sun_path, std::min(max, sizeof un.sun_path))), 0};
  }
  RawEndpoint raw;
  if (!to_raw(ss, raw)) return {};
  return to_host_endpoint(raw);
}

}  // namespace duplex::transport
