// LoopTimers: the per-loop deadline sweep and its intrusive list of clients.
#include "detail/event_loop.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include <gtest/gtest.h>
#include <asio/io_context.hpp>

namespace {

using duplex::detail::Clock;
using duplex::detail::LoopTimers;
using duplex::detail::TimerClient;
using namespace std::chrono_literals;

struct Client final : TimerClient {
  explicit Client(int& calls_) : calls(calls_) {}
  int& calls;                    ///< outlives the client
  std::function<void()> on_due;  ///< what its deadline does
  void on_deadline(Clock::time_point) override {
    ++calls;
    if (on_due) on_due();
  }
};

// Runs `ctx` until it has no work left, at most 10 s; true if it ran out of work.
bool run_out(asio::io_context& ctx) {
  ctx.run_for(10s);
  return ctx.stopped();
}

TEST(LoopTimers, AClientReleasedOrDestroyedDuringASweepIsNotAsked) {
  asio::io_context ctx{1};
  auto& timers = duplex::detail::loop_timers(ctx);
  int a_calls = 0, b_calls = 0, c_calls = 0;
  auto a = std::make_unique<Client>(a_calls);
  auto b = std::make_unique<Client>(b_calls);
  auto c = std::make_unique<Client>(c_calls);
  const auto due = Clock::now();  // past by the time the loop runs
  timers.schedule(*a, due);
  timers.schedule(*b, due);
  timers.schedule(*c, due);
  // The first asked (whichever it is) releases one of the others, destroys
  // the third and asks to be called once more.
  std::unique_ptr<Client>* clients[] = {&a, &b, &c};
  bool done = false;
  for (auto* self : clients) {
    (*self)->on_due = [&, self] {
      if (std::exchange(done, true)) return;
      std::unique_ptr<Client>* rest[2];
      int n = 0;
      for (auto* other : clients)
        if (other != self) rest[n++] = other;
      timers.release(**rest[0]);
      rest[1]->reset();
      timers.schedule(**self, Clock::now());
    };
  }
  ASSERT_TRUE(run_out(ctx));  // nothing left armed once the first is done
  EXPECT_EQ(a_calls + b_calls + c_calls, 2);
  EXPECT_TRUE(a_calls == 2 || b_calls == 2 || c_calls == 2);
}

TEST(LoopTimers, ADestroyedClientLeavesTheListAndTheLastReleaseDisarms) {
  asio::io_context ctx{1};
  auto& timers = duplex::detail::loop_timers(ctx);
  int calls = 0;
  std::optional<Client> a(std::in_place, calls), b(std::in_place, calls);
  timers.schedule(*a, Clock::now() + 1h);
  timers.schedule(*b, Clock::now() + 1h);
  a.reset();
  timers.release(*b);
  ASSERT_TRUE(run_out(ctx));  // the hour-long wait was cancelled
  EXPECT_EQ(calls, 0);
}

TEST(LoopTimers, AClientMayOutliveItsLoop) {
  int calls = 0;
  std::optional<Client> client(std::in_place, calls);
  {
    asio::io_context ctx{1};
    duplex::detail::loop_timers(ctx).schedule(*client, Clock::now() + 1h);
  }  // the service shuts down and goes: the client no longer points into it
  client.reset();
  EXPECT_EQ(calls, 0);
}

}  // namespace
