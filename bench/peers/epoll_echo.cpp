// epoll_echo: a minimal single-threaded epoll WebSocket echo server, the
// "ceiling" peer for bench/run.py (issue 11): what an echo costs with nothing
// but the kernel interface and the frame format in the way.
//
// Usage: epoll_echo [PORT]   (0 or none: an ephemeral port; prints "listening on PORT")
//
// One thread, one edge-triggered epoll set; every socket is registered once,
// for reading and writing. Reads go into one 512 KiB buffer shared by all
// connections. Frames are echoed as they stream in: the header of a data
// frame is answered as soon as it is parsed and each piece of payload is
// unmasked in place and written back in the same writev, so nothing is
// reassembled. Pings are answered with pongs, a close with a close. What the
// kernel does not take is copied to the connection's output buffer and sent on
// the next writable edge.
//
// Deliberately not a conforming server: no UTF-8 validation, no limits beyond
// the handshake's size, no permessage-deflate, no timeouts. It trusts that
// `duplex bench` sends well-formed frames; a malformed one closes the socket.
#include <openssl/evp.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace {

constexpr std::size_t kReadBuffer = 512 * 1024;
constexpr std::size_t kMaxRequest = 8 * 1024;
constexpr std::size_t kSmallPayload = 1024;  // copied into the scratch; larger ones by reference
constexpr int kMaxIov = 512;

volatile std::sig_atomic_t stop_requested = 0;

struct Conn {
  int fd = -1;
  bool open = false;     // handshake done
  bool closing = false;  // close frame answered: shut down once the output drains
  bool in_frame = false;
  bool control = false;
  std::uint8_t opcode = 0;
  std::uint8_t mask[4] = {};
  std::uint8_t hdr_len = 0;
  std::uint8_t hdr[14] = {};
  std::uint32_t mask_off = 0;
  std::uint64_t remaining = 0;
  std::string pending;  // the request while handshaking; a control frame's payload after
  std::string out;      // what the kernel has not taken yet
};

// Gathers the echoes of one read: small pieces are copied into `scratch`,
// large payloads are referenced where they were unmasked (in the read buffer).
struct Output {
  char scratch[64 * 1024];
  std::size_t used = 0;
  iovec iov[kMaxIov];
  int count = 0;
};

Output output;
char read_buffer[kReadBuffer];
EVP_MD* sha1 = nullptr;

void unmask(std::uint8_t* p, std::size_t n, const std::uint8_t* key, std::uint32_t off) {
  std::uint8_t k[8];
  for (int i = 0; i < 8; ++i) k[i] = key[(off + i) & 3];
  std::uint64_t word;
  std::memcpy(&word, k, 8);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t v;
    std::memcpy(&v, p + i, 8);
    v ^= word;
    std::memcpy(p + i, &v, 8);
  }
  for (; i < n; ++i) p[i] ^= k[i & 7];
}

void close_conn(int ep, Conn* c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, nullptr);
  close(c->fd);
  delete c;
}

// Sends what `output` holds for `c`; what the kernel refuses goes to c->out.
// Returns false when the socket failed.
bool flush(Conn* c) {
  if (output.count == 0) return true;
  ssize_t sent = 0;
  if (c->out.empty()) {
    msghdr msg{};
    msg.msg_iov = output.iov;
    msg.msg_iovlen = static_cast<std::size_t>(output.count);
    sent = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        output.count = 0;
        output.used = 0;
        return false;
      }
      sent = 0;
    }
  }
  auto skip = static_cast<std::size_t>(sent);
  for (int i = 0; i < output.count; ++i) {
    std::size_t len = output.iov[i].iov_len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    c->out.append(static_cast<const char*>(output.iov[i].iov_base) + skip, len - skip);
    skip = 0;
  }
  output.count = 0;
  output.used = 0;
  return true;
}

// Appends bytes to the output: copied into the scratch (extending the last
// iovec when it ends there) or, for large pieces, referenced in place.
bool emit(Conn* c, const void* p, std::size_t n, bool copy) {
  if (copy) {
    if (output.used + n > sizeof(output.scratch) || output.count == kMaxIov) {
      if (!flush(c)) return false;
    }
    char* dst = output.scratch + output.used;
    std::memcpy(dst, p, n);
    output.used += n;
    if (output.count > 0) {
      iovec& last = output.iov[output.count - 1];
      if (static_cast<char*>(last.iov_base) + last.iov_len == dst) {
        last.iov_len += n;
        return true;
      }
    }
    output.iov[output.count++] = {dst, n};
    return true;
  }
  if (output.count == kMaxIov && !flush(c)) return false;
  output.iov[output.count++] = {const_cast<void*>(p), n};
  return true;
}

bool emit_header(Conn* c, std::uint8_t first, std::uint64_t len) {
  std::uint8_t h[10];
  std::size_t n = 2;
  h[0] = first;
  if (len < 126) {
    h[1] = static_cast<std::uint8_t>(len);
  } else if (len <= 0xffff) {
    h[1] = 126;
    h[2] = static_cast<std::uint8_t>(len >> 8);
    h[3] = static_cast<std::uint8_t>(len);
    n = 4;
  } else {
    h[1] = 127;
    for (int i = 0; i < 8; ++i) h[2 + i] = static_cast<std::uint8_t>(len >> (56 - 8 * i));
    n = 10;
  }
  return emit(c, h, n, true);
}

// The end of a frame: answers a ping or a close. Returns false to stop reading.
bool finish_frame(Conn* c) {
  c->in_frame = false;
  if (!c->control) return true;
  if (c->opcode == 0x9) {  // ping -> pong
    return emit_header(c, 0x8a, c->pending.size()) &&
           emit(c, c->pending.data(), c->pending.size(), true);
  }
  if (c->opcode == 0x8) {  // close -> close with the same status
    std::size_t n = c->pending.size() >= 2 ? 2 : 0;
    emit_header(c, 0x88, n);
    emit(c, c->pending.data(), n, true);
    c->closing = true;
    return false;
  }
  return true;  // pong: nothing to do
}

// Parses frames from p[0..n) and queues their echoes. Returns false when the
// connection must close (protocol error) or stop reading (close answered).
bool on_frames(Conn* c, std::uint8_t* p, std::size_t n) {
  while (n > 0) {
    if (!c->in_frame) {
      const std::uint8_t* h = p;
      std::size_t need = 2;
      if (c->hdr_len != 0 || n < 14) {
        // The header may span reads: gather it in c->hdr.
        std::size_t have = c->hdr_len;
        while (n > 0) {
          if (have >= 2) {
            std::size_t ext = (c->hdr[1] & 0x7f) == 126 ? 2 : (c->hdr[1] & 0x7f) == 127 ? 8 : 0;
            need = 2 + ext + 4;
            if (have >= need) break;
          }
          c->hdr[have++] = *p++;
          --n;
        }
        c->hdr_len = static_cast<std::uint8_t>(have);
        if (have < 2) return true;
        std::size_t ext = (c->hdr[1] & 0x7f) == 126 ? 2 : (c->hdr[1] & 0x7f) == 127 ? 8 : 0;
        need = 2 + ext + 4;
        if (have < need) return true;
        h = c->hdr;
        c->hdr_len = 0;
      } else {
        std::size_t ext = (h[1] & 0x7f) == 126 ? 2 : (h[1] & 0x7f) == 127 ? 8 : 0;
        need = 2 + ext + 4;
        p += need;
        n -= need;
      }
      if ((h[0] & 0x70) != 0 || (h[1] & 0x80) == 0) return false;  // RSV bits, unmasked
      std::uint64_t len = h[1] & 0x7f;
      const std::uint8_t* m = h + 2;
      if (len == 126) {
        len = (std::uint64_t{h[2]} << 8) | h[3];
        m = h + 4;
      } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | h[2 + i];
        m = h + 10;
      }
      std::memcpy(c->mask, m, 4);
      c->opcode = h[0] & 0x0f;
      c->control = (c->opcode & 0x8) != 0;
      c->remaining = len;
      c->mask_off = 0;
      c->in_frame = true;
      if (c->control) {
        if ((h[0] & 0x80) == 0 || len > 125) return false;
        c->pending.clear();
      } else if (c->opcode > 2) {
        return false;
      } else if (!emit_header(c, h[0], len)) {
        return false;
      }
    }
    std::size_t take = c->remaining < n ? static_cast<std::size_t>(c->remaining) : n;
    if (take > 0) {
      unmask(p, take, c->mask, c->mask_off);
      c->mask_off = static_cast<std::uint32_t>((c->mask_off + take) & 3);
      if (c->control) {
        c->pending.append(reinterpret_cast<const char*>(p), take);
      } else if (!emit(c, p, take, take <= kSmallPayload)) {
        return false;
      }
      p += take;
      n -= take;
      c->remaining -= take;
    }
    if (c->remaining == 0 && !finish_frame(c)) return false;
  }
  return true;
}

std::string accept_key(std::string_view key) {
  static constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  char input[128];
  if (key.size() + guid.size() > sizeof(input)) return {};
  std::memcpy(input, key.data(), key.size());
  std::memcpy(input + key.size(), guid.data(), guid.size());
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(input, key.size() + guid.size(), digest, &len, sha1, nullptr) != 1) return {};
  unsigned char b64[64];
  int n = EVP_EncodeBlock(b64, digest, static_cast<int>(len));
  return std::string(reinterpret_cast<char*>(b64), static_cast<std::size_t>(n));
}

bool iequals_prefix(std::string_view line, std::string_view name) {
  if (line.size() < name.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    char a = line[i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (a != name[i]) return false;
  }
  return true;
}

// Handshake bytes arrive in p[0..n). Returns false to close the connection.
bool on_handshake(Conn* c, std::uint8_t* p, std::size_t n) {
  c->pending.append(reinterpret_cast<const char*>(p), n);
  std::size_t end = c->pending.find("\r\n\r\n");
  if (end == std::string::npos) return c->pending.size() <= kMaxRequest;
  std::string_view req(c->pending.data(), end + 2);
  std::string_view key;
  for (std::size_t pos = req.find("\r\n"); pos != std::string_view::npos && pos + 2 < req.size();) {
    std::size_t next = req.find("\r\n", pos + 2);
    std::string_view line = req.substr(pos + 2, next - pos - 2);
    if (iequals_prefix(line, "sec-websocket-key:")) {
      key = line.substr(18);
      while (!key.empty() && (key.front() == ' ' || key.front() == '\t')) key.remove_prefix(1);
      while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.remove_suffix(1);
    }
    pos = next;
  }
  std::string accept = req.substr(0, 4) == "GET " && !key.empty() ? accept_key(key) : "";
  if (accept.empty()) {
    static constexpr std::string_view bad =
        "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    emit(c, bad.data(), bad.size(), true);
    flush(c);
    return false;
  }
  std::string response =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: " +
      accept + "\r\n\r\n";
  emit(c, response.data(), response.size(), true);
  std::string rest = c->pending.substr(end + 4);
  c->pending.clear();
  c->pending.shrink_to_fit();
  c->open = true;
  if (rest.empty()) return true;
  return on_frames(c, reinterpret_cast<std::uint8_t*>(rest.data()), rest.size());
}

// The readable edge: reads until a short read (a new edge follows any later data).
void on_readable(int ep, Conn* c) {
  for (;;) {
    ssize_t n = recv(c->fd, read_buffer, kReadBuffer, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      output.count = 0;
      output.used = 0;
      close_conn(ep, c);
      return;
    }
    if (n < 0) return;
    if (c->closing) continue;  // drain until the peer closes
    auto* p = reinterpret_cast<std::uint8_t*>(read_buffer);
    auto len = static_cast<std::size_t>(n);
    bool ok = c->open ? on_frames(c, p, len) : on_handshake(c, p, len);
    if (!flush(c) || (!ok && !c->closing)) {
      close_conn(ep, c);
      return;
    }
    if (c->closing && c->out.empty()) shutdown(c->fd, SHUT_WR);
    if (static_cast<std::size_t>(n) < kReadBuffer) return;
  }
}

// The writable edge: sends what the kernel refused before. Returns false when
// the connection was closed (and freed).
bool on_writable(int ep, Conn* c) {
  while (!c->out.empty()) {
    ssize_t n = send(c->fd, c->out.data(), c->out.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      close_conn(ep, c);
      return false;
    }
    c->out.erase(0, static_cast<std::size_t>(n));
  }
  c->out.shrink_to_fit();
  if (c->closing) shutdown(c->fd, SHUT_WR);
  return true;
}

void on_accept(int ep, int listener) {
  for (;;) {
    int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or out of descriptors: the next edge retries
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto* c = new Conn;
    c->fd = fd;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = c;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close(fd);
      delete c;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  unsigned long port = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 0;
  if (port > 65535) {
    std::fprintf(stderr, "epoll_echo: PORT must be 0-65535\n");
    return 2;
  }
  // 10,000 idle connections need more descriptors than the usual soft limit.
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  struct sigaction sa {};
  sa.sa_handler = [](int) { stop_requested = 1; };
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sha1 = EVP_MD_fetch(nullptr, "SHA1", nullptr);
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof(addr);
  if (sha1 == nullptr || listener < 0 ||
      bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener, 4096) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &alen) != 0) {
    std::fprintf(stderr, "epoll_echo: cannot listen: %s\n", std::strerror(errno));
    return 1;
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event lev{};
  lev.events = EPOLLIN | EPOLLET;
  lev.data.ptr = nullptr;
  epoll_ctl(ep, EPOLL_CTL_ADD, listener, &lev);
  std::printf("listening on %u\n", static_cast<unsigned>(ntohs(addr.sin_port)));
  std::fflush(stdout);
  epoll_event events[256];
  while (!stop_requested) {
    int n = epoll_wait(ep, events, 256, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "epoll_echo: epoll_wait: %s\n", std::strerror(errno));
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<Conn*>(events[i].data.ptr);
      if (c == nullptr) {
        on_accept(ep, listener);
        continue;
      }
      std::uint32_t e = events[i].events;
      if ((e & EPOLLOUT) != 0 && !c->out.empty() && !on_writable(ep, c)) continue;
      if ((e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) on_readable(ep, c);
    }
  }
  EVP_MD_free(sha1);
  close(ep);
  close(listener);
  return 0;
}
