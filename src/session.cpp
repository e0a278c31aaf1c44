// The session: one connection's life on its event loop. See detail/session.hpp.
#include "detail/session.hpp"
#include "detail/session_impl.hpp"
#include "detail/syscalls.hpp"

#include <algorithm>
#include <cassert>
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

Session::Session(asio::io_context::executor_type ex, Kind kind, protocol::Role role)
    : ex_(ex),
      kind_(kind),
      role_(role),
      controls_(role == protocol::Role::client),
      input_(kind == Kind::stream ? std::make_unique<StreamInput>() : nullptr) {}

const std::shared_ptr<const LoopSettings>& Session::default_settings() {
  static const auto settings = std::make_shared<const LoopSettings>();
  return settings;
}

Session::~Session() {
  // The loop's timer list is used only on the loop's thread. A session
  // leaves it when it finishes (finish(), connect_failed()); until then its
  // socket holds it, and a dropped socket's last reference is the loop's
  // (detach() runs on the loop): so a session still in the list is destroyed
  // on its loop's thread, or once the loop stopped.
  assert(!timer_linked() || ex_.running_in_this_thread() || ex_.context().stopped());
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
  op.id = events_.new_id();
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

// --- events (the handlers: session_events.cpp) -----------------------------------------

void Session::set_owner(void* owner) noexcept {
  events_.set_owner(owner, on_loop_thread());
}

void Session::detach() noexcept {
  events_.detach();
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
  EventMutex::DispatchGuard lock(events_.mutex());
  if (events_.detached()) return;
  WebSocketClosedEventArgs args(code, reason, ec);
  EventLoopScope scope;
  events_.raise_closed(args);
}

// --- operations: entry points ----------------------------------------------------------------

void Session::check_connect(std::string_view uri) {
  (void)transport::parse_websocket_uri(uri);
  if (role_ == protocol::Role::server)
    throw std::logic_error("connect_async: a server-role socket is already connected");
  controls_.check_proxy();
  if (controls_.mark_connected())
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
  stats_.start_window(now);
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
    stats_.count_received(bytes.size());
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
  controls_.mark_connected();
  {
    // Read by the controls from any thread once the socket is handed out
    // (one lock for all of it).
    auto lock = controls_.lock();
    cfg_ = o.settings ? o.settings : default_settings();
    if (o.local != nullptr && o.remote != nullptr)
      controls_.set_endpoints_locked(*o.local, *o.remote);
    else if (socket != nullptr)
      controls_.set_endpoints_locked(*socket);
    else  // a TCP descriptor (start_server(fd)) whose endpoints were not given
      controls_.set_endpoints_locked(fd_);
    if (!o.protocol.empty() || !o.extensions.empty() || o.deflate) {
      auto& rest = controls_.info_locked();
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
  if (events_.detached()) {
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
  stats_.count_received(n);
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
    EventMutex::DispatchGuard lock(events_.mutex());
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
    stats_.count_received(static_cast<std::size_t>(n));
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
    stats_.count_sent(n);
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
    stats_.count_sent(done);
    pump_sends();  // room again for sends that waited
  }
  if (bytes.size() == done) return maybe_resume_reading();  // all written (or nothing)
  write_rest(bytes, done);
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
  stats_.count_sent(n);
  publish_stats();
  pump_sends();
  if (conn_->has_output() || wr_ref_queued_ != 0)
    flush();
  else
    maybe_resume_reading();
  maybe_finish_close();
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
  stats_.publish_received(conn_->stats());
  const auto raise = [&] {
    if (events_.detached()) return;
    events_.raise_message(MessageWebSocketMessageReceivedEventArgs(type, data, complete_));
  };
  if (dispatching_) return raise();  // process() holds the event lock
  EventMutex::DispatchGuard lock(events_.mutex());
  EventLoopScope scope;
  raise();
}

// --- statistics
// --------------------------------------------------------------------------------------------

BandwidthStatistics Session::statistics() const {
  // On the loop (a handler): the counters as they are now, this message and
  // the sends before included. Elsewhere: as of the loop's last read or write.
  return stats_.read(on_loop_thread() && conn_ ? &conn_->stats() : nullptr);
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

void check_frame(Session& s, SendKind kind, std::span<const std::byte> data,
                 std::optional<SocketMessageType> per_message) {
  s.send_order().check(kind, message_type_of(s, per_message), data);
}

SocketMessageType check_send(Session& s, SendKind kind, std::span<const std::byte> data,
                             std::optional<SocketMessageType> per_message) {
  const auto type = message_type_of(s, per_message);
  if (kind == SendKind::whole) s.send_order().check(kind, type, data);
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
  if (kind == SendKind::whole && s.send_order().in_message(std::memory_order_relaxed))
    s.send_order().check(kind, SocketMessageType::binary, data);  // throws
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
