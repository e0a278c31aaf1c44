// topics.cpp: TopicRegistry. The authoritative subscriptions live under one
// mutex (which sockets are in which topics, how many per loop); each event
// loop keeps its own copy of its members per topic, touched only on that
// loop's thread and brought in line with the authoritative state by sync().
// A publish frames the message once and posts it once per loop that has
// subscribers.
#include <duplex/topics.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <mutex>
#include <stdexcept>
#include <unordered_map>
#include <utility>
#include <vector>

#include <asio/post.hpp>

#include <duplex/protocol/connection.hpp>
#include <duplex/protocol/deflate.hpp>
#include <duplex/protocol/frame.hpp>
#include <duplex/protocol/utf8.hpp>

#include "detail/session.hpp"

namespace duplex::detail {

/// The one place that reaches a socket's session (SocketBase's friend).
struct SessionAccess {
  static const std::shared_ptr<Session>& get(const MessageWebSocket& ws) noexcept {
    return static_cast<const SocketBase<MessageWebSocket, MessageWebSocketControl>&>(ws).session_;
  }
};

}  // namespace duplex::detail

namespace duplex {

using detail::Session;

namespace {

/// One publish: the frame's bytes, shared by every loop it is posted to.
struct Frame {
  std::string topic;
  std::size_t header_size = 0;  ///< bytes before the payload in `bytes`
  protocol::Opcode opcode = protocol::Opcode::binary;
  const Session* except = nullptr;  ///< the subscriber not to deliver to
  std::vector<std::byte> bytes;
};

/// Gives each io_context a number of its own: a new context at the address of
/// a destroyed one is told apart from it (a service dies with its context).
class LoopId : public asio::execution_context::service {
public:
  using key_type = LoopId;
  static inline asio::execution_context::id id;
  explicit LoopId(asio::execution_context& ctx) : service(ctx), value(next().fetch_add(1) + 1) {}
  const std::uint64_t value;

private:
  void shutdown() override {}
  static std::atomic<std::uint64_t>& next() {
    static std::atomic<std::uint64_t> n{0};
    return n;
  }
};

/// The members of one event loop ([loop]: touched only on its thread).
struct LoopState {
  LoopState(asio::io_context::executor_type e, std::uint64_t i) : ex(std::move(e)), id(i) {}
  asio::io_context::executor_type ex;
  const std::uint64_t id;
  std::unordered_map<std::string, std::unordered_map<Session*, std::weak_ptr<Session>>> members;
  std::vector<std::pair<Session*, std::shared_ptr<Session>>> scratch;  ///< a delivery's snapshot
  /// A delivery's compressed frames, one per set of deflate parameters.
  std::vector<std::pair<protocol::DeflateParams, std::vector<std::byte>>> compressed;
};

struct TopicEntry {
  std::size_t count = 0;
  std::vector<std::pair<std::shared_ptr<LoopState>, std::size_t>> loops;  ///< subscribers per loop
};

struct SessionEntry {
  std::weak_ptr<Session> session;
  std::shared_ptr<LoopState> loop;
  std::vector<std::string> topics;
  EventToken closed_token{};
};

std::shared_ptr<Session> session_of(const MessageWebSocket& ws, const char* what) {
  const auto& s = detail::SessionAccess::get(ws);
  if (!s) throw std::invalid_argument(std::string(what) + ": socket was moved from");
  return s;
}

void check_topic(std::string_view topic, const char* what) {
  if (topic.empty()) throw std::invalid_argument(std::string(what) + ": topic must not be empty");
}

}  // namespace

class TopicRegistry::Impl : public std::enable_shared_from_this<Impl> {
public:
  explicit Impl(TopicRegistryOptions o) : options_(o) {}

  bool subscribe(const std::shared_ptr<Session>& s, std::string_view topic) {
    if (s->role() != protocol::Role::server)
      throw std::invalid_argument(
          "subscribe: socket must be a server-role socket from a WebSocketListener");
    if (s->phase() == detail::Phase::closed) return false;
    ensure_closed_handler(s);
    std::shared_ptr<LoopState> loop;
    {
      std::lock_guard lock(mutex_);
      auto it = sessions_.find(s.get());
      if (it == sessions_.end()) return false;  // closed meanwhile
      auto& se = it->second;
      for (const auto& t : se.topics)
        if (t == topic) return false;
      se.topics.emplace_back(topic);
      auto& te = topics_[se.topics.back()];
      ++te.count;
      ++subscriptions_;
      add_loop(te, se.loop, 1);
      if (te.count == 1 && relay_) relay_->topic_active(se.topics.back(), true);
      loop = se.loop;
    }
    sync_on_loop(loop, s, std::string(topic));
    return true;
  }

  bool unsubscribe(const std::shared_ptr<Session>& s, std::string_view topic) {
    std::shared_ptr<LoopState> loop;
    {
      std::lock_guard lock(mutex_);
      auto it = sessions_.find(s.get());
      if (it == sessions_.end()) return false;
      auto& se = it->second;
      auto t = std::find(se.topics.begin(), se.topics.end(), topic);
      if (t == se.topics.end()) return false;
      leave(*t, se.loop.get());
      se.topics.erase(t);
      loop = se.loop;
    }
    sync_on_loop(loop, s, std::string(topic));
    return true;
  }

  std::size_t unsubscribe_all(Session* raw, const std::shared_ptr<Session>& s) {
    std::shared_ptr<LoopState> loop;
    std::vector<std::string> topics;
    {
      std::lock_guard lock(mutex_);
      auto it = sessions_.find(raw);
      if (it == sessions_.end()) return 0;
      auto& se = it->second;
      for (const auto& t : se.topics) leave(t, se.loop.get());
      topics = std::move(se.topics);
      se.topics.clear();
      loop = se.loop;
    }
    for (auto& t : topics) sync_on_loop(loop, s, std::move(t), raw);
    return topics.size();
  }

  /// The socket closed (or is gone): forget it entirely. On its loop.
  void forget(Session* raw) {
    std::shared_ptr<LoopState> loop;
    std::vector<std::string> topics;
    {
      std::lock_guard lock(mutex_);
      auto it = sessions_.find(raw);
      if (it == sessions_.end()) return;
      for (const auto& t : it->second.topics) leave(t, it->second.loop.get());
      topics = std::move(it->second.topics);
      loop = it->second.loop;
      sessions_.erase(it);
    }
    for (auto& t : topics) remove_member(*loop, t, raw);
  }

  void publish_local(std::string_view topic, std::span<const std::byte> data,
                     SocketMessageType type, const Session* except = nullptr) {
    std::array<std::shared_ptr<LoopState>, 8> small;
    std::vector<std::shared_ptr<LoopState>> more;
    std::size_t n = 0;
    {
      std::lock_guard lock(mutex_);
      auto it = topics_.find(std::string(topic));
      if (it == topics_.end()) return;
      for (const auto& entry : it->second.loops) {
        if (n < small.size())
          small[n] = entry.first;
        else
          more.push_back(entry.first);
        ++n;
      }
    }
    if (n == 0) return;
    // The frame is built once for every loop: a server frame is not masked,
    // so its bytes are the same for every subscriber (RFC 6455 5.1).
    auto frame = std::make_shared<Frame>();
    frame->topic.assign(topic);
    frame->except = except;
    protocol::FrameHeader h;
    h.fin = true;
    h.opcode = type == SocketMessageType::utf8 ? protocol::Opcode::text : protocol::Opcode::binary;
    h.payload_length = data.size();
    std::array<std::byte, protocol::max_frame_header_size> header{};
    const auto hn = protocol::write_frame_header(h, header);
    frame->header_size = hn;
    frame->opcode = h.opcode;
    frame->bytes.reserve(hn + data.size());
    frame->bytes.insert(frame->bytes.end(), header.begin(), header.begin() + hn);
    frame->bytes.insert(frame->bytes.end(), data.begin(), data.end());
    published_.fetch_add(1, std::memory_order_relaxed);
    auto post = [&](const std::shared_ptr<LoopState>& loop) {
      asio::post(loop->ex,
                 [self = shared_from_this(), loop, frame] { self->deliver(*loop, *frame); });
    };
    for (std::size_t i = 0; i < std::min(n, small.size()); ++i) post(small[i]);
    for (const auto& loop : more) post(loop);
  }

  PublishStatus relay(std::string_view topic, std::span<const std::byte> data,
                      SocketMessageType type) {
    std::shared_ptr<TopicRelay> relay;
    {
      std::lock_guard lock(mutex_);
      relay = relay_;
    }
    if (!relay) return PublishStatus::published;
    const auto st = relay->relay(topic, data, type);
    if (st != PublishStatus::published) not_relayed_.fetch_add(1, std::memory_order_relaxed);
    return st;
  }

  std::size_t subscriber_count(std::string_view topic) const {
    std::lock_guard lock(mutex_);
    auto it = topics_.find(std::string(topic));
    return it == topics_.end() ? 0 : it->second.count;
  }

  TopicStatistics statistics() const {
    TopicStatistics st;
    {
      std::lock_guard lock(mutex_);
      st.topics = topics_.size();
      st.subscriptions = subscriptions_;
    }
    st.published = published_.load(std::memory_order_relaxed);
    st.deliveries = deliveries_.load(std::memory_order_relaxed);
    st.dropped = dropped_.load(std::memory_order_relaxed);
    st.slow_closed = slow_closed_.load(std::memory_order_relaxed);
    st.not_relayed = not_relayed_.load(std::memory_order_relaxed);
    st.compressions = compressions_.load(std::memory_order_relaxed);
    return st;
  }

  void set_relay(std::shared_ptr<TopicRelay> relay) {
    std::shared_ptr<TopicRelay> old;
    {
      std::lock_guard lock(mutex_);
      old = std::move(relay_);
      relay_ = std::move(relay);
      if (relay_)
        for (const auto& [topic, te] : topics_) relay_->topic_active(topic, true);
    }
  }

  /// The registry is being destroyed: stop listening to closed events.
  void shutdown() {
    std::vector<std::pair<std::shared_ptr<Session>, EventToken>> handlers;
    {
      std::lock_guard lock(mutex_);
      for (auto& [raw, se] : sessions_)
        if (auto s = se.session.lock()) handlers.emplace_back(std::move(s), se.closed_token);
      relay_.reset();
    }
    for (auto& [s, token] : handlers) s->remove_handler(token);
  }

private:
  /// Registers `s` and its closed handler once. The handler is added outside
  /// mutex_: closed handlers run with the session's event lock held and then
  /// take mutex_, so the two are never taken in the other order.
  void ensure_closed_handler(const std::shared_ptr<Session>& s) {
    {
      std::lock_guard lock(mutex_);
      if (sessions_.contains(s.get())) return;
    }
    const auto token = s->add_closed_handler(
        [weak = weak_from_this(), raw = s.get()](void*, const WebSocketClosedEventArgs&) {
          if (auto self = weak.lock()) self->forget(raw);
        });
    bool ours = false;
    {
      std::lock_guard lock(mutex_);
      auto [it, inserted] = sessions_.try_emplace(s.get());
      if (inserted) {
        it->second.session = s;
        it->second.loop = loop_for(s->executor());
        it->second.closed_token = token;
        ours = true;
      }
    }
    if (!ours) s->remove_handler(token);
    // Closed before the handler was in place: its closed event will not come.
    if (ours && s->phase() == detail::Phase::closed) {
      std::lock_guard lock(mutex_);
      sessions_.erase(s.get());
    }
  }

  std::shared_ptr<LoopState> loop_for(const asio::io_context::executor_type& ex) {
    auto* key = &ex.context();
    const auto id = asio::use_service<LoopId>(ex.context()).value;
    auto& slot = loops_[key];
    if (!slot || slot->id != id) slot = std::make_shared<LoopState>(ex, id);
    return slot;
  }

  static void add_loop(TopicEntry& te, const std::shared_ptr<LoopState>& loop, std::size_t n) {
    for (auto& [l, c] : te.loops)
      if (l == loop) {
        c += n;
        return;
      }
    te.loops.emplace_back(loop, n);
  }

  /// One subscription of `topic` on `loop` ends (mutex_ held).
  void leave(const std::string& topic, LoopState* loop) {
    auto it = topics_.find(topic);
    if (it == topics_.end()) return;
    auto& te = it->second;
    --subscriptions_;
    for (auto l = te.loops.begin(); l != te.loops.end(); ++l)
      if (l->first.get() == loop) {
        if (--l->second == 0) te.loops.erase(l);
        break;
      }
    if (--te.count == 0) {
      if (relay_) relay_->topic_active(topic, false);
      topics_.erase(it);
    }
  }

  /// Brings `loop`'s members of `topic` in line with the subscriptions for
  /// `s`: at once on the loop's thread, else posted (after the publishes
  /// this thread posted before, before those it posts after).
  void sync_on_loop(const std::shared_ptr<LoopState>& loop, const std::shared_ptr<Session>& s,
                    std::string topic, Session* raw = nullptr) {
    if (!raw) raw = s.get();
    auto fn = [self = shared_from_this(), loop, weak = std::weak_ptr<Session>(s), raw,
               topic = std::move(topic)] { self->sync(*loop, raw, weak, topic); };
    if (s->executor().running_in_this_thread())
      fn();
    else
      asio::post(loop->ex, std::move(fn));
  }

  void sync(LoopState& loop, Session* raw, const std::weak_ptr<Session>& weak,
            const std::string& topic) {
    bool present = false;
    {
      std::lock_guard lock(mutex_);
      auto it = sessions_.find(raw);
      if (it != sessions_.end())
        for (const auto& t : it->second.topics)
          if (t == topic) present = true;
    }
    if (present)
      loop.members[topic][raw] = weak;
    else
      remove_member(loop, topic, raw);
  }

  static void remove_member(LoopState& loop, const std::string& topic, Session* raw) {
    auto it = loop.members.find(topic);
    if (it == loop.members.end()) return;
    it->second.erase(raw);
    if (it->second.empty()) loop.members.erase(it);
  }

  /// The bytes for `s`: the shared plain frame, or, for a subscriber that
  /// agreed permessage-deflate without server context takeover, a frame
  /// compressed once per set of parameters and shared by every subscriber
  /// with those (RFC 7692 7.2.3: without context takeover each message
  /// compresses on its own, so the bytes are the same for all of them). With
  /// context takeover the message goes uncompressed (RSV1 clear, RFC 7692 6),
  /// leaving the connection's compressor window untouched.
  std::span<const std::byte> frame_for(LoopState& loop, const Session& s, const Frame& frame) {
    const auto* dp = s.deflate_params();
    const auto payload = std::span(frame.bytes).subspan(frame.header_size);
    if (!dp || !dp->server_no_context_takeover || !dp->can_compress(protocol::Role::server) ||
        payload.size() < dp->compress_threshold)
      return frame.bytes;
    for (const auto& [params, bytes] : loop.compressed)
      if (params == *dp) return bytes;
    std::vector<std::byte> body;
    protocol::DeflateEncoder enc(*dp, protocol::Role::server);
    enc.compress(payload, true, body);
    compressions_.fetch_add(1, std::memory_order_relaxed);
    protocol::FrameHeader h;
    h.fin = true;
    h.rsv1 = true;  // RFC 7692 6: RSV1 on the first frame of a compressed message
    h.opcode = frame.opcode;
    h.payload_length = body.size();
    std::array<std::byte, protocol::max_frame_header_size> header{};
    const auto hn = protocol::write_frame_header(h, header);
    std::vector<std::byte> out(header.begin(), header.begin() + hn);
    out.insert(out.end(), body.begin(), body.end());
    loop.compressed.emplace_back(*dp, std::move(out));
    return loop.compressed.back().second;
  }

  /// On `loop`'s thread: queue the frame to each member.
  void deliver(LoopState& loop, const Frame& frame) {
    auto it = loop.members.find(frame.topic);
    if (it == loop.members.end()) return;
    // A snapshot: a close below may run closed handlers that change members.
    auto& snap = loop.scratch;
    snap.clear();
    for (const auto& [raw, weak] : it->second) snap.emplace_back(raw, weak.lock());
    std::uint64_t delivered = 0, dropped = 0, closed = 0;
    std::vector<Session*> gone;
    for (auto& [raw, s] : snap) {
      if (!s) {
        gone.push_back(raw);
        continue;
      }
      if (raw == frame.except) continue;
      switch (s->send_prebuilt(frame_for(loop, *s, frame))) {
        case Session::PrebuiltResult::queued: ++delivered; break;
        case Session::PrebuiltResult::busy: ++dropped; break;
        case Session::PrebuiltResult::closed: gone.push_back(raw); break;
        case Session::PrebuiltResult::full:
          ++dropped;
          if (options_.slow_subscriber != SlowSubscriberPolicy::drop) {
            ++closed;
            // RFC 6455 7.4.1: 1008 policy violation, 1013 try again later.
            const std::uint16_t code =
                options_.slow_subscriber == SlowSubscriberPolicy::close_policy_violation ? 1008
                                                                                         : 1013;
            s->close_on_loop(code, "slow subscriber");
          }
          break;
      }
    }
    snap.clear();
    loop.compressed.clear();
    for (auto* raw : gone) forget(raw);
    if (delivered) deliveries_.fetch_add(delivered, std::memory_order_relaxed);
    if (dropped) dropped_.fetch_add(dropped, std::memory_order_relaxed);
    if (closed) slow_closed_.fetch_add(closed, std::memory_order_relaxed);
  }

  const TopicRegistryOptions options_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, TopicEntry> topics_;
  std::unordered_map<Session*, SessionEntry> sessions_;
  std::unordered_map<asio::io_context*, std::shared_ptr<LoopState>> loops_;
  std::size_t subscriptions_ = 0;
  std::shared_ptr<TopicRelay> relay_;
  std::atomic<std::uint64_t> published_{0}, deliveries_{0}, dropped_{0}, slow_closed_{0},
      not_relayed_{0}, compressions_{0};
};

TopicRegistry::TopicRegistry(TopicRegistryOptions options)
    : impl_(std::make_shared<Impl>(options)) {}

TopicRegistry::~TopicRegistry() {
  impl_->shutdown();
}

bool TopicRegistry::subscribe(const MessageWebSocket& socket, std::string_view topic) {
  check_topic(topic, "subscribe");
  return impl_->subscribe(session_of(socket, "subscribe"), topic);
}

bool TopicRegistry::unsubscribe(const MessageWebSocket& socket, std::string_view topic) {
  check_topic(topic, "unsubscribe");
  return impl_->unsubscribe(session_of(socket, "unsubscribe"), topic);
}

std::size_t TopicRegistry::unsubscribe_all(const MessageWebSocket& socket) {
  const auto& s = session_of(socket, "unsubscribe_all");
  return impl_->unsubscribe_all(s.get(), s);
}

namespace {
void check_publish(std::string_view topic, std::span<const std::byte> data, SocketMessageType type,
                   const char* what) {
  check_topic(topic, what);
  if (type == SocketMessageType::utf8 && !protocol::is_valid_utf8(data))
    throw std::invalid_argument(std::string(what) +
                                ": a utf8 message must be valid UTF-8 (RFC 6455 5.6)");
}
}  // namespace

PublishStatus TopicRegistry::publish(std::string_view topic, std::span<const std::byte> data,
                                     SocketMessageType type) {
  check_publish(topic, data, type, "publish");
  const auto st = impl_->relay(topic, data, type);
  if (st != PublishStatus::refused) impl_->publish_local(topic, data, type);
  return st;
}

PublishStatus TopicRegistry::publish(std::string_view topic, std::span<const std::byte> data,
                                     SocketMessageType type, const MessageWebSocket& except) {
  check_publish(topic, data, type, "publish");
  const auto& s = session_of(except, "publish");
  const auto st = impl_->relay(topic, data, type);
  if (st != PublishStatus::refused) impl_->publish_local(topic, data, type, s.get());
  return st;
}

PublishStatus TopicRegistry::publish(std::string_view topic, std::string_view text) {
  return publish(topic, std::as_bytes(std::span(text.data(), text.size())),
                 SocketMessageType::utf8);
}

void TopicRegistry::publish_local(std::string_view topic, std::span<const std::byte> data,
                                  SocketMessageType type) {
  check_publish(topic, data, type, "publish_local");
  impl_->publish_local(topic, data, type);
}

std::size_t TopicRegistry::subscriber_count(std::string_view topic) const {
  return impl_->subscriber_count(topic);
}

TopicStatistics TopicRegistry::statistics() const {
  return impl_->statistics();
}

void TopicRegistry::set_relay(std::shared_ptr<TopicRelay> relay) {
  impl_->set_relay(std::move(relay));
}

}  // namespace duplex
