// duplex/task.hpp: the default completion token `use_task` and `Task<T>`.
//
// Every async operation of duplex is one initiating function template taking an
// Asio completion token of signature void(std::error_code) or
// void(std::error_code, T). Without a token it returns a `Task<T>`:
//
//   ws.connect_async("ws://127.0.0.1:9000/").get();        // block (throws)
//   co_await ws.send_async("hello");                        // C++20 coroutine (throws)
//   auto [ec] = co_await ws.send_async("hi").as_result();   // or get the code
//   ws.close_async().then([](std::error_code ec) { ... });  // callback
//
// Asio users pass `asio::use_awaitable`, a callback, `asio::use_future`, ...
//
// Thread safety: a Task may be waited on, awaited or given a continuation from any
// thread, once (one consumer). Lifetime: dropping a Task does not cancel its
// operation; the operation completes and its result is discarded.
#pragma once

#include <condition_variable>
#include <coroutine>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <type_traits>
#include <utility>

#include <asio/async_result.hpp>

namespace duplex {

/// The completion token type of `use_task`.
struct UseTask {
  constexpr UseTask() noexcept = default;
};
/// The default completion token: the initiating function returns a Task.
inline constexpr UseTask use_task{};

namespace detail {
/// True on a thread that runs a duplex event loop (the default loop's thread),
/// and while a socket event handler runs: blocking there on a Task would stop
/// the loop that must complete it.
inline thread_local bool on_event_loop = false;

/// Sets on_event_loop for a scope.
struct EventLoopScope {
  bool saved = on_event_loop;
  EventLoopScope() noexcept { on_event_loop = true; }
  ~EventLoopScope() { on_event_loop = saved; }
  EventLoopScope(const EventLoopScope&) = delete;
  EventLoopScope& operator=(const EventLoopScope&) = delete;
};

struct Unit {};
template <class T>
using TaskValue = std::conditional_t<std::is_void_v<T>, Unit, T>;

template <class T>
struct TaskState {
  std::mutex mutex;
  std::condition_variable cv;
  bool done = false;
  std::error_code ec;
  std::optional<TaskValue<T>> value;
  std::function<void()> continuation;

  void set(std::error_code e, TaskValue<T> v) {
    std::function<void()> next;
    {
      std::lock_guard lock(mutex);
      ec = e;
      value.emplace(std::move(v));
      done = true;
      next.swap(continuation);
    }
    cv.notify_all();
    if (next) next();
  }
};

template <class T>
struct TaskHandler {
  std::shared_ptr<TaskState<T>> state;
  void operator()(std::error_code ec) { state->set(ec, Unit{}); }
  template <class V>
  void operator()(std::error_code ec, V&& v) {
    state->set(ec, TaskValue<T>(std::forward<V>(v)));
  }
};
}  // namespace detail

/// The outcome of an operation as a value: the error code and, on success, the
/// result (T = void: only the code).
template <class T>
struct Result {
  std::error_code ec;
  T value{};
  explicit operator bool() const noexcept { return !ec; }
};
template <>
struct Result<void> {
  std::error_code ec;
  explicit operator bool() const noexcept { return !ec; }
};

/// The eventual result of one async operation: T (or nothing for T = void) or
/// an error code. Move-only; one consumer. An operation that completes at the
/// call (a send with room in the outbound buffer, on the socket's own loop)
/// returns a task that is ready from the start and holds its result inline,
/// without allocating.
template <class T = void>
class Task {
public:
  using value_type = T;

  Task() = default;
  explicit Task(std::shared_ptr<detail::TaskState<T>> state) : state_(std::move(state)) {}
  Task(Task&& other) noexcept : state_(std::move(other.state_)), ready_(std::move(other.ready_)) {
    other.ready_.reset();
  }
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      state_ = std::move(other.state_);
      ready_ = std::move(other.ready_);
      other.ready_.reset();
    }
    return *this;
  }

  /// A task already completed with `result`.
  static Task ready(Result<T> result) {
    Task t;
    t.ready_.emplace(std::move(result));
    return t;
  }

  /// True when the task holds a state (not default-constructed or moved-from).
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr || ready_.has_value(); }
  /// True once the operation completed.
  [[nodiscard]] bool is_ready() const {
    if (ready_) return true;
    std::lock_guard lock(state_->mutex);
    return state_->done;
  }

  /// Blocks until the operation completes; returns its value or throws
  /// std::system_error with its code. Never call it on the thread that runs the
  /// socket's event loop (the default loop's thread, or your io_context's): the
  /// operation could not complete. Where duplex can tell (the default loop's
  /// thread, any socket event handler) it throws std::logic_error instead.
  T get() {
    auto r = get_result();
    if (r.ec) throw std::system_error(r.ec);
    if constexpr (!std::is_void_v<T>) return std::move(r.value);
  }

  /// Blocks like get(), but returns the code instead of throwing. Throws
  /// std::logic_error instead of deadlocking when called, before completion,
  /// on the default loop's thread or inside a socket event handler.
  Result<T> get_result() {
    if (ready_) return std::move(*ready_);
    std::unique_lock lock(state_->mutex);
    if (!state_->done && detail::on_event_loop)
      throw std::logic_error(
          "Task::get: blocking on the event loop's thread would deadlock; use co_await or "
          "then() there");
    state_->cv.wait(lock, [&] { return state_->done; });
    return take(*state_);
  }

  /// Calls `f(std::error_code)` (T = void) or `f(std::error_code, T)` when the
  /// operation completes, on the thread that completes it (the socket's event
  /// loop), or at once on this thread if it already completed.
  template <class F>
  void then(F f) {
    if (ready_) return invoke(f, std::move(*ready_));
    std::unique_lock lock(state_->mutex);
    if (!state_->done) {
      state_->continuation = [s = state_, f = std::move(f)]() mutable { invoke(f, take(*s)); };
      return;
    }
    lock.unlock();
    invoke(f, take(*state_));
  }

  /// Awaiter that returns Result<T> instead of throwing.
  auto as_result() && { return ResultAwaiter{{std::move(state_), std::move(ready_)}}; }

  /// `co_await task` returns the value or throws std::system_error. The
  /// coroutine resumes on the thread that completes the operation (the socket's
  /// event loop), or does not suspend when the task is ready.
  auto operator co_await() && { return ValueAwaiter{{std::move(state_), std::move(ready_)}}; }

private:
  template <class F>
  static void invoke(F& f, Result<T> r) {
    if constexpr (std::is_void_v<T>)
      f(r.ec);
    else
      f(r.ec, std::move(r.value));
  }

  // Takes the result out of a completed state (under its mutex when racing).
  static Result<T> take(detail::TaskState<T>& s) {
    Result<T> r;
    r.ec = s.ec;
    if constexpr (!std::is_void_v<T>) r.value = std::move(*s.value);
    return r;
  }

  struct AwaiterBase {
    std::shared_ptr<detail::TaskState<T>> state;
    std::optional<Result<T>> ready;
    bool await_ready() const {
      if (ready) return true;
      std::lock_guard lock(state->mutex);
      return state->done;
    }
    bool await_suspend(std::coroutine_handle<> h) {
      std::lock_guard lock(state->mutex);
      if (state->done) return false;
      state->continuation = [h] { h.resume(); };
      return true;
    }
    Result<T> result() {
      if (ready) return std::move(*ready);
      std::lock_guard lock(state->mutex);
      return take(*state);
    }
  };
  struct ValueAwaiter : AwaiterBase {
    T await_resume() {
      auto r = this->result();
      if (r.ec) throw std::system_error(r.ec);
      if constexpr (!std::is_void_v<T>) return std::move(r.value);
    }
  };
  struct ResultAwaiter : AwaiterBase {
    Result<T> await_resume() { return this->result(); }
  };

  std::shared_ptr<detail::TaskState<T>> state_;
  std::optional<Result<T>> ready_;  ///< set when the task was ready from the start
};

}  // namespace duplex

namespace asio {

/// use_task with void(std::error_code): returns Task<void>.
template <>
class async_result<duplex::UseTask, void(std::error_code)> {
public:
  using return_type = duplex::Task<void>;
  template <class Initiation, class... Args>
  static return_type initiate(Initiation&& initiation, duplex::UseTask, Args&&... args) {
    auto state = std::make_shared<duplex::detail::TaskState<void>>();
    std::forward<Initiation>(initiation)(duplex::detail::TaskHandler<void>{state},
                                         std::forward<Args>(args)...);
    return return_type(std::move(state));
  }
};

/// use_task with void(std::error_code, T): returns Task<T>.
template <class T>
class async_result<duplex::UseTask, void(std::error_code, T)> {
public:
  using return_type = duplex::Task<T>;
  template <class Initiation, class... Args>
  static return_type initiate(Initiation&& initiation, duplex::UseTask, Args&&... args) {
    auto state = std::make_shared<duplex::detail::TaskState<T>>();
    std::forward<Initiation>(initiation)(duplex::detail::TaskHandler<T>{state},
                                         std::forward<Args>(args)...);
    return return_type(std::move(state));
  }
};

}  // namespace asio
