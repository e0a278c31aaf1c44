// Continuations as one chain (issue 12's seed scenario): connect, then send, then
// handle every error at the end, with no blocking call until the chain is built.
// Usage: example_task_chain [ws://host:port/path]
#include <duplex/message_websocket.hpp>

#include <iostream>
#include <system_error>

int main(int argc, char** argv) {
  duplex::MessageWebSocket ws;
  ws.control().message_type(duplex::SocketMessageType::utf8);
  const char* uri = argc > 1 ? argv[1] : "ws://127.0.0.1:9000/";

  auto done = ws.connect_async(uri)
                  .then([&] {
                    // Runs only if the connection opened; the send's Task is
                    // waited for before the next continuation runs.
                    return ws.send_async("Hello from a chain");
                  })
                  .then([&] { return ws.close_async(1000, "done"); })
                  .then([](duplex::Task<void> previous) {
                    // Always runs: get() throws what failed first in the chain.
                    try {
                      previous.get();
                      std::cout << "sent and closed\n";
                      return 0;
                    } catch (const std::system_error& e) {
                      std::cerr << duplex::to_string(duplex::get_status(e.code())) << ": "
                                << e.what() << '\n';
                      return 1;
                    }
                  });
  return done.get();  // the main thread is not the socket's loop: it may block
}
