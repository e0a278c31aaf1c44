// transport/tls.hpp: client TLS set-up on OpenSSL (trust store, SNI, host name
// verification, collection of every verification error) and certificate decoding.
#pragma once

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

/// A client SSL context: system trust store plus `ca_file`, optional client
/// certificate, TLS 1.2 or later. The default one (no CA file, no client
/// certificate) is shared. Errors come back in `ec`.
std::shared_ptr<asio::ssl::context> make_client_context(
    const std::string& ca_file, const std::optional<ClientCertificate>& cert, std::error_code& ec);

/// Sets SNI (for a name), host name (or IP) verification, and a verify
/// callback that accepts the handshake while appending every X509_V_ERR_* it
/// sees to `*errors` (the caller decides afterwards). `errors` must outlive the
/// handshake.
void prepare_client_tls(TlsStream& stream, const std::string& host, std::vector<int>* errors);

/// Detaches the error list given to prepare_client_tls (call after the handshake).
void forget_tls_errors(TlsStream& stream) noexcept;

/// Kind of an X509_V_ERR_* value.
ChainValidationResult classify_x509_error(int x509_error) noexcept;

/// Decodes a certificate for display.
Certificate decode_certificate(X509* cert);

}  // namespace duplex::transport
