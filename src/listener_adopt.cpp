// WebSocketListener::adopt: a connection accepted (and, for wss, TLS-handshaken)
// by the application's own server, with the upgrade request it read, handed
// to the listener's handshake at the point where the request has just been
// parsed: the same validation, hooks, negotiation and answers follow.
#include <duplex/websocket_listener.hpp>

#include <openssl/ssl.h>

#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include <asio/post.hpp>

#include "listener/listener_impl.hpp"

namespace duplex {

namespace {

// The connection's descriptor moves out of the application's socket (typed
// on any executor) into one on the loop's io_context; checks come first, so
// a refused call leaves the application's socket as it was.
void check_adoptable(const asio::ip::tcp::socket& socket, const char* what) {
  if (!socket.is_open()) throw std::invalid_argument(std::string(what) + ": must be open");
  std::error_code ec;
  (void)socket.remote_endpoint(ec);
  if (ec) throw std::invalid_argument(std::string(what) + ": must be a connected TCP socket");
}

transport::TcpSocket move_to_loop(asio::ip::tcp::socket& socket, detail::ListenerLoop& loop) {
  const auto protocol = socket.local_endpoint().protocol();
  const auto fd = socket.release();
  transport::TcpSocket moved(loop.ctx);
  std::error_code ec;
  moved.assign(protocol, fd, ec);
  if (ec) {
    ::close(fd);
    throw std::system_error(ec, "adopt");
  }
  return moved;
}

}  // namespace

void WebSocketListener::adopt(asio::ip::tcp::socket socket, protocol::HttpRequest request,
                              std::string_view rest) {
  check_adoptable(socket, "adopt: socket");
  auto& loop = impl_->adoption_loop(asio::query(socket.get_executor(), asio::execution::context));
  transport::TcpSocket moved = move_to_loop(socket, loop);
  impl_->adopt_connection(loop, std::move(moved), nullptr, std::move(request), std::string(rest));
}

void WebSocketListener::adopt(asio::ssl::stream<asio::ip::tcp::socket> stream,
                              protocol::HttpRequest request, std::string_view rest) {
  check_adoptable(stream.next_layer(), "adopt: stream");
  SSL* ssl = stream.native_handle();
  if (ssl == nullptr || SSL_is_init_finished(ssl) != 1 || SSL_is_server(ssl) != 1)
    throw std::invalid_argument(
        "adopt: stream must have completed its TLS handshake in the server role");
  auto& loop = impl_->adoption_loop(
      asio::query(stream.next_layer().get_executor(), asio::execution::context));
  // The SSL object (keys, session, peer certificate) moves to a stream on
  // the loop: a second reference keeps it alive when `stream` frees its own;
  // the new stream gives it a fresh BIO pair (what `stream` had buffered
  // beyond the request is not carried: a client sends nothing before the
  // 101, RFC 6455 4.1).
  SSL_up_ref(ssl);
  std::unique_ptr<detail::TlsServerStream> tls;
  try {
    tls = std::make_unique<detail::TlsServerStream>(move_to_loop(stream.next_layer(), loop), ssl);
  } catch (...) {
    SSL_free(ssl);
    throw;
  }
  impl_->adopt_connection(loop, transport::TcpSocket(loop.ctx), std::move(tls), std::move(request),
                          std::string(rest));
}

namespace detail {

ListenerLoop& ListenerImpl::adoption_loop(const asio::execution_context& context) {
  std::lock_guard lock(mutex_);
  if (stopped_) throw std::logic_error("adopt: the listener was stopped");
  if (!started_) start_loops();
  for (auto& lp : loops_)
    if (static_cast<const asio::execution_context*>(&lp->ctx) == &context) return *lp;
  return *loops_[next_loop_.fetch_add(1) % loops_.size()];
}

void ListenerImpl::adopt_connection(ListenerLoop& loop, transport::TcpSocket socket,
                                    std::unique_ptr<TlsServerStream> tls,
                                    protocol::HttpRequest request, std::string rest) {
  const Admission admission = admit();
  if (admission == Admission::refuse) return;  // the sockets close here
  const bool busy = admission == Admission::busy;
  asio::post(loop.ctx, [this, &loop, s = std::move(socket), t = std::move(tls),
                        r = std::move(request), rest = std::move(rest), busy]() mutable {
    if (stopping_) {
      std::error_code ignored;
      if (t) t->next_layer().close(ignored);
      s.close(ignored);
      return release_connection(busy);
    }
    start_adopted_handshake(*this, loop, std::move(s), std::move(t), std::move(r), std::move(rest),
                            busy);
  });
}

}  // namespace detail

}  // namespace duplex
