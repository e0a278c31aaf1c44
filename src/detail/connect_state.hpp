// detail/connect_state.hpp: what a client session holds only while it
// connects (resolve and TCP connect, proxy tunnel, TLS handshake, opening
// handshake); made by Session::do_connect, dropped when the socket opens or
// the attempt fails. The steps are in src/session_connect.cpp.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "detail/session.hpp"
#include "transport/connect.hpp"
#include "transport/uri.hpp"

namespace duplex::detail {

struct Session::ConnectState {
  Op op;                 ///< the connect_async operation
  SessionConfig config;  ///< the controls as they were at connect
  transport::WebSocketUri uri;
  std::string request;  ///< the opening handshake
  std::string key;      ///< its Sec-WebSocket-Key
  std::vector<char> response;
  std::size_t response_size = 0;
  std::optional<transport::ProxyUri> proxy;
  std::shared_ptr<transport::Connector> connector;
  std::vector<int> tls_errors;
  std::shared_ptr<ValidationState> validation;
  Clock::time_point deadline = Clock::time_point::max();  ///< connect_timeout from the start
};

}  // namespace duplex::detail
