// The client session's connect steps: resolve and TCP connect, the proxy
// tunnel, TLS and its certificate validation, the opening handshake, and a
// failed attempt. On success become_open() (src/session.cpp) hands the
// connection to the data path. See detail/session.hpp.
#include <algorithm>
#include <cstring>

#include <asio/post.hpp>
#include <asio/write.hpp>

#include "detail/connect_state.hpp"
#include "detail/reconnect.hpp"
#include "transport/tls.hpp"
#include "transport/unix_socket.hpp"

namespace duplex::detail {

void Session::do_connect(std::string uri, Op op) {
  auto state = std::make_unique<ConnectState>();
  state->config = controls_.config();
  init_reconnect(uri, state->config);
  auto settings = std::make_shared<LoopSettings>(state->config.loop);
  settings->share(protocol::Role::client);
  cfg_ = std::move(settings);
  if (events_.detached()) return complete(op, make_error_code(error::operation_aborted));
  phase_ = Phase::connecting;
  connecting_ = std::move(state);
  connecting_->uri = transport::parse_websocket_uri(uri);
  // A Unix socket (ws+unix) is local: never through a proxy.
  if (!connecting_->config.proxy.empty() && connecting_->uri.unix_path.empty())
    connecting_->proxy = transport::parse_proxy_uri(connecting_->config.proxy);
  connecting_->op = std::move(op);
  set_deadline(connecting_->deadline, Clock::now() + cfg_->connect_timeout);
  make_connection(protocol::Role::client, std::nullopt);
  const auto& target = connecting_->proxy ? connecting_->proxy->host : connecting_->uri.host;
  const auto port = connecting_->proxy ? connecting_->proxy->port : connecting_->uri.port;
  connecting_->connector = std::make_shared<transport::Connector>(ex_);
  std::weak_ptr<Session> weak = weak_from_this();
  connecting_->connector->start(target, port, [weak](std::error_code ec, transport::TcpSocket s) {
    if (auto self = weak.lock()) self->on_tcp_connected(ec, std::move(s));
  });
}

void Session::on_tcp_connected(std::error_code ec, transport::TcpSocket socket) {
  if (!connecting_) return;
  if (ec) return connect_failed(ec);
  std::error_code ignored;
  socket.set_option(asio::ip::tcp::no_delay(cfg_->no_delay), ignored);
  {
    auto lock = controls_.lock();
    controls_.set_endpoints_locked(socket);
  }
  stream_ = std::make_unique<transport::Stream>(std::move(socket));
  if (connecting_->proxy) {
    std::weak_ptr<Session> weak = weak_from_this();
    transport::async_proxy_handshake(stream_->socket(), *connecting_->proxy, connecting_->uri.host,
                                     connecting_->uri.port, connecting_->config.proxy_credential,
                                     [weak](std::error_code e) {
                                       if (auto self = weak.lock()) self->on_tunnel_ready(e);
                                     });
    return;
  }
  on_tunnel_ready({});
}

void Session::on_tunnel_ready(std::error_code ec) {
  if (!connecting_) return;
  if (ec) return connect_failed(ec);
  if (connecting_->uri.secure) return start_tls();
  send_request();
}

void Session::start_tls() {
  std::error_code ec;
  auto ctx = transport::make_client_context(connecting_->config.trusted_ca_file,
                                            connecting_->config.client_certificate, ec);
  if (ec) return connect_failed(ec);
  auto tls = std::make_unique<transport::TlsStream>(std::move(stream_->socket()), *ctx);
  transport::prepare_client_tls(*tls, connecting_->uri.host, &connecting_->tls_errors);
  stream_ = std::make_unique<transport::Stream>(std::move(tls), std::move(ctx));
  std::weak_ptr<Session> weak = weak_from_this();
  stream_->tls().async_handshake(asio::ssl::stream_base::client, [weak](std::error_code e) {
    if (auto self = weak.lock()) self->on_tls_handshake(e);
  });
}

void Session::on_tls_handshake(std::error_code ec) {
  if (!connecting_) return;
  SSL* ssl = stream_->tls().native_handle();
  // The error list dies with the connect state; later verifications (none in
  // TLS 1.3, renegotiation is off by default in 1.2) must not reach it.
  transport::forget_tls_errors(stream_->tls());
  if (ec) {
    // A verification failure that aborted the handshake still names its cause.
    if (!connecting_->tls_errors.empty())
      return connect_failed(std::error_code(connecting_->tls_errors.front(), x509_category()));
    return connect_failed(ec);
  }
  auto v = std::make_shared<ValidationState>();
  if (X509* leaf = SSL_get1_peer_certificate(ssl)) {
    v->certificate = transport::decode_certificate(leaf);
    X509_free(leaf);
  }
  if (STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl)) {
    for (int i = 1; i < sk_X509_num(chain); ++i)
      v->intermediates.push_back(transport::decode_certificate(sk_X509_value(chain, i)));
  }
  int fatal = 0;
  for (int e : connecting_->tls_errors) {
    auto kind = transport::classify_x509_error(e);
    v->errors.push_back(kind);
    const bool ignorable = std::find(connecting_->config.ignorable_errors.begin(),
                                     connecting_->config.ignorable_errors.end(),
                                     kind) != connecting_->config.ignorable_errors.end();
    if (!ignorable && fatal == 0) fatal = e;
  }
  v->severity = v->errors.empty() ? SocketSslErrorSeverity::none
                : fatal           ? SocketSslErrorSeverity::fatal
                                  : SocketSslErrorSeverity::ignorable;
  {
    auto lock = controls_.lock();
    controls_.info_locked().server_tls = v;
  }
  if (fatal) return connect_failed(std::error_code(fatal, x509_category()));
  bool asked = false;
  {
    EventMutex::DispatchGuard lock(events_.mutex());
    if (events_.has(Event::validation) && !events_.detached()) {
      asked = true;
      connecting_->validation = v;
      std::weak_ptr<Session> weak = weak_from_this();
      auto ex = ex_;
      v->deferrals = 1;  // held by the handler call itself
      v->on_all_complete = [weak, ex] {
        asio::post(ex, [weak] {
          if (auto self = weak.lock()) self->after_validation();
        });
      };
      WebSocketServerCustomValidationRequestedEventArgs args(v);
      EventLoopScope scope;
      events_.each<SessionEvents::ValidationFn>(Event::validation,
                                                [&](const SessionEvents::ValidationFn& f) {
                                                  try {
                                                    f(events_.owner(), args);
                                                  } catch (...) {
                                                    // A throwing validator rejects: failing closed
                                                    // is the secure default.
                                                    v->rejected = true;
                                                  }
                                                });
    }
  }
  if (!asked) return send_request();
  Deferral(v).complete();
}

void Session::after_validation() {
  if (!connecting_) return;
  if (connecting_->validation && connecting_->validation->rejected)
    return connect_failed(make_error_code(error::certificate_rejected));
  send_request();
}

void Session::send_request() {
  protocol::ClientHandshakeOptions o;
  o.host = connecting_->uri.host_header;
  o.target = connecting_->uri.target;
  o.protocols = connecting_->config.protocols;
  o.headers = connecting_->config.request_headers;
  // RFC 7692 5: the permessage-deflate offer (empty when compression is off).
  o.extensions = protocol::make_deflate_offer(connecting_->config.deflate);
  if (connecting_->config.server_credential) {
    // RFC 7617 2: Basic credentials are base64("user:password").
    o.headers.push_back(
        {"Authorization",
         "Basic " + transport::base64(connecting_->config.server_credential->user_name + ":" +
                                      connecting_->config.server_credential->password)});
  }
  connecting_->key = protocol::generate_key();
  connecting_->request = protocol::build_client_request(o, connecting_->key);
  std::weak_ptr<Session> weak = weak_from_this();
  stream_->visit([&](auto& s) {
    asio::async_write(s, asio::buffer(connecting_->request),
                      [weak](std::error_code ec, std::size_t) {
                        auto self = weak.lock();
                        if (!self || !self->connecting_) return;
                        if (ec) return self->connect_failed(ec);
                        self->read_response();
                      });
  });
}

void Session::read_response() {
  constexpr std::size_t chunk = 4096;
  if (connecting_->response.size() < connecting_->response_size + chunk)
    connecting_->response.resize(connecting_->response_size + chunk);
  std::weak_ptr<Session> weak = weak_from_this();
  stream_->visit([&](auto& s) {
    s.async_read_some(
        asio::buffer(connecting_->response.data() + connecting_->response_size, chunk),
        [weak](std::error_code ec, std::size_t n) {
          if (auto self = weak.lock()) self->on_response_bytes(ec, n);
        });
  });
}

void Session::on_response_bytes(std::error_code ec, std::size_t n) {
  if (!connecting_) return;
  if (ec) {
    // A server that closes before answering did not speak WebSocket.
    if (ec == asio::error::eof) ec = make_error_code(error::bad_http_message);
    return connect_failed(ec);
  }
  connecting_->response_size += n;
  protocol::HttpResponse response;
  std::error_code pec;
  auto used = protocol::parse_http_response(
      std::string_view(connecting_->response.data(), connecting_->response_size), response, pec);
  if (pec) return connect_failed(pec);
  if (used == 0) return read_response();
  protocol::ClientHandshakeResult result;
  if (auto vec = protocol::validate_server_response(response, connecting_->key,
                                                    connecting_->config.protocols, result))
    return connect_failed(vec);
  // RFC 6455 4.1, RFC 7692 5: an extension or a parameter the client did not
  // offer fails the connection; permessage-deflate as offered turns it on.
  std::optional<protocol::DeflateParams> deflate;
  if (auto dec = protocol::accept_deflate_response(result.extensions, connecting_->config.deflate,
                                                   deflate))
    return connect_failed(dec);
  if (deflate) make_connection(protocol::Role::client, deflate);
  {
    auto lock = controls_.lock();
    if (!result.protocol.empty() || !result.extensions.empty() || deflate) {
      auto& rest = controls_.info_locked();
      rest.protocol = result.protocol;
      rest.extensions = result.extensions;
      rest.deflate = deflate;
    }
  }
  std::span<const std::byte> rest(
      reinterpret_cast<const std::byte*>(connecting_->response.data()) + used,
      connecting_->response_size - used);
  become_open(rest);
}

void Session::connect_failed(std::error_code ec) {
  if (connecting_ && connecting_->connector) connecting_->connector->cancel();
  close_transport();
  Op op = connecting_ ? std::move(connecting_->op) : Op{};
  connecting_.reset();  // its deadline with it
  loop_timers(ex_.context()).release(*this);
  phase_ = Phase::closed;
  closed_raised_ = true;  // a failed connect raises no closed event (as on Windows)
  complete(op, ec);
  // A close asked for while connecting: nothing is left to close (aborted
  // when the socket itself went away).
  const auto close_ec = ec == make_error_code(error::operation_aborted) ? ec : std::error_code{};
  if (pending_close_) {
    auto pc = std::move(pending_close_);
    complete(pc->op, close_ec);
  }
  auto closes = take_close_ops();
  for (auto& c : closes) complete(c, close_ec);
  if (reconnect_) reconnect_after_failed_attempt(ec);
}

}  // namespace duplex::detail
