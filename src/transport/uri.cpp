// URI parsing for connect_async and the proxy control.
#include "transport/uri.hpp"
#include "transport/unix_socket.hpp"

#include <algorithm>
#include <cctype>
#include <stdexcept>

#include <asio/ip/address.hpp>

namespace duplex::transport {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

struct Authority {
  std::string host;
  std::uint16_t port = 0;
  bool bracketed = false;
};

// Splits "host", "host:port", "[v6]" or "[v6]:port"; `what` names the argument.
Authority parse_authority(std::string_view a, const char* what) {
  Authority out;
  if (a.empty()) throw std::invalid_argument(std::string(what) + ": a host is required");
  // RFC 6455 3: user information has no meaning in a WebSocket URI.
  if (a.find('@') != std::string_view::npos)
    throw std::invalid_argument(std::string(what) + ": user information is not allowed");
  std::string_view port_part;
  if (a.front() == '[') {
    auto close = a.find(']');
    if (close == std::string_view::npos)
      throw std::invalid_argument(std::string(what) + ": unterminated IPv6 literal");
    out.host = std::string(a.substr(1, close - 1));
    out.bracketed = true;
    auto rest = a.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':')
        throw std::invalid_argument(std::string(what) + ": junk after IPv6 literal");
      port_part = rest.substr(1);
      if (port_part.empty()) throw std::invalid_argument(std::string(what) + ": empty port");
    }
    std::error_code ec;
    auto addr = asio::ip::make_address_v6(out.host, ec);
    (void)addr;
    if (ec) throw std::invalid_argument(std::string(what) + ": invalid IPv6 literal");
  } else {
    auto colon = a.rfind(':');
    if (colon != std::string_view::npos) {
      port_part = a.substr(colon + 1);
      a = a.substr(0, colon);
      if (port_part.empty()) throw std::invalid_argument(std::string(what) + ": empty port");
    }
    if (a.empty()) throw std::invalid_argument(std::string(what) + ": a host is required");
    for (char c : a) {
      auto u = static_cast<unsigned char>(c);
      // RFC 3986 3.2.2: reg-name characters (percent-encoding not supported).
      if (!(std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~'))
        throw std::invalid_argument(std::string(what) + ": invalid character in host");
    }
    out.host = lower(a);
  }
  if (!port_part.empty()) {
    unsigned long v = 0;
    if (port_part.size() > 5) throw std::invalid_argument(std::string(what) + ": invalid port");
    for (char c : port_part) {
      if (c < '0' || c > '9') throw std::invalid_argument(std::string(what) + ": invalid port");
      v = v * 10 + static_cast<unsigned long>(c - '0');
    }
    if (v == 0 || v > 65535)
      throw std::invalid_argument(std::string(what) + ": port must be 1-65535");
    out.port = static_cast<std::uint16_t>(v);
  }
  return out;
}

// Node's `ws` form: ws+unix:///socket/path[:/target]. The socket path ends at
// the first ':' (a path holding ':' cannot be named this way, as in Node).
WebSocketUri parse_unix_uri(std::string_view rest) {
  for (char c : rest) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f)
      throw std::invalid_argument(
          "uri: spaces, controls and non-ASCII bytes must be percent-encoded");
  }
  if (rest.find('#') != std::string_view::npos)
    throw std::invalid_argument("uri: a fragment (#) is not allowed");
  if (rest.empty() || rest.front() != '/')
    throw std::invalid_argument(
        "uri: ws+unix must be ws+unix:///absolute/socket/path[:/target] (no host)");
  const auto colon = rest.find(':');
  WebSocketUri out;
  out.unix_path = std::string(rest.substr(0, colon));
  if (out.unix_path.find('?') != std::string::npos)
    throw std::invalid_argument(
        "uri: a ws+unix socket path must not hold '?' (put the target after ':')");
  if (out.unix_path.size() > max_unix_path)
    throw std::invalid_argument("uri: a ws+unix socket path must be at most 107 bytes");
  out.target = colon == std::string_view::npos ? "/" : std::string(rest.substr(colon + 1));
  if (out.target.empty()) out.target = "/";
  if (out.target.front() == '?') out.target.insert(out.target.begin(), '/');
  if (out.target.front() != '/')
    throw std::invalid_argument("uri: the ws+unix target after ':' must start with '/'");
  out.host = out.unix_path;
  // RFC 9112 3.2: a Host header is required; a socket path has no host name,
  // so send what Node's ws and curl send for Unix sockets.
  out.host_header = "localhost";
  return out;
}

}  // namespace

WebSocketUri parse_websocket_uri(std::string_view uri) {
  auto sep = uri.find("://");
  if (sep == std::string_view::npos)
    throw std::invalid_argument("uri: must start with ws://, wss:// or ws+unix://");
  auto scheme = lower(uri.substr(0, sep));
  WebSocketUri out;
  // RFC 6455 3: only the ws and wss schemes name WebSocket endpoints.
  if (scheme == "ws+unix") return parse_unix_uri(uri.substr(sep + 3));
  if (scheme == "ws")
    out.secure = false;
  else if (scheme == "wss")
    out.secure = true;
  else
    throw std::invalid_argument("uri: scheme must be ws, wss or ws+unix, not '" + scheme + "'");
  auto rest = uri.substr(sep + 3);
  // RFC 6455 3: fragment identifiers are not allowed in WebSocket URIs.
  if (rest.find('#') != std::string_view::npos)
    throw std::invalid_argument("uri: a fragment (#) is not allowed");
  for (char c : rest) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f)
      throw std::invalid_argument(
          "uri: spaces, controls and non-ASCII bytes must be percent-encoded");
  }
  auto path_at = rest.find_first_of("/?");
  auto authority = rest.substr(0, path_at);
  auto a = parse_authority(authority, "uri");
  out.host = a.host;
  const std::uint16_t default_port = out.secure ? 443 : 80;
  out.port = a.port ? a.port : default_port;
  out.target = path_at == std::string_view::npos ? "/" : std::string(rest.substr(path_at));
  if (out.target.front() == '?') out.target.insert(out.target.begin(), '/');
  out.host_header = a.bracketed ? "[" + a.host + "]" : a.host;
  if (out.port != default_port) out.host_header += ":" + std::to_string(out.port);
  return out;
}

ProxyUri parse_proxy_uri(std::string_view uri) {
  auto sep = uri.find("://");
  if (sep == std::string_view::npos)
    throw std::invalid_argument("proxy: must be http://host:port or socks5://host:port");
  auto scheme = lower(uri.substr(0, sep));
  ProxyUri out;
  if (scheme == "http")
    out.kind = ProxyUri::Kind::http;
  else if (scheme == "socks5")
    out.kind = ProxyUri::Kind::socks5;
  else
    throw std::invalid_argument("proxy: scheme must be http or socks5");
  auto rest = uri.substr(sep + 3);
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find_first_of("/?#") != std::string_view::npos)
    throw std::invalid_argument("proxy: only scheme://host:port is allowed");
  auto a = parse_authority(rest, "proxy");
  out.host = a.host;
  out.port = a.port ? a.port : (out.kind == ProxyUri::Kind::http ? 8080 : 1080);
  return out;
}

bool is_ip_address(std::string_view host) noexcept {
  std::error_code ec;
  auto a = asio::ip::make_address(std::string(host), ec);
  (void)a;
  return !ec;
}

}  // namespace duplex::transport
