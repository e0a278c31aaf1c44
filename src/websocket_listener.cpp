// WebSocketListener: event loops, acceptors, hooks, hand-over and shutdown.
#include <duplex/websocket_listener.hpp>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include <asio/ip/address.hpp>
#include <asio/ip/v6_only.hpp>
#include <asio/post.hpp>

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <duplex/cancellation.hpp>
#include <duplex/protocol/close.hpp>

#include "detail/syscalls.hpp"
#include "listener/listener_impl.hpp"
#include "listener/server_tls.hpp"
#include "transport/stream.hpp"

namespace duplex {

namespace {

bool has_control(std::string_view s) noexcept {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

void check_options(const WebSocketListenerOptions& o) {
  using std::chrono::milliseconds;
  if (o.handshake_timeout <= milliseconds::zero())
    throw std::invalid_argument("handshake_timeout: must be > 0");
  if (o.max_header_size < 256) throw std::invalid_argument("max_header_size: must be >= 256");
  if (o.max_connections == 0) throw std::invalid_argument("max_connections: must be > 0");
  if (o.max_message_size == 0) throw std::invalid_argument("max_message_size: must be > 0");
  if (o.receive_mode != MessageWebSocketReceiveMode::full_message &&
      o.receive_mode != MessageWebSocketReceiveMode::partial_message)
    throw std::invalid_argument("receive_mode: must be full_message or partial_message");
  if (o.partial_message_threshold == 0 ||
      o.partial_message_threshold > MessageWebSocketControl::max_partial_message_threshold)
    throw std::invalid_argument("partial_message_threshold: must be 1..67108864 (64 MiB)");
  if (o.keep_alive_interval < milliseconds::zero())
    throw std::invalid_argument("keep_alive_interval: must be >= 0");
  if (o.keep_alive_timeout <= milliseconds::zero())
    throw std::invalid_argument("keep_alive_timeout: must be > 0");
  if (o.outbound_buffer_size == 0) throw std::invalid_argument("outbound_buffer_size: must be > 0");
  if (o.send_timeout <= milliseconds::zero())
    throw std::invalid_argument("send_timeout: must be > 0");
  if (o.close_timeout <= milliseconds::zero())
    throw std::invalid_argument("close_timeout: must be > 0");
  if (o.backlog < 0) throw std::invalid_argument("backlog: must be >= 0");
  // RFC 6455 4.1: subprotocol names are tokens, each offered once.
  for (std::size_t i = 0; i < o.supported_protocols.size(); ++i) {
    if (!protocol::is_token(o.supported_protocols[i]))
      throw std::invalid_argument("supported_protocols: each must be a non-empty HTTP token");
    for (std::size_t j = 0; j < i; ++j)
      if (o.supported_protocols[j] == o.supported_protocols[i])
        throw std::invalid_argument("supported_protocols: must not hold duplicates");
  }
  protocol::check_deflate_config(o.deflate);
  for (const auto& origin : o.allowed_origins)
    if (origin.empty() || has_control(origin))
      throw std::invalid_argument("allowed_origins: each must be non-empty, without CR, LF or NUL");
}

}  // namespace

// --- WebSocketRequest ------------------------------------------------------------

std::string_view WebSocketRequest::path() const noexcept {
  return protocol::target_path(target);
}

std::string_view WebSocketRequest::query() const noexcept {
  return protocol::target_query(target);
}

std::optional<std::string_view> WebSocketRequest::header(std::string_view name) const noexcept {
  return protocol::find_header(headers, name);
}

// --- WebSocketHandshakeContext ------------------------------------------------------

void WebSocketHandshakeContext::select_protocol(std::string_view protocol) {
  // RFC 6455 4.2.2 item 5.4: the server selects one of the client's values.
  if (!protocol.empty() && std::find(request_->protocols.begin(), request_->protocols.end(),
                                     protocol) == request_->protocols.end())
    throw std::invalid_argument("select_protocol: protocol must be one the client offered");
  protocol_.assign(protocol);
}

void WebSocketHandshakeContext::add_response_header(std::string_view name, std::string_view value) {
  if (!protocol::is_valid_header(name, value))
    throw std::invalid_argument(
        "add_response_header: name must be an HTTP token not set by the handshake, value "
        "without CR, LF or NUL");
  headers_.push_back({std::string(name), std::string(value)});
}

void WebSocketHandshakeContext::reject(int status, std::string_view body,
                                       protocol::HttpHeaders headers) {
  if (status < 200 || status > 599) throw std::invalid_argument("reject: status must be 200-599");
  for (const auto& h : headers) {
    if (!protocol::is_token(h.name) || has_control(h.value))
      throw std::invalid_argument(
          "reject: header names must be HTTP tokens, values without CR, LF or NUL");
    if (protocol::iequals(h.name, "Connection") || protocol::iequals(h.name, "Content-Type") ||
        protocol::iequals(h.name, "Content-Length") ||
        protocol::iequals(h.name, "Transfer-Encoding"))
      throw std::invalid_argument(
          "reject: headers must not hold Connection, Content-Type, Content-Length or "
          "Transfer-Encoding (the answer sets them)");
  }
  reject_status_ = status;
  reject_body_.assign(body);
  reject_headers_ = std::move(headers);
}

// --- WebSocketListenerConnectionReceivedEventArgs ---------------------------------------

void WebSocketListenerConnectionReceivedEventArgs::drop() noexcept {
  message_->reset();
  stream_->reset();
}

MessageWebSocket WebSocketListenerConnectionReceivedEventArgs::take_message_websocket() {
  if (!message_->has_value())
    throw std::logic_error(
        "take_message_websocket: no MessageWebSocket here (taken, dropped, or the socket type "
        "is stream_websocket)");
  MessageWebSocket ws = std::move(**message_);
  message_->reset();
  return ws;
}

StreamWebSocket WebSocketListenerConnectionReceivedEventArgs::take_stream_websocket() {
  if (!stream_->has_value())
    throw std::logic_error(
        "take_stream_websocket: no StreamWebSocket here (taken, dropped, or the socket type is "
        "message_websocket)");
  StreamWebSocket ws = std::move(**stream_);
  stream_->reset();
  return ws;
}

// --- WebSocketListener ------------------------------------------------------------------

WebSocketListener::WebSocketListener(WebSocketListenerOptions options)
    : impl_(std::make_shared<detail::ListenerImpl>(std::move(options))) {}

WebSocketListener::WebSocketListener(asio::io_context& context, WebSocketListenerOptions options)
    : WebSocketListener(std::span<asio::io_context* const>(std::array{&context}),
                        std::move(options)) {}

WebSocketListener::WebSocketListener(std::span<asio::io_context* const> contexts,
                                     WebSocketListenerOptions options) {
  if (contexts.empty()) throw std::invalid_argument("contexts: must hold at least one io_context");
  for (std::size_t i = 0; i < contexts.size(); ++i) {
    if (contexts[i] == nullptr)
      throw std::invalid_argument("contexts: must not hold a null pointer");
    for (std::size_t j = 0; j < i; ++j)
      if (contexts[j] == contexts[i])
        throw std::invalid_argument("contexts: must not hold the same io_context twice");
  }
  if (options.threads != 0 && options.threads != contexts.size())
    throw std::invalid_argument(
        "threads: must be 0 or the number of contexts when the application gives io_contexts");
  impl_ = std::make_shared<detail::ListenerImpl>(std::move(options), contexts);
}

WebSocketListener::~WebSocketListener() {
  impl_->stop(std::chrono::milliseconds::zero());
}

void WebSocketListener::handshake_requested(HandshakeRequestedHandler handler) {
  impl_->set_handshake_handler(std::move(handler));
}

void WebSocketListener::connection_received(ConnectionReceivedHandler handler) {
  impl_->set_connection_handler(std::move(handler));
}

HostEndpoint WebSocketListener::listen(std::string_view address, std::uint16_t port) {
  return impl_->listen(address, port);
}

std::uint16_t WebSocketListener::local_port() const {
  return impl_->local_port();
}

std::vector<HostEndpoint> WebSocketListener::local_endpoints() const {
  return impl_->local_endpoints();
}

std::size_t WebSocketListener::connection_count() const noexcept {
  return impl_->connection_count();
}

std::size_t WebSocketListener::thread_count() const noexcept {
  return impl_->thread_count();
}

std::size_t WebSocketListener::stop(std::chrono::milliseconds timeout) {
  return impl_->stop(timeout);
}

// --- detail ---------------------------------------------------------------------------------

namespace detail {

using asio::ip::tcp;

namespace {

// Over max_connections, a connection is still read and answered 503 (a clean
// refusal) while fewer than this many are being refused; beyond, it is closed
// at once, so a flood cannot make the refusals themselves unbounded.
constexpr std::size_t max_refusing = 256;
// How often a loop looks for ended sessions to give back their slots: often
// enough for max_connections, rare enough to cost nothing with many idle ones.
constexpr auto session_sweep_interval = std::chrono::seconds(1);
// The same while stop() waits for the 1001 closing handshakes to end.
constexpr auto drain_sweep_interval = std::chrono::milliseconds(5);
// At most this often, a connection over the limit makes every loop sweep its
// ended sessions at once (a flood of them does not turn into a flood of sweeps).
constexpr auto forced_sweep_spacing = std::chrono::milliseconds(10);
// Turns of each loop the destructor waits for before stopping it: closing a
// session completes its operations, whose handlers may post once more.
constexpr int loop_drain_rounds = 3;
// After an accept failure (EMFILE, ENOBUFS...) the kernel is out of something;
// accepting again at once would spin.
constexpr auto accept_retry_delay = std::chrono::milliseconds(50);
// Connections accepted per readiness event before the loop's other work runs.
constexpr int accept_batch = 16;
// Handshakes refer to their listener: its destructor runs the loops until the
// last one is gone (their sockets are closed, so a few turns do), at most
// this many turns.
constexpr int max_drain_rounds = 1000;
// How often an orphaned loop (its listener gone, some of its sockets still
// held) looks whether the last of them went.
constexpr auto orphan_watch_interval = std::chrono::milliseconds(20);

// The orphaned loops, reachable from here until they free themselves (never
// destroyed: a loop may outlive the statics).
struct Orphans {
  std::mutex mutex;
  std::vector<ListenerLoop*> loops;
};
Orphans& orphans() {
  static auto* o = new Orphans;
  return *o;
}

void watch_orphan(ListenerLoop& loop) {
  loop.session_sweep.expires_after(orphan_watch_interval);
  loop.session_sweep.async_wait([&loop](std::error_code ec) {
    if (ec) return;
    const auto gone = [](const std::weak_ptr<Session>& w) { return w.expired(); };
    std::erase_if(loop.sessions, gone);
    std::erase_if(loop.ended, gone);
    if (!loop.sessions.empty() || !loop.ended.empty()) return watch_orphan(loop);
    // The last socket is gone: run() returns and the thread frees the loop.
    loop.work.reset();
    loop.ctx.stop();
  });
}

// The body of a loop's thread.
void run_loop(ListenerLoop* loop) {
  loop->ctx.run();
  if (!loop->orphaned) return;  // joined by its listener
  {
    std::lock_guard lock(orphans().mutex);
    std::erase(orphans().loops, loop);
  }
  // run() returned on this thread: the io_context may be destroyed here.
  delete loop;
}

}  // namespace

void set_non_blocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
    throw std::system_error(errno, std::system_category(), "listen: O_NONBLOCK");
}

std::size_t orphaned_loop_count() {
  std::lock_guard lock(orphans().mutex);
  return orphans().loops.size();
}

ListenerTestHooks& listener_test_hooks() noexcept {
  static ListenerTestHooks hooks;
  return hooks;
}

AcceptedStream::~AcceptedStream() {
  close();
  if (counted) listener->release_connection(false);
}

void AcceptedStream::close() noexcept {
  if (fd >= 0) ::close(fd);
  fd = -1;
  std::error_code ignored;
  if (tls) tls->next_layer().close(ignored);
  if (tcp) tcp->close(ignored);
  tls.reset();
  tcp.reset();
}

ListenerImpl::ListenerImpl(WebSocketListenerOptions options,
                           std::span<asio::io_context* const> contexts)
    : options_(std::move(options)) {
  check_options(options_);
  if (options_.tls) tls_context_ = transport::make_server_context(*options_.tls);
  if (!contexts.empty()) {
    options_.threads = contexts.size();
    sweep_interval_ = std::clamp(options_.handshake_timeout / 8, std::chrono::milliseconds(5),
                                 std::chrono::milliseconds(250));
    loops_.reserve(contexts.size());
    for (std::size_t i = 0; i < contexts.size(); ++i)
      loops_.push_back(std::make_unique<ListenerLoop>(i, *contexts[i]));
    return;
  }
  std::size_t n = options_.threads;
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  options_.threads = n;
  // The sweep closes an expired handshake within an eighth of the timeout.
  sweep_interval_ = std::clamp(options_.handshake_timeout / 8, std::chrono::milliseconds(5),
                               std::chrono::milliseconds(250));
  auto ls = std::make_shared<LoopSettings>();
  ls->max_message_size = options_.max_message_size;
  ls->receive_mode = options_.receive_mode;
  ls->partial_message_threshold = options_.partial_message_threshold;
  ls->outbound_buffer_size = options_.outbound_buffer_size;
  ls->keep_alive_interval = options_.keep_alive_interval;
  ls->keep_alive_timeout = options_.keep_alive_timeout;
  ls->send_timeout = options_.send_timeout;
  ls->close_timeout = options_.close_timeout;
  ls->no_delay = options_.no_delay;
  ls->share(protocol::Role::server);
  session_settings_ = std::move(ls);
  loops_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) loops_.push_back(std::make_unique<ListenerLoop>(i));
}

ListenerImpl::~ListenerImpl() {
  stop(std::chrono::milliseconds::zero());
  // Let each loop run what the stop made ready (the aborted operations of the
  // closed sessions complete on their own thread, releasing the sessions),
  // a few rounds for what those post in turn; then stop the loops.
  bool started = false;
  {
    std::lock_guard lock(mutex_);
    started = started_;
  }
  if (started) {
    for (int round = 0;
         round < max_drain_rounds && (round < loop_drain_rounds || live_handshakes.load() != 0);
         ++round)
      on_each_loop([](ListenerLoop&) {});
    // On each loop's own thread: its acceptors go, and a loop whose sockets
    // the application still holds is orphaned: those sockets need its
    // io_context until they are destroyed (their connections are closed by
    // now, so their operations complete at once, with errors).
    on_each_loop([this](ListenerLoop& loop) {
      {
        std::lock_guard lock(mutex_);
        std::erase_if(acceptors_,
                      [&](const std::unique_ptr<Acceptor>& a) { return a->loop == &loop; });
      }
      // The application's io_context runs on: the sockets handed out need
      // nothing of this loop but the io_context itself.
      if (loop.external) {
        loop.sweep.cancel();
        loop.session_sweep.cancel();
        return;
      }
      const auto held = [](const std::weak_ptr<Session>& w) { return !w.expired(); };
      if (std::none_of(loop.sessions.begin(), loop.sessions.end(), held) &&
          std::none_of(loop.ended.begin(), loop.ended.end(), held))
        return;
      loop.orphaned = true;  // the timers' handlers refer to this listener: end them
      loop.sweep.cancel();
      loop.session_sweep.cancel();
    });
  }
  for (auto& lp : loops_) {
    if (lp->external) continue;  // not ours to stop
    if (!lp->orphaned) {
      lp->ctx.stop();
      continue;
    }
    // It runs on alone and frees itself after its last socket (run_loop).
    ListenerLoop* loop = lp.release();
    loop->thread.detach();
    {
      std::lock_guard lock(orphans().mutex);
      orphans().loops.push_back(loop);
    }
    asio::post(loop->ctx, [loop] { watch_orphan(*loop); });
  }
  for (auto& lp : loops_)
    if (lp && lp->thread.joinable()) lp->thread.join();
  // Acceptors and timers before their io_contexts; each io_context destroys the
  // handlers it still holds (their handshakes unlink themselves) while every
  // member here is alive.
  acceptors_.clear();
  loops_.clear();
}

void ListenerImpl::set_handshake_handler(WebSocketListener::HandshakeRequestedHandler h) {
  std::lock_guard lock(mutex_);
  if (started_) throw std::logic_error("handshake_requested: set handlers before listen()");
  on_handshake_ = std::move(h);
}

void ListenerImpl::set_connection_handler(WebSocketListener::ConnectionReceivedHandler h) {
  std::lock_guard lock(mutex_);
  if (started_) throw std::logic_error("connection_received: set handlers before listen()");
  on_connection_ = std::move(h);
}

HostEndpoint ListenerImpl::listen(std::string_view address, std::uint16_t port) {
  std::error_code ec;
  const auto addr = asio::ip::make_address(std::string(address), ec);
  if (ec) throw std::invalid_argument("address: must be a numeric IPv4 or IPv6 address");

  std::lock_guard lock(mutex_);
  if (stopped_) throw std::logic_error("listen: the listener was stopped");
  auto& loop = *loops_[acceptors_.size() % loops_.size()];
  auto a = std::make_unique<Acceptor>(*this, loop);
  const tcp::endpoint endpoint(addr, port);
  tcp::acceptor socket(loop.ctx);
  socket.open(endpoint.protocol());
  socket.set_option(tcp::acceptor::reuse_address(true));
  // "::" means IPv6 only; listen on "0.0.0.0" as well for both families.
  if (addr.is_v6()) socket.set_option(asio::ip::v6_only(true));
  socket.bind(endpoint);
  socket.listen(options_.backlog > 0 ? options_.backlog
                                     : static_cast<int>(tcp::acceptor::max_listen_connections));
  const auto local = socket.local_endpoint();
  a->endpoint = HostEndpoint{local.address().to_string(), local.port()};
  // Accepted from on the loop's poller, outside Asio's reactor.
  set_non_blocking(socket.native_handle());
  a->fd = socket.release();
  Acceptor& ref = *a;
  acceptors_.push_back(std::move(a));
  start_accepting(ref);
  return ref.endpoint;
}

ListenerImpl::Acceptor::~Acceptor() {
  // Closed on its loop by stop() (which ran: the listener's destructor calls
  // it); only one that never started accepting is closed here.
  if (fd >= 0) ::close(fd);
}

void ListenerImpl::Acceptor::on_poll(std::uint32_t events) {
  if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) owner->accept_ready(*this);
}

void ListenerImpl::start_accepting(Acceptor& a) {
  if (!started_) start_loops();
  asio::post(a.loop->ctx, [this, &a] { register_acceptor(a); });
}

void ListenerImpl::register_acceptor(Acceptor& a) {
  if (stopping_ || a.fd < 0) return;
  // Not owned by the poller: the acceptor lives until stop() closed it. The
  // registration reports the connections already pending too.
  if (!loop_poller(a.loop->ctx).add(a.fd, a, std::shared_ptr<void>(std::shared_ptr<void>(), &a)))
    return;
  // Out of memory for the epoll set: tried again later, as after an accept error.
  retry_later(a, &ListenerImpl::register_acceptor);
}

void ListenerImpl::retry_later(Acceptor& a, void (ListenerImpl::*step)(Acceptor&)) {
  a.retrying = true;
  a.retry.expires_after(accept_retry_delay);
  a.retry.async_wait([this, &a, step](std::error_code ec) {
    if (ec || stopping_) return;
    a.retrying = false;
    (this->*step)(a);
  });
}

void ListenerImpl::close_acceptor(Acceptor& a) noexcept {
  a.retry.cancel();
  if (a.fd < 0) return;
  if (LoopPoller::registered(a))
    loop_poller(a.loop->ctx).remove_and_close(a.fd, a);
  else
    ::close(a.fd);
  a.fd = -1;
}

std::uint16_t ListenerImpl::local_port() const {
  std::lock_guard lock(mutex_);
  return acceptors_.empty() ? 0 : acceptors_.front()->endpoint.port;
}

std::vector<HostEndpoint> ListenerImpl::local_endpoints() const {
  std::lock_guard lock(mutex_);
  std::vector<HostEndpoint> out;
  for (const auto& a : acceptors_) out.push_back(a->endpoint);
  return out;
}

void ListenerImpl::start_loops() {
  started_ = true;
  for (auto& lp : loops_) {
    ListenerLoop& loop = *lp;
    arm_sweep(loop);
    arm_session_sweep(loop, session_sweep_interval);
    if (!loop.external) loop.thread = std::thread(run_loop, &loop);
  }
}

void ListenerImpl::accept_ready(Acceptor& a) {
  if (stopping_ || a.fd < 0 || a.retrying) return;
  const auto& hook = listener_test_hooks().accept;
  for (int i = 0; i < accept_batch; ++i) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    auto* const sa = reinterpret_cast<sockaddr*>(&addr);
    const int flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
    const int fd = hook ? hook(a.fd, sa, &len, flags) : sys_accept4(a.fd, sa, &len, flags);
    if (fd < 0) {
      const int e = errno;
      // None left: the poller reports the next (edge-triggered).
      if (e == EAGAIN || e == EWOULDBLOCK) return;
      // That connection went (or a signal came): the next one.
      if (e == EINTR || e == ECONNABORTED) continue;
      // EMFILE, ENFILE, ENOBUFS, ENOMEM...: the connection stays queued and
      // no new event comes for it; trying again at once would spin.
      return retry_later(a, &ListenerImpl::accept_ready);
    }
    const Admission admission = admit();
    if (admission == Admission::refuse) {
      ::close(fd);
      continue;
    }
    const bool busy = admission == Admission::busy;
    // A Unix listener's peer is no IP endpoint: family 0.
    transport::RawEndpoint peer;
    if (!a.unix_socket) transport::raw_endpoint(sa, len, peer);
    ListenerLoop& target =
        loops_.size() == 1 ? *a.loop : *loops_[next_loop_.fetch_add(1) % loops_.size()];
    // Accepted on the loop that serves it: start at once.
    if (&target == a.loop) {
      start_accepted(target, fd, peer, busy, a.unix_socket);
      continue;
    }
    asio::post(target.ctx, [this, &target, fd, peer, busy, unix_socket = a.unix_socket] {
      if (stopping_) {
        ::close(fd);
        return release_connection(busy);
      }
      start_accepted(target, fd, peer, busy, unix_socket);
    });
  }
  // More may be pending, and edge-triggered readiness reports none of them
  // again: go on after the loop's other work.
  asio::post(a.loop->ctx, [this, &a] { accept_ready(a); });
}

void ListenerImpl::start_accepted(ListenerLoop& target, int fd, const transport::RawEndpoint& peer,
                                  bool busy, bool unix_socket) {
  // Plain TCP: on the loop's poller only.
  if (!unix_socket && !tls_context_) return start_server_handshake(*this, target, fd, peer, busy);
  // TLS runs over Asio's stream, and a Unix socket's endpoints are read
  // through it: the descriptor goes into an Asio socket (TCP-typed for a
  // Unix socket, as transport/unix_socket.hpp says).
  transport::TcpSocket socket(target.ctx);
  std::error_code ec;
  socket.assign(peer.family == 6 ? tcp::v6() : tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    return release_connection(busy);
  }
  start_server_handshake(*this, target, std::move(socket), peer, busy);
}

ListenerImpl::Admission ListenerImpl::admit() noexcept {
  if (connections_.fetch_add(1) < options_.max_connections) return Admission::ok;
  connections_.fetch_sub(1);
  // Slots of closed sessions may wait for their sweep: sweep now, the
  // request may still find one.
  request_session_sweep();
  if (refusing_.fetch_add(1) >= max_refusing) {
    refusing_.fetch_sub(1);
    return Admission::refuse;
  }
  return Admission::busy;
}

void ListenerImpl::arm_sweep(ListenerLoop& loop) {
  loop.sweep.expires_after(sweep_interval_);
  // Runs until the loop stops: after stop() it still bounds the connections
  // that end with a 1001 frame right after their 101.
  loop.sweep.async_wait([this, &loop](std::error_code ec) {
    if (ec || loop.orphaned || loop.quiet) return;
    sweep(loop);
  });
}

void ListenerImpl::sweep(ListenerLoop& loop) {
  // The list is in deadline order: stop at the first handshake still in time.
  const auto now = ListenerClock::now();
  while (HandshakeEntry* e = loop.handshakes.front()) {
    if (e->deadline > now) break;
    e->expire();
  }
  arm_sweep(loop);
}

void ListenerImpl::arm_session_sweep(ListenerLoop& loop, std::chrono::milliseconds interval) {
  loop.session_sweep.expires_after(interval);
  loop.session_sweep.async_wait([this, &loop](std::error_code ec) {
    if (ec || loop.orphaned || loop.quiet) return;
    sweep_sessions(loop);
    arm_session_sweep(loop, draining_ ? drain_sweep_interval : session_sweep_interval);
  });
}

std::size_t ListenerImpl::sweep_sessions(ListenerLoop& loop) {
  std::erase_if(loop.ended, [](const std::weak_ptr<Session>& w) { return w.expired(); });
  auto& v = loop.sessions;
  for (std::size_t i = 0; i < v.size();) {
    const auto s = v[i].lock();
    if (s && s->phase() != Phase::closed) {
      ++i;
      continue;
    }
    // Still held by the application: remembered for the loop's lifetime.
    if (s) loop.ended.push_back(std::move(v[i]));
    v[i] = std::move(v.back());
    v.pop_back();
    release_connection(false);
  }
  return v.size();
}

std::shared_ptr<Session> ListenerImpl::adopt(AcceptedStream& a, const std::string& protocol,
                                             Session::Kind kind) {
  if (!a.has_stream())
    throw std::logic_error("take_*_websocket: the connection was already taken or dropped");
  ServerSessionOptions so;
  so.protocol = protocol;
  so.settings = session_settings_;
  so.deflate = a.deflate;
  so.extensions = a.extensions;
  // hand_over opens it and starts its reading around the event, in one
  // handler.
  so.open_later = true;
  if (a.endpoints_read) {
    so.local = &a.local;
    so.remote = &a.remote;
  }
  auto s = std::make_shared<Session>(a.loop->ctx.get_executor(), kind, protocol::Role::server);
  if (a.fd >= 0) {
    const int fd = std::exchange(a.fd, -1);
    s->start_server(fd, {}, so);
  } else {
    s->start_server(a.tls ? transport::Stream(std::move(a.tls), a.tls_context)
                          : transport::Stream(std::move(*a.tcp)),
                    {}, so);
    a.tcp.reset();
    a.tls.reset();
  }
  // The connection's slot moves to the session; sweep_sessions gives it back.
  a.counted = false;
  a.loop->sessions.push_back(s);
  return s;
}

template <class F>
void ListenerImpl::on_each_loop(F f, const std::function<void()>& posted) {
  std::mutex m;
  std::condition_variable cv;
  std::size_t pending = loops_.size();
  for (auto& lp : loops_) {
    ListenerLoop& loop = *lp;
    asio::post(loop.ctx, [&, f] {
      f(loop);
      std::lock_guard lock(m);
      if (--pending == 0) cv.notify_all();
    });
  }
  if (posted) posted();
  run_stopped_contexts();
  std::unique_lock lock(m);
  cv.wait(lock, [&] { return pending == 0; });
}

void ListenerImpl::run_stopped_contexts() {
  for (auto& lp : loops_) {
    asio::io_context& ctx = lp->ctx;
    // A stopped io_context runs nothing until restarted; the application's
    // run() has returned (the documented precondition), so this thread may.
    if (!lp->external || !ctx.stopped()) continue;
    ctx.restart();
    ctx.poll();
    ctx.stop();
  }
}

void ListenerImpl::drain_wait() {
  run_stopped_contexts();
  std::this_thread::sleep_for(drain_sweep_interval);
}

void ListenerImpl::run_hook(WebSocketHandshakeContext& context) {
  context.socket_type_ = options_.socket_type;
  // RFC 6455 4.1: the client lists subprotocols by preference; take its first
  // one that we speak.
  for (const auto& offered : context.request().protocols) {
    const auto& ours = options_.supported_protocols;
    if (std::find(ours.begin(), ours.end(), offered) != ours.end()) {
      context.protocol_ = offered;
      break;
    }
  }
  if (!on_handshake_) return;
  try {
    on_handshake_(context);
  } catch (...) {
    // The hook could not decide: refuse rather than accept unchecked.
    context.reject_headers_.clear();
    context.reject_status_ = 500;
    context.reject_body_ = "internal server error\n";
  }
}

void ListenerImpl::hand_over(AcceptedStream& stream, std::shared_ptr<AcceptedConnection> conn,
                             ListenerSocketType type) {
  if (const auto& hook = listener_test_hooks().before_adopt) hook();
  // Nobody to take it: the connection closes with `stream`.
  if (!on_connection_) return;
  const bool streams = type == ListenerSocketType::stream_websocket;
  auto session =
      adopt(stream, conn->protocol, streams ? Session::Kind::stream : Session::Kind::message);
  if (streams)
    conn->stream.emplace(make_stream_websocket(session));
  else
    conn->message.emplace(make_message_websocket(session));
  // Now, on the loop (no handler posted): the session opens, then the event
  // gives the application an open socket, then its reading starts, so no
  // message can come before its handlers. The handshake that called this
  // only returns afterwards; `stream` holds nothing the event needs.
  session->open_server_now(std::span(reinterpret_cast<const std::byte*>(stream.leftover.data()),
                                     stream.leftover.size()));
  std::string().swap(stream.leftover);
  {
    WebSocketListenerConnectionReceivedEventArgs args(conn->request, conn->protocol, conn->message,
                                                      conn->stream);
    try {
      on_connection_(args);
    } catch (...) {
      // The application failed to take the connection: it cannot be served.
    }
    // Not taken: the connection is failed (the socket destroyed) now.
    args.drop();
  }
  // The event is over (its arguments, the request's only readers, with it).
  stream.loop->give_back(std::move(conn));
  session->after_open();
}

void ListenerImpl::request_session_sweep() {
  const auto now = ListenerClock::now().time_since_epoch().count();
  auto last = last_forced_sweep_.load();
  if (now - last <
      std::chrono::duration_cast<ListenerClock::duration>(forced_sweep_spacing).count())
    return;
  if (!last_forced_sweep_.compare_exchange_strong(last, now)) return;
  for (auto& lp : loops_) {
    ListenerLoop& loop = *lp;
    asio::post(loop.ctx, [this, &loop] { sweep_sessions(loop); });
  }
}

bool ListenerImpl::claim_connection(ListenerLoop& here) {
  const auto claim = [this] {
    if (connections_.fetch_add(1) < options_.max_connections) {
      refusing_.fetch_sub(1);
      return true;
    }
    connections_.fetch_sub(1);
    return false;
  };
  if (claim()) return true;
  sweep_sessions(here);
  return claim();
}

void ListenerImpl::release_connection(bool busy) noexcept {
  if (busy)
    refusing_.fetch_sub(1);
  else
    connections_.fetch_sub(1);
}

std::size_t ListenerImpl::stop(std::chrono::milliseconds timeout) {
  // Checked first: a refused call leaves the listener running.
  for (const auto& lp : loops_)
    if (lp->thread.get_id() == std::this_thread::get_id() ||
        lp->ctx.get_executor().running_in_this_thread())
      throw std::logic_error("stop: must not be called on one of the listener's loops");
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return 0;
    stopped_ = true;
    if (!started_) return 0;
  }
  stopping_ = true;
  draining_ = true;

  // Stop accepting, close every handshake, and start the closing handshake
  // (RFC 6455 7.4.1: 1001, going away) on every open connection, each on its
  // own loop. The close operations share one token: cancelling it fails the
  // connections still closing at the deadline.
  CancellationSource force;
  on_each_loop(
      [&, this](ListenerLoop& loop) {
        for (auto& a : acceptors_)
          if (a->loop == &loop) close_acceptor(*a);
        for (HandshakeEntry* e = loop.handshakes.front(); e != nullptr;) {
          HandshakeEntry* next = HandshakeList::next(*e);
          e->stop();
          e = next;
        }
        sweep_sessions(loop);
        for (auto& w : loop.sessions) {
          if (auto s = w.lock()) {
            s->close(protocol::close_code::going_away, "server shutting down", force.token(),
                     CompletionHandler::make<void(std::error_code)>([](std::error_code) {},
                                                                    loop.ctx.get_executor()));
          }
        }
        // Wake the session sweep up at the drain interval.
        arm_session_sweep(loop, drain_sweep_interval);
      },
      listener_test_hooks().stop_posted);

  const auto open_sessions = [this] { return connections_.load(); };
  const auto deadline = ListenerClock::now() + timeout;
  while (open_sessions() != 0 && ListenerClock::now() < deadline) drain_wait();
  const std::size_t cut = open_sessions();
  if (cut != 0) {
    force.cancel();
    on_each_loop([](ListenerLoop& loop) {
      while (HandshakeEntry* e = loop.handshakes.front()) e->expire();
    });
    // Failing is immediate on each loop; bound the wait all the same.
    const auto hard = ListenerClock::now() + std::chrono::seconds(2);
    while (open_sessions() != 0 && ListenerClock::now() < hard) drain_wait();
  }
  draining_ = false;
  // On the application's io_contexts the listener leaves no work behind:
  // handshakes still lingering are closed and the timers end, so a context
  // whose sockets are gone runs out of work and its run() returns.
  if (std::any_of(loops_.begin(), loops_.end(), [](const auto& lp) { return lp->external; }))
    on_each_loop([this](ListenerLoop& loop) {
      if (!loop.external) return;
      while (HandshakeEntry* e = loop.handshakes.front()) e->expire();
      sweep_sessions(loop);
      loop.quiet = true;
      loop.sweep.cancel();
      loop.session_sweep.cancel();
    });
  return cut;
}

}  // namespace detail
}  // namespace duplex
