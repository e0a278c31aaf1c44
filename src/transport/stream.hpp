// transport/stream.hpp: the byte stream under one WebSocket connection: a TCP
// socket, or a TLS stream over one. Owned by the session; used only on the
// connection's event loop.
#pragma once

#include <memory>
#include <utility>

#include <asio/ip/tcp.hpp>

#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>
#include "transport/tcp.hpp"

namespace duplex::transport {

using TlsStream = asio::ssl::stream<TcpSocket>;

/// A TCP socket, optionally wrapped in TLS. Move-only.
class Stream {
public:
  /// A plain TCP stream.
  explicit Stream(TcpSocket socket) : tcp_(std::move(socket)) {}
  /// A TLS stream; `context` keeps the SSL_CTX alive as long as the stream.
  Stream(std::unique_ptr<TlsStream> tls, std::shared_ptr<asio::ssl::context> context)
      : tcp_(tls->get_executor()), tls_(std::move(tls)), context_(std::move(context)) {}

  Stream(Stream&&) noexcept = default;
  Stream& operator=(Stream&&) noexcept = default;

  [[nodiscard]] bool is_tls() const noexcept { return tls_ != nullptr; }
  /// The TCP socket (under TLS when is_tls()).
  TcpSocket& socket() noexcept { return tls_ ? tls_->next_layer() : tcp_; }
  TlsStream& tls() noexcept { return *tls_; }

  /// Calls f(stream) with the TLS stream or the TCP socket.
  template <class F>
  decltype(auto) visit(F&& f) {
    if (tls_) return f(*tls_);
    return f(tcp_);
  }

  /// Closes the TCP socket at once (no TLS close_notify); pending operations
  /// complete with operation_aborted.
  void close() noexcept {
    std::error_code ignored;
    socket().close(ignored);
  }

private:
  TcpSocket tcp_;
  std::unique_ptr<TlsStream> tls_;
  std::shared_ptr<asio::ssl::context> context_;
};

}  // namespace duplex::transport
