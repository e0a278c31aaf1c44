// duplex/websocket_control.hpp: the settings (controls) and read-only facts
// (information) of a MessageWebSocket or StreamWebSocket, and the certificate
// types they use.
//
// Controls and information are small handles (like the Windows projections):
// `ws.control()` returns one by value; it refers to the socket's shared state and
// stays usable after the socket is gone: getters return the last settings,
// every setter (message_type included) throws std::logic_error ("control: the
// socket was destroyed; ...").
//
// TLS (wss://): TLS 1.2 or 1.3. TLS 1.2 offers only ECDHE suites with AEAD
// ciphers (ECDHE-ECDSA/RSA with AES-GCM or CHACHA20-POLY1305, Mozilla's
// "intermediate" profile without DHE), so a server that only speaks plain-RSA
// key exchange or CBC suites fails the connect; TLS 1.3 uses OpenSSL's
// defaults. ALPN offers "http/1.1". See docs/client.md.
//
// Thread safety: every member may be called from any thread. Setters throw
// std::logic_error once connect_async was called (or on a server-role socket),
// except MessageWebSocketControl::message_type; setters throw
// std::invalid_argument for an invalid value, naming the rule.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <duplex/message_type.hpp>
#include <duplex/protocol/deflate.hpp>

namespace duplex {

namespace detail {
class Session;
}

/// A user name and a password (HTTP Basic authentication, RFC 7617).
struct Credential {
  std::string user_name;
  std::string password;
};

/// A client certificate for mutual TLS: PEM files of the certificate (chain)
/// and of its private key (unencrypted).
struct ClientCertificate {
  std::string certificate_file;
  std::string private_key_file;
};

/// Kinds of server certificate failure (Windows: ChainValidationResult).
enum class ChainValidationResult : std::uint8_t {
  success = 0,
  untrusted,                ///< the chain does not end at a trusted root (self-signed, unknown CA)
  revoked,                  ///< a certificate of the chain was revoked
  expired,                  ///< outside its validity period (expired or not yet valid)
  incomplete_chain,         ///< an intermediate certificate is missing
  invalid_signature,        ///< a signature does not verify
  wrong_usage,              ///< the certificate may not be used for a TLS server
  invalid_name,             ///< the certificate is not for the host name connected to
  basic_constraints_error,  ///< a CA constraint is broken (path length, CA flag)
  other_errors,             ///< anything else OpenSSL reports
};

/// How bad the server certificate's errors are (Windows: SocketSslErrorSeverity).
enum class SocketSslErrorSeverity : std::uint8_t {
  none,       ///< no error
  ignorable,  ///< only errors listed in ignorable_server_certificate_errors
  fatal,      ///< at least one error that is not ignored
};

/// A certificate, decoded for display and pinning.
struct Certificate {
  std::string pem;      ///< the certificate in PEM
  std::string subject;  ///< one-line distinguished name, e.g. "CN=example.com"
  std::string issuer;
  std::chrono::system_clock::time_point valid_from;
  std::chrono::system_clock::time_point valid_to;
  std::string sha256_fingerprint;  ///< lowercase hex of SHA-256 over the DER form
};

/// Receive mode of a MessageWebSocket (Windows: MessageWebSocketReceiveMode).
enum class MessageWebSocketReceiveMode : std::uint8_t {
  full_message,     ///< message_received fires once per complete message
  partial_message,  ///< it fires for each piece as it arrives; is_message_complete() on the last
};

/// What a send does while an auto-reconnecting MessageWebSocket is
/// disconnected (ReconnectOptions::send_policy). Under either policy, frame
/// sends (send_nonfinal_frame_async, send_final_frame_async) fail with
/// `error::reconnecting` while disconnected, and so do, after the reconnect,
/// the remaining pieces of a message whose first pieces went with the lost
/// connection, up to its final piece.
enum class ReconnectSendPolicy : std::uint8_t {
  /// The send completes at once with `error::reconnecting`.
  fail,
  /// The message is copied into a queue and leaves, in call order, once the
  /// connection is back (after the reconnected handlers ran); its send
  /// completes then, as any send does when its message enters the outbound
  /// buffer. Over max_queued_messages or max_queued_bytes the send completes
  /// at once with `error::reconnect_queue_full`. If the socket gives up or is
  /// closed, queued sends complete with the error that ended it (the closed
  /// event's), or `error::closed` after close(), `error::operation_aborted`
  /// after destruction.
  queue,
};

/// Automatic reconnection of a client MessageWebSocket (the Windows API has
/// none; IXWebSocket's habit). Off by default. See docs/client.md.
///
/// When: after connect_async succeeded once, a connection that ends without
/// the application asking is re-established to the same URI with the same
/// settings, headers and handlers: when it is lost (reset, end of TCP without
/// a close frame, keep-alive `dead_peer`, a timeout without the server's close
/// frame: close code 1006), or when
/// the server closes with 1001 (going away, e.g. a restart), 1011 (internal
/// error), 1012 (service restart), 1013 (try again later) or 1014 (bad
/// gateway). Never after close()/close_async() or destruction, never after
/// the server's 1000 (normal), 1005 (no code) or any other code (1002, 1003,
/// 1007, 1008, 1009, 1010, 3000-4999: what the server refused would be
/// refused again), and never after a protocol error we found in the server's
/// data. The first connect_async is not retried: it completes with its error.
///
/// Attempt n (1, 2, ... counted from each drop) waits
/// d = min(max_delay, initial_delay * 2^(n-1)), less a random part: the delay
/// is uniform in [d * (1 - jitter), d], at least 1 ms. A failed attempt (any
/// connect error: refused, timed out, an HTTP status, TLS) leads to the next
/// one; after max_attempts failed attempts (0: no limit) the socket gives up.
///
/// Events: `reconnecting` before each attempt, `reconnected` when one
/// succeeds (its handlers run before any message of the new connection and
/// before queued sends leave: resubscribe or authenticate there, and what
/// they send goes first). `closed` fires once, when the socket is finally
/// closed: after the application's close, after a close that is not
/// reconnected, or when it gives up (code 1006, the last attempt's error).
/// information() describes the current connection (its statistics start
/// again at zero after a reconnect). A message accepted (send completed)
/// before the drop but not delivered is not sent again: the library cannot
/// know what the server received; use acknowledgements in your protocol for
/// at-least-once delivery.
struct ReconnectOptions {
  /// Reconnect automatically (false by default: a dropped connection is
  /// reported by the closed event, as on Windows).
  bool enable = false;
  /// Base delay of the first attempt; 500 ms: a restarting server is
  /// usually back within a second, and a fast first retry rides a blip.
  /// Must be > 0.
  std::chrono::milliseconds initial_delay{500};
  /// Cap of the delay; 30 s, so a long outage costs a connect every half
  /// minute per client. Must be >= initial_delay.
  std::chrono::milliseconds max_delay{30'000};
  /// Fraction of the delay drawn at random, 0..1; 0.5 by default, so clients
  /// dropped together by a server restart do not return in one wave.
  double jitter = 0.5;
  /// Failed attempts after one drop before the socket gives up; 0 (default):
  /// no limit (until close() or destruction).
  std::size_t max_attempts = 0;
  /// Sends while disconnected: queued (default) or failed at once.
  ReconnectSendPolicy send_policy = ReconnectSendPolicy::queue;
  /// Bounds of the queue (send_policy queue): at most this many messages and
  /// bytes of payload wait for the reconnect; 1024 and 1 MiB (the default
  /// outbound buffer) by default. Both must be > 0 with the queue policy.
  std::size_t max_queued_messages = 1024;
  std::size_t max_queued_bytes = std::size_t{1} << 20;
  /// Seed of the jitter's pseudo-random sequence; 0 (default): a random seed
  /// per socket. A fixed seed makes the delays reproducible (tests).
  std::uint64_t jitter_seed = 0;
};

/// Counters and rates of one connection (Windows: BandwidthStatistics, extended).
struct BandwidthStatistics {
  std::uint64_t bytes_sent = 0;      ///< wire bytes written, frame headers included
  std::uint64_t bytes_received = 0;  ///< wire bytes read, frame headers included
  std::uint64_t messages_sent = 0;
  std::uint64_t messages_received = 0;
  std::uint64_t frames_sent = 0;
  std::uint64_t frames_received = 0;
  std::uint64_t outbound_bits_per_second = 0;  ///< estimate over the last second or so
  std::uint64_t inbound_bits_per_second = 0;
};

/// A host (name or numeric address) and a port.
struct HostEndpoint {
  std::string host;
  std::uint16_t port = 0;
};

/// permessage-deflate settings (RFC 7692) of a client socket or a listener:
/// whether to offer (client) or accept (server) compression, the parameters to
/// offer or accept, zlib's level and memory level, and the size under which a
/// message is sent uncompressed. See protocol::DeflateConfig for each field and
/// its default, and docs/deflate.md for the memory each choice costs.
using DeflateOptions = protocol::DeflateConfig;
/// The permessage-deflate parameters both sides agreed on.
using DeflateParameters = protocol::DeflateParams;

/// Settings shared by both socket types (Windows: IWebSocketControl(2)).
class WebSocketControl {
public:
  /// Subprotocols offered in Sec-WebSocket-Protocol, in preference order. Each
  /// must be a non-empty HTTP token (RFC 6455 4.1), no duplicates.
  [[nodiscard]] std::vector<std::string> supported_protocols() const;
  void supported_protocols(std::vector<std::string> protocols);
  void add_supported_protocol(std::string protocol);

  /// Credential sent to the server with HTTP Basic (Authorization header).
  [[nodiscard]] std::optional<Credential> server_credential() const;
  void server_credential(Credential credential);

  /// Proxy to tunnel through: "http://host:port" (HTTP CONNECT) or
  /// "socks5://host:port" (SOCKS5, RFC 1928); empty: connect directly.
  [[nodiscard]] std::string proxy() const;
  void proxy(std::string uri);
  /// Credential for the proxy (HTTP Basic, or SOCKS5 user/password, RFC 1929).
  [[nodiscard]] std::optional<Credential> proxy_credential() const;
  void proxy_credential(Credential credential);

  /// Outbound buffer: a send completes once its data is accepted into this
  /// buffer; while more than this many bytes wait to be written, sends wait
  /// and the socket stops reading (backpressure: pongs and the close frame
  /// count too; reading resumes once the data drains below it). 1 MiB by
  /// default: deep enough to keep a fast link busy, small enough to bound
  /// memory per connection. Must be > 0.
  [[nodiscard]] std::size_t outbound_buffer_size_in_bytes() const;
  void outbound_buffer_size_in_bytes(std::size_t bytes);

  /// Interval of unsolicited pongs (RFC 6455 5.5.3 heartbeat, as on Windows);
  /// zero (default): none.
  [[nodiscard]] std::chrono::milliseconds desired_unsolicited_pong_interval() const;
  void desired_unsolicited_pong_interval(std::chrono::milliseconds interval);

  /// Keep-alive: a ping after this much time without any received data; zero
  /// (default): none. With keep_alive_timeout: if no pong (or any data) arrives
  /// within it, the peer is dead and the connection is failed (closed event
  /// with 1006 and `error::dead_peer`).
  [[nodiscard]] std::chrono::milliseconds keep_alive_interval() const;
  void keep_alive_interval(std::chrono::milliseconds interval);
  /// Pong timeout of the keep-alive; 10 s by default. Must be > 0.
  [[nodiscard]] std::chrono::milliseconds keep_alive_timeout() const;
  void keep_alive_timeout(std::chrono::milliseconds timeout);

  /// Certificate errors to accept anyway (wss). Default: none (secure).
  [[nodiscard]] std::vector<ChainValidationResult> ignorable_server_certificate_errors() const;
  void ignorable_server_certificate_errors(std::vector<ChainValidationResult> errors);
  /// Extra trust anchors (PEM file) in addition to the system store; empty:
  /// none. The setter reads the file: std::invalid_argument naming it and the
  /// reason ("trusted_ca_file: file '/x.pem' cannot be read: No such file or
  /// directory") when it cannot be read or holds no PEM certificate.
  [[nodiscard]] std::string trusted_ca_file() const;
  void trusted_ca_file(std::string path);
  /// Client certificate for mutual TLS. The setter loads both files as a
  /// connect would: std::invalid_argument naming the file and the reason
  /// ("client_certificate: certificate_file '/x.pem' cannot be read: No such
  /// file or directory"; a file without a PEM certificate or unencrypted key;
  /// a key that does not match the certificate), and when a name is empty.
  /// The files are read again at connect; one that became unusable since
  /// fails the connect with `error::certificate_file_unusable`
  /// (WebErrorStatus::certificate_is_invalid).
  [[nodiscard]] std::optional<ClientCertificate> client_certificate() const;
  void client_certificate(ClientCertificate certificate);

  /// TCP_NODELAY; on by default: messages leave at once (frames are already
  /// gathered per loop turn, so Nagle only adds latency).
  [[nodiscard]] bool no_delay() const;
  void no_delay(bool value);

  /// Bound on the whole connect (resolve, TCP, proxy, TLS, opening handshake).
  /// 60 s by default. Must be > 0.
  [[nodiscard]] std::chrono::milliseconds connect_timeout() const;
  void connect_timeout(std::chrono::milliseconds timeout);
  /// A send that waits longer than this for room in the outbound buffer, or
  /// whose bytes are not written within it, ends the connection: a 1008
  /// (policy violation) close frame is queued behind the data, and after
  /// close_timeout TCP is torn down; sends and the closed event report
  /// `error::timed_out`. 30 s by default. Must be > 0.
  [[nodiscard]] std::chrono::milliseconds send_timeout() const;
  void send_timeout(std::chrono::milliseconds timeout);
  /// A read_async (StreamWebSocket) that gets no data within this completes
  /// with `error::timed_out`; the socket stays usable. 30 s by default. > 0.
  [[nodiscard]] std::chrono::milliseconds receive_timeout() const;
  void receive_timeout(std::chrono::milliseconds timeout);
  /// Bound on the close handshake (waiting for the peer's close frame and
  /// the end of the TCP connection). 5 s by default. Must be > 0.
  [[nodiscard]] std::chrono::milliseconds close_timeout() const;
  void close_timeout(std::chrono::milliseconds timeout);

  /// permessage-deflate (RFC 7692; the Windows API has none). Off by default
  /// (`enable` false), as in protocol::DeflateConfig: compression costs CPU and
  /// per-connection memory, and compressing secrets beside data an attacker
  /// chooses leaks them through sizes (CRIME/BREACH). With `enable`, the
  /// opening handshake offers the extension with these parameters; if the
  /// server accepts, messages of at least `compress_threshold` bytes are sent
  /// compressed (unless a send opts out, SendOptions::compress) and compressed
  /// messages are inflated before delivery, max_message_size bounding the
  /// inflated size (close 1009) and data that does not inflate closing with
  /// 1007. A server that declines leaves the connection uncompressed; one
  /// that answers with parameters not offered fails the connect
  /// (`error::bad_extension_offer` or `error::unexpected_extension`).
  /// information().deflate_parameters() shows what was agreed. Throws
  /// std::invalid_argument for values out of range (check_deflate_config).
  [[nodiscard]] DeflateOptions deflate() const;
  void deflate(DeflateOptions options);

protected:
  explicit WebSocketControl(std::shared_ptr<detail::Session> s) : session_(std::move(s)) {}
  std::shared_ptr<detail::Session> session_;
};

/// Settings of a MessageWebSocket (Windows: MessageWebSocketControl).
class MessageWebSocketControl : public WebSocketControl {
public:
  explicit MessageWebSocketControl(std::shared_ptr<detail::Session> s)
      : WebSocketControl(std::move(s)) {}

  /// Type of the messages sent by send_async (binary by default, as on
  /// Windows). May change at any time, also after connect.
  [[nodiscard]] SocketMessageType message_type() const;
  void message_type(SocketMessageType type);

  /// Largest received message, in bytes; a larger one fails the connection
  /// with close code 1009. 64 MiB by default; `unlimited_message_size` for none.
  [[nodiscard]] std::uint64_t max_message_size() const;
  void max_message_size(std::uint64_t bytes);
  static constexpr std::uint64_t unlimited_message_size = ~std::uint64_t{0};

  /// Full messages (default) or pieces as they arrive.
  [[nodiscard]] MessageWebSocketReceiveMode receive_mode() const;
  void receive_mode(MessageWebSocketReceiveMode mode);

  /// In partial_message mode, the size a piece reaches before message_received
  /// fires: bytes are gathered until there are at least this many, or the
  /// message ends (its last piece may be smaller). 64 KiB by default, so a
  /// message sent in tiny frames, or compressed data, arrives in pieces of a
  /// useful size (an echo or relay that sends each piece on as a frame makes
  /// few frames; Node ws refuses more than 16,384). Large frames still arrive
  /// without a copy. A connection holds at most this many bytes of a message
  /// (plus, compressed, about 1 MiB: the output of one inflate step).
  /// 1: each piece as it arrives. Must be 1..max_partial_message_threshold
  /// (std::invalid_argument otherwise). No effect in full_message mode.
  [[nodiscard]] std::size_t partial_message_threshold() const;
  void partial_message_threshold(std::size_t bytes);
  /// 64 MiB, the default max_message_size: above it use full_message mode.
  static constexpr std::size_t max_partial_message_threshold = std::size_t{64} << 20;
  /// The default of partial_message_threshold (and of the listener's option).
  static constexpr std::size_t default_partial_message_threshold = std::size_t{64} << 10;

  /// Automatic reconnection (ReconnectOptions; off by default). Client role
  /// only; like the other settings, only before connect_async
  /// (std::logic_error after, or on a server-role socket). Throws
  /// std::invalid_argument naming the field and its rule: "reconnect:
  /// initial_delay must be greater than zero", "reconnect: max_delay must be
  /// at least initial_delay", "reconnect: jitter must be between 0 and 1",
  /// "reconnect: max_queued_messages must be greater than zero with
  /// ReconnectSendPolicy::queue" (and max_queued_bytes likewise).
  [[nodiscard]] ReconnectOptions reconnect() const;
  void reconnect(ReconnectOptions options);
};

/// Settings of a StreamWebSocket (Windows: StreamWebSocketControl). Messages of
/// any size are streamed, so there is no max message size.
class StreamWebSocketControl : public WebSocketControl {
public:
  explicit StreamWebSocketControl(std::shared_ptr<detail::Session> s)
      : WebSocketControl(std::move(s)) {}
};

/// Read-only facts about a connection (Windows: MessageWebSocketInformation,
/// StreamWebSocketInformation). Values are snapshots, valid at any time (empty
/// or zero before they are known).
class WebSocketInformation {
public:
  explicit WebSocketInformation(std::shared_ptr<detail::Session> s) : session_(std::move(s)) {}

  /// Local address and port of the TCP connection.
  [[nodiscard]] HostEndpoint local_address() const;
  /// Remote address (numeric) and port of the TCP connection (the proxy's when
  /// tunnelling).
  [[nodiscard]] HostEndpoint remote_address() const;
  /// Negotiated subprotocol; empty if none.
  [[nodiscard]] std::string protocol() const;
  /// Negotiated extensions (Sec-WebSocket-Extensions answer); empty if none.
  [[nodiscard]] std::string extensions() const;
  /// The permessage-deflate parameters agreed in the opening handshake;
  /// nullopt when the connection is not compressed (or not open yet).
  [[nodiscard]] std::optional<DeflateParameters> deflate_parameters() const;
  /// The connection's counters and rates; any thread. On the socket's loop
  /// thread (in an event handler) the counters are exact at the call: the
  /// message being handled and the sends made before the call are counted. On
  /// another thread: the received counters include every message whose
  /// handler has started, the sent ones are as of the loop's last read or
  /// write. The rates are estimated about once a second. Zero before connect.
  [[nodiscard]] BandwidthStatistics bandwidth_statistics() const;
  /// Round-trip time of the last keep-alive ping answered; nullopt if none yet.
  [[nodiscard]] std::optional<std::chrono::microseconds> ping_round_trip_time() const;
  /// The server certificate (wss, client role); nullopt otherwise.
  [[nodiscard]] std::optional<Certificate> server_certificate() const;
  [[nodiscard]] std::vector<ChainValidationResult> server_certificate_errors() const;
  [[nodiscard]] SocketSslErrorSeverity server_certificate_error_severity() const;
  /// The chain the server sent after its own certificate.
  [[nodiscard]] std::vector<Certificate> server_intermediate_certificates() const;

private:
  std::shared_ptr<detail::Session> session_;
};

using MessageWebSocketInformation = WebSocketInformation;
using StreamWebSocketInformation = WebSocketInformation;

}  // namespace duplex
