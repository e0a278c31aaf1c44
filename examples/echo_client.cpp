// The README's example: connect to an echo server, send a text message, print
// the echo, close. Usage: example_echo_client [ws://host:port/path]
#include <duplex/message_websocket.hpp>

#include <future>
#include <iostream>

int main(int argc, char** argv) {
  duplex::MessageWebSocket ws;  // runs on the library's default event loop
  ws.control().message_type(duplex::SocketMessageType::utf8);
  std::promise<void> echoed;
  ws.message_received([&](duplex::MessageWebSocket&, const auto& args) {
    std::cout << "received: " << args.text() << '\n';
    echoed.set_value();
  });
  try {
    ws.connect_async(argc > 1 ? argv[1] : "ws://127.0.0.1:9000/").get();
    ws.send_async("Hello, world!").get();
    echoed.get_future().wait();
    ws.close_async(1000, "done").get();
  } catch (const std::system_error& e) {
    std::cerr << duplex::to_string(duplex::get_status(e.code())) << ": " << e.what() << '\n';
    return 1;
  }
}
