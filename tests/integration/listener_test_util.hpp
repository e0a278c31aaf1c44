// listener_test_util.hpp: a raw TCP/TLS client on blocking POSIX sockets with
// deadlines, the certificates of the TLS tests (made with the openssl CLI at
// test time), and small waiting helpers. For the listener's integration tests.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

namespace duplex::test {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

/// The RFC 6455 1.3 sample key and its accept value.
inline constexpr std::string_view sample_key = "dGhlIHNhbXBsZSBub25jZQ==";
inline constexpr std::string_view sample_accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A WebSocket upgrade request for `target` with `extra` header lines ("K: V\r\n"...).
inline std::string upgrade_request(std::string_view target = "/", std::string_view extra = {}) {
  std::string r = "GET ";
  r.append(target).append(
      " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: ");
  r.append(sample_key).append("\r\nSec-WebSocket-Version: 13\r\n").append(extra).append("\r\n");
  return r;
}

/// A blocking IPv4 socket to 127.0.0.1:`port` whose opening handshake for
/// `path` is done: read byte by byte up to the 101's empty line, so the frames
/// after it stay unread. With `rcvbuf`, its receive buffer (and so the window)
/// is that small. Send and receive calls wait at most 5 s. Throws
/// std::runtime_error when a step fails; the caller closes the descriptor.
inline int connect_upgraded(std::uint16_t port, std::string_view path, int rcvbuf = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket");
  const auto fail = [fd](const std::string& what) {
    ::close(fd);
    throw std::runtime_error(what);
  };
  if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  timeval tv{5, 0};  // no blocking call of a test waits longer than this
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fail("connect");
  const auto req = upgrade_request(path);
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
    fail("send");
  std::string head;
  char c = 0;
  while (head.find("\r\n\r\n") == std::string::npos && head.size() < 4096 &&
         ::recv(fd, &c, 1, 0) == 1)
    head.push_back(c);
  if (head.rfind("HTTP/1.1 101", 0) != 0) fail("no 101: " + head);
  return fd;
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
inline bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto end = Clock::now() + timeout;
  while (!cond()) {
    if (Clock::now() >= end) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

/// A blocking client socket (IPv4 or IPv6 loopback), optionally TLS.
class RawClient {
public:
  RawClient() = default;
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;
  RawClient(RawClient&& o) noexcept : fd_(o.fd_), ssl_(o.ssl_) {
    o.fd_ = -1;
    o.ssl_ = nullptr;
  }
  ~RawClient() { close(); }

  /// Connects to `host` (numeric) : `port`; false on failure.
  bool connect(std::uint16_t port, const char* host = "127.0.0.1") {
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (std::string_view(host).find(':') != std::string_view::npos) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(port);
      if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) return false;
      len = sizeof(sockaddr_in6);
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_port = htons(port);
      if (inet_pton(AF_INET, host, &a->sin_addr) != 1) return false;
      len = sizeof(sockaddr_in);
    }
    fd_ = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return false;
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{5, 0};  // no blocking call of a test waits longer than this
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return ::connect(fd_, reinterpret_cast<sockaddr*>(&ss), len) == 0;
  }

  /// TLS client handshake over the connected socket with `ctx`; false on failure.
  bool start_tls(SSL_CTX* ctx) {
    ssl_ = SSL_new(ctx);
    SSL_set_fd(ssl_, fd_);
    return SSL_connect(ssl_) == 1;
  }

  [[nodiscard]] int fd() const noexcept { return fd_; }

  bool send(std::string_view data) {
    while (!data.empty()) {
      const long n = ssl_ ? SSL_write(ssl_, data.data(), static_cast<int>(data.size()))
                          : ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  /// Reads what is there (waiting up to `timeout` for something); "" at EOF,
  /// error or timeout; `closed` tells EOF/error apart from a timeout.
  std::string read_some(std::chrono::milliseconds timeout, bool* closed = nullptr) {
    if (closed) *closed = false;
    if (!ssl_ || SSL_pending(ssl_) == 0) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return {};
    }
    char buf[4096];
    const long n = ssl_ ? SSL_read(ssl_, buf, sizeof buf) : ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      if (closed) *closed = true;
      return {};
    }
    return std::string(buf, static_cast<std::size_t>(n));
  }

  /// Reads an HTTP answer: the header block and a Content-Length body (or up
  /// to EOF without one), within `timeout`. Returns what arrived.
  std::string read_response(std::chrono::milliseconds timeout = 3000ms) {
    std::string out;
    const auto end = Clock::now() + timeout;
    std::size_t need = std::string::npos;
    while (Clock::now() < end) {
      const auto head = out.find("\r\n\r\n");
      if (head != std::string::npos && need == std::string::npos) {
        need = head + 4;
        const auto cl = out.find("Content-Length: ");
        if (cl != std::string::npos && cl < head) need += std::stoul(out.substr(cl + 16));
      }
      if (need != std::string::npos && out.size() >= need) break;
      bool closed = false;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
      auto chunk = read_some(std::max(left, 1ms), &closed);
      if (closed) break;
      out += chunk;
    }
    return out;
  }

  /// Waits up to `timeout` for the server to close (EOF or reset), dropping data.
  bool wait_closed(std::chrono::milliseconds timeout) {
    const auto end = Clock::now() + timeout;
    while (Clock::now() < end) {
      bool closed = false;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
      read_some(std::max(left, 1ms), &closed);
      if (closed) return true;
    }
    return false;
  }

  void close() {
    if (ssl_) {
      SSL_free(ssl_);
      ssl_ = nullptr;
    }
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

private:
  int fd_ = -1;
  SSL* ssl_ = nullptr;
};

/// A temporary directory removed at destruction.
class TempDir {
public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "duplex-test-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  [[nodiscard]] std::string file(const char* name) const { return (path_ / name).string(); }

private:
  std::filesystem::path path_;
};

/// Certificates made with the openssl CLI: a CA, a server certificate for
/// 127.0.0.1 / localhost, and a client certificate (CN=client), all signed by
/// the CA. Files: ca.pem, server.pem (chain), server.key, client.pem, client.key.
class TestCertificates {
public:
  TestCertificates() {
    const auto d = dir_.path().string();
    const std::string script =
        "set -e; cd '" + d +
        "'; exec >/dev/null 2>&1;"
        " openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
        " -subj /CN=duplex-test-ca -keyout ca.key -out ca.pem;"
        " printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext;"
        " openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost"
        " -keyout server.key -out server.csr;"
        " openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
        " -extfile san.ext -out server.crt;"
        " cat server.crt ca.pem > server.pem;"
        " openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=client"
        " -keyout client.key -out client.csr;"
        " openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
        " -out client.pem";
    ok_ = std::system(script.c_str()) == 0;
  }
  [[nodiscard]] bool ok() const noexcept { return ok_; }
  [[nodiscard]] std::string file(const char* name) const { return dir_.file(name); }
  [[nodiscard]] const TempDir& dir() const noexcept { return dir_; }

  /// A client SSL_CTX trusting the test CA, with the client certificate if asked.
  [[nodiscard]] SSL_CTX* client_context(bool with_certificate) const {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(ctx, file("ca.pem").c_str(), nullptr);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (with_certificate) {
      SSL_CTX_use_certificate_file(ctx, file("client.pem").c_str(), SSL_FILETYPE_PEM);
      SSL_CTX_use_PrivateKey_file(ctx, file("client.key").c_str(), SSL_FILETYPE_PEM);
    }
    return ctx;
  }

private:
  TempDir dir_;
  bool ok_ = false;
};

}  // namespace duplex::test
