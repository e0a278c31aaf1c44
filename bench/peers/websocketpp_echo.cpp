// websocketpp_echo: a websocketpp WebSocket echo server, the in-repo peer for
// bench/run.py.
//
// Usage: websocketpp_echo [PORT]   (0 or none: an ephemeral port; prints "listening on PORT")
//
// One thread, the asio_no_tls configuration (Boost.Asio), logging off, no
// permessage-deflate (the default config has none): each message is sent back
// with its opcode, as websocketpp's own echo example does.
#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/server.hpp>

#include <cstdio>
#include <cstdlib>

using Server = websocketpp::server<websocketpp::config::asio>;

int main(int argc, char** argv) {
  try {
    unsigned long port = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 0;
    if (port > 65535) {
      std::fprintf(stderr, "websocketpp_echo: PORT must be 0-65535\n");
      return 2;
    }
    Server server;
    server.clear_access_channels(websocketpp::log::alevel::all);
    server.clear_error_channels(websocketpp::log::elevel::all);
    server.init_asio();
    server.set_reuse_addr(true);
    // The default 32 MiB limit fits the 64 KiB scenario; the listen backlog
    // must take 10,000 connections arriving at once.
    server.set_listen_backlog(4096);
    server.set_message_handler([&server](websocketpp::connection_hdl hdl, Server::message_ptr msg) {
      websocketpp::lib::error_code ec;
      server.send(hdl, msg->get_payload(), msg->get_opcode(), ec);
    });
    server.listen(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"),
                                                 static_cast<unsigned short>(port)));
    server.start_accept();
    boost::system::error_code ec;
    auto ep = server.get_local_endpoint(ec);
    if (ec) throw boost::system::system_error(ec);
    std::printf("listening on %u\n", static_cast<unsigned>(ep.port()));
    std::fflush(stdout);
    server.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "websocketpp_echo: %s\n", e.what());
    return 1;
  }
}
