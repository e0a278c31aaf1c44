// send_order.cpp: a socket's frame sends checked at the call
// (detail/send_order.hpp).
#include "detail/send_order.hpp"

#include <stdexcept>
#include <string>

namespace duplex::detail {

void SendOrder::check(SendKind kind, SocketMessageType type, std::span<const std::byte> data) {
  if (kind == SendKind::whole) {
    // RFC 6455 5.4: the frames of one message are not interleaved with another
    // message.
    if (in_message_.load(std::memory_order_acquire))
      throw std::logic_error(
          "send_async: a message sent in frames is unfinished; end it with "
          "send_final_frame_async first (RFC 6455 5.4)");
    return;
  }
  std::call_once(once_, [this] { frames_ = std::make_unique<Frames>(); });
  std::lock_guard lock(frames_->mutex);
  auto& cf = *frames_;
  const bool first = !in_message_.load(std::memory_order_relaxed);
  // The first piece's type holds for the whole message.
  const bool text = first ? type == SocketMessageType::utf8 : cf.text;
  if (text) {
    // RFC 6455 5.6: a code point may be split between frames, but the message
    // must be valid UTF-8 and end on a boundary.
    protocol::Utf8Validator next = first ? protocol::Utf8Validator{} : cf.utf8;
    if (!next.feed(data))
      throw std::invalid_argument(std::string(kind == SendKind::final
                                                  ? "send_final_frame_async"
                                                  : "send_nonfinal_frame_async") +
                                  ": a utf8 message must be valid UTF-8 (RFC 6455 5.6)");
    if (kind == SendKind::final && !next.complete())
      throw std::invalid_argument(
          "send_final_frame_async: a utf8 message must end on a whole UTF-8 code point "
          "(RFC 6455 5.6)");
    cf.utf8 = next;
  }
  cf.text = text;
  in_message_.store(kind == SendKind::nonfinal, std::memory_order_release);
}

}  // namespace duplex::detail
