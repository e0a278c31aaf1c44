// duplex: the command-line tool. One file per sub-command (demo.cpp,
// echo_server.cpp, connect.cpp); this file wires them into one CLI11 app.
#include <openssl/crypto.h>
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>
#include <string>

#include "bench.hpp"
#include "common.hpp"

namespace duplex::cli {
void add_pubsub_server_command(CLI::App& app, int& exit_status);  // pubsub_server.cpp
}

int main(int argc, char** argv) {
  // Initialise OpenSSL's crypto library before the library's default event loop
  // exists: exit handlers run in reverse order of registration, so OpenSSL's
  // cleanup (registered by this first initialisation) then runs after the loop
  // thread is joined, not while that thread still frees TLS and RNG state (which
  // deadlocked on OpenSSL's freed locks at exit). TLS itself (OPENSSL_init_ssl)
  // initialises on first use only: a ws:// server never pays for it.
  // (Not option 0: that returns at once and registers nothing.)
  OPENSSL_init_crypto(OPENSSL_INIT_ADD_ALL_DIGESTS, nullptr);
  CLI::App app{
      "duplex: WebSocket client and server (the Windows MessageWebSocket / "
      "StreamWebSocket model in C++20)"};
  // DUPLEX_VERSION comes from project(VERSION) in CMakeLists.txt.
  app.set_version_flag("--version", std::string("duplex ") + DUPLEX_VERSION,
                       "Print the version and exit");
  app.require_subcommand(1);
  app.failure_message(CLI::FailureMessage::help);
  int exit_status = duplex::cli::exit_ok;
  duplex::cli::add_demo_command(app, exit_status);
  duplex::cli::add_echo_server_command(app, exit_status);
  duplex::cli::add_pubsub_server_command(app, exit_status);
  duplex::cli::add_connect_command(app, exit_status);
  add_bench_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : duplex::cli::exit_usage;
  } catch (const std::invalid_argument& e) {
    std::cerr << "duplex: " << e.what() << std::endl;
    return duplex::cli::exit_usage;
  } catch (const std::exception& e) {
    std::cerr << "duplex: " << e.what() << std::endl;
    return duplex::cli::exit_failure;
  }
  return exit_status;
}
