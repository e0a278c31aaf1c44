// permessage-deflate inside the Connection state machine (RFC 7692 6, 7.2):
// the receive and send hooks that connection.cpp calls when a message is
// compressed. Kept apart from connection.cpp so the frame logic stays readable.
//
// Buffers: a message that arrives whole in one receive() call, and pieces in
// partial mode, inflate into a buffer owned by the thread (the event loop) and
// are handed out as a view; only a compressed message spread over several
// calls (full mode), or the bytes of a piece still under the partial
// threshold, are kept in the connection's own buffer. Compressed
// output goes through a per-thread buffer before framing. So an idle
// connection holds no decompression or compression buffers of its own.
#include <duplex/error.hpp>
#include <duplex/protocol/connection.hpp>
#include <duplex/protocol/deflate.hpp>

#include <algorithm>
#include <vector>

namespace duplex::protocol {
namespace {

constexpr std::uint8_t bit_rsv1 = 0x40;
constexpr std::uint8_t opcode_mask = 0x0F;

// Beyond this, a thread's scratch buffer is freed after use rather than kept:
// one huge message must not pin its size for the life of the thread.
constexpr std::size_t max_kept_capacity = std::size_t{4} << 20;

// The connection's own reassembly buffer is freed above this once a message
// is delivered (the same bound as for uncompressed messages).
constexpr std::size_t max_kept_per_connection = 256 * 1024;
// In partial mode it only gathers bytes under the threshold: freed above this.
constexpr std::size_t max_kept_partial = 4 * 1024;

// Compressed bytes inflated per step in partial mode (bounds the output of a
// step to about 1 MiB).
constexpr std::size_t partial_slice = 1024;

struct Scratch {
  std::vector<std::byte> bytes;
  bool busy = false;  ///< lent out (a handler may re-enter another connection)
};

thread_local Scratch t_inflated;
thread_local Scratch t_compressed;

void give_back(Scratch& s) noexcept {
  s.bytes.clear();
  if (s.bytes.capacity() > max_kept_capacity) std::vector<std::byte>().swap(s.bytes);
  s.busy = false;
}

}  // namespace

bool Connection::receive_deflated(std::span<const std::byte> chunk, bool message_done,
                                  ConnectionHandler& handler) {
  // Nothing to inflate yet (a header at the end of a read).
  if (chunk.empty() && !message_done) return true;
  const SocketMessageType type = rd_text_ ? SocketMessageType::utf8 : SocketMessageType::binary;
  const bool partial = config_->partial_messages;
  // The whole message is in this chunk, or (partial mode) nothing is gathered
  // for the next piece yet: inflate into the thread's buffer when it is free.
  const bool transient =
      partial ? rd_message_.empty() : message_done && !own_->rd_deflate.in_message();
  Scratch* scratch = nullptr;
  if (transient && !t_inflated.busy) {
    scratch = &t_inflated;
    scratch->busy = true;
  }
  std::vector<std::byte>& out = scratch != nullptr ? scratch->bytes : rd_message_;

  // Partial mode inflates the chunk a slice at a time and delivers a piece
  // once the output reaches the threshold (or the message ends): DEFLATE
  // expands at most about 1032 times, so a piece (and what the connection
  // gathers) is at most the threshold plus about 1 MiB whatever the ratio,
  // even with no message size limit.
  const std::size_t threshold = piece_threshold();
  const std::size_t slice = partial ? partial_slice : chunk.size();
  std::size_t at = 0;
  do {
    const std::size_t n = std::min(slice, chunk.size() - at);
    const bool last = message_done && at + n == chunk.size();
    const std::size_t before = out.size();
    // RFC 6455 10.4: max_message_size bounds the inflated size, checked while
    // inflating, so a decompression bomb stops at the limit (1009).
    std::error_code ec =
        own_->rd_deflate.inflate(chunk.subspan(at, n), last, out, config_->max_message_size);
    at += n;
    if (rd_text_) {
      // RFC 6455 8.1: the inflated text is UTF-8, checked as it streams so that
      // the connection fails as soon as no continuation could make it valid.
      // Text inflated before a DEFLATE error is checked first: the error that
      // comes first in the message wins, however the message was split.
      if (!rd_utf8_.feed(std::span<const std::byte>(out.data() + before, out.size() - before)) ||
          (!ec && last && !rd_utf8_.complete()))
        ec = make_error_code(error::invalid_utf8);
    }
    if (ec) {
      if (scratch != nullptr) give_back(*scratch);
      rd_message_.clear();
      fail(ec, handler);
      return false;
    }
    if (partial) {
      if (last) ++stats_.messages_received;
      if (last || out.size() >= threshold) {
        handler.on_message(type, out, last);
        out.clear();
        if (rd_done_) break;
      }
    } else if (last) {
      ++stats_.messages_received;
      handler.on_message(type, out, true);
      out.clear();
    }
  } while (at < chunk.size());

  if (scratch != nullptr) {
    // Partial mode: what did not reach the threshold waits for the next bytes.
    if (!rd_done_ && !scratch->bytes.empty())
      rd_message_.assign(scratch->bytes.begin(), scratch->bytes.end());
    give_back(*scratch);
  } else if (message_done &&
             rd_message_.capacity() > (partial ? max_kept_partial : max_kept_per_connection))
    // As for plain messages: an idle connection keeps no large buffer.
    std::vector<std::byte>().swap(rd_message_);
  return !rd_done_;
}

void Connection::send_deflated(std::uint8_t b0, std::span<const std::byte> payload, bool fin) {
  // No handler runs while compressing, so the buffer cannot be re-entered.
  Scratch& s = t_compressed;
  s.bytes.clear();
  own_->wr_deflate.compress(payload, fin, s.bytes);
  // RFC 7692 6: RSV1 on the first frame of a compressed message only.
  const bool first = (b0 & opcode_mask) != 0;
  queue_frame(first ? static_cast<std::uint8_t>(b0 | bit_rsv1) : b0, s.bytes);
  give_back(s);
}

}  // namespace duplex::protocol
