// Per-loop poller and timers, the default io_context, the per-thread read buffer.
#include "detail/event_loop.hpp"
#include "detail/syscalls.hpp"

#include <duplex/task.hpp>

#include <algorithm>
#include <cerrno>
#include <stdexcept>
#include <thread>
#include <utility>

#include <unistd.h>

#include <openssl/crypto.h>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>

namespace duplex::detail {

// --- LoopPoller ----------------------------------------------------------------------------

LoopPoller::LoopPoller(asio::execution_context& ctx) : asio::execution_context::service(ctx) {
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0)
    throw std::system_error(errno, std::system_category(), "duplex: epoll_create1 failed");
  // The io_context's own reactor watches the set as one descriptor (it owns
  // and closes it).
  wait_ =
      std::make_unique<asio::posix::stream_descriptor>(static_cast<asio::io_context&>(ctx), epfd_);
}

// Also here: a lookup between shutdown() and destruction may have been stored.
LoopPoller::~LoopPoller() {
  loop_services_epoch.fetch_add(1);
}

void LoopPoller::shutdown() {
  stopped_ = true;
  loop_services_epoch.fetch_add(1);
  // The owners of registered clients may hold sockets of this loop: release
  // them (their descriptors close with them) before the reactor goes.
  std::vector<std::shared_ptr<void>> keep;
  for (auto* c = head_; c != nullptr;) {
    auto* next = c->poll_next_;
    c->poll_prev_ = c->poll_next_ = nullptr;
    keep.push_back(std::move(c->poll_keep_));
    c = next;
  }
  head_ = nullptr;
  count_ = 0;
  keep.clear();
  released_.clear();
  dropping_.clear();
  wait_.reset();
}

std::error_code LoopPoller::add(int fd, PollClient& client, std::shared_ptr<void> keep) {
  if (stopped_) return std::make_error_code(std::errc::operation_canceled);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = &client;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) return {errno, std::system_category()};
  client.poll_keep_ = std::move(keep);
  client.poll_prev_ = nullptr;
  client.poll_next_ = head_;
  if (head_ != nullptr) head_->poll_prev_ = &client;
  head_ = &client;
  ++count_;
  arm();
  return {};
}

void LoopPoller::remove_and_close(int fd, PollClient& client) noexcept {
  // Closing the descriptor takes it out of the set (it is not shared).
  sys_close(fd);
  if (stopped_ || !client.poll_keep_) return;
  unlink(client);
}

std::error_code LoopPoller::remove(int fd, PollClient& client) noexcept {
  if (stopped_ || !client.poll_keep_) return {};
  std::error_code ec;
  if (::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr) != 0) ec = {errno, std::system_category()};
  unlink(client);
  return ec;
}

void LoopPoller::unlink(PollClient& client) noexcept {
  // An event of this client may still wait later in the batch being
  // dispatched: dispatch() skips it, as the client no longer holds its owner
  // (alive until the batch ends, in released_).
  if (client.poll_prev_ != nullptr)
    client.poll_prev_->poll_next_ = client.poll_next_;
  else
    head_ = client.poll_next_;
  if (client.poll_next_ != nullptr) client.poll_next_->poll_prev_ = client.poll_prev_;
  client.poll_prev_ = client.poll_next_ = nullptr;
  --count_;
  release_later(std::move(client.poll_keep_));
  // No descriptor left: no wait either, so a user's io_context whose
  // connections all ended has nothing pending (its run() may return).
  if (count_ == 0 && waiting_) wait_->cancel();
}

void LoopPoller::release_later(std::shared_ptr<void> keep) {
  released_.push_back(std::move(keep));
  if (batch_count_ != 0 || release_posted_) return;  // dispatch() releases after its batch
  release_posted_ = true;
  asio::post(static_cast<asio::io_context&>(context()), [this] {
    release_posted_ = false;
    drop_released();
  });
}

void LoopPoller::drop_released() noexcept {
  // Swapped out first: a destructor may release another owner.
  released_.swap(dropping_);
  dropping_.clear();
}

void LoopPoller::arm() {
  if (waiting_ || count_ == 0 || stopped_) return;
  waiting_ = true;
  wait_->async_wait(asio::posix::descriptor_base::wait_read, [this](std::error_code ec) {
    waiting_ = false;
    if (stopped_) return;
    if (!ec) dispatch();
    // Cancelled (the set emptied) or done: wait again if anything is
    // registered. A full batch leaves more ready: Asio's wait re-checks the
    // set's readiness when it starts, so the next batch follows at once.
    arm();
  });
}

void LoopPoller::dispatch() {
  const int n = ::epoll_wait(epfd_, batch_.data(), batch_size, 0);
  if (n <= 0) return;
  batch_count_ = n;
  loop_tls::batch_now = Clock::now();
  for (int i = 0; i < n; ++i) {
    auto& ev = batch_[static_cast<std::size_t>(i)];
    // Removed earlier in this batch: its owner is no longer kept (but alive).
    auto* client = static_cast<PollClient*>(ev.data.ptr);
    if (client->poll_keep_) client->on_poll(ev.events);
  }
  batch_count_ = 0;
  loop_tls::batch_now = {};
  // Owners released during the batch: destroyed now, outside their calls.
  drop_released();
}

LoopTimers::LoopTimers(asio::execution_context& ctx)
    : asio::execution_context::service(ctx),
      timer_(std::make_unique<asio::steady_timer>(static_cast<asio::io_context&>(ctx))) {}

LoopTimers::~LoopTimers() {
  loop_services_epoch.fetch_add(1);
}

void LoopTimers::shutdown() {
  stopped_ = true;
  loop_services_epoch.fetch_add(1);
  timer_.reset();
  // The clients may outlive the service: none points into it any more.
  while (clients_ != nullptr) clients_->timer_unlink();
  while (pending_ != nullptr) pending_->timer_unlink();
}

void LoopTimers::link(TimerClient*& head, TimerClient& client) noexcept {
  client.timer_next_ = head;
  client.timer_pprev_ = &head;
  if (head != nullptr) head->timer_pprev_ = &client.timer_next_;
  head = &client;
}

void LoopTimers::schedule(TimerClient& client, Clock::time_point deadline) {
  if (stopped_) return;
  if (!client.timer_linked()) link(clients_, client);
  if (in_sweep_)
    sweep_min_ = std::min(sweep_min_, deadline);
  else if (deadline < armed_)
    arm(deadline);
}

void LoopTimers::release(TimerClient& client) {
  if (stopped_ || !client.timer_linked()) return;
  client.timer_unlink();
  if (clients_ == nullptr && !in_sweep_ && armed_ != Clock::time_point::max()) {
    armed_ = Clock::time_point::max();
    timer_->cancel();
  }
}

void LoopTimers::arm(Clock::time_point at) {
  armed_ = at;
  timer_->expires_at(at);
  timer_->async_wait([this, at](std::error_code ec) {
    if (ec || stopped_ || at != armed_) return;
    on_timer();
  });
}

void LoopTimers::on_timer() {
  armed_ = Clock::time_point::max();
  in_sweep_ = true;
  sweep_min_ = Clock::time_point::max();
  const auto now = Clock::now();
  // Every client is asked once: the list moves to pending_, and each client
  // leaves it before its call and schedules itself again into clients_ if
  // something is left. A client released or destroyed meanwhile simply
  // leaves whichever list it is in.
  pending_ = std::exchange(clients_, nullptr);
  if (pending_ != nullptr) pending_->timer_pprev_ = &pending_;
  while (pending_ != nullptr) {
    TimerClient& c = *pending_;
    c.timer_unlink();
    c.on_deadline(now);  // may destroy c
  }
  in_sweep_ = false;
  // 1 ms granularity at least: a deadline in the past fires on the next turn.
  if (sweep_min_ != Clock::time_point::max())
    arm(std::max(sweep_min_, now + std::chrono::milliseconds(1)));
}

loop_tls::Services& loop_services_slow(asio::io_context& ctx) noexcept {
  auto& s = loop_tls::services;
  // The epoch first: a shutdown after this read voids what is stored now.
  s = {&ctx, loop_services_epoch.load(), nullptr, nullptr};
  return s;
}

namespace {

struct DefaultLoop {
  asio::io_context context{1};
  asio::executor_work_guard<asio::io_context::executor_type> work{context.get_executor()};
  std::thread thread{[this] {
    on_event_loop = true;
    context.run();
    // The thread's OpenSSL state (random generator, error queue) goes with it.
    OPENSSL_thread_stop();
  }};
  ~DefaultLoop() {
    work.reset();
    context.stop();
    if (thread.joinable()) thread.join();
  }
};

}  // namespace

asio::io_context& default_io_context() {
  // OpenSSL first: its exit handler (registered by the first initialisation of
  // its crypto library, which libssl's shares) then runs after the loop thread
  // is joined. TLS itself initialises on first use (SSL_CTX_new). The option
  // matters: OPENSSL_init_crypto(0) returns at once without registering
  // anything (no option is missing), which made a wss:// client hang at exit
  // in 1 run of about 20 (the loop thread freeing TLS state on locks the
  // cleanup had destroyed).
  static const bool openssl_ready = OPENSSL_init_crypto(OPENSSL_INIT_ADD_ALL_DIGESTS, nullptr) == 1;
  (void)openssl_ready;
  static DefaultLoop loop;
  return loop.context;
}

std::span<std::byte> thread_read_buffer_slow() {
  // 512 KiB: a read takes several large messages whole (a message that spans
  // two reads is copied to be reassembled; with 64 KiB, every 64 KiB message
  // did, at about 1.5 instructions per byte), and a peer streaming large
  // messages costs half the recv calls of 256 KiB (0.26 instead of 0.61 per
  // 64 KiB message, about 5 % more echoes per second: bench/run.py
  // --wallclock; the minimal epoll echo reads 512 KiB too). Only the pages a
  // read fills are touched, so small messages pay nothing for the size (nor
  // for the reserve behind it, touched only by the rest of a large message).
  thread_local const std::unique_ptr<std::byte[]> buffer(
      new std::byte[thread_read_buffer_size + thread_read_buffer_reserve]);
  loop_tls::read_buffer = buffer.get();
  return {buffer.get(), thread_read_buffer_size};
}

}  // namespace duplex::detail
