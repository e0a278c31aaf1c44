// transport/uri.hpp: parsing of ws:// / wss:// URIs and proxy URIs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace duplex::transport {

struct WebSocketUri {
  bool secure = false;      ///< wss
  std::string host;         ///< without brackets for IPv6
  std::uint16_t port = 0;   ///< explicit or 80 / 443
  std::string target;       ///< "/path?query", "/" when empty
  std::string host_header;  ///< Host header value (port only when not default)
  /// ws+unix: the socket path, also in `host` (transport::is_unix_path), so a
  /// connector given `host` connects to it; port 0, Host header "localhost".
  std::string unix_path;
};

/// Parses a WebSocket URI (RFC 6455 3). Throws std::invalid_argument naming the
/// rule: scheme must be ws, wss or ws+unix, a host is required, no user info,
/// no fragment, port 1-65535.
///
/// ws+unix (the form of Node's `ws`): `ws+unix:///abs/path.sock` or
/// `ws+unix:///abs/path.sock:/request/target?query`: the socket path runs to
/// the first ':' and the request target (default "/") follows it. The path
/// must be absolute, at most 107 bytes, and hold no '?' (the target's query
/// goes after the ':'); no authority (nothing between "//" and the path).
WebSocketUri parse_websocket_uri(std::string_view uri);

struct ProxyUri {
  enum class Kind { http, socks5 } kind = Kind::http;
  std::string host;
  std::uint16_t port = 0;
};

/// Parses "http://host:port" or "socks5://host:port" (port defaults 8080 /
/// 1080). Throws std::invalid_argument naming the rule.
ProxyUri parse_proxy_uri(std::string_view uri);

/// True if `host` is a numeric IPv4 or IPv6 address.
bool is_ip_address(std::string_view host) noexcept;

}  // namespace duplex::transport
