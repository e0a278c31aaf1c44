// common.hpp: helpers shared by the duplex sub-commands: error reports with the
// WebErrorStatus name, hex and JSON formatting, terminal progress, signals.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include <duplex/error.hpp>

namespace CLI {
class App;
}

namespace duplex::cli {

/// Exit statuses of every sub-command.
inline constexpr int exit_ok = 0;
inline constexpr int exit_failure = 1;  ///< the network operation failed
inline constexpr int exit_usage = 2;    ///< bad arguments
/// `duplex connect` only: the kind of failure, so that scripts can tell them apart.
inline constexpr int exit_handshake_refused = 3;  ///< HTTP status other than 101, bad answer
inline constexpr int exit_tls = 4;                ///< TLS handshake or certificate failure
inline constexpr int exit_timeout = 5;            ///< connect, close or keep-alive timeout
inline constexpr int exit_closed_with_error = 6;  ///< closed with a code other than 1000/1001

/// The exit status of a failed connection: exit_timeout, exit_tls,
/// exit_handshake_refused, or exit_failure for anything else.
int exit_status_of(std::error_code ec) noexcept;

/// Each sub-command adds itself to `app`; its callback stores its exit status.
void add_demo_command(CLI::App& app, int& exit_status);
void add_echo_server_command(CLI::App& app, int& exit_status);
void add_connect_command(CLI::App& app, int& exit_status);

/// One sentence saying what a WebErrorStatus means for the user.
std::string_view explain(WebErrorStatus status) noexcept;

/// get_status(ec), also for the socket errors of standalone Asio's own system
/// category.
WebErrorStatus status_of(std::error_code ec) noexcept;

/// "STATUS_NAME: explanation (category: message)", e.g.
/// "cannot_connect: no address of the host accepted a TCP connection
/// (system: Connection refused)".
std::string describe_error(std::error_code ec);

/// Prints `context` and describe_error(ec) on stderr, or one JSON object on
/// stdout with --json. Thread-safe. Returns exit_failure.
int report_error(std::string_view context, std::error_code ec, bool json);

/// Lowercase hex, two digits per byte.
std::string to_hex(std::span<const std::byte> bytes);

/// `text` as a JSON string literal (quotes included). Bytes that are not valid
/// UTF-8 become U+FFFD, so the output is always valid JSON.
std::string json_string(std::string_view text);

/// "12.3 MiB", "512 B".
std::string format_bytes(std::uint64_t bytes);

/// Seconds given on the command line as a duration; std::invalid_argument
/// naming `option` if not finite and > 0.
std::chrono::milliseconds seconds_option(double seconds, std::string_view option);

/// True when stderr is a terminal (progress is drawn only then).
bool stderr_is_terminal() noexcept;

/// "ws://HOST:PORT/", with IPv6 hosts in brackets.
std::string make_url(bool tls, std::string_view host, std::uint16_t port);

/// A one-line progress bar on stderr, redrawn at most 10 times a second; drawn
/// only when stderr is a terminal. Thread-safe.
class Progress {
public:
  Progress(std::string label, std::uint64_t total);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  /// Sets the amount done so far.
  void update(std::uint64_t done);
  /// Erases the bar.
  void finish();

private:
  void draw_locked(std::uint64_t done);

  std::mutex mutex_;
  std::string label_;
  std::uint64_t total_;
  bool enabled_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_{};
};

/// Serialises output lines written from several threads (event handlers run
/// on the library's loop thread, the main thread reads stdin).
std::mutex& output_mutex();

/// Blocks SIGINT and SIGTERM in the calling thread (and so in threads it starts
/// afterwards), so that wait_for_signal() can receive them.
void block_stop_signals();
/// Waits up to `timeout` for SIGINT or SIGTERM (blocked with block_stop_signals).
/// Returns the signal number, or 0 on timeout.
int wait_for_signal(std::chrono::milliseconds timeout);

}  // namespace duplex::cli
