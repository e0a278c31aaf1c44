// topics/redis_backend.cpp: Redis pub/sub through hiredis' async API, driven
// on the broker's Asio loop: hiredis' event hooks (addRead, delRead, addWrite,
// delWrite, cleanup) become async_wait calls on a stream_descriptor that
// borrows hiredis' socket. Two connections: one in subscriber mode (Redis
// allows nothing else on it), one for PUBLISH.
#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "topics/broker_core.hpp"

namespace duplex::detail {
namespace {

constexpr std::string_view channel_prefix = "duplex:";

class RedisBackend;

/// One hiredis connection and the descriptor watching its socket [loop].
struct RedisConn : std::enable_shared_from_this<RedisConn> {
  RedisConn(asio::io_context& io, int fd) : sd(io, fd) {}
  asio::posix::stream_descriptor sd;
  redisAsyncContext* ac = nullptr;
  RedisBackend* owner = nullptr;
  bool subscriber = false;
  bool up = false;  ///< connect callback said OK
  bool want_read = false, want_write = false, read_waiting = false, write_waiting = false;
  bool dead = false;  ///< hiredis freed the context (cleanup hook ran)
  /// Keeps this alive until hiredis' cleanup hook, which may come after the
  /// backend dropped it (hiredis frees the context after its callbacks).
  std::shared_ptr<RedisConn> keep;

  void arm_read() {
    if (read_waiting || dead || !want_read) return;
    read_waiting = true;
    sd.async_wait(asio::posix::stream_descriptor::wait_read,
                  [self = shared_from_this()](std::error_code ec) {
                    self->read_waiting = false;
                    if (ec || self->dead || !self->want_read) return;
                    redisAsyncHandleRead(self->ac);  // may free the context
                    self->arm_read();
                  });
  }
  void arm_write() {
    if (write_waiting || dead || !want_write) return;
    write_waiting = true;
    sd.async_wait(asio::posix::stream_descriptor::wait_write,
                  [self = shared_from_this()](std::error_code ec) {
                    self->write_waiting = false;
                    if (ec || self->dead || !self->want_write) return;
                    redisAsyncHandleWrite(self->ac);
                    self->arm_write();
                  });
  }

  // hiredis' event hooks: `p` is this connection.
  static void add_read(void* p) {
    auto* c = static_cast<RedisConn*>(p);
    c->want_read = true;
    c->arm_read();
  }
  static void del_read(void* p) { static_cast<RedisConn*>(p)->want_read = false; }
  static void add_write(void* p) {
    auto* c = static_cast<RedisConn*>(p);
    c->want_write = true;
    c->arm_write();
  }
  static void del_write(void* p) { static_cast<RedisConn*>(p)->want_write = false; }
  static void cleanup(void* p) {
    // The context is being freed and will close the socket: stop watching
    // it, and give the descriptor back without closing it.
    auto* c = static_cast<RedisConn*>(p);
    c->dead = true;
    c->want_read = c->want_write = false;
    c->ac = nullptr;
    std::error_code ec;
    c->sd.cancel(ec);
    c->sd.release();
    // Released once hiredis is done with it.
    auto keep = std::move(c->keep);
    asio::post(keep->sd.get_executor(), [keep] {});
  }
};

class RedisBackend final : public BrokerBackend {
public:
  RedisBackend(BrokerCore& core, BrokerUrl url)
      : core_(core),
        url_(std::move(url)),
        timer_(core.io()),
        delay_(core.options().reconnect_min) {}

  void start() override {
    connect(true);
    connect(false);
  }

  void stop() override {
    stopping_ = true;
    timer_.cancel();
    for (auto* c : {&sub_, &pub_})
      if (*c && !(*c)->dead && (*c)->ac) redisAsyncFree((*c)->ac);  // runs cleanup
    sub_.reset();
    pub_.reset();
  }

  void set_topic(const std::string& topic, bool active) override {
    if (active)
      topics_.insert(topic);
    else
      topics_.erase(topic);
    if (!sub_ || !sub_->up) return;  // sent at (re)connect
    const auto ch = std::string(channel_prefix) + topic;
    redisAsyncCommand(sub_->ac, active ? on_sub_reply : nullptr, this,
                      active ? "SUBSCRIBE %b" : "UNSUBSCRIBE %b", ch.data(), ch.size());
  }

  void publish(const std::string& topic, const std::vector<std::byte>& e) override {
    if (!pub_ || !pub_->up) {
      core_.lost.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    const auto ch = std::string(channel_prefix) + topic;
    if (redisAsyncCommand(pub_->ac, on_pub_reply, this, "PUBLISH %b %b", ch.data(), ch.size(),
                          e.data(), e.size()) != REDIS_OK) {
      core_.lost.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    core_.relayed.fetch_add(1, std::memory_order_relaxed);
  }

  [[nodiscard]] std::size_t topic_count() const override { return topics_.size(); }

private:
  void connect(bool subscriber) {
    redisAsyncContext* ac = redisAsyncConnect(url_.host.c_str(), url_.port);
    if (!ac || ac->err) {
      if (ac) redisAsyncFree(ac);
      return retry();
    }
    auto c = std::make_shared<RedisConn>(core_.io(), ac->c.fd);
    c->ac = ac;
    c->keep = c;
    c->owner = this;
    c->subscriber = subscriber;
    ac->data = c.get();
    ac->ev.data = c.get();
    ac->ev.addRead = RedisConn::add_read;
    ac->ev.delRead = RedisConn::del_read;
    ac->ev.addWrite = RedisConn::add_write;
    ac->ev.delWrite = RedisConn::del_write;
    ac->ev.cleanup = RedisConn::cleanup;
    (subscriber ? sub_ : pub_) = c;
    // Setting the connect callback waits for writability (the connect's end).
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
  }

  static void on_connect(const redisAsyncContext* ac, int status) {
    auto* c = static_cast<RedisConn*>(ac->data);
    auto& self = *c->owner;
    if (self.stopping_) return;
    if (status != REDIS_OK) return self.lost_connection(*c);  // hiredis frees it
    c->up = true;
    if (c->subscriber && !self.topics_.empty()) {
      // Resubscribe everything in one command.
      std::vector<std::string> args{"SUBSCRIBE"};
      for (const auto& t : self.topics_) args.push_back(std::string(channel_prefix) + t);
      std::vector<const char*> argv;
      std::vector<std::size_t> lens;
      for (const auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
      }
      redisAsyncCommandArgv(c->ac, on_sub_reply, &self, static_cast<int>(argv.size()), argv.data(),
                            lens.data());
    }
    if (self.sub_ && self.sub_->up && self.pub_ && self.pub_->up) {
      self.delay_ = self.core_.options().reconnect_min;
      if (self.was_connected_) self.core_.reconnects.fetch_add(1, std::memory_order_relaxed);
      self.was_connected_ = true;
      self.core_.set_state(BrokerState::connected);
    }
  }

  static void on_disconnect(const redisAsyncContext* ac, int) {
    auto* c = static_cast<RedisConn*>(ac->data);
    if (c->owner->stopping_) return;
    c->owner->lost_connection(*c);
  }

  void lost_connection(RedisConn& c) {
    c.up = false;
    auto& slot = c.subscriber ? sub_ : pub_;
    if (slot.get() == &c) slot.reset();  // the context is freed after this callback
    if (was_connected_) core_.set_state(BrokerState::disconnected);
    retry();
  }

  /// Reconnects what is down after the backoff delay (doubling up to max).
  void retry() {
    if (stopping_ || retry_pending_) return;
    retry_pending_ = true;
    timer_.expires_after(delay_);
    delay_ = std::min(delay_ * 2, core_.options().reconnect_max);
    timer_.async_wait([this](std::error_code ec) {
      retry_pending_ = false;
      if (ec || stopping_) return;
      if (!sub_) connect(true);
      if (!pub_) connect(false);
    });
  }

  static void on_sub_reply(redisAsyncContext*, void* reply, void* priv) {
    auto* r = static_cast<redisReply*>(reply);
    auto& self = *static_cast<RedisBackend*>(priv);
    if (!r || self.stopping_ || r->type != REDIS_REPLY_ARRAY || r->elements != 3) return;
    auto* kind = r->element[0];
    auto* ch = r->element[1];
    auto* data = r->element[2];
    if (kind->type != REDIS_REPLY_STRING || std::string_view(kind->str, kind->len) != "message")
      return;
    std::string_view channel(ch->str, ch->len);
    if (!channel.starts_with(channel_prefix)) return;
    self.core_.on_envelope(channel.substr(channel_prefix.size()),
                           std::as_bytes(std::span(data->str, data->len)));
  }

  static void on_pub_reply(redisAsyncContext*, void* reply, void* priv) {
    // No reply: the connection failed with the PUBLISH unanswered.
    if (!reply)
      static_cast<RedisBackend*>(priv)->core_.lost.fetch_add(1, std::memory_order_relaxed);
  }

  BrokerCore& core_;
  const BrokerUrl url_;
  asio::steady_timer timer_;
  std::chrono::milliseconds delay_;
  bool retry_pending_ = false;
  bool stopping_ = false;
  bool was_connected_ = false;
  std::shared_ptr<RedisConn> sub_, pub_;
  std::set<std::string> topics_;
};

}  // namespace

std::unique_ptr<BrokerBackend> make_redis_backend(BrokerCore& core, const BrokerUrl& url) {
  return std::make_unique<RedisBackend>(core, url);
}

}  // namespace duplex::detail
