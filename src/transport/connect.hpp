// transport/connect.hpp: resolve a host and open a TCP connection, racing up to
// five addresses (Happy Eyeballs, RFC 8305); tunnelling through an HTTP CONNECT
// or SOCKS5 proxy. Everything runs on one event loop; callbacks run there.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <asio/steady_timer.hpp>
#include "transport/tcp.hpp"

#include <duplex/websocket_control.hpp>

#include "transport/uri.hpp"

namespace duplex::transport {

using Endpoints = std::vector<asio::ip::tcp::endpoint>;

/// Test seam: when set, consulted before DNS; returning a list uses it as the
/// resolved addresses of (host, port). Set it before connecting (not
/// thread-safe with concurrent connects); reset with an empty function.
using ResolverOverride =
    std::function<std::optional<Endpoints>(std::string_view host, std::uint16_t port)>;
void set_resolver_override(ResolverOverride f);

/// RFC 8305 5: the delay before the next address is tried while earlier
/// attempts are pending ("Connection Attempt Delay", recommended 250 ms).
inline constexpr std::chrono::milliseconds connection_attempt_delay{250};
/// At most this many addresses are tried.
inline constexpr std::size_t max_connect_attempts = 5;

/// Orders addresses RFC 8305 4 style: alternate families, starting with the
/// family of the first address.
Endpoints interleave_families(Endpoints in);

/// One resolve-and-connect. Create with make_shared, call start() once;
/// `done` is called exactly once (never inside start()), with the connected
/// socket or an error: error::host_not_resolved, the last connect error, or
/// operation_aborted after cancel().
class Connector : public std::enable_shared_from_this<Connector> {
public:
  using Done = std::function<void(std::error_code, TcpSocket)>;
  explicit Connector(asio::io_context::executor_type ex);
  void start(std::string host, std::uint16_t port, Done done);
  /// Stops everything; `done` gets operation_aborted unless it already ran.
  void cancel();

private:
  void on_resolved(std::error_code ec, Endpoints eps);
  void start_next();
  void arm_stagger();
  void on_attempt(std::size_t index, std::error_code ec);
  void finish(std::error_code ec, TcpSocket* winner);

  asio::io_context::executor_type ex_;
  asio::ip::tcp::resolver resolver_;
  asio::steady_timer stagger_;
  Endpoints endpoints_;
  std::vector<std::unique_ptr<TcpSocket>> attempts_;
  std::size_t next_ = 0;
  std::size_t failed_ = 0;
  std::error_code last_error_;
  Done done_;
  bool finished_ = false;
};

/// Tunnels `socket` (connected to the proxy) to host:port: HTTP CONNECT (RFC
/// 9110 9.3.6, Basic credential) or SOCKS5 (RFC 1928, user/password RFC 1929).
/// `done(ec)`: error::proxy_failed, a non-2xx HTTP status of the proxy
/// (proxy_category), or an I/O error.
void async_proxy_handshake(TcpSocket& socket, const ProxyUri& proxy, std::string host,
                           std::uint16_t port, std::optional<Credential> credential,
                           std::function<void(std::error_code)> done);

/// Base64 of `in` (RFC 4648), for Basic credentials.
std::string base64(std::string_view in);

}  // namespace duplex::transport
