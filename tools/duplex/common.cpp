// Helpers shared by the duplex sub-commands.
#include "common.hpp"

#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <stdexcept>

#include <unistd.h>

namespace duplex::cli {

std::string_view explain(WebErrorStatus status) noexcept {
  switch (status) {
    case WebErrorStatus::certificate_common_name_is_incorrect:
      return "the server's certificate is not for this host name";
    case WebErrorStatus::certificate_expired:
      return "the server's certificate has expired or is not valid yet";
    case WebErrorStatus::certificate_contains_errors:
      return "the server's certificate contains errors";
    case WebErrorStatus::certificate_revoked: return "the server's certificate was revoked";
    case WebErrorStatus::certificate_is_invalid:
      return "the server's certificate is not trusted (unknown CA, self-signed, or rejected); "
             "see --ca and --ignore-certificate-errors";
    case WebErrorStatus::server_unreachable: return "the server cannot be reached";
    case WebErrorStatus::timeout: return "the operation did not complete in time";
    case WebErrorStatus::error_http_invalid_server_response:
      return "the server's answer to the opening handshake is not a valid WebSocket answer";
    case WebErrorStatus::connection_aborted:
      return "the connection was aborted (protocol error or dead peer)";
    case WebErrorStatus::connection_reset: return "the peer reset the connection";
    case WebErrorStatus::disconnected: return "the connection is closed";
    case WebErrorStatus::cannot_connect:
      return "no address of the host accepted a TCP connection (is the server running?)";
    case WebErrorStatus::host_name_not_resolved: return "the host name could not be resolved";
    case WebErrorStatus::operation_canceled: return "the operation was cancelled";
    case WebErrorStatus::unexpected_status_code:
      return "the server answered the opening handshake with an unexpected HTTP status";
    case WebErrorStatus::unexpected_client_error:
    case WebErrorStatus::bad_request:
    case WebErrorStatus::unauthorized:
    case WebErrorStatus::payment_required:
    case WebErrorStatus::forbidden:
    case WebErrorStatus::not_found:
    case WebErrorStatus::method_not_allowed:
    case WebErrorStatus::not_acceptable:
    case WebErrorStatus::proxy_authentication_required:
    case WebErrorStatus::request_timeout:
    case WebErrorStatus::conflict:
    case WebErrorStatus::gone:
    case WebErrorStatus::length_required:
    case WebErrorStatus::precondition_failed:
    case WebErrorStatus::request_entity_too_large:
    case WebErrorStatus::request_uri_too_long:
    case WebErrorStatus::unsupported_media_type:
    case WebErrorStatus::requested_range_not_satisfiable:
    case WebErrorStatus::expectation_failed:
      return "the server refused the opening handshake (HTTP client error status)";
    case WebErrorStatus::unexpected_server_error:
    case WebErrorStatus::internal_server_error:
    case WebErrorStatus::not_implemented:
    case WebErrorStatus::bad_gateway:
    case WebErrorStatus::service_unavailable:
    case WebErrorStatus::gateway_timeout:
    case WebErrorStatus::http_version_not_supported:
      return "the server failed or refused the opening handshake (HTTP server error status)";
    case WebErrorStatus::multiple_choices:
    case WebErrorStatus::moved_permanently:
    case WebErrorStatus::found:
    case WebErrorStatus::see_other:
    case WebErrorStatus::not_modified:
    case WebErrorStatus::use_proxy:
    case WebErrorStatus::temporary_redirect:
      return "the server answered the opening handshake with a redirection (not followed)";
    case WebErrorStatus::unknown: break;
  }
  return "the operation failed";
}

WebErrorStatus status_of(std::error_code ec) noexcept {
  WebErrorStatus status = get_status(ec);
  // Standalone Asio reports socket errors in its own "asio.system" category
  // (errno values) that get_status() does not know yet; read them as errno.
  if (status == WebErrorStatus::unknown && ec &&
      std::string_view(ec.category().name()) == "asio.system") {
    status = get_status(std::error_code(ec.value(), std::system_category()));
  }
  return status;
}

int exit_status_of(std::error_code ec) noexcept {
  const WebErrorStatus status = status_of(ec);
  if (ec == condition::timed_out || ec == error::dead_peer || status == WebErrorStatus::timeout)
    return exit_timeout;
  // Certificate verification results, OpenSSL's and Asio's TLS stream errors.
  const std::string_view category = ec.category().name();
  if (category == x509_category().name() || category.starts_with("asio.ssl") ||
      ec == error::certificate_rejected ||
      (static_cast<int>(status) >= 1 && static_cast<int>(status) <= 5))
    return exit_tls;
  if (ec == condition::handshake_failed) return exit_handshake_refused;
  return exit_failure;
}

std::string describe_error(std::error_code ec) {
  const WebErrorStatus status = status_of(ec);
  std::string out(to_string(status));
  out += ": ";
  out += explain(status);
  out += " (";
  out += ec.category().name();
  out += ": ";
  out += ec.message();
  out += ")";
  return out;
}

int report_error(std::string_view context, std::error_code ec, bool json) {
  std::lock_guard lock(output_mutex());
  if (json) {
    const WebErrorStatus status = status_of(ec);
    std::cout << "{\"event\":\"error\",\"context\":" << json_string(context)
              << ",\"status\":" << json_string(to_string(status))
              << ",\"status_value\":" << static_cast<int>(status)
              << ",\"explanation\":" << json_string(explain(status))
              << ",\"category\":" << json_string(ec.category().name())
              << ",\"value\":" << ec.value() << ",\"message\":" << json_string(ec.message()) << "}"
              << std::endl;
  } else {
    std::cerr << "duplex: " << context << " failed: " << describe_error(ec) << std::endl;
  }
  return exit_failure;
}

std::string to_hex(std::span<const std::byte> bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (std::byte b : bytes) {
    const auto v = std::to_integer<unsigned>(b);
    out.push_back(digits[v >> 4]);
    out.push_back(digits[v & 0xF]);
  }
  return out;
}

namespace {

// Length of the valid UTF-8 sequence at text[i], 0 if invalid (RFC 3629 4).
std::size_t utf8_length_at(std::string_view text, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(text[i + k]); };
  const unsigned char b0 = b(0);
  if (b0 < 0x80) return 1;
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (text.size() - i < n) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    const unsigned char min = k == 1 ? lo : 0x80;
    const unsigned char max = k == 1 ? hi : 0xBF;
    if (b(k) < min || b(k) > max) return 0;
  }
  return n;
}

}  // namespace

std::string json_string(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out.push_back('"');
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      const std::size_t n = utf8_length_at(text, i);
      if (n == 0) {
        out += "\\ufffd";
        ++i;
      } else {
        out.append(text.substr(i, n));
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out.push_back('"');
  return out;
}

std::string format_bytes(std::uint64_t bytes) {
  char buf[32];
  const double b = static_cast<double>(bytes);
  if (bytes < 1024) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  } else if (bytes < (1u << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  } else if (bytes < (std::uint64_t{1} << 30)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1024.0 * 1024.0));
  } else {
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024.0 * 1024.0));
  }
  return buf;
}

std::chrono::milliseconds seconds_option(double seconds, std::string_view option) {
  // Timeouts are durations: zero or negative would mean "already expired".
  if (!std::isfinite(seconds) || seconds <= 0 || seconds > 1e9) {
    throw std::invalid_argument(std::string(option) + " must be a number of seconds > 0");
  }
  const auto ms = static_cast<std::int64_t>(std::ceil(seconds * 1000.0));
  return std::chrono::milliseconds(ms);
}

bool stderr_is_terminal() noexcept {
  return ::isatty(STDERR_FILENO) == 1;
}

std::string make_url(bool tls, std::string_view host, std::uint16_t port) {
  std::string out = tls ? "wss://" : "ws://";
  const bool ipv6 = host.find(':') != std::string_view::npos;
  if (ipv6) out.push_back('[');
  out += host;
  if (ipv6) out.push_back(']');
  out += ':';
  out += std::to_string(port);
  out += '/';
  return out;
}

Progress::Progress(std::string label, std::uint64_t total)
    : label_(std::move(label)),
      total_(total),
      enabled_(stderr_is_terminal()),
      start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() {
  finish();
}

void Progress::update(std::uint64_t done) {
  std::lock_guard lock(mutex_);
  if (!enabled_ || finished_) return;
  const auto now = std::chrono::steady_clock::now();
  // Redraw at most 10 times a second: a terminal is slow next to loopback.
  if (now - last_draw_ < std::chrono::milliseconds(100) && done < total_) return;
  last_draw_ = now;
  draw_locked(done);
}

void Progress::draw_locked(std::uint64_t done) {
  constexpr int width = 30;
  const double fraction = total_ ? static_cast<double>(done) / static_cast<double>(total_) : 1.0;
  const int filled = static_cast<int>(fraction * width);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0.0;
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(width, '.');
  std::fprintf(stderr, "\r%s [%s] %3d%% %s/s ", label_.c_str(), bar.c_str(),
               static_cast<int>(fraction * 100),
               format_bytes(static_cast<std::uint64_t>(rate)).c_str());
  std::fflush(stderr);
}

void Progress::finish() {
  std::lock_guard lock(mutex_);
  if (!enabled_ || finished_) return;
  finished_ = true;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
}

std::mutex& output_mutex() {
  static std::mutex m;
  return m;
}

void block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int wait_for_signal(std::chrono::milliseconds timeout) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  ts.tv_nsec = static_cast<long>((timeout.count() % 1000) * 1'000'000);
  for (;;) {
    const int sig = sigtimedwait(&set, nullptr, &ts);
    if (sig > 0) return sig;
    if (errno == EINTR) continue;
    return 0;
  }
}

}  // namespace duplex::cli
