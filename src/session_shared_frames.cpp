// session_shared_frames.cpp: topics' fan-out into a session: whole frames
// encoded once for every subscriber, copied into the output or, from
// prebuilt_reference_min bytes on plain TCP, referenced by the write queue and
// sent in place with one gathered write (detail/session.hpp).
#include "detail/session.hpp"
#include "detail/session_impl.hpp"
#include "detail/syscalls.hpp"

#include <algorithm>

#include <sys/socket.h>
#include <sys/uio.h>

namespace duplex::detail {

Session::PrebuiltResult Session::send_prebuilt(std::span<const std::byte> frame,
                                               SharedFrame* shared,
                                               std::vector<std::shared_ptr<Session>>* flush_list) {
  if (phase() != Phase::open || conn_->close_sent()) return PrebuiltResult::closed;
  // Waiting sends mean the output is already over its limit.
  if (!sends_.empty() || unsent() >= cfg_->outbound_buffer_size) return PrebuiltResult::full;
  // RFC 6455 5.4: no other data frame may go between the pieces of a message.
  if (order_.in_message(std::memory_order_relaxed)) return PrebuiltResult::busy;
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

// --- the gathered write --------------------------------------------------------------------

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
  stats_.count_sent(n);
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

}  // namespace duplex::detail
