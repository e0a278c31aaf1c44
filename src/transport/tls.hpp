// transport/tls.hpp: client TLS set-up on OpenSSL (trust store, SNI, host name
// verification, collection of every verification error), certificate decoding,
// and the TLS policy client and server share (cipher suites, ALPN).
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <openssl/x509.h>
#include <asio/ssl/context.hpp>

#include <duplex/websocket_control.hpp>

#include "transport/stream.hpp"

namespace duplex::transport {

/// The TLS 1.2 cipher suites of client and server, in preference order:
/// ECDHE key exchange (forward secrecy) with an AEAD cipher, Mozilla's
/// "intermediate" profile without its DHE suites. Plain-RSA key exchange
/// (no forward secrecy) and CBC suites are refused. TLS 1.3 keeps OpenSSL's
/// default suites, which are all ECDHE with AEAD.
inline constexpr const char* tls12_cipher_list =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/// ALPN (RFC 7301) protocol list in wire form (length-prefixed): "http/1.1",
/// the protocol of the opening handshake (RFC 6455 4.1).
inline constexpr std::array<unsigned char, 9> alpn_http11{8,   'h', 't', 't', 'p',
                                                          '/', '1', '.', '1'};

/// A client SSL context: system trust store plus `ca_file`, optional client
/// certificate, TLS 1.2 or later with tls12_cipher_list, ALPN offering
/// "http/1.1". The default one (no CA file, no client certificate) is shared.
/// Errors come back in `ec`: error::certificate_file_unusable when the CA
/// file, the client certificate or its key cannot be loaded.
std::shared_ptr<asio::ssl::context> make_client_context(
    const std::string& ca_file, const std::optional<ClientCertificate>& cert, std::error_code& ec);

/// Sets SNI (for a name), host name (or IP) verification, and a verify
/// callback that accepts the handshake while appending every X509_V_ERR_* it
/// sees to `*errors` (the caller decides afterwards). `errors` must outlive the
/// handshake.
void prepare_client_tls(TlsStream& stream, const std::string& host, std::vector<int>* errors);

/// Detaches the error list given to prepare_client_tls (call after the handshake).
void forget_tls_errors(TlsStream& stream) noexcept;

/// Loads `cert` into a scratch context, as a connect would: throws
/// std::invalid_argument naming the file (or the key) and OpenSSL's reason
/// when a file cannot be read or parsed, or the key does not match.
void check_client_certificate(const ClientCertificate& cert);
/// The same for a trusted CA file (PEM, at least one certificate).
void check_ca_file(const std::string& path);

/// Kind of an X509_V_ERR_* value.
ChainValidationResult classify_x509_error(int x509_error) noexcept;

/// Decodes a certificate for display.
Certificate decode_certificate(X509* cert);

}  // namespace duplex::transport
