// Task<T>: tasks that are ready from the start (an operation done at the call)
// and tasks completed later, through every way of consuming them.
#include <duplex/task.hpp>

#include <coroutine>
#include <exception>
#include <memory>
#include <string>
#include <system_error>
#include <thread>

#include <gtest/gtest.h>

#include <duplex/error.hpp>

namespace {

using duplex::Result;
using duplex::Task;

// A coroutine type that starts at once and runs to the end without a loop.
struct Eager {
  struct promise_type {
    Eager get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() { std::terminate(); }
  };
};

template <class T>
std::pair<Task<T>, std::shared_ptr<duplex::detail::TaskState<T>>> pending() {
  auto state = std::make_shared<duplex::detail::TaskState<T>>();
  return {Task<T>(state), state};
}

TEST(Task, ReadyVoidTaskGivesItsCodeEveryWay) {
  const auto closed = make_error_code(duplex::error::closed);
  auto ok = Task<void>::ready({});
  EXPECT_TRUE(ok.valid());
  EXPECT_TRUE(ok.is_ready());
  EXPECT_NO_THROW(ok.get());

  auto bad = Task<void>::ready({closed});
  EXPECT_EQ(bad.get_result().ec, closed);

  std::error_code seen;
  bool called = false;
  Task<void>::ready({closed}).then([&](std::error_code ec) {
    called = true;
    seen = ec;
  });
  EXPECT_TRUE(called);  // at once, on this thread
  EXPECT_EQ(seen, closed);

  auto failing = Task<void>::ready({closed});
  EXPECT_THROW(failing.get(), std::system_error);
}

TEST(Task, ReadyTaskDoesNotSuspendACoroutine) {
  const auto closed = make_error_code(duplex::error::closed);
  bool ran_to_end = false;
  std::error_code seen;
  [&]() -> Eager {
    co_await Task<void>::ready({});
    auto r = co_await Task<void>::ready({closed}).as_result();
    seen = r.ec;
    ran_to_end = true;
  }();
  EXPECT_TRUE(ran_to_end);
  EXPECT_EQ(seen, closed);
}

TEST(Task, ReadyTaskWithAValue) {
  auto t = Task<std::string>::ready({{}, "payload"});
  EXPECT_EQ(t.get(), "payload");
  std::string via_then;
  Task<std::string>::ready({{}, "then"}).then([&](std::error_code, std::string v) {
    via_then = std::move(v);
  });
  EXPECT_EQ(via_then, "then");
}

TEST(Task, MovedFromTaskIsNotValid) {
  auto a = Task<void>::ready({});
  Task<void> b = std::move(a);
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): the state moved
  EXPECT_TRUE(b.valid());
  Task<void> c;
  EXPECT_FALSE(c.valid());
  c = std::move(b);
  EXPECT_FALSE(b.valid());  // NOLINT(bugprone-use-after-move)
  EXPECT_TRUE(c.is_ready());
}

TEST(Task, PendingTaskCompletesLaterOnAnotherThread) {
  auto [task, state] = pending<void>();
  EXPECT_FALSE(task.is_ready());
  std::thread completer([s = state] { s->set(make_error_code(duplex::error::timed_out), {}); });
  EXPECT_EQ(task.get_result().ec, make_error_code(duplex::error::timed_out));
  completer.join();
}

TEST(Task, ContinuationOfAPendingTaskRunsWhenItCompletes) {
  auto [task, state] = pending<int>();
  int seen = 0;
  task.then([&](std::error_code ec, int v) { seen = ec ? -1 : v; });
  EXPECT_EQ(seen, 0);
  state->set({}, 42);
  EXPECT_EQ(seen, 42);
}

TEST(Task, BlockingOnAPendingTaskOnTheLoopThrowsButAReadyOneReturns) {
  duplex::detail::EventLoopScope on_loop;
  auto [task, state] = pending<void>();
  EXPECT_THROW(task.get_result(), std::logic_error);
  EXPECT_NO_THROW(Task<void>::ready({}).get());
}

}  // namespace
