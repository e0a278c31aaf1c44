// duplex/websocket_listener.hpp: WebSocketListener, the server side.
//
//   duplex::WebSocketListenerOptions options;
//   options.supported_protocols = {"chat"};
//   duplex::WebSocketListener listener(options);
//   listener.connection_received([](duplex::WebSocketListenerConnectionReceivedEventArgs& args) {
//     auto ws = args.take_message_websocket();   // open, server-role MessageWebSocket
//     ws.message_received(...);                   // its first message comes after this
//     ...                                         // keep `ws` alive as long as needed
//   });
//   listener.listen("127.0.0.1", 0);
//   std::cout << listener.local_port() << '\n';
//   ...
//   listener.stop(std::chrono::seconds(5));      // 1001 to every connection
//
// The listener runs its own event loops: `threads` threads, each running one
// asio::io_context; or, constructed with the application's io_contexts, it
// runs on those and starts no thread (see the constructors). Accepted
// connections are spread over the loops round-robin; each connection lives on
// one loop, and its events (the hooks, the connection_received event, and then
// every event of the socket handed over) run on that loop's thread.
//
// Before a connection becomes a WebSocket, the listener runs the TLS handshake
// (wss), reads the HTTP request (bounded by max_header_size and by
// handshake_timeout from the accept), validates it (RFC 6455 4.2.1), checks the
// Origin, selects a subprotocol, runs the handshake_requested hook, and answers 101
// or an HTTP error (400, 403, 405, 426, 431, 503, or the hook's status) followed
// by a clean close. A plain HTTP request (no WebSocket upgrade) on the same port
// goes to the http_requested handler when one is set (duplex/http_server.hpp). No timer object
// exists per connection: each loop sweeps its handshakes in deadline order.
//
// Thread safety: every member may be called from any thread, except that stop()
// and the destructor must not be called from a handler running on one of the
// listener's loops (they wait for those loops). Handlers are set before the first
// listen() (std::logic_error after).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/stream.hpp>

#include <duplex/http_server.hpp>
#include <duplex/message_websocket.hpp>
#include <duplex/protocol/handshake.hpp>
#include <duplex/stream_websocket.hpp>
#include <duplex/websocket_control.hpp>

namespace duplex {

namespace detail {
class ListenerImpl;
}  // namespace detail

/// The socket type a listener hands over for a connection (decided before the
/// 101 answer, so that the socket is open when the application gets it).
enum class ListenerSocketType : std::uint8_t {
  message_websocket,  ///< MessageWebSocket: whole messages (or pieces, partial mode)
  stream_websocket,   ///< StreamWebSocket: a binary byte stream
};

/// TLS settings of a wss:// listener (OpenSSL; TLS 1.2 or later). The suite
/// policy is fixed: TLS 1.2 accepts only ECDHE key exchange with AEAD ciphers
/// (ECDHE-ECDSA/RSA with AES-GCM or CHACHA20-POLY1305, Mozilla's
/// "intermediate" profile without DHE), so clients limited to plain-RSA key
/// exchange (no forward secrecy) or CBC suites fail the TLS handshake; TLS 1.3
/// uses OpenSSL's defaults. ALPN: "http/1.1" is selected when the client
/// offers it; a client that offers ALPN without it gets the
/// no_application_protocol alert (RFC 7301 3.2), one without ALPN is served.
/// Either an RSA or an ECDSA certificate works. See docs/server.md.
struct ListenerTlsOptions {
  /// PEM file holding the server certificate first, then its intermediates.
  std::string certificate_chain_file;
  /// PEM file of the certificate's private key (unencrypted).
  std::string private_key_file;
  /// PEM file of the CA certificates that client certificates must chain to.
  /// Empty: no client certificate is requested.
  std::string client_ca_file;
  /// With client_ca_file: refuse (fail the TLS handshake) a client that sends no
  /// valid certificate. Without it, a client certificate is optional but, when
  /// sent, must verify.
  bool require_client_certificate = false;
};

/// The settings of a WebSocketListener, fixed at construction.
struct WebSocketListenerOptions {
  /// Event-loop threads; 0: std::thread::hardware_concurrency() (one per core),
  /// at least 1. With the application's io_contexts (the constructor taking
  /// them), 0 or their number: one loop per context, no thread.
  std::size_t threads = 0;
  /// wss:// when set; ws:// otherwise.
  std::optional<ListenerTlsOptions> tls;

  /// Bound on everything before the 101 answer leaves (TLS handshake, reading
  /// the request, hooks, writing the answer), counted from the accept. 10 s: a
  /// real client needs one round trip; a client trickling its request byte by
  /// byte (slowloris) holds a socket no longer than this. Must be > 0.
  std::chrono::milliseconds handshake_timeout{std::chrono::seconds(10)};
  /// Largest request header block (request line included); a larger one is
  /// answered 431. 16 KiB: browsers send under 2 KiB, cookies included. At
  /// least 256.
  std::size_t max_header_size = protocol::default_max_header_size;
  /// Largest body of a plain HTTP request given to the http_requested
  /// handler (by its Content-Length, before any of it is read); a larger one
  /// is answered 413. 64 KiB: health checks and small JSON posts. Zero: only
  /// requests without a body are taken.
  std::size_t max_http_body_size = protocol::default_max_http_body_size;
  /// Connections (handshaking or open) beyond which a new one is answered 503
  /// and closed. 100,000: above what one process is usually given file
  /// descriptors for, so the kernel limit, not this, is the usual bound. > 0.
  std::size_t max_connections = 100'000;

  /// Largest message a handed-over MessageWebSocket accepts (close 1009
  /// beyond). 64 MiB, as for the client. Must be > 0.
  std::uint64_t max_message_size = std::uint64_t{64} << 20;
  /// How a handed-over MessageWebSocket delivers messages (as its control
  /// receive_mode() on the client): whole (default), or piece by piece as
  /// they arrive (partial_message: no reassembly copy, for large messages
  /// or a relay that forwards pieces at once).
  MessageWebSocketReceiveMode receive_mode = MessageWebSocketReceiveMode::full_message;
  /// partial_message mode: the size a piece reaches before it is delivered
  /// (the last piece of a message may be smaller), as the control
  /// MessageWebSocketControl::partial_message_threshold. 64 KiB. Must be
  /// 1..MessageWebSocketControl::max_partial_message_threshold.
  std::size_t partial_message_threshold =
      MessageWebSocketControl::default_partial_message_threshold;
  /// Keep-alive: a ping after this long without received data; if no data
  /// arrives within keep_alive_timeout after it, the peer is dead and the
  /// connection is failed (idle timeout). 30 s: under the usual NAT and proxy
  /// idle limits (60 s and more). Zero: no pings, no idle timeout.
  std::chrono::milliseconds keep_alive_interval{std::chrono::seconds(30)};
  /// Wait for the keep-alive pong. 10 s. Must be > 0.
  std::chrono::milliseconds keep_alive_timeout{std::chrono::seconds(10)};
  /// Outbound buffer per connection: sends wait while more than this is
  /// queued, and the connection stops reading while it is over (its pongs and
  /// close frame count too), so a peer that sends without reading is slowed
  /// by TCP instead of growing the server's memory. 256 KiB: a server holds
  /// many connections, so a smaller per-connection bound than the client's
  /// 1 MiB. Must be > 0.
  std::size_t outbound_buffer_size = 256 * 1024;
  /// Outbound data that makes no progress for this long (a client that does
  /// not read) ends the connection: a 1008 (policy violation) close frame is
  /// queued behind the data, reading resumes to find the client's answer, and
  /// after close_timeout TCP is torn down; waiting sends and the closed event
  /// report `error::timed_out`. 30 s. Must be > 0.
  std::chrono::milliseconds send_timeout{std::chrono::seconds(30)};
  /// Bound on the closing handshake of a connection. 5 s. Must be > 0.
  std::chrono::milliseconds close_timeout{std::chrono::seconds(5)};
  /// TCP_NODELAY on accepted sockets; on: frames are already gathered per loop
  /// turn, so Nagle only adds latency.
  bool no_delay = true;

  /// Subprotocols this server speaks. The first one the client offers (RFC 6455
  /// 4.1: the client lists them by preference) is selected before the hook
  /// runs; none when empty or nothing matches. Each must be an HTTP token.
  std::vector<std::string> supported_protocols;
  /// Origins allowed to connect (exact, case-insensitive, e.g.
  /// "https://example.com"); a request with another Origin is answered 403.
  /// Empty: any origin. Requests without Origin (non-browser clients) pass.
  std::vector<std::string> allowed_origins;
  /// Listen backlog; 0: the system's maximum (SOMAXCONN).
  int backlog = 0;
  /// The socket type handed over; the hook may choose per request.
  ListenerSocketType socket_type = ListenerSocketType::message_websocket;

  /// permessage-deflate (RFC 7692). Off by default (`enable` false), for the
  /// reasons given at WebSocketControl::deflate: CPU, memory per connection,
  /// and CRIME/BREACH. With `enable`, the first acceptable offer of a client
  /// is accepted (others declined, RFC 7692 5) and answered in the 101 with
  /// these limits: `server_no_context_takeover` keeps no compression window
  /// between messages, `client_no_context_takeover` asks the same of the
  /// client, and without context takeover an idle connection holds no zlib
  /// memory. The defaults here are protocol::default_server_deflate_config():
  /// the server keeps no window, a client keeps a 4 KiB one (or none when it
  /// cannot be limited), so an idle compressed connection holds at most about
  /// 11 KiB of zlib state; context takeover in both directions at full
  /// windows is server_no_context_takeover = false and client_max_window_bits
  /// = 15 (better ratio on small messages, about 100-300 KiB per connection;
  /// docs/deflate.md has the figures). A client header that does not
  /// follow the RFC 6455 9.1 grammar is declined (no extension), not refused.
  /// The handed-over socket's information() shows the agreed parameters;
  /// sends compress unless SendOptions::compress is false. Checked by
  /// protocol::check_deflate_config (std::invalid_argument naming the field).
  DeflateOptions deflate = protocol::default_server_deflate_config();
};

/// The opening handshake request of a connection, as the hooks and the
/// connection_received event see it. Values are copies (valid as long as the
/// object).
///
/// The parsed HTTP request is its base: `method` (always "GET" when the hooks
/// see it), `target` (e.g. "/chat?room=1"), `version_minor` (HTTP/1.<minor>,
/// at least 1) and `headers` (every header, in order, as received). The
/// listener parses the request straight into it.
struct WebSocketRequest : protocol::HttpRequest {
  std::string host;                    ///< Host header
  std::string origin;                  ///< Origin header; empty: none
  std::vector<std::string> protocols;  ///< offered subprotocols, in order
  std::string extensions;              ///< Sec-WebSocket-Extensions offer (raw)
  HostEndpoint remote_address;         ///< the client's address (numeric) and port
  HostEndpoint local_address;          ///< our address and port of the connection
  bool secure = false;                 ///< wss:// (TLS)
  /// With TLS and a verified client certificate: its subject in one line
  /// ("CN=alice,O=example"); empty otherwise.
  std::string client_certificate_subject;

  /// The target's path (before '?').
  [[nodiscard]] std::string_view path() const noexcept;
  /// The target's query (after '?', without it); empty if none.
  [[nodiscard]] std::string_view query() const noexcept;
  /// The first header named `name` (case-insensitive), if any.
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const noexcept;
};

/// What the handshake_requested hook sees and decides: accept (default) with a
/// subprotocol and extra response headers, or refuse with an HTTP status.
/// Lives for the hook call only. Not thread-safe (used on the connection's loop).
class WebSocketHandshakeContext {
public:
  explicit WebSocketHandshakeContext(const WebSocketRequest& request) noexcept
      : request_(&request) {}

  [[nodiscard]] const WebSocketRequest& request() const noexcept { return *request_; }

  /// The subprotocol the 101 answer selects; empty: none. Preset from
  /// WebSocketListenerOptions::supported_protocols.
  [[nodiscard]] const std::string& selected_protocol() const noexcept { return protocol_; }
  /// Selects `protocol` (RFC 6455 4.2.2: one of those the client offered), or
  /// none when empty. Throws std::invalid_argument if it was not offered.
  void select_protocol(std::string_view protocol);

  /// Adds a header to the 101 answer. Throws std::invalid_argument for a name
  /// that is not an HTTP token, a value holding CR, LF or NUL, or a header the
  /// handshake sets itself (protocol::is_valid_header).
  void add_response_header(std::string_view name, std::string_view value);
  [[nodiscard]] const protocol::HttpHeaders& response_headers() const noexcept { return headers_; }

  /// The socket type the connection will be handed over as; preset from
  /// WebSocketListenerOptions::socket_type.
  [[nodiscard]] ListenerSocketType socket_type() const noexcept { return socket_type_; }
  void socket_type(ListenerSocketType type) noexcept { socket_type_ = type; }

  /// Refuses the connection: the answer is `status` (200-599, e.g. 401, 403,
  /// 404) with `body` as text/plain and `headers`, then the connection closes.
  /// Throws std::invalid_argument for a status outside 200-599 or a header
  /// that is invalid or one the answer sets (Connection, Content-Type,
  /// Content-Length, Transfer-Encoding).
  void reject(int status, std::string_view body = {}, protocol::HttpHeaders headers = {});
  /// The status given to reject(); 0 while accepted.
  [[nodiscard]] int rejected_status() const noexcept { return reject_status_; }
  [[nodiscard]] const std::string& rejected_body() const noexcept { return reject_body_; }
  [[nodiscard]] const protocol::HttpHeaders& rejected_headers() const noexcept {
    return reject_headers_;
  }

private:
  friend class detail::ListenerImpl;
  const WebSocketRequest* request_;
  std::string protocol_;
  protocol::HttpHeaders headers_;
  ListenerSocketType socket_type_ = ListenerSocketType::message_websocket;
  int reject_status_ = 0;
  std::string reject_body_;
  protocol::HttpHeaders reject_headers_;
};

/// The event raised when a connection completed its opening handshake: the 101
/// answer is written and the socket is open. Lives for the handler call only.
class WebSocketListenerConnectionReceivedEventArgs {
public:
  WebSocketListenerConnectionReceivedEventArgs(const WebSocketRequest& request,
                                               const std::string& protocol,
                                               std::optional<MessageWebSocket>& message,
                                               std::optional<StreamWebSocket>& stream) noexcept
      : request_(&request), protocol_(&protocol), message_(&message), stream_(&stream) {}

  /// The request the connection was opened with.
  [[nodiscard]] const WebSocketRequest& request() const noexcept { return *request_; }
  /// The subprotocol the 101 answer selected; empty: none.
  [[nodiscard]] const std::string& protocol() const noexcept { return *protocol_; }
  /// The type of the socket (WebSocketListenerOptions::socket_type, or the
  /// hook's choice).
  [[nodiscard]] ListenerSocketType socket_type() const noexcept {
    return stream_->has_value() ? ListenerSocketType::stream_websocket
                                : ListenerSocketType::message_websocket;
  }
  /// True while the socket has not been taken or dropped.
  [[nodiscard]] bool available() const noexcept {
    return message_->has_value() || stream_->has_value();
  }

  /// Takes the server-role MessageWebSocket: open, with the listener's limits,
  /// keep-alive and timeouts (its control() settings are fixed, except the
  /// message type). Its first message event comes after this handler returns,
  /// so register handlers here; operations may start here too. Throws
  /// std::logic_error if the socket type is stream_websocket or the socket was
  /// already taken or dropped. Destroy the socket before the listener.
  MessageWebSocket take_message_websocket();
  /// The same for a StreamWebSocket (binary stream, no message size limit).
  StreamWebSocket take_stream_websocket();
  /// Destroys the untaken socket: the connection is failed (TCP closed, no
  /// close frame). The same happens when the handler returns without taking it.
  void drop() noexcept;

private:
  const WebSocketRequest* request_;
  const std::string* protocol_;
  std::optional<MessageWebSocket>* message_;
  std::optional<StreamWebSocket>* stream_;
};

/// Counters of one event loop of a listener (WebSocketListener::metrics()).
struct ListenerLoopMetrics {
  /// Connections on this loop between their accept and the end of their
  /// handshake stage (hand-over, or the close after an answer or a failure):
  /// the loop's handshake queue depth (a gauge).
  std::uint64_t handshakes_pending = 0;
  /// Handshakes that ended without an answer: TLS handshake failed, the client
  /// left or sent nothing in time (handshake_timeout), the answer could not
  /// be written, or stop() closed them.
  std::uint64_t handshake_errors = 0;
  /// Answers to upgrade requests (101 or refusals), and to requests refused
  /// before they could be parsed (400, 431).
  std::uint64_t websocket_answers = 0;
  std::uint64_t http_answers = 0;  ///< answers to plain HTTP requests
};

/// A snapshot of a listener's counters since its construction. Counters are
/// monotonic; gauges say "now". The values are read one by one from relaxed
/// atomics per loop (summed here), so a snapshot taken under load may be off
/// by the events in flight between two reads.
struct ListenerMetrics {
  /// Connections counted against max_connections (connection_count()): a gauge.
  std::size_t open_connections = 0;
  /// Answers to WebSocket upgrade requests by status: 101 for each accepted
  /// handshake, else the refusal's status (400, 403, 426, 503, the hook's...);
  /// requests refused before they could be parsed (400, 431) count here too.
  std::map<int, std::uint64_t> websocket_answers;
  /// Answers to plain HTTP requests by status (the http_requested handler's,
  /// or the listener's own 400, 411, 413, 431, 501, 503 before it runs).
  std::map<int, std::uint64_t> http_answers;
  /// One entry per event loop, in loop order.
  std::vector<ListenerLoopMetrics> loops;
};

/// A WebSocket server: accepts ws:// or wss:// connections on one or more
/// addresses and hands each one to the application.
///
/// Lifetime: the destructor stops the listener (stop() with a zero timeout:
/// connections still open get a 1001 close frame queued, then are cut) and
/// joins its threads. Sockets taken from it may be destroyed before or after
/// it: a loop whose sockets outlive the listener keeps running on its own
/// thread, their connections closed, so their operations complete (with an
/// error) and their events run; the loop frees itself when the last of them
/// is destroyed. On the application's io_contexts, those sockets simply stay
/// on them (see the constructor taking them for the rules).
class WebSocketListener {
public:
  using HandshakeRequestedHandler = std::function<void(WebSocketHandshakeContext&)>;
  using ConnectionReceivedHandler =
      std::function<void(WebSocketListenerConnectionReceivedEventArgs&)>;
  using HttpRequestedHandler = std::function<void(const HttpServerRequest&, HttpServerResponse&)>;

  /// Checks `options` (std::invalid_argument naming the field and the rule)
  /// and, for TLS, loads the certificate, key and CA files (std::system_error
  /// if one cannot be loaded or the key does not match). Starts no thread.
  explicit WebSocketListener(WebSocketListenerOptions options = {});

  /// A listener on the application's event loops: one loop per io_context in
  /// `contexts` (connections spread over them round-robin), and no thread of
  /// its own. Everything the listener does (accepting, handshakes, hooks,
  /// events, the sockets handed over) runs in handlers posted to those
  /// io_contexts, which the application runs as it likes: each by ONE
  /// thread at a time (a connection's events are not synchronised against
  /// each other otherwise), e.g. `ctx.run()` in a thread per context. The
  /// listener holds no work guard: while it listens its pending accepts
  /// keep run() busy; after stop() it leaves nothing behind (acceptors
  /// closed, lingering handshakes closed, its timers ended), so a context
  /// whose sockets are all destroyed runs out of work and run() returns.
  ///
  /// Lifetime: each io_context must outlive the listener and every socket
  /// taken from it (destroying one before is undefined behaviour, as for any
  /// Asio object). stop() and the destructor wait for each io_context to run
  /// a handler of theirs, so call them from a thread that does not run one of
  /// them (std::logic_error from stop() otherwise), while the application's
  /// threads run them, or after the contexts stopped (io_context::stopped():
  /// ctx.stop() was called or run() ran out of work, and no thread is inside
  /// run() any more): a stopped context is then run (restart(), poll(),
  /// stop()) on the calling thread for as long as they need, so the
  /// application's own ready handlers may run there too. A context that is
  /// neither run nor stopped makes them wait forever.
  ///
  /// Throws std::invalid_argument for an empty `contexts`, a null or repeated
  /// entry, options.threads other than 0 or contexts.size(), and as the
  /// constructor above for the options and the TLS files.
  WebSocketListener(std::span<asio::io_context* const> contexts,
                    WebSocketListenerOptions options = {});
  /// The same with one io_context.
  explicit WebSocketListener(asio::io_context& context, WebSocketListenerOptions options = {});

  WebSocketListener(const WebSocketListener&) = delete;
  WebSocketListener& operator=(const WebSocketListener&) = delete;
  ~WebSocketListener();

  /// The hook run for each valid WebSocket request before it is answered, on
  /// the connection's loop. An exception from it refuses the request with 500.
  /// Only before the first listen() (std::logic_error after).
  void handshake_requested(HandshakeRequestedHandler handler);
  /// The handler receiving each opened connection, on the connection's loop.
  /// Without one, connections are closed after their 101; an exception from
  /// it drops that connection. Only before the first listen()
  /// (std::logic_error after).
  void connection_received(ConnectionReceivedHandler handler);

  /// The handler of plain HTTP requests on the listener's ports (duplex/http_server.hpp):
  /// each request whose Upgrade header does not hold "websocket" (any method)
  /// goes to it once its body is read, on the connection's loop, and gets the
  /// response it fills, with `Connection: close`, after which the connection
  /// closes (one request per connection, no keep-alive). Without a handler,
  /// such requests are answered 426 (GET) or 405 (other methods), as before.
  ///
  /// Before the handler runs, the listener answers by itself: 503 when over
  /// max_connections (a load balancer takes it as "not ready"),
  /// 431 for a header block over max_header_size, 400 for a malformed
  /// request or Content-Length, 413 for a body over max_http_body_size, 411
  /// for a chunked body and 501 for another Transfer-Encoding (bodies are read
  /// by Content-Length only). `Expect: 100-continue` is answered 100 before
  /// the body is read. Reading the request and body and writing the answer
  /// are bounded by handshake_timeout from the accept. An exception from the
  /// handler, or a response the answer cannot hold (a body with 204 or 304),
  /// is answered 500. The handler blocks its loop while it runs: keep it
  /// short. It may be called concurrently on different loops. stop() stops
  /// accepting; a request already on its way is still answered (within
  /// handshake_timeout), one not yet sent is closed. Only before
  /// the first listen() (std::logic_error after).
  void http_requested(HttpRequestedHandler handler);

  /// Binds `address` (numeric IPv4 or IPv6, e.g. "127.0.0.1", "::1", "0.0.0.0",
  /// "::"; an IPv6 listener accepts IPv6 only) and `port` (0: an ephemeral port)
  /// and starts accepting; the first call starts the loop threads. May be
  /// called several times for several addresses. Returns the bound endpoint.
  /// Throws std::invalid_argument for an address that is not numeric,
  /// std::system_error if the bind or listen fails, std::logic_error after
  /// stop().
  HostEndpoint listen(std::string_view address, std::uint16_t port);

  /// Binds a Unix domain socket at `path` (an absolute or relative file path,
  /// at most 107 bytes) and starts accepting on it, like listen(): for a
  /// reverse proxy on the same host (nginx `proxy_pass http://unix:PATH:`,
  /// HAProxy `server s unix@PATH`) or local clients (`ws+unix://PATH`). The
  /// connections are the same as over TCP (handshake, hooks, HTTP handler,
  /// limits); their request's remote_address is {"", 0} and local_address
  /// {path, 0}; no_delay does not apply. The file must not exist
  /// (std::system_error with EADDRINUSE otherwise); it is created with the
  /// process's umask and is not removed by the listener: remove it after
  /// the listener is destroyed. Returns {path, 0}, which local_endpoints()
  /// then lists. Throws std::invalid_argument for an empty path, one over 107
  /// bytes or holding NUL, std::system_error if the bind or listen fails,
  /// std::logic_error after stop().
  HostEndpoint listen_unix(const std::string& path);

  /// Takes over a WebSocket connection that the application's own server
  /// accepted and whose request it read (e.g. an HTTP server that routes
  /// one path to duplex): `socket` is the connected TCP socket, `request`
  /// the parsed request (protocol::parse_http_request parses one; another
  /// parser's result converts field by field), `rest` the bytes read past
  /// the header block, if any. The connection then goes exactly the way of
  /// one the listener accepted right after its request was parsed: the
  /// request is validated (RFC 6455 4.2.1) and refused with the same
  /// answers (400, 403, 405, 426, 503 over max_connections, the hook's
  /// status...), the Origin is checked, the subprotocol and
  /// permessage-deflate negotiated, the handshake_requested hook runs, the
  /// 101 is written and connection_received raised; a request without a
  /// WebSocket upgrade goes to the http_requested handler. It counts in
  /// metrics() and connection_count(), handshake_timeout bounds it from this
  /// call, and stop() treats it as a handshake whose request arrived.
  ///
  /// The socket's descriptor moves to the loop of the io_context `socket`
  /// was on, when the listener runs on it (see the constructor taking
  /// io_contexts), else to the next loop round-robin; `socket` is left
  /// closed. It must have no operation pending. The first adopt() starts
  /// the loops like listen() (handlers are then fixed). Returns at once:
  /// everything else happens on the loop (a refused request is no error
  /// here, the client gets its answer). Throws std::invalid_argument if
  /// `socket` is not open or not connected (it is then left as it was),
  /// std::logic_error after stop(). Thread-safe.
  void adopt(asio::ip::tcp::socket socket, protocol::HttpRequest request,
             std::string_view rest = {});
  /// The same for a wss:// connection: `stream` has completed its TLS
  /// handshake in the server role (SSL_is_init_finished), with the
  /// application's own asio::ssl::context (the listener's tls options play
  /// no part; the SSL object keeps its SSL_CTX alive). Its SSL object moves
  /// to a stream on the loop; TLS records `stream` read but did not decrypt
  /// are not carried over (a client sends nothing between its request and
  /// the 101, RFC 6455 4.1; decrypted bytes past the header block belong in
  /// `rest`). The request's `secure` is true and client_certificate_subject
  /// is filled from the peer's verified certificate. Throws
  /// std::invalid_argument as above, or if the TLS handshake is not
  /// complete or was made in the client role.
  void adopt(asio::ssl::stream<asio::ip::tcp::socket> stream, protocol::HttpRequest request,
             std::string_view rest = {});

  /// The port of the first listen(); 0 before.
  [[nodiscard]] std::uint16_t local_port() const;
  /// Every bound endpoint, in listen() order.
  [[nodiscard]] std::vector<HostEndpoint> local_endpoints() const;
  /// Connections counted against max_connections: handshaking, or handed out
  /// and not yet closed (a closed one is given back within about a second).
  [[nodiscard]] std::size_t connection_count() const noexcept;
  /// Number of event loops: the listener's threads, or the application's
  /// io_contexts it was given.
  [[nodiscard]] std::size_t thread_count() const noexcept;

  /// The listener's counters now (see ListenerMetrics): cheap enough to call
  /// per scrape (a few hundred relaxed loads per loop), from any thread,
  /// including a handler on one of the listener's loops (e.g. the
  /// http_requested handler serving them). Never throws but std::bad_alloc.
  [[nodiscard]] ListenerMetrics metrics() const;

  /// Graceful shutdown: stops accepting and sends a 1001 (going away) close
  /// frame on every connection accepted before it returned: open ones at
  /// once, one still opening (or whose close was asked for while it opened)
  /// as soon as it opens, and a handshake whose request is on its way right
  /// after its 101 (a connection that has sent nothing yet is closed). Waits
  /// up to `timeout` for them to finish their closing handshakes, then cuts
  /// those left (their closed event reports 1006 and operation_aborted). The
  /// loops keep running for the sockets already handed out until the
  /// destructor. Must not be called on one of the listener's loops
  /// (std::logic_error), including a thread running one of the application's
  /// io_contexts it was given.
  /// Returns the number of connections that had to be cut. Idempotent (a
  /// second call returns 0).
  std::size_t stop(std::chrono::milliseconds timeout = std::chrono::seconds(5));

private:
  std::shared_ptr<detail::ListenerImpl> impl_;
};

}  // namespace duplex
