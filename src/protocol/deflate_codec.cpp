// permessage-deflate data path (RFC 7692 7.2) over zlib.
//
// Streams: with context takeover an encoder or decoder owns its z_stream (made
// at its first message); without it, it borrows one from a cache private to the
// calling thread for one message and gives it back reset, so idle connections
// hold no zlib memory and a thread keeps only as many streams as it has
// messages in flight. zlib's allocations are counted (zlib_memory_in_use()).
#include <duplex/error.hpp>
#include <duplex/protocol/connection.hpp>
#include <duplex/protocol/deflate.hpp>

#include <zlib.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <utility>

namespace duplex::detail {

struct ZlibStream {
  z_stream z{};
  bool deflater = false;
  int window_bits = 15;
  int memory_level = 8;
  int level = 3;
  std::size_t bytes = 0;  ///< what zlib allocated for this stream
};

}  // namespace duplex::detail

namespace duplex::protocol {
namespace {

using detail::ZlibStream;

std::atomic<std::size_t> g_zlib_bytes{0};

// zlib allocator that counts: each block carries its size in front.
constexpr std::size_t header_size = alignof(std::max_align_t);

voidpf counting_alloc(voidpf opaque, uInt items, uInt size) {
  std::size_t n = static_cast<std::size_t>(items) * size;
  auto* p = static_cast<unsigned char*>(std::malloc(n + header_size));
  if (p == nullptr) return Z_NULL;
  std::memcpy(p, &n, sizeof n);
  static_cast<ZlibStream*>(opaque)->bytes += n;
  g_zlib_bytes.fetch_add(n, std::memory_order_relaxed);
  return p + header_size;
}

void counting_free(voidpf opaque, voidpf address) {
  if (address == Z_NULL) return;
  auto* p = static_cast<unsigned char*>(address) - header_size;
  std::size_t n;
  std::memcpy(&n, p, sizeof n);
  static_cast<ZlibStream*>(opaque)->bytes -= n;
  g_zlib_bytes.fetch_sub(n, std::memory_order_relaxed);
  std::free(p);
}

ZlibStream* make_stream(bool deflater, int window_bits, int memory_level, int level) {
  auto* s = new ZlibStream;
  s->deflater = deflater;
  s->window_bits = window_bits;
  s->memory_level = memory_level;
  s->level = level;
  s->z.zalloc = counting_alloc;
  s->z.zfree = counting_free;
  s->z.opaque = s;
  // RFC 7692 7.2: raw DEFLATE, no zlib header (negative window bits).
  int rc = deflater ? deflateInit2(&s->z, level, Z_DEFLATED, -window_bits, memory_level,
                                   Z_DEFAULT_STRATEGY)
                    : inflateInit2(&s->z, -window_bits);
  if (rc != Z_OK) {
    delete s;
    // Settings were checked before; only memory can be missing here.
    throw std::bad_alloc();
  }
  return s;
}

void destroy_stream(ZlibStream* s) noexcept {
  if (s == nullptr) return;
  if (s->deflater)
    deflateEnd(&s->z);
  else
    inflateEnd(&s->z);
  delete s;
}

void reset_stream(ZlibStream* s) noexcept {
  if (s->deflater)
    deflateReset(&s->z);
  else
    inflateReset(&s->z);
}

// Idle streams of one thread. Bounded, so a burst of concurrent messages does
// not pin memory for ever.
constexpr std::size_t max_cached_per_kind = 8;

struct StreamCache {
  std::vector<ZlibStream*> deflaters;
  std::vector<ZlibStream*> inflaters;
  ~StreamCache();
  void trim() noexcept {
    for (auto* s : deflaters) destroy_stream(s);
    for (auto* s : inflaters) destroy_stream(s);
    deflaters.clear();
    inflaters.clear();
  }
};

// Trivially destructible, so it stays readable after the cache is gone at thread exit.
thread_local bool t_cache_gone = false;
thread_local StreamCache t_cache;

StreamCache::~StreamCache() {
  trim();
  t_cache_gone = true;
}

StreamCache* cache() noexcept {
  return t_cache_gone ? nullptr : &t_cache;
}

ZlibStream* borrow(bool deflater, int window_bits, int memory_level, int level) {
  if (StreamCache* c = cache()) {
    auto& list = deflater ? c->deflaters : c->inflaters;
    for (auto it = list.rbegin(); it != list.rend(); ++it) {
      ZlibStream* s = *it;
      if (s->window_bits == window_bits &&
          (!deflater || (s->memory_level == memory_level && s->level == level))) {
        list.erase(std::next(it).base());
        return s;
      }
    }
  }
  return make_stream(deflater, window_bits, memory_level, level);
}

void give_back(ZlibStream* s) noexcept {
  reset_stream(s);
  StreamCache* c = cache();
  if (c != nullptr) {
    auto& list = s->deflater ? c->deflaters : c->inflaters;
    if (list.size() >= max_cached_per_kind) {
      // Full: the least recently used goes (several settings may be in use).
      destroy_stream(list.front());
      list.erase(list.begin());
    }
    try {
      list.push_back(s);
      return;
    } catch (...) {
      // No room to cache it: free it instead.
    }
  }
  destroy_stream(s);
}

// An encoder's or decoder's stream: without context takeover (`borrowed`) it
// is borrowed from the thread's cache for one message and given back after it;
// with takeover the coder owns it for good and frees it at the end.
ZlibStream* take_stream(bool borrowed, bool deflater, int window_bits, int memory_level,
                        int level) {
  return borrowed ? borrow(deflater, window_bits, memory_level, level)
                  : make_stream(deflater, window_bits, memory_level, level);
}

void put_stream(ZlibStream*& s, bool borrowed) noexcept {
  if (s == nullptr) return;
  if (borrowed)
    give_back(s);
  else
    destroy_stream(s);
  s = nullptr;
}

// After an aborted message the window holds data the peer never fully saw:
// start afresh (a borrowed stream goes back reset, an owned one is reset).
void restart_stream(ZlibStream*& s, bool borrowed) noexcept {
  if (borrowed)
    put_stream(s, borrowed);
  else if (s != nullptr)
    reset_stream(s);
}

// zlib counts in uInt; larger inputs go in pieces.
constexpr std::size_t max_chunk = std::size_t{1} << 30;

// RFC 7692 7.2.1: the tail a sync flush ends with, removed on send and
// appended on receive.
constexpr std::array<std::byte, 4> sync_tail{std::byte{0x00}, std::byte{0x00}, std::byte{0xff},
                                             std::byte{0xff}};

// Makes at least `want` bytes writable at the end of `out` (which grows to
// them) and returns where they start. Growth is geometric, and the vector keeps
// its capacity between messages, so steady state allocates nothing.
std::byte* extend(std::vector<std::byte>& out, std::size_t want) {
  std::size_t old = out.size();
  if (out.capacity() - old < want) out.reserve(std::max(out.capacity() * 2, old + want));
  out.resize(old + want);
  return out.data() + old;
}

Bytef* z_in(std::span<const std::byte> in) noexcept {
  // zlib's next_in is not const-qualified (without ZLIB_CONST) but is only read.
  return reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
}

}  // namespace

std::size_t zlib_memory_in_use() noexcept {
  return g_zlib_bytes.load(std::memory_order_relaxed);
}

void trim_deflate_cache() noexcept {
  if (StreamCache* c = cache()) c->trim();
}

// --- DeflateEncoder ----------------------------------------------------------------

DeflateEncoder::DeflateEncoder(const DeflateParams& params, Role role) {
  bool server = role == Role::server;
  window_bits_ = server ? params.server_max_window_bits : params.client_max_window_bits;
  // See the header: zlib cannot compress with 8 bits, so such messages go uncompressed.
  enabled_ = params.can_compress(role);
  no_context_takeover_ =
      server ? params.server_no_context_takeover : params.client_no_context_takeover;
  memory_level_ = params.memory_level;
  level_ = params.compression_level;
  threshold_ = params.compress_threshold;
}

DeflateEncoder::~DeflateEncoder() {
  release();
}

DeflateEncoder::DeflateEncoder(DeflateEncoder&& o) noexcept
    : stream_(std::exchange(o.stream_, nullptr)),
      threshold_(o.threshold_),
      window_bits_(o.window_bits_),
      memory_level_(o.memory_level_),
      level_(o.level_),
      enabled_(o.enabled_),
      no_context_takeover_(o.no_context_takeover_),
      in_message_(std::exchange(o.in_message_, false)) {}

DeflateEncoder& DeflateEncoder::operator=(DeflateEncoder&& o) noexcept {
  if (this != &o) {
    release();
    stream_ = std::exchange(o.stream_, nullptr);
    threshold_ = o.threshold_;
    window_bits_ = o.window_bits_;
    memory_level_ = o.memory_level_;
    level_ = o.level_;
    enabled_ = o.enabled_;
    no_context_takeover_ = o.no_context_takeover_;
    in_message_ = std::exchange(o.in_message_, false);
  }
  return *this;
}

void DeflateEncoder::acquire(std::size_t whole_message_size) {
  if (stream_ != nullptr) return;
  // Without takeover a whole message known to be small gets a stream sized to
  // it: a window just covering it (allowed: the negotiated value is an upper
  // bound, RFC 7692 7.1.2) and a hash of as many entries. Output is the same,
  // but deflateReset clears 2^(memLevel+8) bytes of hash per message: 1 KiB
  // instead of 64 KiB for a 100-byte message.
  int bits = window_bits_;
  int mem = memory_level_;
  if (no_context_takeover_ && whole_message_size < (std::size_t{1} << window_bits_)) {
    bits = 9;
    while ((std::size_t{1} << bits) < whole_message_size) ++bits;
    mem = std::clamp(bits - 7, 1, memory_level_);
  }
  stream_ = take_stream(no_context_takeover_, true, bits, mem, level_);
}

void DeflateEncoder::release() noexcept {
  put_stream(stream_, no_context_takeover_);
}

std::size_t DeflateEncoder::memory_in_use() const noexcept {
  return stream_ != nullptr ? stream_->bytes : 0;
}

void DeflateEncoder::abort_message() noexcept {
  if (!in_message_) return;
  in_message_ = false;
  restart_stream(stream_, no_context_takeover_);
}

void DeflateEncoder::compress(std::span<const std::byte> in, bool fin,
                              std::vector<std::byte>& out) {
  if (!in_message_) acquire(fin ? in.size() : std::numeric_limits<std::size_t>::max());
  in_message_ = true;
  z_stream& z = stream_->z;
  const std::size_t start = out.size();
  std::size_t offset = 0;
  do {
    std::size_t chunk = std::min(in.size() - offset, max_chunk);
    z.next_in = z_in(in.subspan(offset, chunk));
    z.avail_in = static_cast<uInt>(chunk);
    offset += chunk;
    // RFC 7692 7.2.1: every piece ends on a sync flush, so the peer can inflate
    // what it has (a fragment) and the message ends with 00 00 ff ff.
    for (;;) {
      // Compressed data rarely exceeds the input by more than a few bytes per
      // 16 KiB stored block; the loop takes care of the rest.
      std::size_t want = std::min<std::size_t>(z.avail_in + (z.avail_in >> 3) + 64, max_chunk);
      std::size_t before = out.size();
      z.next_out = reinterpret_cast<Bytef*>(extend(out, want));
      z.avail_out = static_cast<uInt>(want);
      int rc = deflate(&z, Z_SYNC_FLUSH);
      out.resize(before + (want - z.avail_out));
      if (rc == Z_STREAM_ERROR) throw std::bad_alloc();  // a broken stream: cannot happen
      // Z_BUF_ERROR: no input and nothing left to flush.
      if (z.avail_out != 0 || rc == Z_BUF_ERROR) break;
    }
  } while (offset < in.size());

  if (!fin) return;
  in_message_ = false;
  if (out.size() == start) {
    // Nothing new since the last sync flush: RFC 7692 7.2.3.6, send an empty
    // stored block's first byte (the peer appends the other four).
    out.push_back(std::byte{0x00});
  } else if (out.size() - start >= sync_tail.size() &&
             std::equal(sync_tail.begin(), sync_tail.end(), out.end() - 4)) {
    out.resize(out.size() - sync_tail.size());
  }
  // RFC 7692 7.1.1: without context takeover each message starts with an empty window.
  if (no_context_takeover_) release();
}

// --- DeflateDecoder ----------------------------------------------------------------

DeflateDecoder::DeflateDecoder(const DeflateParams& params, Role role) {
  bool server = role == Role::server;
  int bits = server ? params.client_max_window_bits : params.server_max_window_bits;
  // At least 9: a zlib peer that agreed on 8 compresses with 9 (see the header).
  window_bits_ = std::max(bits, 9);
  enabled_ = true;
  no_context_takeover_ =
      server ? params.client_no_context_takeover : params.server_no_context_takeover;
}

DeflateDecoder::~DeflateDecoder() {
  release();
}

DeflateDecoder::DeflateDecoder(DeflateDecoder&& o) noexcept
    : stream_(std::exchange(o.stream_, nullptr)),
      produced_(o.produced_),
      consumed_(o.consumed_),
      window_bits_(o.window_bits_),
      enabled_(o.enabled_),
      no_context_takeover_(o.no_context_takeover_),
      in_message_(std::exchange(o.in_message_, false)),
      stream_ended_(o.stream_ended_) {}

DeflateDecoder& DeflateDecoder::operator=(DeflateDecoder&& o) noexcept {
  if (this != &o) {
    release();
    stream_ = std::exchange(o.stream_, nullptr);
    produced_ = o.produced_;
    consumed_ = o.consumed_;
    window_bits_ = o.window_bits_;
    enabled_ = o.enabled_;
    no_context_takeover_ = o.no_context_takeover_;
    in_message_ = std::exchange(o.in_message_, false);
    stream_ended_ = o.stream_ended_;
  }
  return *this;
}

void DeflateDecoder::acquire() {
  if (stream_ != nullptr) return;
  stream_ = take_stream(no_context_takeover_, false, window_bits_, 0, 0);
}

void DeflateDecoder::release() noexcept {
  put_stream(stream_, no_context_takeover_);
}

std::size_t DeflateDecoder::memory_in_use() const noexcept {
  return stream_ != nullptr ? stream_->bytes : 0;
}

void DeflateDecoder::abort_message() noexcept {
  if (!in_message_) return;
  in_message_ = false;
  stream_ended_ = false;
  restart_stream(stream_, no_context_takeover_);
}

std::error_code DeflateDecoder::inflate(std::span<const std::byte> in, bool fin,
                                        std::vector<std::byte>& out, std::uint64_t max_size) {
  if (!in_message_) {
    in_message_ = true;
    produced_ = 0;
    consumed_ = 0;
    stream_ended_ = false;
  }
  consumed_ += in.size();
  // RFC 7692 7.2.3.4: after a block with BFINAL the rest of the message is ignored.
  if (!in.empty() && !stream_ended_) {
    acquire();
    if (auto ec = run(in, out, max_size)) {
      abort_message();
      return ec;
    }
  }
  if (!fin) return {};
  auto ec = finish_message(out, max_size);
  if (ec)
    abort_message();
  else
    in_message_ = false;
  return ec;
}

// Inflates `in` entirely. Z_BLOCK stops at each block end, which leaves the
// stream at a visible block boundary (data_type bit 128) when the input ends on one.
std::error_code DeflateDecoder::run(std::span<const std::byte> in, std::vector<std::byte>& out,
                                    std::uint64_t max_size) {
  z_stream& z = stream_->z;
  int stalls = 0;
  for (std::size_t offset = 0; offset < in.size();) {
    std::size_t chunk = std::min(in.size() - offset, max_chunk);
    z.next_in = z_in(in.subspan(offset, chunk));
    z.avail_in = static_cast<uInt>(chunk);
    offset += chunk;
    // Output room: a guess from the input (JSON inflates about 4 to 10 times),
    // doubled while the output keeps filling it.
    std::size_t room = std::clamp<std::size_t>(std::size_t{z.avail_in} * 4, 1024, max_chunk);
    for (;;) {
      // The inflated size is checked as it grows: never produce more than
      // max_size + 1 bytes, whatever the ratio (a decompression bomb).
      std::uint64_t left = max_size - produced_;
      if (left < room) room = static_cast<std::size_t>(left) + 1;
      std::size_t before = out.size();
      z.next_out = reinterpret_cast<Bytef*>(extend(out, room));
      z.avail_out = static_cast<uInt>(room);
      uInt in_before = z.avail_in;
      int rc = ::inflate(&z, Z_BLOCK);
      std::size_t made = room - z.avail_out;
      out.resize(before + made);
      produced_ += made;
      // RFC 6455 10.4: the message size limit applies to the inflated size.
      if (produced_ > max_size) return error::message_too_big;
      if (rc == Z_STREAM_END) {
        stream_ended_ = true;
        z.avail_in = 0;
        return {};
      }
      if (rc == Z_MEM_ERROR) throw std::bad_alloc();
      if (rc != Z_OK && rc != Z_BUF_ERROR) return error::bad_compressed_data;
      bool at_block_end = (z.data_type & 128) != 0;
      // A full output buffer may hide pending output, except at a block end.
      if (z.avail_out == 0 && !at_block_end) {
        room = std::min(room * 2, max_chunk);
        continue;
      }
      if (z.avail_in == 0) break;
      // Stopped at a block end with input left: go on. Guard against a stall.
      if (made == 0 && z.avail_in == in_before) {
        if (++stalls > 2) return error::bad_compressed_data;
      } else {
        stalls = 0;
      }
    }
  }
  return {};
}

std::error_code DeflateDecoder::finish_message(std::vector<std::byte>& out,
                                               std::uint64_t max_size) {
  // An empty payload: some senders (zlib's sync flush with nothing new) send
  // nothing at all for an empty message.
  if (consumed_ == 0) return {};
  z_stream& z = stream_->z;
  if (!stream_ended_) {
    // Bit 128: at a block boundary; low 6 bits: bits left over in the last byte.
    auto at_boundary = [&z] { return (z.data_type & 128) != 0 && (z.data_type & 63) == 0; };
    if (!at_boundary()) {
      // RFC 7692 7.2.2: append 00 00 ff ff, completing the sender's empty stored block.
      if (auto ec = run(sync_tail, out, max_size)) return ec;
      if (stream_ended_) {
        // fall through to the BFINAL handling below
      } else if (!at_boundary()) {
        // The message does not end on a block boundary: truncated data.
        return error::bad_compressed_data;
      }
    }
  }
  if (stream_ended_) {
    stream_ended_ = false;
    if (no_context_takeover_) {
      release();
      return {};
    }
    // The peer ended its DEFLATE stream (BFINAL) but the window carries over to
    // the next message: restart the stream with the window as its dictionary.
    std::vector<Bytef> window(std::size_t{1} << window_bits_);
    uInt length = static_cast<uInt>(window.size());
    inflateGetDictionary(&z, window.data(), &length);
    inflateReset(&z);
    inflateSetDictionary(&z, window.data(), length);
    return {};
  }
  if (no_context_takeover_) release();
  return {};
}

}  // namespace duplex::protocol
