// The server's side of one connection from accept to the 101 answer: TLS
// handshake, reading the request (bounded in size and time), validation, hooks,
// and the answer: 101 and hand-over, or an HTTP error and a clean close.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <asio/buffer.hpp>
#include <asio/write.hpp>

#include <duplex/error.hpp>
#include <duplex/protocol/deflate.hpp>
#include <duplex/protocol/handshake.hpp>

#include "detail/event_loop.hpp"
#include "detail/syscalls.hpp"
#include "listener/listener_impl.hpp"
#include "listener/server_tls.hpp"
#include "transport/unix_socket.hpp"

namespace duplex::detail {

namespace {

using asio::ip::tcp;

// Room for the first read: a typical browser request fits; grown by doubling.
constexpr std::size_t initial_buffer_size = 1024;
// After an error answer the client may still be sending (a header block over
// the limit): read and drop this much at most before closing, so the close does
// not turn into a reset that destroys the answer in the client's receive queue.
constexpr std::size_t linger_discard_limit = 64 * 1024;

class ServerHandshake final : public HandshakeEntry,
                              private PollClient,
                              public std::enable_shared_from_this<ServerHandshake> {
public:
  /// On an Asio socket: TLS, a Unix socket, or adopted.
  ServerHandshake(ListenerImpl& listener, ListenerLoop& loop, transport::TcpSocket socket,
                  bool busy)
      : ServerHandshake(listener, loop, busy) {
    tcp_.emplace(std::move(socket));
  }
  /// On a plain TCP descriptor (non-blocking, owned), on the loop's poller.
  ServerHandshake(ListenerImpl& listener, ListenerLoop& loop, int fd, bool busy)
      : ServerHandshake(listener, loop, busy) {
    fd_ = fd;
    raw_ = true;
  }

private:
  ServerHandshake(ListenerImpl& listener, ListenerLoop& loop, bool busy)
      : listener_(listener),
        loop_(loop),
        conn_(loop.take_connection()),
        request_(conn_->request),
        busy_(busy) {
    // The request is parsed straight into request_ (a spare one's storage:
    // its header list and strings).
    listener_.live_handshakes.fetch_add(1);
    loop_.counters.handshakes_pending.fetch_add(1, std::memory_order_relaxed);
  }

public:
  ServerHandshake(const ServerHandshake&) = delete;
  ServerHandshake& operator=(const ServerHandshake&) = delete;

  ~ServerHandshake() override {
    // Destroyed with its loop (shutdown): the descriptor is still ours.
    if (fd_ >= 0) sys_close(fd_);
    loop_.handshakes.remove(*this);
    if (!handed_over_) listener_.release_connection(busy_);
    listener_.live_handshakes.fetch_sub(1);
    if (!answered_) LoopCounters::bump(loop_.counters.handshake_errors);
    loop_.counters.handshakes_pending.fetch_sub(1, std::memory_order_relaxed);
  }

  void start() {
    const auto& options = listener_.options();
    deadline = ListenerClock::now() + options.handshake_timeout;
    loop_.handshakes.push_back(*this);
    if (raw_) {
      if (options.no_delay) {
        const int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      }
      return read();
    }
    std::error_code ignored;
    if (options.no_delay) tcp_->set_option(tcp::no_delay(true), ignored);
    if (const auto& ctx = listener_.tls_context()) {
      tls_ = std::make_unique<TlsServerStream>(std::move(*tcp_), *ctx);
      tcp_.reset();
      tls_->async_handshake(asio::ssl::stream_base::server,
                            [self = shared_from_this()](std::error_code ec) {
                              if (ec) return self->close();
                              self->read();
                            });
      return;
    }
    read();
  }

  /// A connection the application accepted and read the request of
  /// (WebSocketListener::adopt): `tls` when it ran the TLS handshake itself,
  /// `rest` the bytes it read past the header block. Goes on as if the
  /// request had just been parsed here.
  void start_adopted(std::unique_ptr<TlsServerStream> tls, protocol::HttpRequest request,
                     std::string rest) {
    const auto& options = listener_.options();
    deadline = ListenerClock::now() + options.handshake_timeout;
    loop_.handshakes.push_back(*this);
    adopted_ = true;
    tls_ = std::move(tls);
    std::error_code ignored;
    if (options.no_delay) socket().set_option(tcp::no_delay(true), ignored);
    buf_ = std::move(rest);
    used_ = buf_.size();
    static_cast<protocol::HttpRequest&>(request_) = std::move(request);
    process(buf_, 0);
  }

  /// The client's endpoint as accepted (family 0: unknown).
  void set_peer(const transport::RawEndpoint& peer) noexcept { remote_ = peer; }

  void expire() noexcept override {
    loop_.handshakes.remove(*this);
    close();
  }

  bool stop() noexcept override {
    // A client whose request is on its way gets its 101 and then a 1001 close
    // frame (hand_over); one that sent nothing yet has nothing to answer.
    if (answering_ || used_ > 0 || tls_ || adopted_) return false;
    expire();
    return true;
  }

private:
  /// Not on a raw descriptor.
  transport::TcpSocket& socket() noexcept { return tls_ ? tls_->next_layer() : *tcp_; }
  int native_fd() noexcept { return raw_ ? fd_ : socket().native_handle(); }

  template <class F>
  void visit(F&& f) {
    if (tls_)
      f(*tls_);
    else
      f(*tcp_);
  }

  void close() noexcept {
    if (raw_) {
      if (fd_ < 0) return;
      if (LoopPoller::registered(*this))
        loop_poller(loop_.ctx).remove_and_close(fd_, *this);
      else
        sys_close(fd_);
      fd_ = -1;
      raw_wait_ = RawWait::none;
      return;
    }
    std::error_code ignored;
    socket().close(ignored);
  }

  // --- a raw descriptor's waits, on the loop's poller ---------------------------------

  /// What a raw handshake waits for: the poller's next event of that kind
  /// continues it (each wait follows an EAGAIN, so an edge comes).
  enum class RawWait : std::uint8_t { none, request, body, write, discard };

  void wait_raw(RawWait w) {
    raw_wait_ = w;
    if (LoopPoller::registered(*this)) return;
    // Registered once, kept while waiting or not, until the answer or close.
    if (loop_poller(loop_.ctx).add(fd_, *this, shared_from_this())) close();
  }

  void on_poll(std::uint32_t events) override {
    constexpr std::uint32_t in = EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR;
    constexpr std::uint32_t out = EPOLLOUT | EPOLLHUP | EPOLLERR;
    const RawWait w = raw_wait_;
    if (w == RawWait::none || (events & (w == RawWait::write ? out : in)) == 0) return;
    raw_wait_ = RawWait::none;
    switch (w) {
      case RawWait::request: return read();
      case RawWait::body: return read_body();
      case RawWait::write: return write();
      case RawWait::discard: return discard();
      case RawWait::none: return;
    }
  }

  /// recv on a raw descriptor: > 0 bytes, 0 end, -1 would block, -2 error.
  ssize_t recv_raw(char* to, std::size_t room) noexcept {
    ssize_t n = 0;
    do {
      n = sys_recv(fd_, to, room, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n >= 0) return n;
    return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : -2;
  }

  void read() {
    const std::size_t cap = listener_.options().max_header_size + initial_buffer_size;
    if (used_ == buf_.size() && (used_ > 0 || tls_)) {
      if (buf_.size() >= cap) return respond_error(431, "request header too large\n");
      buf_.resize(std::min(cap, std::max(initial_buffer_size, buf_.size() * 2)));
    }
    if (tls_) {
      tls_->async_read_some(
          asio::buffer(buf_.data() + used_, buf_.size() - used_),
          [self = shared_from_this()](std::error_code ec, std::size_t n) { self->on_read(ec, n); });
      return;
    }
    const int fd = native_fd();
    // Plain TCP: the request is usually there already (the client sent it
    // right after connecting), so read it at once; only an empty socket waits
    // for readability, through the loop's reactor.
    // The first read goes to the loop's read buffer: a request that came
    // whole is parsed there and needs no buffer of its own.
    const bool first = buf_.empty();
    char* const to =
        first ? reinterpret_cast<char*>(thread_read_buffer().data()) : buf_.data() + used_;
    const std::size_t room = first ? std::min(cap, thread_read_buffer_size) : buf_.size() - used_;
    ssize_t n = 0;
    do {
      n = sys_recv(fd, to, room, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n > 0 && first) {
      used_ = static_cast<std::size_t>(n);
      return parse(std::string_view(to, used_));
    }
    if (n > 0) return on_read({}, static_cast<std::size_t>(n));
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return close();
    if (raw_) return wait_raw(RawWait::request);
    tcp_->async_wait(transport::TcpSocket::wait_read,
                     [self = shared_from_this()](std::error_code ec) {
                       // The client left, or the sweep closed the socket.
                       if (ec) return self->close();
                       self->read();
                     });
  }

  void on_read(std::error_code ec, std::size_t n) {
    // The client left, or the sweep closed the socket.
    if (ec) return close();
    used_ += n;
    parse(std::string_view(buf_.data(), used_));
  }

  // `data`: everything read so far, in buf_ or (first read) the loop's buffer.
  void parse(std::string_view data) {
    std::error_code parse_ec;
    const std::size_t consumed =
        protocol::parse_http_request(data, request_, parse_ec, listener_.options().max_header_size);
    if (parse_ec) {
      const int status = protocol::status_for(parse_ec);
      return respond_error(
          status, status == 431 ? "request header too large\n" : "malformed HTTP request\n");
    }
    if (consumed == 0) {
      if (data.data() != buf_.data()) {
        // Incomplete in the loop's buffer: kept here until the rest comes
        // (not over the bound: the parser refused that already).
        const std::size_t cap = listener_.options().max_header_size + initial_buffer_size;
        buf_.resize(std::min(cap, std::max(initial_buffer_size, data.size() * 2)));
        std::memcpy(buf_.data(), data.data(), data.size());
      }
      return read();
    }
    process(data, consumed);
  }

  // `data`: the bytes read, the request's block (`consumed` bytes) first.
  void process(std::string_view data, std::size_t consumed) {
    protocol::HttpRequest& request = request_;
    // Not a WebSocket upgrade, and the application serves plain HTTP: its
    // handler answers (health checks, a page, metrics on the same port).
    http_answer_ = listener_.has_http_handler() &&
                   !protocol::header_has_token(request.headers, "Upgrade", "websocket");
    // Over the limit at accept: a slot may have come back since.
    if (busy_ && !listener_.stopping() && listener_.claim_connection(loop_)) busy_ = false;
    if (busy_) return respond_error(503, "server busy, try again later\n", {{"Retry-After", "1"}});

    if (http_answer_) {
      if (data.data() != buf_.data()) buf_.assign(data);
      return start_http(std::move(request), consumed);
    }

    protocol::ClientRequestView checked;
    if (const auto ec = protocol::check_client_request(request, checked)) {
      // A plain HTTP request (no Upgrade at all) is told what this resource
      // speaks: RFC 9110 15.5.22, 426 with the Upgrade header it needs.
      if ((ec == error::bad_upgrade || ec == error::bad_connection) &&
          !protocol::find_header(request.headers, "Upgrade"))
        return respond_error(426, "this resource speaks WebSocket only\n",
                             {{"Upgrade", "websocket"}});
      return respond_error(protocol::status_for(ec), "not a valid WebSocket request\n");
    }

    // Valid: what the hooks see besides the headers, each copied once into
    // request_'s (a spare request's) storage.
    request_.host.assign(checked.host);
    request_.origin.assign(checked.origin);
    if (checked.has_protocols)
      protocol::header_list(request.headers, "Sec-WebSocket-Protocol", request_.protocols);
    else
      request_.protocols.clear();
    if (checked.has_extensions)
      protocol::join_header(request.headers, "Sec-WebSocket-Extensions", request_.extensions);
    else
      request_.extensions.clear();
    // RFC 6455 4.1: base64 of 16 bytes (check_client_request checked it).
    std::array<char, 24> key{};
    checked.key.copy(key.data(), key.size());
    read_endpoints(request_.remote_address, request_.local_address);
    request_.secure = tls_ != nullptr;
    if (tls_)
      request_.client_certificate_subject =
          transport::client_certificate_subject(tls_->native_handle());
    else
      request_.client_certificate_subject.clear();
    // What the client sent after its request (its first frames): kept now,
    // while `data` (maybe the loop's buffer) is still untouched.
    leftover_.assign(data.data() + consumed, data.size() - consumed);

    // Browsers send Origin; a server that only serves its own pages refuses
    // the others (RFC 6455 10.2), answering 403 (4.2.2 item 4).
    const auto& allowed = listener_.options().allowed_origins;
    if (!allowed.empty() && !request_.origin.empty() &&
        std::none_of(allowed.begin(), allowed.end(),
                     [&](const std::string& o) { return protocol::iequals(o, request_.origin); }))
      return respond_error(403, "origin not allowed\n");

    WebSocketHandshakeContext context(request_);
    listener_.run_hook(context);
    if (const int status = context.rejected_status())
      return respond_error(status, context.rejected_body(), context.rejected_headers());

    conn_->protocol.assign(context.selected_protocol());
    socket_type_ = context.socket_type();
    negotiate_extensions();
    // Built in the loop thread's string; copied only if it does not leave at once.
    thread_local std::string answer;
    protocol::write_server_response(answer, std::string_view(key.data(), key.size()),
                                    conn_->protocol, extensions_, context.response_headers());
    std::string().swap(buf_);
    answering_ = true;
    answered(101);
    std::size_t sent = 0;
    if (!tls_ && !send_now(answer, sent)) return close();
    if (sent == answer.size()) return on_written();
    response_.assign(answer, sent);
    write();
  }

  // A plain HTTP request: read its body (Content-Length only), then answer
  // with the handler's response and close.
  void start_http(protocol::HttpRequest request, std::size_t consumed) {
    std::size_t length = 0;
    if (const auto ec = protocol::request_body_length(
            request, listener_.options().max_http_body_size, length)) {
      const int status = protocol::status_for(ec);
      return respond_error(status, status == 413   ? "request body too large\n"
                                   : status == 411 ? "a Content-Length is required\n"
                                   : status == 501 ? "transfer coding not implemented\n"
                                                   : "malformed HTTP request\n");
    }
    http_ = std::make_unique<HttpServerRequest>();
    http_->method = std::move(request.method);
    http_->target = std::move(request.target);
    http_->version_minor = request.version_minor;
    http_->headers = std::move(request.headers);
    body_begin_ = consumed;
    body_end_ = consumed + length;  // no overflow: consumed <= max_header_size
    if (used_ >= body_end_) return answer_http();
    buf_.resize(body_end_);
    // RFC 9110 10.1.1: a client that waits for 100 (Continue) sends its body
    // after it; answering at once saves it the wait. Only HTTP/1.1 clients
    // understand a 1xx (RFC 9110 15.2).
    if (http_->version_minor >= 1 &&
        protocol::header_has_token(http_->headers, "Expect", "100-continue")) {
      response_ = "HTTP/1.1 100 Continue\r\n\r\n";
      continue_sent_ = true;
      return write();
    }
    read_body();
  }

  void read_body() {
    if (raw_) {
      while (used_ < body_end_) {
        const ssize_t n = recv_raw(buf_.data() + used_, body_end_ - used_);
        if (n == -1) return wait_raw(RawWait::body);
        if (n <= 0) return close();  // the client left
        used_ += static_cast<std::size_t>(n);
      }
      return answer_http();
    }
    auto buffer = asio::buffer(buf_.data() + used_, body_end_ - used_);
    visit([&](auto& stream) {
      stream.async_read_some(buffer,
                             [self = shared_from_this()](std::error_code ec, std::size_t n) {
                               // The client left, or the sweep closed the socket.
                               if (ec) return self->close();
                               self->used_ += n;
                               if (self->used_ < self->body_end_) return self->read_body();
                               self->answer_http();
                             });
    });
  }

  void answer_http() {
    http_->body.assign(buf_.data() + body_begin_, body_end_ - body_begin_);
    std::string().swap(buf_);
    read_endpoints(http_->remote_address, http_->local_address);
    http_->secure = tls_ != nullptr;
    if (tls_)
      http_->client_certificate_subject =
          transport::client_certificate_subject(tls_->native_handle());
    int status = 500;
    response_ = listener_.run_http_handler(*http_, status);
    http_.reset();
    answered(status);
    // One answer per connection: it ends like an error answer (FIN, then
    // what the client still sends is read and dropped).
    error_answer_ = true;
    write();
  }

  // RFC 7692 5: accept the client's first acceptable permessage-deflate offer.
  // A header that breaks the RFC 6455 9.1 grammar is declined like any offer
  // we cannot take: the connection goes on uncompressed.
  void negotiate_extensions() {
    const auto& config = listener_.options().deflate;
    if (!config.enable || request_.extensions.empty()) return;
    if (protocol::negotiate_deflate(request_.extensions, config, deflate_, extensions_)) {
      deflate_.reset();
      extensions_.clear();
    }
  }

  // Counted when decided: an answer whose write fails counts here, not as an error.
  void answered(int status) noexcept {
    answered_ = true;
    loop_.counters.answered(http_answer_, status);
  }

  void respond_error(int status, std::string_view body, const protocol::HttpHeaders& extra = {}) {
    answered(status);
    error_answer_ = true;
    response_ = protocol::build_error_response(status, body, extra);
    write();
  }

  // Plain TCP: an answer fits the empty send buffer of a new connection, so
  // it normally leaves in this one call; the rest, if any, through the loop's
  // reactor. False when the connection failed.
  bool send_now(std::string_view data, std::size_t& sent) noexcept {
    ssize_t n = 0;
    do {
      n = sys_send(native_fd(), data.data(), data.size(), MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
    sent = n > 0 ? static_cast<std::size_t>(n) : 0;
    return true;
  }

  void write() {
    std::size_t sent = 0;
    if (raw_) {
      // response_ from written_ on; the rest waits for room.
      if (!send_now(std::string_view(response_).substr(written_), sent)) return close();
      written_ += sent;
      if (written_ < response_.size()) return wait_raw(RawWait::write);
      written_ = 0;
      return on_written();
    }
    if (!tls_) {
      if (!send_now(response_, sent)) return close();
      if (sent == response_.size()) return on_written();
    }
    visit([&](auto& stream) {
      asio::async_write(stream, asio::buffer(response_.data() + sent, response_.size() - sent),
                        [self = shared_from_this()](std::error_code ec, std::size_t) {
                          if (ec) return self->close();
                          self->on_written();
                        });
    });
  }

  void on_written() {
    if (continue_sent_) {
      continue_sent_ = false;
      std::string().swap(response_);
      return read_body();
    }
    if (error_answer_) return linger();
    hand_over();
  }

  // After an error answer: a graceful end (TLS close_notify, or FIN then
  // reading what the client still sends), bounded by the same deadline.
  void linger() {
    std::string().swap(response_);
    if (tls_) {
      tls_->async_shutdown([self = shared_from_this()](std::error_code) { self->close(); });
      return;
    }
    buf_.resize(initial_buffer_size);
    if (raw_) {
      ::shutdown(fd_, SHUT_WR);
      return discard();
    }
    std::error_code ignored;
    tcp_->shutdown(asio::socket_base::shutdown_send, ignored);
    discard();
  }

  void discard() {
    if (raw_) {
      for (;;) {
        const ssize_t n = recv_raw(buf_.data(), buf_.size());
        if (n == -1) return wait_raw(RawWait::discard);
        if (n <= 0) return close();
        discarded_ += static_cast<std::size_t>(n);
        if (discarded_ > linger_discard_limit) return close();
      }
    }
    tcp_->async_read_some(asio::buffer(buf_),
                          [self = shared_from_this()](std::error_code ec, std::size_t n) {
                            self->discarded_ += n;
                            if (ec || self->discarded_ > linger_discard_limit) return self->close();
                            self->discard();
                          });
  }

  // The request's endpoints, each read once (the peer's by the accept, if
  // it gave an IP one): kept raw for the session too (a Unix socket's paths
  // are read as strings; the session then reads its own).
  void read_endpoints(HostEndpoint& remote, HostEndpoint& local) {
    const int fd = native_fd();
    endpoints_read_ = (remote_.family != 0 || transport::raw_endpoint(fd, false, remote_)) &&
                      transport::raw_endpoint(fd, true, local_);
    if (endpoints_read_ || raw_) {
      // (A raw descriptor is a TCP one: its endpoints are unread only when
      // the connection already failed; {"", 0} then.)
      transport::to_host_endpoint(remote_, remote);
      transport::to_host_endpoint(local_, local);
    } else {
      remote = transport::host_endpoint(socket(), false);
      local = transport::host_endpoint(socket(), true);
    }
  }

  void hand_over() {
    if (listener_.stopping()) {
      // The client has its 101 and the listener is going away: end the
      // WebSocket properly (RFC 6455 7.4.1: 1001) instead of dropping it.
      static constexpr char going_away[] = {'\x88', '\x02', '\x03', '\xE9'};
      error_answer_ = true;
      response_.assign(going_away, sizeof going_away);
      return write();
    }
    loop_.handshakes.remove(*this);
    AcceptedStream accepted(listener_, loop_);
    if (raw_) {
      // The session registers the descriptor again, as its own client.
      if (LoopPoller::registered(*this) && loop_poller(loop_.ctx).remove(fd_, *this))
        return close();
      accepted.fd = std::exchange(fd_, -1);
    } else if (tls_) {
      accepted.tls = std::move(tls_);
      accepted.tls_context = listener_.tls_context();
    } else {
      accepted.tcp.emplace(std::move(*tcp_));
    }
    accepted.leftover = std::move(leftover_);
    accepted.deflate = deflate_;
    accepted.extensions = std::move(extensions_);
    if (endpoints_read_) {
      accepted.local = local_;
      accepted.remote = remote_;
      accepted.endpoints_read = true;
    }
    // The connection's slot moves to `accepted` (then to the session).
    handed_over_ = true;
    std::string().swap(response_);
    listener_.hand_over(accepted, std::move(conn_), socket_type_);
  }

  ListenerImpl& listener_;
  ListenerLoop& loop_;
  int fd_ = -1;       ///< raw_: the descriptor (-1 once closed or handed over)
  bool raw_ = false;  ///< plain TCP on the loop's poller, never in Asio's reactor
  RawWait raw_wait_ = RawWait::none;
  std::size_t written_ = 0;                  ///< raw_: how much of response_ left
  std::optional<transport::TcpSocket> tcp_;  ///< else: the Asio socket (under tls_ once TLS)
  std::unique_ptr<TlsServerStream> tls_;
  std::string buf_;
  std::size_t used_ = 0;
  std::size_t discarded_ = 0;
  /// The connection as it will be handed over (a spare one of the loop's).
  std::shared_ptr<AcceptedConnection> conn_;
  WebSocketRequest& request_;                       ///< conn_'s; the request is parsed into it
  std::optional<protocol::DeflateParams> deflate_;  ///< agreed permessage-deflate
  std::string extensions_;                          ///< the 101's extensions answer
  transport::RawEndpoint local_, remote_;           ///< read by read_endpoints()
  bool endpoints_read_ = false;                     ///< both IP endpoints are in local_, remote_
  ListenerSocketType socket_type_ = ListenerSocketType::message_websocket;
  std::string response_;
  std::string leftover_;
  std::unique_ptr<HttpServerRequest> http_;  ///< a plain HTTP request being read
  std::size_t body_begin_ = 0;               ///< its body within buf_
  std::size_t body_end_ = 0;
  bool continue_sent_ = false;  ///< the 100 (Continue) is being written
  bool http_answer_ = false;    ///< the request went the plain HTTP way
  bool answered_ = false;       ///< an answer was decided (else: a handshake error)
  bool busy_;
  bool error_answer_ = false;
  bool answering_ = false;  ///< the 101 is being written
  bool handed_over_ = false;
  bool adopted_ = false;  ///< accepted and read by the application
};

}  // namespace

void HandshakeList::push_back(HandshakeEntry& e) noexcept {
  if (e.linked_) return;
  e.prev_ = tail_;
  e.next_ = nullptr;
  if (tail_)
    tail_->next_ = &e;
  else
    head_ = &e;
  tail_ = &e;
  e.linked_ = true;
  ++size_;
}

void HandshakeList::remove(HandshakeEntry& e) noexcept {
  if (!e.linked_) return;
  if (e.prev_)
    e.prev_->next_ = e.next_;
  else
    head_ = e.next_;
  if (e.next_)
    e.next_->prev_ = e.prev_;
  else
    tail_ = e.prev_;
  e.prev_ = e.next_ = nullptr;
  e.linked_ = false;
  --size_;
}

void start_server_handshake(ListenerImpl& listener, ListenerLoop& loop, transport::TcpSocket socket,
                            const transport::RawEndpoint& peer, bool busy) {
  auto h = std::make_shared<ServerHandshake>(listener, loop, std::move(socket), busy);
  h->set_peer(peer);
  h->start();
}

void start_server_handshake(ListenerImpl& listener, ListenerLoop& loop, int fd,
                            const transport::RawEndpoint& peer, bool busy) {
  auto h = std::make_shared<ServerHandshake>(listener, loop, fd, busy);
  h->set_peer(peer);
  h->start();
}

void start_adopted_handshake(ListenerImpl& listener, ListenerLoop& loop,
                             transport::TcpSocket socket, std::unique_ptr<TlsServerStream> tls,
                             protocol::HttpRequest request, std::string rest, bool busy) {
  std::make_shared<ServerHandshake>(listener, loop, std::move(socket), busy)
      ->start_adopted(std::move(tls), std::move(request), std::move(rest));
}

}  // namespace duplex::detail
