// The session: one connection's life on its event loop. See detail/session.hpp.
#include "detail/session.hpp"
#include "detail/syscalls.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include <cerrno>

#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <asio/post.hpp>
#include <asio/write.hpp>

#include <duplex/protocol/close.hpp>
#include <duplex/protocol/utf8.hpp>

#include "detail/connect_state.hpp"
#include "detail/reconnect.hpp"
#include "transport/unix_socket.hpp"
#include "transport/uri.hpp"

namespace duplex::detail {

#define DUPLEX_HOT_INLINE DUPLEX_ALWAYS_INLINE inline

namespace {

// How long a failed connection waits for the peer to end TCP after our close
// frame (see maybe_finish_close).
constexpr std::chrono::milliseconds failure_drain_limit{1000};
constexpr auto never = Clock::time_point::max();
// Unread stream input above which the socket is not read (the peer is slowed
// by TCP flow control): bounds memory per StreamWebSocket.
constexpr std::size_t stream_input_limit = std::size_t{1} << 20;
// TLS records are at most 16 KiB of plaintext (RFC 8446 5.1).
constexpr std::size_t tls_read_size = 16 * 1024;

// The code reported in the closed event after we failed the connection.
std::uint16_t close_code_of(std::error_code ec) {
  if (ec.category() == error_category()) {
    auto e = static_cast<error>(ec.value());
    if (e >= error::reserved_bits && e <= error::bad_compressed_data) return close_code_for(e);
  }
  return protocol::close_code::abnormal;
}

// errno as the error Asio's socket calls report (compared with asio::error::*).
std::error_code last_socket_error() {
  return {errno, asio::error::get_system_category()};
}

bool would_block(int e) {
  return e == EAGAIN || e == EWOULDBLOCK;
}

}  // namespace

struct Session::RefQueue {
  /// A referenced frame, to be written before output byte `at` (of the bytes
  /// begin_write() hands out next). Marks are only added at the end of the
  /// output (`at` is its size then), and while a write is in flight only to
  /// an empty output: during a write the protocol may replace a pong still
  /// last in the output (RFC 6455 5.5.3), and a pong before a mark at its end
  /// would then move under it.
  struct Mark {
    std::size_t at;
    FrameRef frame;
  };
  std::vector<Mark> queued;   ///< marks into the output, not handed to a write yet
  std::vector<Mark> sending;  ///< the marks of the gathered write in flight
  std::vector<iovec> iov;     ///< that write: output pieces and frames, in order
  std::size_t iov_at = 0;     ///< its first iovec not fully sent
  std::size_t total = 0;      ///< its bytes
  std::size_t left = 0;       ///< its bytes not sent yet
};

Session::Session(asio::io_context::executor_type ex, Kind kind, protocol::Role role)
    : ex_(ex),
      kind_(kind),
      role_(role),
      config_(role == protocol::Role::client ? std::make_unique<SessionConfig>() : nullptr),
      input_(kind == Kind::stream ? std::make_unique<StreamInput>() : nullptr) {}

const std::shared_ptr<const LoopSettings>& Session::default_settings() {
  static const auto settings = std::make_shared<const LoopSettings>();
  return settings;
}

Session::~Session() {
  // Destroyed by its loop's shutdown while polled: the descriptor is ours.
  if (fd_ >= 0) sys_close(fd_);
}

// --- plumbing --------------------------------------------------------------------------

template <class F>
void Session::run_on_loop(F&& f) {
  if (ex_.running_in_this_thread()) {
    f();
  } else {
    asio::post(ex_, [self = shared_from_this(), f = std::forward<F>(f)]() mutable { f(); });
  }
}

Session::Op Session::make_op(CompletionHandler h, CancellationToken ct) {
  Op op;
  op.id = next_id_.fetch_add(1, std::memory_order_relaxed);
  if (!h) return op;
  std::weak_ptr<Session> weak = weak_from_this();
  const auto id = op.id;
  auto cancel = [weak, id] {
    if (auto s = weak.lock()) asio::post(s->ex_, [s, id] { s->cancel_op(id); });
  };
  auto slot = h.cancellation_slot();
  if (slot.is_connected()) slot.assign([cancel](asio::cancellation_type) { cancel(); });
  op.handler = std::move(h);
  if (ct.can_be_cancelled()) {
    op.token = ct;
    op.token_id = ct.register_callback(cancel);
  }
  return op;
}

void Session::complete(Op& op, std::error_code ec, std::size_t n) {
  if (op.token_id) op.token.unregister(op.token_id);
  op.token_id = 0;
  op.token = {};
  if (op.handler) op.handler.post(ec, n);
  op.id = 0;
}

void Session::cancel_op(std::uint64_t id) {
  const auto aborted = make_error_code(error::operation_aborted);
  if (reconnect_ && reconnect_cancel(id)) return;
  if (connecting_ && connecting_->op.id == id && connecting_->op) return connect_failed(aborted);
  if (input_ && input_->op.id == id && input_->op) {
    // Nothing of a read is on the wire: the socket stays usable.
    input_->deadline = never;
    input_->buffer = {};
    return complete(input_->op, aborted);
  }
  for (auto it = sends_.begin(); it != sends_.end(); ++it) {
    if (it->op.id != id) continue;
    if (it->offset == 0) {
      // Not a byte accepted: drop it, the socket stays usable.
      auto p = std::move(*it);
      sends_.erase(it);
      complete(p.op, aborted);
      return;
    }
    // Half of the data is on its way: the stream cannot be resumed.
    return fail(aborted);
  }
  if (cold_) {
    for (auto& op : cold_->close_ops) {
      if (op.id == id) return fail(aborted);
    }
  }
}

void Session::set_deadline(Clock::time_point& slot, Clock::time_point at) {
  slot = at;
  if (at != never) loop_timers(ex_.context()).schedule(*this, at);
}

void Session::check_configurable() const {
  if (role_ == protocol::Role::server)
    throw std::logic_error("control: a server-role socket takes its settings from the listener");
  if (connect_called_.load())
    throw std::logic_error("control: settings can change only before connect_async");
}

// --- cold state ------------------------------------------------------------------------------

Session::Cold& Session::cold() {
  if (!cold_) cold_ = std::make_unique<Cold>();
  return *cold_;
}

const std::string& Session::peer_reason() const noexcept {
  static const std::string none;
  return cold_ ? cold_->peer_reason : none;
}

std::vector<Session::Op> Session::take_close_ops() noexcept {
  std::vector<Op> ops;
  if (cold_) ops.swap(cold_->close_ops);
  return ops;
}

// --- information -----------------------------------------------------------------------------

Session::Info Session::info() const {
  std::lock_guard lock(config_mutex_);
  Info info = info_rest_ ? *info_rest_ : Info{};
  if (local_.family != 0) info.local = transport::to_host_endpoint(local_);
  if (remote_.family != 0) info.remote = transport::to_host_endpoint(remote_);
  return info;
}

Session::Info& Session::info_rest() {
  if (!info_rest_) info_rest_ = std::make_unique<Info>();
  return *info_rest_;
}

void Session::set_endpoints(transport::TcpSocket& socket) {
  // A Unix socket's endpoints are paths: formatted once, kept in info_rest_.
  if (!transport::raw_endpoint(socket.native_handle(), true, local_))
    info_rest().local = transport::host_endpoint(socket, true);
  if (!transport::raw_endpoint(socket.native_handle(), false, remote_))
    info_rest().remote = transport::host_endpoint(socket, false);
}

// --- events --------------------------------------------------------------------------------

EventToken Session::add_message_handler(MessageFn f) {
  return add_handler(Event::message, "message_received", std::move(f));
}
bool Session::has_handlers(Event event) const noexcept {
  for (auto* h = events_mutex_.head(other_list); h != nullptr; h = h->next)
    if (h->event == static_cast<std::uint8_t>(event) && !h->revoked) return true;
  return false;
}
EventToken Session::add_closed_handler(ClosedFn f) {
  return add_handler(Event::closed, "closed", std::move(f));
}
EventToken Session::add_closed_handler(MessageClosedFn f) {
  return add_handler(Event::message_closed, "closed", std::move(f));
}
EventToken Session::add_closed_handler(StreamClosedFn f) {
  return add_handler(Event::stream_closed, "closed", std::move(f));
}
EventToken Session::add_validation_handler(ValidationFn f) {
  return add_handler(Event::validation, "server_custom_validation_requested", std::move(f));
}
void Session::remove_handler(EventToken t) noexcept {
  // Marked, not destroyed: the handler may be the one running, or a list may
  // be being walked on this thread (no handler after it is skipped). The
  // outermost guard unlinks it.
  EventMutex::Guard lock(events_mutex_);
  for (std::size_t i = 0; i < EventMutex::list_count; ++i) {
    for (auto* h = events_mutex_.head(i); h != nullptr; h = h->next)
      if (h->id == t.value && !h->revoked) return events_mutex_.revoke(*h);
  }
}
void Session::set_owner(void* owner) noexcept {
  // owner_ is read only by the handlers, which run on the loop thread under
  // the event lock. On that thread none of them is running now (or this
  // thread holds the lock already): no lock to take. A socket handed out by a
  // listener is moved several times there, so this is the usual case.
  if (on_loop_thread()) {
    owner_ = owner;
    return;
  }
  EventMutex::Guard lock(events_mutex_);
  owner_ = owner;
}

void Session::detach() noexcept {
  {
    EventMutex::Guard lock(events_mutex_);
    detached_ = true;
    owner_ = nullptr;
    for (std::size_t i = 0; i < EventMutex::list_count; ++i) {
      for (auto* h = events_mutex_.head(i); h != nullptr; h = h->next)
        if (!h->revoked) events_mutex_.revoke(*h);
    }
  }
  try {
    run_on_loop([this] {
      if (reconnect_) reconnect_detach();
      const auto aborted = make_error_code(error::operation_aborted);
      if (connecting_) return connect_failed(aborted);
      if (phase() == Phase::open || phase() == Phase::closing) fail(aborted);
    });
  } catch (...) {
    // Posting can only fail when memory is exhausted; the loop's shutdown
    // then destroys the session with its operations.
  }
}

void Session::raise_closed(std::uint16_t code, const std::string& reason, std::error_code ec) {
  if (closed_raised_) return;
  closed_raised_ = true;
  EventMutex::DispatchGuard lock(events_mutex_);
  if (detached_) return;
  WebSocketClosedEventArgs args(code, reason, ec);
  EventLoopScope scope;
  // One walk for the three forms, so handlers run in the order they were added.
  for (auto* h = events_mutex_.head(other_list); h != nullptr && !detached_; h = h->next) {
    if (h->revoked) continue;
    switch (static_cast<Event>(h->event)) {
      case Event::closed: static_cast<const HandlerOf<ClosedFn>*>(h)->fn(owner_, args); break;
      case Event::message_closed:
        static_cast<const HandlerOf<MessageClosedFn>*>(h)->fn(
            *static_cast<MessageWebSocket*>(owner_), args);
        break;
      case Event::stream_closed:
        static_cast<const HandlerOf<StreamClosedFn>*>(h)->fn(*static_cast<StreamWebSocket*>(owner_),
                                                             args);
        break;
      default: break;
    }
  }
}

// --- operations: entry points ----------------------------------------------------------------

void Session::check_connect(std::string_view uri) {
  (void)transport::parse_websocket_uri(uri);
  if (role_ == protocol::Role::server)
    throw std::logic_error("connect_async: a server-role socket is already connected");
  {
    std::lock_guard lock(config_mutex_);
    if (!config_->proxy.empty()) (void)transport::parse_proxy_uri(config_->proxy);
  }
  if (connect_called_.exchange(true))
    throw std::logic_error("connect_async: already called; a socket connects once");
}

void Session::set_request_header(std::string_view name, std::string_view value) {
  if (!protocol::is_valid_header(name, value))
    throw std::invalid_argument(
        "set_request_header: name must be an HTTP token and value must not hold CR, LF or NUL");
  // RFC 6455 4.1: these headers belong to the handshake itself.
  for (std::string_view reserved :
       {"host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version",
        "sec-websocket-extensions", "sec-websocket-protocol", "sec-websocket-accept"}) {
    if (protocol::iequals(name, reserved))
      throw std::invalid_argument("set_request_header: '" + std::string(name) +
                                  "' is set by the opening handshake");
  }
  configure([&](SessionConfig& c) {
    c.request_headers.push_back({std::string(name), std::string(value)});
  });
}

void Session::connect(std::string uri, CancellationToken ct, CompletionHandler h) {
  run_on_loop([this, uri = std::move(uri), ct = std::move(ct), h = std::move(h)]() mutable {
    do_connect(std::move(uri), make_op(std::move(h), std::move(ct)));
  });
}

void Session::send(SendKind kind, SocketMessageType type, std::span<const std::byte> data,
                   bool copy, CancellationToken ct, CompletionHandler h, bool compress) {
  PendingSend p{Op{}, kind, type, !copy, {}, data, 0, {}};
  p.compress = compress;
  if (ex_.running_in_this_thread()) {
    p.op = make_op(std::move(h), std::move(ct));
    return do_send(std::move(p));
  }
  if (copy) {
    p.data.assign(data.begin(), data.end());
    p.view = p.data;
  }
  asio::post(ex_, [self = shared_from_this(), p = std::move(p), ct = std::move(ct),
                   h = std::move(h)]() mutable {
    if (!p.data.empty()) p.view = p.data;  // the vector moved: re-point the view
    p.op = self->make_op(std::move(h), std::move(ct));
    self->do_send(std::move(p));
  });
}

void Session::close(std::uint16_t code, std::string reason, CancellationToken ct,
                    CompletionHandler h) {
  run_on_loop(
      [this, code, reason = std::move(reason), ct = std::move(ct), h = std::move(h)]() mutable {
        do_close(code, std::move(reason), make_op(std::move(h), std::move(ct)));
      });
}

void Session::read(std::span<std::byte> buffer, CancellationToken ct, CompletionHandler h) {
  run_on_loop([this, buffer, ct = std::move(ct), h = std::move(h)]() mutable {
    do_read(buffer, make_op(std::move(h), std::move(ct)));
  });
}

// --- connect ---------------------------------------------------------------------------------

namespace {

protocol::ConnectionConfig make_connection_config(const LoopSettings& s, Session::Kind kind,
                                                  protocol::Role role) {
  protocol::ConnectionConfig cc;
  cc.role = role;
  const bool stream = kind == Session::Kind::stream;
  cc.max_message_size = stream ? protocol::ConnectionConfig::unlimited : s.max_message_size;
  cc.partial_messages = stream || s.receive_mode == MessageWebSocketReceiveMode::partial_message;
  // A stream hands out what arrived at once (read_async takes any amount).
  cc.partial_message_threshold = stream ? 1 : s.partial_message_threshold;
  return cc;
}

}  // namespace

void LoopSettings::share(protocol::Role role) {
  message_connection = make_connection_config(*this, Session::Kind::message, role);
}

protocol::ConnectionConfig Session::connection_config(protocol::Role role) const {
  return make_connection_config(*cfg_, kind_, role);
}

void Session::make_connection(protocol::Role role,
                              const std::optional<protocol::DeflateParams>& deflate) {
  if (!deflate) {
    // A stream's settings depend on nothing else (trivially destructible, so
    // usable until the process ends); a message socket's are its loop
    // settings' when share() derived them.
    static_assert(std::is_trivially_destructible_v<protocol::ConnectionConfig>);
    static const protocol::ConnectionConfig streams[2] = {
        make_connection_config({}, Kind::stream, protocol::Role::client),
        make_connection_config({}, Kind::stream, protocol::Role::server)};
    const protocol::ConnectionConfig* shared = nullptr;
    if (kind_ == Kind::stream)
      shared = &streams[role == protocol::Role::server ? 1 : 0];
    else if (cfg_->message_connection && cfg_->message_connection->role == role)
      shared = &*cfg_->message_connection;
    if (shared) {
      conn_.emplace(protocol::Connection::sharing(*shared));
      return;
    }
  }
  auto cc = connection_config(role);
  cc.deflate = deflate;
  conn_.emplace(std::move(cc));
}

void Session::become_open(std::span<const std::byte> leftover, bool post_reading) {
  if (stream_ ? !stream_->is_tls() : fd_ >= 0 && !LoopPoller::registered(*this)) {
    if (auto ec = to_poller()) return connect_failed(ec);
  }
  if (!leftover.empty()) cold().leftover.assign(leftover.begin(), leftover.end());
  Op op = connecting_ ? std::move(connecting_->op) : Op{};
  connecting_.reset();  // its deadline with it
  phase_ = Phase::open;
  const auto now = Clock::now();
  rate_window_start_ = now;
  awaiting_pong_ = false;
  if (cfg_->keep_alive_interval.count() > 0)
    set_deadline(ping_due_, now + cfg_->keep_alive_interval);
  if (cfg_->unsolicited_pong_interval.count() > 0)
    set_deadline(pong_due_, now + cfg_->unsolicited_pong_interval);
  complete(op, {});
  if (pending_close_) {
    // Asked for while connecting: the close frame is the first thing we send.
    auto pc = std::move(pending_close_);
    do_close(pc->code, std::move(pc->reason), std::move(pc->op));
  }
  // After the connect completion (posted first, same loop): bytes that came
  // with the handshake answer, then the read loop.
  if (post_reading) asio::post(ex_, [self = shared_from_this()] { self->after_open(); });
  if (reconnect_) reconnect_on_open();
}

void Session::after_open() {
  if (phase() == Phase::closed) return;
  if (cold_ && !cold_->leftover.empty()) {
    auto bytes = std::move(cold_->leftover);
    count_received(bytes.size());
    process(bytes);
    if (phase() == Phase::closed) return;
  }
  start_reading();
}

void Session::start_server(transport::Stream stream, std::span<const std::byte> leftover,
                           const ServerSessionOptions& o) {
  setup_server(&stream.socket(), o);
  std::error_code ignored;
  stream.socket().set_option(asio::ip::tcp::no_delay(cfg_->no_delay), ignored);
  stream_ = std::make_unique<transport::Stream>(std::move(stream));
  if (o.open_later)
    phase_ = Phase::connecting;
  else
    open_server(leftover);
}

void Session::start_server(int fd, std::span<const std::byte> leftover,
                           const ServerSessionOptions& o) {
  // TCP_NODELAY: set by the listener's handshake, from the same option.
  fd_ = fd;
  setup_server(nullptr, o);
  if (o.open_later)
    phase_ = Phase::connecting;
  else
    open_server(leftover);
}

void Session::setup_server(transport::TcpSocket* socket, const ServerSessionOptions& o) {
  connect_called_ = true;
  {
    // Read by the controls from any thread once the socket is handed out
    // (one lock for all of it).
    std::lock_guard lock(config_mutex_);
    cfg_ = o.settings ? o.settings : default_settings();
    if (o.local != nullptr && o.remote != nullptr) {
      local_ = *o.local;
      remote_ = *o.remote;
    } else if (socket != nullptr) {
      set_endpoints(*socket);
    } else {
      // A TCP descriptor (start_server(fd)) whose endpoints were not given.
      transport::raw_endpoint(fd_, true, local_);
      transport::raw_endpoint(fd_, false, remote_);
    }
    if (!o.protocol.empty() || !o.extensions.empty() || o.deflate) {
      auto& rest = info_rest();
      rest.protocol = o.protocol;
      rest.extensions = o.extensions;
      rest.deflate = o.deflate;
    }
  }
  make_connection(protocol::Role::server, o.deflate);
}

void Session::open_server(std::span<const std::byte> leftover) {
  phase_ = Phase::connecting;
  std::vector<std::byte> rest(leftover.begin(), leftover.end());
  asio::post(ex_, [self = shared_from_this(), rest = std::move(rest)]() mutable {
    self->open_server_now(rest, true);
  });
}

void Session::open_server_now(std::span<const std::byte> leftover, bool post_reading) {
  if (detached_) {
    // The socket was destroyed before its first read: drop the connection.
    close_transport();
    phase_ = Phase::closed;
    closed_raised_ = true;
    const auto aborted = make_error_code(error::operation_aborted);
    if (pending_close_) {
      auto pc = std::move(pending_close_);
      complete(pc->op, aborted);
    }
    auto closes = take_close_ops();
    for (auto& c : closes) complete(c, aborted);
    return;
  }
  phase_ = Phase::connecting;
  connecting_.reset();
  become_open(leftover, post_reading);
}

// --- data path ------------------------------------------------------------------------------

std::error_code Session::to_poller() {
  std::error_code ec;
  int fd = fd_;
  if (stream_) {
    auto& socket = stream_->socket();
    socket.non_blocking(true, ec);
    if (ec) return ec;
    fd = socket.release(ec);
    if (ec) return ec;
    stream_.reset();
  }
  ec = loop_poller(ex_.context()).add(fd, *this, shared_from_this());
  if (ec) {
    sys_close(fd);
    fd_ = -1;
    return ec;
  }
  fd_ = fd;
  return {};
}

void Session::close_transport() noexcept {
  if (fd_ >= 0) {
    loop_poller(ex_.context()).remove_and_close(fd_, *this);
    fd_ = -1;
    rd_wait_ = wr_wait_ = false;
  } else if (stream_) {
    stream_->close();
  }
}

void Session::shutdown_send() noexcept {
  if (fd_ >= 0) {
    ::shutdown(fd_, SHUT_WR);
  } else if (stream_) {
    std::error_code ignored;
    stream_->socket().shutdown(asio::socket_base::shutdown_send, ignored);
  }
}

void Session::on_poll(std::uint32_t events) {
  // The peer's FIN (or an error) is reported once, with whatever data came
  // before it: remembered, so a short read is not taken as "drained" then.
  if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) rd_hup_ = true;
  if (wr_wait_ && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0) continue_write();
  if (rd_wait_ && (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) != 0) {
    rd_wait_ = false;
    read_some();
  }
}

void Session::start_reading() {
  if (reading_ || read_paused_ || out_paused_ || phase() == Phase::closed) return;
  if (polled()) {
    reading_ = true;
    return read_some();
  }
  if (!stream_ || !stream_->is_tls()) return;
  reading_ = true;
  if (!tls_buffer_) tls_buffer_ = std::make_unique<std::byte[]>(tls_read_size);
  stream_->tls().async_read_some(
      asio::buffer(tls_buffer_.get(), tls_read_size),
      [self = shared_from_this()](std::error_code ec, std::size_t n) { self->on_read(ec, n); });
}

DUPLEX_HOT_INLINE void Session::read_some() {
  const auto buf = thread_read_buffer();
  ssize_t n = 0;
  do {
    n = sys_recv(fd_, buf.data(), buf.size());
  } while (n < 0 && errno == EINTR);
  if (n > 0) return on_read({}, static_cast<std::size_t>(n));
  if (n == 0) return on_read(asio::error::eof, 0);
  // Drained: the poller reports the next arrival (reading_ stays set).
  if (would_block(errno)) {
    rd_wait_ = true;
    return;
  }
  on_read(last_socket_error(), 0);
}

DUPLEX_HOT_INLINE void Session::on_read(std::error_code ec, std::size_t n) {
  reading_ = false;
  if (phase() == Phase::closed) return;
  if (ec) {
    if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
      // The peer ended TCP: clean if both close frames went, else a drop.
      if (conn_->close_received() && conn_->close_sent()) {
        close_transport();
        return finish(peer_code_, peer_reason(), failure_);
      }
      if (failure_) {
        close_transport();
        return finish(failure_close_code(), {}, failure_);
      }
      return fail(make_error_code(error::connection_reset));
    }
    if (conn_->close_received() && !failure_) {
      close_transport();
      return finish(peer_code_, peer_reason(), {});
    }
    return fail(ec);
  }
  count_received(n);
  std::span<std::byte> data =
      polled() ? thread_read_buffer().first(n) : std::span<std::byte>(tls_buffer_.get(), n);
  // Handlers may drop the last outside reference. A polled session is kept
  // by its registration, released only after the current handler: no copy.
  std::shared_ptr<Session> self;
  if (!polled()) self = shared_from_this();
  const bool filled = process(data);
  // Read again at once when more is likely waiting: a read filled the buffer,
  // or the peer's FIN came with this data (edge-triggered: no new event for it).
  const bool full = polled() && (n == thread_read_buffer_size || filled || rd_hup_);
  if (phase() == Phase::closed || reading_ || read_paused_) return;
  if (unsent() >= cfg_->outbound_buffer_size && !conn_->close_sent()) {
    // Backpressure: the peer is not reading what we send (our echoes, our
    // pongs). Stop reading until the output drains below its limit, so the
    // peer is slowed by TCP flow control instead of growing our memory.
    out_paused_ = true;
    return;
  }
  if (full) {
    // More is likely waiting: read again after other connections had a turn.
    reading_ = true;
    asio::post(ex_, [self = shared_from_this()] {
      self->reading_ = false;
      self->start_reading();
    });
    return;
  }
  if (!polled()) return start_reading();
  // The kernel buffer was drained by this read: the poller reports the next
  // arrival (edge-triggered, so bytes that came meanwhile are reported too).
  reading_ = true;
  rd_wait_ = true;
}

DUPLEX_HOT_INLINE bool Session::receive_read(std::span<std::byte> data) {
  if (polled() && data.data() == thread_read_buffer().data()) [[likely]] {
    const auto r = conn_->receive_holding(data, *this, thread_read_buffer_reserve);
    if (r.held != 0) [[unlikely]]
      return complete_held(data.size(), data.size() - r.held, r.frame_size);
    return false;
  }
  conn_->receive(data, *this);
  return false;
}

DUPLEX_HOT_INLINE bool Session::process(std::span<std::byte> data) {
  note_activity();
  in_process_ = true;
  bool filled = false;
  if (kind_ == Kind::message) {
    // One event lock for every message of this read, not one per message
    // (a change from another thread waits for the read's handlers).
    EventMutex::DispatchGuard lock(events_mutex_);
    EventLoopScope scope;
    dispatching_ = true;
    filled = receive_read(data);
    dispatching_ = false;
  } else {
    filled = receive_read(data);
  }
  in_process_ = false;
  publish_stats();
  if (phase() == Phase::closed) return filled;
  pump_sends();
  if (conn_->has_output()) flush();
  maybe_finish_close();
  return filled;
}

// A large message cut off at the end of the read is not copied into the
// connection: the rest is read right after it, in the same buffer (into its
// reserve), and the message is delivered whole as one view. Only while the rest
// comes at once: the buffer is the loop's, so the connection keeps what did not.
bool Session::complete_held(std::size_t end, std::size_t begin, std::size_t frame_size) {
  const std::span<std::byte> buf(thread_read_buffer().data(),
                                 thread_read_buffer_size + thread_read_buffer_reserve);
  bool filled = false;
  for (std::size_t reads = 0;; ++reads) {
    // Stop reading here when a handler closed or paused the session, or when
    // our output is over its limit (on_read applies the backpressure).
    if (reads == max_hold_reads || phase() == Phase::closed || read_paused_ || reading_ ||
        (unsent() >= cfg_->outbound_buffer_size && !conn_->close_sent()))
      break;
    if (begin + frame_size > buf.size()) {
      // The frame fits in the reserve (hold_max), but not from where it
      // starts: only after reads that went on into the reserve.
      std::memmove(buf.data(), buf.data() + begin, end - begin);
      end -= begin;
      begin = 0;
    }
    ssize_t n = 0;
    do {
      n = sys_recv(fd_, buf.data() + end, buf.size() - end);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      // Drained: the poller reports the next arrival. The peer's FIN or an
      // error: the next read reports it.
      filled = false;
      if (n == 0 || !would_block(errno)) rd_hup_ = true;
      break;
    }
    count_received(static_cast<std::size_t>(n));
    filled = static_cast<std::size_t>(n) == buf.size() - end;
    end += static_cast<std::size_t>(n);
    const auto r =
        conn_->receive_holding(buf.subspan(begin, end - begin), *this, thread_read_buffer_reserve);
    if (r.held == 0) return filled;
    begin = end - r.held;
    frame_size = r.frame_size;
  }
  if (phase() != Phase::closed) conn_->receive(buf.subspan(begin, end - begin), *this);
  return filled;
}

// The per-message send path (send_now -> send_one -> queue) is inlined into
// its callers: three calls' prologues were a fifth of its cost.
DUPLEX_HOT_INLINE std::error_code Session::send_one(SendKind kind, SocketMessageType type,
                                                    std::span<const std::byte> data,
                                                    bool compress) {
  // A large frame while nothing is being written goes from the caller's buffer
  // to the socket (zero copy); only what the kernel does not take is copied.
  if (data.size() >= protocol::Connection::direct_min_payload && !writing_ && polled() &&
      wr_ref_queued_ == 0) [[unlikely]] {
    protocol::Connection::DirectFrame direct;
    auto ec = queue(kind, type, data, compress, &direct);
    if (!ec && direct.header_size != 0)
      write_direct(std::span<const std::byte>(direct.header.data(), direct.header_size), data);
    return ec;
  }
  return queue(kind, type, data, compress, nullptr);
}

DUPLEX_HOT_INLINE std::error_code Session::queue(SendKind kind, SocketMessageType type,
                                                 std::span<const std::byte> data, bool compress,
                                                 protocol::Connection::DirectFrame* direct) {
  switch (kind) {
    case SendKind::whole: return conn_->send_message(type, data, compress, direct);
    case SendKind::nonfinal: return conn_->send_fragment(type, data, false, compress, direct);
    case SendKind::final: return conn_->send_fragment(type, data, true, compress, direct);
  }
  return {};
}

void Session::write_direct(std::span<const std::byte> header, std::span<const std::byte> payload) {
  const auto buffered = conn_->begin_write();
  std::array<iovec, 3> parts{iovec{const_cast<std::byte*>(buffered.data()), buffered.size()},
                             iovec{const_cast<std::byte*>(header.data()), header.size()},
                             iovec{const_cast<std::byte*>(payload.data()), payload.size()}};
  msghdr msg{};
  msg.msg_iov = parts.data();
  msg.msg_iovlen = parts.size();
  std::error_code ec;
  ssize_t sent = 0;
  do {
    sent = sys_sendmsg(fd_, &msg);
  } while (sent < 0 && errno == EINTR);
  std::size_t n = 0;
  if (sent >= 0)
    n = static_cast<std::size_t>(sent);
  else if (!would_block(errno))
    ec = last_socket_error();
  if (!ec && n >= buffered.size()) {
    conn_->end_write();
    count_sent(n);
    n -= buffered.size();
    // What the kernel did not take is copied and leaves with the next write.
    const auto from_header = std::min(n, header.size());
    conn_->append_output(header.subspan(from_header));
    conn_->append_output(payload.subspan(n - from_header));
    // Not flush() here: called from pump_sends(), that would recurse once per
    // waiting send. The callers flush after pumping.
    if (conn_->has_output()) schedule_flush();
    return;
  }
  // The buffered bytes went out in part (or not at all): the frame queues
  // behind them, in the buffer that fills while they are written.
  conn_->append_output(header);
  conn_->append_output(payload);
  if (ec) {
    writing_ = true;
    return on_written(ec, 0);
  }
  write_rest(buffered, n);
}

std::error_code Session::send_state_error() const {
  const auto ph = phase();
  if (ph == Phase::idle || ph == Phase::connecting) return make_error_code(error::not_connected);
  if (ph == Phase::closed || (conn_ && conn_->close_sent()))
    return failure_ ? failure_ : make_error_code(error::closed);
  return {};
}

DUPLEX_HOT_INLINE std::optional<std::error_code> Session::send_now(SendKind kind,
                                                                   SocketMessageType type,
                                                                   std::span<const std::byte> data,
                                                                   bool compress) {
  if (phase() != Phase::open || conn_->close_sent()) [[unlikely]] {
    if (reconnect_waiting()) return reconnect_send_now(kind);
    if (auto ec = send_state_error()) return ec;
  }
  if (!sends_.empty() || unsent() >= cfg_->outbound_buffer_size) return std::nullopt;
  // The connection copies (and masks) the payload into its buffer.
  auto ec = send_one(kind, type, data, compress);
  if (!ec) schedule_flush();
  return ec;
}

Session::PrebuiltResult Session::send_prebuilt(std::span<const std::byte> frame,
                                               SharedFrame* shared,
                                               std::vector<std::shared_ptr<Session>>* flush_list) {
  if (phase() != Phase::open || conn_->close_sent()) return PrebuiltResult::closed;
  // Waiting sends mean the output is already over its limit.
  if (!sends_.empty() || unsent() >= cfg_->outbound_buffer_size) return PrebuiltResult::full;
  // RFC 6455 5.4: no other data frame may go between the pieces of a message.
  if (call_in_message_.load(std::memory_order_relaxed)) return PrebuiltResult::busy;
  // A large frame is referenced, not copied, where the write can gather it
  // (plain TCP's sendmsg; TLS copies). During a write only into an empty
  // output (see RefQueue::Mark).
  if (shared != nullptr && polled() && (!writing_ || conn_->buffered_amount() == 0))
    queue_shared(*shared);
  else
    conn_->append_output(frame);
  conn_->count_sent_message(frame.size());
  if (flush_list == nullptr) {
    schedule_flush();
  } else if (!prebuilt_pending_) {
    prebuilt_pending_ = true;
    flush_list->push_back(shared_from_this());
  }
  return PrebuiltResult::queued;
}

// Out of line: the copying path above stays small (16 B frames).
[[gnu::noinline]] void Session::queue_shared(SharedFrame& frame) {
  if (!wr_refs_) [[unlikely]] {
    // Room for a typical batch at once, rather than growing through 1, 2, 4.
    wr_refs_ = std::make_unique<RefQueue>();
    wr_refs_->queued.reserve(16);
    wr_refs_->sending.reserve(16);
    wr_refs_->iov.reserve(32);
  }
  wr_refs_->queued.push_back({conn_->buffered_amount(), FrameRef::share(frame)});
  wr_ref_queued_ += frame.bytes().size();
}

void Session::flush_prebuilt() {
  if (!prebuilt_pending_) return;
  prebuilt_pending_ = false;
  if (phase() == Phase::closed) return;
  flush();
  if (phase() == Phase::closed) return;
  publish_stats();
  maybe_finish_close();
}

void Session::close_on_loop(std::uint16_t code, std::string reason) {
  do_close(code, std::move(reason), Op{});
}

void Session::do_send(PendingSend p) {
  if (reconnect_ && reconnect_take_send(p)) return;
  if (!p.stream_write) {
    if (auto ec = send_now(p.kind, p.type, p.view, p.compress)) return complete(p.op, *ec);
  } else {
    if (auto ec = send_state_error()) return complete(p.op, ec);
    if (p.view.empty()) return complete(p.op, {}, 0);
  }
  if (!p.stream_write && p.data.empty()) {
    p.data.assign(p.view.begin(), p.view.end());
    p.view = p.data;
  }
  p.deadline = Clock::now() + cfg_->send_timeout;
  const auto d = p.deadline;
  sends_.push_back(std::move(p));
  loop_timers(ex_.context()).schedule(*this, d);
  pump_sends();
}

void Session::pump_queued_sends() {
  bool queued = false;
  while (!sends_.empty() && unsent() < cfg_->outbound_buffer_size &&
         (phase() == Phase::open || phase() == Phase::closing)) {
    auto& p = sends_.front();
    std::error_code ec;
    if (p.stream_write) {
      const auto chunk = std::min(p.view.size() - p.offset, cfg_->outbound_buffer_size);
      ec = conn_->send_message(SocketMessageType::binary, p.view.subspan(p.offset, chunk));
      if (!ec) {
        p.offset += chunk;
        queued = true;
        if (p.offset < p.view.size()) continue;
      }
      auto op = std::move(p.op);
      const auto n = p.offset;
      sends_.pop_front();
      complete(op, ec, n);
      continue;
    }
    ec = send_one(p.kind, p.type, p.view, p.compress);
    queued = queued || !ec;
    auto op = std::move(p.op);
    sends_.pop_front();
    complete(op, ec);
  }
  if (queued) schedule_flush();
}

void Session::post_flush() {
  flush_scheduled_ = true;
  // Cork: everything queued during this turn of the loop leaves in one write.
  asio::post(ex_, [self = shared_from_this()] {
    self->flush_scheduled_ = false;
    self->flush();
    // A write done at once may have sent the close frame.
    if (self->phase() == Phase::closed) return;
    self->publish_stats();
    self->maybe_finish_close();
  });
}

void Session::flush() {
  if (writing_ || !has_transport() || !conn_ || phase() == Phase::closed) return;
  std::span<const std::byte> bytes;
  std::size_t done = 0;
  // Referenced frames wait (polled only): one gathered write first.
  if (wr_ref_queued_ != 0) [[unlikely]]
    return flush_gathered();
  while (conn_->has_output()) {
    // A send released by pump_sends() below may have started a write itself.
    if (writing_) return;
    bytes = conn_->begin_write();
    done = 0;
    if (!polled()) break;
    // Plain TCP (non-blocking): write at once. While the kernel takes it all
    // there is no operation object and no completion to run; the rest (or
    // all of it, when the socket is full) waits for the poller below.
    ssize_t sent = 0;
    do {
      sent = sys_send(fd_, bytes.data(), bytes.size());
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) {
      if (would_block(errno)) break;
      writing_ = true;
      return on_written(last_socket_error(), 0);
    }
    done = static_cast<std::size_t>(sent);
    if (done < bytes.size()) break;
    conn_->end_write();
    count_sent(done);
    pump_sends();  // room again for sends that waited
  }
  if (bytes.size() == done) return maybe_resume_reading();  // all written (or nothing)
  write_rest(bytes, done);
}

void Session::flush_gathered() {
  std::error_code ec;
  if (!start_gather(conn_->begin_write(), ec)) {
    writing_ = true;
    if (ec) return on_written(ec, 0);
    set_deadline(write_deadline_, Clock::now() + cfg_->send_timeout);
    return;  // the poller reports room: continue_write()
  }
  const auto n = wr_refs_->total;
  end_gather();
  conn_->end_write();
  count_sent(n);
  if (!sends_.empty()) pump_sends();  // room again for sends that waited
  // Then what they queued.
  if (conn_->has_output() || wr_ref_queued_ != 0) return flush();
  maybe_resume_reading();
}

bool Session::start_gather(std::span<const std::byte> bytes, std::error_code& ec) {
  auto& q = *wr_refs_;
  q.sending.swap(q.queued);  // `sending` is empty: no write is in flight
  q.iov.clear();
  q.iov_at = 0;
  // The output's bytes with each frame before the byte it marks.
  const auto piece = [&q](const std::byte* p, std::size_t n) {
    q.iov.push_back(iovec{const_cast<std::byte*>(p), n});
  };
  std::size_t at = 0;
  for (const auto& m : q.sending) {
    const auto to = std::min(m.at, bytes.size());
    if (to > at) piece(bytes.data() + at, to - at);
    at = to;
    const auto f = m.frame.get()->bytes();
    piece(f.data(), f.size());
  }
  if (at < bytes.size()) piece(bytes.data() + at, bytes.size() - at);
  q.total = bytes.size() + wr_ref_queued_;
  q.left = q.total;
  // Counted as in flight (unsent()) until the write completes.
  inflight_ = q.total;
  wr_ref_queued_ = 0;
  return gather_send(ec);
}

bool Session::gather_send(std::error_code& ec) {
  auto& q = *wr_refs_;
  // Linux takes at most IOV_MAX (1,024) pieces per call.
  constexpr std::size_t max_pieces = 1024;
  while (q.iov_at < q.iov.size()) {
    msghdr msg{};
    msg.msg_iov = q.iov.data() + q.iov_at;
    msg.msg_iovlen = std::min(q.iov.size() - q.iov_at, max_pieces);
    // The whole rest at once (the usual case), or IOV_MAX pieces of it.
    std::size_t asked = q.left;
    if (q.iov_at + msg.msg_iovlen < q.iov.size()) {
      asked = 0;
      for (std::size_t i = 0; i < msg.msg_iovlen; ++i) asked += msg.msg_iov[i].iov_len;
    }
    const ssize_t sent = sys_sendmsg(fd_, &msg);
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (would_block(errno)) {
        wr_wait_ = true;
        return false;
      }
      ec = last_socket_error();
      return false;
    }
    auto n = static_cast<std::size_t>(sent);
    q.left -= n;
    if (q.left == 0) {
      q.iov_at = q.iov.size();
      return true;
    }
    // Resume inside the piece the kernel stopped in (a frame or the output).
    while (n > 0 && n >= q.iov[q.iov_at].iov_len) n -= q.iov[q.iov_at++].iov_len;
    if (n > 0) {
      auto& v = q.iov[q.iov_at];
      v.iov_base = static_cast<std::byte*>(v.iov_base) + n;
      v.iov_len -= n;
    }
    // A short write means the socket is full: the poller reports room
    // (edge-triggered: the kernel marked it full when it refused the rest).
    if (static_cast<std::size_t>(sent) < asked) {
      wr_wait_ = true;
      return false;
    }
  }
  return true;
}

void Session::end_gather() noexcept {
  auto& q = *wr_refs_;
  q.sending.clear();  // releases the frames
  q.iov.clear();
  q.iov_at = 0;
  q.total = q.left = 0;
  inflight_ = 0;
}

void Session::release_refs() noexcept {
  if (!wr_refs_) return;
  end_gather();
  wr_refs_->queued.clear();
  wr_ref_queued_ = 0;
}

void Session::resume_reading_when_drained() {
  if (!out_paused_ || resume_posted_ || unsent() >= cfg_->outbound_buffer_size) return;
  // Posted, not called: a read here could recurse through process() and
  // flush() once per read while the kernel keeps taking our writes.
  resume_posted_ = true;
  asio::post(ex_, [self = shared_from_this()] {
    self->resume_posted_ = false;
    if (!self->out_paused_ || self->unsent() >= self->cfg_->outbound_buffer_size) return;
    self->out_paused_ = false;
    self->start_reading();
  });
}

void Session::write_rest(std::span<const std::byte> bytes, std::size_t done) {
  inflight_ = bytes.size();
  writing_ = true;
  set_deadline(write_deadline_, Clock::now() + cfg_->send_timeout);
  if (polled()) {
    // The poller reports room (edge-triggered: the kernel marked the socket
    // full when it refused the rest).
    wr_rest_ = bytes;
    wr_done_ = done;
    wr_wait_ = true;
    return;
  }
  auto self = shared_from_this();
  const auto rest = bytes.subspan(done);
  stream_->visit([&](auto& s) {
    asio::async_write(
        s, asio::buffer(rest.data(), rest.size()),
        [self, done](std::error_code ec, std::size_t n) { self->on_written(ec, done + n); });
  });
}

void Session::continue_write() {
  wr_wait_ = false;
  if (wr_refs_ && !wr_refs_->sending.empty()) {
    std::error_code ec;
    if (gather_send(ec)) return on_written({}, wr_refs_->total);
    if (ec) return on_written(ec, 0);
    return;  // still full: wr_wait_ is set again
  }
  while (wr_done_ < wr_rest_.size()) {
    const auto rest = wr_rest_.subspan(wr_done_);
    const ssize_t sent = sys_send(fd_, rest.data(), rest.size());
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (would_block(errno)) {
        wr_wait_ = true;
        return;
      }
      wr_rest_ = {};
      return on_written(last_socket_error(), 0);
    }
    wr_done_ += static_cast<std::size_t>(sent);
  }
  const auto n = wr_rest_.size();
  wr_rest_ = {};
  on_written({}, n);
}

void Session::on_written(std::error_code ec, std::size_t n) {
  writing_ = false;
  inflight_ = 0;
  write_deadline_ = never;
  if (wr_refs_ && !wr_refs_->sending.empty()) end_gather();
  if (phase() == Phase::closed) return;
  conn_->end_write();
  if (ec) {
    // The peer's close frame arrived: it may drop TCP before our echo lands.
    if (conn_->close_received() && !failure_) {
      close_transport();
      return finish(peer_code_, peer_reason(), {});
    }
    return fail(ec);
  }
  count_sent(n);
  publish_stats();
  pump_sends();
  if (conn_->has_output() || wr_ref_queued_ != 0)
    flush();
  else
    maybe_resume_reading();
  maybe_finish_close();
}

void Session::finish_closed_connection() {
  if (writing_ || conn_->has_output()) return;
  if (failure_) {
    // We failed the connection (RFC 6455 7.1.7) and our close frame is out.
    // Closing now, with the peer's bytes unread, would make the kernel send a
    // reset that can destroy that frame on its way: half-close instead and
    // discard what arrives until the peer ends TCP (bounded by the close
    // deadline), so the peer learns the close code.
    if (!socket_shutdown_) {
      socket_shutdown_ = true;
      shutdown_send();
      // A compliant peer answers within a round trip; one that does not is
      // not waited for long.
      const auto drain = std::min<Clock::duration>(cfg_->close_timeout, failure_drain_limit);
      const auto drain_deadline = Clock::now() + drain;
      if (close_deadline_ > drain_deadline) set_deadline(close_deadline_, drain_deadline);
      read_paused_ = false;
      out_paused_ = false;
      start_reading();
    }
    return;
  }
  if (role_ == protocol::Role::server) {
    // RFC 6455 7.1.1: the server closes the TCP connection first.
    close_transport();
    return finish(peer_code_, peer_reason(), {});
  }
  // Client: wait (bounded by the close deadline) for the server to end TCP.
  if (!socket_shutdown_) {
    socket_shutdown_ = true;
    if (polled()) shutdown_send();
    if (close_deadline_ == never) set_deadline(close_deadline_, Clock::now() + cfg_->close_timeout);
    read_paused_ = false;
    out_paused_ = false;
    start_reading();
  }
}

void Session::fail(std::error_code ec) {
  if (phase() == Phase::closed) return;
  if (!failure_) failure_ = ec;
  close_transport();
  finish(protocol::close_code::abnormal, {}, failure_);
}

void Session::fail_send_timeout() {
  const auto ec = make_error_code(error::timed_out);
  if (!failure_) failure_ = ec;
  // RFC 6455 7.4.1: 1008, the peer broke our policy: it did not read what we
  // sent for send_timeout.
  failure_code_ = protocol::close_code::policy_violation;
  while (!sends_.empty()) {
    auto op = std::move(sends_.front().op);
    const auto n = sends_.front().offset;
    sends_.pop_front();
    complete(op, ec, n);
  }
  (void)conn_->send_close(failure_code_, "send timeout");
  phase_ = Phase::closing;
  write_deadline_ = never;
  // The close frame waits behind the data already queued; the close timeout
  // bounds how long the peer gets to read its way to it.
  const auto by = Clock::now() + cfg_->close_timeout;
  if (close_deadline_ > by) set_deadline(close_deadline_, by);
  // Read again (discarding nothing): the peer's answer ends the connection.
  out_paused_ = false;
  read_paused_ = false;
  if (input_) {
    input_->data.clear();
    input_->pos = 0;
  }
  schedule_flush();
  start_reading();
}

std::uint16_t Session::failure_close_code() const noexcept {
  return failure_code_ != 0 ? failure_code_ : close_code_of(failure_);
}

void Session::finish(std::uint16_t code, std::string reason, std::error_code ec) {
  if (phase() == Phase::closed && closed_raised_) return;
  phase_ = Phase::closed;
  close_transport();
  release_refs();  // the frames it referenced go back to their loop
  write_deadline_ = close_deadline_ = ping_due_ = pong_due_ = never;
  awaiting_pong_ = false;
  if (input_) input_->deadline = never;
  // No deadline is left: a user's io_context need not wait for one (run()
  // returns once its last connection ended).
  loop_timers(ex_.context()).release(*this);
  publish_stats();
  auto self = shared_from_this();
  if (reconnect_ && reconnect_after_drop(ec)) return;
  const auto send_error = ec ? ec : make_error_code(error::closed);
  while (!sends_.empty()) {
    auto op = std::move(sends_.front().op);
    sends_.pop_front();
    complete(op, send_error);
  }
  if (input_) {
    input_->eof = true;
    if (input_->op) {
      input_->buffer = {};
      if (ec)
        complete(input_->op, ec);
      else
        complete(input_->op, {}, 0);
    }
  }
  auto closes = take_close_ops();
  for (auto& op : closes) complete(op, ec);
  if (connecting_ && connecting_->op)
    complete(connecting_->op, ec ? ec : make_error_code(error::closed));
  raise_closed(code, reason, ec);
}

// --- close -------------------------------------------------------------------------------------

void Session::do_close(std::uint16_t code, std::string reason, Op op) {
  if (reconnect_ && reconnect_take_close(op)) return;
  switch (phase()) {
    case Phase::idle: return complete(op, {});
    case Phase::connecting:
      // Sent as soon as the session opens (become_open), in both roles; a
      // second request completes with the first.
      if (pending_close_) {
        cold().close_ops.push_back(std::move(op));
        return;
      }
      pending_close_ =
          std::make_unique<PendingClose>(PendingClose{code, std::move(reason), std::move(op)});
      return;
    case Phase::closed: return complete(op, failure_);
    default: break;
  }
  if (!conn_->close_sent()) {
    // A send that waits for room would break the close frame's order: refuse it.
    while (!sends_.empty()) {
      auto& p = sends_.front();
      if (p.offset != 0) break;
      auto pop = std::move(p.op);
      sends_.pop_front();
      complete(pop, make_error_code(error::closed));
    }
    conn_->send_close(code, reason);
  }
  phase_ = Phase::closing;
  if (close_deadline_ == never) set_deadline(close_deadline_, Clock::now() + cfg_->close_timeout);
  cold().close_ops.push_back(std::move(op));
  if (input_ && !input_->op) {
    // A stream closed with input unread: that input is dropped, and reading
    // goes on (backpressure had stopped it) to find the peer's close frame.
    std::vector<std::byte>().swap(input_->data);
    input_->pos = 0;
    read_paused_ = false;
  }
  // Our close frame is queued: the output can only shrink now, and the
  // peer's answer must be read.
  out_paused_ = false;
  schedule_flush();
  maybe_finish_close();
  start_reading();
}

// --- stream input -------------------------------------------------------------------------------

void Session::do_read(std::span<std::byte> buffer, Op op) {
  if (kind_ != Kind::stream) return complete(op, make_error_code(error::not_connected));
  if (input_->op) return complete(op, std::make_error_code(std::errc::operation_in_progress));
  const auto ph = phase();
  if (ph == Phase::idle || ph == Phase::connecting)
    return complete(op, make_error_code(error::not_connected));
  if (input_->pos < input_->data.size()) {
    const auto n = std::min(buffer.size(), input_->data.size() - input_->pos);
    std::memcpy(buffer.data(), input_->data.data() + input_->pos, n);
    input_->pos += n;
    if (input_->pos == input_->data.size()) {
      input_->data.clear();
      input_->pos = 0;
    } else if (input_->pos > input_->data.size() / 2) {
      input_->data.erase(input_->data.begin(),
                         input_->data.begin() + static_cast<std::ptrdiff_t>(input_->pos));
      input_->pos = 0;
    }
    complete(op, {}, n);
    if (read_paused_ && input_->data.size() - input_->pos < stream_input_limit) {
      read_paused_ = false;
      start_reading();
    }
    return;
  }
  if (input_->eof || ph == Phase::closed) return complete(op, failure_, 0);
  if (buffer.empty()) return complete(op, {}, 0);
  input_->op = std::move(op);
  input_->buffer = buffer;
  set_deadline(input_->deadline, Clock::now() + cfg_->receive_timeout);
}

// --- connection events
// ------------------------------------------------------------------------------

DUPLEX_HOT_INLINE BandwidthStatistics Session::loop_counts() const noexcept {
  const auto& s = conn_->stats();
  BandwidthStatistics b;
  b.bytes_sent = stats_.bytes_sent.load(std::memory_order_relaxed);
  b.bytes_received = stats_.bytes_received.load(std::memory_order_relaxed);
  b.messages_sent = s.messages_sent;
  b.messages_received = s.messages_received;
  b.frames_sent = s.frames_sent;
  b.frames_received = s.frames_received;
  return b;
}

DUPLEX_HOT_INLINE void Session::publish_received() {
  const auto& s = conn_->stats();
  stats_.messages_received.store(s.messages_received, std::memory_order_relaxed);
  stats_.frames_received.store(s.frames_received, std::memory_order_relaxed);
}

DUPLEX_HOT_INLINE void Session::publish_counts() {
  if (!conn_) return;
  const auto& s = conn_->stats();
  stats_.messages_sent.store(s.messages_sent, std::memory_order_relaxed);
  stats_.messages_received.store(s.messages_received, std::memory_order_relaxed);
  stats_.frames_sent.store(s.frames_sent, std::memory_order_relaxed);
  stats_.frames_received.store(s.frames_received, std::memory_order_relaxed);
}

void Session::on_message(SocketMessageType type, std::span<const std::byte> data, bool complete_) {
  // A handler may have closed or destroyed the socket during this read.
  if (phase() == Phase::closed) return;
  if (kind_ == Kind::stream) {
    auto rest = data;
    if (input_->op && input_->pos == input_->data.size() && !rest.empty()) {
      const auto n = std::min(rest.size(), input_->buffer.size());
      std::memcpy(input_->buffer.data(), rest.data(), n);
      rest = rest.subspan(n);
      input_->buffer = {};
      input_->deadline = never;
      complete(input_->op, {}, n);
    }
    // After our close frame nobody reads the stream any more: drop the rest.
    if (!rest.empty() && !conn_->close_sent()) {
      input_->data.insert(input_->data.end(), rest.begin(), rest.end());
      if (input_->data.size() - input_->pos >= stream_input_limit) read_paused_ = true;
    }
    return;
  }
  // Received counters first: another thread the handler signals sees this
  // message counted (the rest is published once per read; a handler reading
  // the statistics gets the loop's own counters).
  publish_received();
  const auto raise = [&] {
    if (detached_) return;
    MessageWebSocketMessageReceivedEventArgs args(type, data, complete_);
    for (auto* h = events_mutex_.head(message_list); h != nullptr && !detached_; h = h->next)
      if (!h->revoked)
        static_cast<const HandlerOf<MessageFn>*>(h)->fn(*static_cast<MessageWebSocket*>(owner_),
                                                        args);
  };
  if (dispatching_) return raise();  // process() holds the event lock
  EventMutex::DispatchGuard lock(events_mutex_);
  EventLoopScope scope;
  raise();
}

void Session::on_ping(std::span<const std::byte>) {}

void Session::on_pong(std::span<const std::byte>) {
  if (!awaiting_pong_) return;
  const auto now = Clock::now();
  const auto sent_at = ping_due_ - cfg_->keep_alive_timeout;
  {
    std::lock_guard lock(config_mutex_);
    info_rest().rtt = std::chrono::duration_cast<std::chrono::microseconds>(now - sent_at);
  }
  awaiting_pong_ = false;
  ping_due_ = never;
  if (cfg_->keep_alive_interval.count() > 0)
    set_deadline(ping_due_, now + cfg_->keep_alive_interval);
}

void Session::on_close(std::uint16_t code, std::string_view reason) {
  peer_code_ = code;
  // The cold block only for a reason (most closes have none).
  if (!reason.empty())
    cold().peer_reason.assign(reason);
  else if (cold_)
    cold_->peer_reason.clear();
  phase_ = Phase::closing;
  if (input_) {
    input_->eof = true;
    if (input_->op && input_->pos == input_->data.size()) {
      input_->buffer = {};
      input_->deadline = never;
      complete(input_->op, {}, 0);
    }
  }
  if (close_deadline_ == never) set_deadline(close_deadline_, Clock::now() + cfg_->close_timeout);
}

void Session::on_error(std::error_code ec) {
  if (!failure_) failure_ = ec;
  phase_ = Phase::closing;
  if (close_deadline_ == never) set_deadline(close_deadline_, Clock::now() + cfg_->close_timeout);
}

// --- deadlines
// ------------------------------------------------------------------------------------------

void Session::on_deadline(Clock::time_point now) {
  auto self = shared_from_this();
  const auto timed_out = make_error_code(error::timed_out);
  if (connecting_ && connecting_->deadline <= now) {
    connecting_->deadline = never;
    connect_failed(timed_out);
  }
  if (phase() == Phase::open || phase() == Phase::closing) {
    if (write_deadline_ <= now || (!sends_.empty() && sends_.front().deadline <= now)) {
      // First a close frame (1008) behind the queued data; if even that does
      // not get out within the close timeout, TCP is torn down.
      if (failure_code_ == 0 && !conn_->close_sent())
        fail_send_timeout();
      else
        fail(timed_out);
    }
  }
  if (input_ && input_->deadline <= now) {
    input_->deadline = never;
    if (input_->op) {
      input_->buffer = {};
      complete(input_->op, timed_out);
    }
  }
  if (close_deadline_ <= now && phase() != Phase::closed) {
    if (failure_ && socket_shutdown_) {
      // The drain after our failing close frame ran out: the failure stands.
      close_transport();
      finish(failure_close_code(), {}, failure_);
    } else {
      fail(timed_out);
    }
  }
  if (phase() == Phase::open && ping_due_ <= now) {
    if (awaiting_pong_) {
      // The pong is late.
      awaiting_pong_ = false;
      if (activity_) {
        // Data arrived since the ping: the peer is alive, its pong may follow.
        activity_ = false;
        ping_due_ = now + cfg_->keep_alive_interval;
      } else {
        ping_due_ = never;
        fail(make_error_code(error::dead_peer));
      }
    } else if (activity_) {
      activity_ = false;
      ping_due_ = now + cfg_->keep_alive_interval;
    } else {
      awaiting_pong_ = true;
      ping_due_ = now + cfg_->keep_alive_timeout;  // the pong's deadline
      if (!conn_->send_ping({})) schedule_flush();
    }
  }
  if (phase() == Phase::open && pong_due_ <= now) {
    // RFC 6455 5.5.3: an unsolicited pong is a heartbeat that needs no answer.
    pong_due_ = now + cfg_->unsolicited_pong_interval;
    if (!conn_->send_pong({})) schedule_flush();
  }
  auto next = std::min({write_deadline_, close_deadline_, ping_due_, pong_due_});
  if (connecting_) next = std::min(next, connecting_->deadline);
  if (input_) next = std::min(next, input_->deadline);
  if (!sends_.empty()) next = std::min(next, sends_.front().deadline);
  if (phase() == Phase::closed && !connecting_) return;
  if (next != never) loop_timers(ex_.context()).schedule(*this, next);
}

// --- statistics
// --------------------------------------------------------------------------------------------

DUPLEX_HOT_INLINE void Session::publish_stats() {
  if (!conn_) return;
  publish_counts();
  const auto now = loop_now();
  const auto elapsed = now - rate_window_start_;
  if (elapsed >= std::chrono::seconds(1)) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count();
    const auto rate = [&](std::uint64_t now_bytes, std::uint64_t start_bytes) {
      return (now_bytes - start_bytes) * 8 * 1'000'000 / static_cast<std::uint64_t>(us);
    };
    const auto sent = stats_.bytes_sent.load(std::memory_order_relaxed);
    const auto received = stats_.bytes_received.load(std::memory_order_relaxed);
    stats_.out_bps.store(rate(sent, rate_sent_at_start_), std::memory_order_relaxed);
    stats_.in_bps.store(rate(received, rate_received_at_start_), std::memory_order_relaxed);
    rate_window_start_ = now;
    rate_sent_at_start_ = sent;
    rate_received_at_start_ = received;
  }
}

BandwidthStatistics Session::statistics() const {
  BandwidthStatistics b;
  // On the loop (a handler): the counters as they are now, this message and
  // the sends before included. Elsewhere: as of the loop's last read or write.
  if (on_loop_thread() && conn_) {
    b = loop_counts();
    b.outbound_bits_per_second = stats_.out_bps.load(std::memory_order_relaxed);
    b.inbound_bits_per_second = stats_.in_bps.load(std::memory_order_relaxed);
    return b;
  }
  b.bytes_sent = stats_.bytes_sent.load(std::memory_order_relaxed);
  b.bytes_received = stats_.bytes_received.load(std::memory_order_relaxed);
  b.messages_sent = stats_.messages_sent.load(std::memory_order_relaxed);
  b.messages_received = stats_.messages_received.load(std::memory_order_relaxed);
  b.frames_sent = stats_.frames_sent.load(std::memory_order_relaxed);
  b.frames_received = stats_.frames_received.load(std::memory_order_relaxed);
  b.outbound_bits_per_second = stats_.out_bps.load(std::memory_order_relaxed);
  b.inbound_bits_per_second = stats_.in_bps.load(std::memory_order_relaxed);
  return b;
}

// --- the compiled operations behind the public templates
// ------------------------------------------------------

asio::any_io_executor session_executor(const Session& s) noexcept {
  return s.executor();
}

void check_connect(Session& s, std::string_view uri) {
  s.check_connect(uri);
}

namespace {
// The type a send uses: the per-message option, else the socket's control.
SocketMessageType message_type_of(const Session& s, std::optional<SocketMessageType> per_message) {
  if (!per_message) return s.message_type.load(std::memory_order_relaxed);
  if (*per_message != SocketMessageType::binary && *per_message != SocketMessageType::utf8)
    throw std::invalid_argument("send_async: SendOptions::message_type must be binary or utf8");
  return *per_message;
}
}  // namespace

void Session::check_frame_order(SendKind kind, SocketMessageType type,
                                std::span<const std::byte> data) {
  if (kind == SendKind::whole) {
    // RFC 6455 5.4: the frames of one message are not interleaved with another
    // message.
    if (call_in_message_.load(std::memory_order_acquire))
      throw std::logic_error(
          "send_async: a message sent in frames is unfinished; end it with "
          "send_final_frame_async first (RFC 6455 5.4)");
    return;
  }
  std::call_once(call_frames_once_, [this] { call_frames_ = std::make_unique<CallFrames>(); });
  std::lock_guard lock(call_frames_->mutex);
  auto& cf = *call_frames_;
  const bool first = !call_in_message_.load(std::memory_order_relaxed);
  // The first piece's type holds for the whole message.
  const bool text = first ? type == SocketMessageType::utf8 : cf.text;
  if (text) {
    // RFC 6455 5.6: a code point may be split between frames, but the message
    // must be valid UTF-8 and end on a boundary.
    protocol::Utf8Validator next = first ? protocol::Utf8Validator{} : cf.utf8;
    if (!next.feed(data))
      throw std::invalid_argument(std::string(kind == SendKind::final
                                                  ? "send_final_frame_async"
                                                  : "send_nonfinal_frame_async") +
                                  ": a utf8 message must be valid UTF-8 (RFC 6455 5.6)");
    if (kind == SendKind::final && !next.complete())
      throw std::invalid_argument(
          "send_final_frame_async: a utf8 message must end on a whole UTF-8 code point "
          "(RFC 6455 5.6)");
    cf.utf8 = next;
  }
  cf.text = text;
  call_in_message_.store(kind == SendKind::nonfinal, std::memory_order_release);
}

void check_frame(Session& s, SendKind kind, std::span<const std::byte> data,
                 std::optional<SocketMessageType> per_message) {
  s.check_frame_order(kind, message_type_of(s, per_message), data);
}

SocketMessageType check_send(Session& s, SendKind kind, std::span<const std::byte> data,
                             std::optional<SocketMessageType> per_message) {
  const auto type = message_type_of(s, per_message);
  if (kind == SendKind::whole) s.check_frame_order(kind, type, data);
  // RFC 6455 5.6: a text message must be UTF-8; a whole one is checked here, at
  // the call; pieces are checked across frames by the connection.
  if (type == SocketMessageType::utf8 && kind == SendKind::whole && !protocol::is_valid_utf8(data))
    throw std::invalid_argument("send_async: a utf8 message must be valid UTF-8 (RFC 6455 5.6)");
  return type;
}

void check_close(std::uint16_t code, std::string_view reason) {
  auto rule = protocol::check_close_arguments(code, reason);
  if (!rule.empty()) throw std::invalid_argument("close: " + std::string(rule));
}

void start_connect(std::shared_ptr<Session> s, std::string uri, CancellationToken ct,
                   CompletionHandler h) {
  s->connect(std::move(uri), std::move(ct), std::move(h));
}

const std::error_code no_error{};

PlainSend plain_send(Session& s, std::optional<SocketMessageType> per_message,
                     std::size_t size) noexcept {
  if (!s.whole_send_is_plain(size)) [[unlikely]]
    return {nullptr, SocketMessageType::binary};
  if (!per_message) return {&s.connection(), s.message_type.load(std::memory_order_relaxed)};
  // A type out of range is refused by the usual path (it throws).
  if (*per_message > SocketMessageType::utf8) [[unlikely]]
    return {nullptr, SocketMessageType::binary};
  return {&s.connection(), *per_message};
}

std::error_code send_plain(PlainSend to, std::span<const std::byte> data, bool compress) {
  return to.connection->send_message(to.type, data, compress, nullptr);
}

bool try_send_now(Session& s, SendKind kind, std::span<const std::byte> data,
                  std::optional<SocketMessageType> per_message, bool compress,
                  std::error_code& ec) {
  if (kind == SendKind::whole && s.call_in_message_.load(std::memory_order_relaxed))
    s.check_frame_order(kind, SocketMessageType::binary, data);  // throws
  if (!s.on_loop_thread()) return false;
  if (kind != SendKind::whole) {
    if (auto e = s.reconnect_piece(kind)) {
      ec = *e;
      return true;
    }
  }
  const auto type = message_type_of(s, per_message);
  // The connection checks a text message's UTF-8 as it copies it (nothing is
  // queued when it fails); a bad argument then throws here, as at the call.
  auto r = s.send_now(kind, type, data, compress);
  if (!r) return false;
  if (*r) [[unlikely]]
    check_send(s, kind, data, type);
  ec = *r;
  return true;
}

void start_send(std::shared_ptr<Session> s, SendKind kind, SocketMessageType type,
                std::span<const std::byte> data, CancellationToken ct, CompletionHandler h,
                bool compress) {
  s->send(kind, type, data, true, std::move(ct), std::move(h), compress);
}
void start_close(std::shared_ptr<Session> s, std::uint16_t code, std::string reason,
                 CancellationToken ct, CompletionHandler h) {
  s->close(code, std::move(reason), std::move(ct), std::move(h));
}
void start_read(std::shared_ptr<Session> s, std::span<std::byte> buffer, CancellationToken ct,
                CompletionHandler h) {
  s->read(buffer, std::move(ct), std::move(h));
}
void start_write(std::shared_ptr<Session> s, std::span<const std::byte> data, CancellationToken ct,
                 CompletionHandler h) {
  s->send(SendKind::whole, SocketMessageType::binary, data, false, std::move(ct), std::move(h));
}

}  // namespace duplex::detail
