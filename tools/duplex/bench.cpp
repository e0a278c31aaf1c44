// tools/duplex/bench.cpp: `duplex bench`, a pipelined WebSocket load generator.
//
// The load generator must not be the bottleneck (issue 5 asks for >= 2 M
// messages/s of 16 B from one core), so it drives the wire itself with duplex's
// protocol core rather than through the task-per-operation public API: the
// opening handshake is duplex's (build_client_request, parse_http_response,
// validate_server_response), frames are written with write_frame_header and
// masked with copy_masked, and echoes are parsed with parse_frame_header.
//
// Nor does it go through Asio's per-socket reactor, whose operation objects
// and re-arming cost more than the rest of a message: one thread owns one
// epoll set, and each socket is registered once, edge-triggered, for reading
// and writing, with a non-blocking connect. A readable event is one recv into
// a buffer shared by the loop; every echoed byte is checked as it streams past
// (no reassembly); the connection tops its window back up to K messages, and
// all the frames made in that turn leave in one send (corking). A message
// costs no allocation and no syscall of its own.
#include "bench.hpp"
#include "bench_fanout.hpp"
#include "echo_service.hpp"

#include <duplex/error.hpp>
#include <duplex/message_websocket.hpp>
#include <duplex/protocol/frame.hpp>
#include <duplex/protocol/handshake.hpp>

#include <CLI/CLI.hpp>
#include <asio.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace {

namespace proto = duplex::protocol;
using Clock = std::chrono::steady_clock;
using asio::ip::tcp;

struct BenchOptions {
  std::string url;
  std::size_t connections = 100;
  std::size_t in_flight = 16;
  std::size_t size = 16;
  bool binary = false;
  double duration = 5.0;
  std::uint64_t messages = 0;  // 0: run for `duration`
  bool latency = false;
  bool json = false;
  bool api = false;  // drive duplex::MessageWebSocket instead of the wire engine
  std::vector<std::string> subscribe_urls;  // fan-out: where the subscribers connect
  std::size_t fanout = 0;  // > 0: fan-out mode with this many subscribers (bench_fanout.cpp)
};

struct WsUrl {
  std::string host;
  std::string port;
  std::string target;
};

// RFC 6455 3: ws-URI = "ws:" "//" host [ ":" port ] path [ "?" query ].
WsUrl parse_url(std::string_view url) {
  constexpr std::string_view scheme = "ws://";
  if (url.substr(0, scheme.size()) != scheme) {
    throw std::invalid_argument("URL: must start with ws:// (the benchmark does not speak TLS)");
  }
  url.remove_prefix(scheme.size());
  WsUrl out;
  std::size_t slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  out.target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  if (!authority.empty() && authority.front() == '[') {
    std::size_t close = authority.find(']');
    if (close == std::string_view::npos) throw std::invalid_argument("URL: unterminated [IPv6]");
    out.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
    if (!authority.empty() && authority.front() == ':') out.port = authority.substr(1);
  } else {
    std::size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) out.port = authority.substr(colon + 1);
  }
  if (out.host.empty()) throw std::invalid_argument("URL: host must not be empty");
  if (out.port.empty()) out.port = "80";
  return out;
}

// CPU time (user + system) of the calling thread: the load generator's cost,
// apart from an embedded server running on another thread.
double thread_cpu_seconds() noexcept {
  rusage usage{};
  if (getrusage(RUSAGE_THREAD, &usage) != 0) return 0;
  auto seconds = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// Round-trip times in a log-linear histogram: 64 buckets per power of two
// (under 1.6 % error), fixed size, so recording allocates nothing.
class LatencyHistogram {
public:
  void record(std::uint64_t ns) noexcept {
    ++counts_[index(std::min<std::uint64_t>(ns, max_value))];
    ++total_;
  }
  [[nodiscard]] std::uint64_t total() const noexcept { return total_; }
  /// The value under which a fraction `q` of the samples fall, in ns.
  [[nodiscard]] double quantile(double q) const noexcept {
    if (total_ == 0) return 0;
    auto rank = static_cast<std::uint64_t>(q * static_cast<double>(total_ - 1)) + 1;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return midpoint(i);
    }
    return static_cast<double>(max_value);
  }

private:
  static constexpr unsigned sub_bits = 6;
  static constexpr std::uint64_t sub_count = std::uint64_t{1} << sub_bits;
  static constexpr unsigned max_bits = 40;  // about 18 minutes in ns
  static constexpr std::uint64_t max_value = (std::uint64_t{1} << max_bits) - 1;

  static std::size_t index(std::uint64_t v) noexcept {
    if (v < sub_count) return static_cast<std::size_t>(v);
    unsigned msb = static_cast<unsigned>(std::bit_width(v)) - 1;
    std::uint64_t mantissa = (v >> (msb - sub_bits)) & (sub_count - 1);
    return static_cast<std::size_t>((msb - sub_bits + 1) * sub_count + mantissa);
  }
  static double midpoint(std::size_t i) noexcept {
    if (i < sub_count) return static_cast<double>(i);
    std::size_t octave = i / sub_count;  // >= 1
    std::uint64_t mantissa = i % sub_count;
    unsigned shift = static_cast<unsigned>(octave - 1);
    double low = static_cast<double>((sub_count + mantissa) << shift);
    return low + static_cast<double>(std::uint64_t{1} << shift) / 2.0;
  }

  std::array<std::uint64_t, (max_bits - sub_bits + 1) * sub_count> counts_{};
  std::uint64_t total_ = 0;
};

// What a run measured, for the report.
struct Totals {
  double seconds = 0;
  std::size_t opened = 0;
  std::uint64_t messages = 0;
  double cpu_seconds = 0;  // load generator thread
  std::size_t failures = 0;
  std::string first_error;
};

void print_report(const BenchOptions& options, const Totals& t, const LatencyHistogram& latency) {
  double rate = t.seconds > 0 ? static_cast<double>(t.messages) / t.seconds : 0;
  double mbps = rate * static_cast<double>(options.size) / 1e6;
  bool lat = options.latency && latency.total() != 0;
  double p50 = lat ? latency.quantile(0.50) / 1e3 : 0;
  double p99 = lat ? latency.quantile(0.99) / 1e3 : 0;
  // What one core of load generator could push: messages per CPU second it used.
  double capacity = t.cpu_seconds > 0 ? static_cast<double>(t.messages) / t.cpu_seconds : 0;
  const char* engine = options.api ? "api" : "wire";
  if (options.json) {
    std::printf(
        "{\"url\":\"%s\",\"engine\":\"%s\",\"connections\":%zu,\"opened\":%zu,"
        "\"in_flight\":%zu,\"size\":%zu,\"binary\":%s,\"seconds\":%.4f,\"messages\":%" PRIu64
        ",\"messages_per_s\":%.1f,\"mb_per_s\":%.3f",
        options.url.c_str(), engine, options.connections, t.opened, options.in_flight, options.size,
        options.binary ? "true" : "false", t.seconds, t.messages, rate, mbps);
    if (lat) std::printf(",\"p50_us\":%.2f,\"p99_us\":%.2f", p50, p99);
    std::printf(",\"load_cpu_s\":%.4f,\"load_messages_per_cpu_s\":%.1f", t.cpu_seconds, capacity);
    std::printf(",\"errors\":%zu", t.failures);
    if (!t.first_error.empty()) {
      std::string escaped;
      for (char c : t.first_error) {
        if (c == '"' || c == '\\') escaped += '\\';
        escaped += c;
      }
      std::printf(",\"first_error\":\"%s\"", escaped.c_str());
    }
    std::printf("}\n");
  } else {
    std::printf("duplex bench %s (%s): %zu connections x %zu in flight, %zu B %s\n",
                options.url.c_str(), engine, options.connections, options.in_flight, options.size,
                options.binary ? "binary" : "text");
    std::printf("%10s %12s %14s %10s", "seconds", "messages", "messages/s", "MB/s");
    if (lat) std::printf(" %10s %10s", "p50 us", "p99 us");
    std::printf(" %7s\n", "errors");
    std::printf("%10.3f %12" PRIu64 " %14.0f %10.2f", t.seconds, t.messages, rate, mbps);
    if (lat) std::printf(" %10.1f %10.1f", p50, p99);
    std::printf(" %7zu\n", t.failures);
    std::printf(
        "load generator: %.2f s of CPU (%.0f %% of one core), %.0f messages per CPU second\n",
        t.cpu_seconds, t.seconds > 0 ? 100.0 * t.cpu_seconds / t.seconds : 0.0, capacity);
    if (!t.first_error.empty()) std::fprintf(stderr, "first error: %s\n", t.first_error.c_str());
  }
  std::fflush(stdout);
}

// The first bytes of message `seq` on connection `id`: 8 hex digits of each,
// so that a lost, repeated or reordered echo is caught.
// 8 hex digits of `value` (lowest nibble first), a word at a time: this runs
// twice per message.
[[gnu::always_inline]] inline std::uint64_t hex8(std::uint32_t value) noexcept {
  std::uint64_t x = value;
  x = (x | (x << 16)) & 0x0000FFFF0000FFFFull;
  x = (x | (x << 8)) & 0x00FF00FF00FF00FFull;
  x = (x | (x << 4)) & 0x0F0F0F0F0F0F0F0Full;  // one nibble per byte
  std::uint64_t letters = ((x + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
  return x + 0x3030303030303030ull + letters * ('a' - '0' - 10);
}

// A message's prefix: the connection's id (written once, when the connection
// is made), 8 hex digits, and the message's sequence number: 8 hex digits in
// the wire engine, a SequenceCounter's 8 letters through --api.
void set_prefix_id(std::size_t id, std::array<char, 16>& out) noexcept {
  std::uint64_t a = hex8(static_cast<std::uint32_t>(id));
  std::memcpy(out.data(), &a, 8);
}

// `--api`'s sequence number, as the 8 bytes it is sent as: one letter 'a'..'p'
// per nibble, lowest first. Counting up costs an add and an or, where hex8
// costs about 25 instructions, twice per message. Wraps at 2^32, as hex8.
class SequenceCounter {
public:
  /// The current number's 8 bytes (memcpy them into the message).
  [[nodiscard]] std::uint64_t word() const noexcept { return biased_ - letter_offset; }
  /// The next number.
  void advance() noexcept { biased_ = (biased_ + 1) | high_nibbles; }

private:
  // Each byte holds 0xF0 + its nibble: a nibble that overflows carries into
  // the next byte and leaves 0x00 behind, which the or makes 0xF0 again.
  static constexpr std::uint64_t high_nibbles = 0xF0F0F0F0F0F0F0F0ull;
  // 0xF0 + n - 0x8F = 'a' + n in every byte, with no borrow between bytes.
  static constexpr std::uint64_t letter_offset = 0x8F8F8F8F8F8F8F8Full;
  std::uint64_t biased_ = high_nibbles;  // 0
};

// The payload: letters (valid UTF-8 for text), the prefix spliced over the start.
std::vector<std::byte> make_payload(std::size_t size) {
  std::vector<std::byte> payload(size);
  for (std::size_t i = 0; i < size; ++i) {
    payload[i] = static_cast<std::byte>('a' + static_cast<int>(i % 26));
  }
  return payload;
}

class Bench;

// A connection's outgoing bytes. Frames made while a send is pending join the
// unsent bytes and leave together (corking). The storage grows to the largest
// burst once and is reused, so a message costs no allocation.
class OutBuffer {
public:
  /// Room for `n` more bytes at the end; commit() says how many were written.
  std::byte* prepare(std::size_t n) {
    if (capacity_ - size_ < n) make_room(n);
    return data_.get() + size_;
  }
  void commit(std::size_t n) noexcept { size_ += n; }
  [[nodiscard]] std::span<const std::byte> pending() const noexcept {
    return {data_.get() + sent_, size_ - sent_};
  }
  /// `n` bytes of pending() left in a send.
  void consume(std::size_t n) noexcept {
    sent_ += n;
    if (sent_ == size_) sent_ = size_ = 0;
  }
  [[nodiscard]] bool empty() const noexcept { return sent_ == size_; }

private:
  void make_room(std::size_t n) {
    // The unsent bytes move to the front first: after a short send the
    // buffer is reused rather than grown.
    if (sent_ != 0) {
      std::memmove(data_.get(), data_.get() + sent_, size_ - sent_);
      size_ -= sent_;
      sent_ = 0;
      if (capacity_ - size_ >= n) return;
    }
    std::size_t capacity = std::max({size_ + n, 2 * capacity_, std::size_t{256}});
    auto fresh = std::make_unique_for_overwrite<std::byte[]>(capacity);
    if (size_ != 0) std::memcpy(fresh.get(), data_.get(), size_);
    data_ = std::move(fresh);
    capacity_ = capacity;
  }

  std::unique_ptr<std::byte[]> data_;
  std::size_t capacity_ = 0;
  std::size_t size_ = 0;  // bytes written
  std::size_t sent_ = 0;  // of which sent
};

std::error_code errno_code() noexcept {
  return {errno, std::system_category()};
}

// One client connection: non-blocking connect, handshake, then a window of K
// messages in flight. Its socket is registered once with the loop's epoll set,
// edge-triggered for reading and writing; every event is answered with one
// recv (more only when a read fills the buffer) and at most one send.
class BenchConnection {
public:
  BenchConnection(Bench& bench, std::size_t id);
  ~BenchConnection();
  BenchConnection(const BenchConnection&) = delete;
  BenchConnection& operator=(const BenchConnection&) = delete;

  void start();
  /// The epoll events reported for the socket.
  void on_event(std::uint32_t events);
  /// The last read filled the buffer: the kernel may hold more, and an
  /// edge-triggered socket will not say so again.
  void on_read_later() {
    if (!finished_) on_readable();
  }
  void begin_load();
  void begin_close();
  void abort() noexcept;
  [[nodiscard]] std::size_t in_flight() const noexcept { return in_flight_; }
  [[nodiscard]] bool finished() const noexcept { return finished_; }

private:
  void connect_to(std::size_t endpoint, std::error_code last);
  void on_connected();
  void on_readable();
  void on_handshake_bytes(const std::byte* data, std::size_t n);
  void consume(std::byte* data, std::size_t n);
  void on_frame_header(const proto::FrameHeader& h);
  void on_payload(const std::byte* data, std::size_t n);
  void on_frame_end();
  void on_message_end();
  /// Checks the whole echoes at the start of `data`, the usual content of a
  /// read, and returns the bytes they take: it stops before anything else
  /// (a split or fragmented frame, a control frame, an error), which
  /// consume() then parses again one step at a time.
  std::size_t consume_echoes(const std::byte* data, std::size_t n);
  /// `count` more echoes are checked and counted.
  void on_echoes(std::size_t count);
  /// Queues messages until K are in flight, in one pass over the output buffer.
  void top_up();
  /// Queues one masked frame whose payload is `first` then `second`, masked
  /// as it is copied (a message's prefix spliced before the shared payload).
  void queue_frame(proto::Opcode op, std::span<const std::byte> first,
                   std::span<const std::byte> second = {});
  /// Sends what is queued in one send(); what the kernel does not take waits
  /// for EPOLLOUT.
  void flush();
  void fail(const char* what, std::error_code ec = {});
  void finish();
  void close_socket() noexcept;
  void set_prefix(std::uint64_t seq) noexcept;
  proto::MaskKey next_mask() noexcept;

  Bench& bench_;
  int fd_ = -1;
  std::size_t id_;
  std::uint64_t id_hex_;      // the first 8 bytes of every message's prefix
  std::size_t endpoint_ = 0;  // the address being connected to
  std::uint64_t rng_;
  // Handshake.
  std::string key_;
  std::string handshake_in_;
  // Sending.
  OutBuffer out_;
  bool send_blocked_ = false;  // the kernel took less than asked: wait for EPOLLOUT
  std::uint64_t next_send_ = 0;
  std::uint64_t next_receive_ = 0;
  std::size_t in_flight_ = 0;
  std::vector<Clock::time_point> sent_at_;  // ring of K send times (--latency)
  // Receiving: the state of the frame that spans reads.
  std::array<std::byte, proto::max_frame_header_size> spill_{};
  std::size_t spill_size_ = 0;
  bool in_frame_ = false;
  proto::FrameHeader frame_;
  std::uint64_t frame_left_ = 0;
  bool in_message_ = false;
  std::uint64_t message_offset_ = 0;
  std::array<char, 16> prefix_{};   // expected first bytes of the message being received
  std::vector<std::byte> control_;  // payload of the control frame being received
  bool started_ = false;
  bool connecting_ = false;
  bool open_ = false;
  bool closing_ = false;
  bool finished_ = false;
  bool hangup_ = false;  // the server shut its side: read on to the end of the stream
};

// An address to connect to, as the kernel takes it.
struct Endpoint {
  sockaddr_storage address{};
  socklen_t size = 0;
};

// The wire engine: one thread, one epoll set for every connection, timers as
// the epoll_wait timeout.
class Bench {
public:
  explicit Bench(BenchOptions options)
      : options_(std::move(options)), payload_(make_payload(options_.size)), message_(payload_) {
    read_buffer_.resize(256 * 1024);
    data_header_value_.opcode = options_.binary ? proto::Opcode::binary : proto::Opcode::text;
    data_header_value_.masked = true;
    data_header_value_.payload_length = options_.size;
    data_header_size_ = proto::write_frame_header(
        data_header_value_, std::span<std::byte, proto::max_frame_header_size>(
                                data_header_.data(), proto::max_frame_header_size));
  }
  ~Bench() {
    connections_.clear();  // sockets before the epoll set
    if (epoll_ >= 0) ::close(epoll_);
  }
  Bench(const Bench&) = delete;
  Bench& operator=(const Bench&) = delete;

  int run();
  /// The first failure seen, for the exit message.
  [[nodiscard]] std::string failure() const {
    return first_error_.empty() ? "not every connection opened" : first_error_;
  }

  // --- used by the connections --------------------------------------------------
  const BenchOptions& options() const noexcept { return options_; }
  const std::vector<std::byte>& payload() const noexcept { return payload_; }
  std::span<std::byte> read_buffer() noexcept { return read_buffer_; }
  const proto::ClientHandshakeOptions& handshake() const noexcept { return handshake_; }
  const std::vector<Endpoint>& endpoints() const noexcept { return endpoints_; }
  /// Registers `fd` once, edge-triggered, for reading and writing.
  std::error_code watch(int fd, BenchConnection& c) noexcept {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = &c;
    if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev) != 0) return errno_code();
    return {};
  }
  void read_later(BenchConnection& c) { read_later_.push_back(&c); }
  bool measuring() const noexcept { return measuring_; }
  /// Claims up to `want` messages to send: fewer near the -n limit, none
  /// once the load stopped.
  std::size_t take_sends(std::size_t want) noexcept {
    if (!measuring_) return 0;
    if (options_.messages != 0) {
      want = static_cast<std::size_t>(
          std::min<std::uint64_t>(want, options_.messages > sent_ ? options_.messages - sent_ : 0));
    }
    sent_ += want;
    return want;
  }
  /// The opcode of every message and echo.
  proto::Opcode data_opcode() const noexcept { return data_header_value_.opcode; }
  /// The header of every data frame, made once by write_frame_header with a
  /// zero mask key (its last 4 bytes); padded to 16 bytes so that it is
  /// copied as one block.
  const std::array<std::byte, 16>& data_header() const noexcept { return data_header_; }
  std::size_t data_header_size() const noexcept { return data_header_size_; }
  /// The payload, into which each message's prefix is spliced before it is
  /// masked into the output.
  std::span<std::byte> message_scratch() noexcept { return message_; }
  void on_round_trip(Clock::duration rtt) noexcept {
    latency_.record(static_cast<std::uint64_t>(std::max<std::int64_t>(
        0, std::chrono::duration_cast<std::chrono::nanoseconds>(rtt).count())));
  }
  void on_echoes(std::size_t count, std::uint64_t bytes) {
    received_ += count;
    received_bytes_ += bytes;
    if (options_.messages != 0 && received_ >= options_.messages) stop_load();
  }
  void on_open();
  void on_drained();
  void on_finished();
  void on_closed() noexcept { --live_; }
  void on_failure(std::size_t id, const char* what, std::error_code ec);
  void start_next_connection();

private:
  static constexpr Clock::time_point never = Clock::time_point::max();

  void stop_load();
  void begin_closing();
  void progress(Clock::time_point now);
  void on_deadline();
  /// Fires the timers that are due; returns the epoll_wait timeout until the
  /// next one in ms (-1: none).
  int run_timers();
  void report(double seconds);

  BenchOptions options_;
  int epoll_ = -1;
  std::vector<Endpoint> endpoints_;
  proto::ClientHandshakeOptions handshake_;
  std::vector<std::byte> payload_;
  std::vector<std::byte> message_;
  proto::FrameHeader data_header_value_;
  std::array<std::byte, 16> data_header_{};
  std::size_t data_header_size_ = 0;
  std::vector<std::byte> read_buffer_;
  std::vector<std::unique_ptr<BenchConnection>> connections_;
  std::vector<BenchConnection*> read_later_;
  std::vector<BenchConnection*> reading_later_;
  std::size_t started_ = 0;
  std::size_t live_ = 0;  // started and not yet closed
  std::size_t opened_ = 0;
  std::size_t finished_ = 0;
  std::size_t failures_ = 0;
  bool measuring_ = false;
  bool stopped_ = false;
  bool closing_ = false;
  std::uint64_t sent_ = 0;
  std::uint64_t received_ = 0;
  std::uint64_t received_bytes_ = 0;
  std::uint64_t last_received_ = 0;
  Clock::time_point start_;
  Clock::time_point stop_;
  double cpu_start_ = 0;
  double cpu_stop_ = 0;
  Clock::time_point duration_at_ = never;  // end of the load (or of the idle hold)
  Clock::time_point progress_at_ = never;  // next progress line
  Clock::time_point deadline_at_ = never;  // connections still open then are torn down
  bool show_progress_ = false;
  LatencyHistogram latency_;
  std::string first_error_;
};

// --- BenchConnection -------------------------------------------------------------

BenchConnection::BenchConnection(Bench& bench, std::size_t id)
    : bench_(bench),
      id_(id),
      id_hex_(hex8(static_cast<std::uint32_t>(id))),
      rng_(0x9E3779B97F4A7C15ull * (id + 1)) {
  if (bench_.options().latency)
    sent_at_.resize(std::max<std::size_t>(1, bench.options().in_flight));
}

BenchConnection::~BenchConnection() {
  if (fd_ >= 0) ::close(fd_);
}

void BenchConnection::start() {
  started_ = true;
  connect_to(0, make_error_code(std::errc::address_not_available));
}

// Tries the resolved addresses in turn, as asio::async_connect does.
void BenchConnection::connect_to(std::size_t endpoint, std::error_code last) {
  const auto& endpoints = bench_.endpoints();
  for (; endpoint < endpoints.size(); ++endpoint) {
    close_socket();
    const Endpoint& to = endpoints[endpoint];
    fd_ = ::socket(to.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      last = errno_code();
      continue;
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = ::connect(fd_, reinterpret_cast<const sockaddr*>(&to.address), to.size);
    if (rc != 0 && errno != EINPROGRESS) {
      last = errno_code();
      continue;
    }
    if (auto ec = bench_.watch(fd_, *this)) {
      last = ec;
      continue;
    }
    endpoint_ = endpoint;
    connecting_ = true;
    if (rc == 0) on_connected();
    return;
  }
  fail("connect", last);
}

void BenchConnection::close_socket() noexcept {
  // Closing the descriptor also removes it from the epoll set.
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void BenchConnection::on_event(std::uint32_t events) {
  if (finished_) return;
  if (connecting_) {
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
    int error = 0;
    socklen_t size = sizeof error;
    if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &size) != 0) error = errno;
    if (error != 0) return connect_to(endpoint_ + 1, {error, std::system_category()});
    on_connected();
    // The request is sent; a response cannot have come yet, or it is read now.
  }
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) != 0) {
    // No further edge follows the end of the stream, so after a hangup a
    // short read does not mean that the reading is done.
    if ((events & (EPOLLRDHUP | EPOLLHUP)) != 0) hangup_ = true;
    on_readable();
    if (finished_) return;
  }
  if ((events & EPOLLOUT) != 0 && send_blocked_) {
    send_blocked_ = false;
    flush();
  }
}

void BenchConnection::on_connected() {
  connecting_ = false;
  key_ = proto::generate_key();
  std::string request = proto::build_client_request(bench_.handshake(), key_);
  std::memcpy(out_.prepare(request.size()), request.data(), request.size());
  out_.commit(request.size());
  flush();
}

void BenchConnection::on_readable() {
  auto buffer = bench_.read_buffer();
  // One recv drains the socket unless the buffer fills; after a few full
  // buffers the rest waits for the next loop turn, so one connection cannot
  // starve the others.
  constexpr int max_reads = 4;
  for (int round = 0; round < max_reads; ++round) {
    ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return fail(open_ ? "read" : "read handshake", errno_code());
    }
    if (n == 0) {
      if (closing_) return finish();
      return fail(open_ ? "server closed the TCP connection"
                        : "read handshake: the server closed the TCP connection");
    }
    auto size = static_cast<std::size_t>(n);
    if (open_) {
      consume(buffer.data(), size);
    } else {
      on_handshake_bytes(buffer.data(), size);
    }
    if (finished_) return;
    if (size < buffer.size() && !hangup_) break;
    if (round + 1 == max_reads) bench_.read_later(*this);
  }
  if (!open_) return;
  top_up();
  flush();
}

void BenchConnection::on_handshake_bytes(const std::byte* data, std::size_t n) {
  handshake_in_.append(reinterpret_cast<const char*>(data), n);
  proto::HttpResponse response;
  std::error_code ec;
  std::size_t used = proto::parse_http_response(handshake_in_, response, ec);
  if (ec) return fail("parse handshake response", ec);
  if (used == 0) return;
  proto::ClientHandshakeResult result;
  ec = proto::validate_server_response(response, key_, {}, result);
  if (ec) return fail("handshake", ec);
  if (!result.extensions.empty()) {
    return fail("handshake", make_error_code(duplex::error::unexpected_extension));
  }
  // Frames that came with the 101 answer go through the frame parser.
  std::string rest = handshake_in_.substr(used);
  handshake_in_.clear();
  handshake_in_.shrink_to_fit();
  open_ = true;
  if (!rest.empty()) consume(reinterpret_cast<std::byte*>(rest.data()), rest.size());
  if (finished_) return;
  bench_.on_open();
}

void BenchConnection::begin_load() {
  if (finished_) return;
  top_up();
  flush();
}

void BenchConnection::consume(std::byte* data, std::size_t n) {
  while (n != 0 && !finished_) {
    if (!in_frame_ && spill_size_ == 0 && !in_message_) {
      std::size_t used = consume_echoes(data, n);
      if (finished_) return;
      data += used;
      n -= used;
      if (n == 0) return;
    }
    if (!in_frame_) {
      std::error_code ec;
      std::size_t used;
      if (spill_size_ != 0) {
        std::size_t take = std::min(spill_.size() - spill_size_, n);
        std::memcpy(spill_.data() + spill_size_, data, take);
        std::size_t header =
            proto::parse_frame_header(std::span(spill_.data(), spill_size_ + take), frame_, ec);
        if (ec) return fail("frame header", ec);
        if (header == 0) {
          spill_size_ += take;
          data += take;
          n -= take;
          continue;
        }
        used = header - spill_size_;
        spill_size_ = 0;
      } else {
        used = proto::parse_frame_header(std::span<const std::byte>(data, n), frame_, ec);
        if (ec) return fail("frame header", ec);
        if (used == 0) {
          std::memcpy(spill_.data(), data, n);
          spill_size_ = n;
          return;
        }
      }
      data += used;
      n -= used;
      on_frame_header(frame_);
      if (finished_) return;
      if (frame_left_ == 0) {
        on_frame_end();
        continue;
      }
    }
    std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(frame_left_, n));
    on_payload(data, take);
    if (finished_) return;
    data += take;
    n -= take;
    frame_left_ -= take;
    if (frame_left_ == 0) on_frame_end();
  }
}

void BenchConnection::on_frame_header(const proto::FrameHeader& h) {
  in_frame_ = true;
  frame_left_ = h.payload_length;
  // RFC 6455 5.1: a server never masks; 5.2: no extension was negotiated.
  if (h.masked) return fail("echo", make_error_code(duplex::error::masked_server_frame));
  if (h.rsv1 || h.rsv2 || h.rsv3)
    return fail("echo", make_error_code(duplex::error::reserved_bits));
  if (proto::is_control(h.opcode)) {
    // RFC 6455 5.5: control frames are short and never fragmented.
    if (!h.fin || h.payload_length > proto::max_control_payload) {
      return fail("echo", make_error_code(duplex::error::control_too_long));
    }
    control_.clear();
    return;
  }
  auto expected = bench_.options().binary ? proto::Opcode::binary : proto::Opcode::text;
  if (h.opcode == proto::Opcode::continuation) {
    if (!in_message_) return fail("echo", make_error_code(duplex::error::unexpected_continuation));
  } else if (h.opcode != expected) {
    return fail("echo has the wrong message type");
  } else if (in_message_) {
    return fail("echo", make_error_code(duplex::error::expected_continuation));
  } else {
    if (closing_ || in_flight_ == 0) return fail("echo of a message that was not sent");
    in_message_ = true;
    message_offset_ = 0;
    set_prefix(next_receive_);
  }
  if (message_offset_ + h.payload_length > bench_.payload().size()) {
    return fail("echo is longer than the message sent");
  }
}

std::size_t BenchConnection::consume_echoes(const std::byte* data, std::size_t n) {
  const auto& payload = bench_.payload();
  const std::size_t size = payload.size();
  const proto::Opcode opcode = bench_.data_opcode();
  std::size_t at = 0;
  std::size_t count = 0;
  proto::FrameHeader h;
  std::error_code ec;
  while (count < in_flight_ && !closing_) {
    std::size_t used = proto::parse_frame_header(std::span(data + at, n - at), h, ec);
    // RFC 6455 5.1, 5.2: an echo is unmasked, final, without reserved bits.
    if (used == 0 || !h.fin || h.opcode != opcode || h.masked || h.rsv1 || h.rsv2 || h.rsv3 ||
        h.payload_length != size || n - at - used < size) {
      break;
    }
    const std::byte* echo = data + at + used;
    const std::uint64_t seq = next_receive_ + count;
    bool same;
    if (size >= 16) {
      std::uint64_t id_part;
      std::uint64_t seq_part;
      std::memcpy(&id_part, echo, 8);
      std::memcpy(&seq_part, echo + 8, 8);
      same = id_part == id_hex_ && seq_part == hex8(static_cast<std::uint32_t>(seq)) &&
             (size == 16 || std::memcmp(echo + 16, payload.data() + 16, size - 16) == 0);
    } else {
      set_prefix(seq);
      same = std::memcmp(echo, prefix_.data(), size) == 0;
    }
    if (!same) {
      on_echoes(count);
      fail("echo differs from the message sent");
      return at;
    }
    at += used + size;
    ++count;
  }
  if (count != 0) on_echoes(count);
  return at;
}

void BenchConnection::set_prefix(std::uint64_t seq) noexcept {
  std::uint64_t seq_hex = hex8(static_cast<std::uint32_t>(seq));
  std::memcpy(prefix_.data(), &id_hex_, 8);
  std::memcpy(prefix_.data() + 8, &seq_hex, 8);
}

proto::MaskKey BenchConnection::next_mask() noexcept {
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  auto key_bits = static_cast<std::uint32_t>(rng_);
  proto::MaskKey key;
  std::memcpy(key.data(), &key_bits, 4);
  return key;
}

void BenchConnection::on_payload(const std::byte* data, std::size_t n) {
  if (proto::is_control(frame_.opcode)) {
    control_.insert(control_.end(), data, data + n);
    return;
  }
  const auto& payload = bench_.payload();
  std::size_t offset = static_cast<std::size_t>(message_offset_);
  std::size_t head = std::min(prefix_.size(), payload.size());
  if (offset == 0 && n >= head) {
    // The usual case: the whole prefix in this read.
    if (std::memcmp(data, prefix_.data(), head) != 0 ||
        std::memcmp(data + head, payload.data() + head, n - head) != 0) {
      return fail("echo differs from the message sent");
    }
    message_offset_ += n;
    return;
  }
  std::size_t i = 0;
  for (; i < n && offset + i < prefix_.size() && offset + i < payload.size(); ++i) {
    if (data[i] != static_cast<std::byte>(prefix_[offset + i])) {
      return fail("echo differs from the message sent");
    }
  }
  if (i < n && std::memcmp(data + i, payload.data() + offset + i, n - i) != 0) {
    return fail("echo differs from the message sent");
  }
  message_offset_ += n;
}

void BenchConnection::on_frame_end() {
  in_frame_ = false;
  switch (frame_.opcode) {
    case proto::Opcode::ping:
      // RFC 6455 5.5.2: answer a ping with a pong carrying its payload.
      queue_frame(proto::Opcode::pong, control_);
      return;
    case proto::Opcode::pong: return;
    case proto::Opcode::close:
      if (!closing_) return fail("server sent a close frame");
      // RFC 6455 7.1.1: after both close frames the client may drop TCP.
      return finish();
    default: break;
  }
  if (frame_.fin) on_message_end();
}

void BenchConnection::on_message_end() {
  in_message_ = false;
  if (message_offset_ != bench_.payload().size())
    return fail("echo is shorter than the message sent");
  on_echoes(1);
}

void BenchConnection::on_echoes(std::size_t count) {
  if (!sent_at_.empty()) {
    Clock::time_point now = Clock::now();
    for (std::size_t i = 0; i < count; ++i) {
      bench_.on_round_trip(now - sent_at_[(next_receive_ + i) % sent_at_.size()]);
    }
  }
  next_receive_ += count;
  in_flight_ -= count;
  bench_.on_echoes(count, count * bench_.payload().size());
  if (in_flight_ == 0 && !bench_.measuring()) bench_.on_drained();
}

void BenchConnection::top_up() {
  if (closing_) return;
  std::size_t want = bench_.options().in_flight - in_flight_;
  if (want == 0) return;
  std::size_t count = bench_.take_sends(want);
  if (count == 0) return;
  std::span<std::byte> message = bench_.message_scratch();
  const std::size_t header_size = bench_.data_header_size();
  const std::size_t frame_size = header_size + message.size();
  const std::size_t head = std::min(prefix_.size(), message.size());
  // One reservation for the batch; 16 more bytes because the header is
  // copied as a 16-byte block.
  std::byte* at = out_.prepare(count * frame_size + 16);
  for (std::size_t i = 0; i < count; ++i, at += frame_size) {
    if (!sent_at_.empty()) sent_at_[next_send_ % sent_at_.size()] = Clock::now();
    // The message's prefix replaces the first bytes of the payload.
    std::array<char, 16> prefix;
    std::uint64_t seq_hex = hex8(static_cast<std::uint32_t>(next_send_));
    std::memcpy(prefix.data(), &id_hex_, 8);
    std::memcpy(prefix.data() + 8, &seq_hex, 8);
    const proto::MaskKey mask = next_mask();
    std::memcpy(at, bench_.data_header().data(), 16);
    std::memcpy(at + header_size - mask.size(), mask.data(), mask.size());
    std::span<std::byte> body(at + header_size, message.size());
    if (head == message.size()) {
      proto::copy_masked(body, std::as_bytes(std::span(prefix).first(head)), mask);
    } else {
      std::memcpy(message.data(), prefix.data(), head);
      proto::copy_masked(body, message, mask);
    }
    ++next_send_;
  }
  out_.commit(count * frame_size);
  in_flight_ += count;
}

void BenchConnection::queue_frame(proto::Opcode op, std::span<const std::byte> first,
                                  std::span<const std::byte> second) {
  proto::FrameHeader h;
  h.opcode = op;
  h.masked = true;
  h.mask = next_mask();
  h.payload_length = first.size() + second.size();
  // Header and masked payload go straight into the output buffer.
  std::byte* at = out_.prepare(proto::max_frame_header_size + first.size() + second.size());
  std::size_t header_size = proto::write_frame_header(
      h, std::span<std::byte, proto::max_frame_header_size>(at, proto::max_frame_header_size));
  std::byte* body = at + header_size;
  const std::size_t key_offset = proto::copy_masked(std::span(body, first.size()), first, h.mask);
  proto::copy_masked(std::span(body + first.size(), second.size()), second, h.mask, key_offset);
  out_.commit(header_size + first.size() + second.size());
}

void BenchConnection::flush() {
  if (finished_ || connecting_ || send_blocked_ || out_.empty()) return;
  auto data = out_.pending();
  ssize_t n;
  do {
    n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      send_blocked_ = true;
      return;
    }
    return fail(open_ ? "write" : "send handshake", errno_code());
  }
  out_.consume(static_cast<std::size_t>(n));
  // A short send means the socket's buffer is full: EPOLLOUT follows when
  // it drains, and frames made until then join the rest.
  if (!out_.empty()) send_blocked_ = true;
}

void BenchConnection::begin_close() {
  if (finished_ || closing_) return;
  closing_ = true;
  // RFC 6455 7.1.2: start the closing handshake with 1000 (normal closure).
  std::array<std::byte, 2> code{std::byte{0x03}, std::byte{0xE8}};
  queue_frame(proto::Opcode::close, code);
  flush();
}

void BenchConnection::fail(const char* what, std::error_code ec) {
  if (finished_) return;
  bench_.on_failure(id_, what, ec);
  finish();
}

void BenchConnection::finish() {
  if (finished_) return;
  finished_ = true;
  close_socket();
  if (started_) bench_.on_closed();
  bench_.on_finished();
}

void BenchConnection::abort() noexcept {
  if (finished_) return;
  finished_ = true;
  close_socket();
  if (started_) bench_.on_closed();
}

// --- Bench -------------------------------------------------------------------------

// Connections handshake this many at a time, so that 10,000 of them do not
// overflow the server's listen backlog.
constexpr std::size_t max_connecting = 256;

int Bench::run() {
  WsUrl url = parse_url(options_.url);
  {
    // Name resolution, once, before the load: Asio's resolver.
    asio::io_context ioc{1};
    tcp::resolver resolver(ioc);
    for (const auto& entry : resolver.resolve(url.host, url.port)) {
      Endpoint e;
      auto endpoint = entry.endpoint();
      std::memcpy(&e.address, endpoint.data(), endpoint.size());
      e.size = static_cast<socklen_t>(endpoint.size());
      endpoints_.push_back(e);
    }
  }
  epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_ < 0) throw std::system_error(errno_code(), "epoll_create1");
  bool default_port = url.port == "80";
  handshake_.host = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
  if (!default_port) handshake_.host += ":" + url.port;
  handshake_.target = url.target;
  show_progress_ = !options_.json && isatty(STDERR_FILENO) != 0;
  start_ = stop_ = Clock::now();

  connections_.reserve(options_.connections);
  read_later_.reserve(options_.connections);
  reading_later_.reserve(options_.connections);
  for (std::size_t i = 0; i < options_.connections; ++i) {
    connections_.push_back(std::make_unique<BenchConnection>(*this, i));
  }
  for (std::size_t i = 0; i < std::min(max_connecting, options_.connections); ++i) {
    start_next_connection();
  }
  std::array<epoll_event, 256> events;
  while (live_ != 0) {
    int timeout = run_timers();
    if (live_ == 0) break;
    if (!read_later_.empty()) timeout = 0;
    int n = ::epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno_code(), "epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      static_cast<BenchConnection*>(events[i].data.ptr)->on_event(events[i].events);
    }
    if (!read_later_.empty()) {
      std::swap(read_later_, reading_later_);
      for (BenchConnection* c : reading_later_) c->on_read_later();
      reading_later_.clear();
    }
  }
  double seconds = std::chrono::duration<double>(stop_ - start_).count();
  if (show_progress_) std::fprintf(stderr, "\r\033[K");
  report(seconds);
  return failures_ == 0 && opened_ == options_.connections ? 0 : 1;
}

int Bench::run_timers() {
  if (duration_at_ == never && progress_at_ == never && deadline_at_ == never) return -1;
  Clock::time_point now = Clock::now();
  if (now >= duration_at_) {
    duration_at_ = never;
    stop_load();
  }
  if (now >= progress_at_) progress(now);
  if (now >= deadline_at_) {
    deadline_at_ = never;
    on_deadline();
  }
  Clock::time_point next = std::min({duration_at_, progress_at_, deadline_at_});
  if (next == never) return -1;
  // Rounded up, so that the wait does not end just before the timer is due.
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(next - now).count();
  return static_cast<int>(std::clamp<std::int64_t>(ms, 0, 60'000));
}

void Bench::start_next_connection() {
  if (started_ >= connections_.size() || stopped_) return;
  ++live_;
  connections_[started_++]->start();
}

void Bench::on_open() {
  ++opened_;
  start_next_connection();
  if (opened_ < options_.connections) return;
  // On stderr even with --json: bench/run.py waits for this line to sample
  // the server's memory with every connection open.
  std::fprintf(stderr, "connections open: %zu\n", opened_);
  std::fflush(stderr);
  measuring_ = true;
  start_ = Clock::now();
  cpu_start_ = thread_cpu_seconds();
  if (options_.messages == 0 || options_.in_flight == 0) {
    duration_at_ = start_ + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(options_.duration));
  }
  if (show_progress_) progress_at_ = start_ + std::chrono::seconds(1);
  for (auto& c : connections_) c->begin_load();
  if (options_.in_flight == 0 && options_.messages != 0) stop_load();
}

void Bench::progress(Clock::time_point now) {
  progress_at_ = never;
  if (!measuring_) return;
  double t = std::chrono::duration<double>(now - start_).count();
  double rate = static_cast<double>(received_ - last_received_);
  last_received_ = received_;
  std::fprintf(stderr, "\r\033[K%6.1f s  %12.0f msg/s  %9.1f MB/s", t, rate,
               rate * static_cast<double>(options_.size) / 1e6);
  std::fflush(stderr);
  progress_at_ = now + std::chrono::seconds(1);
}

void Bench::stop_load() {
  if (stopped_) return;
  stopped_ = true;
  measuring_ = false;
  stop_ = Clock::now();
  cpu_stop_ = thread_cpu_seconds();
  duration_at_ = never;
  progress_at_ = never;
  // Echoes still in flight come back before the close handshake starts;
  // whatever is left after 3 s is torn down.
  deadline_at_ = stop_ + std::chrono::seconds(3);
  on_drained();
}

void Bench::on_deadline() {
  std::size_t stuck = 0;
  for (auto& c : connections_) {
    if (!c->finished()) ++stuck;
    c->abort();
  }
  if (stuck != 0 && first_error_.empty()) {
    first_error_ = std::to_string(stuck) + " connections did not finish closing within 3 s";
    ++failures_;
  }
}

void Bench::on_drained() {
  if (closing_ || !stopped_) return;
  for (auto& c : connections_) {
    if (!c->finished() && c->in_flight() != 0) return;
  }
  begin_closing();
}

void Bench::begin_closing() {
  closing_ = true;
  for (auto& c : connections_) c->begin_close();
  if (finished_ == connections_.size()) deadline_at_ = never;
}

void Bench::on_finished() {
  ++finished_;
  if (finished_ == connections_.size()) {
    deadline_at_ = never;
    if (!stopped_) {
      stopped_ = true;
      stop_ = Clock::now();
    }
  } else if (!stopped_ && opened_ + failures_ >= options_.connections && failures_ != 0) {
    stop_load();
  } else if (stopped_) {
    on_drained();
  }
}

void Bench::on_failure(std::size_t id, const char* what, std::error_code ec) {
  ++failures_;
  if (first_error_.empty()) {
    first_error_ = "connection " + std::to_string(id) + ": " + what;
    if (ec) first_error_ += ": " + ec.message();
  }
  if (!measuring_ && !stopped_) start_next_connection();
}

void Bench::report(double seconds) {
  Totals t;
  t.seconds = seconds;
  t.opened = opened_;
  t.messages = received_;
  t.cpu_seconds = std::max(0.0, cpu_stop_ - cpu_start_);
  t.failures = failures_;
  t.first_error = first_error_;
  print_report(options_, t, latency_);
}

// `--api`: the same load through the public client, duplex::MessageWebSocket
// (connect_async, send_async with its default task token, the message_received event), all
// sockets on one io_context run by this thread. It measures what an
// application gets from the API; the wire engine above measures the server.
class ApiBench {
public:
  explicit ApiBench(BenchOptions options)
      : options_(std::move(options)),
        payload_(make_payload(options_.size)),
        limit_(options_.messages == 0 ? UINT64_MAX : options_.messages),
        message_type_(options_.binary ? duplex::SocketMessageType::binary
                                      : duplex::SocketMessageType::utf8),
        whole_prefix_(options_.size >= 16) {}

  int run() {
    show_progress_ = !options_.json && isatty(STDERR_FILENO) != 0;
    start_ = stop_ = Clock::now();
    for (std::size_t i = 0; i < options_.connections; ++i) {
      auto c = std::make_unique<Client>(ioc_, i);
      c->ws.control().message_type(message_type_);
      c->ws.control().max_message_size(std::max<std::uint64_t>(options_.size, 1024));
      if (options_.latency) c->sent_at.resize(std::max<std::size_t>(1, options_.in_flight));
      c->message = payload_;
      std::memcpy(c->message.data(), c->prefix.data(), std::min<std::size_t>(8, options_.size));
      Client* raw = c.get();
      c->ws.message_received(
          [this, raw](duplex::MessageWebSocket&,
                      const duplex::MessageWebSocketMessageReceivedEventArgs& args) {
            on_message(*raw, args);
          });
      c->ws.closed(
          [this, raw](duplex::MessageWebSocket&, const duplex::WebSocketClosedEventArgs& a) {
            if (!raw->closing) fail(*raw, "closed by the server", a.error());
            on_closed(*raw);
          });
      clients_.push_back(std::move(c));
    }
    for (std::size_t i = 0; i < std::min<std::size_t>(256, clients_.size()); ++i) connect_next();
    asio::executor_work_guard<asio::io_context::executor_type> work(ioc_.get_executor());
    deadline_ = std::make_unique<asio::steady_timer>(ioc_);
    ioc_.run();
    double seconds = std::chrono::duration<double>(stop_ - start_).count();
    if (show_progress_) std::fprintf(stderr, "\r\033[K");
    Totals t;
    t.seconds = seconds;
    t.opened = opened_;
    t.messages = received_;
    t.cpu_seconds = std::max(0.0, cpu_stop_ - cpu_start_);
    t.failures = failures_;
    t.first_error = first_error_;
    print_report(options_, t, latency_);
    clients_.clear();  // sockets go before the io_context they run on
    return failures_ == 0 && opened_ == options_.connections ? 0 : 1;
  }

  [[nodiscard]] std::string failure() const {
    return first_error_.empty() ? "not every connection opened" : first_error_;
  }

private:
  struct Client {
    Client(asio::io_context& ioc, std::size_t i) : ws(ioc), id(i) {
      set_prefix_id(i, prefix);
      std::memcpy(&id_word, prefix.data(), 8);
    }
    duplex::MessageWebSocket ws;
    std::size_t id;
    std::uint64_t id_word = 0;  // the id's 8 prefix bytes, as a word
    std::uint64_t next_send = 0;
    std::uint64_t next_receive = 0;
    SequenceCounter send_sequence;     // next_send's prefix word
    SequenceCounter receive_sequence;  // next_receive's prefix word
    std::size_t in_flight = 0;
    bool closing = false;
    bool done = false;
    std::vector<Clock::time_point> sent_at;
    // The next message to send (send_async copies it): the id's 8 bytes are
    // written once; each send writes its sequence word over the next 8.
    std::vector<std::byte> message;
    std::array<char, 16> prefix{};  // id and sequence (short payloads only)
  };

  void connect_next() {
    if (started_ >= clients_.size() || stopped_) return;
    Client& c = *clients_[started_++];
    c.ws.connect_async(options_.url, [this, &c](std::error_code ec) {
      if (ec) {
        fail(c, "connect", ec);
        on_closed(c);
        connect_next();
        return;
      }
      ++opened_;
      connect_next();
      if (opened_ == options_.connections) begin_load();
    });
  }

  void begin_load() {
    std::fprintf(stderr, "connections open: %zu\n", opened_);
    std::fflush(stderr);
    measuring_ = true;
    start_ = Clock::now();
    cpu_start_ = thread_cpu_seconds();
    if (options_.messages == 0 || options_.in_flight == 0) {
      deadline_->expires_after(std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(options_.duration)));
      deadline_->async_wait([this](std::error_code ec) {
        if (!ec) stop_load();
      });
    }
    for (auto& c : clients_) send_more(*c);
    if (options_.in_flight == 0 && options_.messages != 0) stop_load();
  }

  [[nodiscard]] bool may_send(const Client& c) const noexcept {
    return measuring_ && !c.closing && c.in_flight < options_.in_flight && sent_ < limit_;
  }

  // Fills the connection's window (at the start of the load).
  void send_more(Client& c) {
    while (may_send(c)) send_one(c);
  }

  void send_one(Client& c) {
    ++sent_;
    const std::uint64_t seq = c.send_sequence.word();
    if (whole_prefix_) [[likely]] {
      std::memcpy(c.message.data() + 8, &seq, 8);
    } else {
      std::memcpy(c.prefix.data() + 8, &seq, 8);
      std::memcpy(c.message.data(), c.prefix.data(), c.message.size());
    }
    if (!c.sent_at.empty()) c.sent_at[c.next_send % c.sent_at.size()] = Clock::now();
    c.send_sequence.advance();
    ++c.next_send;
    ++c.in_flight;
    // The default token, as a handler would send: on the loop a send is done
    // at once and its task is ready (no operation object); one that waits
    // for room completes later through then().
    auto sent = c.ws.send_async(std::span<const std::byte>(c.message));
    if (sent.is_ready()) [[likely]] {
      if (auto r = sent.get_result(); r.ec && !c.closing) fail(c, "send", r.ec);
    } else {
      wait_sent(c, std::move(sent));
    }
  }

  // Out of line, as fail(): send_one stays small.
  [[gnu::noinline]] void wait_sent(Client& c, duplex::Task<void> sent) {
    sent.then([this, &c](std::error_code ec) {
      if (ec && !c.closing) fail(c, "send", ec);
    });
  }

  // True when `data` is the echo of message next_receive: its connection's id
  // and sequence word, then the payload's bytes, compared byte for byte.
  [[nodiscard]] bool is_expected_echo(const Client& c, std::span<const std::byte> data) const {
    if (data.size() != payload_.size()) return false;
    const std::uint64_t seq = c.receive_sequence.word();
    if (!whole_prefix_) [[unlikely]] {
      std::array<char, 16> prefix = c.prefix;
      std::memcpy(prefix.data() + 8, &seq, 8);
      return std::memcmp(data.data(), prefix.data(), data.size()) == 0;
    }
    std::uint64_t id_part = 0;
    std::uint64_t seq_part = 0;
    std::memcpy(&id_part, data.data(), 8);
    std::memcpy(&seq_part, data.data() + 8, 8);
    if (id_part != c.id_word || seq_part != seq) return false;
    return data.size() == 16 ||
           std::memcmp(data.data() + 16, payload_.data() + 16, data.size() - 16) == 0;
  }

  void on_message(Client& c, const duplex::MessageWebSocketMessageReceivedEventArgs& args) {
    if (c.done) [[unlikely]]
      return;
    if (args.message_type() != message_type_) [[unlikely]]
      return fail(c, "echo has the wrong message type");
    if (c.in_flight == 0) [[unlikely]]
      return fail(c, "echo of a message that was not sent");
    if (!is_expected_echo(c, args.data())) [[unlikely]]
      return fail(c, "echo differs from the message sent");
    if (!c.sent_at.empty()) {
      auto rtt = Clock::now() - c.sent_at[c.next_receive % c.sent_at.size()];
      latency_.record(static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(rtt).count()));
    }
    c.receive_sequence.advance();
    ++c.next_receive;
    --c.in_flight;
    ++received_;
    if (received_ >= limit_) [[unlikely]]
      stop_load();
    // Each echo frees one slot of the window: refill it.
    if (may_send(c)) [[likely]] {
      send_one(c);
    } else if (!measuring_ && c.in_flight == 0) {
      maybe_close();
    }
  }

  void stop_load() {
    if (stopped_) return;
    stopped_ = true;
    measuring_ = false;
    stop_ = Clock::now();
    cpu_stop_ = thread_cpu_seconds();
    deadline_->cancel();
    // Echoes in flight come back, then every socket closes; 3 s at most.
    deadline_->expires_after(std::chrono::seconds(3));
    deadline_->async_wait([this](std::error_code ec) {
      if (ec) return;
      if (first_error_.empty()) first_error_ = "connections did not finish closing within 3 s";
      ++failures_;
      ioc_.stop();
    });
    maybe_close();
  }

  void maybe_close() {
    if (!stopped_ || closing_) return;
    for (auto& c : clients_) {
      if (!c->done && c->in_flight != 0) return;
    }
    closing_ = true;
    std::size_t open = 0;
    for (auto& c : clients_) {
      if (c->done) continue;
      ++open;
      c->closing = true;
      c->ws.close(1000);
    }
    if (open == 0) finish();
  }

  void on_closed(Client& c) {
    if (c.done) return;
    c.done = true;
    ++done_;
    if (!stopped_ && opened_ + failures_ >= options_.connections && failures_ != 0) stop_load();
    if (stopped_) maybe_close();
    if (done_ == clients_.size()) finish();
  }

  void finish() {
    if (!stopped_) {
      stopped_ = true;
      stop_ = Clock::now();
    }
    deadline_->cancel();
    ioc_.stop();
  }

  [[gnu::cold, gnu::noinline]] void fail(Client& c, const char* what, std::error_code ec = {}) {
    ++failures_;
    if (first_error_.empty()) {
      first_error_ = "connection " + std::to_string(c.id) + ": " + what;
      if (ec) first_error_ += ": " + ec.message();
    }
    if (!c.closing) {
      c.closing = true;
      c.ws.close(1000);
    }
  }

  BenchOptions options_;
  std::vector<std::byte> payload_;
  std::uint64_t limit_;  // echoes to wait for: --messages, or no limit
  duplex::SocketMessageType message_type_;
  bool whole_prefix_;  // the payload holds the whole 16-byte prefix
  asio::io_context ioc_{1};
  std::unique_ptr<asio::steady_timer> deadline_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::size_t started_ = 0;
  std::size_t opened_ = 0;
  std::size_t done_ = 0;
  std::size_t failures_ = 0;
  std::uint64_t sent_ = 0;
  std::uint64_t received_ = 0;
  bool measuring_ = false;
  bool stopped_ = false;
  bool closing_ = false;
  bool show_progress_ = false;
  Clock::time_point start_;
  Clock::time_point stop_;
  double cpu_start_ = 0;
  double cpu_stop_ = 0;
  LatencyHistogram latency_;
  std::string first_error_;
};

}  // namespace

void add_bench_command(CLI::App& app) {
  auto options = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand(
      "bench", "Load-test a WebSocket echo server: pipelined messages, every echo checked");
  cmd->add_option("url", options->url,
                  "ws:// URL of an echo server (default: an embedded duplex echo server)");
  cmd->add_option("-c,--connections", options->connections, "connections to open")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}));
  cmd->add_option("-k,--in-flight", options->in_flight,
                  "messages in flight per connection (0: hold the connections idle)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{1'000'000}));
  cmd->add_option("-s,--size", options->size, "payload bytes per message")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{64} << 20));
  cmd->add_flag("-b,--binary", options->binary, "send binary messages (default: text)");
  cmd->add_option("-d,--duration", options->duration, "seconds of load (or of idle hold)")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 86400.0));
  cmd->add_option("-n,--messages", options->messages,
                  "stop after this many echoes instead of after --duration");
  cmd->add_flag("--latency", options->latency, "measure round-trip time percentiles");
  cmd->add_flag("--json", options->json, "print one JSON object instead of the table");
  cmd->add_flag(
      "--api", options->api,
      "drive duplex::MessageWebSocket (the public client API) instead of the wire engine");
  cmd->add_option("--fanout", options->fanout,
                  "fan-out mode: one publisher and N subscribers on a topic of a pubsub-server "
                  "(URL: its ws://HOST:PORT/PATH; default: one in this process)");
  cmd->add_option("--subscribe-url", options->subscribe_urls,
                  "fan-out mode: spread the subscribers over these URLs, e.g. other nodes of the "
                  "same topic (repeat it; default: the URL); the publisher stays on the URL");
  cmd->callback([options] {
    if (options->fanout != 0) {
      duplex::cli::FanoutOptions f;
      f.url = options->url;
      f.subscriber_urls = options->subscribe_urls;
      f.subscribers = options->fanout;
      f.size = std::max<std::size_t>(options->size, 16);
      f.duration = options->duration;
      f.window = std::max<std::size_t>(options->in_flight, 1);  // -k: publishes in flight
      f.json = options->json;
      if (duplex::cli::run_fanout_bench(f) != 0)
        throw std::runtime_error("bench: messages lost or reordered");
      return;
    }
    // Without URL: the server of `duplex echo-server`, one event loop on
    // another thread of this process.
    std::optional<duplex::cli::EchoServer> server;
    BenchOptions run = *options;
    if (run.url.empty()) {
      duplex::cli::EchoServerOptions server_options;
      server_options.threads = 1;
      server.emplace(server_options);
      run.url = server->url();
    }
    if (run.api) {
      ApiBench bench(run);
      if (bench.run() != 0) throw std::runtime_error("bench: " + bench.failure());
      return;
    }
    Bench bench(run);
    if (bench.run() != 0) throw std::runtime_error("bench: " + bench.failure());
  });
}
