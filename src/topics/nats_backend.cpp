// topics/nats_backend.cpp: NATS through libnats. libnats runs its own threads
// (reading, reconnecting, and one per subscription for its messages); their
// callbacks only copy what they got and post it to the broker's loop. A
// topic's subject is "duplex." and the topic's bytes in hex (NATS subjects
// may not hold spaces, and '.', '*', '>' mean tokens and wildcards).
// libnats reconnects and resubscribes by itself once connected; the first
// connection is retried here with our backoff. NoEcho: the server does not
// send our own messages back (the envelope's node id still guards it).
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <nats/nats.h>

#include "topics/broker_core.hpp"

namespace duplex::detail {
namespace {

constexpr std::string_view subject_prefix = "duplex.";

std::string subject_of(std::string_view topic) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string s(subject_prefix);
  for (unsigned char c : topic) {
    s.push_back(hex[c >> 4]);
    s.push_back(hex[c & 0xF]);
  }
  return s;
}

std::string topic_of(std::string_view subject) {
  std::string t;
  subject.remove_prefix(subject_prefix.size());
  auto val = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  for (std::size_t i = 0; i + 1 < subject.size(); i += 2)
    t.push_back(static_cast<char>(val(subject[i]) * 16 + val(subject[i + 1])));
  return t;
}

/// What libnats' threads reach: the core while it lives. Callbacks take the
/// lock, so once `core` is cleared none is inside or starts.
struct NatsGate {
  std::mutex mutex;
  std::condition_variable cv;
  BrokerCore* core = nullptr;
  std::size_t live_subs = 0;  ///< subscriptions whose handler may still run
  bool closed = false;        ///< the connection's closed callback ran (its last one)
};

void on_sub_complete(void* closure) {
  auto* gate = static_cast<NatsGate*>(closure);
  std::lock_guard lock(gate->mutex);
  --gate->live_subs;
  gate->cv.notify_all();
}
void on_closed(natsConnection*, void* closure) {
  auto* gate = static_cast<NatsGate*>(closure);
  std::lock_guard lock(gate->mutex);
  gate->closed = true;
  gate->cv.notify_all();
}

class NatsBackend final : public BrokerBackend {
public:
  NatsBackend(BrokerCore& core, const BrokerUrl& url)
      : core_(core),
        timer_(core.io()),
        delay_(core.options().reconnect_min),
        gate_(std::make_shared<NatsGate>()) {
    gate_->core = &core;
    url_ = "nats://" + (url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host) +
           ":" + std::to_string(url.port);
  }
  ~NatsBackend() override { stop(); }

  void start() override { try_connect(); }

  void stop() override {
    if (stopping_) return;
    stopping_ = true;
    timer_.cancel();
    {
      std::lock_guard lock(gate_->mutex);
      gate_->core = nullptr;
    }
    for (auto& [t, sub] : subs_) {
      natsSubscription_Unsubscribe(sub);
      natsSubscription_Destroy(sub);
    }
    subs_.clear();
    if (nc_) {
      natsConnection_Close(nc_);
      // libnats' threads may still be inside a callback: the gate lives until
      // the closed callback and every subscription's completion ran (bounded).
      {
        std::unique_lock lock(gate_->mutex);
        gate_->cv.wait_for(lock, std::chrono::seconds(2),
                           [&] { return gate_->closed && gate_->live_subs == 0; });
      }
      natsConnection_Destroy(nc_);
      nc_ = nullptr;
    }
    if (opts_) natsOptions_Destroy(opts_);
    opts_ = nullptr;
  }

  void set_topic(const std::string& topic, bool active) override {
    if (active) {
      topics_.insert(topic);
      if (nc_) subscribe(topic);
    } else {
      topics_.erase(topic);
      auto it = subs_.find(topic);
      if (it != subs_.end()) {
        natsSubscription_Unsubscribe(it->second);
        natsSubscription_Destroy(it->second);
        subs_.erase(it);
      }
    }
  }

  void publish(const std::string& topic, const std::vector<std::byte>& e) override {
    if (!nc_ || natsConnection_Status(nc_) != NATS_CONN_STATUS_CONNECTED ||
        natsConnection_Publish(nc_, subject_of(topic).c_str(), e.data(),
                               static_cast<int>(e.size())) != NATS_OK) {
      core_.lost.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    core_.relayed.fetch_add(1, std::memory_order_relaxed);
  }

  [[nodiscard]] std::size_t topic_count() const override { return topics_.size(); }

private:
  void try_connect() {
    if (stopping_) return;
    if (!opts_) {
      natsOptions_Create(&opts_);
      natsOptions_SetURL(opts_, url_.c_str());
      natsOptions_SetNoEcho(opts_, true);
      natsOptions_SetAllowReconnect(opts_, true);
      natsOptions_SetMaxReconnect(opts_, -1);
      natsOptions_SetReconnectWait(opts_, core_.options().reconnect_min.count());
      natsOptions_SetTimeout(opts_, 2000);
      natsOptions_SetDisconnectedCB(opts_, on_disconnected, gate_.get());
      natsOptions_SetReconnectedCB(opts_, on_reconnected, gate_.get());
      natsOptions_SetClosedCB(opts_, on_closed, gate_.get());
    }
    // A blocking connect on the broker's thread: bounded by the timeout above.
    if (natsConnection_Connect(&nc_, opts_) != NATS_OK) {
      nc_ = nullptr;
      timer_.expires_after(delay_);
      delay_ = std::min(delay_ * 2, core_.options().reconnect_max);
      timer_.async_wait([this](std::error_code ec) {
        if (!ec) try_connect();
      });
      return;
    }
    for (const auto& t : topics_) subscribe(t);
    core_.set_state(BrokerState::connected);
  }

  void subscribe(const std::string& topic) {
    if (subs_.contains(topic)) return;
    natsSubscription* sub = nullptr;
    if (natsConnection_Subscribe(&sub, nc_, subject_of(topic).c_str(), on_msg, gate_.get()) !=
        NATS_OK)
      return;
    {
      std::lock_guard lock(gate_->mutex);
      ++gate_->live_subs;
    }
    if (natsSubscription_SetOnCompleteCB(sub, on_sub_complete, gate_.get()) != NATS_OK) {
      std::lock_guard lock(gate_->mutex);
      --gate_->live_subs;
    }
    subs_.emplace(topic, sub);
  }

  static void on_msg(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto* gate = static_cast<NatsGate*>(closure);
    std::lock_guard lock(gate->mutex);
    if (gate->core) {
      auto topic = topic_of(natsMsg_GetSubject(msg));
      const auto* d = reinterpret_cast<const std::byte*>(natsMsg_GetData(msg));
      std::vector<std::byte> e(d, d + natsMsg_GetDataLength(msg));
      auto* core = gate->core;
      asio::post(core->io(), [core, topic = std::move(topic), e = std::move(e)] {
        core->on_envelope(topic, e);
      });
    }
    natsMsg_Destroy(msg);
  }
  static void on_disconnected(natsConnection*, void* closure) {
    auto* gate = static_cast<NatsGate*>(closure);
    std::lock_guard lock(gate->mutex);
    if (auto* core = gate->core)
      asio::post(core->io(), [core] { core->set_state(BrokerState::disconnected); });
  }
  static void on_reconnected(natsConnection*, void* closure) {
    auto* gate = static_cast<NatsGate*>(closure);
    std::lock_guard lock(gate->mutex);
    if (auto* core = gate->core)
      asio::post(core->io(), [core] {
        core->reconnects.fetch_add(1, std::memory_order_relaxed);
        core->set_state(BrokerState::connected);
      });
  }

  BrokerCore& core_;
  std::string url_;
  asio::steady_timer timer_;
  std::chrono::milliseconds delay_;
  std::shared_ptr<NatsGate> gate_;
  bool stopping_ = false;
  natsOptions* opts_ = nullptr;
  natsConnection* nc_ = nullptr;
  std::set<std::string> topics_;
  std::map<std::string, natsSubscription*> subs_;
};

}  // namespace

std::unique_ptr<BrokerBackend> make_nats_backend(BrokerCore& core, const BrokerUrl& url) {
  return std::make_unique<NatsBackend>(core, url);
}

}  // namespace duplex::detail
