// --deflate and its parameters for `duplex echo-server` and `duplex connect`.
#include "deflate_options.hpp"

#include <CLI/CLI.hpp>

#include <stdexcept>

namespace duplex::cli {
namespace {

std::uint8_t window_bits(int bits, const char* option) {
  // RFC 7692 7.1.2: window sizes are 2^8 .. 2^15 bytes.
  if (bits < 8 || bits > 15)
    throw std::invalid_argument(std::string(option) + ": must be 8..15 (RFC 7692 7.1.2)");
  return static_cast<std::uint8_t>(bits);
}

}  // namespace

DeflateOptions DeflateFlags::to_options(const DeflateOptions& defaults) const {
  DeflateOptions o = defaults;
  o.enable = enable;
  if (context_takeover) {
    // Both directions keep their window, at full size unless limited below.
    o.server_no_context_takeover = false;
    o.client_no_context_takeover = false;
    o.client_no_context_takeover_unless_window_limited = false;
    o.client_max_window_bits = 15;
  }
  o.server_no_context_takeover =
      o.server_no_context_takeover || no_context_takeover || server_no_context_takeover;
  o.client_no_context_takeover =
      o.client_no_context_takeover || no_context_takeover || client_no_context_takeover;
  if (max_window_bits) {
    o.server_max_window_bits = window_bits(*max_window_bits, "--deflate-max-window-bits");
    o.client_max_window_bits = o.server_max_window_bits;
  }
  if (server_max_window_bits)
    o.server_max_window_bits =
        window_bits(*server_max_window_bits, "--deflate-server-max-window-bits");
  if (client_max_window_bits)
    o.client_max_window_bits =
        window_bits(*client_max_window_bits, "--deflate-client-max-window-bits");
  if (level) {
    if (*level < 0 || *level > 9) throw std::invalid_argument("--deflate-level: must be 0..9");
    o.compression_level = *level;
  }
  if (memory_level) {
    if (*memory_level < 1 || *memory_level > 9)
      throw std::invalid_argument("--deflate-memory-level: must be 1..9");
    o.memory_level = *memory_level;
  }
  if (threshold) o.compress_threshold = *threshold;
  return o;
}

void add_deflate_options(CLI::App& cmd, DeflateFlags& f) {
  auto* on =
      cmd.add_flag("--deflate", f.enable,
                   "permessage-deflate (RFC 7692): offer (client) or accept (server) compression");
  auto* takeover =
      cmd.add_flag("--deflate-context-takeover", f.context_takeover,
                   "Both sides keep their full compression window between messages (better "
                   "ratio on small messages, 100-300 KiB per connection; the client's default. "
                   "echo-server's: the server drops its window, the client keeps 4 KiB)")
          ->needs(on);
  cmd.add_flag("--deflate-no-context-takeover", f.no_context_takeover,
               "Both sides drop their compression window after each message (less memory per "
               "connection, less compression)")
      ->needs(on)
      ->excludes(takeover);
  cmd.add_flag("--deflate-server-no-context-takeover", f.server_no_context_takeover,
               "The server drops its compression window after each message")
      ->needs(on);
  cmd.add_flag("--deflate-client-no-context-takeover", f.client_no_context_takeover,
               "The client drops its compression window after each message")
      ->needs(on);
  cmd.add_option("--deflate-max-window-bits", f.max_window_bits,
                 "LZ77 window of both sides, as a power of two (8..15)")
      ->needs(on);
  cmd.add_option("--deflate-server-max-window-bits", f.server_max_window_bits,
                 "LZ77 window of the server's compressor (8..15)")
      ->needs(on);
  cmd.add_option("--deflate-client-max-window-bits", f.client_max_window_bits,
                 "LZ77 window of the client's compressor (8..15)")
      ->needs(on);
  cmd.add_option("--deflate-level", f.level, "zlib compression level 0..9 (default 3)")->needs(on);
  cmd.add_option("--deflate-memory-level", f.memory_level,
                 "zlib memory level 1..9 (default 8; lower: less memory per connection)")
      ->needs(on);
  cmd.add_option("--deflate-threshold", f.threshold,
                 "Send messages shorter than this many bytes uncompressed (default 64)")
      ->needs(on);
}

std::string describe_deflate(const std::optional<DeflateParameters>& p) {
  return p ? p->to_string() : std::string("none");
}

}  // namespace duplex::cli
