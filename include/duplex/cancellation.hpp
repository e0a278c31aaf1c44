// duplex/cancellation.hpp: a cancellation source and the tokens it hands out.
//
// Every async operation of the socket types takes an optional CancellationToken
// (an extra argument before the completion token). Cancelling the source
// completes every operation that took one of its tokens with
// `error::operation_aborted`, so no Asio knowledge is needed to bound or abort
// an operation. Asio's own per-operation cancellation
// (`asio::bind_cancellation_slot`) is honoured as well.
//
// Thread safety: all members may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace duplex {

namespace detail {
/// Shared state of one CancellationSource and its tokens.
struct CancellationState {
  std::mutex mutex;
  bool cancelled = false;
  std::uint64_t next_id = 1;
  std::vector<std::pair<std::uint64_t, std::function<void()>>> callbacks;
};
}  // namespace detail

/// A view of a CancellationSource, passed to async operations. Copyable and
/// cheap; a default-constructed token is never cancelled.
class CancellationToken {
public:
  /// A token that can never be cancelled.
  CancellationToken() = default;

  /// True once the source's cancel() was called.
  [[nodiscard]] bool is_cancellation_requested() const noexcept;
  /// False for a default-constructed token.
  [[nodiscard]] bool can_be_cancelled() const noexcept { return state_ != nullptr; }

  /// Registers `callback` to run (on the thread that calls cancel()) when the
  /// source is cancelled; runs it at once, on this thread, if it already was.
  /// Returns an id for unregister(); 0 when nothing was registered (a token
  /// that cannot be cancelled, or one already cancelled). Used by the socket
  /// types; applications rarely need it.
  std::uint64_t register_callback(std::function<void()> callback) const;
  /// Removes a callback; after it returns the callback does not start (it may
  /// be running on another thread if cancel() raced).
  void unregister(std::uint64_t id) const noexcept;

private:
  friend class CancellationSource;
  explicit CancellationToken(std::shared_ptr<detail::CancellationState> s) : state_(std::move(s)) {}
  std::shared_ptr<detail::CancellationState> state_;
};

/// Owns the cancellation state; hands out tokens. Cancelling is permanent.
class CancellationSource {
public:
  CancellationSource() : state_(std::make_shared<detail::CancellationState>()) {}
  /// A token observing this source; it stays valid after the source is gone.
  [[nodiscard]] CancellationToken token() const { return CancellationToken(state_); }
  /// Cancels every operation holding a token of this source (and every later
  /// one, at its start). Idempotent.
  void cancel();
  [[nodiscard]] bool is_cancellation_requested() const noexcept;

private:
  std::shared_ptr<detail::CancellationState> state_;
};

}  // namespace duplex
