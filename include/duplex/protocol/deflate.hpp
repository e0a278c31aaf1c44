// duplex/protocol/deflate.hpp: permessage-deflate (RFC 7692).
//
// Two parts, both sans-I/O:
//  - Negotiation, as pure functions: the client's offer and the check of the
//    server's answer; the server's choice among the client's offers and its
//    answer. They parse the Sec-WebSocket-Extensions grammar of RFC 6455 9.1
//    (comma-separated extensions, `;` parameters, token or quoted-string values).
//  - The data path over zlib: DeflateEncoder compresses a message (whole or in
//    pieces) into raw DEFLATE with the trailing 00 00 ff ff removed
//    (RFC 7692 7.2.1); DeflateDecoder restores it and inflates with a hard limit
//    on the inflated size (7.2.2).
//
// Window bits 8: zlib cannot compress raw DEFLATE with a 256-byte window
// (deflateInit2 refuses windowBits -8 since zlib 1.2.9). duplex therefore
//  - never advertises 8 for its own compressor: a configured 8 for the window we
//    compress with is raised to 9 in the offer or answer;
//  - advertises 8 freely for the peer's compressor (inflating a 256-byte window
//    works), and inflates with at least 9 bits, so a zlib peer that silently
//    used 9 after agreeing on 8 still decodes;
//  - when the peer limits our compressor to 8 bits (a client's
//    `server_max_window_bits=8`, a server's `client_max_window_bits=8`), accepts
//    and sends every message uncompressed (RSV1 clear), which RFC 7692 6 allows;
//    decompression of the peer's messages still works. Declining instead (as
//    Python websockets does) would lose compression in both directions.
//
// Thread safety: negotiation functions are reentrant. An encoder or decoder is
// used by one thread at a time. Without context takeover they borrow a zlib
// stream from a cache private to the calling thread for the duration of one
// message (the event loop's thread in duplex), so an idle connection holds no
// zlib memory; with context takeover each keeps its own stream, created at its
// first compressed message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace duplex::detail {
struct ZlibStream;  // a z_stream and its settings (src/protocol/deflate_codec.cpp)
}  // namespace duplex::detail

namespace duplex::protocol {

enum class Role : std::uint8_t;  // defined in <duplex/protocol/connection.hpp>

/// What an endpoint offers (client) or accepts (server). Check it with
/// check_deflate_config(); the negotiation functions do so and throw.
struct DeflateConfig {
  /// Off by default: compression costs CPU and memory, and compressing secrets
  /// next to attacker-chosen data leaks them through sizes (CRIME/BREACH).
  bool enable = false;

  /// Client: ask the server not to keep its LZ77 window between messages.
  /// Server: never keep it (answered as `server_no_context_takeover`); saves
  /// the ~260 KiB deflate state per connection. Off: context takeover
  /// compresses repetitive traffic (JSON) much better.
  bool server_no_context_takeover = false;
  /// Client: announce that the client will not keep its window.
  /// Server: require the client not to keep it (always allowed, RFC 7692
  /// 7.1.1.2), so the server inflates without per-connection state. When a
  /// client offers it, the server always accepts it, whatever this says.
  bool client_no_context_takeover = false;

  /// Largest LZ77 window (base-2 log, 8..15) of the server's compressor.
  /// Client: offered as `server_max_window_bits=N` when below 15.
  /// Server: its own limit, answered when below 15 (8 counts as 9, see above).
  std::uint8_t server_max_window_bits = 15;
  /// Largest window (8..15) of the client's compressor.
  /// Client: offered as `client_max_window_bits=N` when below 15 (8 counts as 9).
  /// Server: asked of the client when the client offered the parameter.
  std::uint8_t client_max_window_bits = 15;
  /// Client: at 15, still offer `client_max_window_bits` without a value, which
  /// lets the server choose a smaller client window (browsers do).
  bool offer_client_max_window_bits = true;
  /// Server only: with client_max_window_bits below 15, a client whose offer
  /// does not let the server limit its window (no `client_max_window_bits`) is
  /// asked `client_no_context_takeover` instead (RFC 7692 7.1.1.2: a server MAY
  /// include it in any answer). So the inflate state a connection keeps between
  /// messages is at most 2^client_max_window_bits bytes of window plus about
  /// 7 KiB, whatever the client offers. Off in DeflateConfig{}, on in
  /// default_server_deflate_config().
  bool client_no_context_takeover_unless_window_limited = false;

  /// zlib compression level 0..9 (or -1, zlib's default, 6). Level 3: most of
  /// level 6's ratio on JSON at about twice the speed.
  int compression_level = 3;
  /// zlib memory level 1..9: deflate state is 2^(memLevel+9) bytes of hash
  /// plus 2^(windowBits+2) of window. 8 is zlib's default.
  int memory_level = 8;
  /// Messages shorter than this are sent uncompressed: below it the DEFLATE
  /// overhead outweighs the gain (measured on JSON in docs/benchmarks.md).
  std::size_t compress_threshold = 64;
};

/// The defaults of a server (WebSocketListenerOptions::deflate, `duplex
/// echo-server --deflate`): DeflateConfig's, except that an idle connection
/// holds little zlib memory (about 11 KiB at most, instead of about 300 KiB
/// allocated with context takeover both ways at window 15 and memLevel 8):
///  - server_no_context_takeover: the server compresses each message with a
///    stream borrowed from the event loop's thread and given back after it, so
///    a connection holds no compressor (RFC 7692 7.1.1.1: a server MAY answer
///    it unasked). Also a message is compressed only against itself: what an
///    attacker sends in one message is never compressed against a secret the
///    server sent in an earlier one (CRIME-style guessing);
///  - client_max_window_bits 12: a client that offers the parameter (browsers,
///    Node ws, Python websockets do) keeps context takeover with a 4 KiB
///    window, so the inflate state is about 11 KiB (7.1.2.2);
///  - client_no_context_takeover_unless_window_limited: a client that does not
///    offer it is asked client_no_context_takeover (7.1.1.2), and its inflate
///    state is given back to the loop after each message.
/// A client that offers client_no_context_takeover gets it echoed (no inflate
/// state kept). The price is the ratio of small messages (docs/deflate.md has
/// the figures per setting); context takeover in both directions at full
/// windows is server_no_context_takeover = false and client_max_window_bits =
/// 15.
[[nodiscard]] constexpr DeflateConfig default_server_deflate_config() noexcept {
  DeflateConfig c;
  c.server_no_context_takeover = true;
  c.client_max_window_bits = 12;
  c.client_no_context_takeover_unless_window_limited = true;
  return c;
}

/// The negotiated parameters (what both sides agreed on) and this endpoint's
/// local settings for its compressor. Values are as on the wire.
struct DeflateParams {
  bool server_no_context_takeover = false;
  bool client_no_context_takeover = false;
  std::uint8_t server_max_window_bits = 15;  ///< bound on the server's window
  std::uint8_t client_max_window_bits = 15;  ///< bound on the client's window
  int compression_level = 3;                 ///< from DeflateConfig
  int memory_level = 8;                      ///< from DeflateConfig
  std::size_t compress_threshold = 64;       ///< from DeflateConfig

  /// The extension as it appears in the server's answer, e.g.
  /// "permessage-deflate; server_no_context_takeover; client_max_window_bits=10"
  /// (for information display).
  [[nodiscard]] std::string to_string() const;
  /// True if `role`'s compressor can run: false when its window was limited to
  /// 8 bits, which zlib cannot do (messages are then sent uncompressed).
  [[nodiscard]] bool can_compress(Role role) const noexcept;

  friend bool operator==(const DeflateParams&, const DeflateParams&) = default;
};

/// Throws std::invalid_argument naming the field when `config` is out of range:
/// window bits 8..15, compression_level -1..9, memory_level 1..9.
void check_deflate_config(const DeflateConfig& config);

// --- Client ----------------------------------------------------------------------

/// The Sec-WebSocket-Extensions offer for `config`, e.g.
/// "permessage-deflate; client_max_window_bits"; empty when !config.enable.
/// Throws std::invalid_argument for a bad config.
std::string make_deflate_offer(const DeflateConfig& config);

/// Checks the server's Sec-WebSocket-Extensions answer (empty when the header
/// was absent; repeated headers joined with ", ") against what `offered`
/// offered (RFC 7692 5, 7.1). Sets `out` to the agreed parameters, or to
/// nullopt when the server declined. Errors (fail the connection):
/// `error::unexpected_extension` when it names an extension not offered (or
/// permessage-deflate twice); `error::bad_extension_offer` when the header is
/// malformed, a parameter is unknown, repeated, has a bad value, a window is
/// above the one offered, `client_max_window_bits` was not offered, or a
/// parameter the offer required (`server_no_context_takeover`,
/// `server_max_window_bits`) is missing.
std::error_code accept_deflate_response(std::string_view extensions_header,
                                        const DeflateConfig& offered,
                                        std::optional<DeflateParams>& out);

// --- Server ----------------------------------------------------------------------

/// Picks the first acceptable permessage-deflate offer in the client's
/// Sec-WebSocket-Extensions header (other extensions are ignored) and builds
/// the answer. Offers with unknown parameters, repeated parameters or invalid
/// values are declined (RFC 7692 5), as is everything when !config.enable.
/// On success `out` holds the agreed parameters and `response_extension` the
/// element for the answer's Sec-WebSocket-Extensions, or `out` is nullopt and
/// `response_extension` empty when every offer was declined.
/// Error: `error::bad_extension_offer` when the header does not follow the
/// RFC 6455 9.1 grammar (the server may answer 400 or go on without
/// extensions). Throws std::invalid_argument for a bad config.
std::error_code negotiate_deflate(std::string_view extensions_offer_header,
                                  const DeflateConfig& server_config,
                                  std::optional<DeflateParams>& out,
                                  std::string& response_extension);

// --- Data path -----------------------------------------------------------------------

/// Compresses messages for one connection (RFC 7692 7.2.1).
class DeflateEncoder {
public:
  /// An encoder that cannot compress (no extension).
  DeflateEncoder() noexcept = default;
  /// The encoder of `role` for `params`. Allocates nothing until the first
  /// message is compressed.
  DeflateEncoder(const DeflateParams& params, Role role);
  ~DeflateEncoder();
  DeflateEncoder(DeflateEncoder&& other) noexcept;
  DeflateEncoder& operator=(DeflateEncoder&& other) noexcept;
  DeflateEncoder(const DeflateEncoder&) = delete;
  DeflateEncoder& operator=(const DeflateEncoder&) = delete;

  /// True when messages may be compressed (extension on, window not 8 bits).
  [[nodiscard]] bool enabled() const noexcept { return enabled_; }
  /// True when a message of `size` bytes should be compressed: enabled() and
  /// size >= the threshold.
  [[nodiscard]] bool should_compress(std::size_t size) const noexcept {
    return enabled_ && size >= threshold_;
  }
  /// True between the first piece of a message and its last.
  [[nodiscard]] bool in_message() const noexcept { return in_message_; }

  /// Compresses `in`, a piece of the current message (the first call starts
  /// one), and appends the compressed bytes to `out`. Non-final pieces end
  /// with a sync flush, so the peer can inflate them as they arrive; with
  /// `fin` the message ends: the trailing 00 00 ff ff is removed (an empty
  /// DEFLATE block, 0x00, is sent if nothing else is, RFC 7692 7.2.3.6), and
  /// without context takeover the window is dropped. Precondition: enabled().
  /// Throws std::bad_alloc when zlib runs out of memory.
  void compress(std::span<const std::byte> in, bool fin, std::vector<std::byte>& out);
  /// Drops a message left unfinished (the connection failed).
  void abort_message() noexcept;
  /// zlib memory this encoder holds now (0 while idle without context takeover).
  [[nodiscard]] std::size_t memory_in_use() const noexcept;

private:
  void acquire(std::size_t whole_message_size);
  void release() noexcept;

  detail::ZlibStream* stream_ = nullptr;
  std::size_t threshold_ = 0;
  int window_bits_ = 15;
  int memory_level_ = 8;
  int level_ = 3;
  bool enabled_ = false;
  bool no_context_takeover_ = false;
  bool in_message_ = false;
};

/// Inflates messages for one connection (RFC 7692 7.2.2).
class DeflateDecoder {
public:
  /// A decoder that cannot inflate (no extension).
  DeflateDecoder() noexcept = default;
  /// The decoder of `role` for `params` (it inflates the peer's messages).
  /// Allocates nothing until the first message.
  DeflateDecoder(const DeflateParams& params, Role role);
  ~DeflateDecoder();
  DeflateDecoder(DeflateDecoder&& other) noexcept;
  DeflateDecoder& operator=(DeflateDecoder&& other) noexcept;
  DeflateDecoder(const DeflateDecoder&) = delete;
  DeflateDecoder& operator=(const DeflateDecoder&) = delete;

  [[nodiscard]] bool enabled() const noexcept { return enabled_; }
  [[nodiscard]] bool in_message() const noexcept { return in_message_; }

  /// Inflates `in`, a piece of the current compressed message (the first call
  /// starts one), appending the output to `out`; `fin` marks the last piece
  /// (00 00 ff ff is appended to the input, and the message must end on a
  /// DEFLATE block boundary). `max_size` bounds the inflated size of the whole
  /// message and is checked while inflating: at most max_size + 1 bytes are
  /// ever produced. Errors: `error::message_too_big` above max_size,
  /// `error::bad_compressed_data` for input that is not valid DEFLATE; after
  /// an error the message is dropped (call again only for a new message).
  /// Throws std::bad_alloc when zlib runs out of memory.
  std::error_code inflate(std::span<const std::byte> in, bool fin, std::vector<std::byte>& out,
                          std::uint64_t max_size);
  /// Drops a message left unfinished (the connection failed).
  void abort_message() noexcept;
  /// Inflated bytes of the current message so far.
  [[nodiscard]] std::uint64_t message_size() const noexcept { return produced_; }
  /// zlib memory this decoder holds now (0 while idle without context takeover).
  [[nodiscard]] std::size_t memory_in_use() const noexcept;

private:
  void acquire();
  void release() noexcept;
  std::error_code run(std::span<const std::byte> in, std::vector<std::byte>& out,
                      std::uint64_t max_size);
  std::error_code finish_message(std::vector<std::byte>& out, std::uint64_t max_size);

  detail::ZlibStream* stream_ = nullptr;
  std::uint64_t produced_ = 0;  ///< inflated bytes of the current message
  std::uint64_t consumed_ = 0;  ///< compressed bytes of the current message
  int window_bits_ = 15;
  bool enabled_ = false;
  bool no_context_takeover_ = false;
  bool in_message_ = false;
  bool stream_ended_ = false;  ///< the peer ended its stream (BFINAL)
};

/// Bytes currently allocated by zlib for all encoders and decoders of the
/// process (streams held by connections and the per-thread caches): for
/// memory accounting and tests.
std::size_t zlib_memory_in_use() noexcept;
/// Frees the zlib streams cached for the calling thread (idle ones only).
void trim_deflate_cache() noexcept;

}  // namespace duplex::protocol
