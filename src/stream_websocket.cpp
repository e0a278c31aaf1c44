// StreamWebSocket: the public type over a detail::Session (stream kind).
#include <duplex/stream_websocket.hpp>

#include "detail/server_factory.hpp"
#include "detail/session.hpp"

namespace duplex::detail {

StreamWebSocket make_stream_websocket(std::shared_ptr<Session> s) {
  return StreamWebSocket(std::move(s));
}

StreamWebSocket make_server_stream_websocket(asio::io_context::executor_type ex,
                                             transport::Stream stream,
                                             std::span<const std::byte> leftover,
                                             const ServerSessionOptions& options) {
  return make_stream_websocket(
      make_server_session(ex, Session::Kind::stream, std::move(stream), leftover, options));
}

}  // namespace duplex::detail
