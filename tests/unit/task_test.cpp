// Task<T>: tasks that are ready from the start (an operation done at the call)
// and tasks completed later, through every way of consuming them.
#include <duplex/task.hpp>

#include <coroutine>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
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

TEST(TaskThen, ReturnsATaskOfTheContinuationsResult) {
  auto [task, state] = pending<int>();
  auto chained = task.then([](int v) { return std::to_string(v); })
                     .then([](std::error_code ec, std::string s) { return ec ? 0 : s.size(); })
                     .then([](std::size_t n) { EXPECT_EQ(n, 3U); });
  static_assert(std::is_same_v<decltype(chained), Task<void>>);
  EXPECT_FALSE(task.valid());  // consumed
  EXPECT_FALSE(chained.is_ready());
  state->set({}, 420);
  ASSERT_TRUE(chained.is_ready());
  EXPECT_NO_THROW(chained.get());

  // A ready task runs the chain at once, on this thread.
  auto now = Task<int>::ready({{}, 7}).then([](int v) { return v * 6; });
  EXPECT_TRUE(now.is_ready());
  EXPECT_EQ(now.get(), 42);
}

TEST(TaskThen, AContinuationReturningATaskIsFlattened) {
  auto [first, first_state] = pending<void>();
  auto [second, second_state] = pending<std::string>();
  auto chained = first.then([&second = second] { return std::move(second); });
  static_assert(std::is_same_v<decltype(chained), Task<std::string>>);
  first_state->set({}, {});
  EXPECT_FALSE(chained.is_ready());  // waits for the returned task
  second_state->set({}, "inner");
  EXPECT_EQ(chained.get(), "inner");

  // The returned task's failure is the chain's failure.
  const auto closed = make_error_code(duplex::error::closed);
  auto failing = Task<void>::ready({}).then([&] { return Task<int>::ready({closed, 0}); });
  EXPECT_EQ(failing.get_result().ec, closed);

  // And a ready returned task completes the chain at once.
  auto ready = Task<void>::ready({}).then([] { return Task<int>::ready({{}, 5}); });
  EXPECT_EQ(ready.get(), 5);
}

TEST(TaskThen, AFailureSkipsValueBasedContinuationsAndReachesTheOthers) {
  const auto timed_out = make_error_code(duplex::error::timed_out);
  auto [task, state] = pending<int>();
  bool value_ran = false;
  std::error_code code_seen;
  auto end = task.then([&](int v) {
                   value_ran = true;
                   return v;
                 })
                 .then([&](std::error_code ec, int v) {
                   code_seen = ec;
                   EXPECT_EQ(v, 0);  // value-initialised on failure
                   if (ec) throw std::system_error(ec);
                   return v;
                 });
  state->fail(timed_out);
  EXPECT_FALSE(value_ran);
  EXPECT_EQ(code_seen, timed_out);
  try {
    end.get();
    ADD_FAILURE() << "get() did not throw";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), timed_out);
  }
}

TEST(TaskThen, AnExceptionInAContinuationReachesTheNextAsGetWouldRaiseIt) {
  auto [task, state] = pending<void>();
  bool value_ran = false;
  bool code_ran = false;
  std::string seen;
  auto end = task.then([] { throw std::runtime_error("continuation failed"); })
                 .then([&] { value_ran = true; })                  // skipped
                 .then([&](std::error_code) { code_ran = true; })  // no code: skipped
                 .then([&](Task<void> previous) {
                   try {
                     previous.get();
                   } catch (const std::runtime_error& e) {
                     seen = e.what();
                     throw;
                   }
                 });
  state->set({}, {});
  EXPECT_FALSE(value_ran);
  EXPECT_FALSE(code_ran);
  EXPECT_EQ(seen, "continuation failed");
  EXPECT_THROW(end.get(), std::runtime_error);

  // A std::system_error reaches a code-based continuation as its code, and
  // get_result() gives it back as a code too.
  const auto closed = make_error_code(duplex::error::closed);
  std::error_code code;
  Task<void>::ready({})
      .then([&] { throw std::system_error(closed); })
      .then([&](std::error_code ec) { code = ec; });
  EXPECT_EQ(code, closed);
  auto as_code = Task<void>::ready({}).then([&] { throw std::system_error(closed); });
  EXPECT_EQ(as_code.get_result().ec, closed);
  auto other = Task<void>::ready({}).then([] { throw std::runtime_error("x"); });
  EXPECT_THROW(other.get_result(), std::runtime_error);
}

TEST(TaskThen, ExceptionReachesACoroutineAsItsGetWould) {
  auto failed = Task<int>::ready({{}, 1}).then([](int) -> int { throw std::runtime_error("co"); });
  bool caught = false;
  [&]() -> Eager {
    try {
      co_await std::move(failed);
    } catch (const std::runtime_error&) {
      caught = true;
    }
  }();
  EXPECT_TRUE(caught);
}

TEST(TaskThen, MisuseThrowsLogicError) {
  Task<void> empty;
  try {
    empty.then([] {});
    ADD_FAILURE() << "then() on an invalid task did not throw";
  } catch (const std::logic_error& e) {
    EXPECT_STREQ(e.what(), "Task::then: the task is not valid (moved from or empty)");
  }
  auto bad = Task<void>::ready({}).then([] { return Task<int>(); });
  try {
    bad.get();
    ADD_FAILURE() << "an invalid returned Task did not fail the chain";
  } catch (const std::logic_error& e) {
    EXPECT_STREQ(e.what(), "Task::then: the continuation returned an invalid Task");
  }
}

// The seed's scenario: connect, then send, then handle errors at the end of the
// chain, as one expression (examples/task_chain.cpp does it on a real socket).
// connect and send stand for MessageWebSocket::connect_async and send_async.
struct FakeSocket {
  std::shared_ptr<duplex::detail::TaskState<void>> connecting, sending;
  bool send_started = false;
  Task<void> connect_async() {
    connecting = std::make_shared<duplex::detail::TaskState<void>>();
    return Task<void>(connecting);
  }
  Task<void> send_async() {
    send_started = true;
    sending = std::make_shared<duplex::detail::TaskState<void>>();
    return Task<void>(sending);
  }
};

std::function<void(Task<void>)> report_into(std::string& outcome) {
  return [&outcome](Task<void> done) {
    try {
      done.get();
      outcome = "sent";
    } catch (const std::system_error& e) {
      outcome = duplex::to_string(duplex::get_status(e.code()));
    }
  };
}

TEST(TaskThen, ConnectThenSendThenHandleErrorsAtTheEndOfTheChain) {
  {
    FakeSocket ws;
    std::string outcome;
    ws.connect_async().then([&] { return ws.send_async(); }).then(report_into(outcome));
    ws.connecting->set({}, {});
    EXPECT_TRUE(ws.send_started);
    EXPECT_EQ(outcome, "");  // the send is still in flight
    ws.sending->set({}, {});
    EXPECT_EQ(outcome, "sent");
  }
  {
    FakeSocket ws;
    std::string outcome;
    ws.connect_async().then([&] { return ws.send_async(); }).then(report_into(outcome));
    ws.connecting->fail(make_error_code(duplex::error::timed_out));
    EXPECT_FALSE(ws.send_started);  // never sent on a failed connect
    EXPECT_EQ(outcome, duplex::to_string(duplex::WebErrorStatus::timeout));
  }
  {
    FakeSocket ws;
    std::string outcome;
    ws.connect_async().then([&] { return ws.send_async(); }).then(report_into(outcome));
    ws.connecting->set({}, {});
    ws.sending->fail(make_error_code(duplex::error::closed));
    EXPECT_EQ(outcome, duplex::to_string(duplex::get_status(duplex::error::closed)));
  }
}

TEST(TaskThen, ChainCompletedOnAnotherThread) {
  auto [task, state] = pending<int>();
  auto chained = task.then([](int v) { return v + 1; });
  std::thread completer([s = state] { s->set({}, 41); });
  EXPECT_EQ(chained.get(), 42);
  completer.join();
}

}  // namespace
