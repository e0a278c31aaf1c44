// duplex connect: a command-line WebSocket client on MessageWebSocket.
//
// Lines mode (default): each stdin line is sent as a text message, each
// received message is printed on stdout; at the end of stdin the command waits
// for as many replies as lines it sent (bounded by --reply-timeout), closes with
// 1000 and exits. Echo mode (--echo): stdin is ignored and every received
// message goes back with its type until the peer closes (how conformance suites
// drive a client: one process per test case). Binary input (--binary-input):
// stdin is sent as one binary message, streamed in frames as it is read. With -n
// the connection stays open after the end of stdin until the peer closes (or
// SIGINT/SIGTERM, which close with 1000). Either way the command exits when the
// peer closes, with a status that tells the kind of failure (exit_status_of).
#include <CLI/CLI.hpp>

#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <duplex/message_websocket.hpp>

#include "common.hpp"
#include "deflate_options.hpp"

namespace duplex::cli {
namespace {

struct ConnectOptions {
  std::string url;
  std::vector<std::string> protocols;
  std::vector<std::string> headers;
  std::string ca_file;
  bool ignore_certificate_errors = false;
  std::optional<std::uint64_t> max_message_size;
  double connect_timeout = 60.0;
  double reply_timeout = 10.0;
  bool echo = false;
  bool binary_raw = false;
  bool json = false;
  bool quiet = false;
  DeflateFlags deflate;
  std::size_t fragment_size = 0;  // 0: each line in one frame
  std::string proxy;
  std::string proxy_credential;   // "user:password"
  std::string server_credential;  // "user:password"
  std::string cert_file;
  std::string key_file;
  std::optional<double> ping_interval;
  bool no_close = false;      // -n: stay open after the end of stdin
  bool binary_input = false;  // stdin as one binary message
};

// Splits "user:password" at its first colon (RFC 7617 2: the user-id has none).
Credential parse_credential(const std::string& text, const char* option) {
  const auto colon = text.find(':');
  if (colon == std::string::npos)
    throw std::invalid_argument(std::string(option) + " must look like 'user:password'");
  return Credential{text.substr(0, colon), text.substr(colon + 1)};
}

// Sends all of stdin as one binary message: a frame per read, the final frame
// (possibly empty) at the end of input; returns early if `stop` says so.
template <class Stop>
Result<void> send_stdin_binary(MessageWebSocket& ws, Stop stop) {
  const SendOptions binary{.message_type = SocketMessageType::binary};
  std::vector<char> buf(65536);
  for (;;) {
    if (stop()) return {make_error_code(error::closed)};
    pollfd pfd{STDIN_FILENO, POLLIN, 0};
    if (::poll(&pfd, 1, 100) <= 0) continue;
    const ssize_t n = ::read(STDIN_FILENO, buf.data(), buf.size());
    const auto data = std::as_bytes(std::span(buf.data(), n > 0 ? static_cast<std::size_t>(n) : 0));
    if (n <= 0) return ws.send_final_frame_async(data, binary).get_result();
    if (auto r = ws.send_nonfinal_frame_async(data, binary).get_result(); !r) return r;
  }
}

// Close codes that end a connection without reporting an error (RFC 6455
// 7.4.1): normal closure, going away, and no status code at all.
bool is_error_close_code(std::uint16_t code) {
  return code != 1000 && code != 1001 && code != 1005;
}

// Sends `line` as one text message in frames of at most `size` bytes.
Result<void> send_fragmented(MessageWebSocket& ws, std::string_view line, std::size_t size) {
  const auto data = std::as_bytes(std::span(line.data(), line.size()));
  std::size_t at = 0;
  while (data.size() - at > size) {
    if (auto r = ws.send_nonfinal_frame_async(data.subspan(at, size)).get_result(); !r) return r;
    at += size;
  }
  return ws.send_final_frame_async(data.subspan(at)).get_result();
}

// What the event handlers (on the library's loop thread) tell the main thread.
struct SharedState {
  std::mutex mutex;
  std::condition_variable changed;
  std::uint64_t received = 0;
  bool closed = false;
  std::uint16_t close_code = 0;
  std::string close_reason;
  std::error_code close_error;
};

void print_message(const ConnectOptions& o, const MessageWebSocketMessageReceivedEventArgs& args) {
  std::lock_guard lock(output_mutex());
  const bool text = args.message_type() == SocketMessageType::utf8;
  if (o.json) {
    std::cout << "{\"event\":\"message\",\"type\":\"" << (text ? "text" : "binary") << "\",";
    if (text) {
      std::cout << "\"data\":" << json_string(args.text());
    } else {
      std::cout << "\"length\":" << args.data().size() << ",\"hex\":\"" << to_hex(args.data())
                << "\"";
    }
    std::cout << "}\n" << std::flush;
  } else if (text) {
    std::cout << args.text() << '\n' << std::flush;
  } else if (o.binary_raw) {
    std::cout.write(reinterpret_cast<const char*>(args.data().data()),
                    static_cast<std::streamsize>(args.data().size()));
    std::cout.flush();
  } else {
    std::cout << to_hex(args.data()) << '\n' << std::flush;
  }
}

// Splits "Name: value" (RFC 9110 5.1: field-name ":" OWS field-value OWS).
std::pair<std::string, std::string> parse_header(const std::string& header) {
  const auto colon = header.find(':');
  if (colon == std::string::npos || colon == 0) {
    throw std::invalid_argument("--header must look like 'Name: value', got '" + header + "'");
  }
  const auto trim = [](std::string s) {
    const auto first = s.find_first_not_of(" \t");
    const auto last = s.find_last_not_of(" \t");
    return first == std::string::npos ? std::string() : s.substr(first, last - first + 1);
  };
  return {trim(header.substr(0, colon)), trim(header.substr(colon + 1))};
}

void configure(MessageWebSocket& ws, const ConnectOptions& o) {
  auto control = ws.control();
  control.message_type(SocketMessageType::utf8);
  if (!o.protocols.empty()) control.supported_protocols(o.protocols);
  for (const auto& h : o.headers) {
    const auto [name, value] = parse_header(h);
    ws.set_request_header(name, value);
  }
  if (!o.ca_file.empty()) control.trusted_ca_file(o.ca_file);
  if (o.ignore_certificate_errors) {
    control.ignorable_server_certificate_errors(
        {ChainValidationResult::untrusted, ChainValidationResult::expired,
         ChainValidationResult::invalid_name, ChainValidationResult::incomplete_chain,
         ChainValidationResult::wrong_usage, ChainValidationResult::other_errors});
  }
  if (o.max_message_size) {
    control.max_message_size(*o.max_message_size == 0
                                 ? MessageWebSocketControl::unlimited_message_size
                                 : *o.max_message_size);
  }
  control.connect_timeout(seconds_option(o.connect_timeout, "--connect-timeout"));
  if (o.deflate.enable) control.deflate(o.deflate.to_options());
  if (!o.proxy.empty()) control.proxy(o.proxy);
  if (!o.proxy_credential.empty())
    control.proxy_credential(parse_credential(o.proxy_credential, "--proxy-credential"));
  if (!o.server_credential.empty())
    control.server_credential(parse_credential(o.server_credential, "--credential"));
  if (!o.cert_file.empty()) control.client_certificate({o.cert_file, o.key_file});
  if (o.ping_interval)
    control.keep_alive_interval(seconds_option(*o.ping_interval, "--ping-interval"));
}

// Reads stdin line by line without blocking the reaction to the peer's close:
// poll() with a short timeout, so a close while the user types ends the command.
class LineReader {
public:
  // Returns false at the end of input; `stop` is checked between polls.
  template <class Stop>
  bool next(std::string& line, Stop stop) {
    for (;;) {
      const auto nl = pending_.find('\n');
      if (nl != std::string::npos) {
        line = pending_.substr(0, nl);
        pending_.erase(0, nl + 1);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        return true;
      }
      if (eof_) {
        if (pending_.empty()) return false;
        line.swap(pending_);
        pending_.clear();
        return true;
      }
      if (stop()) return false;
      pollfd pfd{STDIN_FILENO, POLLIN, 0};
      const int ready = ::poll(&pfd, 1, 100);
      if (ready <= 0) continue;
      char buf[65536];
      const ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n <= 0) {
        eof_ = true;
      } else {
        pending_.append(buf, static_cast<std::size_t>(n));
      }
    }
  }

private:
  std::string pending_;
  bool eof_ = false;
};

int run_connect(const ConnectOptions& o) {
  // With -n the command ends on the peer's close or on SIGINT/SIGTERM (which
  // close with 1000): block them before the library's loop thread starts.
  if (o.no_close) block_stop_signals();
  MessageWebSocket ws;
  configure(ws, o);
  auto state = std::make_shared<SharedState>();

  ws.message_received(
      [&o, state](MessageWebSocket& socket, const MessageWebSocketMessageReceivedEventArgs& args) {
        if (o.echo) {
          // Same type back; the send copies the data before returning, and its task
          // may be dropped (a failure shows up as the closed event).
          socket.control().message_type(args.message_type());
          try {
            (void)socket.send_async(args.data());
          } catch (const std::invalid_argument&) {
            // A text message is valid UTF-8 by the time it is delivered; nothing to do.
          }
        } else {
          print_message(o, args);
        }
        std::lock_guard lock(state->mutex);
        ++state->received;
        state->changed.notify_all();
      });
  ws.closed([state](MessageWebSocket&, const WebSocketClosedEventArgs& args) {
    std::lock_guard lock(state->mutex);
    state->closed = true;
    state->close_code = args.code();
    state->close_reason = args.reason();
    state->close_error = args.error();
    state->changed.notify_all();
  });

  if (auto r = ws.connect_async(o.url).get_result(); !r) {
    report_error("connect to " + o.url, r.ec, o.json);
    return exit_status_of(r.ec);
  }
  {
    const auto info = ws.information();
    std::lock_guard lock(output_mutex());
    if (o.json) {
      std::cout << "{\"event\":\"connected\",\"url\":" << json_string(o.url)
                << ",\"protocol\":" << json_string(info.protocol())
                << ",\"extensions\":" << json_string(info.extensions()) << "}\n"
                << std::flush;
    } else if (!o.quiet) {
      std::cerr << "connected to " << o.url;
      if (!info.protocol().empty()) std::cerr << " (subprotocol " << info.protocol() << ")";
      if (!info.extensions().empty()) std::cerr << " (" << info.extensions() << ")";
      std::cerr << std::endl;
    }
  }

  std::uint64_t sent = 0;
  std::error_code failure;
  std::string failure_context;
  bool interrupted = false;
  const auto peer_closed = [&] {
    if (o.no_close && !interrupted)
      interrupted = wait_for_signal(std::chrono::milliseconds(0)) != 0;
    std::lock_guard lock(state->mutex);
    return state->closed || interrupted;
  };

  if (!o.echo && o.binary_input) {
    if (auto r = send_stdin_binary(ws, peer_closed); !r) {
      if (!peer_closed()) {
        failure = r.ec;
        failure_context = "send";
      }
    } else {
      sent = 1;
    }
  } else if (!o.echo) {
    LineReader reader;
    std::string line;
    while (reader.next(line, peer_closed)) {
      Result<void> r;
      try {
        r = o.fragment_size ? send_fragmented(ws, line, o.fragment_size)
                            : ws.send_async(line).get_result();
      } catch (const std::invalid_argument&) {
        std::lock_guard lock(output_mutex());
        std::cerr << "duplex: stdin line " << sent + 1
                  << " is not valid UTF-8; a text message must be (RFC 6455 5.6)" << std::endl;
        failure = make_error_code(error::invalid_utf8);
        failure_context = "read stdin";
        break;
      }
      if (!r) {
        if (!peer_closed()) {
          failure = r.ec;
          failure_context = "send";
        }
        break;
      }
      ++sent;
    }
  }
  if (!o.echo && !o.no_close) {
    // The replies to what was sent arrive before the close (bounded wait).
    std::unique_lock lock(state->mutex);
    state->changed.wait_for(lock, seconds_option(o.reply_timeout, "--reply-timeout"),
                            [&] { return state->closed || state->received >= sent; });
  }
  // -n: stay open until the peer closes or a signal asks us to close.
  while (o.no_close && !failure && !interrupted) {
    if (wait_for_signal(std::chrono::milliseconds(100)) != 0) interrupted = true;
    std::lock_guard lock(state->mutex);
    if (state->closed) break;
  }

  std::unique_lock lock(state->mutex);
  if (!state->closed && (!o.echo || interrupted)) {
    lock.unlock();
    const auto r = ws.close_async(1000, {}).get_result();
    lock.lock();
    if (!r && !state->closed && !failure) {
      failure = r.ec;
      failure_context = "close";
    }
  }
  // Echo mode runs until the peer closes; otherwise the close handshake above is
  // bounded by the control's close timeout, and the closed event follows it.
  if (o.echo && !interrupted) {
    state->changed.wait(lock, [&] { return state->closed; });
  } else {
    state->changed.wait_for(lock, std::chrono::seconds(10), [&] { return state->closed; });
  }
  const bool closed = state->closed;
  const std::uint16_t code = state->close_code;
  const std::string reason = state->close_reason;
  const std::error_code close_error = state->close_error;
  lock.unlock();

  if (closed) {
    std::lock_guard out(output_mutex());
    if (o.json) {
      std::cout << "{\"event\":\"closed\",\"code\":" << code
                << ",\"reason\":" << json_string(reason)
                << ",\"clean\":" << (close_error ? "false" : "true") << "}\n"
                << std::flush;
    } else if (!o.quiet) {
      std::cerr << "closed: " << code;
      if (!reason.empty()) std::cerr << " " << reason;
      std::cerr << std::endl;
    }
  }
  if (failure) {
    report_error(failure_context, failure, o.json);
    return exit_status_of(failure);
  }
  if (close_error) {
    report_error("connection", close_error, o.json);
    return exit_status_of(close_error);
  }
  if (!closed) {
    report_error("close", make_error_code(error::timed_out), o.json);
    return exit_timeout;
  }
  if (is_error_close_code(code)) {
    if (!o.json && !o.quiet) {
      std::lock_guard out(output_mutex());
      std::cerr << "duplex: the connection closed with code " << code << " (not 1000/1001)"
                << std::endl;
    }
    return exit_closed_with_error;
  }
  return exit_ok;
}

}  // namespace

void add_connect_command(CLI::App& app, int& exit_status) {
  auto o = std::make_shared<ConnectOptions>();
  CLI::App* cmd = app.add_subcommand(
      "connect",
      "Connect to a WebSocket server: send stdin lines as text messages and print received "
      "messages (binary as hex); close at the end of stdin after the replies arrive");
  cmd->add_option("url", o->url, "ws:// or wss:// URL")->required();
  cmd->add_option("-s,--protocol", o->protocols, "Offer this subprotocol (repeatable, in order)");
  cmd->add_option("-H,--header", o->headers, "Add a request header 'Name: value' (repeatable)");
  cmd->add_option("--ca", o->ca_file, "Also trust the CA certificates in this PEM file (wss)")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--ignore-certificate-errors", o->ignore_certificate_errors,
                "Accept an untrusted, expired or wrong-name server certificate (INSECURE)");
  cmd->add_option("--max-message-size", o->max_message_size,
                  "Largest message to accept, in bytes (0: unlimited; default 64 MiB)");
  cmd->add_option("--connect-timeout", o->connect_timeout,
                  "Bound on resolve + TCP + TLS + handshake, in seconds")
      ->capture_default_str();
  cmd->add_option("--reply-timeout", o->reply_timeout,
                  "At the end of stdin, wait up to this many seconds for the replies")
      ->capture_default_str();
  cmd->add_flag("--echo", o->echo,
                "Ignore stdin; send every received message back with its type until the peer "
                "closes");
  add_deflate_options(*cmd, o->deflate);
  cmd->add_option("--fragment-size", o->fragment_size,
                  "Send each line as a message in frames of at most this many bytes");
  cmd->add_option("--proxy", o->proxy,
                  "Connect through this proxy: http://HOST:PORT (HTTP CONNECT) or "
                  "socks5://HOST:PORT");
  cmd->add_option("--proxy-credential", o->proxy_credential,
                  "USER:PASSWORD for the proxy (HTTP Basic or SOCKS5)");
  cmd->add_option("--credential", o->server_credential,
                  "USER:PASSWORD sent to the server with HTTP Basic (Authorization header)");
  auto* cert = cmd->add_option("--cert", o->cert_file,
                               "Client certificate (PEM chain) for mutual TLS (with --key)")
                   ->check(CLI::ExistingFile);
  auto* key = cmd->add_option("--key", o->key_file, "Private key (PEM, unencrypted) of --cert")
                  ->check(CLI::ExistingFile);
  cert->needs(key);
  key->needs(cert);
  cmd->add_option("--ping-interval", o->ping_interval,
                  "Send a ping after this many seconds without data from the server; no pong "
                  "within 10 s fails the connection (exit 5)");
  cmd->add_flag("-n,--no-close", o->no_close,
                "Stay open after the end of stdin, until the server closes (SIGINT/SIGTERM: "
                "close with 1000)");
  cmd->add_flag("--binary-input", o->binary_input,
                "Send all of stdin as one binary message, streamed in frames as it is read")
      ->excludes("--fragment-size");
  cmd->add_flag("--binary", o->binary_raw, "Print binary messages raw instead of as hex");
  cmd->add_flag("--json", o->json, "One JSON object per line for each event");
  cmd->add_flag("-q,--quiet", o->quiet, "No status lines on stderr");
  cmd->footer(
      "Exit status: 0 closed normally (1000, 1001 or no code); 1 other network failure; 2 bad "
      "arguments; 3 handshake refused (HTTP status other than 101, invalid answer); 4 TLS "
      "failure; 5 timeout; 6 the connection closed with an error code (not 1000/1001).");
  cmd->callback([o, &exit_status] { exit_status = run_connect(*o); });
}

}  // namespace duplex::cli
