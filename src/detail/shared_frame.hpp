// detail/shared_frame.hpp: a whole, already encoded data frame shared by the
// write queues of one event loop's sessions (topics fan-out). A publish makes
// one per loop (and per deflate parameter set); each subscriber's session
// holds a reference until its write of the frame is done, instead of a copy
// of the bytes in its output buffer (Session::send_prebuilt).
//
// Threading: the count is not atomic. Every reference lives on the loop's
// thread, or is released while no thread runs the loop (its context's
// shutdown destroys the sessions): one thread at a time either way.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

namespace duplex::detail {

class FrameRef;

class SharedFrame {
public:
  using Bytes = std::shared_ptr<const std::vector<std::byte>>;
  /// A frame over `owner`'s bytes (kept alive while referenced), with one
  /// reference: the returned one.
  static FrameRef make(Bytes owner);
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return bytes_; }
  /// How many SharedFrames exist in the process (any thread): what tests
  /// check to see that closed sessions released theirs.
  static std::size_t live() noexcept { return live_.load(std::memory_order_relaxed); }

private:
  friend class FrameRef;
  explicit SharedFrame(Bytes owner) noexcept
      : owner_(std::move(owner)), bytes_(owner_->data(), owner_->size()) {
    live_.fetch_add(1, std::memory_order_relaxed);
  }
  ~SharedFrame() { live_.fetch_sub(1, std::memory_order_relaxed); }
  SharedFrame(const SharedFrame&) = delete;
  SharedFrame& operator=(const SharedFrame&) = delete;
  static inline std::atomic<std::size_t> live_{0};
  Bytes owner_;
  std::span<const std::byte> bytes_;
  std::size_t refs_ = 1;
};

/// One counted reference to a SharedFrame (move-only; share() adds one).
class FrameRef {
public:
  FrameRef() noexcept = default;
  FrameRef(FrameRef&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  FrameRef& operator=(FrameRef&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  FrameRef(const FrameRef&) = delete;
  FrameRef& operator=(const FrameRef&) = delete;
  ~FrameRef() { reset(); }

  /// A further reference to `f` (not null).
  static FrameRef share(SharedFrame& f) noexcept {
    ++f.refs_;
    return FrameRef(&f);
  }
  void reset() noexcept {
    if (p_ && --p_->refs_ == 0) delete p_;
    p_ = nullptr;
  }
  [[nodiscard]] SharedFrame* get() const noexcept { return p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }

private:
  friend class SharedFrame;
  explicit FrameRef(SharedFrame* p) noexcept : p_(p) {}
  SharedFrame* p_ = nullptr;
};

inline FrameRef SharedFrame::make(Bytes owner) {
  return FrameRef(new SharedFrame(std::move(owner)));
}

}  // namespace duplex::detail
