// Automatic reconnection of a client MessageWebSocket: the backoff schedule and
// the session's hooks (see detail/reconnect.hpp and ReconnectOptions).
//
// The session is restarted in place: the public socket, its controls and its
// handlers keep the one Session, so nothing that holds it has to follow a swap.
// A lost connection ends as usual (finish, connect_failed); the hooks below
// then keep the closed event back, wait out the backoff on a timer, clear the
// connection's state and run the connect steps again with the same URI and
// settings.
#include "detail/reconnect.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>

#include <asio/post.hpp>

#include <duplex/protocol/close.hpp>

namespace duplex::detail {

using std::chrono::milliseconds;

// --- options and backoff ----------------------------------------------------------------------

void check_reconnect_options(const ReconnectOptions& o) {
  if (o.initial_delay.count() <= 0)
    throw std::invalid_argument("reconnect: initial_delay must be greater than zero");
  if (o.max_delay < o.initial_delay)
    throw std::invalid_argument("reconnect: max_delay must be at least initial_delay");
  // Written to refuse NaN too.
  if (!(o.jitter >= 0.0 && o.jitter <= 1.0))
    throw std::invalid_argument("reconnect: jitter must be between 0 and 1");
  if (o.send_policy != ReconnectSendPolicy::fail && o.send_policy != ReconnectSendPolicy::queue)
    throw std::invalid_argument("reconnect: send_policy must be fail or queue");
  if (o.send_policy == ReconnectSendPolicy::queue) {
    if (o.max_queued_messages == 0)
      throw std::invalid_argument(
          "reconnect: max_queued_messages must be greater than zero with "
          "ReconnectSendPolicy::queue");
    if (o.max_queued_bytes == 0)
      throw std::invalid_argument(
          "reconnect: max_queued_bytes must be greater than zero with ReconnectSendPolicy::queue");
  }
}

ReconnectBackoff::ReconnectBackoff(const ReconnectOptions& o)
    : initial_(o.initial_delay),
      max_(o.max_delay),
      jitter_(o.jitter),
      random_(o.jitter_seed != 0 ? o.jitter_seed : std::random_device{}()) {}

milliseconds ReconnectBackoff::base_delay(const ReconnectOptions& o, std::size_t attempt) noexcept {
  auto d = std::max(o.initial_delay, milliseconds(1));
  // Doubling stops at the cap (at most 63 times: the cap fits in 63 bits).
  for (std::size_t i = 1; i < attempt && d < o.max_delay; ++i)
    d = d.count() > o.max_delay.count() / 2 ? o.max_delay : d * 2;
  return std::min(d, o.max_delay);
}

milliseconds ReconnectBackoff::next(std::size_t attempt) {
  ReconnectOptions o;
  o.initial_delay = initial_;
  o.max_delay = max_;
  const auto base = base_delay(o, attempt);
  const auto spread = static_cast<std::int64_t>(static_cast<double>(base.count()) * jitter_);
  std::int64_t cut = 0;
  if (spread > 0) cut = std::uniform_int_distribution<std::int64_t>(0, spread)(random_);
  // At least 1 ms: the lost connection's completions run before the attempt.
  return std::max(milliseconds(1), base - milliseconds(cut));
}

// --- events ------------------------------------------------------------------------------------

// Raises one event to its handlers (under the event lock), as raise_closed
// does; a handler may revoke, close or destroy the socket.
template <class Fn, class Args>
void Session::raise_reconnect_event(Event event, const Args& args) {
  EventMutex::DispatchGuard lock(events_.mutex());
  if (events_.detached()) return;
  EventLoopScope scope;
  events_.template each<Fn>(
      event, [&](const Fn& f) { f(*static_cast<MessageWebSocket*>(events_.owner()), args); });
}

// --- hooks -------------------------------------------------------------------------------------

void Session::init_reconnect(const std::string& uri, const SessionConfig& config) {
  if (reconnect_ || !config.reconnect.enable || kind_ != Kind::message ||
      role_ != protocol::Role::client)
    return;
  reconnect_ = std::make_unique<Reconnect>(ex_, uri, config.reconnect);
}

bool Session::reconnect_waiting() const noexcept {
  return reconnect_ && reconnect_->waiting;
}

bool Session::should_reconnect(std::error_code ec) const {
  namespace cc = protocol::close_code;
  if (conn_ && conn_->close_received()) {
    // The server closed: only the codes that say "come back" are reconnected
    // (RFC 6455 7.4.1 1001 going away, 1011 internal error; IANA 1012 service
    // restart, 1013 try again later, 1014 bad gateway). Any other code refused
    // something of ours that a new connection would repeat.
    switch (peer_code_) {
      case cc::going_away:
      case cc::internal_error:
      case cc::service_restart:
      case cc::try_again_later:
      case cc::bad_gateway: return true;
      default: return false;
    }
  }
  if (!ec) return false;
  // A peer that stopped reading or answering may be back after a restart.
  if (ec == make_error_code(error::timed_out) || ec == make_error_code(error::dead_peer))
    return true;
  // Lost (1006); a protocol error we found in the server's data keeps its code.
  return failure_close_code() == cc::abnormal;
}

bool Session::reconnect_after_drop(std::error_code ec) {
  auto& r = *reconnect_;
  if (r.waiting) return true;
  if (r.stopped || events_.detached() || (cold_ && !cold_->close_ops.empty()) || pending_close_ ||
      !should_reconnect(ec))
    return false;
  r.waiting = true;
  r.attempt = 0;
  r.last_error = ec ? ec : make_error_code(error::closed);
  // Sends that waited for room go first into the queue, in their order.
  auto waiting = std::move(sends_);
  sends_.clear();
  for (auto& p : waiting) {
    if (p.offset != 0) {
      // Partly written (a stream write): its rest cannot follow on a new connection.
      complete(p.op, r.last_error, p.offset);
      continue;
    }
    enqueue_for_reconnect(std::move(p));
  }
  schedule_reconnect();
  return true;
}

void Session::schedule_reconnect() {
  auto& r = *reconnect_;
  ++r.attempt;
  if (r.options.max_attempts != 0 && r.attempt > r.options.max_attempts)
    return reconnect_give_up(r.last_error);
  const auto delay = r.backoff.next(r.attempt);
  raise_reconnect_event<SessionEvents::ReconnectingFn>(
      Event::reconnecting, WebSocketReconnectingEventArgs(r.attempt, delay, r.last_error));
  // A handler closed or destroyed the socket: reconnecting ended there.
  if (!r.waiting) return;
  r.timer.expires_after(delay);
  std::weak_ptr<Session> weak = weak_from_this();
  r.timer.async_wait([weak](std::error_code ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->start_reconnect_attempt();
  });
}

void Session::start_reconnect_attempt() {
  auto& r = *reconnect_;
  if (!r.waiting || events_.detached() || connecting_ || phase() != Phase::closed) return;
  // A polled connection left the poller when it closed (nothing of it runs
  // again); an Asio stream's operations (TLS, or not yet polled) complete,
  // aborted, in the loop turns after it closed, long before a backoff delay
  // ends. Should one still be pending, it runs first: it must not meet the
  // new connection.
  const bool pending = (stream_ && (reading_ || writing_)) || flush_scheduled_ || resume_posted_;
  if (pending && r.drain_turns < 1000) {
    ++r.drain_turns;
    asio::post(ex_, [weak = weak_from_this()] {
      if (auto self = weak.lock()) self->start_reconnect_attempt();
    });
    return;
  }
  r.drain_turns = 0;
  reset_for_reconnect();
  do_connect(r.uri, Op{});
}

void Session::reset_for_reconnect() {
  close_transport();  // already closed by finish or connect_failed: a no-op
  stream_.reset();
  conn_.reset();
  wr_rest_ = {};
  wr_done_ = 0;
  release_refs();
  reading_ = rd_hup_ = rd_wait_ = wr_wait_ = false;
  read_paused_ = out_paused_ = resume_posted_ = in_process_ = dispatching_ = prebuilt_pending_ =
      false;
  flush_scheduled_ = writing_ = false;
  inflight_ = 0;
  closed_raised_ = false;
  socket_shutdown_ = false;
  peer_code_ = protocol::close_code::no_status;
  if (cold_) cold_->peer_reason.clear();
  failure_ = {};
  failure_code_ = 0;
  activity_ = false;
  if (cold_) cold_->leftover.clear();
  // information() describes the current connection: its counters start again.
  stats_.reset();
  controls_.clear_information();
}

void Session::reconnect_after_failed_attempt(std::error_code ec) {
  auto& r = *reconnect_;
  if (!r.waiting) return;  // the first connect_async is not retried
  r.last_error = ec;
  schedule_reconnect();
}

void Session::reconnect_give_up(std::error_code ec) {
  auto& r = *reconnect_;
  r.waiting = false;
  r.timer.cancel();
  fail_reconnect_queue(ec);
  closed_raised_ = false;  // connect_failed raises none; this is the socket's end
  raise_closed(protocol::close_code::abnormal, {}, ec);
}

void Session::reconnect_on_open() {
  auto& r = *reconnect_;
  if (!r.waiting) return;  // the first connect
  const auto attempt = r.attempt;
  r.waiting = false;
  r.attempt = 0;
  r.last_error = {};
  // RFC 6455 5.4: the new connection has no message open; the pieces still
  // to come of one begun on the lost connection must not start one.
  r.drop_pieces = order_.in_message();
  // Before the queue: what the handlers send (resubscribe, authenticate)
  // leaves first, since sends_ is still empty.
  raise_reconnect_event<SessionEvents::ReconnectedFn>(Event::reconnected,
                                                      WebSocketReconnectedEventArgs(attempt));
  auto queued = std::move(r.queue);
  r.queue.clear();
  r.queued_bytes = 0;
  if (queued.empty()) return;
  if (auto ec = send_state_error()) {
    // A handler closed (or destroyed) the socket: the queue does not leave.
    for (auto& p : queued) complete(p.op, ec);
    return;
  }
  // The queued sends now wait for room as any send does, from now on.
  const auto deadline = Clock::now() + cfg_->send_timeout;
  for (auto& p : queued) {
    p.deadline = deadline;
    sends_.push_back(std::move(p));
  }
  loop_timers(ex_.context()).schedule(*this, deadline);
  pump_sends();
}

std::optional<std::error_code> Session::reconnect_send_now(SendKind kind) const {
  // nullopt: the send takes the path with an operation, where do_send queues it.
  if (kind == SendKind::whole && reconnect_->options.send_policy == ReconnectSendPolicy::queue)
    return std::nullopt;
  return make_error_code(error::reconnecting);
}

std::optional<std::error_code> Session::reconnect_piece(SendKind kind) {
  if (!reconnect_ || kind == SendKind::whole || !reconnect_->drop_pieces) return std::nullopt;
  if (kind == SendKind::final) reconnect_->drop_pieces = false;
  return make_error_code(error::reconnecting);
}

bool Session::reconnect_take_send(PendingSend& p) {
  if (!p.stream_write) {
    if (auto ec = reconnect_piece(p.kind)) {
      complete(p.op, *ec);
      return true;
    }
  }
  if (!reconnect_->waiting) return false;
  enqueue_for_reconnect(std::move(p));
  return true;
}

void Session::enqueue_for_reconnect(PendingSend p) {
  auto& r = *reconnect_;
  // A piece of a message cannot be resent alone, nor a stream write's rest.
  if (r.options.send_policy == ReconnectSendPolicy::fail || p.kind != SendKind::whole ||
      p.stream_write)
    return complete(p.op, make_error_code(error::reconnecting));
  if (r.queue.size() >= r.options.max_queued_messages ||
      p.view.size() > r.options.max_queued_bytes - r.queued_bytes)
    return complete(p.op, make_error_code(error::reconnect_queue_full));
  if (p.data.empty() && !p.view.empty()) {
    // A send from the loop thread still points at the caller's bytes.
    p.data.assign(p.view.begin(), p.view.end());
    p.view = p.data;
  }
  r.queued_bytes += p.view.size();
  r.queue.push_back(std::move(p));
}

void Session::fail_reconnect_queue(std::error_code ec) {
  auto& r = *reconnect_;
  auto queued = std::move(r.queue);
  r.queue.clear();
  r.queued_bytes = 0;
  for (auto& p : queued) complete(p.op, ec);
}

bool Session::reconnect_cancel(std::uint64_t id) {
  auto& r = *reconnect_;
  for (auto it = r.queue.begin(); it != r.queue.end(); ++it) {
    if (it->op.id != id) continue;
    auto p = std::move(*it);
    r.queue.erase(it);
    r.queued_bytes -= p.view.size();
    complete(p.op, make_error_code(error::operation_aborted));
    return true;
  }
  return false;
}

bool Session::reconnect_take_close(Op& op) {
  auto& r = *reconnect_;
  r.stopped = true;
  if (!r.waiting) return false;
  // Disconnected: nothing is left to close, and reconnecting ends here.
  r.waiting = false;
  r.timer.cancel();
  if (connecting_) connect_failed(make_error_code(error::operation_aborted));
  fail_reconnect_queue(make_error_code(error::closed));
  complete(op, {});
  closed_raised_ = false;
  raise_closed(protocol::close_code::abnormal, {}, r.last_error);
  return true;
}

void Session::reconnect_detach() {
  auto& r = *reconnect_;
  r.stopped = true;
  if (!r.waiting) return;
  r.waiting = false;
  r.timer.cancel();
  fail_reconnect_queue(make_error_code(error::operation_aborted));
  // An attempt in progress is failed by detach() itself (connect_failed).
}

}  // namespace duplex::detail
