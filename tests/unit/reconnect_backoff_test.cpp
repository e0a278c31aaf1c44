// The reconnect backoff (detail::ReconnectBackoff): exponential from
// initial_delay, capped at max_delay, jitter within its bounds, reproducible
// from a seed. No sockets and no clocks: the delays are only computed.
#include "detail/reconnect.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace duplex::detail {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

ReconnectOptions options(milliseconds initial, milliseconds cap, double jitter,
                         std::uint64_t seed = 1) {
  ReconnectOptions o;
  o.enable = true;
  o.initial_delay = initial;
  o.max_delay = cap;
  o.jitter = jitter;
  o.jitter_seed = seed;
  return o;
}

TEST(ReconnectBackoff, BaseDelayDoublesUpToTheCap) {
  const auto o = options(100ms, 1000ms, 0.5);
  EXPECT_EQ(ReconnectBackoff::base_delay(o, 1), 100ms);
  EXPECT_EQ(ReconnectBackoff::base_delay(o, 2), 200ms);
  EXPECT_EQ(ReconnectBackoff::base_delay(o, 3), 400ms);
  EXPECT_EQ(ReconnectBackoff::base_delay(o, 4), 800ms);
  EXPECT_EQ(ReconnectBackoff::base_delay(o, 5), 1000ms);
  EXPECT_EQ(ReconnectBackoff::base_delay(o, 6), 1000ms);
  EXPECT_EQ(ReconnectBackoff::base_delay(o, 1'000'000), 1000ms);
}

TEST(ReconnectBackoff, BaseDelayNeverOverflows) {
  const auto o = options(1ms, milliseconds::max(), 0.0);
  EXPECT_EQ(ReconnectBackoff::base_delay(o, 11), 1024ms);
  for (std::size_t n : {std::size_t{62}, std::size_t{63}, std::size_t{64}, std::size_t{200},
                        std::numeric_limits<std::size_t>::max()}) {
    const auto d = ReconnectBackoff::base_delay(o, n);
    EXPECT_GT(d, 0ms) << n;
    EXPECT_LE(d, milliseconds::max()) << n;
  }
  // Monotonic up to the cap.
  for (std::size_t n = 1; n < 100; ++n)
    EXPECT_LE(ReconnectBackoff::base_delay(o, n), ReconnectBackoff::base_delay(o, n + 1)) << n;
}

TEST(ReconnectBackoff, JitterStaysWithinItsBounds) {
  for (double jitter : {0.0, 0.25, 0.5, 1.0}) {
    const auto o = options(10ms, 5000ms, jitter, 99);
    ReconnectBackoff b(o);
    for (std::size_t n = 1; n <= 200; ++n) {
      const auto base = ReconnectBackoff::base_delay(o, n);
      const auto d = b.next(n);
      EXPECT_LE(d, base) << "attempt " << n << ", jitter " << jitter;
      const auto lowest =
          base -
          milliseconds(static_cast<std::int64_t>(static_cast<double>(base.count()) * jitter));
      EXPECT_GE(d, std::max(lowest, 1ms)) << "attempt " << n << ", jitter " << jitter;
    }
  }
}

TEST(ReconnectBackoff, NoJitterIsTheBaseDelay) {
  const auto o = options(30ms, 100ms, 0.0);
  ReconnectBackoff b(o);
  EXPECT_EQ(b.next(1), 30ms);
  EXPECT_EQ(b.next(2), 60ms);
  EXPECT_EQ(b.next(3), 100ms);
}

TEST(ReconnectBackoff, TheSameSeedGivesTheSameDelays) {
  const auto draw = [](std::uint64_t seed) {
    ReconnectBackoff b(options(1000ms, 1000ms, 1.0, seed));
    std::vector<milliseconds> v;
    for (std::size_t n = 1; n <= 20; ++n) v.push_back(b.next(n));
    return v;
  };
  EXPECT_EQ(draw(7), draw(7));
  // Twenty draws from 0..1000 ms, all equal under another seed: not with a
  // working generator.
  EXPECT_NE(draw(7), draw(8));
  // And the jitter spreads: not every draw is the same.
  const auto v = draw(7);
  EXPECT_NE(std::count(v.begin(), v.end(), v.front()), static_cast<std::ptrdiff_t>(v.size()));
}

TEST(ReconnectBackoff, OptionsAreChecked) {
  auto expect_rule = [](ReconnectOptions o, const std::string& text) {
    try {
      check_reconnect_options(o);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()), text);
    }
  };
  expect_rule(options(-1ms, 10ms, 0.5), "reconnect: initial_delay must be greater than zero");
  expect_rule(options(20ms, 10ms, 0.5), "reconnect: max_delay must be at least initial_delay");
  expect_rule(options(10ms, 10ms, std::numeric_limits<double>::quiet_NaN()),
              "reconnect: jitter must be between 0 and 1");
  auto o = options(10ms, 10ms, 0.5);
  o.send_policy = static_cast<ReconnectSendPolicy>(7);
  expect_rule(o, "reconnect: send_policy must be fail or queue");
  EXPECT_NO_THROW(check_reconnect_options(options(10ms, 10ms, 1.0)));
  EXPECT_NO_THROW(check_reconnect_options(ReconnectOptions{}));  // the defaults are valid
}

}  // namespace
}  // namespace duplex::detail
