// topics/broker.cpp: TopicBroker and BrokerCore (URL parsing, the envelope,
// state, counters); the protocols are in redis_backend.cpp and nats_backend.cpp.
#include <duplex/topic_broker.hpp>

#include <charconv>
#include <cstring>
#include <future>
#include <random>
#include <stdexcept>

#include <asio/post.hpp>

#include <duplex/protocol/utf8.hpp>

#include "topics/broker_core.hpp"

namespace duplex {
namespace detail {

namespace {
// Envelope: 'D', 't' (text) or 'b' (binary), the 8-byte node id, the payload.
constexpr std::size_t envelope_header = 10;
}  // namespace

BrokerCore::BrokerCore(TopicRegistry& registry, BrokerUrl url, TopicBrokerOptions options)
    : registry_(registry), url_(std::move(url)), options_(options) {
  std::random_device rd;
  node_ = (std::uint64_t{rd()} << 32) ^ rd();
  if (url_.scheme == "redis")
    backend_ = make_redis_backend(*this, url_);
  else
    backend_ = make_nats_backend(*this, url_);
}

BrokerCore::~BrokerCore() {
  shutdown();
}

void BrokerCore::start() {
  thread_ = std::thread([this] { io_.run(); });
  asio::post(io_, [this] { backend_->start(); });
}

void BrokerCore::shutdown() {
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    stopped_ = true;
  }
  if (!thread_.joinable()) return;
  std::promise<void> done;
  asio::post(io_, [this, &done] {
    backend_->stop();
    set_state(BrokerState::stopped);
    done.set_value();
  });
  done.get_future().wait();
  work_.reset();
  io_.stop();
  thread_.join();
}

void BrokerCore::topic_active(const std::string& topic, bool active) {
  asio::post(io_, [this, topic, active] {
    backend_->set_topic(topic, active);
    topics_.store(backend_->topic_count(), std::memory_order_relaxed);
  });
}

PublishStatus BrokerCore::relay(std::string_view topic, std::span<const std::byte> data,
                                SocketMessageType type) {
  if (state() != BrokerState::connected) {
    not_relayed.fetch_add(1, std::memory_order_relaxed);
    return options_.outage == BrokerOutagePolicy::refuse ? PublishStatus::refused
                                                         : PublishStatus::local_only;
  }
  // Posted from this thread in call order: one publisher's order holds.
  asio::post(io_,
             [this, t = std::string(topic), e = encode(type, data)] { backend_->publish(t, e); });
  return PublishStatus::published;
}

std::vector<std::byte> BrokerCore::encode(SocketMessageType type,
                                          std::span<const std::byte> data) const {
  std::vector<std::byte> e(envelope_header + data.size());
  e[0] = std::byte{'D'};
  e[1] = std::byte{static_cast<unsigned char>(type == SocketMessageType::utf8 ? 't' : 'b')};
  std::memcpy(e.data() + 2, &node_, 8);
  if (!data.empty()) std::memcpy(e.data() + envelope_header, data.data(), data.size());
  return e;
}

void BrokerCore::on_envelope(std::string_view topic, std::span<const std::byte> e) {
  if (e.size() < envelope_header || e[0] != std::byte{'D'} ||
      (e[1] != std::byte{'t'} && e[1] != std::byte{'b'}))
    return;  // not ours to read: another application on the same channel
  std::uint64_t from = 0;
  std::memcpy(&from, e.data() + 2, 8);
  if (from == node_) {
    // Delivered locally when it was published.
    own_skipped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const auto type = e[1] == std::byte{'t'} ? SocketMessageType::utf8 : SocketMessageType::binary;
  const auto payload = e.subspan(envelope_header);
  if (topic.empty() || (type == SocketMessageType::utf8 && !protocol::is_valid_utf8(payload)))
    return;
  received.fetch_add(1, std::memory_order_relaxed);
  registry_.publish_local(topic, payload, type);
}

void BrokerCore::set_state(BrokerState s) {
  const auto old = state_.exchange(s, std::memory_order_acq_rel);
  if (old == s) return;
  std::shared_ptr<const TopicBroker::StateChangedHandler> h;
  {
    std::lock_guard lock(mutex_);
    h = handler_;
  }
  cv_.notify_all();
  if (h && *h) (*h)(s);
}

bool BrokerCore::wait_connected(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] { return state() == BrokerState::connected; });
}

BrokerStatistics BrokerCore::statistics() const {
  BrokerStatistics s;
  s.state = state();
  s.relayed = relayed.load(std::memory_order_relaxed);
  s.received = received.load(std::memory_order_relaxed);
  s.own_skipped = own_skipped.load(std::memory_order_relaxed);
  s.not_relayed = not_relayed.load(std::memory_order_relaxed);
  s.lost = lost.load(std::memory_order_relaxed);
  s.reconnects = reconnects.load(std::memory_order_relaxed);
  s.broker_topics = topics_.load(std::memory_order_relaxed);
  return s;
}

std::string BrokerCore::node_id() const {
  static constexpr char hex[] = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 0; i < 16; ++i) s[15 - i] = hex[(node_ >> (4 * i)) & 0xF];
  return s;
}

void BrokerCore::set_handler(TopicBroker::StateChangedHandler h) {
  std::lock_guard lock(mutex_);
  handler_ = std::make_shared<const TopicBroker::StateChangedHandler>(std::move(h));
}

}  // namespace detail

BrokerUrl TopicBroker::parse_url(std::string_view url) {
  auto fail = [&](const std::string& rule) {
    throw std::invalid_argument("broker url \"" + std::string(url) + "\": " + rule);
  };
  BrokerUrl u;
  const auto sep = url.find("://");
  if (sep == std::string_view::npos) fail("must be redis://HOST:PORT or nats://HOST:PORT");
  u.scheme = std::string(url.substr(0, sep));
  if (u.scheme != "redis" && u.scheme != "nats")
    fail("scheme must be redis or nats, not \"" + u.scheme + "\"");
  auto rest = url.substr(sep + 3);
  if (rest.find_first_of("/?#@") != std::string_view::npos)
    fail("only HOST:PORT may follow the scheme (no user, path or query)");
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) fail("an IPv6 host must end with ']'");
    u.host = std::string(rest.substr(1, close - 1));
    rest = rest.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') fail("expected ':' and a port after the host");
      port = rest.substr(1);
      if (port.empty()) fail("port must not be empty");
    }
  } else {
    const auto colon = rest.find(':');
    u.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = rest.substr(colon + 1);
      if (port.empty()) fail("port must not be empty");
    }
  }
  if (u.host.empty()) fail("host must not be empty");
  if (port.empty()) {
    u.port = u.scheme == "redis" ? 6379 : 4222;
  } else {
    unsigned v = 0;
    const auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
    if (ec != std::errc{} || p != port.data() + port.size() || v == 0 || v > 65535)
      fail("port must be a number from 1 to 65535");
    u.port = static_cast<std::uint16_t>(v);
  }
  return u;
}

TopicBroker::TopicBroker(TopicRegistry& registry, std::string_view url,
                         TopicBrokerOptions options) {
  auto u = parse_url(url);
  if (options.reconnect_min.count() <= 0)
    throw std::invalid_argument("TopicBrokerOptions::reconnect_min must be > 0");
  if (options.reconnect_max < options.reconnect_min)
    throw std::invalid_argument("TopicBrokerOptions::reconnect_max must be >= reconnect_min");
  impl_ = std::make_shared<detail::BrokerCore>(registry, std::move(u), options);
  impl_->start();
  registry.set_relay(impl_);
  registry_ = &registry;
}

TopicBroker::~TopicBroker() {
  registry_->set_relay(nullptr);
  impl_->shutdown();
}

bool TopicBroker::wait_connected(std::chrono::milliseconds timeout) {
  return impl_->wait_connected(timeout);
}
BrokerState TopicBroker::state() const noexcept {
  return impl_->state();
}
BrokerStatistics TopicBroker::statistics() const {
  return impl_->statistics();
}
std::string TopicBroker::node_id() const {
  return impl_->node_id();
}
void TopicBroker::state_changed(StateChangedHandler handler) {
  impl_->set_handler(std::move(handler));
}

}  // namespace duplex
