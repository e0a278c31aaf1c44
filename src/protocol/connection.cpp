// The sans-I/O RFC 6455 connection: frames in, events out; calls in, frames out.
#include <duplex/error.hpp>
#include <duplex/protocol/close.hpp>
#include <duplex/protocol/connection.hpp>

#include "detail/always_inline.hpp"

#include <openssl/rand.h>

#include <bit>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <system_error>

#include <pthread.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace duplex::protocol {

struct Connection::Header {
  std::uint64_t length = 0;
  MaskKey key{};
  std::uint8_t b0 = 0;
  bool masked = false;
};

namespace {

inline std::uint8_t u8(std::byte b) noexcept {
  return static_cast<std::uint8_t>(b);
}

constexpr std::uint8_t op_continuation = 0x0;
constexpr std::uint8_t op_text = 0x1;
constexpr std::uint8_t op_binary = 0x2;
constexpr std::uint8_t op_close = 0x8;
constexpr std::uint8_t op_ping = 0x9;
constexpr std::uint8_t op_pong = 0xA;
constexpr std::uint8_t bit_fin = 0x80;
constexpr std::uint8_t bit_rsv1 = 0x40;
constexpr std::uint8_t bits_rsv = 0x70;

// Success, made once: std::error_code{} calls the out-of-line
// std::system_category() each time (on every small send, as here).
const std::error_code no_error{};

// The input buffer's counterpart of retained_output_capacity.
constexpr std::size_t retained_capacity = Connection::retained_output_capacity;

// Partial mode gathers pieces only for messages that span reads or frames
// (large ones, or tiny frames); its buffer is freed at the message end above
// this, so an idle connection does not keep up to a threshold's worth.
constexpr std::size_t partial_retained_capacity = 4 * 1024;

// RFC 6455 5.3: client masking keys come from a strong source of entropy. Keys
// are drawn 4,096 at a time per thread, so a frame costs no system call: a
// RAND_bytes call costs about 5,700 instructions plus 2.75 per byte, so a key
// costs about 12 instructions this way (33 in draws of 256). The 16 KiB are
// allocated at a thread's first client frame: other threads hold nothing.
//
// The cursor is trivially destructible, so taking a key checks no guard and
// computes the thread's address once; the store that owns the keys is only
// reached when they run out.
struct MaskKeyCursor {
  const unsigned char* next = nullptr;
  const unsigned char* end = nullptr;  // next == end: draw more
  bool store_gone = false;             // after the thread's store: one key at a time
  unsigned char single[4] = {};
};
DUPLEX_INITIAL_EXEC constinit thread_local MaskKeyCursor mask_cursor;

constexpr std::size_t mask_pool_bytes = 4096 * 4;

struct MaskKeyStore {
  MaskKeyStore() = default;
  MaskKeyStore(const MaskKeyStore&) = delete;
  MaskKeyStore& operator=(const MaskKeyStore&) = delete;
  // A client frame sent by another thread-local object's destructor after
  // this one still gets a fresh key (refill_mask_keys draws it alone).
  ~MaskKeyStore() {
    mask_cursor.next = mask_cursor.end = nullptr;
    mask_cursor.store_gone = true;
  }
  std::unique_ptr<unsigned char[]> keys;
};

// A child process of fork() drops the keys it inherited (at most the rest of
// the forking thread's draw): else parent and child would mask with the same
// keys. Other threads' cursors do not exist in the child.
void drop_inherited_mask_keys() noexcept {
  mask_cursor.next = mask_cursor.end;
}

// Draws more keys and takes the first.
[[gnu::noinline, gnu::cold]] MaskKey refill_mask_keys() {
  // Registered before the first keys are drawn, once per process.
  static const bool fork_handler =
      ::pthread_atfork(nullptr, nullptr, drop_inherited_mask_keys) == 0;
  if (!fork_handler)
    throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                            "pthread_atfork failed: masking keys could be shared with a child");
  unsigned char* dst = mask_cursor.single;
  std::size_t n = sizeof(mask_cursor.single);
  if (!mask_cursor.store_gone) {
    thread_local MaskKeyStore store;
    if (!store.keys) store.keys = std::make_unique_for_overwrite<unsigned char[]>(mask_pool_bytes);
    dst = store.keys.get();
    n = mask_pool_bytes;
  }
  if (RAND_bytes(dst, static_cast<int>(n)) != 1)
    throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                            "RAND_bytes failed to produce masking keys");
  mask_cursor.next = dst + 4;
  mask_cursor.end = dst + n;
  MaskKey k;
  std::memcpy(k.data(), dst, 4);
  return k;
}

// A small payload's bytes' top bits ORed together (zero when it is ASCII),
// unmasking it in place first (key offset 0) when `Unmask`. Without it (the
// client's receive: RFC 6455 5.1, a server's frames are not masked) the bytes
// are only read, not XORed with a zero key and stored back.
template <bool Unmask>
inline std::uint64_t scan_small(std::byte* p, std::size_t n, std::uint32_t k32) noexcept {
  const std::uint64_t k64 = (std::uint64_t{k32} << 32) | k32;
  std::uint64_t acc = 0;
#if defined(__SSE2__)
  if (n >= 16) {
    const __m128i k128 = _mm_set1_epi32(static_cast<int>(k32));
    __m128i acc128 = _mm_setzero_si128();
    do {
      __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      if constexpr (Unmask) {
        v = _mm_xor_si128(v, k128);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v);
      }
      acc128 = _mm_or_si128(acc128, v);
      p += 16;
      n -= 16;
    } while (n >= 16);
    acc = static_cast<std::uint64_t>(_mm_movemask_epi8(acc128));
  }
#endif
  for (; n >= 8; n -= 8, p += 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    if constexpr (Unmask) {
      w ^= k64;
      std::memcpy(p, &w, 8);
    }
    acc |= w & 0x8080808080808080ull;
  }
  if (n >= 4) {
    std::uint32_t w;
    std::memcpy(&w, p, 4);
    if constexpr (Unmask) {
      w ^= k32;
      std::memcpy(p, &w, 4);
    }
    acc |= w & 0x80808080u;
    n -= 4;
    p += 4;
  }
  // The remaining 0-3 bytes use the key's first bytes (in memory order).
  std::byte key[4];
  std::memcpy(key, &k32, 4);
  for (std::size_t i = 0; i < n; ++i) {
    if constexpr (Unmask) p[i] ^= key[i];
    acc |= static_cast<std::uint8_t>(p[i]) & 0x80u;
  }
  return acc;
}

// The 4-byte key `k32` (in memory order, little-endian) started `offset`
// bytes later.
inline std::uint32_t rotate_key(std::uint32_t k32, std::size_t offset) noexcept {
  const auto shift = static_cast<unsigned>((offset & 3) * 8);
  return shift == 0 ? k32 : (k32 >> shift) | (k32 << (32 - shift));
}

// Copies a small payload (at most 125 bytes) XORed with the key `k32` (key
// offset 0; k32 = 0 copies plainly) and returns the OR of the source bytes' top
// bits (zero when ASCII), in one pass. The tail is one overlapping block whose
// key is rotated to its offset, so there is no byte loop; reads and writes stay
// within the n bytes. Little-endian only (the key rotation).
inline std::uint64_t copy_small(std::byte* dst, const std::byte* src, std::size_t n,
                                std::uint32_t k32) noexcept {
  const std::uint32_t k_tail = rotate_key(k32, n);
#if defined(__SSE2__)
  if (n >= 16) {
    const __m128i k = _mm_set1_epi32(static_cast<int>(k32));
    __m128i acc = _mm_setzero_si128();
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm_xor_si128(v, k));
      acc = _mm_or_si128(acc, v);
    }
    if (i < n) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + n - 16));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + n - 16),
                       _mm_xor_si128(v, _mm_set1_epi32(static_cast<int>(k_tail))));
      acc = _mm_or_si128(acc, v);
    }
    return static_cast<std::uint64_t>(_mm_movemask_epi8(acc));
  }
#else
  if (n >= 16) {
    std::uint64_t acc = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const auto b = static_cast<std::uint8_t>(src[i]);
      acc |= b;
      dst[i] = std::byte{static_cast<std::uint8_t>(b ^ (k32 >> (8 * (i & 3))))};
    }
    return acc & 0x80u;
  }
#endif
  if (n >= 8) {
    const std::uint64_t k = (std::uint64_t{k32} << 32) | k32;
    const std::uint64_t kt = (std::uint64_t{k_tail} << 32) | k_tail;
    std::uint64_t a, b;
    std::memcpy(&a, src, 8);
    std::memcpy(&b, src + n - 8, 8);
    const std::uint64_t ma = a ^ k, mb = b ^ kt;
    std::memcpy(dst, &ma, 8);
    std::memcpy(dst + n - 8, &mb, 8);
    return (a | b) & 0x8080808080808080ull;
  }
  if (n >= 4) {
    std::uint32_t a, b;
    std::memcpy(&a, src, 4);
    std::memcpy(&b, src + n - 4, 4);
    const std::uint32_t ma = a ^ k32, mb = b ^ k_tail;
    std::memcpy(dst, &ma, 4);
    std::memcpy(dst + n - 4, &mb, 4);
    return (a | b) & 0x80808080u;
  }
  std::uint64_t acc = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto b = static_cast<std::uint8_t>(src[i]);
    acc |= b;
    dst[i] = std::byte{static_cast<std::uint8_t>(b ^ (k32 >> (8 * i)))};
  }
  return acc & 0x80u;
}

// The refill returns the key itself: the usual path computes the thread's
// cursor address once.
inline MaskKey next_mask_key() {
  MaskKeyCursor& c = mask_cursor;
  const unsigned char* const p = c.next;
  if (p == c.end) [[unlikely]]
    return refill_mask_keys();
  c.next = p + 4;
  MaskKey k;
  std::memcpy(k.data(), p, 4);
  return k;
}

// True when `p` is valid UTF-8; short ASCII text (the usual small message)
// costs a few word tests.
inline bool text_valid(std::span<const std::byte> p) noexcept {
  if (p.size() <= 128) {
    std::uint64_t acc = 0;
    std::size_t i = 0;
    for (; i + 8 <= p.size(); i += 8) {
      std::uint64_t w;
      std::memcpy(&w, p.data() + i, 8);
      acc |= w;
    }
    for (; i < p.size(); ++i) acc |= static_cast<std::uint8_t>(p[i]);
    if ((acc & 0x8080808080808080ull) == 0) return true;
  }
  return is_valid_utf8(p);
}

}  // namespace

std::byte* Connection::OutputBuffer::grow(std::size_t n) {
  std::size_t cap = capacity_ < 256 ? 256 : capacity_;
  while (cap - size_ < n) {
    if (cap > std::numeric_limits<std::size_t>::max() / 2) throw std::length_error("output buffer");
    cap *= 2;
  }
  auto bigger = std::make_unique_for_overwrite<std::byte[]>(cap);
  if (size_ != 0) std::memcpy(bigger.get(), data_.get(), size_);
  data_ = std::move(bigger);
  capacity_ = cap;
  std::byte* p = data_.get() + size_;
  size_ += n;
  return p;
}

Connection::Connection(ConnectionConfig config) : own_(std::make_unique<Own>()) {
  own_->config = std::move(config);
  config_ = &own_->config;
  derive_fast_path();
  if (config_->deflate) {
    own_->wr_deflate = DeflateEncoder(*config_->deflate, config_->role);
    own_->rd_deflate = DeflateDecoder(*config_->deflate, config_->role);
  }
}

void Connection::derive_fast_path() noexcept {
  rd_fast_max_ =
      static_cast<std::uint8_t>(config_->max_message_size < 125 ? config_->max_message_size : 125);
  rd_mask_bit_ = config_->role == Role::server ? 0x80 : 0x00;
}

Connection Connection::sharing(const ConnectionConfig& config) {
  if (config.deflate) return Connection(config);
  return Connection(config, Shared{});
}

// --- Receiving ------------------------------------------------------------------

// Decodes and checks the header at p[0..n). Each rule is checked as soon as the
// byte it depends on is present, so a split header fails at the same byte as a
// whole one. Returns the header size, or 0 when more bytes are needed or `ec`
// was set.
std::size_t Connection::read_header(const std::byte* p, std::size_t n, Header& h,
                                    std::error_code& ec) const noexcept {
  if (n == 0) return 0;
  const std::uint8_t b0 = u8(p[0]);
  const std::uint8_t op = b0 & 0x0F;
  const bool control = (op & 0x8) != 0;
  if ((b0 & bits_rsv) != 0) {
    // RFC 6455 5.2: a reserved bit needs a negotiated extension that defines it;
    // RFC 7692 6: permessage-deflate sets RSV1 on the first frame of a data
    // message only.
    const bool rsv1_ok = (config_->rsv1_allowed || config_->deflate) &&
                         (b0 & bits_rsv) == bit_rsv1 && (op == op_text || op == op_binary);
    if (!rsv1_ok) {
      ec = make_error_code(error::reserved_bits);
      return 0;
    }
  }
  // RFC 6455 5.2: opcodes 3-7 and 0xB-0xF are reserved.
  if (op > op_binary && (op < op_close || op > op_pong)) {
    ec = make_error_code(error::reserved_opcode);
    return 0;
  }
  if (control) {
    // RFC 6455 5.5: control frames are never fragmented.
    if ((b0 & bit_fin) == 0) {
      ec = make_error_code(error::fragmented_control);
      return 0;
    }
  } else if (op == op_continuation) {
    // RFC 6455 5.4: a continuation frame only follows a non-final data frame.
    if (!rd_in_message_) {
      ec = make_error_code(error::unexpected_continuation);
      return 0;
    }
  } else if (rd_in_message_) {
    // RFC 6455 5.4: a fragmented message ends before another one starts.
    ec = make_error_code(error::expected_continuation);
    return 0;
  }
  if (n < 2) return 0;
  const std::uint8_t b1 = u8(p[1]);
  const bool masked = (b1 & 0x80) != 0;
  // RFC 6455 5.1: a client masks every frame, a server masks none.
  if (config_->role == Role::server) {
    if (!masked) {
      ec = make_error_code(error::unmasked_client_frame);
      return 0;
    }
  } else if (masked) {
    ec = make_error_code(error::masked_server_frame);
    return 0;
  }
  const std::uint8_t len7 = b1 & 0x7F;
  std::uint64_t len = len7;
  std::size_t pos = 2;
  if (len7 >= 126) {
    // RFC 6455 5.5: control payloads fit in the 7-bit length (at most 125).
    if (control) {
      ec = make_error_code(error::control_too_long);
      return 0;
    }
    if (len7 == 126) {
      if (n < 4) return 0;
      len = (std::uint64_t{u8(p[2])} << 8) | u8(p[3]);
      // RFC 6455 5.2: lengths use the minimal encoding.
      if (len < 126) {
        ec = make_error_code(error::non_minimal_length);
        return 0;
      }
      pos = 4;
    } else {
      // RFC 6455 5.2: the top bit of a 64-bit length is 0.
      if (n >= 3 && (u8(p[2]) & 0x80) != 0) {
        ec = make_error_code(error::length_top_bit);
        return 0;
      }
      if (n < 10) {
        // RFC 6455 5.2: minimal encoding; known once the six high bytes are here.
        if (n >= 8) {
          bool high_zero = true;
          for (std::size_t i = 2; i < 8; ++i) high_zero = high_zero && u8(p[i]) == 0;
          if (high_zero) {
            ec = make_error_code(error::non_minimal_length);
            return 0;
          }
        }
        return 0;
      }
      len = 0;
      for (std::size_t i = 2; i < 10; ++i) len = (len << 8) | u8(p[i]);
      if (len <= 0xFFFF) {
        ec = make_error_code(error::non_minimal_length);
        return 0;
      }
      pos = 10;
    }
  }
  if (!control) {
    // Limits: fail with 1009 as soon as the declared length is too big.
    const std::uint64_t so_far = op == op_continuation ? rd_msg_size_ : 0;
    if (len > config_->max_message_size - so_far) {
      ec = make_error_code(error::message_too_big);
      return 0;
    }
  }
  if (masked) {
    if (n < pos + 4) return 0;
    std::memcpy(h.key.data(), p + pos, 4);
    pos += 4;
  }
  h.b0 = b0;
  h.length = len;
  h.masked = masked;
  return pos;
}

// Sets up the frame whose header was just read (and checked).
void Connection::start_frame(const Header& h) noexcept {
  const std::uint8_t op = h.b0 & 0x0F;
  ++stats_.frames_received;
  rd_opcode_ = op;
  rd_fin_ = (h.b0 & bit_fin) != 0;
  rd_masked_ = h.masked;
  rd_key_ = h.key;
  rd_key_offset_ = 0;
  rd_remaining_ = h.length;
  rd_in_payload_ = true;
  if ((op & 0x8) == 0) {
    if (op != op_continuation) {
      rd_text_ = op == op_text;
      rd_compressed_ = (h.b0 & bit_rsv1) != 0;
      rd_msg_size_ = 0;
      rd_utf8_.reset();
      rd_message_.clear();
    }
    rd_msg_size_ += h.length;
    rd_in_message_ = !rd_fin_;
  }
}

// True when the frame `h` (just read, `avail` bytes of its payload here)
// holds a whole message that receive_holding() may leave unconsumed: it is
// delivered as one view only when it arrives in one buffer. In partial mode a
// part that reaches the piece threshold goes out as a view anyway.
bool Connection::holdable(const Header& h, std::size_t avail) const noexcept {
  const std::uint8_t op = h.b0 & 0x0F;
  return (h.b0 & bit_fin) != 0 && (op == op_text || op == op_binary) &&
         h.length >= hold_min_payload && !((h.b0 & bit_rsv1) != 0 && config_->deflate) &&
         (!config_->partial_messages || avail < piece_threshold());
}

void Connection::fail(std::error_code ec, ConnectionHandler& handler) {
  rd_done_ = true;
  rd_in_payload_ = false;
  if (!close_sent_) {
    // RFC 6455 7.1.7: fail the connection by sending a close frame with the
    // code that names the failure (7.4.1), then stop.
    const auto e = static_cast<error>(ec.value());
    const std::uint16_t code = close_code_for(e);
    std::array<std::byte, 125> body;
    const std::size_t n = write_close_payload(code, {}, body);
    queue_frame(bit_fin | op_close, std::span<const std::byte>(body.data(), n));
    close_sent_ = true;
  }
  state_ = ConnectionState::closed;
  handler.on_error(ec);
}

// Handles a whole control frame. Returns false when the connection stopped.
bool Connection::handle_control(std::span<const std::byte> payload, ConnectionHandler& handler) {
  switch (rd_opcode_) {
    case op_ping:
      // RFC 6455 5.5.2: answer a ping with a pong carrying the same payload,
      // unless a close was sent (5.5.1: no frames after a close).
      if (config_->auto_pong && !close_sent_) {
        // RFC 6455 5.5.3: a pong may answer only the most recent of several
        // pings. While a write is in flight (the peer reads slower than we
        // send) a pong still last in the queue is replaced by the newer one,
        // so a ping flood holds at most one pong; otherwise every ping gets
        // its own.
        if (write_active_ && wr_pong_end_ != 0 && wr_pong_end_ == out_.size())
          out_.drop_back(wr_pong_end_ - wr_pong_at_);
        wr_pong_at_ = out_.size();
        queue_frame(bit_fin | op_pong, payload);
        wr_pong_end_ = out_.size();
      }
      handler.on_ping(payload);
      return true;
    case op_pong: handler.on_pong(payload); return true;
    default: {
      CloseInfo info;
      if (auto ec = parse_close_payload(payload, info)) {
        fail(ec, handler);
        return false;
      }
      close_received_ = true;
      rd_done_ = true;
      rd_in_payload_ = false;
      if (!close_sent_) {
        // RFC 6455 5.5.1: answer a close with a close. Echoing the whole payload
        // (code and reason, already validated) is what peers such as browsers,
        // Python websockets and Node ws do, so the initiator sees its reason.
        queue_frame(bit_fin | op_close, payload);
        close_sent_ = true;
      }
      state_ = ConnectionState::closed;
      handler.on_close(info.code, info.reason);
      return false;
    }
  }
}

void Connection::receive(std::span<std::byte> data, ConnectionHandler& handler) {
  receive_holding(data, handler, 0);
}

Connection::ReceiveResult Connection::receive_holding(std::span<std::byte> data,
                                                      ConnectionHandler& handler,
                                                      std::size_t hold_max) {
  // Returned whenever nothing is held.
  constexpr ReceiveResult all{};
  if (rd_done_) return all;
  stats_.bytes_received += data.size();
  std::byte* p = data.data();
  std::byte* const end = p + data.size();
  // A message's type from its text flag.
  static_assert(static_cast<int>(SocketMessageType::binary) == 0 &&
                static_cast<int>(SocketMessageType::utf8) == 1);
  const std::uint8_t mask_bit = rd_mask_bit_;
  const bool server = mask_bit != 0;
  const std::size_t small_header = server ? 6 : 2;
  const std::size_t fast_max = rd_fast_max_;

  while (p != end) {
    // Fast path: whole unfragmented text or binary messages with a 7-bit
    // length, each frame entirely in this buffer. The frame rules reduce to one
    // comparison each (FIN set, no RSV bit, opcode 1 or 2, mask bit by role);
    // handlers cannot change the receive state, so it is checked once.
    if (!rd_in_payload_ && rd_spill_size_ == 0 && !rd_in_message_) {
      while (end - p >= 2) {
        const std::uint8_t b0 = u8(p[0]);
        // A wrong mask bit makes this 128 or more, above fast_max.
        const std::size_t len = u8(p[1]) ^ mask_bit;
        if (len > fast_max || static_cast<std::uint8_t>(b0 - 0x81) >= 2 ||
            static_cast<std::size_t>(end - p) < small_header + len)
          break;
        std::byte* const payload = p + small_header;
        const bool text = b0 == 0x81;
        std::uint64_t high = 0;
        if (server) {
          std::uint32_t k32 = 0;
          std::memcpy(&k32, p + 2, 4);
          high = scan_small<true>(payload, len, k32);
        } else if (text) {
          high = scan_small<false>(payload, len, 0);
        }
        p = payload + len;
        ++stats_.frames_received;
        rd_compressed_ = false;
        // RFC 6455 8.1: text must be UTF-8 (ASCII needs no further look).
        if (text && high != 0 && !is_valid_utf8(std::span<const std::byte>(payload, len))) {
          fail(make_error_code(error::invalid_utf8), handler);
          return all;
        }
        ++stats_.messages_received;
        handler.on_message(static_cast<SocketMessageType>(text),
                           std::span<const std::byte>(payload, len), true);
      }
      if (p == end) break;
    }
    if (!rd_in_payload_) {
      Header h;
      std::error_code ec;
      const auto avail = static_cast<std::size_t>(end - p);
      if (rd_spill_size_ == 0) {
        const std::size_t n = read_header(p, avail, h, ec);
        if (n != 0 && hold_max != 0 && h.length > avail - n && holdable(h, avail - n) &&
            h.length <= hold_max - std::min(n, hold_max)) {
          // A large whole message cut off here: left where it is, unconsumed,
          // so the rest can be read after it (see receive_holding).
          stats_.bytes_received -= avail;
          return {avail, n + static_cast<std::size_t>(h.length)};
        }
        if (n == 0) {
          if (ec) {
            fail(ec, handler);
            return all;
          }
          // A split header: keep its start (less than 14 bytes) for the next call.
          std::memcpy(rd_spill_.data(), p, avail);
          rd_spill_size_ = static_cast<std::uint8_t>(avail);
          return all;
        }
        p += n;
      } else {
        const std::size_t old = rd_spill_size_;
        const std::size_t take =
            avail < max_frame_header_size - old ? avail : max_frame_header_size - old;
        std::memcpy(rd_spill_.data() + old, p, take);
        const std::size_t n = read_header(rd_spill_.data(), old + take, h, ec);
        if (n == 0) {
          if (ec) {
            fail(ec, handler);
            return all;
          }
          rd_spill_size_ = static_cast<std::uint8_t>(old + take);
          return all;
        }
        p += n - old;
        rd_spill_size_ = 0;
      }
      start_frame(h);
    }

    // Payload: what of the current frame is in this buffer (possibly nothing,
    // for an empty frame).
    const auto avail = static_cast<std::size_t>(end - p);
    const std::size_t take =
        rd_remaining_ < avail ? static_cast<std::size_t>(rd_remaining_) : avail;
    std::byte* const chunk = p;
    p += take;
    rd_remaining_ -= take;
    const bool frame_done = rd_remaining_ == 0;
    if (rd_masked_)
      rd_key_offset_ =
          static_cast<std::uint8_t>(apply_mask(std::span(chunk, take), rd_key_, rd_key_offset_));

    if ((rd_opcode_ & 0x8) != 0) {
      if (frame_done && rd_control_size_ == 0) {
        rd_in_payload_ = false;
        if (!handle_control(std::span<const std::byte>(chunk, take), handler)) return all;
      } else {
        if (!rd_control_)
          rd_control_ = std::make_unique<std::array<std::byte, max_control_payload>>();
        std::memcpy(rd_control_->data() + rd_control_size_, chunk, take);
        rd_control_size_ = static_cast<std::uint8_t>(rd_control_size_ + take);
        if (frame_done) {
          rd_in_payload_ = false;
          const std::size_t n = rd_control_size_;
          rd_control_size_ = 0;
          const auto control = std::move(rd_control_);
          if (!handle_control(std::span<const std::byte>(control->data(), n), handler)) return all;
        }
      }
      continue;
    }

    const bool message_done = frame_done && rd_fin_;
    if (rd_compressed_ && config_->deflate) {
      // RFC 7692 7.2.2: inflated (and UTF-8 checked) as it streams in.
      if (frame_done) rd_in_payload_ = false;
      if (!receive_deflated(std::span<const std::byte>(chunk, take), message_done, handler))
        return all;
      continue;
    }
    if (rd_text_ && !rd_compressed_) {
      // RFC 6455 8.1: fail as soon as the text can no longer be valid UTF-8,
      // even in the middle of a fragment.
      if (!rd_utf8_.feed(std::span<const std::byte>(chunk, take)) ||
          (message_done && !rd_utf8_.complete())) {
        fail(make_error_code(error::invalid_utf8), handler);
        return all;
      }
    }
    if (frame_done) rd_in_payload_ = false;
    if (config_->partial_messages) {
      if (message_done) ++stats_.messages_received;
      deliver_piece(std::span<const std::byte>(chunk, take), message_done, handler);
    } else if (message_done) {
      ++stats_.messages_received;
      if (rd_message_.empty()) {
        // The whole message is in this buffer: hand out a view, no copy.
        handler.on_message(static_cast<SocketMessageType>(rd_text_),
                           std::span<const std::byte>(chunk, take), true);
      } else {
        rd_message_.insert(rd_message_.end(), chunk, chunk + take);
        handler.on_message(static_cast<SocketMessageType>(rd_text_), rd_message_, true);
        rd_message_.clear();
        // An idle connection should not keep the memory of its largest message.
        if (rd_message_.capacity() > retained_capacity) std::vector<std::byte>().swap(rd_message_);
      }
    } else {
      rd_message_.insert(rd_message_.end(), chunk, chunk + take);
    }
    if (rd_done_) return all;
  }
  return all;
}

// Partial mode: hands out pieces of at least the threshold, or the message's
// last piece. A chunk of the receive buffer that reaches the threshold with
// nothing gathered before it goes out as a view (large frames stay zero-copy);
// smaller ones are gathered in rd_message_ until they reach it.
void Connection::deliver_piece(std::span<const std::byte> bytes, bool last,
                               ConnectionHandler& handler) {
  const SocketMessageType type = rd_text_ ? SocketMessageType::utf8 : SocketMessageType::binary;
  if (rd_message_.empty()) {
    if (last || bytes.size() >= piece_threshold()) {
      if (!bytes.empty() || last) handler.on_message(type, bytes, last);
      return;
    }
    rd_message_.insert(rd_message_.end(), bytes.begin(), bytes.end());
    return;
  }
  rd_message_.insert(rd_message_.end(), bytes.begin(), bytes.end());
  if (!last && rd_message_.size() < piece_threshold()) return;
  handler.on_message(type, rd_message_, last);
  rd_message_.clear();
  // An idle connection should not keep the memory of its largest piece.
  if (last && rd_message_.capacity() > partial_retained_capacity)
    std::vector<std::byte>().swap(rd_message_);
}

// --- Sending ----------------------------------------------------------------------

bool Connection::direct_frame(std::uint8_t b0, std::span<const std::byte> payload,
                              DirectFrame* direct) noexcept {
  if (direct == nullptr) return false;
  direct->header_size = 0;
  const std::size_t n = payload.size();
  // Only unmasked frames: a client's payload is masked as it is copied.
  if (config_->role != Role::server || n < direct_min_payload) return false;
  std::byte* o = direct->header.data();
  o[0] = std::byte{b0};
  // RFC 6455 5.2: the minimal length encoding (n > 125 here).
  if (n <= 0xFFFF) {
    o[1] = std::byte{126};
    o[2] = std::byte{static_cast<std::uint8_t>(n >> 8)};
    o[3] = std::byte{static_cast<std::uint8_t>(n)};
    direct->header_size = 4;
  } else {
    o[1] = std::byte{127};
    const auto len = static_cast<std::uint64_t>(n);
    for (std::size_t i = 0; i < 8; ++i)
      o[2 + i] = std::byte{static_cast<std::uint8_t>(len >> (56 - 8 * i))};
    direct->header_size = 10;
  }
  ++stats_.frames_sent;
  stats_.bytes_sent += direct->header_size + n;
  return true;
}

void Connection::append_output(std::span<const std::byte> bytes) {
  if (!bytes.empty()) std::memcpy(out_.append(bytes.size()), bytes.data(), bytes.size());
}

void Connection::queue_frame(std::uint8_t b0, std::span<const std::byte> payload) {
  const std::size_t n = payload.size();
  const bool mask = config_->role == Role::client;
  std::size_t header = 2 + (mask ? 4 : 0);
  if (n > 0xFFFF)
    header += 8;
  else if (n > 125)
    header += 2;
  std::byte* o = out_.append(header + n);
  o[0] = std::byte{b0};
  const std::uint8_t mbit = mask ? 0x80 : 0x00;
  std::size_t pos = 2;
  // RFC 6455 5.2: the minimal length encoding.
  if (n <= 125) {
    o[1] = std::byte{static_cast<std::uint8_t>(mbit | n)};
  } else if (n <= 0xFFFF) {
    o[1] = std::byte{static_cast<std::uint8_t>(mbit | 126)};
    o[2] = std::byte{static_cast<std::uint8_t>(n >> 8)};
    o[3] = std::byte{static_cast<std::uint8_t>(n)};
    pos = 4;
  } else {
    o[1] = std::byte{static_cast<std::uint8_t>(mbit | 127)};
    const auto len = static_cast<std::uint64_t>(n);
    for (std::size_t i = 0; i < 8; ++i)
      o[2 + i] = std::byte{static_cast<std::uint8_t>(len >> (56 - 8 * i))};
    pos = 10;
  }
  if (mask) {
    // RFC 6455 5.3: a fresh unpredictable key for every client frame.
    const MaskKey key = next_mask_key();
    std::memcpy(o + pos, key.data(), 4);
    pos += 4;
    if (n != 0) copy_masked(std::span(o + pos, n), payload, key, 0);
  } else if (n != 0) {
    std::memcpy(o + pos, payload.data(), n);
  }
  ++stats_.frames_sent;
  stats_.bytes_sent += header + n;
}

std::error_code Connection::check_send_data() const noexcept {
  // RFC 6455 5.5.1: no data frames after a close frame.
  if (close_sent_) return make_error_code(error::closed);
  // RFC 6455 5.4: a fragmented message ends before another one starts.
  if (wr_in_message_) return make_error_code(error::expected_continuation);
  return {};
}

std::error_code Connection::send_message(SocketMessageType type, std::span<const std::byte> payload,
                                         bool compress, DirectFrame* direct) {
  // The usual server message: small, unmasked, uncompressed, with room in the
  // output. No call but the tail calls, so no frame of saved registers.
  const std::size_t n = payload.size();
  if (n > 125 || rd_mask_bit_ == 0 || close_sent_ || wr_in_message_ || (compress && own_) ||
      !out_.has_room(2 + n)) [[unlikely]]
    return send_message_general(type, payload, compress, direct);
  const bool text = type == SocketMessageType::utf8;
  std::byte* o = out_.append(2 + n);
  o[0] = std::byte{static_cast<std::uint8_t>(bit_fin | (text ? op_text : op_binary))};
  o[1] = std::byte{static_cast<std::uint8_t>(n)};
  const std::uint64_t high = copy_small(o + 2, payload.data(), n, 0);
  ++stats_.messages_sent;
  ++stats_.frames_sent;
  stats_.bytes_sent += 2 + n;
  // RFC 6455 5.6: text frames carry UTF-8 (ASCII needs no further look).
  if (text && high != 0) [[unlikely]]
    return check_copied_text(payload, 2 + n);
  return no_error;
}

std::error_code Connection::check_copied_text(std::span<const std::byte> payload,
                                              std::size_t frame_size) {
  if (is_valid_utf8(payload)) return no_error;
  out_.drop_back(frame_size);
  --stats_.messages_sent;
  --stats_.frames_sent;
  stats_.bytes_sent -= frame_size;
  return make_error_code(error::invalid_utf8);
}

std::error_code Connection::send_message_general(SocketMessageType type,
                                                 std::span<const std::byte> payload, bool compress,
                                                 DirectFrame* direct) {
  if (close_sent_ || wr_in_message_) [[unlikely]]
    return check_send_data();
  const bool text = type == SocketMessageType::utf8;
  const std::size_t n = payload.size();
  const auto b0 = static_cast<std::uint8_t>(bit_fin | (text ? op_text : op_binary));
  // permessage-deflate: compressed when asked and at least the threshold long.
  const bool deflate = compress && own_ && own_->wr_deflate.should_compress(n);
  const bool client = config_->role == Role::client;
  if (n <= 125 && !deflate && (!client || std::endian::native == std::endian::little)) {
    // The usual small message: a 2-byte header (6 with the client's mask); the
    // payload is copied, masked and checked for ASCII in one pass.
    const std::size_t header = client ? 6 : 2;
    std::byte* o = out_.append(header + n);
    o[0] = std::byte{b0};
    o[1] = std::byte{static_cast<std::uint8_t>((client ? 0x80 : 0x00) | n)};
    std::uint32_t k32 = 0;
    if (client) {
      // RFC 6455 5.3: a fresh unpredictable key for every client frame.
      const MaskKey key = next_mask_key();
      std::memcpy(o + 2, key.data(), 4);
      std::memcpy(&k32, key.data(), 4);
    }
    const std::uint64_t high = copy_small(o + header, payload.data(), n, k32);
    ++stats_.messages_sent;
    ++stats_.frames_sent;
    stats_.bytes_sent += header + n;
    // RFC 6455 5.6: text frames carry UTF-8 (ASCII needs no further look).
    if (text && high != 0) [[unlikely]]
      return check_copied_text(payload, header + n);
    return no_error;
  }
  // RFC 6455 5.6: text frames carry UTF-8.
  if (text && !text_valid(payload)) return make_error_code(error::invalid_utf8);
  ++stats_.messages_sent;
  if (deflate)
    send_deflated(b0, payload, true);
  else if (!direct_frame(b0, payload, direct))
    queue_frame(b0, payload);
  return {};
}

std::error_code Connection::send_compressed_message(SocketMessageType type,
                                                    std::span<const std::byte> payload) {
  // RFC 6455 5.2: RSV1 only with an extension that defines it.
  if (!config_->rsv1_allowed) return make_error_code(error::reserved_bits);
  if (auto ec = check_send_data()) return ec;
  const bool text = type == SocketMessageType::utf8;
  queue_frame(bit_fin | bit_rsv1 | (text ? op_text : op_binary), payload);
  ++stats_.messages_sent;
  return {};
}

std::error_code Connection::send_fragment(SocketMessageType type,
                                          std::span<const std::byte> payload, bool fin,
                                          bool compress, DirectFrame* direct) {
  if (close_sent_) return make_error_code(error::closed);
  std::uint8_t op = op_continuation;
  if (!wr_in_message_) {
    wr_text_ = type == SocketMessageType::utf8;
    wr_utf8_.reset();
    op = wr_text_ ? op_text : op_binary;
    // RFC 7692 6: the first frame decides; a whole message in one piece
    // follows the size threshold like send_message.
    wr_deflating_ =
        compress && own_ &&
        (fin ? own_->wr_deflate.should_compress(payload.size()) : own_->wr_deflate.enabled());
  }
  if (wr_text_) {
    // RFC 6455 5.6: text is UTF-8 across the whole message; a code point may be
    // split between fragments, but the message must end on a boundary. A
    // rejected piece leaves the checker as it was, so the caller may retry.
    Utf8Validator next = wr_utf8_;
    if (!next.feed(payload) || (fin && !next.complete()))
      return make_error_code(error::invalid_utf8);
    wr_utf8_ = next;
  }
  const auto b0 = static_cast<std::uint8_t>((fin ? bit_fin : 0) | op);
  if (wr_deflating_)
    send_deflated(b0, payload, fin);
  else if (!direct_frame(b0, payload, direct))
    queue_frame(b0, payload);
  wr_in_message_ = !fin;
  if (fin) ++stats_.messages_sent;
  return {};
}

std::error_code Connection::send_ping(std::span<const std::byte> payload) {
  // RFC 6455 5.5: control payloads are at most 125 bytes.
  if (payload.size() > max_control_payload) return make_error_code(error::control_too_long);
  if (close_sent_) return make_error_code(error::closed);
  queue_frame(bit_fin | op_ping, payload);
  return {};
}

std::error_code Connection::send_pong(std::span<const std::byte> payload) {
  // RFC 6455 5.5: control payloads are at most 125 bytes.
  if (payload.size() > max_control_payload) return make_error_code(error::control_too_long);
  if (close_sent_) return make_error_code(error::closed);
  queue_frame(bit_fin | op_pong, payload);
  return {};
}

std::error_code Connection::send_close(std::uint16_t code, std::string_view reason) {
  if (close_sent_) {
    // After the peer's close our answer already left: nothing to do.
    if (close_received_) return {};
    return make_error_code(error::closed);
  }
  if (!check_close_arguments(code, reason).empty())
    return std::make_error_code(std::errc::invalid_argument);
  std::array<std::byte, 125> body;
  const std::size_t n = write_close_payload(code, reason, body);
  queue_frame(bit_fin | op_close, std::span<const std::byte>(body.data(), n));
  close_sent_ = true;
  state_ = close_received_ ? ConnectionState::closed : ConnectionState::closing;
  return {};
}

}  // namespace duplex::protocol
