// listener/listener_impl.hpp: the inside of WebSocketListener: event loops,
// acceptors, the per-loop handshake sweep, connection accounting and shutdown.
// Internal; used on the listener's loops except where noted.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <sys/socket.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/steady_timer.hpp>

#include <duplex/message_websocket.hpp>
#include <duplex/stream_websocket.hpp>
#include <duplex/websocket_listener.hpp>

#include "detail/event_loop.hpp"
#include "detail/session.hpp"
#include "listener/listener_counters.hpp"
#include "transport/unix_socket.hpp"

namespace duplex::detail {

using ListenerClock = std::chrono::steady_clock;
using TlsServerStream = asio::ssl::stream<transport::TcpSocket>;

class ListenerImpl;
struct ListenerLoop;

/// A connection between accept and its 101 (or error) answer. Linked into its
/// loop's handshake list, which is in deadline order because every handshake
/// gets the same timeout from its accept: the sweep looks at the head only.
class HandshakeEntry {
public:
  virtual ~HandshakeEntry() = default;
  /// The deadline passed: close the socket now.
  virtual void expire() noexcept = 0;
  /// The listener stops: close now (returns true) a connection that has not
  /// sent a byte of its request yet; any other handshake goes on (bounded by
  /// its deadline and stop()'s) and its connection ends with a 1001 close
  /// frame right after its 101 (returns false).
  virtual bool stop() noexcept = 0;

private:
  friend class HandshakeList;
  HandshakeEntry* prev_ = nullptr;
  HandshakeEntry* next_ = nullptr;
  bool linked_ = false;

public:
  ListenerClock::time_point deadline{};
};

/// Intrusive FIFO of handshakes (no allocation per link).
class HandshakeList {
public:
  void push_back(HandshakeEntry& e) noexcept;
  void remove(HandshakeEntry& e) noexcept;
  [[nodiscard]] HandshakeEntry* front() const noexcept { return head_; }
  [[nodiscard]] static HandshakeEntry* next(const HandshakeEntry& e) noexcept { return e.next_; }
  [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

private:
  HandshakeEntry* head_ = nullptr;
  HandshakeEntry* tail_ = nullptr;
  std::size_t size_ = 0;
};

/// A connection that finished its opening handshake, before the application
/// takes it: the stream (TCP, or TLS over TCP) and the bytes read after the
/// request. Destroying it untaken closes the socket and gives back its slot.
struct AcceptedStream {
  AcceptedStream(ListenerImpl& l, ListenerLoop& lp) noexcept : listener(&l), loop(&lp) {}
  AcceptedStream(const AcceptedStream&) = delete;
  AcceptedStream& operator=(const AcceptedStream&) = delete;
  ~AcceptedStream();

  [[nodiscard]] bool has_stream() const noexcept {
    return fd >= 0 || tcp.has_value() || tls != nullptr;
  }
  void close() noexcept;

  ListenerImpl* listener;
  ListenerLoop* loop;
  /// A plain TCP connection accepted on the loop's poller: its descriptor
  /// (non-blocking, owned, in no reactor), else -1 and `tcp` or `tls`.
  int fd = -1;
  std::optional<transport::TcpSocket> tcp;
  std::unique_ptr<TlsServerStream> tls;
  std::shared_ptr<asio::ssl::context> tls_context;
  std::string leftover;  ///< frames the client sent right after its request
  bool counted = true;   ///< holds one of max_connections' slots
  /// permessage-deflate as answered in the 101 (none: uncompressed).
  std::optional<protocol::DeflateParams> deflate;
  std::string extensions;  ///< the 101's Sec-WebSocket-Extensions ("" if none)
  /// The IP endpoints the handshake read (endpoints_read: both), given to
  /// the session so that it reads none again.
  transport::RawEndpoint local, remote;
  bool endpoints_read = false;
};

/// A connection handed over, while the connection_received event runs.
struct AcceptedConnection {
  WebSocketRequest request;
  std::string protocol;
  std::optional<MessageWebSocket> message;
  std::optional<StreamWebSocket> stream;
};

/// One event loop: an io_context run by one thread, its handshakes and sweep.
/// The io_context is the listener's own (run by the loop's thread) or, when
/// `external`, one the application gave and runs.
struct ListenerLoop {
  explicit ListenerLoop(std::size_t i)
      : index(i), owned_ctx(std::make_unique<asio::io_context>(1)), ctx(*owned_ctx) {
    work.emplace(ctx.get_executor());
  }
  /// A loop on the application's `context`: no thread, no work guard (even a
  /// guard made and released at once would stop a context without work).
  ListenerLoop(std::size_t i, asio::io_context& context) : index(i), ctx(context), external(true) {}

  std::size_t index;
  HandshakeList handshakes;  // declared before ctx: outlives the handlers ctx destroys
  std::unique_ptr<asio::io_context> owned_ctx;  ///< null when external
  asio::io_context& ctx;
  /// The application's io_context: it owns and runs it; the listener only
  /// posts to it and must leave no work in it once stopped.
  bool external = false;
  /// Set once stop() finished on an external loop: its timers are cancelled
  /// and not armed again, so the application's run() can return.
  bool quiet = false;
  /// Keeps run() going while the listener exists (also after stop(): the
  /// sockets handed out still need their loop). None when external.
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  asio::steady_timer sweep{ctx};          ///< handshake deadlines
  asio::steady_timer session_sweep{ctx};  ///< gives back the slots of ended sessions
  /// The sessions handed out on this loop (one weak reference each, 16 bytes),
  /// for max_connections and stop().
  std::vector<std::weak_ptr<Session>> sessions;
  /// Sessions that ended (their slot given back) while the application still
  /// holds their socket: they need this loop until they are destroyed.
  std::vector<std::weak_ptr<Session>> ended;
  std::thread thread;
  LoopCounters counters;  ///< for WebSocketListener::metrics() (listener_metrics.cpp)
  /// Connections whose connection_received event has run, kept with their
  /// request's storage (header list, strings) for this loop's next
  /// handshakes, which parse into it: a steady stream of connections
  /// allocates nothing for its requests. At most spare_connection_limit.
  std::vector<std::shared_ptr<AcceptedConnection>> spare_connections;
  static constexpr std::size_t spare_connection_limit = 16;
  /// For a new handshake: a spare (its values stale, its storage kept, no
  /// socket) or a new one.
  std::shared_ptr<AcceptedConnection> take_connection() {
    if (spare_connections.empty()) return std::make_shared<AcceptedConnection>();
    auto c = std::move(spare_connections.back());
    spare_connections.pop_back();
    return c;
  }
  /// After its event: kept as a spare when nothing else refers to it.
  void give_back(std::shared_ptr<AcceptedConnection>&& c) noexcept {
    if (c.use_count() != 1 || spare_connections.size() >= spare_connection_limit) return;
    try {
      if (spare_connections.capacity() == 0) spare_connections.reserve(spare_connection_limit);
      spare_connections.push_back(std::move(c));
    } catch (...) {
      // Only a spare: without memory for it, the connection is freed instead.
    }
  }
  /// Set (on the loop's thread) when its listener is destroyed while sockets
  /// of this loop are still held: the loop then runs on alone, on its
  /// detached thread, until the last of them is gone, and frees itself.
  bool orphaned = false;
};

/// Test seams, empty outside tests: `before_adopt` runs on the loop thread in
/// hand_over() after the handshake checked stopping() and before the session
/// is made; `stop_posted` runs in stop() once the stop pass is posted to every
/// loop, before stop() waits for it. Set them before listen() and clear them
/// after the listener is gone.
struct ListenerTestHooks {
  std::function<void()> before_adopt;
  std::function<void()> stop_posted;
  /// Called instead of accept4(listening_fd, addr, len, flags) (returns a
  /// descriptor, or -1 with errno set): lets a test inject accept errors.
  std::function<int(int, sockaddr*, socklen_t*, int)> accept;
};
ListenerTestHooks& listener_test_hooks() noexcept;
/// Makes a listening descriptor non-blocking (it is accepted from on a
/// poller); throws std::system_error.
void set_non_blocking(int fd);
/// Loops orphaned by a destroyed listener that have not freed themselves yet.
std::size_t orphaned_loop_count();

/// Shared state of a listener. Owned by WebSocketListener; kept alive by the
/// connections it handed out.
class ListenerImpl : public std::enable_shared_from_this<ListenerImpl> {
public:
  /// `contexts` empty: options.threads loops of its own; else one loop on
  /// each of the application's io_contexts (checked by WebSocketListener).
  explicit ListenerImpl(WebSocketListenerOptions options,
                        std::span<asio::io_context* const> contexts = {});
  ~ListenerImpl();

  // --- configuration (before the first listen) --------------------------------
  void set_handshake_handler(WebSocketListener::HandshakeRequestedHandler h);
  void set_connection_handler(WebSocketListener::ConnectionReceivedHandler h);
  void set_http_handler(WebSocketListener::HttpRequestedHandler h);  // (http_server.cpp)

  // --- public operations (any thread) ------------------------------------------
  HostEndpoint listen(std::string_view address, std::uint16_t port);
  HostEndpoint listen_unix(const std::string& path);  // (unix_listener.cpp)
  /// WebSocketListener::adopt, first step (listener_adopt.cpp): the loop for
  /// a connection of the io_context `context` (that loop when it is one of
  /// ours, else the next one round-robin); starts the loops if no listen()
  /// did. Throws std::logic_error after stop().
  ListenerLoop& adoption_loop(const asio::execution_context& context);
  /// Second step: counts the connection (or refuses it as accept does) and
  /// starts its handshake on `loop` at the validation of `request`. `tls`:
  /// the connection's TLS stream, else `socket`; both on `loop`.
  void adopt_connection(ListenerLoop& loop, transport::TcpSocket socket,
                        std::unique_ptr<TlsServerStream> tls, protocol::HttpRequest request,
                        std::string rest);
  std::uint16_t local_port() const;
  std::vector<HostEndpoint> local_endpoints() const;
  std::size_t connection_count() const noexcept { return connections_.load(); }
  std::size_t thread_count() const noexcept { return loops_.size(); }
  std::size_t stop(std::chrono::milliseconds timeout);
  ListenerMetrics metrics() const;  // (listener_metrics.cpp)

  // --- used by the handshakes (on their loop) ----------------------------------
  [[nodiscard]] const WebSocketListenerOptions& options() const noexcept { return options_; }
  [[nodiscard]] const std::shared_ptr<asio::ssl::context>& tls_context() const noexcept {
    return tls_context_;
  }
  [[nodiscard]] bool stopping() const noexcept { return stopping_.load(); }
  [[nodiscard]] bool has_http_handler() const noexcept { return static_cast<bool>(on_http_); }
  /// Runs the http_requested handler (set) and builds the answer; an
  /// exception or an answer that cannot be built gives a 500 (http_server.cpp).
  std::string run_http_handler(const HttpServerRequest& request, int& status);
  /// Runs the hook on a valid request; fills the context's decision.
  void run_hook(WebSocketHandshakeContext& context);
  /// The 101 is written: makes the socket of `type`, opens it and raises
  /// connection_received now (on the loop, inside the caller), with `conn`'s
  /// request and protocol (its sockets empty; from
  /// ListenerLoop::take_connection, given back after the event); the
  /// socket's reading starts after the event.
  void hand_over(AcceptedStream& stream, std::shared_ptr<AcceptedConnection> conn,
                 ListenerSocketType type);
  /// A connection counted at accept ended (or was refused).
  void release_connection(bool busy) noexcept;
  /// A connection refused at accept (busy) takes a slot after all, if one
  /// came back since; true when it did (it then counts as a connection).
  /// On `here`'s thread: when none is free, first gives back the slots of
  /// `here`'s ended sessions (their sweep may not have run yet: the request
  /// is often read in the same turn as the accept).
  bool claim_connection(ListenerLoop& here);
  /// Over the limit: every loop gives back its ended sessions' slots now
  /// (at most every few milliseconds). Any thread.
  void request_session_sweep();
  /// Makes a server-role session of `stream` (which must still hold its
  /// connection; std::logic_error otherwise) and takes over its slot.
  std::shared_ptr<Session> adopt(AcceptedStream& stream, const std::string& protocol,
                                 Session::Kind kind);

private:
  /// A listening socket, accepted from on its loop's poller (registered
  /// while accepting; the descriptor leaves Asio once listening).
  struct Acceptor final : PollClient {
    Acceptor(ListenerImpl& l, ListenerLoop& lp) : owner(&l), loop(&lp), retry(lp.ctx) {}
    Acceptor(const Acceptor&) = delete;
    Acceptor& operator=(const Acceptor&) = delete;
    ~Acceptor();
    void on_poll(std::uint32_t events) override;

    ListenerImpl* owner;
    ListenerLoop* loop;
    int fd = -1;               ///< listening, non-blocking, owned; -1 once closed
    bool unix_socket = false;  ///< a Unix domain socket (accepted ones go through Asio)
    bool retrying = false;     ///< after an accept error: `retry` runs, events wait
    asio::steady_timer retry;
    HostEndpoint endpoint;
  };

  void start_loops();
  /// Whether a new connection gets a slot: `ok`; `busy` (over
  /// max_connections: answered 503 once its request is read); `refuse`
  /// (too many being refused already: close it at once).
  enum class Admission : std::uint8_t { ok, busy, refuse };
  Admission admit() noexcept;
  /// Takes the acceptor's descriptor over (non-blocking) and starts
  /// accepting on its loop (called with mutex_ held).
  void start_accepting(Acceptor& a);
  /// Adds `a` to its loop's poller (on that loop).
  void register_acceptor(Acceptor& a);
  /// Accepts what is pending on `a` (on its loop): up to a batch, then the
  /// rest after the loop's other work; after an error (EMFILE...), again
  /// only after accept_retry_delay, so an exhausted process does not spin.
  void accept_ready(Acceptor& a);
  /// Runs `step` on `a` after accept_retry_delay (unless the listener stops):
  /// after an accept error, or when the epoll set had no room for it.
  void retry_later(Acceptor& a, void (ListenerImpl::*step)(Acceptor&));
  /// Starts the handshake of an accepted descriptor on `target` (its loop).
  void start_accepted(ListenerLoop& target, int fd, const transport::RawEndpoint& peer, bool busy,
                      bool unix_socket);
  /// Closes `a`'s descriptor (on its loop).
  void close_acceptor(Acceptor& a) noexcept;
  void arm_sweep(ListenerLoop& loop);
  void sweep(ListenerLoop& loop);
  void arm_session_sweep(ListenerLoop& loop, std::chrono::milliseconds interval);
  /// Drops the ended sessions of `loop`, giving back their slots; returns how
  /// many are still open.
  std::size_t sweep_sessions(ListenerLoop& loop);
  /// Runs `f(loop)` on each loop's thread and waits for all of them
  /// (`posted` runs once every loop has it queued, before the wait).
  template <class F>
  void on_each_loop(F f, const std::function<void()>& posted = {});
  /// Runs, on the calling thread, the ready handlers of every external loop
  /// whose io_context is stopped (the application's run() returned): nothing
  /// else would run what the listener posts there. Leaves it stopped.
  void run_stopped_contexts();
  /// Waits one drain interval while stop() waits for connections to close,
  /// running stopped external io_contexts meanwhile.
  void drain_wait();

  WebSocketListenerOptions options_;
  /// The settings every session of this listener reads, shared (not copied
  /// into each connection).
  std::shared_ptr<const LoopSettings> session_settings_;
  std::shared_ptr<asio::ssl::context> tls_context_;
  WebSocketListener::HandshakeRequestedHandler on_handshake_;
  WebSocketListener::ConnectionReceivedHandler on_connection_;
  WebSocketListener::HttpRequestedHandler on_http_;
  std::chrono::milliseconds sweep_interval_;

  std::vector<std::unique_ptr<ListenerLoop>> loops_;
  mutable std::mutex mutex_;  // acceptors_, started_, stopped_
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  bool started_ = false;
  bool stopped_ = false;
  std::atomic<std::size_t> next_loop_{0};
  std::atomic<std::size_t> connections_{0};  ///< handshaking + handed out
  std::atomic<std::size_t> refusing_{0};     ///< over the limit, being answered 503
  std::atomic<bool> stopping_{false};
  std::atomic<bool> draining_{false};  ///< stop(): sweep sessions often
  std::atomic<ListenerClock::rep> last_forced_sweep_{0};

public:
  /// Handshake objects alive (they refer to this listener): the destructor
  /// lets the loops run until none is left.
  std::atomic<std::size_t> live_handshakes{0};
};

/// Starts the opening handshake of an accepted socket on `loop` (listener/server_handshake.cpp).
/// `peer`: the client's IP endpoint as accepted (family 0: read from the
/// socket when needed). `busy`: over max_connections, answer 503 once the
/// request is read.
void start_server_handshake(ListenerImpl& listener, ListenerLoop& loop, transport::TcpSocket socket,
                            const transport::RawEndpoint& peer, bool busy);
/// The same for a plain TCP connection's descriptor `fd` (non-blocking,
/// owned from here on): its handshake runs on the loop's poller and the
/// connection never enters Asio's reactor.
void start_server_handshake(ListenerImpl& listener, ListenerLoop& loop, int fd,
                            const transport::RawEndpoint& peer, bool busy);
/// The same for a connection the application accepted and read `request`
/// from (`rest`: bytes read past it): validation, hooks and the answer, as
/// for start_server_handshake once the request is parsed. With `tls`, the
/// connection is that stream (its TLS handshake done) and `socket` is unused.
void start_adopted_handshake(ListenerImpl& listener, ListenerLoop& loop,
                             transport::TcpSocket socket, std::unique_ptr<TlsServerStream> tls,
                             protocol::HttpRequest request, std::string rest, bool busy);

}  // namespace duplex::detail
