// EventMutex: the loop-biased lock of a socket's event handlers.
#include "detail/event_mutex.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
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

using Node = EventMutex::HandlerOf<std::shared_ptr<int>>;

// The ids of list `i`'s handlers that are not revoked, in order.
std::vector<std::uint64_t> live(const EventMutex& m, std::size_t i) {
  std::vector<std::uint64_t> ids;
  for (auto* h = m.head(i); h != nullptr; h = h->next)
    if (!h->revoked) ids.push_back(h->id);
  return ids;
}

TEST(EventMutex, RevokedHandlerLivesUntilTheOutermostGuardEnds) {
  EventMutex m;
  auto payload = std::make_shared<int>(7);
  std::weak_ptr<int> weak = payload;
  auto* h = new Node(1, 0, std::move(payload));
  {
    EventMutex::Guard g(m);
    m.append(0, h);
  }
  {
    EventMutex::DispatchGuard d(m);
    {
      EventMutex::Guard g(m);  // nested: the handler revokes itself
      m.revoke(*h);
    }
    EXPECT_FALSE(weak.expired());  // still running
    EXPECT_EQ(m.head(0), h);       // still linked: the walk goes on from it
    EXPECT_TRUE(live(m, 0).empty());
  }
  EXPECT_TRUE(weak.expired());
  EXPECT_EQ(m.head(0), nullptr);
}

TEST(EventMutex, AWalkSeesAppendsAndSkipsRevokesMadeDuringIt) {
  EventMutex m;
  std::vector<EventMutex::Handler*> nodes;
  {
    EventMutex::Guard g(m);
    for (std::uint64_t id = 1; id <= 3; ++id) {
      nodes.push_back(new Node(id, 0, nullptr));
      m.append(0, nodes.back());
    }
    m.append(1, new Node(9, 0, nullptr));
  }
  std::vector<std::uint64_t> called;
  {
    EventMutex::DispatchGuard d(m);
    for (auto* h = m.head(0); h != nullptr; h = h->next) {
      if (h->revoked) continue;
      called.push_back(h->id);
      if (h->id == 1) {
        EventMutex::Guard g(m);  // the first handler revokes itself and the third
        m.revoke(*nodes[0]);
        m.revoke(*nodes[2]);
        m.append(0, new Node(4, 0, nullptr));  // and adds one
      }
    }
  }
  EXPECT_EQ(called, (std::vector<std::uint64_t>{1, 2, 4}));
  EXPECT_EQ(live(m, 0), (std::vector<std::uint64_t>{2, 4}));
  EXPECT_EQ(live(m, 1), (std::vector<std::uint64_t>{9}));
  std::size_t linked = 0;
  for (auto* h = m.head(0); h != nullptr; h = h->next) ++linked;
  EXPECT_EQ(linked, 2u);  // the revoked ones were unlinked when the event ended
}

TEST(EventMutex, ARevokeOutsideAnEventDestroysWhenTheGuardEnds) {
  EventMutex m;
  auto payload = std::make_shared<int>(7);
  std::weak_ptr<int> weak = payload;
  auto* h = new Node(1, 0, std::move(payload));
  EventMutex::Guard g(m);
  m.append(1, h);
  m.revoke(*h);
  EXPECT_FALSE(weak.expired());
  g.unlock();
  EXPECT_TRUE(weak.expired());
  EXPECT_EQ(m.head(1), nullptr);
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
