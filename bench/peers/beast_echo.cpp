// beast_echo: a Boost.Beast WebSocket echo server, the in-repo peer for bench/run.py.
//
// Usage: beast_echo [PORT [corrupt]]   (0 or none: an ephemeral port; prints "listening on PORT")
//
// `corrupt` flips one bit of the last byte of every echo: bench/run.py --smoke
// uses it to check that `duplex bench` notices a wrong echo.
//
// One thread, one io_context, no permessage-deflate: the configuration the
// duplex echo-server is compared against. Each connection reads a message into
// its own flat_buffer and writes it back with the same type before reading the
// next, which is how Beast's own examples echo (one write per message).
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

bool corrupt_echoes = false;

class Session : public std::enable_shared_from_this<Session> {
public:
  explicit Session(tcp::socket socket) : ws_(std::move(socket)) {}

  void start() {
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    // Large messages (64 KiB scenario) must fit; Beast's default limit is 16 MiB.
    ws_.read_message_max(64u << 20);
    ws_.async_accept([self = shared_from_this()](beast::error_code ec) { self->on_accept(ec); });
  }

private:
  void on_accept(beast::error_code ec) {
    if (ec) return;
    read();
  }

  void read() {
    ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_read(ec);
    });
  }

  void on_read(beast::error_code ec) {
    if (ec) return;  // closed by the peer, or failed: the session ends
    ws_.text(ws_.got_text());
    if (corrupt_echoes && buffer_.size() != 0) {
      auto* last = static_cast<unsigned char*>(buffer_.data().data()) + buffer_.size() - 1;
      *last ^= 1;  // ASCII stays ASCII, so a text echo is still valid UTF-8
    }
    ws_.async_write(
        buffer_.data(),
        [self = shared_from_this()](beast::error_code wec, std::size_t) { self->on_write(wec); });
  }

  void on_write(beast::error_code ec) {
    if (ec) return;
    buffer_.consume(buffer_.size());
    read();
  }

  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buffer_;
};

class Listener {
public:
  Listener(net::io_context& ioc, unsigned short port) : ioc_(ioc), acceptor_(ioc) {
    tcp::endpoint ep(net::ip::make_address("127.0.0.1"), port);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(net::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen(net::socket_base::max_listen_connections);
  }

  unsigned short port() const { return acceptor_.local_endpoint().port(); }

  void accept() {
    acceptor_.async_accept(ioc_, [this](beast::error_code ec, tcp::socket socket) {
      if (!ec) {
        socket.set_option(tcp::no_delay(true));
        std::make_shared<Session>(std::move(socket))->start();
      }
      accept();
    });
  }

private:
  net::io_context& ioc_;
  tcp::acceptor acceptor_;
};

}  // namespace

int main(int argc, char** argv) {
  try {
    unsigned long port = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 0;
    if (port > 65535) {
      std::fprintf(stderr, "beast_echo: PORT must be 0-65535\n");
      return 2;
    }
    corrupt_echoes = argc > 2 && std::string(argv[2]) == "corrupt";
    net::io_context ioc(1);
    Listener listener(ioc, static_cast<unsigned short>(port));
    listener.accept();
    std::printf("listening on %u\n", static_cast<unsigned>(listener.port()));
    std::fflush(stdout);
    ioc.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "beast_echo: %s\n", e.what());
    return 1;
  }
}
