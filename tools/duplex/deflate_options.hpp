// deflate_options.hpp: the permessage-deflate options shared by `duplex
// echo-server` and `duplex connect` (--deflate and its parameters).
#pragma once

#include <optional>
#include <string>

#include <duplex/websocket_control.hpp>

namespace CLI {
class App;
}

namespace duplex::cli {

/// What the command line said; to_options() turns it into the library's
/// DeflateOptions (after CLI11 parsed it).
struct DeflateFlags {
  bool enable = false;
  bool context_takeover = false;
  bool no_context_takeover = false;
  bool server_no_context_takeover = false;
  bool client_no_context_takeover = false;
  std::optional<int> max_window_bits;
  std::optional<int> server_max_window_bits;
  std::optional<int> client_max_window_bits;
  std::optional<int> level;
  std::optional<int> memory_level;
  std::optional<std::size_t> threshold;

  /// The options for the library, starting from `defaults` (the client's
  /// DeflateOptions{} or the server's protocol::default_server_deflate_config());
  /// std::invalid_argument naming the option for a value out of range.
  [[nodiscard]] DeflateOptions to_options(const DeflateOptions& defaults = {}) const;
};

/// Adds --deflate and its parameter options to `cmd`; the parameters need
/// --deflate.
void add_deflate_options(CLI::App& cmd, DeflateFlags& flags);

/// "permessage-deflate; ..." of `p` for display, or "none".
std::string describe_deflate(const std::optional<DeflateParameters>& p);

}  // namespace duplex::cli
