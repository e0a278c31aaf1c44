// tools/duplex/bench.cpp: `duplex bench`, a pipelined WebSocket load generator.
//
// The load generator must not be the bottleneck (issue 5 asks for >= 2 M
// messages/s of 16 B from one core), so it drives the wire itself with duplex's
// protocol core rather than through the task-per-operation public API: the
// opening handshake is duplex's (build_client_request, parse_http_response,
// validate_server_response), frames are written with write_frame_header and
// masked with copy_masked, and echoes are parsed with parse_frame_header. One
// thread runs one io_context; each connection waits for readability, reads into
// one buffer shared by the loop, checks every echoed byte as it streams past
// (no reassembly), tops its window back up to K messages and sends them in one
// write (corking).
#include "bench.hpp"
#include "bench_fanout.hpp"
#include "echo_service.hpp"

#include <duplex/error.hpp>
#include <duplex/message_websocket.hpp>
#include <duplex/protocol/frame.hpp>
#include <duplex/protocol/handshake.hpp>

#include <CLI/CLI.hpp>
#include <asio.hpp>

#include <sys/resource.h>
#include <unistd.h>
#include <algorithm>
#include <array>
#include <bit>
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
std::uint64_t hex8(std::uint32_t value) noexcept {
  std::uint64_t x = value;
  x = (x | (x << 16)) & 0x0000FFFF0000FFFFull;
  x = (x | (x << 8)) & 0x00FF00FF00FF00FFull;
  x = (x | (x << 4)) & 0x0F0F0F0F0F0F0F0Full;  // one nibble per byte
  std::uint64_t letters = ((x + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
  return x + 0x3030303030303030ull + letters * ('a' - '0' - 10);
}

void make_prefix(std::size_t id, std::uint64_t seq, std::array<char, 16>& out) noexcept {
  std::uint64_t a = hex8(static_cast<std::uint32_t>(id));
  std::uint64_t b = hex8(static_cast<std::uint32_t>(seq));
  std::memcpy(out.data(), &a, 8);
  std::memcpy(out.data() + 8, &b, 8);
}

// The payload: letters (valid UTF-8 for text), the prefix spliced over the start.
std::vector<std::byte> make_payload(std::size_t size) {
  std::vector<std::byte> payload(size);
  for (std::size_t i = 0; i < size; ++i) {
    payload[i] = static_cast<std::byte>('a' + static_cast<int>(i % 26));
  }
  return payload;
}

class Bench;

// One client connection: handshake, then a window of K messages in flight.
class BenchConnection {
public:
  BenchConnection(Bench& bench, asio::io_context& ioc, std::size_t id);
  void start(const tcp::resolver::results_type& endpoints);
  void begin_load();
  void begin_close();
  void abort() noexcept;
  [[nodiscard]] std::size_t in_flight() const noexcept { return in_flight_; }
  [[nodiscard]] bool finished() const noexcept { return finished_; }

private:
  void on_connected(std::error_code ec);
  void read_handshake();
  void on_handshake_bytes(std::size_t n);
  void wait_readable();
  void on_readable(std::error_code ec);
  void consume(std::byte* data, std::size_t n);
  void on_frame_header(const proto::FrameHeader& h);
  void on_payload(const std::byte* data, std::size_t n);
  void on_frame_end();
  void on_message_end();
  void top_up();
  /// Queues one masked frame whose payload is `first` then `second`, masked
  /// as it is copied (a message's prefix spliced before the shared payload).
  void queue_frame(proto::Opcode op, std::span<const std::byte> first,
                   std::span<const std::byte> second = {});
  void flush();
  void fail(const char* what, std::error_code ec = {});
  void finish();
  void set_prefix(std::uint64_t seq) noexcept;

  Bench& bench_;
  tcp::socket socket_;
  std::size_t id_;
  std::uint64_t rng_;
  // Handshake.
  std::string key_;
  std::string handshake_in_;
  // Sending: frames queued while a write is in flight leave together next.
  std::vector<std::byte> out_;
  std::vector<std::byte> writing_;
  bool write_in_flight_ = false;
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
  bool open_ = false;
  bool closing_ = false;
  bool finished_ = false;
};

class Bench {
public:
  explicit Bench(BenchOptions options)
      : options_(std::move(options)), payload_(make_payload(options_.size)) {
    read_buffer_.resize(256 * 1024);
  }

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
  bool measuring() const noexcept { return measuring_; }
  bool may_send() noexcept {
    if (!measuring_) return false;
    if (options_.messages != 0 && sent_ >= options_.messages) return false;
    ++sent_;
    return true;
  }
  void on_echo(std::size_t bytes, std::optional<Clock::duration> rtt) noexcept {
    ++received_;
    received_bytes_ += bytes;
    if (rtt)
      latency_.record(static_cast<std::uint64_t>(std::max<std::int64_t>(
          0, std::chrono::duration_cast<std::chrono::nanoseconds>(*rtt).count())));
    if (options_.messages != 0 && received_ >= options_.messages) stop_load();
  }
  void on_open();
  void on_drained();
  void on_finished();
  void on_failure(std::size_t id, const char* what, std::error_code ec);
  void start_next_connection();

private:
  void stop_load();
  void begin_closing();
  void progress();
  void report(double seconds);

  BenchOptions options_;
  asio::io_context ioc_{1};
  tcp::resolver::results_type endpoints_;
  proto::ClientHandshakeOptions handshake_;
  std::vector<std::byte> payload_;
  std::vector<std::byte> read_buffer_;
  std::vector<std::unique_ptr<BenchConnection>> connections_;
  std::size_t started_ = 0;
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
  asio::steady_timer duration_timer_{ioc_};
  asio::steady_timer progress_timer_{ioc_};
  asio::steady_timer deadline_timer_{ioc_};
  bool show_progress_ = false;
  LatencyHistogram latency_;
  std::string first_error_;
};

// --- BenchConnection -------------------------------------------------------------

BenchConnection::BenchConnection(Bench& bench, asio::io_context& ioc, std::size_t id)
    : bench_(bench), socket_(ioc), id_(id), rng_(0x9E3779B97F4A7C15ull * (id + 1)) {
  if (bench_.options().latency)
    sent_at_.resize(std::max<std::size_t>(1, bench.options().in_flight));
}

void BenchConnection::start(const tcp::resolver::results_type& endpoints) {
  asio::async_connect(socket_, endpoints,
                      [this](std::error_code ec, const tcp::endpoint&) { on_connected(ec); });
}

void BenchConnection::on_connected(std::error_code ec) {
  if (ec) return fail("connect", ec);
  socket_.set_option(tcp::no_delay(true), ec);
  key_ = proto::generate_key();
  auto request =
      std::make_shared<std::string>(proto::build_client_request(bench_.handshake(), key_));
  asio::async_write(socket_, asio::buffer(*request),
                    [this, request](std::error_code wec, std::size_t) {
                      if (wec) return fail("send handshake", wec);
                      read_handshake();
                    });
}

void BenchConnection::read_handshake() {
  socket_.async_wait(tcp::socket::wait_read, [this](std::error_code ec) {
    if (ec) return fail("read handshake", ec);
    auto buffer = bench_.read_buffer();
    std::size_t n = socket_.read_some(asio::buffer(buffer.data(), buffer.size()), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) return read_handshake();
    if (ec) return fail("read handshake", ec);
    on_handshake_bytes(n);
  });
}

void BenchConnection::on_handshake_bytes(std::size_t n) {
  auto buffer = bench_.read_buffer();
  handshake_in_.append(reinterpret_cast<const char*>(buffer.data()), n);
  proto::HttpResponse response;
  std::error_code ec;
  std::size_t used = proto::parse_http_response(handshake_in_, response, ec);
  if (ec) return fail("parse handshake response", ec);
  if (used == 0) return read_handshake();
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
  wait_readable();
}

void BenchConnection::wait_readable() {
  socket_.async_wait(tcp::socket::wait_read, [this](std::error_code ec) { on_readable(ec); });
}

void BenchConnection::on_readable(std::error_code ec) {
  if (finished_) return;
  if (ec) return fail("wait", ec);
  auto buffer = bench_.read_buffer();
  // Drain what the kernel holds, a buffer at a time, then answer in one write.
  for (int round = 0; round < 4; ++round) {
    std::size_t n = socket_.read_some(asio::buffer(buffer.data(), buffer.size()), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) break;
    if (ec == asio::error::eof) {
      if (closing_) return finish();
      return fail("server closed the TCP connection", ec);
    }
    if (ec) return fail("read", ec);
    consume(buffer.data(), n);
    if (finished_) return;
    if (n < buffer.size()) break;
  }
  top_up();
  flush();
  wait_readable();
}

void BenchConnection::consume(std::byte* data, std::size_t n) {
  while (n != 0 && !finished_) {
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

void BenchConnection::set_prefix(std::uint64_t seq) noexcept {
  make_prefix(id_, seq, prefix_);
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
  std::optional<Clock::duration> rtt;
  if (!sent_at_.empty()) rtt = Clock::now() - sent_at_[next_receive_ % sent_at_.size()];
  ++next_receive_;
  --in_flight_;
  bench_.on_echo(bench_.payload().size(), rtt);
  if (in_flight_ == 0 && !bench_.measuring()) bench_.on_drained();
}

void BenchConnection::top_up() {
  const auto& payload = bench_.payload();
  auto op = bench_.options().binary ? proto::Opcode::binary : proto::Opcode::text;
  while (in_flight_ < bench_.options().in_flight && !closing_ && bench_.may_send()) {
    if (!sent_at_.empty()) sent_at_[next_send_ % sent_at_.size()] = Clock::now();
    set_prefix(next_send_);
    // The message's prefix replaces the first bytes of the shared payload.
    const std::size_t head = std::min(prefix_.size(), payload.size());
    queue_frame(op, std::span(reinterpret_cast<const std::byte*>(prefix_.data()), head),
                std::span(payload).subspan(head));
    ++next_send_;
    ++in_flight_;
  }
}

void BenchConnection::queue_frame(proto::Opcode op, std::span<const std::byte> first,
                                  std::span<const std::byte> second) {
  proto::FrameHeader h;
  h.opcode = op;
  h.masked = true;
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  std::uint32_t key_bits = static_cast<std::uint32_t>(rng_);
  std::memcpy(h.mask.data(), &key_bits, 4);
  h.payload_length = first.size() + second.size();
  std::array<std::byte, proto::max_frame_header_size> header;
  std::size_t header_size = proto::write_frame_header(h, header);
  std::size_t at = out_.size();
  out_.resize(at + header_size + first.size() + second.size());
  std::memcpy(out_.data() + at, header.data(), header_size);
  std::byte* body = out_.data() + at + header_size;
  const std::size_t key_offset = proto::copy_masked(std::span(body, first.size()), first, h.mask);
  proto::copy_masked(std::span(body + first.size(), second.size()), second, h.mask, key_offset);
}

void BenchConnection::flush() {
  if (write_in_flight_ || out_.empty() || finished_) return;
  std::swap(out_, writing_);
  write_in_flight_ = true;
  asio::async_write(socket_, asio::buffer(writing_), [this](std::error_code ec, std::size_t) {
    write_in_flight_ = false;
    writing_.clear();
    if (finished_) return;
    if (ec) return fail("write", ec);
    flush();
  });
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
  std::error_code ignored;
  socket_.close(ignored);
  bench_.on_finished();
}

void BenchConnection::abort() noexcept {
  if (finished_) return;
  finished_ = true;
  std::error_code ignored;
  socket_.close(ignored);
}

// --- Bench -------------------------------------------------------------------------

// Connections handshake this many at a time, so that 10,000 of them do not
// overflow the server's listen backlog.
constexpr std::size_t max_connecting = 256;

int Bench::run() {
  WsUrl url = parse_url(options_.url);
  tcp::resolver resolver(ioc_);
  endpoints_ = resolver.resolve(url.host, url.port);
  bool default_port = url.port == "80";
  handshake_.host = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
  if (!default_port) handshake_.host += ":" + url.port;
  handshake_.target = url.target;
  show_progress_ = !options_.json && isatty(STDERR_FILENO) != 0;
  start_ = stop_ = Clock::now();

  connections_.reserve(options_.connections);
  for (std::size_t i = 0; i < options_.connections; ++i) {
    connections_.push_back(std::make_unique<BenchConnection>(*this, ioc_, i));
  }
  for (std::size_t i = 0; i < std::min(max_connecting, options_.connections); ++i) {
    start_next_connection();
  }
  ioc_.run();
  double seconds = std::chrono::duration<double>(stop_ - start_).count();
  if (show_progress_) std::fprintf(stderr, "\r\033[K");
  report(seconds);
  return failures_ == 0 && opened_ == options_.connections ? 0 : 1;
}

void Bench::start_next_connection() {
  if (started_ >= connections_.size() || stopped_) return;
  connections_[started_++]->start(endpoints_);
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
    duration_timer_.expires_after(std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(options_.duration)));
    duration_timer_.async_wait([this](std::error_code ec) {
      if (!ec) stop_load();
    });
  }
  if (show_progress_) progress();
  for (auto& c : connections_) c->begin_load();
  if (options_.in_flight == 0 && options_.messages != 0) stop_load();
}

void Bench::progress() {
  progress_timer_.expires_after(std::chrono::seconds(1));
  progress_timer_.async_wait([this](std::error_code ec) {
    if (ec || !measuring_) return;
    double t = std::chrono::duration<double>(Clock::now() - start_).count();
    double rate = static_cast<double>(received_ - last_received_);
    last_received_ = received_;
    std::fprintf(stderr, "\r\033[K%6.1f s  %12.0f msg/s  %9.1f MB/s", t, rate,
                 rate * static_cast<double>(options_.size) / 1e6);
    std::fflush(stderr);
    progress();
  });
}

void Bench::stop_load() {
  if (stopped_) return;
  stopped_ = true;
  measuring_ = false;
  stop_ = Clock::now();
  cpu_stop_ = thread_cpu_seconds();
  duration_timer_.cancel();
  progress_timer_.cancel();
  // Echoes still in flight come back before the close handshake starts;
  // whatever is left after 3 s is torn down.
  deadline_timer_.expires_after(std::chrono::seconds(3));
  deadline_timer_.async_wait([this](std::error_code ec) {
    if (ec) return;
    std::size_t stuck = 0;
    for (auto& c : connections_) {
      if (!c->finished()) ++stuck;
      c->abort();
    }
    if (stuck != 0 && first_error_.empty()) {
      first_error_ = std::to_string(stuck) + " connections did not finish closing within 3 s";
      ++failures_;
    }
  });
  on_drained();
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
  if (finished_ == connections_.size()) deadline_timer_.cancel();
}

void Bench::on_finished() {
  ++finished_;
  if (finished_ == connections_.size()) {
    deadline_timer_.cancel();
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
// (connect_async, send_async with a callback, the message_received event), all
// sockets on one io_context run by this thread. It measures what an
// application gets from the API; the wire engine above measures the server.
class ApiBench {
public:
  explicit ApiBench(BenchOptions options)
      : options_(std::move(options)), payload_(make_payload(options_.size)) {}

  int run() {
    show_progress_ = !options_.json && isatty(STDERR_FILENO) != 0;
    start_ = stop_ = Clock::now();
    for (std::size_t i = 0; i < options_.connections; ++i) {
      auto c = std::make_unique<Client>(ioc_, i);
      c->ws.control().message_type(options_.binary ? duplex::SocketMessageType::binary
                                                   : duplex::SocketMessageType::utf8);
      c->ws.control().max_message_size(std::max<std::uint64_t>(options_.size, 1024));
      if (options_.latency) c->sent_at.resize(std::max<std::size_t>(1, options_.in_flight));
      c->message = payload_;
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
    Client(asio::io_context& ioc, std::size_t i) : ws(ioc), id(i) {}
    duplex::MessageWebSocket ws;
    std::size_t id;
    std::uint64_t next_send = 0;
    std::uint64_t next_receive = 0;
    std::size_t in_flight = 0;
    bool closing = false;
    bool done = false;
    std::vector<Clock::time_point> sent_at;
    std::vector<std::byte> message;  // the next message to send (send_async copies it)
    std::array<char, 16> prefix{};
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

  void send_more(Client& c) {
    while (measuring_ && !c.closing && c.in_flight < options_.in_flight &&
           (options_.messages == 0 || sent_ < options_.messages)) {
      ++sent_;
      make_prefix(c.id, c.next_send, c.prefix);
      std::size_t head = std::min(c.prefix.size(), c.message.size());
      std::memcpy(c.message.data(), c.prefix.data(), head);
      if (!c.sent_at.empty()) c.sent_at[c.next_send % c.sent_at.size()] = Clock::now();
      ++c.next_send;
      ++c.in_flight;
      c.ws.send_async(std::span<const std::byte>(c.message), [this, &c](std::error_code ec) {
        if (ec && !c.closing) fail(c, "send", ec);
      });
    }
  }

  void on_message(Client& c, const duplex::MessageWebSocketMessageReceivedEventArgs& args) {
    if (c.done) return;
    auto expected =
        options_.binary ? duplex::SocketMessageType::binary : duplex::SocketMessageType::utf8;
    if (args.message_type() != expected) return fail(c, "echo has the wrong message type");
    if (c.in_flight == 0) return fail(c, "echo of a message that was not sent");
    make_prefix(c.id, c.next_receive, c.prefix);
    auto data = args.data();
    std::size_t head = std::min(c.prefix.size(), payload_.size());
    if (data.size() != payload_.size() || std::memcmp(data.data(), c.prefix.data(), head) != 0 ||
        std::memcmp(data.data() + head, payload_.data() + head, data.size() - head) != 0) {
      return fail(c, "echo differs from the message sent");
    }
    if (!c.sent_at.empty()) {
      auto rtt = Clock::now() - c.sent_at[c.next_receive % c.sent_at.size()];
      latency_.record(static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(rtt).count()));
    }
    ++c.next_receive;
    --c.in_flight;
    ++received_;
    if (options_.messages != 0 && received_ >= options_.messages) stop_load();
    if (measuring_) {
      send_more(c);
    } else if (c.in_flight == 0) {
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

  void fail(Client& c, const char* what, std::error_code ec = {}) {
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
