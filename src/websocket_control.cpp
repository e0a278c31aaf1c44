// Controls, information and event arguments: thin views of the session.
#include <duplex/websocket_control.hpp>

#include <duplex/protocol/handshake.hpp>
#include <duplex/websocket_events.hpp>

#include <algorithm>
#include <stdexcept>

#include "detail/reconnect.hpp"
#include "detail/session.hpp"
#include "transport/tls.hpp"
#include "transport/uri.hpp"

namespace duplex {
namespace {

using detail::SessionConfig;
using std::chrono::milliseconds;

void check_positive(milliseconds d, const char* what) {
  if (d.count() <= 0)
    throw std::invalid_argument(std::string(what) + ": must be greater than zero");
}
void check_not_negative(milliseconds d, const char* what) {
  if (d.count() < 0) throw std::invalid_argument(std::string(what) + ": must not be negative");
}

void check_protocols(const std::vector<std::string>& ps) {
  for (std::size_t i = 0; i < ps.size(); ++i) {
    // RFC 6455 4.1: each subprotocol is a token, offered once.
    if (!protocol::is_token(ps[i]))
      throw std::invalid_argument("supported_protocols: '" + ps[i] + "' is not an HTTP token");
    for (std::size_t j = 0; j < i; ++j)
      if (ps[j] == ps[i])
        throw std::invalid_argument("supported_protocols: '" + ps[i] + "' is listed twice");
  }
}

void check_credential(const Credential& c, const char* what) {
  // RFC 7617 2: the user-id of Basic authentication cannot contain a colon.
  if (c.user_name.find(':') != std::string::npos)
    throw std::invalid_argument(std::string(what) + ": user name must not contain ':'");
  for (char ch : c.user_name + c.password)
    if (ch == '\r' || ch == '\n' || ch == '\0')
      throw std::invalid_argument(std::string(what) + ": must not contain CR, LF or NUL");
}

// The header's promise: a control that outlives its socket keeps its getters
// but refuses every setter.
void check_alive(const detail::Session& s) {
  if (s.detached())
    throw std::logic_error("control: the socket was destroyed; settings can no longer change");
}

}  // namespace

#define DUPLEX_GET(expr) \
  return session_->read_config([&](const SessionConfig& c) { return (expr); })
#define DUPLEX_SET(stmt)                                  \
  do {                                                    \
    check_alive(*session_);                               \
    session_->configure([&](SessionConfig& c) { stmt; }); \
  } while (false)

std::vector<std::string> WebSocketControl::supported_protocols() const {
  DUPLEX_GET(c.protocols);
}
void WebSocketControl::supported_protocols(std::vector<std::string> protocols) {
  check_protocols(protocols);
  DUPLEX_SET(c.protocols = std::move(protocols));
}
void WebSocketControl::add_supported_protocol(std::string protocol) {
  check_alive(*session_);
  session_->configure([&](SessionConfig& c) {
    auto next = c.protocols;
    next.push_back(protocol);
    check_protocols(next);
    c.protocols = std::move(next);
  });
}

std::optional<Credential> WebSocketControl::server_credential() const {
  DUPLEX_GET(c.server_credential);
}
void WebSocketControl::server_credential(Credential credential) {
  check_credential(credential, "server_credential");
  DUPLEX_SET(c.server_credential = std::move(credential));
}

std::string WebSocketControl::proxy() const {
  DUPLEX_GET(c.proxy);
}
void WebSocketControl::proxy(std::string uri) {
  if (!uri.empty()) (void)transport::parse_proxy_uri(uri);
  DUPLEX_SET(c.proxy = std::move(uri));
}
std::optional<Credential> WebSocketControl::proxy_credential() const {
  DUPLEX_GET(c.proxy_credential);
}
void WebSocketControl::proxy_credential(Credential credential) {
  check_credential(credential, "proxy_credential");
  DUPLEX_SET(c.proxy_credential = std::move(credential));
}

std::size_t WebSocketControl::outbound_buffer_size_in_bytes() const {
  DUPLEX_GET(c.loop.outbound_buffer_size);
}
void WebSocketControl::outbound_buffer_size_in_bytes(std::size_t bytes) {
  if (bytes == 0)
    throw std::invalid_argument("outbound_buffer_size_in_bytes: must be greater than zero");
  DUPLEX_SET(c.loop.outbound_buffer_size = bytes);
}

milliseconds WebSocketControl::desired_unsolicited_pong_interval() const {
  DUPLEX_GET(c.loop.unsolicited_pong_interval);
}
void WebSocketControl::desired_unsolicited_pong_interval(milliseconds interval) {
  check_not_negative(interval, "desired_unsolicited_pong_interval");
  DUPLEX_SET(c.loop.unsolicited_pong_interval = interval);
}
milliseconds WebSocketControl::keep_alive_interval() const {
  DUPLEX_GET(c.loop.keep_alive_interval);
}
void WebSocketControl::keep_alive_interval(milliseconds interval) {
  check_not_negative(interval, "keep_alive_interval");
  DUPLEX_SET(c.loop.keep_alive_interval = interval);
}
milliseconds WebSocketControl::keep_alive_timeout() const {
  DUPLEX_GET(c.loop.keep_alive_timeout);
}
void WebSocketControl::keep_alive_timeout(milliseconds timeout) {
  check_positive(timeout, "keep_alive_timeout");
  DUPLEX_SET(c.loop.keep_alive_timeout = timeout);
}

std::vector<ChainValidationResult> WebSocketControl::ignorable_server_certificate_errors() const {
  DUPLEX_GET(c.ignorable_errors);
}
void WebSocketControl::ignorable_server_certificate_errors(
    std::vector<ChainValidationResult> errors) {
  DUPLEX_SET(c.ignorable_errors = std::move(errors));
}
std::string WebSocketControl::trusted_ca_file() const {
  DUPLEX_GET(c.trusted_ca_file);
}
void WebSocketControl::trusted_ca_file(std::string path) {
  check_alive(*session_);
  // The file is read under the settings lock, after the state checks, so
  // misuse (after connect, server role) is reported before a bad file.
  session_->configure([&](SessionConfig& c) {
    if (!path.empty()) transport::check_ca_file(path);
    c.trusted_ca_file = std::move(path);
  });
}
std::optional<ClientCertificate> WebSocketControl::client_certificate() const {
  DUPLEX_GET(c.client_certificate);
}
void WebSocketControl::client_certificate(ClientCertificate certificate) {
  if (certificate.certificate_file.empty() || certificate.private_key_file.empty())
    throw std::invalid_argument("client_certificate: both file names are required");
  check_alive(*session_);
  session_->configure([&](SessionConfig& c) {
    transport::check_client_certificate(certificate);
    c.client_certificate = std::move(certificate);
  });
}

bool WebSocketControl::no_delay() const {
  DUPLEX_GET(c.loop.no_delay);
}
void WebSocketControl::no_delay(bool value) {
  DUPLEX_SET(c.loop.no_delay = value);
}

milliseconds WebSocketControl::connect_timeout() const {
  DUPLEX_GET(c.loop.connect_timeout);
}
void WebSocketControl::connect_timeout(milliseconds timeout) {
  check_positive(timeout, "connect_timeout");
  DUPLEX_SET(c.loop.connect_timeout = timeout);
}
milliseconds WebSocketControl::send_timeout() const {
  DUPLEX_GET(c.loop.send_timeout);
}
void WebSocketControl::send_timeout(milliseconds timeout) {
  check_positive(timeout, "send_timeout");
  DUPLEX_SET(c.loop.send_timeout = timeout);
}
milliseconds WebSocketControl::receive_timeout() const {
  DUPLEX_GET(c.loop.receive_timeout);
}
void WebSocketControl::receive_timeout(milliseconds timeout) {
  check_positive(timeout, "receive_timeout");
  DUPLEX_SET(c.loop.receive_timeout = timeout);
}
milliseconds WebSocketControl::close_timeout() const {
  DUPLEX_GET(c.loop.close_timeout);
}
void WebSocketControl::close_timeout(milliseconds timeout) {
  check_positive(timeout, "close_timeout");
  DUPLEX_SET(c.loop.close_timeout = timeout);
}

SocketMessageType MessageWebSocketControl::message_type() const {
  return session_->message_type.load();
}
void MessageWebSocketControl::message_type(SocketMessageType type) {
  if (type != SocketMessageType::binary && type != SocketMessageType::utf8)
    throw std::invalid_argument("message_type: must be binary or utf8");
  check_alive(*session_);
  session_->message_type.store(type);
}
std::uint64_t MessageWebSocketControl::max_message_size() const {
  DUPLEX_GET(c.loop.max_message_size);
}
void MessageWebSocketControl::max_message_size(std::uint64_t bytes) {
  if (bytes == 0) throw std::invalid_argument("max_message_size: must be greater than zero");
  DUPLEX_SET(c.loop.max_message_size = bytes);
}
MessageWebSocketReceiveMode MessageWebSocketControl::receive_mode() const {
  DUPLEX_GET(c.loop.receive_mode);
}
void MessageWebSocketControl::receive_mode(MessageWebSocketReceiveMode mode) {
  DUPLEX_SET(c.loop.receive_mode = mode);
}
std::size_t MessageWebSocketControl::partial_message_threshold() const {
  DUPLEX_GET(c.loop.partial_message_threshold);
}
void MessageWebSocketControl::partial_message_threshold(std::size_t bytes) {
  if (bytes == 0 || bytes > max_partial_message_threshold)
    throw std::invalid_argument("partial_message_threshold: must be 1..67108864 (64 MiB)");
  DUPLEX_SET(c.loop.partial_message_threshold = bytes);
}

ReconnectOptions MessageWebSocketControl::reconnect() const {
  DUPLEX_GET(c.reconnect);
}
void MessageWebSocketControl::reconnect(ReconnectOptions options) {
  detail::check_reconnect_options(options);
  DUPLEX_SET(c.reconnect = options);
}

#undef DUPLEX_GET
#undef DUPLEX_SET

// --- information ---------------------------------------------------------------------------

HostEndpoint WebSocketInformation::local_address() const {
  return session_->info().local;
}
HostEndpoint WebSocketInformation::remote_address() const {
  return session_->info().remote;
}
std::string WebSocketInformation::protocol() const {
  return session_->info().protocol;
}
std::string WebSocketInformation::extensions() const {
  return session_->info().extensions;
}
BandwidthStatistics WebSocketInformation::bandwidth_statistics() const {
  return session_->statistics();
}
std::optional<std::chrono::microseconds> WebSocketInformation::ping_round_trip_time() const {
  return session_->info().rtt;
}
std::optional<Certificate> WebSocketInformation::server_certificate() const {
  const auto tls = session_->info().server_tls;
  return tls ? std::optional<Certificate>(tls->certificate) : std::nullopt;
}
std::vector<ChainValidationResult> WebSocketInformation::server_certificate_errors() const {
  const auto tls = session_->info().server_tls;
  return tls ? tls->errors : std::vector<ChainValidationResult>{};
}
SocketSslErrorSeverity WebSocketInformation::server_certificate_error_severity() const {
  const auto tls = session_->info().server_tls;
  return tls ? tls->severity : SocketSslErrorSeverity::none;
}
std::vector<Certificate> WebSocketInformation::server_intermediate_certificates() const {
  const auto tls = session_->info().server_tls;
  return tls ? tls->intermediates : std::vector<Certificate>{};
}

// --- custom validation -------------------------------------------------------------------------

void Deferral::complete() noexcept {
  auto s = std::move(state_);
  state_.reset();
  if (s && s->deferrals.fetch_sub(1) == 1 && s->on_all_complete) s->on_all_complete();
}

const Certificate& WebSocketServerCustomValidationRequestedEventArgs::server_certificate() const {
  return state_->certificate;
}
const std::vector<ChainValidationResult>&
WebSocketServerCustomValidationRequestedEventArgs::server_certificate_errors() const {
  return state_->errors;
}
SocketSslErrorSeverity
WebSocketServerCustomValidationRequestedEventArgs::server_certificate_error_severity() const {
  return state_->severity;
}
const std::vector<Certificate>&
WebSocketServerCustomValidationRequestedEventArgs::server_intermediate_certificates() const {
  return state_->intermediates;
}
void WebSocketServerCustomValidationRequestedEventArgs::reject() const noexcept {
  state_->rejected = true;
}
Deferral WebSocketServerCustomValidationRequestedEventArgs::get_deferral() const {
  state_->deferrals.fetch_add(1);
  return Deferral(state_);
}

}  // namespace duplex
