// Fuzzes permessage-deflate negotiation: the header parser and both roles.
// Input: one byte of server configuration flags, then a Sec-WebSocket-Extensions
// value. Invariants: no crash; an answer the server builds is accepted by a
// client that offered the most permissive configuration, with the same
// parameters.
#include <duplex/error.hpp>
#include <duplex/protocol/connection.hpp>
#include <duplex/protocol/deflate.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

using namespace duplex::protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t flags = data[0];
  std::string_view header(reinterpret_cast<const char*>(data + 1), size - 1);

  DeflateConfig server;
  server.enable = (flags & 0x80) == 0;
  server.server_no_context_takeover = flags & 1;
  server.client_no_context_takeover = flags & 2;
  server.server_max_window_bits = static_cast<std::uint8_t>(8 + ((flags >> 2) & 7));
  server.client_max_window_bits = static_cast<std::uint8_t>(15 - ((flags >> 4) & 7));

  std::optional<DeflateParams> sp;
  std::string answer;
  auto ec = negotiate_deflate(header, server, sp, answer);
  if (ec && (sp || !answer.empty())) std::abort();
  if (sp.has_value() != !answer.empty()) std::abort();
  if (sp) {
    if (sp->server_max_window_bits < 8 || sp->server_max_window_bits > 15) std::abort();
    if (sp->client_max_window_bits < 8 || sp->client_max_window_bits > 15) std::abort();
    DeflateConfig client;
    client.enable = true;
    client.offer_client_max_window_bits = true;
    std::optional<DeflateParams> cp;
    if (accept_deflate_response(answer, client, cp) || !cp) std::abort();
    if (cp->server_no_context_takeover != sp->server_no_context_takeover ||
        cp->server_max_window_bits != sp->server_max_window_bits ||
        cp->client_max_window_bits > sp->client_max_window_bits)
      std::abort();
    if (sp->client_no_context_takeover && !cp->client_no_context_takeover) std::abort();
  }

  // The same bytes as a server's answer to a few client offers.
  DeflateConfig client;
  client.enable = true;
  client.server_no_context_takeover = flags & 1;
  client.offer_client_max_window_bits = flags & 2;
  client.server_max_window_bits = static_cast<std::uint8_t>(8 + ((flags >> 2) & 7));
  client.client_max_window_bits = static_cast<std::uint8_t>(15 - ((flags >> 4) & 7));
  std::optional<DeflateParams> cp;
  ec = accept_deflate_response(header, client, cp);
  if (ec && cp) std::abort();
  if (cp) {
    if (cp->server_max_window_bits > client.server_max_window_bits) std::abort();
    if (client.server_no_context_takeover && !cp->server_no_context_takeover) std::abort();
    (void)cp->to_string();
  }
  return 0;
}
