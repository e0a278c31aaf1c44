// Per-loop timers, the default io_context, the per-thread read buffer.
#include "detail/event_loop.hpp"

#include <duplex/task.hpp>

#include <algorithm>
#include <thread>

#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <asio/executor_work_guard.hpp>

namespace duplex::detail {

LoopTimers::LoopTimers(asio::execution_context& ctx)
    : asio::execution_context::service(ctx),
      timer_(std::make_unique<asio::steady_timer>(static_cast<asio::io_context&>(ctx))) {}

LoopTimers::~LoopTimers() = default;

void LoopTimers::shutdown() {
  stopped_ = true;
  timer_.reset();
  clients_.clear();
}

void LoopTimers::schedule(const std::shared_ptr<TimerClient>& client, Clock::time_point deadline) {
  if (stopped_) return;
  if (!client->timer_registered_) {
    client->timer_registered_ = true;
    clients_.push_back(client);
  }
  if (in_sweep_)
    sweep_min_ = std::min(sweep_min_, deadline);
  else if (deadline < armed_)
    arm(deadline);
}

void LoopTimers::release(TimerClient& client) {
  if (stopped_ || in_sweep_ || !client.timer_registered_) return;
  std::erase_if(clients_, [&](const std::weak_ptr<TimerClient>& w) {
    auto c = w.lock();
    return !c || c.get() == &client;
  });
  client.timer_registered_ = false;
  if (clients_.empty() && armed_ != Clock::time_point::max()) {
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
  auto next = Clock::time_point::max();
  scratch_.swap(clients_);
  clients_.clear();
  for (auto& w : scratch_) {
    auto c = w.lock();
    if (!c) continue;
    c->timer_registered_ = false;
    auto d = c->on_deadline(now);
    if (d != Clock::time_point::max()) {
      if (!c->timer_registered_) {
        c->timer_registered_ = true;
        clients_.push_back(w);
      }
      next = std::min(next, d);
    }
  }
  scratch_.clear();
  in_sweep_ = false;
  next = std::min(next, sweep_min_);
  // 1 ms granularity at least: a deadline in the past fires on the next turn.
  if (next != Clock::time_point::max()) arm(std::max(next, now + std::chrono::milliseconds(1)));
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
  // OpenSSL first: its exit handler then runs after the loop thread is joined.
  static const bool openssl_ready = OPENSSL_init_ssl(0, nullptr) == 1;
  (void)openssl_ready;
  static DefaultLoop loop;
  return loop.context;
}

std::span<std::byte> thread_read_buffer() {
  // 64 KiB: several TCP segments per read, and a 16 KiB TLS record fits 4 times.
  thread_local std::vector<std::byte> buffer(64 * 1024);
  return buffer;
}

}  // namespace duplex::detail
