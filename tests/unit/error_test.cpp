// Unit tests of the error category, its conditions and the close-code table.
#include <duplex/error.hpp>

#include <gtest/gtest.h>

namespace duplex {
namespace {

TEST(ErrorCategory, NamesAndMessages) {
  std::error_code ec = error::reserved_opcode;
  EXPECT_STREQ(ec.category().name(), "duplex");
  EXPECT_EQ(ec.message(), "reserved opcode");
  EXPECT_EQ(make_http_error(404).message(), "HTTP status 404");
}

TEST(ErrorCategory, ConditionsGroupErrors) {
  EXPECT_EQ(std::error_code(error::fragmented_control), condition::protocol_violation);
  EXPECT_EQ(std::error_code(error::invalid_utf8), condition::protocol_violation);
  EXPECT_EQ(std::error_code(error::bad_accept), condition::handshake_failed);
  EXPECT_EQ(make_http_error(404), condition::handshake_failed);
  EXPECT_EQ(std::error_code(error::timed_out), condition::timed_out);
  EXPECT_NE(std::error_code(error::closed), condition::protocol_violation);
  EXPECT_NE(std::error_code(error::bad_accept), condition::protocol_violation);
}

TEST(ErrorCategory, CloseCodeForEachProtocolError) {
  EXPECT_EQ(close_code_for(error::reserved_bits), 1002);
  EXPECT_EQ(close_code_for(error::masked_server_frame), 1002);
  EXPECT_EQ(close_code_for(error::invalid_close_code), 1002);
  EXPECT_EQ(close_code_for(error::invalid_utf8), 1007);
  EXPECT_EQ(close_code_for(error::bad_compressed_data), 1007);
  EXPECT_EQ(close_code_for(error::message_too_big), 1009);
  EXPECT_EQ(close_code_for(error::timed_out), 1011);
}

TEST(WebErrorStatus, MapsDuplexAndHttpCodes) {
  EXPECT_EQ(get_status({}), WebErrorStatus::unknown);
  EXPECT_EQ(get_status(error::timed_out), WebErrorStatus::timeout);
  EXPECT_EQ(get_status(error::bad_accept), WebErrorStatus::error_http_invalid_server_response);
  EXPECT_EQ(get_status(error::host_not_resolved), WebErrorStatus::host_name_not_resolved);
  EXPECT_EQ(get_status(make_http_error(404)), WebErrorStatus::not_found);
  EXPECT_EQ(get_status(make_http_error(418)), WebErrorStatus::unexpected_client_error);
  EXPECT_EQ(get_status(make_http_error(599)), WebErrorStatus::unexpected_server_error);
  EXPECT_EQ(get_status(std::make_error_code(std::errc::connection_refused)),
            WebErrorStatus::cannot_connect);
  EXPECT_EQ(to_string(WebErrorStatus::host_name_not_resolved), "host_name_not_resolved");
}

TEST(WebErrorStatus, ProxyStatusIsCannotConnectNotTheServers) {
  const auto ec = make_proxy_error(500);
  EXPECT_STREQ(ec.category().name(), "duplex.proxy");
  EXPECT_EQ(ec.value(), 500);
  EXPECT_EQ(ec.message(),
            "proxy answered CONNECT with HTTP status 500 (the tunnel to the server was not "
            "opened)");
  EXPECT_EQ(get_status(ec), WebErrorStatus::cannot_connect);
  EXPECT_EQ(get_status(make_proxy_error(502)), WebErrorStatus::cannot_connect);
  EXPECT_EQ(get_status(make_proxy_error(403)), WebErrorStatus::cannot_connect);
  EXPECT_EQ(get_status(make_proxy_error(407)), WebErrorStatus::proxy_authentication_required);
  // Not a failed opening handshake: the server was never reached.
  EXPECT_NE(ec, condition::handshake_failed);
  EXPECT_NE(ec, make_http_error(500));
}

TEST(WebErrorStatus, UnusableCertificateFileIsInvalidCertificate) {
  const std::error_code ec = error::certificate_file_unusable;
  EXPECT_EQ(ec.message(), "the trusted CA file, client certificate or key cannot be loaded");
  EXPECT_EQ(get_status(ec), WebErrorStatus::certificate_is_invalid);
}

}  // namespace
}  // namespace duplex
