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
// then() returns a Task of the continuation's result, so continuations chain
// (PPL's and C++/WinRT's habit, as in the Windows samples):
//
//   ws.connect_async(uri)
//       .then([&] { return ws.send_async("hello"); })  // only if connected; a Task
//                                                      // returned is waited for
//       .then([](duplex::Task<void> done) {            // always: errors end here
//         try {
//           done.get();
//         } catch (const std::system_error& e) { ... }
//       });
//
// A continuation takes one of three forms (see Task::then):
//   - value-based  `f()` / `f(T)`: runs only on success; a failure skips it and
//     reaches the next continuation unchanged;
//   - code-based   `f(std::error_code)` / `f(std::error_code, T)`: always runs,
//     with the code (T is value-initialised on failure);
//   - task-based   `f(Task<T>)`: always runs, with a ready task whose get()
//     returns the value or throws what the chain failed with.
// Whatever a continuation returns becomes the value of the task then() returns; a
// returned Task<U> is flattened (then() returns Task<U>, completed when it is);
// an exception thrown by a continuation completes that task with the exception,
// so the next continuation sees it as get() would raise it (a std::system_error
// as its code, in the code-based form).
//
// Asio users pass `asio::use_awaitable`, a callback, `asio::use_future`, ...
//
// Thread safety: a Task may be waited on, awaited or given a continuation from any
// thread, once (one consumer). Lifetime: dropping a Task does not cancel its
// operation; the operation completes and its result is discarded.
#pragma once

#include <concepts>
#include <condition_variable>
#include <coroutine>
#include <exception>
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
/// the loop that must complete it. Initial-exec (one load from the thread
/// pointer, no __tls_get_addr call in position-independent code): it is set
/// around every event.
#if defined(__GNUC__) && defined(__ELF__)
[[gnu::tls_model("initial-exec")]]
#endif
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
  std::optional<TaskValue<T>> value;  ///< empty after a failure (code or exception)
  std::exception_ptr exception;       ///< set when a continuation threw
  std::function<void()> continuation;

  void set(std::error_code e, TaskValue<T> v) {
    finish([&] {
      ec = e;
      value.emplace(std::move(v));
    });
  }
  /// Completes with a failure code and no value.
  void fail(std::error_code e) {
    finish([&] { ec = e; });
  }
  /// Completes with an exception (a continuation threw it).
  void fail(std::exception_ptr e) {
    finish([&] { exception = std::move(e); });
  }

private:
  template <class Fill>
  void finish(Fill fill) {
    std::function<void()> next;
    {
      std::lock_guard lock(mutex);
      fill();
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

template <class T>
class Task;

namespace detail {
template <class R>
struct UnwrapTask {
  using type = R;
  static constexpr bool is_task = false;
};
template <class U>
struct UnwrapTask<Task<U>> {
  using type = U;
  static constexpr bool is_task = true;
};

/// The three forms of a continuation of Task<T> (see Task::then), and what it returns.
template <class F, class T>
struct Continuation {
  static constexpr bool task_based = std::invocable<F&, Task<T>>;
  static constexpr bool code_based = [] {
    if constexpr (std::is_void_v<T>)
      return std::invocable<F&, std::error_code>;
    else
      return std::invocable<F&, std::error_code, T>;
  }();
  static constexpr bool value_based = [] {
    if constexpr (std::is_void_v<T>)
      return std::invocable<F&>;
    else
      return std::invocable<F&, T>;
  }();
  static_assert(task_based || code_based || value_based,
                "Task<T>::then: the continuation must be callable as f(Task<T>), "
                "f(std::error_code[, T]) or f([T])");
  static auto result_of() {
    if constexpr (task_based)
      return std::type_identity<std::invoke_result_t<F&, Task<T>>>{};
    else if constexpr (code_based) {
      if constexpr (std::is_void_v<T>)
        return std::type_identity<std::invoke_result_t<F&, std::error_code>>{};
      else
        return std::type_identity<std::invoke_result_t<F&, std::error_code, T>>{};
    } else if constexpr (std::is_void_v<T>)
      return std::type_identity<std::invoke_result_t<F&>>{};
    else
      return std::type_identity<std::invoke_result_t<F&, T>>{};
  }
  /// What the continuation returns, and the value type of the task then() returns.
  using result = typename decltype(result_of())::type;
  using value = typename UnwrapTask<result>::type;
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
  /// std::system_error with its code (or, for a task returned by then(), the
  /// exception its continuation threw). Never call it on the thread that runs the
  /// socket's event loop (the default loop's thread, or your io_context's): the
  /// operation could not complete. Where duplex can tell (the default loop's
  /// thread, any socket event handler) it throws std::logic_error instead.
  T get() {
    if (!ready_) {
      wait();
      if (state_->exception) std::rethrow_exception(state_->exception);
    }
    auto r = get_result();
    if (r.ec) throw std::system_error(r.ec);
    if constexpr (!std::is_void_v<T>) return std::move(r.value);
  }

  /// Blocks like get(), but returns the code instead of throwing. Throws
  /// std::logic_error instead of deadlocking when called, before completion,
  /// on the default loop's thread or inside a socket event handler. A
  /// continuation's std::system_error comes back as its code; any other
  /// exception it threw is rethrown.
  Result<T> get_result() {
    if (ready_) return std::move(*ready_);
    wait();
    return take(*state_);
  }

  /// Chains `f` after this task and returns a Task of its result. `f` runs
  /// when the operation completes, on the thread that completes it (the
  /// socket's event loop), or at once on this thread if it already completed;
  /// keep it short and never block in it (get() on a pending task there throws
  /// std::logic_error). `f` is one of (T = void: no value argument):
  ///   - `f(std::error_code, T)`: always runs, with the code; the value is
  ///     value-initialised on failure (code-based);
  ///   - `f(T)`: runs only on success; a failure skips it and completes the
  ///     returned task with the same code or exception (value-based);
  ///   - `f(Task<T>)`: always runs, with a ready task: its get() returns the
  ///     value or throws what the operation or an earlier continuation failed
  ///     with (task-based; the place to handle a chain's errors at its end).
  /// Returns Task<R> for `f` returning R; Task<U> for `f` returning a Task<U>,
  /// completed when that task completes (flattened). If `f` throws, the
  /// returned task completes with that exception: get() rethrows it, a
  /// task-based continuation sees it, a code-based one gets a std::system_error's
  /// code (another exception skips it). A returned task that nobody consumes
  /// discards its result, exception included. Consumes this task (one
  /// consumer); std::logic_error on an invalid (moved-from) task. `f` must be
  /// copy-constructible (it is stored in a std::function).
  template <class F>
  auto then(F f) -> Task<typename detail::Continuation<F, T>::value> {
    using Out = typename detail::Continuation<F, T>::value;
    if (!valid()) throw std::logic_error("Task::then: the task is not valid (moved from or empty)");
    auto next = std::make_shared<detail::TaskState<Out>>();
    if (ready_) {
      Result<T> r = std::move(*ready_);
      ready_.reset();
      run(f, std::move(r), nullptr, *next, next);
      return Task<Out>(std::move(next));
    }
    std::unique_lock lock(state_->mutex);
    if (!state_->done) {
      state_->continuation = [s = state_, f = std::move(f), next]() mutable {
        run(f, take_plain(*s), s->exception, *next, next);
      };
      state_.reset();
      return Task<Out>(std::move(next));
    }
    lock.unlock();
    auto s = std::move(state_);
    run(f, take_plain(*s), s->exception, *next, next);
    return Task<Out>(std::move(next));
  }

  /// Awaiter that returns Result<T> instead of throwing.
  auto as_result() && { return ResultAwaiter{{std::move(state_), std::move(ready_)}}; }

  /// `co_await task` returns the value or throws std::system_error. The
  /// coroutine resumes on the thread that completes the operation (the socket's
  /// event loop), or does not suspend when the task is ready.
  auto operator co_await() && { return ValueAwaiter{{std::move(state_), std::move(ready_)}}; }

private:
  template <class>
  friend class Task;

  // A task completed with the exception a continuation threw.
  static Task failed(std::exception_ptr e) {
    auto state = std::make_shared<detail::TaskState<T>>();
    state->fail(std::move(e));
    return Task(std::move(state));
  }

  // Waits for a pending task, unless that would deadlock the event loop.
  void wait() {
    std::unique_lock lock(state_->mutex);
    if (!state_->done && detail::on_event_loop)
      throw std::logic_error(
          "Task::get: blocking on the event loop's thread would deadlock; use co_await or "
          "then() there");
    state_->cv.wait(lock, [&] { return state_->done; });
  }

  // Runs continuation `f` on this task's outcome (`r`, or `e` when a continuation
  // before it threw) and completes `next` with what it returns or throws. `keep`
  // holds `next` alive while a returned task is pending.
  template <class F, class Out>
  static void run(F& f, Result<T> r, std::exception_ptr e, detail::TaskState<Out>& next,
                  const std::shared_ptr<detail::TaskState<Out>>& keep) {
    using C = detail::Continuation<F, T>;
    try {
      if constexpr (C::task_based) {
        complete(next, keep, [&] { return f(e ? failed(e) : Task::ready(std::move(r))); });
      } else {
        if (e) {
          // Only a code-based continuation sees an exception, and only as a code.
          if constexpr (C::code_based) {
            try {
              std::rethrow_exception(e);
            } catch (const std::system_error& error) {
              r.ec = error.code();
            }
          } else {
            return next.fail(std::move(e));
          }
        }
        if constexpr (C::code_based) {
          if constexpr (std::is_void_v<T>)
            complete(next, keep, [&] { return f(r.ec); });
          else
            complete(next, keep, [&] { return f(r.ec, std::move(r.value)); });
        } else {
          if (r.ec) return next.fail(r.ec);
          if constexpr (std::is_void_v<T>)
            complete(next, keep, [&] { return f(); });
          else
            complete(next, keep, [&] { return f(std::move(r.value)); });
        }
      }
    } catch (...) {
      next.fail(std::current_exception());
    }
  }

  // Completes `next` with call()'s result; a returned Task is flattened.
  template <class Out, class Call>
  static void complete(detail::TaskState<Out>& next,
                       const std::shared_ptr<detail::TaskState<Out>>& keep, Call call) {
    using R = decltype(call());
    if constexpr (detail::UnwrapTask<R>::is_task) {
      R inner = call();
      if (!inner.valid())
        throw std::logic_error("Task::then: the continuation returned an invalid Task");
      std::move(inner).forward_to(keep);
    } else if constexpr (std::is_void_v<R>) {
      call();
      next.set({}, detail::Unit{});
    } else {
      next.set({}, call());
    }
  }

  // Completes `sink` with this task's outcome when it has one.
  void forward_to(std::shared_ptr<detail::TaskState<T>> sink) && {
    auto copy = [](detail::TaskState<T>& from, detail::TaskState<T>& to) {
      if (from.exception) return to.fail(from.exception);
      if (from.ec || !from.value) return to.fail(from.ec);
      to.set({}, std::move(*from.value));
    };
    if (ready_) {
      if (ready_->ec) return sink->fail(ready_->ec);
      if constexpr (std::is_void_v<T>)
        sink->set({}, detail::Unit{});
      else
        sink->set({}, std::move(ready_->value));
      return;
    }
    std::unique_lock lock(state_->mutex);
    if (!state_->done) {
      state_->continuation = [s = state_, sink, copy] { copy(*s, *sink); };
      return;
    }
    lock.unlock();
    copy(*state_, *sink);
  }

  // Takes the code, and the value on success, out of a completed state (under
  // its mutex when racing); ignores an exception.
  static Result<T> take_plain(detail::TaskState<T>& s) {
    Result<T> r;
    r.ec = s.ec;
    if constexpr (!std::is_void_v<T>) {
      if (s.value) r.value = std::move(*s.value);
    }
    return r;
  }

  // take_plain(), except that a continuation's exception becomes its code if it
  // is a std::system_error, and is rethrown otherwise.
  static Result<T> take(detail::TaskState<T>& s) {
    if (s.exception) {
      try {
        std::rethrow_exception(s.exception);
      } catch (const std::system_error& error) {
        Result<T> r;
        r.ec = error.code();
        return r;
      }
    }
    return take_plain(s);
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
      if (!this->ready && this->state->exception) std::rethrow_exception(this->state->exception);
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
