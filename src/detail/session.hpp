// detail/session.hpp: the connection object a loop drives. One WebSocket
// connection's life (connect, handshake, open, closing, closed) on one event
// loop: the read loop into the loop's buffer, the corked write queue with
// backpressure, deadlines through the loop's timer sweep, keep-alive.
//
// Its cold parts are types of their own, each in its header: the controls and
// information (session_controls.hpp), the event handlers (session_events.hpp),
// the statistics (session_stats.hpp), the order of frame sends
// (send_order.hpp), the settings (session_config.hpp), the operations waiting
// to complete and the cold block (session_ops.hpp), the client's connect state
// (connect_state.hpp) and the auto-reconnect state (reconnect.hpp). The code:
// session.cpp (operations, opening, the data path), session_connect.cpp (the
// client's connect steps), session_close.cpp (close, failure, deadlines,
// keep-alive), session_shared_frames.cpp (topics' fan-out), reconnect.cpp.
// Used by MessageWebSocket and StreamWebSocket, client and server role.
//
// Threading: members marked [loop] are used only on the loop's thread; the
// others are guarded as noted.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <duplex/cancellation.hpp>
#include <duplex/detail/completion_handler.hpp>
#include <duplex/detail/socket_ops.hpp>
#include <duplex/message_websocket.hpp>
#include <duplex/protocol/connection.hpp>
#include <duplex/protocol/handshake.hpp>
#include <duplex/websocket_control.hpp>
#include <duplex/websocket_events.hpp>

#include "detail/always_inline.hpp"
#include "detail/event_loop.hpp"
#include "detail/event_mutex.hpp"
#include "detail/send_order.hpp"
#include "detail/session_config.hpp"
#include "detail/session_controls.hpp"
#include "detail/session_events.hpp"
#include "detail/session_ops.hpp"
#include "detail/session_stats.hpp"
#include "detail/shared_frame.hpp"
#include "transport/connect.hpp"
#include "transport/stream.hpp"
#include "transport/unix_socket.hpp"

namespace duplex {
class StreamWebSocket;
}

namespace duplex::detail {

enum class Phase : std::uint8_t { idle, connecting, open, closing, closed };

// ConnectionHandler first: its on_message, once per message, is then called
// without a this-adjusting thunk.
class Session final : private protocol::ConnectionHandler,
                      public std::enable_shared_from_this<Session>,
                      public TimerClient,
                      private PollClient {
public:
  enum class Kind : std::uint8_t { message, stream };

  Session(asio::io_context::executor_type ex, Kind kind, protocol::Role role);
  ~Session() override;

  [[nodiscard]] const asio::io_context::executor_type& executor() const noexcept { return ex_; }
  [[nodiscard]] Kind kind() const noexcept { return kind_; }
  [[nodiscard]] protocol::Role role() const noexcept { return role_; }
  /// True on the thread that runs this session's loop (cheapest inside one of
  /// its event handlers).
  [[nodiscard]] bool on_loop_thread() const noexcept {
    return events_.mutex().held_here() || ex_.running_in_this_thread();
  }
  [[nodiscard]] Phase phase() const noexcept { return phase_.load(std::memory_order_acquire); }

  // --- Controls (any thread) -------------------------------------------------------
  /// Runs f(config) under the controls' lock. Throws std::logic_error for a
  /// server-role session and once connect_async was called.
  template <class F>
  void configure(F&& f) {
    controls_.configure(std::forward<F>(f));
  }
  /// Runs f(config) under that lock (a server-role session: its listener's
  /// loop settings).
  template <class F>
  auto read_config(F&& f) const {
    return controls_.read_config(std::forward<F>(f), cfg_);
  }

  // --- Information (any thread) --------------------------------------------------------
  using Info = SessionInfo;
  Info info() const { return controls_.info(); }
  BandwidthStatistics statistics() const;

  // --- Events (any thread) -------------------------------------------------------
  /// The handlers and the public object they are raised with.
  [[nodiscard]] SessionEvents& events() noexcept { return events_; }
  /// The public object events are raised with; updated on move.
  void set_owner(void* owner) noexcept;
  /// The public object is being destroyed: no event starts after this returns;
  /// the connection is aborted and pending operations complete as aborted.
  void detach() noexcept;
  /// True once detach() ran: the public object is gone (controls then refuse setters).
  [[nodiscard]] bool detached() const noexcept { return events_.detached(); }

  // --- Operations (any thread; see socket_ops.hpp) ---------------------------------
  void check_connect(std::string_view uri);
  void set_request_header(std::string_view name, std::string_view value);
  void connect(std::string uri, CancellationToken ct, CompletionHandler h);
  /// `compress` false: sent uncompressed even with permessage-deflate.
  void send(SendKind kind, SocketMessageType type, std::span<const std::byte> data, bool copy,
            CancellationToken ct, CompletionHandler h, bool compress = true);
  /// [loop] A whole-message or frame send done at once: its result when the
  /// socket is not open (the error) or the outbound buffer has room and no send
  /// waits before this one (the message is then in the buffer); nullopt
  /// otherwise, for the queued path of send().
  std::optional<std::error_code> send_now(SendKind kind, SocketMessageType type,
                                          std::span<const std::byte> data, bool compress);
  /// [loop] True when a whole message of `size` bytes can go straight into the
  /// connection's output with nothing else to do: inside one of this socket's
  /// event handlers (a flush is due; this socket's lock the innermost one
  /// this thread holds), open, no send waiting, room, not a
  /// direct (zero-copy) write, no message sent in frames unfinished.
  [[nodiscard]] DUPLEX_ALWAYS_INLINE bool whole_send_is_plain(std::size_t size) const noexcept {
    // The lock first: the loop thread's fields are read only on it. Only the
    // innermost lock (no walk): a handler holding another socket's lock takes
    // the slower path.
    return events_.mutex().held_innermost() && in_process_ && phase() == Phase::open &&
           !conn_->close_sent() && !order_.in_message(std::memory_order_relaxed) &&
           sends_.empty() && unsent() < cfg_->outbound_buffer_size &&
           (size < protocol::Connection::direct_min_payload || writing_ || !polled() ||
            wr_ref_queued_ != 0);
  }
  /// The connection (open sessions only).
  [[nodiscard]] protocol::Connection& connection() noexcept { return *conn_; }
  void close(std::uint16_t code, std::string reason, CancellationToken ct, CompletionHandler h);
  /// The order of the frame sends made so far (checked at the call).
  [[nodiscard]] SendOrder& send_order() noexcept { return order_; }
  void read(std::span<std::byte> buffer, CancellationToken ct, CompletionHandler h);

  /// What send_prebuilt() did with a frame.
  enum class PrebuiltResult : std::uint8_t {
    queued,  ///< appended to the output; a flush is scheduled
    full,    ///< not queued: output at or over outbound_buffer_size, or sends wait
    busy,    ///< not queued: a message sent in pieces is unfinished
    closed,  ///< not queued: the session is not open (or its close was sent)
  };
  /// Frames from this size are referenced by the write queue (with a
  /// SharedFrame) rather than copied into the output buffer. Measured with
  /// bench/fanout.py --callgrind (docs/pubsub.md, "Shared frames"): from
  /// 1 KiB a reference costs less than a copy once two deliveries share a
  /// write; at 512 B only from about four.
  static constexpr std::size_t prebuilt_reference_min = 1024;
  /// [loop] Topics fan-out: queues a whole, already encoded server-role
  /// (unmasked) data frame, identical for every subscriber, after the output
  /// queued so far, and counts it as one message sent. Server role only.
  /// With `shared` (the same bytes as `frame`, at least
  /// prebuilt_reference_min of them), a plain TCP connection keeps a
  /// reference to it in its write queue and writes it in place (gathered
  /// with its output buffer); otherwise, and over TLS, the bytes are copied
  /// into the output buffer. Referenced bytes count against the outbound
  /// limit like copied ones. With `flush_list`, no write is scheduled: the
  /// first frame queued since the last flush_prebuilt() adds this session
  /// to the list, and the caller calls flush_prebuilt() once its batch of
  /// deliveries is queued (one write per subscriber per batch, no posted
  /// handler per subscriber).
  PrebuiltResult send_prebuilt(std::span<const std::byte> frame, SharedFrame* shared = nullptr,
                               std::vector<std::shared_ptr<Session>>* flush_list = nullptr);
  /// [loop] Writes what send_prebuilt(frame, list) queued.
  void flush_prebuilt();
  /// [loop] The permessage-deflate parameters agreed (null: none).
  [[nodiscard]] const protocol::DeflateParams* deflate_params() const noexcept {
    return conn_ && conn_->config().deflate ? &*conn_->config().deflate : nullptr;
  }
  /// [loop] Starts the close handshake with `code` (no completion handler).
  void close_on_loop(std::uint16_t code, std::string reason);

  // --- Auto-reconnect (src/reconnect.cpp; MessageWebSocket client only) -------------
  /// [loop] A frame send (kind nonfinal or final) of a message whose head was
  /// lost with a dropped connection: `error::reconnecting` (a final piece ends
  /// that message); nullopt otherwise.
  std::optional<std::error_code> reconnect_piece(SendKind kind);

  /// Server role: adopt an accepted, handshaken stream and start reading
  /// (after the current handler returns). `leftover` is what followed the
  /// request's header block.
  void start_server(transport::Stream stream, std::span<const std::byte> leftover,
                    const ServerSessionOptions& options);
  /// The same for a plain TCP connection's descriptor (non-blocking, owned
  /// from here on) that never entered Asio's reactor: the listener accepted
  /// and handshook it on the loop's poller. It joins the poller when the
  /// session opens.
  void start_server(int fd, std::span<const std::byte> leftover,
                    const ServerSessionOptions& options);
  /// Opens a server session started with `open_later` (on its loop; its
  /// reading is not started: after_open). `leftover`: what followed the
  /// request's header block. Also start_server's own posted step.
  void open_server_now(std::span<const std::byte> leftover, bool post_reading = false);
  /// After become_open (on the loop): the bytes that came with the handshake,
  /// then the read loop. Posted by become_open unless the caller runs it.
  void after_open();

private:
  using Op = SessionOp;
  using Cold = SessionCold;
  struct ConnectState;

  // Loop-side operations.
  void do_connect(std::string uri, Op op);
  void do_send(PendingSend p);
  [[nodiscard]] std::error_code send_state_error() const;
  void do_close(std::uint16_t code, std::string reason, Op op);
  void do_read(std::span<std::byte> buffer, Op op);
  Op make_op(CompletionHandler h, CancellationToken ct);
  void cancel_op(std::uint64_t id);
  void complete(Op& op, std::error_code ec, std::size_t n = 0);
  template <class F>
  void run_on_loop(F&& f);

  // Connect steps [loop].
  void on_tcp_connected(std::error_code ec, transport::TcpSocket socket);
  void on_tunnel_ready(std::error_code ec);
  void start_tls();
  void on_tls_handshake(std::error_code ec);
  void after_validation();
  void send_request();
  void read_response();
  void on_response_bytes(std::error_code ec, std::size_t n);
  void connect_failed(std::error_code ec);
  void become_open(std::span<const std::byte> leftover, bool post_reading = true);
  /// The protocol core's settings for this session's kind and cfg_.
  [[nodiscard]] protocol::ConnectionConfig connection_config(protocol::Role role) const;
  /// Makes conn_ for `role` (with `deflate` when negotiated): it references
  /// settings shared with other connections where it can.
  void make_connection(protocol::Role role, const std::optional<protocol::DeflateParams>& deflate);

  // Data path [loop].
  /// True once a plain TCP or Unix connection is open: its descriptor left
  /// Asio for the loop's poller (fd_); a TLS connection stays in stream_.
  [[nodiscard]] bool polled() const noexcept { return fd_ >= 0; }
  [[nodiscard]] bool has_transport() const noexcept { return fd_ >= 0 || stream_; }
  /// Moves an open plain connection's descriptor from Asio (or fd_, not yet
  /// registered) to the poller.
  std::error_code to_poller();
  /// start_server's common part: settings, endpoints, information.
  void setup_server(transport::TcpSocket* socket, const ServerSessionOptions& options);
  /// start_server's last part: opens after the current handler.
  void open_server(std::span<const std::byte> leftover);
  /// Closes the connection's descriptor (TCP torn down at once).
  void close_transport() noexcept;
  /// Half-closes (TCP FIN); not for TLS.
  void shutdown_send() noexcept;
  void on_poll(std::uint32_t events) override;
  void start_reading();
  /// Polled: one recv into the loop's buffer, or wait for the poller.
  void read_some();
  void on_read(std::error_code ec, std::size_t n);
  /// Polled: sends what write_rest() left, or waits for room.
  void continue_write();
  /// Hands received bytes to the connection, then sends what that queued.
  /// Returns true when a read made meanwhile (receive_read) filled the
  /// loop's buffer: more is likely waiting.
  bool process(std::span<std::byte> data);
  /// process()'s receive: `data` in the loop's read buffer may be completed
  /// by further reads (at most max_hold_reads) so that a large message cut
  /// off at its end is delivered whole, without a copy.
  bool receive_read(std::span<std::byte> data);
  /// receive_read() when the connection held the frame at [begin, end) of the
  /// loop's buffer, `frame_size` bytes long: reads its rest behind it.
  bool complete_held(std::size_t end, std::size_t begin, std::size_t frame_size);
  static constexpr std::size_t max_hold_reads = 8;
  /// Moves queued sends into the output while it has room (inline: once per
  /// read, and the queue is almost always empty).
  void pump_sends() {
    if (!sends_.empty()) pump_queued_sends();
  }
  void pump_queued_sends();
  std::error_code send_one(SendKind kind, SocketMessageType type, std::span<const std::byte> data,
                           bool compress);
  /// The connection call for `kind` (send_message or send_fragment).
  std::error_code queue(SendKind kind, SocketMessageType type, std::span<const std::byte> data,
                        bool compress, protocol::Connection::DirectFrame* direct);
  /// Flushes at the end of this turn of the loop (cork), unless a read's
  /// process() or a write in flight will (inline: once per send).
  DUPLEX_ALWAYS_INLINE void schedule_flush() {
    if (!in_process_ && !writing_ && !flush_scheduled_) post_flush();
  }
  void post_flush();
  /// Writes the output: at once on plain TCP while the kernel takes it, the
  /// rest through write_rest().
  void flush();
  /// Writes begin_write()'s `bytes` from `done` on, asynchronously.
  void write_rest(std::span<const std::byte> bytes, std::size_t done);
  /// Writes the buffered output, then a DirectFrame's header and payload, in
  /// one call; copies what the kernel does not take.
  void write_direct(std::span<const std::byte> header, std::span<const std::byte> payload);
  void on_written(std::error_code ec, std::size_t n);
  [[nodiscard]] std::size_t unsent() const noexcept {
    return (conn_ ? conn_->buffered_amount() : 0) + inflight_ + wr_ref_queued_;
  }
  void deliver_input();
  /// Ends the connection once the close handshake is done and our output is
  /// out (inline: once per read, and the connection is almost always open).
  DUPLEX_ALWAYS_INLINE void maybe_finish_close() {
    if (phase() != Phase::closed && conn_ && conn_->state() == protocol::ConnectionState::closed)
      finish_closed_connection();
  }
  void finish_closed_connection();
  void fail(std::error_code ec);
  /// Our outbound data made no progress for send_timeout: the peer is not
  /// reading. Ends the connection with a close frame (1008) behind what is
  /// queued, reading again to find the peer's answer, bounded by the close
  /// timeout; then TCP is torn down.
  void fail_send_timeout();
  /// The close code we sent when we failed the connection.
  [[nodiscard]] std::uint16_t failure_close_code() const noexcept;
  /// Reading stops while the outbound data is over its limit; this resumes
  /// it (from a posted handler) once the data drained below it.
  DUPLEX_ALWAYS_INLINE void maybe_resume_reading() {
    if (out_paused_) [[unlikely]]
      resume_reading_when_drained();
  }
  void resume_reading_when_drained();
  void finish(std::uint16_t code, std::string reason, std::error_code ec);
  void set_deadline(Clock::time_point& slot, Clock::time_point at);
  void on_deadline(Clock::time_point now) override;
  /// [loop] Publishes the statistics (per read and write; conn_ may be unset).
  DUPLEX_ALWAYS_INLINE void publish_stats() {
    if (conn_) stats_.publish(conn_->stats(), loop_now());
  }
  void note_activity() noexcept { activity_ = true; }

  // ConnectionHandler [loop].
  void on_message(SocketMessageType type, std::span<const std::byte> data, bool complete) override;
  void on_ping(std::span<const std::byte> payload) override;
  void on_pong(std::span<const std::byte> payload) override;
  void on_close(std::uint16_t code, std::string_view reason) override;
  void on_error(std::error_code ec) override;

  void raise_closed(std::uint16_t code, const std::string& reason, std::error_code ec);

  const asio::io_context::executor_type ex_;
  const Kind kind_;
  const protocol::Role role_;
  std::atomic<Phase> phase_{Phase::idle};

public:
  std::atomic<SocketMessageType> message_type{SocketMessageType::binary};

private:
  int fd_ = -1;  ///< [loop] polled(): the descriptor, owned
  // The controls and the information, read from any thread under their own
  // lock (never held together with another lock of the session).
  SessionControls controls_;
  /// [loop] Taken at connect (client) or shared with the listener (server);
  /// never changed after: read from any thread under controls_' lock.
  std::shared_ptr<const LoopSettings> cfg_ = default_settings();
  static const std::shared_ptr<const LoopSettings>& default_settings();

  // The event handlers. No unique address: the two close codes below sit in
  // its tail padding (a session is 8 bytes smaller).
  [[no_unique_address]] SessionEvents events_;
  std::uint16_t peer_code_ = 1005;  ///< [loop]
  std::uint16_t failure_code_ = 0;  ///< [loop] close code sent for failure_ (0: the protocol's)
  using Event = SessionEvents::Event;

  // [loop] connection.
  std::optional<protocol::Connection> conn_;
  std::unique_ptr<transport::Stream> stream_;  ///< until open (TLS: for good)
  std::unique_ptr<ConnectState> connecting_;
  std::unique_ptr<std::byte[]> tls_buffer_;  ///< TLS connections read here (not shared)
  std::span<const std::byte> wr_rest_;       ///< polled: the write waiting for room
  std::size_t wr_done_ = 0;                  ///< polled: bytes of it already sent
  // Referenced frames (send_prebuilt with a SharedFrame; polled only): the
  // marks of where each goes in the output, and the gathered write in flight
  // (src/session.cpp).
  struct RefQueue;
  std::unique_ptr<RefQueue> wr_refs_;  ///< made by the first referenced frame
  std::size_t wr_ref_queued_ = 0;      ///< bytes of wr_refs_->queued (0: none)
  /// send_prebuilt: `frame` goes after the output queued so far, referenced.
  void queue_shared(SharedFrame& frame);
  /// flush() while frames are referenced: one gathered write of the output
  /// and the frames, then the plain path for what was queued meanwhile.
  void flush_gathered();
  /// Moves the queued marks and `bytes` (begin_write()'s) into the gathered
  /// write, then sends; see gather_send().
  bool start_gather(std::span<const std::byte> bytes, std::error_code& ec);
  /// Sends the gathered write on from where it stopped: true when all of it
  /// went; false when the kernel is full (wr_wait_ set) or with `ec`.
  bool gather_send(std::error_code& ec);
  /// The gathered write is over (done or failed): releases its frames.
  void end_gather() noexcept;
  /// Releases every referenced frame (the connection ended).
  void release_refs() noexcept;
  bool reading_ = false;           ///< a read or wait is pending
  bool rd_hup_ = false;            ///< polled: the peer's FIN or an error was reported
  bool rd_wait_ = false;           ///< polled: waiting for input from the poller
  bool wr_wait_ = false;           ///< polled: waiting for room from the poller
  bool read_paused_ = false;       ///< stream input full
  bool out_paused_ = false;        ///< outbound data over its limit: not reading
  bool resume_posted_ = false;     ///< maybe_resume_reading's handler is queued
  bool in_process_ = false;        ///< inside conn_.receive: cork writes
  bool prebuilt_pending_ = false;  ///< send_prebuilt queued: flush_prebuilt() writes
  bool dispatching_ = false;       ///< process() holds the event lock for the read
  bool flush_scheduled_ = false;
  bool writing_ = false;
  bool closed_raised_ = false;
  bool socket_shutdown_ = false;
  bool activity_ = false;
  bool awaiting_pong_ = false;  ///< our keep-alive ping is out: ping_due_ is its pong's deadline
  std::size_t inflight_ = 0;

  std::list<PendingSend> sends_;  ///< (a list holds no memory while empty)
  std::error_code failure_;
  std::unique_ptr<PendingClose> pending_close_;
  SendOrder order_;

  // Stream input [loop]: StreamWebSocket only.
  std::unique_ptr<StreamInput> input_;

  // Auto-reconnect [loop] (src/reconnect.cpp, detail/reconnect.hpp). The
  // session ends its connection as usual (finish, connect_failed); these
  // hooks then decide whether it connects again instead of closing for good.
  struct Reconnect;
  std::unique_ptr<Reconnect> reconnect_;  ///< null unless ReconnectOptions::enable
  /// do_connect: makes reconnect_ when the options ask for it.
  void init_reconnect(const std::string& uri, const SessionConfig& config);
  /// finish: true when the lost connection is re-established instead (the
  /// closed event then waits).
  bool reconnect_after_drop(std::error_code ec);
  /// connect_failed: the next attempt, or giving up.
  void reconnect_after_failed_attempt(std::error_code ec);
  /// become_open: after a reconnect, the reconnected event, then the queue.
  void reconnect_on_open();
  /// send_now while reconnecting: nullopt (queue it) or the error.
  std::optional<std::error_code> reconnect_send_now(SendKind kind) const;
  /// do_send: true when the send was queued or failed for the reconnect.
  bool reconnect_take_send(PendingSend& p);
  /// do_close: no reconnect after this; true when it closed a socket that
  /// was reconnecting (the op is then complete).
  bool reconnect_take_close(Op& op);
  /// cancel_op: true when `id` was a queued send (now complete, aborted).
  bool reconnect_cancel(std::uint64_t id);
  /// detach: no reconnect after this; queued sends complete as aborted.
  void reconnect_detach();
  [[nodiscard]] bool reconnect_waiting() const noexcept;
  [[nodiscard]] bool should_reconnect(std::error_code ec) const;
  void schedule_reconnect();
  void start_reconnect_attempt();
  void reset_for_reconnect();
  void reconnect_give_up(std::error_code ec);
  void enqueue_for_reconnect(PendingSend p);
  void fail_reconnect_queue(std::error_code ec);
  template <class Fn, class Args>
  void raise_reconnect_event(Event event, const Args& args);

  // Deadlines [loop]; max() when unset. The connect deadline is kept in
  // connecting_, a stream read's in input_.
  Clock::time_point write_deadline_ = Clock::time_point::max();
  Clock::time_point close_deadline_ = Clock::time_point::max();
  // Keep-alive [loop] (keep_alive_interval, unsolicited_pong_interval): the
  // next ping is due at ping_due_, or, while awaiting_pong_, its pong is
  // due then (the ping went out keep_alive_timeout before); the next
  // unsolicited pong at pong_due_.
  Clock::time_point ping_due_ = Clock::time_point::max();
  Clock::time_point pong_due_ = Clock::time_point::max();

  SessionStats stats_;  ///< written on the loop, read anywhere

  // Cold state [loop], made when first needed.
  std::unique_ptr<Cold> cold_;
  Cold& cold();
  [[nodiscard]] const std::string& peer_reason() const noexcept;
  /// Moves the waiting close operations out.
  std::vector<Op> take_close_ops() noexcept;
};

}  // namespace duplex::detail
