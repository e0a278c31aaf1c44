// duplex/protocol/connection.hpp: the sans-I/O WebSocket connection state machine.
//
// Bytes in, events out; calls in, bytes out. It never touches a socket, a thread
// or a clock: the session layer reads into a buffer, passes it to receive(),
// and writes what the connection queued. Client and server share it; the role
// decides masking.
//
// Thread safety: none; one Connection is used by one thread at a time (the
// connection's event loop). A Connection is movable, not copyable.
//
// Client masking keys come from OpenSSL's RAND_bytes (RFC 6455 5.3), drawn 4,096
// keys (16 KiB) at a time per thread that sends client frames; the send calls
// throw std::system_error in the (practically impossible) case that the
// generator fails.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <duplex/message_type.hpp>
#include <duplex/protocol/deflate.hpp>
#include <duplex/protocol/frame.hpp>
#include <duplex/protocol/utf8.hpp>

namespace duplex::protocol {

enum class Role : std::uint8_t { client, server };

/// Where the connection stands in the close handshake (RFC 6455 7).
enum class ConnectionState : std::uint8_t {
  open,     ///< data flows both ways
  closing,  ///< we sent a close frame and wait for the peer's
  closed,   ///< close frames went both ways, or the connection failed
};

/// Counters kept by the connection (bandwidth statistics).
struct ConnectionStats {
  std::uint64_t bytes_received = 0;  ///< wire bytes, headers included
  std::uint64_t bytes_sent = 0;      ///< wire bytes queued, headers included
  std::uint64_t frames_received = 0;
  std::uint64_t frames_sent = 0;
  std::uint64_t messages_received = 0;  ///< complete data messages
  std::uint64_t messages_sent = 0;
};

struct ConnectionConfig {
  Role role = Role::client;
  /// Largest data message accepted, in payload bytes; a larger one fails the
  /// connection with 1009 as soon as its length is known. 64 MiB by default:
  /// large enough for files sent as one message, small enough that a hostile
  /// peer cannot make us reserve gigabytes. `unlimited` turns the check off.
  std::uint64_t max_message_size = std::uint64_t{64} << 20;
  static constexpr std::uint64_t unlimited = std::numeric_limits<std::uint64_t>::max();
  /// Partial receive: deliver a message in pieces instead of reassembling it
  /// (StreamWebSocket, MessageWebSocket partial mode).
  bool partial_messages = false;
  /// Partial receive: the size a piece reaches before it is delivered; the
  /// last piece of a message may be smaller. 64 KiB by default: a peer that
  /// sends a message in tiny frames (or compressed data that the core inflates
  /// a slice at a time) must not come out as thousands of tiny pieces, which
  /// an echo or relay would send on as as many frames (Node ws refuses more
  /// than 16,384 fragments). A piece of the receive buffer that reaches it
  /// alone, with nothing gathered before it, is delivered as a view (no
  /// copy); smaller ones are gathered in the connection's buffer, so a
  /// connection holds at most this many bytes of a message in partial mode
  /// (plus, compressed, the output of one 1 KiB slice of input: at most about
  /// 1 MiB). 1: every piece as it arrives (what StreamWebSocket uses). 0 is
  /// taken as 1.
  std::size_t partial_message_threshold = std::size_t{64} << 10;
  /// Answer pings with pongs (RFC 6455 5.5.2 requires it; off only for tests).
  bool auto_pong = true;
  /// RFC 7692 hook, off until permessage-deflate is negotiated: accept RSV1 on
  /// the first frame of a data message (it marks the message compressed; see
  /// Connection::message_compressed()). RSV1 elsewhere, RSV2 and RSV3 stay errors
  /// (RFC 6455 5.2: reserved bits need an extension that defines them).
  bool rsv1_allowed = false;
  /// permessage-deflate (RFC 7692) as negotiated in the opening handshake
  /// (negotiate_deflate / accept_deflate_response); empty: no extension. When
  /// set, the connection compresses what it sends (messages of at least
  /// `compress_threshold` bytes, unless the send asks otherwise) and inflates
  /// what it receives: on_message sees the inflated bytes, max_message_size
  /// bounds the inflated size (checked while inflating, 1009), and data that
  /// does not inflate fails the connection with 1007. Implies rsv1_allowed.
  std::optional<DeflateParams> deflate;
};

/// Receives the events of Connection::receive(), in wire order, synchronously.
/// Views passed to a handler stay valid until it returns.
class ConnectionHandler {
public:
  virtual ~ConnectionHandler() = default;
  /// A data message (full mode: `complete` is always true), or a piece of one
  /// (partial mode: `complete` is true on the last piece; every other piece
  /// holds at least ConnectionConfig::partial_message_threshold bytes). `data`
  /// views the receive buffer (unmasked in place), the connection's
  /// reassembly buffer, or a buffer of the thread (inflated data).
  virtual void on_message(SocketMessageType type, std::span<const std::byte> data,
                          bool complete) = 0;
  /// A ping; its pong is already queued when auto_pong is on (while a write
  /// is in flight, it replaces a pong that still waits last in the queue).
  virtual void on_ping(std::span<const std::byte> payload) { (void)payload; }
  /// A pong (solicited or not).
  virtual void on_pong(std::span<const std::byte> payload) { (void)payload; }
  /// The peer's close frame (code 1005 when it had none). If we had not sent a
  /// close yet, the echo of its code and reason is already queued. Nothing more is
  /// delivered after this.
  virtual void on_close(std::uint16_t code, std::string_view reason) = 0;
  /// The peer broke the protocol: a close frame with close_code_for(ec) is
  /// queued (1002, 1007 or 1009) and the state is `closed`. Nothing more is
  /// delivered after this.
  virtual void on_error(std::error_code ec) = 0;
};

class Connection {
public:
  /// A connection with its own copy of `config`.
  explicit Connection(ConnectionConfig config = {});
  /// A connection that uses `config` in place, without a copy: settings
  /// shared by many connections (e.g. all those of a listener). `config` must
  /// outlive the connection and stay unchanged meanwhile. A config with
  /// `deflate` set is copied as by the constructor (the coders' parameters
  /// are each connection's own).
  [[nodiscard]] static Connection sharing(const ConnectionConfig& config);

  // --- Receiving -------------------------------------------------------------
  /// Consumes all of `data` (bytes read from the peer), unmasking in place, and
  /// raises events on `handler`. A frame that spans calls is carried over: a
  /// split header in a 14-byte spill, a split message in the reassembly
  /// buffer (full mode) or delivered piece by piece (partial mode). Every
  /// message complete before a protocol error is delivered before on_error.
  /// After the connection is closed, bytes are ignored.
  void receive(std::span<std::byte> data, ConnectionHandler& handler);

  /// What receive_holding() did with its bytes.
  struct ReceiveResult {
    std::size_t held = 0;        ///< bytes left unused at the end of the data (0: none)
    std::size_t frame_size = 0;  ///< held != 0: the held frame's size, header included
  };
  /// Payloads from this size may be held by receive_holding(): for smaller
  /// ones a read more costs more than the copy it saves.
  static constexpr std::size_t hold_min_payload = std::size_t{16} << 10;
  /// As receive(), except for the last frame of `data` when it is cut off and
  /// holds a whole message on its own (FIN set, not a continuation, not
  /// compressed with `deflate`) of at least hold_min_payload bytes, is at most
  /// `hold_max` bytes long header included, and (partial mode) the part of its
  /// payload in `data` is below the piece threshold (else that part goes out
  /// as a view anyway). That frame's bytes are left untouched at the end of
  /// `data` (not consumed, not unmasked, not counted; `held` says how many) so
  /// the caller can read the rest of the frame right behind them and pass it
  /// again, whole: it is then delivered as one view, with no copy into the
  /// reassembly buffer. Everything before it is consumed as receive() does.
  /// The caller must pass the held bytes again, to either call, before any
  /// other bytes. hold_max 0 holds nothing.
  ReceiveResult receive_holding(std::span<std::byte> data, ConnectionHandler& handler,
                                std::size_t hold_max);

  // --- Sending (frames are appended to the output buffer) ---------------------
  /// A frame whose payload the caller writes itself (zero copy): see the
  /// `direct` argument of send_message() and send_fragment().
  struct DirectFrame {
    std::array<std::byte, 10> header{};  ///< the frame header to write first
    std::size_t header_size = 0;         ///< 0: the frame was queued as usual
  };
  /// Payloads from this size may go out as a DirectFrame.
  static constexpr std::size_t direct_min_payload = std::size_t{16} << 10;

  /// Queues a whole message. Errors: `error::closed` once a close was sent or
  /// received, `error::invalid_utf8` for a utf8 message that is not UTF-8,
  /// `error::expected_continuation` while a fragmented send is unfinished.
  /// With permessage-deflate, the message is compressed when `compress` and it
  /// is at least the threshold long (RSV1 on its frame).
  ///
  /// `direct`: for a server-role frame of at least direct_min_payload bytes
  /// sent uncompressed, only its header is produced, in `*direct`; the frame
  /// counts as sent and the caller must write the header and then `payload`
  /// right after everything begin_write() hands out, giving what it could not
  /// write to append_output() before anything else is queued. Otherwise
  /// `direct->header_size` is 0 and the frame was queued as usual.
  std::error_code send_message(SocketMessageType type, std::span<const std::byte> payload,
                               bool compress = true, DirectFrame* direct = nullptr);
  /// Queues one frame of a message sent in pieces; `fin` ends the message. The
  /// type of the first piece holds for the whole message. UTF-8 is checked
  /// across pieces (a code point may be split; the message end must be whole).
  /// With permessage-deflate, `compress` on the first piece decides for the
  /// whole message (RSV1 on its first frame only; every piece is flushed so
  /// the peer can inflate it as it arrives).
  /// `direct` as for send_message().
  std::error_code send_fragment(SocketMessageType type, std::span<const std::byte> payload,
                                bool fin, bool compress = true, DirectFrame* direct = nullptr);
  /// Appends raw bytes of a DirectFrame the caller could not write (the rest
  /// of its header and payload) to the output, in order.
  void append_output(std::span<const std::byte> bytes);
  /// Queues a whole message with RSV1 set (a permessage-deflate message whose
  /// `payload` is already compressed; UTF-8 is not checked here, the caller
  /// checked the text before compressing). Needs `rsv1_allowed`, else
  /// `error::reserved_bits`; other errors as send_message(). Not for use with
  /// `deflate` (the connection's compressor would lose step with the peer's).
  std::error_code send_compressed_message(SocketMessageType type,
                                          std::span<const std::byte> payload);
  /// Queues a ping or a pong; payload at most 125 bytes (else
  /// `error::control_too_long`). Control frames may go between fragments.
  std::error_code send_ping(std::span<const std::byte> payload);
  std::error_code send_pong(std::span<const std::byte> payload);
  /// Starts the close handshake: queues a close frame (state `closing`), or,
  /// after the peer's close, does nothing. Arguments are checked with
  /// check_close_arguments (std::invalid_argument is the caller's to throw).
  std::error_code send_close(std::uint16_t code, std::string_view reason);

  // --- Output ------------------------------------------------------------------
  /// True when frames wait to be written.
  [[nodiscard]] bool has_output() const noexcept { return !out_.empty(); }
  /// Bytes queued and not yet handed to the transport.
  [[nodiscard]] std::size_t buffered_amount() const noexcept { return out_.size(); }
  /// Hands every queued byte to the transport: the span stays valid and
  /// unchanged (new frames go to another buffer) until end_write(). One write
  /// at a time: called again before end_write(), it returns the same bytes.
  /// Empty when nothing is queued. Buffers keep their capacity (up to 256 KiB),
  /// so steady state allocates nothing.
  /// (Inline: once per write on the hot path.)
  std::span<const std::byte> begin_write() noexcept {
    if (!write_active_ && !out_.empty()) {
      // Double buffering: the bytes handed out stay put while new frames go to
      // the other buffer; both keep their capacity.
      out_.swap(writing_);
      write_active_ = true;
      wr_pong_end_ = 0;  // the queued pong (if any) is on its way
    }
    return writing_.bytes();
  }
  /// The write handed out by begin_write() completed.
  void end_write() noexcept {
    writing_.clear();
    // An idle connection should not keep the memory of its largest burst.
    writing_.release_above(retained_output_capacity);
    write_active_ = false;
  }
  /// Output buffers larger than this are freed once empty: small steady-state
  /// messages never reach it, so they still allocate nothing.
  static constexpr std::size_t retained_output_capacity = std::size_t{256} * 1024;

  // --- State -------------------------------------------------------------------
  [[nodiscard]] ConnectionState state() const noexcept { return state_; }
  [[nodiscard]] bool close_sent() const noexcept { return close_sent_; }
  [[nodiscard]] bool close_received() const noexcept { return close_received_; }
  [[nodiscard]] Role role() const noexcept { return config_->role; }
  [[nodiscard]] const ConnectionConfig& config() const noexcept { return *config_; }
  [[nodiscard]] const ConnectionStats& stats() const noexcept { return stats_; }
  /// Counts a whole message of one frame, `frame_size` bytes, that the
  /// caller encoded itself and sent on this connection's transport (a frame
  /// encoded once for many connections), so that stats() includes it.
  void count_sent_message(std::size_t frame_size) noexcept {
    ++stats_.messages_sent;
    ++stats_.frames_sent;
    stats_.bytes_sent += frame_size;
  }
  /// During ConnectionHandler::on_message: true when the message's first frame
  /// had RSV1 (only possible with `rsv1_allowed` or `deflate`); without
  /// `deflate` its payload is then the compressed bytes and was not checked as
  /// UTF-8; with `deflate` it was inflated (and checked) before delivery.
  [[nodiscard]] bool message_compressed() const noexcept { return rd_compressed_; }

private:
  /// Output bytes: grows without zero-filling what it adds and keeps its
  /// capacity when cleared, so steady state allocates nothing.
  class OutputBuffer {
  public:
    /// Room for `n` more bytes at the end; returns where they start.
    std::byte* append(std::size_t n) {
      if (capacity_ - size_ < n) return grow(n);
      std::byte* p = data_.get() + size_;
      size_ += n;
      return p;
    }
    /// True when append(n) needs no growth.
    [[nodiscard]] bool has_room(std::size_t n) const noexcept { return capacity_ - size_ >= n; }
    void clear() noexcept { size_ = 0; }
    /// Takes back the last `n` bytes appended.
    void drop_back(std::size_t n) noexcept { size_ -= n; }
    /// Frees the storage of an empty buffer whose capacity exceeds `limit`.
    void release_above(std::size_t limit) noexcept {
      if (size_ == 0 && capacity_ > limit) {
        data_.reset();
        capacity_ = 0;
      }
    }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {data_.get(), size_}; }
    void swap(OutputBuffer& other) noexcept {
      data_.swap(other.data_);
      std::swap(size_, other.size_);
      std::swap(capacity_, other.capacity_);
    }

  private:
    std::byte* grow(std::size_t n);
    std::unique_ptr<std::byte[]> data_;
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
  };

  struct Header;
  std::size_t read_header(const std::byte* p, std::size_t n, Header& h,
                          std::error_code& ec) const noexcept;
  void start_frame(const Header& h) noexcept;
  [[nodiscard]] bool holdable(const Header& h, std::size_t avail) const noexcept;
  /// Fills `direct` (when given and the frame qualifies) instead of queuing.
  bool direct_frame(std::uint8_t b0, std::span<const std::byte> payload,
                    DirectFrame* direct) noexcept;
  bool handle_control(std::span<const std::byte> payload, ConnectionHandler& handler);
  void deliver_piece(std::span<const std::byte> bytes, bool last, ConnectionHandler& handler);
  [[nodiscard]] std::size_t piece_threshold() const noexcept {
    return config_->partial_message_threshold != 0 ? config_->partial_message_threshold : 1;
  }
  void fail(std::error_code ec, ConnectionHandler& handler);
  void queue_frame(std::uint8_t b0, std::span<const std::byte> payload);
  std::error_code check_send_data() const noexcept;
  /// send_message() for all but the small unmasked message that fits.
  std::error_code send_message_general(SocketMessageType type, std::span<const std::byte> payload,
                                       bool compress, DirectFrame* direct);
  /// After a small text message was copied with bytes above 0x7F: keeps it if
  /// it is UTF-8, else takes back its `frame_size` bytes and its counts.
  std::error_code check_copied_text(std::span<const std::byte> payload, std::size_t frame_size);
  // permessage-deflate (src/protocol/deflate_connection.cpp).
  bool receive_deflated(std::span<const std::byte> chunk, bool message_done,
                        ConnectionHandler& handler);
  void send_deflated(std::uint8_t b0, std::span<const std::byte> payload, bool fin);

  /// What a connection owns beyond shared settings, made only when needed:
  /// its own copy of the config (constructed with a value) and the
  /// permessage-deflate coders (negotiated; no zlib state while idle without
  /// context takeover).
  struct Own {
    ConnectionConfig config;
    DeflateEncoder wr_deflate;
    DeflateDecoder rd_deflate;
  };
  struct Shared {};
  Connection(const ConnectionConfig& config, Shared) noexcept : config_(&config) {
    derive_fast_path();
  }

  const ConnectionConfig* config_;  ///< shared, or own_->config
  std::unique_ptr<Own> own_;
  ConnectionState state_ = ConnectionState::open;
  bool close_sent_ = false;
  bool close_received_ = false;
  bool write_active_ = false;  ///< begin_write() handed out `writing_`
  // Send side flags, here where they fill the padding after the state's:
  // a message being sent in pieces, its type, and whether it is compressed.
  bool wr_in_message_ = false;
  bool wr_text_ = false;
  bool wr_deflating_ = false;
  ConnectionStats stats_;
  OutputBuffer out_;      ///< frames being queued
  OutputBuffer writing_;  ///< frames handed out by begin_write()

  // Receive side: the frame being read and the message it belongs to.
  std::uint64_t rd_remaining_ = 0;  ///< payload bytes of the current frame not yet read
  std::uint64_t rd_msg_size_ = 0;   ///< payload bytes of the current data message so far
  MaskKey rd_key_{};
  std::uint8_t rd_key_offset_ = 0;
  std::uint8_t rd_opcode_ = 0;        ///< opcode of the current frame
  std::uint8_t rd_spill_size_ = 0;    ///< bytes of a split header kept in rd_spill_
  std::uint8_t rd_control_size_ = 0;  ///< bytes of a split control payload in rd_control_
  bool rd_in_payload_ = false;        ///< a header was read, its payload is being read
  bool rd_fin_ = false;               ///< the current frame ends its message
  bool rd_masked_ = false;
  bool rd_in_message_ = false;  ///< a fragmented data message is unfinished
  bool rd_text_ = false;        ///< the current data message is text
  bool rd_compressed_ = false;  ///< the current data message had RSV1
  bool rd_done_ = false;        ///< close received or connection failed: ignore input
  /// receive_holding's fast path, derived once from the (fixed) config: the
  /// largest payload it takes (a 7-bit length within max_message_size) and
  /// the mask bit the peer's frames carry (0x80 when we are the server).
  std::uint8_t rd_fast_max_ = 0;
  std::uint8_t rd_mask_bit_ = 0;
  void derive_fast_path() noexcept;
  std::array<std::byte, max_frame_header_size> rd_spill_{};
  /// A control payload split across reads (rare: allocated for it, freed
  /// once handled, so an idle connection holds no 125 bytes for it).
  std::unique_ptr<std::array<std::byte, max_control_payload>> rd_control_;
  Utf8Validator rd_utf8_;
  /// Reassembly buffer (full mode); partial mode: bytes gathered for the next
  /// piece (less than the threshold between calls).
  std::vector<std::byte> rd_message_;

  // Send side: the last pong queued in out_ ([wr_pong_at_, wr_pong_end_);
  // wr_pong_end_ 0 when none waits there), and the text of a message sent in
  // pieces (its flags are above).
  std::size_t wr_pong_at_ = 0;
  std::size_t wr_pong_end_ = 0;
  Utf8Validator wr_utf8_;
};

}  // namespace duplex::protocol
