// Client TLS on OpenSSL.
#include "transport/tls.hpp"

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <stdexcept>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <duplex/error.hpp>

#include "transport/uri.hpp"

namespace duplex::transport {
namespace {

int errors_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int verify_callback(int preverify_ok, X509_STORE_CTX* ctx) {
  if (preverify_ok) return 1;
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  if (ssl) {
    if (auto* errors = static_cast<std::vector<int>*>(SSL_get_ex_data(ssl, errors_index()))) {
      int e = X509_STORE_CTX_get_error(ctx);
      bool seen = false;
      for (int x : *errors) seen = seen || x == e;
      if (!seen) errors->push_back(e);
    }
  }
  // Continue: the session decides after the handshake, so that ignorable
  // errors can be accepted and every error is reported.
  return 1;
}

std::shared_ptr<asio::ssl::context> new_context(std::error_code& ec) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX* native = ctx->native_handle();
  // TLS 1.0 and 1.1 are deprecated (RFC 8996).
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  // TLS 1.2: forward-secret AEAD suites only (tls12_cipher_list); TLS 1.3
  // keeps OpenSSL's suites, which all are.
  if (SSL_CTX_set_cipher_list(native, tls12_cipher_list) != 1 ||
      SSL_CTX_set_alpn_protos(native, alpn_http11.data(),
                              static_cast<unsigned>(alpn_http11.size())) != 0) {
    ec = std::make_error_code(std::errc::not_supported);
    return ctx;
  }
  ctx->set_default_verify_paths(ec);
  return ctx;
}

// OpenSSL's reason for the last failure, or `fallback` when it gave none.
std::string openssl_reason(const char* fallback) {
  const unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  if (e == 0) return fallback;
  const char* reason = ERR_reason_error_string(e);
  return reason ? reason : fallback;
}

// A file that cannot be opened is named with errno's text ("No such file or
// directory"), before OpenSSL would report it as a PEM error.
std::optional<std::string> unreadable(const std::string& what, const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr)
    return what + " '" + path + "' cannot be read: " + std::generic_category().message(errno);
  std::fclose(f);
  return std::nullopt;
}

// Loads the certificate chain and key into `ctx`; the reason on failure.
std::optional<std::string> load_client_certificate(asio::ssl::context& ctx,
                                                   const ClientCertificate& cert) {
  if (auto why = unreadable("certificate_file", cert.certificate_file)) return why;
  if (auto why = unreadable("private_key_file", cert.private_key_file)) return why;
  SSL_CTX* native = ctx.native_handle();
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(native, cert.certificate_file.c_str()) != 1)
    return "certificate_file '" + cert.certificate_file +
           "' holds no usable PEM certificate: " + openssl_reason("not PEM");
  if (SSL_CTX_use_PrivateKey_file(native, cert.private_key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    return "private_key_file '" + cert.private_key_file +
           "' holds no usable unencrypted PEM key: " + openssl_reason("not PEM");
  if (SSL_CTX_check_private_key(native) != 1) {
    ERR_clear_error();
    return "private_key_file '" + cert.private_key_file + "' does not match certificate_file '" +
           cert.certificate_file + "'";
  }
  return std::nullopt;
}

// Adds the CA file's certificates to `ctx`'s trust store; the reason on failure.
std::optional<std::string> load_ca_file(asio::ssl::context& ctx, const std::string& path) {
  if (auto why = unreadable("file", path)) return why;
  ERR_clear_error();
  if (SSL_CTX_load_verify_locations(ctx.native_handle(), path.c_str(), nullptr) != 1)
    return "file '" + path + "' holds no usable PEM certificate: " + openssl_reason("not PEM");
  return std::nullopt;
}

std::chrono::system_clock::time_point to_time(const ASN1_TIME* t) {
  std::tm tm{};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return {};
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

std::string name_string(X509_NAME* name) {
  BIO* bio = BIO_new(BIO_s_mem());
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string s(data, static_cast<std::size_t>(len));
  BIO_free(bio);
  return s;
}

}  // namespace

std::shared_ptr<asio::ssl::context> make_client_context(
    const std::string& ca_file, const std::optional<ClientCertificate>& cert, std::error_code& ec) {
  ec.clear();
  if (ca_file.empty() && !cert) {
    static std::mutex m;
    static std::shared_ptr<asio::ssl::context> shared;
    std::lock_guard lock(m);
    if (!shared) {
      shared = new_context(ec);
      if (ec) {
        shared.reset();
        return nullptr;
      }
    }
    return shared;
  }
  auto ctx = new_context(ec);
  if (ec) return nullptr;
  // The setters checked these files; one that changed since then (removed,
  // rewritten) fails the connect with a code of its own, not an errno.
  if (!ca_file.empty() && load_ca_file(*ctx, ca_file)) {
    ec = make_error_code(error::certificate_file_unusable);
    return nullptr;
  }
  if (cert && load_client_certificate(*ctx, *cert)) {
    ec = make_error_code(error::certificate_file_unusable);
    return nullptr;
  }
  return ctx;
}

void check_client_certificate(const ClientCertificate& cert) {
  asio::ssl::context scratch(asio::ssl::context::tls_client);
  if (auto why = load_client_certificate(scratch, cert))
    throw std::invalid_argument("client_certificate: " + *why);
}

void check_ca_file(const std::string& path) {
  asio::ssl::context scratch(asio::ssl::context::tls_client);
  if (auto why = load_ca_file(scratch, path))
    throw std::invalid_argument("trusted_ca_file: " + *why);
}

void prepare_client_tls(TlsStream& stream, const std::string& host, std::vector<int>* errors) {
  SSL* ssl = stream.native_handle();
  SSL_set_ex_data(ssl, errors_index(), errors);
  SSL_set_verify(ssl, SSL_VERIFY_PEER, verify_callback);
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  if (is_ip_address(host)) {
    X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
  } else {
    // RFC 6066 3: SNI carries host names only, never literal addresses.
    SSL_set_tlsext_host_name(ssl, host.c_str());
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
  }
}

void forget_tls_errors(TlsStream& stream) noexcept {
  SSL_set_ex_data(stream.native_handle(), errors_index(), nullptr);
}

ChainValidationResult classify_x509_error(int e) noexcept {
  switch (e) {
    case X509_V_OK: return ChainValidationResult::success;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
    case X509_V_ERR_EMAIL_MISMATCH: return ChainValidationResult::invalid_name;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID: return ChainValidationResult::expired;
    case X509_V_ERR_CERT_REVOKED: return ChainValidationResult::revoked;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED: return ChainValidationResult::untrusted;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT: return ChainValidationResult::incomplete_chain;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
      return ChainValidationResult::invalid_signature;
    case X509_V_ERR_INVALID_PURPOSE: return ChainValidationResult::wrong_usage;
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_PATH_LENGTH_EXCEEDED: return ChainValidationResult::basic_constraints_error;
    default: return ChainValidationResult::other_errors;
  }
}

Certificate decode_certificate(X509* cert) {
  Certificate c;
  if (!cert) return c;
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  c.pem.assign(data, static_cast<std::size_t>(len));
  BIO_free(bio);
  c.subject = name_string(X509_get_subject_name(cert));
  c.issuer = name_string(X509_get_issuer_name(cert));
  c.valid_from = to_time(X509_get0_notBefore(cert));
  c.valid_to = to_time(X509_get0_notAfter(cert));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &md_len) == 1) {
    static constexpr char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < md_len; ++i) {
      c.sha256_fingerprint += hex[md[i] >> 4];
      c.sha256_fingerprint += hex[md[i] & 15];
    }
  }
  return c;
}

}  // namespace duplex::transport
