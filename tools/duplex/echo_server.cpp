// duplex echo-server: a WebSocket echo server for tests, demos and conformance
// suites. Every message goes back with its type; the peer's close is answered
// with its code. Prints "listening on ws://HOST:PORT/" once ready and stops
// cleanly (1001 to every connection) on SIGINT or SIGTERM.
#include <CLI/CLI.hpp>

#include <csignal>
#include <iostream>

#include "common.hpp"
#include "deflate_options.hpp"
#include "echo_service.hpp"

namespace duplex::cli {
namespace {

struct EchoServerCommand {
  EchoServerCommand() { server.port = 9001; }  // a fixed default port, easy to type
  EchoServerOptions server;
  DeflateFlags deflate;
  double stop_timeout = 5.0;
};

int run_echo_server(EchoServerCommand& c) {
  const auto stop_timeout = seconds_option(c.stop_timeout, "--stop-timeout");
  c.server.deflate = c.deflate.to_options(protocol::default_server_deflate_config());
  // Block the stop signals before the listener starts its threads, so they are
  // delivered to sigtimedwait below and not to a loop thread.
  block_stop_signals();
  EchoServer server(c.server);
  {
    std::lock_guard lock(output_mutex());
    if (c.server.json) {
      std::cout << "{\"event\":\"listening\",\"url\":" << json_string(server.url()) << "}\n";
    } else {
      std::cout << "listening on " << server.url() << '\n';
    }
    std::cout << std::flush;
  }
  int sig = 0;
  while ((sig = wait_for_signal(std::chrono::seconds(1))) == 0) {
  }
  const std::size_t cut = server.stop(stop_timeout);
  const EchoStats stats = server.stats();
  std::lock_guard lock(output_mutex());
  if (c.server.json) {
    std::cout << "{\"event\":\"stopped\",\"signal\":"
              << json_string(sig == SIGINT ? "SIGINT" : "SIGTERM")
              << ",\"connections\":" << stats.connections << ",\"messages\":" << stats.messages
              << ",\"bytes\":" << stats.bytes << ",\"cut\":" << cut << "}\n"
              << std::flush;
  } else {
    std::cerr << "stopped (" << (sig == SIGINT ? "SIGINT" : "SIGTERM") << "): " << stats.connections
              << " connections, " << stats.messages << " messages (" << format_bytes(stats.bytes)
              << ") echoed";
    if (cut) std::cerr << ", " << cut << " connections cut";
    std::cerr << std::endl;
  }
  return exit_ok;
}

}  // namespace

void add_echo_server_command(CLI::App& app, int& exit_status) {
  auto c = std::make_shared<EchoServerCommand>();
  CLI::App* cmd = app.add_subcommand(
      "echo-server",
      "Run a WebSocket echo server: every message goes back with its type, the peer's close "
      "code is echoed; prints 'listening on ws://HOST:PORT/' when ready; SIGINT/SIGTERM stop it");
  cmd->add_option("--host", c->server.host, "Numeric address to listen on (IPv4 or IPv6)")
      ->capture_default_str();
  cmd->add_option("--port", c->server.port, "Port to listen on (0: an ephemeral port)")
      ->capture_default_str();
  auto* cert = cmd->add_option("--tls-cert", c->server.tls_certificate_file,
                               "PEM certificate chain: serve wss:// (with --tls-key)")
                   ->check(CLI::ExistingFile);
  auto* key =
      cmd->add_option("--tls-key", c->server.tls_private_key_file, "PEM private key of --tls-cert")
          ->check(CLI::ExistingFile);
  cert->needs(key);
  key->needs(cert);
  cmd->add_option("--threads", c->server.threads, "Event-loop threads (0: one per core)")
      ->capture_default_str();
  cmd->add_option("--max-message-size", c->server.max_message_size,
                  "Largest message accepted, in bytes (larger: close 1009)")
      ->capture_default_str();
  cmd->add_option("--protocol", c->server.protocols,
                  "Subprotocol to select when a client offers it (repeatable)");
  cmd->add_option("--allow-origin", c->server.allowed_origins,
                  "Accept only browsers from this Origin (repeatable; others get 403)");
  cmd->add_option("--metrics", c->server.metrics_path,
                  "Serve Prometheus metrics at this path over plain HTTP on the same port "
                  "(e.g. /metrics; other plain HTTP requests get 404)");
  cmd->add_option("--stop-timeout", c->stop_timeout,
                  "On SIGINT/SIGTERM, wait this many seconds for connections to close")
      ->capture_default_str();
  add_deflate_options(*cmd, c->deflate);
  cmd->add_flag("-v,--verbose", c->server.verbose, "Log each connection's open and close");
  cmd->add_flag("--json", c->server.json, "Machine-readable output (JSON lines on stdout)");
  cmd->callback([c, &exit_status] { exit_status = run_echo_server(*c); });
}

}  // namespace duplex::cli
