// duplex: the command-line tool. One file per sub-command (demo.cpp,
// echo_server.cpp, connect.cpp); this file wires them into one CLI11 app.
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>

#include "common.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "duplex: WebSocket client and server (the Windows MessageWebSocket / "
      "StreamWebSocket model in C++20)"};
  app.require_subcommand(1);
  app.failure_message(CLI::FailureMessage::help);
  int exit_status = duplex::cli::exit_ok;
  duplex::cli::add_demo_command(app, exit_status);
  duplex::cli::add_echo_server_command(app, exit_status);
  duplex::cli::add_connect_command(app, exit_status);
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
