// topics.cpp: TopicRegistry. The authoritative subscriptions live under one
// mutex (which sockets are in which topics, how many per loop); each event
// loop keeps its own copy of its members per topic, touched only on that
// loop's thread and brought in line with the authoritative state by sync().
// A publish frames the message once and hands it to each loop that has
// subscribers through the loop's inbox: one post per loop per batch of
// publishes, never one per subscriber. On the loop, each subscriber is a
// plain pointer beside a strong reference held by the registry, so a
// delivery takes no lock and copies no reference count.
#include <duplex/topics.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <unordered_map>
#include <utility>
#include <vector>

#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

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

// How long a session that closed without its closed event reaching the
// registry stays held: its socket was destroyed inside an earlier closed
// handler, which drops the later ones (the registry's). Rare enough that a
// walk of the loop's members this often costs nothing that matters.
constexpr auto sweep_interval = std::chrono::seconds(1);

/// A frame's bytes, built once and shared by reference count by every loop
/// it is handed to.
using FrameBytes = std::shared_ptr<const std::vector<std::byte>>;

/// A frame as one delivery hands it to a loop's subscribers: its bytes, and
/// for a large one (Session::prebuilt_reference_min) a SharedFrame over them
/// that the subscribers' write queues reference instead of copying the bytes
/// (the count is the loop's own, not atomic).
struct LoopFrame {
  FrameBytes bytes;
  detail::FrameRef shared;

  void set(FrameBytes b) {
    if (b->size() >= Session::prebuilt_reference_min) shared = detail::SharedFrame::make(b);
    bytes = std::move(b);
  }
  void reset() noexcept {
    shared.reset();
    bytes.reset();
  }
};

/// One publish, shared by every loop it is handed to.
struct Frame {
  std::string topic;
  std::size_t header_size = 0;  ///< bytes before the payload in `bytes`
  protocol::Opcode opcode = protocol::Opcode::binary;
  const Session* except = nullptr;  ///< the subscriber not to deliver to
  FrameBytes bytes;                 ///< header and payload, unmasked (RFC 6455 5.1)
};

/// A subscriber of a topic on its loop.
struct Member {
  Session* raw = nullptr;
  /// Held from the subscribe until it leaves the topic, its closed event, a
  /// delivery finds it closed, its loop's context shuts down or the registry
  /// goes: `raw` stays valid without a weak_ptr lock per delivery.
  std::shared_ptr<Session> keep;
  /// 0: it takes the plain frame; else 1 + its index in
  /// LoopState::deflate_sets (it agreed permessage-deflate without server
  /// context takeover, so it can take the frame compressed once for its set).
  std::size_t deflate_set = 0;
};

/// The members of one topic on one loop: a vector to walk, and an index to
/// find one for removal once the vector is long.
struct Members {
  static constexpr std::size_t index_from = 16;  ///< below this, removal scans
  std::vector<Member> list;
  std::unordered_map<Session*, std::size_t> index;

  Member* find(Session* raw) {
    if (!index.empty()) {
      auto it = index.find(raw);
      return it == index.end() ? nullptr : &list[it->second];
    }
    for (auto& m : list)
      if (m.raw == raw) return &m;
    return nullptr;
  }
  void add(Member m) {
    list.push_back(std::move(m));
    if (!index.empty())
      index.emplace(list.back().raw, list.size() - 1);
    else if (list.size() > index_from)
      for (std::size_t i = 0; i < list.size(); ++i) index.emplace(list[i].raw, i);
  }
  void remove(Session* raw) {
    auto* m = find(raw);
    if (!m) return;
    const auto at = static_cast<std::size_t>(m - list.data());
    if (at + 1 != list.size()) {
      list[at] = std::move(list.back());
      if (!index.empty()) index[list[at].raw] = at;
    }
    list.pop_back();
    if (!index.empty()) index.erase(raw);
  }
};

struct LoopState;

/// Gives each io_context a number of its own: a new context at the address of
/// a destroyed one is told apart from it (a service dies with its context).
/// At the context's shutdown it releases the sessions the registries hold
/// for that loop, while the context's services still exist.
class LoopId : public asio::execution_context::service {
public:
  using key_type = LoopId;
  static inline asio::execution_context::id id;
  explicit LoopId(asio::execution_context& ctx) : service(ctx), value(next().fetch_add(1) + 1) {}
  const std::uint64_t value;
  /// Registers a registry's state for this loop (any thread).
  void add(const std::shared_ptr<LoopState>& loop) {
    std::lock_guard lock(mutex_);
    std::erase_if(states_, [](const auto& w) { return w.expired(); });
    states_.push_back(loop);
  }

private:
  void shutdown() override;
  static std::atomic<std::uint64_t>& next() {
    static std::atomic<std::uint64_t> n{0};
    return n;
  }
  std::mutex mutex_;
  std::vector<std::weak_ptr<LoopState>> states_;
};

/// One unit of a loop's inbox: a publish to deliver, or a subscription to
/// bring in line (both in the order they were handed over).
struct Work {
  std::shared_ptr<const Frame> frame;  ///< set: deliver it
  Session* raw = nullptr;              ///< else: sync `topic` for `raw`
  std::weak_ptr<Session> session;
  std::string topic;

  static Work deliver(std::shared_ptr<const Frame> f) {
    Work w;
    w.frame = std::move(f);
    return w;
  }
  static Work sync(Session* raw, std::weak_ptr<Session> s, std::string topic) {
    Work w;
    w.raw = raw;
    w.session = std::move(s);
    w.topic = std::move(topic);
    return w;
  }
};

/// The members of one event loop ([loop]: touched only on its thread, or
/// once its context shut down and no thread runs it).
struct LoopState : std::enable_shared_from_this<LoopState> {
  LoopState(asio::io_context::executor_type e, std::uint64_t i) : ex(std::move(e)), id(i) {}
  asio::io_context::executor_type ex;
  const std::uint64_t id;
  std::unordered_map<std::string, Members> members;
  /// The deflate parameter sets of members that take a shared compressed
  /// frame (few: one per server configuration and client offer).
  std::vector<protocol::DeflateParams> deflate_sets;
  /// A delivery's compressed frames, by deflate set (null: not made yet).
  std::vector<LoopFrame> compressed;
  /// A delivery's subscribers found closed, and those to close as slow.
  std::vector<Session*> gone;
  std::vector<std::shared_ptr<Session>> to_close;
  /// Members given frames in this drain: written once it is done.
  std::vector<std::shared_ptr<Session>> to_flush;
  /// The inbox, handed over from any thread; one drain is posted at a time.
  std::mutex inbox_mutex;
  std::vector<Work> inbox;
  bool drain_posted = false;
  std::vector<Work> draining;     ///< [loop] the batch being run
  std::atomic<bool> dead{false};  ///< its context shut down
  /// Armed while the loop has members: finds sessions that closed without
  /// their closed event reaching the registry (see Impl::sweep).
  std::optional<asio::steady_timer> sweep;
  std::uint64_t sweep_generation = 0;  ///< a wait acts only if still current
  bool sweep_armed = false;
};

void LoopId::shutdown() {
  std::vector<std::weak_ptr<LoopState>> states;
  {
    std::lock_guard lock(mutex_);
    states.swap(states_);
  }
  for (const auto& w : states)
    if (auto loop = w.lock()) {
      loop->dead.store(true);
      // No thread runs this loop any more: release its sessions now, and
      // the timer while the context's services exist.
      loop->members.clear();
      loop->sweep.reset();
      std::lock_guard lock(loop->inbox_mutex);
      loop->inbox.clear();
    }
}

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
    auto bytes = std::make_shared<std::vector<std::byte>>();
    bytes->reserve(hn + data.size());
    bytes->insert(bytes->end(), header.begin(), header.begin() + hn);
    bytes->insert(bytes->end(), data.begin(), data.end());
    frame->bytes = std::move(bytes);
    published_.fetch_add(1, std::memory_order_relaxed);
    std::shared_ptr<const Frame> shared = std::move(frame);
    for (std::size_t i = 0; i < std::min(n, small.size()); ++i)
      hand_over(small[i], Work::deliver(shared));
    for (const auto& loop : more) hand_over(loop, Work::deliver(shared));
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
    std::vector<std::shared_ptr<LoopState>> loops;
    {
      std::lock_guard lock(mutex_);
      for (auto& [raw, se] : sessions_)
        if (auto s = se.session.lock()) handlers.emplace_back(std::move(s), se.closed_token);
      relay_.reset();
      sessions_.clear();
      topics_.clear();
      for (const auto& [ctx, loop] : loops_) loops.push_back(loop);
    }
    for (auto& [s, token] : handlers) s->events().remove(token);
    // Each loop drops the references it holds, on its own thread (after the
    // work already handed to it). A loop whose context is gone has none.
    for (const auto& loop : loops)
      if (!loop->dead.load())
        asio::post(loop->ex, [loop] {
          loop->members.clear();
          loop->deflate_sets.clear();
          disarm_sweep(*loop);
        });
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
    const auto token = s->events().add_closed(
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
    if (!ours) s->events().remove(token);
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
    if (!slot || slot->id != id) {
      slot = std::make_shared<LoopState>(ex, id);
      asio::use_service<LoopId>(ex.context()).add(slot);
    }
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

  /// Hands `work` to `loop`: into its inbox, with one drain posted for all
  /// that arrives before it runs.
  void hand_over(const std::shared_ptr<LoopState>& loop, Work work) {
    {
      std::lock_guard lock(loop->inbox_mutex);
      loop->inbox.push_back(std::move(work));
      if (loop->drain_posted) return;
      loop->drain_posted = true;
    }
    asio::post(loop->ex, [self = shared_from_this(), loop] { self->drain(*loop); });
  }

  /// On `loop`'s thread: runs its inbox in order.
  void drain(LoopState& loop) {
    {
      std::lock_guard lock(loop.inbox_mutex);
      loop.draining.swap(loop.inbox);
      loop.drain_posted = false;
    }
    for (auto& w : loop.draining) {
      if (w.frame)
        deliver(loop, *w.frame);
      else
        sync(loop, w.raw, w.session, w.topic);
    }
    loop.draining.clear();
    // One write per subscriber for the whole batch, from here (no handler
    // posted per subscriber).
    for (auto& s : loop.to_flush) s->flush_prebuilt();
    loop.to_flush.clear();
  }

  /// Brings `loop`'s members of `topic` in line with the subscriptions for
  /// `s`: at once on the loop's thread, else through its inbox (after the
  /// publishes this thread handed over before, before those it hands after).
  void sync_on_loop(const std::shared_ptr<LoopState>& loop, const std::shared_ptr<Session>& s,
                    std::string topic, Session* raw = nullptr) {
    if (!raw) raw = s.get();
    if (s->executor().running_in_this_thread())
      sync(*loop, raw, s, topic);
    else
      hand_over(loop, Work::sync(raw, s, std::move(topic)));
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
    if (!present) return remove_member(loop, topic, raw);
    auto s = weak.lock();
    if (!s) return;  // gone: its entry is forgotten at the next delivery
    auto& ms = loop.members[topic];
    if (!ms.find(raw)) ms.add({raw, std::move(s), deflate_set(loop, *raw)});
    arm_sweep(loop);
  }

  /// Arms `loop`'s sweep unless it is (on the loop's thread).
  void arm_sweep(LoopState& loop) {
    if (loop.sweep_armed || loop.dead.load()) return;
    if (!loop.sweep) loop.sweep.emplace(loop.ex);
    loop.sweep_armed = true;
    const auto generation = ++loop.sweep_generation;
    loop.sweep->expires_after(sweep_interval);
    // Weak references: a pending wait keeps neither the registry nor the
    // loop's state alive.
    loop.sweep->async_wait([weak = weak_from_this(), weak_loop = loop.weak_from_this(),
                            generation](std::error_code ec) {
      auto l = weak_loop.lock();
      if (!l || l->sweep_generation != generation) return;
      l->sweep_armed = false;
      auto self = weak.lock();
      if (!ec && self) self->sweep(*l);
    });
  }

  /// Stops `loop`'s sweep (it has no members left).
  static void disarm_sweep(LoopState& loop) {
    if (!loop.sweep_armed) return;
    loop.sweep_armed = false;
    ++loop.sweep_generation;
    loop.sweep->cancel();
  }

  /// On `loop`'s thread: forgets the members whose session is closed, then
  /// re-arms while members remain.
  void sweep(LoopState& loop) {
    std::vector<std::pair<std::string, Session*>> closed;
    for (const auto& [topic, ms] : loop.members)
      for (const auto& m : ms.list)
        if (m.keep->phase() == detail::Phase::closed) closed.emplace_back(topic, m.raw);
    for (const auto& [topic, raw] : closed) {
      forget(raw);
      remove_member(loop, topic, raw);
    }
    if (!loop.members.empty()) arm_sweep(loop);
  }

  /// 0 for a member that takes the plain frame; else 1 + the index of its
  /// deflate parameters in `loop.deflate_sets`. Only subscribers without
  /// server context takeover can share a compressed frame (RFC 7692 7.2.3:
  /// each message then compresses on its own, the same bytes for all).
  static std::size_t deflate_set(LoopState& loop, const Session& s) {
    const auto* dp = s.deflate_params();
    if (!dp || !dp->server_no_context_takeover || !dp->can_compress(protocol::Role::server))
      return 0;
    for (std::size_t i = 0; i < loop.deflate_sets.size(); ++i)
      if (loop.deflate_sets[i] == *dp) return i + 1;
    loop.deflate_sets.push_back(*dp);
    return loop.deflate_sets.size();
  }

  static void remove_member(LoopState& loop, const std::string& topic, Session* raw) {
    auto it = loop.members.find(topic);
    if (it == loop.members.end()) return;
    it->second.remove(raw);
    if (it->second.list.empty()) loop.members.erase(it);
    if (loop.members.empty()) disarm_sweep(loop);
  }

  /// The bytes for a member of deflate set `set` (see deflate_set()): the
  /// shared plain frame, or the frame compressed once per delivery and set.
  /// With context takeover a member gets the message uncompressed (RSV1
  /// clear, RFC 7692 6), leaving its connection's compressor window alone.
  const LoopFrame& frame_for(LoopState& loop, std::size_t set, const Frame& frame,
                             const LoopFrame& plain) {
    const auto& params = loop.deflate_sets[set - 1];
    const auto payload = std::span(*frame.bytes).subspan(frame.header_size);
    if (payload.size() < params.compress_threshold) return plain;
    if (loop.compressed.size() < set) loop.compressed.resize(loop.deflate_sets.size());
    auto& slot = loop.compressed[set - 1];
    if (slot.bytes) return slot;
    std::vector<std::byte> body;
    protocol::DeflateEncoder enc(params, protocol::Role::server);
    enc.compress(payload, true, body);
    compressions_.fetch_add(1, std::memory_order_relaxed);
    protocol::FrameHeader h;
    h.fin = true;
    h.rsv1 = true;  // RFC 7692 6: RSV1 on the first frame of a compressed message
    h.opcode = frame.opcode;
    h.payload_length = body.size();
    std::array<std::byte, protocol::max_frame_header_size> header{};
    const auto hn = protocol::write_frame_header(h, header);
    auto out = std::make_shared<std::vector<std::byte>>(header.begin(), header.begin() + hn);
    out->insert(out->end(), body.begin(), body.end());
    slot.set(std::move(out));
    return slot;
  }

  /// On `loop`'s thread: queue the frame to each member. Nothing in the walk
  /// runs a handler (send_prebuilt only queues; drain() writes after the
  /// batch), so the member list cannot change under it; closes and removals
  /// wait until after it.
  void deliver(LoopState& loop, const Frame& frame) {
    auto it = loop.members.find(frame.topic);
    if (it == loop.members.end()) return;
    std::uint64_t delivered = 0, dropped = 0;
    const bool close_slow = options_.slow_subscriber != SlowSubscriberPolicy::drop;
    // A large frame is referenced by each subscriber's write queue (through
    // one SharedFrame for this loop), a small one copied: see
    // Session::prebuilt_reference_min.
    LoopFrame plain;
    plain.set(frame.bytes);
    for (const auto& m : it->second.list) {
      if (m.raw == frame.except) [[unlikely]]
        continue;
      const auto& f = m.deflate_set == 0 ? plain : frame_for(loop, m.deflate_set, frame, plain);
      switch (m.raw->send_prebuilt(*f.bytes, f.shared.get(), &loop.to_flush)) {
        case Session::PrebuiltResult::queued: ++delivered; break;
        case Session::PrebuiltResult::busy: ++dropped; break;
        case Session::PrebuiltResult::closed: loop.gone.push_back(m.raw); break;
        case Session::PrebuiltResult::full:
          ++dropped;
          if (close_slow) loop.to_close.push_back(m.keep);
          break;
      }
    }
    // The loop's references go: each frame lives on while a write queue
    // references it.
    for (auto& c : loop.compressed) c.reset();
    const auto closed = loop.to_close.size();
    // RFC 6455 7.4.1: 1008 policy violation, 1013 try again later.
    const std::uint16_t code =
        options_.slow_subscriber == SlowSubscriberPolicy::close_policy_violation ? 1008 : 1013;
    for (const auto& s : loop.to_close) s->close_on_loop(code, "slow subscriber");
    loop.to_close.clear();
    // Closed without its closed event reaching us (its socket was destroyed
    // first): forget it, and drop this loop's reference even if it was
    // forgotten already.
    for (auto* raw : loop.gone) {
      forget(raw);
      remove_member(loop, frame.topic, raw);
    }
    loop.gone.clear();
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
