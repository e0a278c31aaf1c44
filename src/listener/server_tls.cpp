// The server side of TLS: context set-up and client certificate details.
#include "listener/server_tls.hpp"

#include <stdexcept>
#include <system_error>

#include <openssl/bio.h>
#include <openssl/x509.h>

#include "transport/tls.hpp"

namespace duplex::transport {

namespace {

[[noreturn]] void fail(const std::string& what, std::error_code ec) {
  throw std::system_error(ec, what);
}

// RFC 7301 3.2: select "http/1.1" from the client's ALPN list; a client that
// offers ALPN without it cannot speak the opening handshake and gets the
// no_application_protocol alert. A client without ALPN never comes here.
int select_alpn(SSL*, const unsigned char** out, unsigned char* out_len, const unsigned char* in,
                unsigned int in_len, void*) {
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, out_len, alpn_http11.data(),
                            static_cast<unsigned int>(alpn_http11.size()), in,
                            in_len) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

std::shared_ptr<asio::ssl::context> make_server_context(const ListenerTlsOptions& options) {
  if (options.certificate_chain_file.empty())
    throw std::invalid_argument("tls.certificate_chain_file: must not be empty");
  if (options.private_key_file.empty())
    throw std::invalid_argument("tls.private_key_file: must not be empty");
  if (options.require_client_certificate && options.client_ca_file.empty())
    throw std::invalid_argument(
        "tls.require_client_certificate: needs tls.client_ca_file to verify certificates");

  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  // TLS 1.0 and 1.1 are deprecated (RFC 8996); compression invites CRIME.
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                   asio::ssl::context::no_tlsv1_1 | asio::ssl::context::no_compression |
                   asio::ssl::context::single_dh_use);
  SSL_CTX* native = ctx->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  // TLS 1.2: forward-secret AEAD suites only, as the client (tls12_cipher_list);
  // TLS 1.3 keeps OpenSSL's suites.
  if (SSL_CTX_set_cipher_list(native, tls12_cipher_list) != 1)
    fail("tls: OpenSSL supports none of the cipher suites " + std::string(tls12_cipher_list),
         std::make_error_code(std::errc::not_supported));
  SSL_CTX_set_alpn_select_cb(native, select_alpn, nullptr);
  // Idle connections must stay small: OpenSSL frees its 16 KiB+ record buffers
  // between records instead of keeping them per connection.
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
  // Session tickets are the stateless kind; no per-server session cache to grow.
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);

  std::error_code ec;
  ctx->use_certificate_chain_file(options.certificate_chain_file, ec);
  if (ec) fail("tls.certificate_chain_file: cannot load " + options.certificate_chain_file, ec);
  ctx->use_private_key_file(options.private_key_file, asio::ssl::context::pem, ec);
  if (ec) fail("tls.private_key_file: cannot load " + options.private_key_file, ec);
  if (SSL_CTX_check_private_key(native) != 1)
    fail("tls.private_key_file: does not match the certificate",
         std::make_error_code(std::errc::invalid_argument));

  if (!options.client_ca_file.empty()) {
    ctx->load_verify_file(options.client_ca_file, ec);
    if (ec) fail("tls.client_ca_file: cannot load " + options.client_ca_file, ec);
    // Tell clients which CAs we accept, so they pick the right certificate.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options.client_ca_file.c_str()))
      SSL_CTX_set_client_CA_list(native, names);
    auto mode = asio::ssl::verify_peer;
    if (options.require_client_certificate) mode |= asio::ssl::verify_fail_if_no_peer_cert;
    ctx->set_verify_mode(mode);
  } else {
    ctx->set_verify_mode(asio::ssl::verify_none);
  }
  return ctx;
}

std::string client_certificate_subject(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return {};
  std::string out;
  if (BIO* bio = BIO_new(BIO_s_mem())) {
    if (X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
      char* data = nullptr;
      const long n = BIO_get_mem_data(bio, &data);
      if (n > 0) out.assign(data, static_cast<std::size_t>(n));
    }
    BIO_free(bio);
  }
  X509_free(cert);
  return out;
}

}  // namespace duplex::transport
