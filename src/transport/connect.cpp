// Resolve, Happy Eyeballs connect, and proxy tunnels.
#include "transport/connect.hpp"
#include "transport/unix_socket.hpp"

#include <array>
#include <mutex>

#include <asio/read.hpp>
#include <asio/read_until.hpp>
#include <asio/streambuf.hpp>
#include <asio/write.hpp>

#include <duplex/error.hpp>

namespace duplex::transport {
namespace {

std::mutex override_mutex;
ResolverOverride& resolver_override() {
  static ResolverOverride f;
  return f;
}

}  // namespace

void set_resolver_override(ResolverOverride f) {
  std::lock_guard lock(override_mutex);
  resolver_override() = std::move(f);
}

Endpoints interleave_families(Endpoints in) {
  Endpoints a, b, out;
  const bool first_v6 = !in.empty() && in.front().address().is_v6();
  for (auto& e : in) (e.address().is_v6() == first_v6 ? a : b).push_back(e);
  for (std::size_t i = 0; i < a.size() || i < b.size(); ++i) {
    if (i < a.size()) out.push_back(a[i]);
    if (i < b.size()) out.push_back(b[i]);
  }
  return out;
}

Connector::Connector(asio::io_context::executor_type ex) : ex_(ex), resolver_(ex), stagger_(ex) {}

void Connector::start(std::string host, std::uint16_t port, Done done) {
  done_ = std::move(done);
  // A Unix socket path (ws+unix): no resolving; the connect ends at once.
  if (is_unix_path(host)) {
    attempts_.push_back(std::make_unique<TcpSocket>(ex_));
    const auto ec = connect_unix(*attempts_.back(), host);
    asio::post(ex_, [self = shared_from_this(), ec] {
      if (!self->finished_) self->finish(ec, ec ? nullptr : self->attempts_.front().get());
    });
    return;
  }
  std::optional<Endpoints> fixed;
  {
    std::lock_guard lock(override_mutex);
    if (resolver_override()) fixed = resolver_override()(host, port);
  }
  auto self = shared_from_this();
  if (fixed) {
    asio::post(
        ex_, [self, eps = std::move(*fixed)]() mutable { self->on_resolved({}, std::move(eps)); });
    return;
  }
  resolver_.async_resolve(host, std::to_string(port),
                          [self](std::error_code ec, asio::ip::tcp::resolver::results_type r) {
                            Endpoints eps;
                            for (auto& e : r) eps.push_back(e.endpoint());
                            self->on_resolved(ec, std::move(eps));
                          });
}

void Connector::cancel() {
  if (finished_) return;
  finish(make_error_code(error::operation_aborted), nullptr);
}

void Connector::on_resolved(std::error_code ec, Endpoints eps) {
  if (finished_) return;
  if (ec == asio::error::operation_aborted)
    return finish(make_error_code(error::operation_aborted), nullptr);
  if (ec || eps.empty()) return finish(make_error_code(error::host_not_resolved), nullptr);
  endpoints_ = interleave_families(std::move(eps));
  if (endpoints_.size() > max_connect_attempts) endpoints_.resize(max_connect_attempts);
  start_next();
}

void Connector::start_next() {
  if (finished_ || next_ >= endpoints_.size()) return;
  const std::size_t index = next_++;
  attempts_.push_back(std::make_unique<TcpSocket>(ex_));
  auto& sock = *attempts_.back();
  auto self = shared_from_this();
  sock.async_connect(endpoints_[index],
                     [self, index](std::error_code e) { self->on_attempt(index, e); });
  arm_stagger();
}

void Connector::arm_stagger() {
  if (next_ >= endpoints_.size()) {
    stagger_.cancel();
    return;
  }
  // RFC 8305 5: start the next attempt after the delay even if this one is pending.
  stagger_.expires_after(connection_attempt_delay);
  auto self = shared_from_this();
  const std::size_t expected = next_;
  stagger_.async_wait([self, expected](std::error_code e) {
    if (e || self->finished_ || self->next_ != expected) return;
    self->start_next();
  });
}

void Connector::on_attempt(std::size_t index, std::error_code ec) {
  if (finished_) return;
  if (!ec) return finish({}, attempts_[index].get());
  last_error_ = ec;
  ++failed_;
  // RFC 8305 5: a failed attempt starts the next one at once.
  if (next_ < endpoints_.size()) {
    if (failed_ == next_) start_next();
    return;
  }
  if (failed_ == endpoints_.size()) finish(last_error_, nullptr);
}

void Connector::finish(std::error_code ec, TcpSocket* winner) {
  finished_ = true;
  std::error_code ignored;
  stagger_.cancel();
  resolver_.cancel();
  TcpSocket result(ex_);
  for (auto& s : attempts_) {
    if (s.get() == winner)
      result = std::move(*s);
    else
      s->close(ignored);
  }
  auto done = std::move(done_);
  done_ = nullptr;
  if (!done) return;
  asio::post(ex_, [done = std::move(done), ec, sock = std::move(result)]() mutable {
    done(ec, std::move(sock));
  });
}

std::string base64(std::string_view in) {
  static constexpr char table[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    auto n = (std::uint32_t(std::uint8_t(in[i])) << 16) |
             (std::uint32_t(std::uint8_t(in[i + 1])) << 8) | std::uint8_t(in[i + 2]);
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
    out += table[(n >> 6) & 63];
    out += table[n & 63];
  }
  if (i + 1 == in.size()) {
    auto n = std::uint32_t(std::uint8_t(in[i])) << 16;
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    auto n =
        (std::uint32_t(std::uint8_t(in[i])) << 16) | (std::uint32_t(std::uint8_t(in[i + 1])) << 8);
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
    out += table[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

namespace {

struct ProxyOp : std::enable_shared_from_this<ProxyOp> {
  TcpSocket& socket;
  std::string host;
  std::uint16_t port;
  std::optional<Credential> credential;
  std::function<void(std::error_code)> done;
  std::string out;
  asio::streambuf in;
  std::array<std::uint8_t, 512> buf{};

  ProxyOp(TcpSocket& s, std::string h, std::uint16_t p, std::optional<Credential> c,
          std::function<void(std::error_code)> d)
      : socket(s), host(std::move(h)), port(p), credential(std::move(c)), done(std::move(d)) {}

  void fail(std::error_code ec) { done(ec); }

  // --- HTTP CONNECT (RFC 9110 9.3.6) ---------------------------------------------
  void http() {
    const bool v6 = host.find(':') != std::string::npos;
    const std::string authority = (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
    out = "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n";
    if (credential)
      out += "Proxy-Authorization: Basic " +
             base64(credential->user_name + ":" + credential->password) + "\r\n";
    out += "\r\n";
    auto self = shared_from_this();
    asio::async_write(socket, asio::buffer(out), [self](std::error_code ec, std::size_t) {
      if (ec) return self->fail(ec);
      asio::async_read_until(self->socket, self->in, "\r\n\r\n",
                             [self](std::error_code e, std::size_t n) { self->http_answer(e, n); });
    });
  }
  void http_answer(std::error_code ec, std::size_t n) {
    if (ec) return fail(ec == asio::error::not_found ? make_error_code(error::proxy_failed) : ec);
    std::string head(asio::buffers_begin(in.data()),
                     asio::buffers_begin(in.data()) + static_cast<std::ptrdiff_t>(n));
    // "HTTP/1.1 200 Connection established"
    if (head.size() < 12 || head.compare(0, 5, "HTTP/") != 0)
      return fail(make_error_code(error::proxy_failed));
    auto sp = head.find(' ');
    int status = 0;
    for (std::size_t i = sp + 1; i < head.size() && i < sp + 4; ++i) {
      if (head[i] < '0' || head[i] > '9') return fail(make_error_code(error::proxy_failed));
      status = status * 10 + (head[i] - '0');
    }
    // The proxy's status is not the server's: 502 from a proxy means it could
    // not reach the server, not that the server failed.
    if (status / 100 != 2) return fail(make_proxy_error(status));
    done({});
  }

  // --- SOCKS5 (RFC 1928, RFC 1929) -----------------------------------------------
  void socks() {
    out.clear();
    out += '\x05';
    if (credential) {
      out += '\x02';
      out += '\x00';
      out += '\x02';
    } else {
      out += '\x01';
      out += '\x00';
    }
    auto self = shared_from_this();
    asio::async_write(socket, asio::buffer(out), [self](std::error_code ec, std::size_t) {
      if (ec) return self->fail(ec);
      asio::async_read(self->socket, asio::buffer(self->buf.data(), 2),
                       [self](std::error_code e, std::size_t) { self->socks_method(e); });
    });
  }
  void socks_method(std::error_code ec) {
    if (ec) return fail(ec);
    if (buf[0] != 5) return fail(make_error_code(error::proxy_failed));
    if (buf[1] == 0) return socks_request();
    if (buf[1] != 2 || !credential) return fail(make_error_code(error::proxy_failed));
    auto& c = *credential;
    if (c.user_name.size() > 255 || c.password.size() > 255)
      return fail(make_error_code(error::proxy_failed));
    out.clear();
    out += '\x01';
    out += static_cast<char>(c.user_name.size());
    out += c.user_name;
    out += static_cast<char>(c.password.size());
    out += c.password;
    auto self = shared_from_this();
    asio::async_write(socket, asio::buffer(out), [self](std::error_code e, std::size_t) {
      if (e) return self->fail(e);
      asio::async_read(self->socket, asio::buffer(self->buf.data(), 2),
                       [self](std::error_code e2, std::size_t) {
                         if (e2) return self->fail(e2);
                         if (self->buf[1] != 0)
                           return self->fail(make_error_code(error::proxy_failed));
                         self->socks_request();
                       });
    });
  }
  void socks_request() {
    out.assign("\x05\x01\x00", 3);
    std::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (!ec && addr.is_v4()) {
      out += '\x01';
      auto b = addr.to_v4().to_bytes();
      out.append(reinterpret_cast<const char*>(b.data()), b.size());
    } else if (!ec && addr.is_v6()) {
      out += '\x04';
      auto b = addr.to_v6().to_bytes();
      out.append(reinterpret_cast<const char*>(b.data()), b.size());
    } else {
      if (host.size() > 255) return fail(make_error_code(error::proxy_failed));
      out += '\x03';
      out += static_cast<char>(host.size());
      out += host;
    }
    out += static_cast<char>(port >> 8);
    out += static_cast<char>(port & 0xff);
    auto self = shared_from_this();
    asio::async_write(socket, asio::buffer(out), [self](std::error_code e, std::size_t) {
      if (e) return self->fail(e);
      asio::async_read(self->socket, asio::buffer(self->buf.data(), 5),
                       [self](std::error_code e2, std::size_t) { self->socks_reply(e2); });
    });
  }
  void socks_reply(std::error_code ec) {
    if (ec) return fail(ec);
    if (buf[0] != 5 || buf[1] != 0) return fail(make_error_code(error::proxy_failed));
    // The bound address follows; 5 bytes are read, of which the 5th is the
    // first byte of the address (or its length for a domain name).
    std::size_t rest = 0;
    switch (buf[3]) {
      case 1: rest = 4 - 1 + 2; break;
      case 4: rest = 16 - 1 + 2; break;
      case 3: rest = std::size_t(buf[4]) + 2; break;
      default: return fail(make_error_code(error::proxy_failed));
    }
    auto self = shared_from_this();
    asio::async_read(socket, asio::buffer(buf.data(), rest),
                     [self](std::error_code e, std::size_t) {
                       if (e) return self->fail(e);
                       self->done({});
                     });
  }
};

}  // namespace

void async_proxy_handshake(TcpSocket& socket, const ProxyUri& proxy, std::string host,
                           std::uint16_t port, std::optional<Credential> credential,
                           std::function<void(std::error_code)> done) {
  auto op = std::make_shared<ProxyOp>(socket, std::move(host), port, std::move(credential),
                                      std::move(done));
  if (proxy.kind == ProxyUri::Kind::http)
    op->http();
  else
    op->socks();
}

}  // namespace duplex::transport
