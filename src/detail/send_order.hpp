// detail/send_order.hpp: the order and text of a socket's frame sends as the
// caller made them, checked at the call (any thread), before any I/O: RFC
// 6455 5.4 (a message's frames are not interleaved with another message) and
// 5.6 (a text message, split anywhere, is valid UTF-8 as a whole).
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <span>

#include <duplex/detail/socket_ops.hpp>
#include <duplex/protocol/utf8.hpp>

namespace duplex::detail {

class SendOrder {
public:
  /// Throws std::logic_error for a whole message while a message sent in
  /// frames is unfinished, and std::invalid_argument for a text frame that
  /// makes its message invalid UTF-8; otherwise records the frame's place in
  /// its message (a whole message: nothing to record).
  void check(SendKind kind, SocketMessageType type, std::span<const std::byte> data);
  /// True while a message sent in frames is unfinished (any thread).
  [[nodiscard]] bool in_message(
      std::memory_order order = std::memory_order_acquire) const noexcept {
    return in_message_.load(order);
  }

private:
  struct Frames {
    std::mutex mutex;
    bool text = false;  ///< the message being sent in pieces is utf8
    protocol::Utf8Validator utf8;
  };
  std::atomic<bool> in_message_{false};
  std::once_flag once_;
  std::unique_ptr<Frames> frames_;  ///< made by the first frame send (once_)
};

}  // namespace duplex::detail
