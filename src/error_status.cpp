// get_status(): the one map from any error code to WebErrorStatus, and the
// X.509 verification category. docs/errors.md mirrors this file.
#include <duplex/error.hpp>

#include <openssl/x509_vfy.h>
#include <asio/error.hpp>
#include <asio/ssl/error.hpp>

#include <string>

namespace duplex {
namespace {

class X509Category final : public std::error_category {
public:
  const char* name() const noexcept override { return "duplex.x509"; }
  std::string message(int ev) const override {
    return std::string("certificate verification failed: ") + X509_verify_cert_error_string(ev);
  }
};

WebErrorStatus status_of(error e) noexcept {
  switch (e) {
    case error::timed_out: return WebErrorStatus::timeout;
    case error::operation_aborted: return WebErrorStatus::operation_canceled;
    case error::connection_reset: return WebErrorStatus::connection_reset;
    case error::closed:
    case error::reconnecting:
    case error::not_connected: return WebErrorStatus::disconnected;
    case error::dead_peer: return WebErrorStatus::connection_aborted;
    case error::host_not_resolved: return WebErrorStatus::host_name_not_resolved;
    case error::cannot_connect: return WebErrorStatus::cannot_connect;
    case error::proxy_failed: return WebErrorStatus::cannot_connect;
    case error::certificate_rejected: return WebErrorStatus::certificate_is_invalid;
    case error::certificate_file_unusable: return WebErrorStatus::certificate_is_invalid;
    case error::already_connected:
    case error::buffer_full:
    case error::reconnect_queue_full: return WebErrorStatus::unknown;
    case error::unexpected_status: return WebErrorStatus::unexpected_status_code;
    case error::header_too_large:
    case error::handshake_refused: return WebErrorStatus::unexpected_server_error;
    default:
      // Every other handshake fault is a server answer we cannot accept.
      if (e >= error::bad_http_message && e <= error::bad_extension_offer)
        return WebErrorStatus::error_http_invalid_server_response;
      // A protocol violation by the peer ends the connection.
      return WebErrorStatus::connection_aborted;
  }
}

WebErrorStatus status_of_http(int status) noexcept {
  switch (status) {
    case 300:
    case 301:
    case 302:
    case 303:
    case 304:
    case 305:
    case 307:
    case 400:
    case 401:
    case 402:
    case 403:
    case 404:
    case 405:
    case 406:
    case 407:
    case 408:
    case 409:
    case 410:
    case 411:
    case 412:
    case 413:
    case 414:
    case 415:
    case 416:
    case 417:
    case 500:
    case 501:
    case 502:
    case 503:
    case 504:
    case 505: return static_cast<WebErrorStatus>(status);
    default:
      if (status >= 400 && status < 500) return WebErrorStatus::unexpected_client_error;
      if (status >= 500 && status < 600) return WebErrorStatus::unexpected_server_error;
      return WebErrorStatus::unexpected_status_code;
  }
}

WebErrorStatus status_of_x509(int v) noexcept {
  switch (v) {
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return WebErrorStatus::certificate_common_name_is_incorrect;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_CRL_HAS_EXPIRED: return WebErrorStatus::certificate_expired;
    case X509_V_ERR_CERT_REVOKED: return WebErrorStatus::certificate_revoked;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
    case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V_ERR_INVALID_EXTENSION:
    case X509_V_ERR_INVALID_PURPOSE: return WebErrorStatus::certificate_contains_errors;
    default:
      // Untrusted roots, self-signed and incomplete chains.
      return WebErrorStatus::certificate_is_invalid;
  }
}

}  // namespace

const std::error_category& x509_category() noexcept {
  static const X509Category c;
  return c;
}

WebErrorStatus get_status(std::error_code ec) noexcept {
  if (!ec) return WebErrorStatus::unknown;
  const auto& cat = ec.category();
  if (cat == error_category()) return status_of(static_cast<error>(ec.value()));
  if (cat == http_category()) return status_of_http(ec.value());
  if (cat == proxy_category()) {
    // The proxy, not the server, refused: the server was not reached.
    if (ec.value() == 407) return WebErrorStatus::proxy_authentication_required;
    return WebErrorStatus::cannot_connect;
  }
  if (cat == x509_category()) return status_of_x509(ec.value());
  if (cat == asio::error::get_netdb_category() || cat == asio::error::get_addrinfo_category())
    return WebErrorStatus::host_name_not_resolved;
  if (cat == asio::error::get_misc_category()) {
    if (ec == asio::error::eof) return WebErrorStatus::disconnected;
    return WebErrorStatus::unknown;
  }
  if (cat == asio::error::get_ssl_category() || cat == asio::ssl::error::get_stream_category())
    return WebErrorStatus::connection_aborted;
  // Asio's system category is its own object, not std::system_category(); on
  // POSIX both carry errno values, which are the generic conditions.
  if (cat == std::system_category() || cat == std::generic_category() ||
      cat == asio::error::get_system_category()) {
    std::error_condition cond(ec.value(), std::generic_category());
    if (cond == std::errc::operation_canceled) return WebErrorStatus::operation_canceled;
    if (cond == std::errc::timed_out) return WebErrorStatus::timeout;
    if (cond == std::errc::connection_refused || cond == std::errc::network_unreachable ||
        cond == std::errc::host_unreachable)
      return WebErrorStatus::cannot_connect;
    if (cond == std::errc::connection_reset || cond == std::errc::broken_pipe)
      return WebErrorStatus::connection_reset;
    if (cond == std::errc::connection_aborted) return WebErrorStatus::connection_aborted;
    if (cond == std::errc::not_connected) return WebErrorStatus::disconnected;
  }
  return WebErrorStatus::unknown;
}

std::string_view to_string(WebErrorStatus s) noexcept {
  switch (s) {
#define DUPLEX_STATUS_NAME(n) \
  case WebErrorStatus::n: return #n;
    DUPLEX_STATUS_NAME(unknown)
    DUPLEX_STATUS_NAME(certificate_common_name_is_incorrect)
    DUPLEX_STATUS_NAME(certificate_expired)
    DUPLEX_STATUS_NAME(certificate_contains_errors)
    DUPLEX_STATUS_NAME(certificate_revoked)
    DUPLEX_STATUS_NAME(certificate_is_invalid)
    DUPLEX_STATUS_NAME(server_unreachable)
    DUPLEX_STATUS_NAME(timeout)
    DUPLEX_STATUS_NAME(error_http_invalid_server_response)
    DUPLEX_STATUS_NAME(connection_aborted)
    DUPLEX_STATUS_NAME(connection_reset)
    DUPLEX_STATUS_NAME(disconnected)
    DUPLEX_STATUS_NAME(cannot_connect)
    DUPLEX_STATUS_NAME(host_name_not_resolved)
    DUPLEX_STATUS_NAME(operation_canceled)
    DUPLEX_STATUS_NAME(unexpected_status_code)
    DUPLEX_STATUS_NAME(unexpected_client_error)
    DUPLEX_STATUS_NAME(unexpected_server_error)
    DUPLEX_STATUS_NAME(multiple_choices)
    DUPLEX_STATUS_NAME(moved_permanently)
    DUPLEX_STATUS_NAME(found)
    DUPLEX_STATUS_NAME(see_other)
    DUPLEX_STATUS_NAME(not_modified)
    DUPLEX_STATUS_NAME(use_proxy)
    DUPLEX_STATUS_NAME(temporary_redirect)
    DUPLEX_STATUS_NAME(bad_request)
    DUPLEX_STATUS_NAME(unauthorized)
    DUPLEX_STATUS_NAME(payment_required)
    DUPLEX_STATUS_NAME(forbidden)
    DUPLEX_STATUS_NAME(not_found)
    DUPLEX_STATUS_NAME(method_not_allowed)
    DUPLEX_STATUS_NAME(not_acceptable)
    DUPLEX_STATUS_NAME(proxy_authentication_required)
    DUPLEX_STATUS_NAME(request_timeout)
    DUPLEX_STATUS_NAME(conflict)
    DUPLEX_STATUS_NAME(gone)
    DUPLEX_STATUS_NAME(length_required)
    DUPLEX_STATUS_NAME(precondition_failed)
    DUPLEX_STATUS_NAME(request_entity_too_large)
    DUPLEX_STATUS_NAME(request_uri_too_long)
    DUPLEX_STATUS_NAME(unsupported_media_type)
    DUPLEX_STATUS_NAME(requested_range_not_satisfiable)
    DUPLEX_STATUS_NAME(expectation_failed)
    DUPLEX_STATUS_NAME(internal_server_error)
    DUPLEX_STATUS_NAME(not_implemented)
    DUPLEX_STATUS_NAME(bad_gateway)
    DUPLEX_STATUS_NAME(service_unavailable)
    DUPLEX_STATUS_NAME(gateway_timeout)
    DUPLEX_STATUS_NAME(http_version_not_supported)
#undef DUPLEX_STATUS_NAME
  }
  return "unknown";
}

}  // namespace duplex
