// The Windows WebSockets article's timeout pattern, `cancel_after_timeout`,
// ported to duplex: a cancellation source, a timer on the socket's event loop
// that cancels it when the time is up, and an operation given the source's
// token. The operation then completes with error::operation_aborted
// (WebErrorStatus::operation_canceled), like the Windows task_canceled.
// duplex also has per-operation timeouts (control().connect_timeout(),
// send_timeout(), close_timeout()), which need no timer of your own.
// Usage: example_windows_cancel_after_timeout [ws://host:port/path] [milliseconds]
#include <duplex/cancellation.hpp>
#include <duplex/message_websocket.hpp>

#include <asio/steady_timer.hpp>

#include <chrono>
#include <iostream>
#include <memory>
#include <string>

namespace {

// Windows (C++/CX): task<T> cancel_after_timeout(task<T> t, cancellation_token_source cts,
//                                                 unsigned int timeout);
// Here: cancels `source` after `timeout` unless the returned guard is reset first
// (when the operation completed in time). The timer runs on the socket's loop.
std::shared_ptr<asio::steady_timer> cancel_after_timeout(duplex::MessageWebSocket& socket,
                                                         duplex::CancellationSource source,
                                                         std::chrono::milliseconds timeout) {
  auto timer = std::make_shared<asio::steady_timer>(socket.get_executor(), timeout);
  timer->async_wait([source](std::error_code ec) mutable {
    if (!ec) source.cancel();  // the time is up; a cancelled timer (ec set) does nothing
  });
  return timer;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string uri = argc > 1 ? argv[1] : "ws://127.0.0.1:9000/";
  const std::chrono::milliseconds timeout(argc > 2 ? std::stoi(argv[2]) : 5000);

  duplex::MessageWebSocket socket;
  duplex::CancellationSource source;  // Windows: cancellation_token_source cts;
  auto timer = cancel_after_timeout(socket, source, timeout);

  // Windows: create_task(socket->ConnectAsync(uri), cts.get_token()).then(...)
  auto outcome = socket.connect_async(uri, source.token()).then([timer](std::error_code ec) {
    timer->cancel();  // in time (or failed anyway): the timer must not cancel later
    return ec;
  });
  const std::error_code ec = outcome.get();
  if (ec) {
    // Windows: catch (task_canceled&) { ... } / WebSocketError::GetStatus(...)
    std::cerr << "connect: " << duplex::to_string(duplex::get_status(ec)) << " (" << ec.message()
              << ")\n";
    return 1;
  }
  std::cout << "connected within " << timeout.count() << " ms\n";
  socket.close_async(1000, "done").get();
  return 0;
}
