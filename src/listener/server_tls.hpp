// listener/server_tls.hpp: the server's TLS context (certificate chain, key,
// optional client certificates) and what the listener reads from a TLS session.
#pragma once

#include <memory>
#include <string>

#include <openssl/ssl.h>
#include <asio/ssl/context.hpp>

#include <duplex/websocket_listener.hpp>

namespace duplex::transport {

/// A TLS 1.2+ server context for `options`: TLS 1.2 with the suites of
/// tls12_cipher_list (ECDHE with AEAD) only, ALPN "http/1.1" selected when
/// the client offers it. Throws std::system_error when a
/// file cannot be loaded or the key does not match the certificate,
/// std::invalid_argument when a required file name is empty.
std::shared_ptr<asio::ssl::context> make_server_context(const ListenerTlsOptions& options);

/// The verified client certificate's subject in one line (RFC 2253 order,
/// e.g. "CN=alice,O=example"); empty when the client sent none.
std::string client_certificate_subject(SSL* ssl);

}  // namespace duplex::transport
