// permessage-deflate on the public socket types: the control that enables it
// and the information that shows what was agreed (kept apart from
// websocket_control.cpp so that the extension's surface reads in one place).
#include <duplex/websocket_control.hpp>

#include "detail/session.hpp"

namespace duplex {

DeflateOptions WebSocketControl::deflate() const {
  return session_->read_config([](const detail::SessionConfig& c) { return c.deflate; });
}

void WebSocketControl::deflate(DeflateOptions options) {
  // Out-of-range windows or zlib levels fail here, at the call, not at connect.
  protocol::check_deflate_config(options);
  session_->configure([&](detail::SessionConfig& c) { c.deflate = options; });
}

std::optional<DeflateParameters> WebSocketInformation::deflate_parameters() const {
  return session_->info().deflate;
}

}  // namespace duplex
