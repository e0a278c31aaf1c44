// session_close.cpp: how a session's connection ends: the close handshake,
// failures, and the deadlines and keep-alive that end it when the peer goes
// quiet (detail/session.hpp).
#include "detail/session.hpp"
#include "detail/session_impl.hpp"

#include <algorithm>
#include <utility>

#include <duplex/protocol/close.hpp>

#include "detail/connect_state.hpp"

namespace duplex::detail {

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

// --- the peer's close, pong and errors ------------------------------------------------------

void Session::on_ping(std::span<const std::byte>) {}

void Session::on_pong(std::span<const std::byte>) {
  if (!awaiting_pong_) return;
  const auto now = Clock::now();
  const auto sent_at = ping_due_ - cfg_->keep_alive_timeout;
  {
    auto lock = controls_.lock();
    controls_.info_locked().rtt =
        std::chrono::duration_cast<std::chrono::microseconds>(now - sent_at);
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

}  // namespace duplex::detail
