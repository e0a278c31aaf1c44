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
};

/// Parses a WebSocket URI (RFC 6455 3). Throws std::invalid_argument naming the
/// rule: scheme must be ws or wss, a host is required, no user info, no
/// fragment, port 1-65535.
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
