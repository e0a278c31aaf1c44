// permessage-deflate negotiation (RFC 7692 5, 7.1): tables of offers and
// answers for both roles, and every error path.
#include <duplex/error.hpp>
#include <duplex/protocol/connection.hpp>
#include <duplex/protocol/deflate.hpp>

#include <gtest/gtest.h>

#include <optional>
#include <stdexcept>
#include <string>

namespace duplex::protocol {
namespace {

DeflateConfig enabled() {
  DeflateConfig c;
  c.enable = true;
  return c;
}

// --- Server --------------------------------------------------------------------------------

struct ServerCase {
  const char* offer;
  const char* response;  ///< expected answer; "" when every offer is declined
  DeflateConfig config = enabled();
};

DeflateConfig with(void (*f)(DeflateConfig&)) {
  DeflateConfig c = enabled();
  f(c);
  return c;
}

TEST(DeflateNegotiation, ServerAnswersTable) {
  const ServerCase cases[] = {
      // Browsers' offers.
      {"permessage-deflate; client_max_window_bits", "permessage-deflate"},
      {"permessage-deflate", "permessage-deflate"},
      // Other extensions are ignored; the first acceptable offer wins.
      {"x-webkit-deflate-frame, permessage-deflate", "permessage-deflate"},
      {"permessage-deflate; server_max_window_bits=11, permessage-deflate",
       "permessage-deflate; server_max_window_bits=11"},
      // Declined offers (RFC 7692 5): unknown parameter, repeated parameter,
      // value where none is allowed, missing or invalid values.
      {"permessage-deflate; foo, permessage-deflate; client_no_context_takeover",
       "permessage-deflate; client_no_context_takeover"},
      {"permessage-deflate; foo=1", ""},
      {"permessage-deflate; server_no_context_takeover; server_no_context_takeover", ""},
      {"permessage-deflate; client_no_context_takeover; client_no_context_takeover", ""},
      {"permessage-deflate; server_max_window_bits=10; server_max_window_bits=10", ""},
      {"permessage-deflate; client_max_window_bits; client_max_window_bits=10", ""},
      {"permessage-deflate; server_no_context_takeover=1", ""},
      {"permessage-deflate; client_no_context_takeover=true", ""},
      {"permessage-deflate; server_max_window_bits", ""},
      {"permessage-deflate; server_max_window_bits=7", ""},
      {"permessage-deflate; server_max_window_bits=16", ""},
      {"permessage-deflate; server_max_window_bits=08", ""},
      {"permessage-deflate; server_max_window_bits=20", ""},
      {"permessage-deflate; server_max_window_bits=05", ""},
      {"permessage-deflate; client_max_window_bits=8.0", ""},
      {"permessage-deflate; server_max_window_bits=010", ""},
      {"permessage-deflate; server_max_window_bits=1a", ""},
      {"permessage-deflate; client_max_window_bits=0", ""},
      {"permessage-deflate; client_max_window_bits=-9", ""},
      {"permessage-deflate; client_max_window_bits=99999999999999999999", ""},
      {"permessage-deflate; client_max_window_bits=16", ""},
      {"x-webkit-deflate-frame", ""},
      {"", ""},
      // Context takeover parameters are echoed (7.1.1).
      {"permessage-deflate; server_no_context_takeover",
       "permessage-deflate; server_no_context_takeover"},
      {"permessage-deflate; client_no_context_takeover",
       "permessage-deflate; client_no_context_takeover"},
      {"permessage-deflate; client_no_context_takeover; server_no_context_takeover",
       "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
      // Window bits (7.1.2): the offered server window is answered, smaller or equal.
      {"permessage-deflate; server_max_window_bits=10",
       "permessage-deflate; server_max_window_bits=10"},
      {"permessage-deflate; server_max_window_bits=15",
       "permessage-deflate; server_max_window_bits=15"},
      {"permessage-deflate; server_max_window_bits=8",
       "permessage-deflate; server_max_window_bits=8"},
      {"permessage-deflate; client_max_window_bits=12",
       "permessage-deflate; client_max_window_bits=12"},
      {"permessage-deflate; client_max_window_bits=15", "permessage-deflate"},
      // Quoted-string values (RFC 6455 9.1), escapes included.
      {"permessage-deflate; server_max_window_bits=\"10\"",
       "permessage-deflate; server_max_window_bits=10"},
      {"permessage-deflate; client_max_window_bits=\"1\\2\"",
       "permessage-deflate; client_max_window_bits=12"},
      // Names compare case-insensitively; white space and empty list elements.
      {"PerMessage-Deflate; Client_Max_Window_Bits=9",
       "permessage-deflate; client_max_window_bits=9"},
      {" , permessage-deflate ;  server_max_window_bits = 12 ;client_no_context_takeover ,, ",
       "permessage-deflate; client_no_context_takeover; server_max_window_bits=12"},
      {"\tpermessage-deflate\t", "permessage-deflate"},
      // Server configuration.
      {"permessage-deflate", "permessage-deflate; server_no_context_takeover",
       with([](DeflateConfig& c) { c.server_no_context_takeover = true; })},
      {"permessage-deflate", "permessage-deflate; client_no_context_takeover",
       with([](DeflateConfig& c) { c.client_no_context_takeover = true; })},
      {"permessage-deflate", "permessage-deflate; server_max_window_bits=11",
       with([](DeflateConfig& c) { c.server_max_window_bits = 11; })},
      {"permessage-deflate; server_max_window_bits=10",
       "permessage-deflate; server_max_window_bits=10",
       with([](DeflateConfig& c) { c.server_max_window_bits = 12; })},
      {"permessage-deflate; server_max_window_bits=13",
       "permessage-deflate; server_max_window_bits=12",
       with([](DeflateConfig& c) { c.server_max_window_bits = 12; })},
      // Our own window of 8 is advertised as 9: zlib cannot compress with 8.
      {"permessage-deflate", "permessage-deflate; server_max_window_bits=9",
       with([](DeflateConfig& c) { c.server_max_window_bits = 8; })},
      // The client window is limited only when the client offered the parameter.
      {"permessage-deflate", "permessage-deflate",
       with([](DeflateConfig& c) { c.client_max_window_bits = 10; })},
      {"permessage-deflate; client_max_window_bits",
       "permessage-deflate; client_max_window_bits=10",
       with([](DeflateConfig& c) { c.client_max_window_bits = 10; })},
      {"permessage-deflate; client_max_window_bits=9",
       "permessage-deflate; client_max_window_bits=9",
       with([](DeflateConfig& c) { c.client_max_window_bits = 10; })},
      {"permessage-deflate; client_max_window_bits", "permessage-deflate; client_max_window_bits=8",
       with([](DeflateConfig& c) { c.client_max_window_bits = 8; })},
      // Disabled: everything declined.
      {"permessage-deflate", "", DeflateConfig{}},
  };
  for (const auto& c : cases) {
    std::optional<DeflateParams> params;
    std::string response = "junk";
    auto ec = negotiate_deflate(c.offer, c.config, params, response);
    EXPECT_FALSE(ec) << c.offer;
    EXPECT_EQ(response, c.response) << c.offer;
    EXPECT_EQ(params.has_value(), *c.response != '\0') << c.offer;
    if (params) {
      // The parameters agree with the answer, as the client will read it.
      std::optional<DeflateParams> client_view;
      DeflateConfig client_offer = enabled();
      client_offer.offer_client_max_window_bits = true;
      // The answer to a server_max_window_bits offer must be read against it.
      if (std::string_view(c.offer).find("server_max_window_bits=") == std::string_view::npos) {
        ASSERT_FALSE(accept_deflate_response(response, client_offer, client_view)) << c.offer;
        ASSERT_TRUE(client_view);
        EXPECT_EQ(client_view->server_no_context_takeover, params->server_no_context_takeover);
        EXPECT_EQ(client_view->client_no_context_takeover, params->client_no_context_takeover);
        EXPECT_EQ(client_view->server_max_window_bits, params->server_max_window_bits);
        EXPECT_EQ(client_view->client_max_window_bits, params->client_max_window_bits);
      }
    }
  }
}

TEST(DeflateNegotiation, ServerParameters) {
  std::optional<DeflateParams> p;
  std::string response;
  DeflateConfig c = enabled();
  c.compression_level = 7;
  c.memory_level = 5;
  c.compress_threshold = 10;
  ASSERT_FALSE(
      negotiate_deflate("permessage-deflate; server_max_window_bits=10; client_max_window_bits=11; "
                        "client_no_context_takeover",
                        c, p, response));
  ASSERT_TRUE(p);
  EXPECT_FALSE(p->server_no_context_takeover);
  EXPECT_TRUE(p->client_no_context_takeover);
  EXPECT_EQ(p->server_max_window_bits, 10);
  EXPECT_EQ(p->client_max_window_bits, 11);
  EXPECT_EQ(p->compression_level, 7);
  EXPECT_EQ(p->memory_level, 5);
  EXPECT_EQ(p->compress_threshold, 10u);
  EXPECT_EQ(p->to_string(),
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; "
            "client_max_window_bits=11");
  EXPECT_TRUE(p->can_compress(Role::server));
}

TEST(DeflateNegotiation, ServerDefaultsBoundTheClientsWindowOrItsContext) {
  // default_server_deflate_config(): the server never keeps its window; a
  // client keeps at most a 4 KiB one, or none when it cannot be limited
  // (RFC 7692 7.1.2.2: client_max_window_bits only when offered; 7.1.1.2:
  // client_no_context_takeover in any answer).
  DeflateConfig c = default_server_deflate_config();
  EXPECT_FALSE(c.enable);
  c.enable = true;
  const std::pair<const char*, const char*> cases[] = {
      // Browsers, Node ws, Python websockets.
      {"permessage-deflate; client_max_window_bits",
       "permessage-deflate; server_no_context_takeover; client_max_window_bits=12"},
      {"permessage-deflate; client_max_window_bits=10",
       "permessage-deflate; server_no_context_takeover; client_max_window_bits=10"},
      {"permessage-deflate; client_max_window_bits=15",
       "permessage-deflate; server_no_context_takeover; client_max_window_bits=12"},
      // No client_max_window_bits: the window cannot be limited.
      {"permessage-deflate",
       "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
      {"permessage-deflate; client_no_context_takeover",
       "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
      {"permessage-deflate; client_no_context_takeover; client_max_window_bits",
       "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
       "client_max_window_bits=12"},
      {"permessage-deflate; server_max_window_bits=10",
       "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
       "server_max_window_bits=10"},
  };
  for (const auto& [offer, expected] : cases) {
    std::optional<DeflateParams> p;
    std::string response;
    ASSERT_FALSE(negotiate_deflate(offer, c, p, response)) << offer;
    ASSERT_TRUE(p) << offer;
    EXPECT_EQ(response, expected) << offer;
    EXPECT_TRUE(p->server_no_context_takeover) << offer;
    EXPECT_TRUE(p->client_no_context_takeover || p->client_max_window_bits <= 12) << offer;
  }
  // Without the flag, a client that cannot be limited keeps its full window.
  c.client_no_context_takeover_unless_window_limited = false;
  std::optional<DeflateParams> p;
  std::string response;
  ASSERT_FALSE(negotiate_deflate("permessage-deflate", c, p, response));
  EXPECT_EQ(response, "permessage-deflate; server_no_context_takeover");
  EXPECT_EQ(p->client_max_window_bits, 15);
}

TEST(DeflateNegotiation, ServerAcceptsEightBitsAndSendsUncompressed) {
  std::optional<DeflateParams> p;
  std::string response;
  ASSERT_FALSE(
      negotiate_deflate("permessage-deflate; server_max_window_bits=8", enabled(), p, response));
  ASSERT_TRUE(p);
  EXPECT_EQ(p->server_max_window_bits, 8);
  EXPECT_FALSE(p->can_compress(Role::server));
  EXPECT_TRUE(p->can_compress(Role::client));
  EXPECT_FALSE(DeflateEncoder(*p, Role::server).enabled());
}

TEST(DeflateNegotiation, ServerRejectsMalformedHeaders) {
  const char* cases[] = {
      ";",
      "permessage-deflate;",
      "permessage-deflate; ;",
      "permessage-deflate; =1",
      "permessage-deflate x",
      "permessage-deflate; a b",
      "permessage-deflate; server_max_window_bits=",
      "permessage-deflate; server_max_window_bits=\"10",
      "permessage-deflate; server_max_window_bits=\"1 0\"",
      "permessage-deflate; server_max_window_bits=\"\"",
      "permessage-deflate; server_max_window_bits=\"10\\",
      "permessage-deflate; a=b=c",
      "permessage-deflate; a=\"b\"c",
      "\"permessage-deflate\"",
      "permessage-deflate; a=(b)",
      "perm\x01essage-deflate",
      "permessage-deflate\r\n",
  };
  for (const char* offer : cases) {
    std::optional<DeflateParams> p;
    std::string response = "junk";
    EXPECT_EQ(negotiate_deflate(offer, enabled(), p, response), error::bad_extension_offer)
        << offer;
    EXPECT_FALSE(p) << offer;
    EXPECT_TRUE(response.empty()) << offer;
  }
}

// --- Client -------------------------------------------------------------------------------

TEST(DeflateNegotiation, ClientOffers) {
  EXPECT_EQ(make_deflate_offer(DeflateConfig{}), "");
  EXPECT_EQ(make_deflate_offer(enabled()), "permessage-deflate; client_max_window_bits");
  DeflateConfig c = enabled();
  c.offer_client_max_window_bits = false;
  EXPECT_EQ(make_deflate_offer(c), "permessage-deflate");
  c.server_no_context_takeover = true;
  c.client_no_context_takeover = true;
  c.server_max_window_bits = 10;
  c.client_max_window_bits = 11;
  EXPECT_EQ(make_deflate_offer(c),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=10; client_max_window_bits=11");
  // 8 for the server's window is fine (we inflate it); ours becomes 9.
  c.server_max_window_bits = 8;
  c.client_max_window_bits = 8;
  EXPECT_EQ(make_deflate_offer(c),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=8; client_max_window_bits=9");
}

struct ClientCase {
  const char* response;
  std::error_code expected;
  DeflateConfig offered = enabled();
};

TEST(DeflateNegotiation, ClientChecksAnswersTable) {
  const auto ok = std::error_code{};
  const auto bad = make_error_code(error::bad_extension_offer);
  const auto unexpected = make_error_code(error::unexpected_extension);
  auto smwb10 = with([](DeflateConfig& c) { c.server_max_window_bits = 10; });
  auto cmwb12 = with([](DeflateConfig& c) { c.client_max_window_bits = 12; });
  auto snct = with([](DeflateConfig& c) { c.server_no_context_takeover = true; });
  auto no_cmwb = with([](DeflateConfig& c) { c.offer_client_max_window_bits = false; });
  const ClientCase cases[] = {
      {"", ok},
      {" , ", ok},
      {"permessage-deflate", ok},
      // A server may add these unasked (7.1.1.1, 7.1.1.2, 7.1.2.1).
      {"permessage-deflate; server_no_context_takeover", ok},
      {"permessage-deflate; client_no_context_takeover", ok},
      {"permessage-deflate; server_max_window_bits=10", ok},
      {"permessage-deflate; server_max_window_bits=8", ok},
      {"permessage-deflate; client_max_window_bits=10", ok},
      {"permessage-deflate; client_max_window_bits=8", ok},
      {"permessage-deflate; client_max_window_bits=\"8\"", ok},
      // ...but client_max_window_bits only if offered (7.1.2.2).
      {"permessage-deflate; client_max_window_bits=10", bad, no_cmwb},
      {"permessage-deflate; client_max_window_bits=12", ok, cmwb12},
      {"permessage-deflate; client_max_window_bits=13", bad, cmwb12},
      {"permessage-deflate", ok, cmwb12},
      // An offered server window must be answered, not larger (7.1.2.1).
      {"permessage-deflate; server_max_window_bits=10", ok, smwb10},
      {"permessage-deflate; server_max_window_bits=9", ok, smwb10},
      {"permessage-deflate; server_max_window_bits=11", bad, smwb10},
      {"permessage-deflate", bad, smwb10},
      // An offered server_no_context_takeover must be answered (7.1.1.1).
      {"permessage-deflate; server_no_context_takeover", ok, snct},
      {"permessage-deflate", bad, snct},
      // Invalid parameters fail the connection (5).
      {"permessage-deflate; client_max_window_bits", bad},
      {"permessage-deflate; server_max_window_bits", bad},
      {"permessage-deflate; server_max_window_bits=16", bad},
      {"permessage-deflate; server_max_window_bits=7", bad},
      {"permessage-deflate; client_max_window_bits=09", bad},
      {"permessage-deflate; server_max_window_bits=25", bad},
      {"permessage-deflate; client_max_window_bits=-8", bad},
      {"permessage-deflate; server_no_context_takeover=x", bad},
      {"permessage-deflate; client_no_context_takeover=\"\"", bad},
      {"permessage-deflate; server_no_context_takeover; server_no_context_takeover", bad},
      {"permessage-deflate; client_max_window_bits=9; client_max_window_bits=9", bad},
      {"permessage-deflate; mystery", bad},
      {"permessage-deflate;", bad},
      {"permessage-deflate; server_max_window_bits=\"10", bad},
      // Extensions not offered (RFC 6455 9.1).
      {"x-webkit-deflate-frame", unexpected},
      {"permessage-deflate, permessage-deflate", unexpected},
      {"permessage-deflate, x-foo", unexpected},
      {"x-foo, permessage-deflate", unexpected},
      {"permessage-deflate", unexpected, DeflateConfig{}},
  };
  for (const auto& c : cases) {
    std::optional<DeflateParams> p = DeflateParams{};
    auto ec = accept_deflate_response(c.response, c.offered, p);
    EXPECT_EQ(ec, c.expected) << c.response;
    if (ec || std::string_view(c.response).find("permessage") == std::string_view::npos)
      EXPECT_FALSE(p) << c.response;
    else
      EXPECT_TRUE(p) << c.response;
  }
}

TEST(DeflateNegotiation, ClientParameters) {
  std::optional<DeflateParams> p;
  DeflateConfig c = enabled();
  c.client_no_context_takeover = true;
  c.client_max_window_bits = 12;
  c.compression_level = 1;
  ASSERT_FALSE(accept_deflate_response(
      "permessage-deflate; server_no_context_takeover; server_max_window_bits=9", c, p));
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->server_no_context_takeover);
  // We announced it, so we keep to it even though the server did not echo it.
  EXPECT_TRUE(p->client_no_context_takeover);
  EXPECT_EQ(p->server_max_window_bits, 9);
  EXPECT_EQ(p->client_max_window_bits, 12);
  EXPECT_EQ(p->compression_level, 1);

  // The server limited our window to 8: we send uncompressed.
  ASSERT_FALSE(
      accept_deflate_response("permessage-deflate; client_max_window_bits=8", enabled(), p));
  ASSERT_TRUE(p);
  EXPECT_FALSE(p->can_compress(Role::client));
  EXPECT_TRUE(p->can_compress(Role::server));
}

TEST(DeflateNegotiation, OfferAndAnswerAgree) {
  // Every client configuration against every server configuration: the
  // server's answer satisfies the client, and both see the same parameters.
  int combinations = 0;
  for (int cflags = 0; cflags < 8; ++cflags) {
    for (int cs : {8, 10, 15}) {
      for (int cc : {8, 12, 15}) {
        for (int sflags = 0; sflags < 8; ++sflags) {
          for (int ss : {8, 11, 15}) {
            for (int sc : {9, 15}) {
              DeflateConfig client = enabled();
              client.server_no_context_takeover = cflags & 1;
              client.client_no_context_takeover = cflags & 2;
              client.offer_client_max_window_bits = cflags & 4;
              client.server_max_window_bits = static_cast<std::uint8_t>(cs);
              client.client_max_window_bits = static_cast<std::uint8_t>(cc);
              DeflateConfig server = enabled();
              server.server_no_context_takeover = sflags & 1;
              server.client_no_context_takeover = sflags & 2;
              server.client_no_context_takeover_unless_window_limited = sflags & 4;
              server.server_max_window_bits = static_cast<std::uint8_t>(ss);
              server.client_max_window_bits = static_cast<std::uint8_t>(sc);
              std::string offer = make_deflate_offer(client);
              std::optional<DeflateParams> sp, cp;
              std::string answer;
              ASSERT_FALSE(negotiate_deflate(offer, server, sp, answer)) << offer;
              ASSERT_TRUE(sp) << offer;
              ASSERT_FALSE(accept_deflate_response(answer, client, cp)) << offer << " / " << answer;
              ASSERT_TRUE(cp);
              EXPECT_EQ(cp->server_no_context_takeover, sp->server_no_context_takeover) << answer;
              EXPECT_EQ(cp->server_max_window_bits, sp->server_max_window_bits) << answer;
              // The client's window: the server's bound, or the client's own lower one.
              EXPECT_LE(cp->client_max_window_bits, sp->client_max_window_bits) << answer;
              // The server inflates with at least the client's window.
              if (sp->client_no_context_takeover) {
                EXPECT_TRUE(cp->client_no_context_takeover);
              }
              ++combinations;
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(combinations, 8 * 3 * 3 * 8 * 3 * 2);
}

TEST(DeflateNegotiation, ConfigChecks) {
  auto expect_throw = [](void (*f)(DeflateConfig&), const char* what) {
    DeflateConfig c = enabled();
    f(c);
    try {
      check_deflate_config(c);
      ADD_FAILURE() << what;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
    // The negotiation functions check too.
    EXPECT_THROW(make_deflate_offer(c), std::invalid_argument);
    std::optional<DeflateParams> p;
    std::string r;
    EXPECT_THROW(negotiate_deflate("permessage-deflate", c, p, r), std::invalid_argument);
    EXPECT_THROW(accept_deflate_response("", c, p), std::invalid_argument);
  };
  expect_throw([](DeflateConfig& c) { c.server_max_window_bits = 7; }, "server_max_window_bits");
  expect_throw([](DeflateConfig& c) { c.server_max_window_bits = 16; }, "server_max_window_bits");
  expect_throw([](DeflateConfig& c) { c.client_max_window_bits = 0; }, "client_max_window_bits");
  expect_throw([](DeflateConfig& c) { c.compression_level = 10; }, "compression_level");
  expect_throw([](DeflateConfig& c) { c.compression_level = -2; }, "compression_level");
  expect_throw([](DeflateConfig& c) { c.memory_level = 0; }, "memory_level");
  expect_throw([](DeflateConfig& c) { c.memory_level = 10; }, "memory_level");
  EXPECT_NO_THROW(check_deflate_config(enabled()));
}

}  // namespace
}  // namespace duplex::protocol
