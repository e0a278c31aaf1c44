// duplex/detail/completion_handler.hpp: the type-erased, move-only completion
// handler box that carries a completion handler from the public templates to the
// compiled code (Debian's Asio 1.22 has no any_completion_handler).
//
// The box keeps the handler's associated executor (or the socket's executor when
// the handler has none) with outstanding work tracked, and its associated
// cancellation slot. Handlers small enough live inside the box (no allocation).
#pragma once

#include <cstddef>
#include <new>
#include <system_error>
#include <type_traits>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>

namespace duplex::detail {

/// Holds one completion handler of signature void(std::error_code) or
/// void(std::error_code, std::size_t), erased to void(std::error_code, std::size_t).
class CompletionHandler {
public:
  CompletionHandler() noexcept = default;

  /// Boxes `handler` (signature `Sig`); `fallback` is the executor used when the
  /// handler has no associated executor.
  template <class Sig, class Handler>
  static CompletionHandler make(Handler&& handler, const asio::any_io_executor& fallback) {
    using H = std::decay_t<Handler>;
    CompletionHandler box;
    auto associated = asio::get_associated_executor(handler, fallback);
    // Executors an any_io_executor cannot hold (e.g. use_future's) run on ours.
    if constexpr (std::is_constructible_v<asio::any_io_executor, decltype(associated)>)
      box.executor_ = asio::prefer(asio::any_io_executor(std::move(associated)),
                                   asio::execution::outstanding_work.tracked);
    else
      box.executor_ = asio::prefer(fallback, asio::execution::outstanding_work.tracked);
    box.slot_ = asio::get_associated_cancellation_slot(handler);
    static constexpr VTable table{&invoke_fn<H, Sig>, &move_fn<H>, &destroy_fn<H>};
    if constexpr (fits_inline<H>) {
      ::new (static_cast<void*>(box.storage_)) H(std::forward<Handler>(handler));
      box.object_ = box.storage_;
    } else {
      box.object_ = new H(std::forward<Handler>(handler));
    }
    box.vtable_ = &table;
    box.inline_ = fits_inline<H>;
    return box;
  }

  CompletionHandler(CompletionHandler&& other) noexcept { take(other); }
  CompletionHandler& operator=(CompletionHandler&& other) noexcept {
    if (this != &other) {
      reset();
      take(other);
    }
    return *this;
  }
  CompletionHandler(const CompletionHandler&) = delete;
  CompletionHandler& operator=(const CompletionHandler&) = delete;
  ~CompletionHandler() { reset(); }

  [[nodiscard]] explicit operator bool() const noexcept { return vtable_ != nullptr; }
  /// The handler's associated cancellation slot (may be unconnected).
  [[nodiscard]] asio::cancellation_slot cancellation_slot() const noexcept { return slot_; }
  /// The executor the handler runs on.
  [[nodiscard]] const asio::any_io_executor& executor() const noexcept { return executor_; }

  /// Runs the handler later on its executor, never inside the caller. Clears
  /// the cancellation slot first. The box is empty afterwards.
  void post(std::error_code ec, std::size_t n = 0) {
    if (!vtable_) return;
    if (slot_.is_connected()) slot_.clear();
    auto ex = executor_;
    asio::post(ex, [box = std::move(*this), ec, n]() mutable { box.invoke_now(ec, n); });
  }

  /// Runs the handler now, on the calling thread (the caller is on its executor).
  void invoke_now(std::error_code ec, std::size_t n = 0) {
    if (!vtable_) return;
    if (slot_.is_connected()) slot_.clear();
    CompletionHandler self(std::move(*this));
    self.vtable_->invoke(self.object_, ec, n);
  }

private:
  struct VTable {
    void (*invoke)(void* object, std::error_code ec, std::size_t n);
    void (*move)(void* dst, void* src) noexcept;
    void (*destroy)(void* object, bool is_inline) noexcept;
  };
  static constexpr std::size_t inline_size = 64;

  template <class H>
  static constexpr bool fits_inline =
      sizeof(H) <= inline_size &&
      alignof(H) <= alignof(std::max_align_t) && std::is_nothrow_move_constructible_v<H>;

  template <class H, class Sig>
  static void invoke_fn(void* object, std::error_code ec, std::size_t n) {
    H& h = *static_cast<H*>(object);
    if constexpr (std::is_same_v<Sig, void(std::error_code)>) {
      (void)n;
      std::move(h)(ec);
    } else {
      std::move(h)(ec, n);
    }
  }
  template <class H>
  static void move_fn(void* dst, void* src) noexcept {
    if constexpr (fits_inline<H>) {
      ::new (dst) H(std::move(*static_cast<H*>(src)));
      static_cast<H*>(src)->~H();
    }
  }
  template <class H>
  static void destroy_fn(void* object, bool is_inline) noexcept {
    if (is_inline)
      static_cast<H*>(object)->~H();
    else
      delete static_cast<H*>(object);
  }

  void take(CompletionHandler& other) noexcept {
    vtable_ = other.vtable_;
    inline_ = other.inline_;
    executor_ = std::move(other.executor_);
    slot_ = other.slot_;
    if (vtable_) {
      if (inline_) {
        vtable_->move(storage_, other.storage_);
        object_ = storage_;
      } else {
        object_ = other.object_;
      }
    }
    other.vtable_ = nullptr;
    other.object_ = nullptr;
  }
  void reset() noexcept {
    if (vtable_) vtable_->destroy(object_, inline_);
    vtable_ = nullptr;
    object_ = nullptr;
  }

  alignas(std::max_align_t) unsigned char storage_[inline_size];
  void* object_ = nullptr;
  const VTable* vtable_ = nullptr;
  bool inline_ = false;
  asio::any_io_executor executor_;
  asio::cancellation_slot slot_;
};

}  // namespace duplex::detail
