// EventMutex: the loop-biased lock of a socket's event handlers.
#include "detail/event_mutex.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace {

using duplex::detail::EventMutex;
using namespace std::chrono_literals;

TEST(EventMutex, DispatchReentersOnItsOwnThread) {
  EventMutex m;
  EXPECT_FALSE(m.held_here());
  {
    EventMutex::DispatchGuard d(m);
    EXPECT_TRUE(m.held_here());
    // A handler registering or revoking on the same socket: no deadlock.
    EventMutex::Guard g(m);
    EventMutex::DispatchGuard nested(m);
    EXPECT_TRUE(m.held_here());
  }
  EXPECT_FALSE(m.held_here());
}

TEST(EventMutex, NestedLocksOfTwoSocketsAreTrackedApart) {
  EventMutex a, b;
  EventMutex::DispatchGuard da(a);
  {
    EventMutex::DispatchGuard db(b);
    EXPECT_TRUE(a.held_here());
    EXPECT_TRUE(b.held_here());
    EventMutex::Guard ga(a);  // b's handler touches a: re-entered, not locked
  }
  EXPECT_TRUE(a.held_here());
  EXPECT_FALSE(b.held_here());
}

TEST(EventMutex, RetiredHandlerLivesUntilTheOutermostGuardEnds) {
  EventMutex m;
  auto handler = std::make_shared<int>(7);
  std::weak_ptr<int> weak = handler;
  {
    EventMutex::DispatchGuard d(m);
    {
      EventMutex::Guard g(m);  // nested: the handler revokes itself
      m.retire(std::move(handler));
    }
    EXPECT_FALSE(weak.expired());  // still running
  }
  EXPECT_TRUE(weak.expired());
}

TEST(EventMutex, AChangeFromAnotherThreadWaitsForTheRunningHandlers) {
  EventMutex m;
  std::atomic<bool> in_handler{false}, handler_done{false}, changed{false};
  std::thread loop([&] {
    EventMutex::DispatchGuard d(m);
    in_handler = true;
    std::this_thread::sleep_for(50ms);  // a slow handler
    EXPECT_FALSE(changed.load());
    handler_done = true;
  });
  while (!in_handler) std::this_thread::yield();
  {
    EventMutex::Guard g(m);  // waits for the handler to return
    EXPECT_TRUE(handler_done.load());
    changed = true;
  }
  loop.join();
}

TEST(EventMutex, AnEventMeetingAWaitingChangeRunsAfterIt) {
  EventMutex m;
  std::atomic<bool> holding{false}, release{false}, dispatched{false};
  std::thread other([&] {
    EventMutex::Guard g(m);
    holding = true;
    while (!release) std::this_thread::yield();
  });
  while (!holding) std::this_thread::yield();
  std::thread loop([&] {
    EventMutex::DispatchGuard d(m);  // must wait for the change
    dispatched = true;
  });
  std::this_thread::sleep_for(30ms);
  EXPECT_FALSE(dispatched.load());
  release = true;
  other.join();
  loop.join();
  EXPECT_TRUE(dispatched.load());
}

// Many events on one thread, changes from two others: every change sees no
// handler running, bounded in count.
TEST(EventMutex, EventsAndChangesNeverOverlap) {
  EventMutex m;
  std::atomic<int> inside{0};  // how many hold the lock now
  std::atomic<int> overlaps{0};
  auto critical = [&] {
    if (inside.fetch_add(1) != 0) ++overlaps;
    for (int k = 0; k < 20; ++k) (void)inside.load();  // widen the window
    inside.fetch_sub(1);
  };
  constexpr int events = 200'000, changes = 2'000;
  std::thread loop([&] {
    for (int i = 0; i < events; ++i) {
      EventMutex::DispatchGuard d(m);
      critical();
    }
  });
  std::vector<std::thread> changers;
  for (int t = 0; t < 2; ++t)
    changers.emplace_back([&] {
      for (int i = 0; i < changes; ++i) {
        EventMutex::Guard g(m);
        critical();
      }
    });
  loop.join();
  for (auto& t : changers) t.join();
  EXPECT_EQ(overlaps.load(), 0);
}

}  // namespace
