// permessage-deflate negotiation (RFC 7692 5 and 7.1) over the
// Sec-WebSocket-Extensions grammar of RFC 6455 9.1.
#include <duplex/error.hpp>
#include <duplex/protocol/connection.hpp>
#include <duplex/protocol/deflate.hpp>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace duplex::protocol {
namespace {

constexpr std::string_view extension_name = "permessage-deflate";
constexpr std::string_view p_server_no_context_takeover = "server_no_context_takeover";
constexpr std::string_view p_client_no_context_takeover = "client_no_context_takeover";
constexpr std::string_view p_server_max_window_bits = "server_max_window_bits";
constexpr std::string_view p_client_max_window_bits = "client_max_window_bits";

// zlib refuses a raw deflate compressor with a 256-byte window (see the header).
constexpr std::uint8_t min_compressor_bits = 9;

bool iequal(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto x = static_cast<unsigned char>(a[i]);
    auto y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<unsigned char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

// RFC 9110 5.6.2: tchar.
bool is_tchar(char c) noexcept {
  auto u = static_cast<unsigned char>(c);
  if ((u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~': return true;
    default: return false;
  }
}

bool is_token(std::string_view s) noexcept {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

struct Param {
  std::string_view name;
  bool has_value = false;
  std::string value;  ///< unescaped
};

struct Element {
  std::string_view name;
  std::vector<Param> params;
};

// Parses an extension-list (RFC 6455 9.1, with the list rule of RFC 9110 5.6.1:
// empty elements and optional white space are allowed). False when malformed.
class ExtensionParser {
public:
  explicit ExtensionParser(std::string_view s) : s_(s) {}

  bool parse(std::vector<Element>& out) {
    for (;;) {
      skip_ows();
      if (at_end()) return true;
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      Element e;
      e.name = token();
      if (e.name.empty()) return false;
      skip_ows();
      while (!at_end() && s_[pos_] == ';') {
        ++pos_;
        skip_ows();
        Param p;
        p.name = token();
        if (p.name.empty()) return false;
        skip_ows();
        if (!at_end() && s_[pos_] == '=') {
          ++pos_;
          skip_ows();
          p.has_value = true;
          if (!value(p.value)) return false;
          skip_ows();
        }
        e.params.push_back(std::move(p));
      }
      if (!at_end() && s_[pos_] != ',') return false;
      out.push_back(std::move(e));
    }
  }

private:
  [[nodiscard]] bool at_end() const noexcept { return pos_ >= s_.size(); }
  void skip_ows() noexcept {
    while (!at_end() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
  }
  std::string_view token() noexcept {
    std::size_t start = pos_;
    while (!at_end() && is_tchar(s_[pos_])) ++pos_;
    return s_.substr(start, pos_ - start);
  }
  // token / quoted-string; RFC 6455 9.1: a quoted value, unescaped, must be a token.
  bool value(std::string& out) {
    if (!at_end() && s_[pos_] == '"') {
      ++pos_;
      for (;;) {
        if (at_end()) return false;
        char c = s_[pos_++];
        if (c == '"') break;
        if (c == '\\') {
          if (at_end()) return false;
          c = s_[pos_++];
        }
        out.push_back(c);
      }
      return is_token(out);
    }
    out = token();
    return !out.empty();
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

// RFC 7692 7.1.2.1/7.1.2.2: a decimal integer 8..15 without leading zeroes.
bool parse_window_bits(const std::string& v, std::uint8_t& out) noexcept {
  if (v.size() == 1 && v[0] >= '8' && v[0] <= '9') {
    out = static_cast<std::uint8_t>(v[0] - '0');
    return true;
  }
  if (v.size() == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') {
    out = static_cast<std::uint8_t>(10 + (v[1] - '0'));
    return true;
  }
  return false;
}

// The parameters of one permessage-deflate element, as sent.
struct Parsed {
  bool server_no_context_takeover = false;
  bool client_no_context_takeover = false;
  bool has_server_max_window_bits = false;
  std::uint8_t server_max_window_bits = 15;
  bool has_client_max_window_bits = false;
  bool client_max_window_bits_has_value = false;
  std::uint8_t client_max_window_bits = 15;
};

// RFC 7692 5: unknown parameters, repeated parameters and invalid values make
// an offer declined (server) or a response fatal (client). `response` selects
// the rules of 7.1.2.2: in a response, client_max_window_bits needs a value.
bool parse_params(const Element& e, bool response, Parsed& out) {
  bool seen_snct = false, seen_cnct = false, seen_smwb = false, seen_cmwb = false;
  for (const Param& p : e.params) {
    if (iequal(p.name, p_server_no_context_takeover)) {
      // 7.1.1.1: this parameter has no value.
      if (seen_snct || p.has_value) return false;
      seen_snct = out.server_no_context_takeover = true;
    } else if (iequal(p.name, p_client_no_context_takeover)) {
      // 7.1.1.2: this parameter has no value.
      if (seen_cnct || p.has_value) return false;
      seen_cnct = out.client_no_context_takeover = true;
    } else if (iequal(p.name, p_server_max_window_bits)) {
      // 7.1.2.1: always with a value, 8..15.
      if (seen_smwb || !p.has_value) return false;
      if (!parse_window_bits(p.value, out.server_max_window_bits)) return false;
      seen_smwb = out.has_server_max_window_bits = true;
    } else if (iequal(p.name, p_client_max_window_bits)) {
      // 7.1.2.2: optional value in an offer, required in a response.
      if (seen_cmwb) return false;
      if (p.has_value) {
        if (!parse_window_bits(p.value, out.client_max_window_bits)) return false;
        out.client_max_window_bits_has_value = true;
      } else if (response) {
        return false;
      }
      seen_cmwb = out.has_client_max_window_bits = true;
    } else {
      return false;
    }
  }
  return true;
}

std::uint8_t compressor_bits(std::uint8_t configured) noexcept {
  return std::max(configured, min_compressor_bits);
}

DeflateParams local_settings(const DeflateConfig& c) {
  DeflateParams p;
  p.compression_level = c.compression_level;
  p.memory_level = c.memory_level;
  p.compress_threshold = c.compress_threshold;
  return p;
}

void append_bits(std::string& s, std::string_view name, std::uint8_t bits) {
  s += "; ";
  s += name;
  s += '=';
  s += std::to_string(bits);
}

}  // namespace

void check_deflate_config(const DeflateConfig& c) {
  if (c.server_max_window_bits < 8 || c.server_max_window_bits > 15)
    throw std::invalid_argument("server_max_window_bits: must be 8..15 (RFC 7692 7.1.2.1)");
  if (c.client_max_window_bits < 8 || c.client_max_window_bits > 15)
    throw std::invalid_argument("client_max_window_bits: must be 8..15 (RFC 7692 7.1.2.2)");
  if (c.compression_level < -1 || c.compression_level > 9)
    throw std::invalid_argument("compression_level: must be -1..9 (zlib)");
  if (c.memory_level < 1 || c.memory_level > 9)
    throw std::invalid_argument("memory_level: must be 1..9 (zlib)");
}

std::string DeflateParams::to_string() const {
  std::string s(extension_name);
  if (server_no_context_takeover) (s += "; ") += p_server_no_context_takeover;
  if (client_no_context_takeover) (s += "; ") += p_client_no_context_takeover;
  if (server_max_window_bits < 15) append_bits(s, p_server_max_window_bits, server_max_window_bits);
  if (client_max_window_bits < 15) append_bits(s, p_client_max_window_bits, client_max_window_bits);
  return s;
}

bool DeflateParams::can_compress(Role role) const noexcept {
  std::uint8_t bits = role == Role::server ? server_max_window_bits : client_max_window_bits;
  return bits >= min_compressor_bits;
}

std::string make_deflate_offer(const DeflateConfig& c) {
  check_deflate_config(c);
  if (!c.enable) return {};
  std::string s(extension_name);
  if (c.server_no_context_takeover) (s += "; ") += p_server_no_context_takeover;
  if (c.client_no_context_takeover) (s += "; ") += p_client_no_context_takeover;
  // The server's window only limits what we inflate: 8 is fine here.
  if (c.server_max_window_bits < 15)
    append_bits(s, p_server_max_window_bits, c.server_max_window_bits);
  // Our own compressor's window: never below what zlib can do.
  if (c.client_max_window_bits < 15)
    append_bits(s, p_client_max_window_bits, compressor_bits(c.client_max_window_bits));
  else if (c.offer_client_max_window_bits)
    (s += "; ") += p_client_max_window_bits;
  return s;
}

std::error_code accept_deflate_response(std::string_view header, const DeflateConfig& offered,
                                        std::optional<DeflateParams>& out) {
  check_deflate_config(offered);
  out.reset();
  std::vector<Element> elements;
  if (!ExtensionParser(header).parse(elements)) return error::bad_extension_offer;
  if (elements.empty()) return {};
  // RFC 6455 9.1: the server may only accept extensions the client offered,
  // and we offered a single permessage-deflate.
  if (!offered.enable || elements.size() != 1 || !iequal(elements[0].name, extension_name))
    return error::unexpected_extension;

  // RFC 7692 5: fail on unknown or repeated parameters and invalid values.
  Parsed r;
  if (!parse_params(elements[0], true, r)) return error::bad_extension_offer;

  // 7.1.1.1: a server accepts our server_no_context_takeover by echoing it
  // (it may also send it unasked).
  if (offered.server_no_context_takeover && !r.server_no_context_takeover)
    return error::bad_extension_offer;
  // 7.1.2.1: it accepts our server_max_window_bits with the same or a smaller
  // value (and may send one unasked).
  if (offered.server_max_window_bits < 15) {
    if (!r.has_server_max_window_bits) return error::bad_extension_offer;
    if (r.server_max_window_bits > offered.server_max_window_bits)
      return error::bad_extension_offer;
  }
  // 7.1.2.2: client_max_window_bits only if we offered it, not above our value.
  std::uint8_t own_bits = compressor_bits(offered.client_max_window_bits);
  bool offered_cmwb = offered.client_max_window_bits < 15 || offered.offer_client_max_window_bits;
  if (r.has_client_max_window_bits) {
    if (!offered_cmwb) return error::bad_extension_offer;
    if (offered.client_max_window_bits < 15 && r.client_max_window_bits > own_bits)
      return error::bad_extension_offer;
  }

  DeflateParams p = local_settings(offered);
  p.server_no_context_takeover = r.server_no_context_takeover;
  // We announced it, so we keep to it even if the server did not echo it.
  p.client_no_context_takeover = r.client_no_context_takeover || offered.client_no_context_takeover;
  p.server_max_window_bits = r.has_server_max_window_bits ? r.server_max_window_bits : 15;
  p.client_max_window_bits = r.has_client_max_window_bits          ? r.client_max_window_bits
                             : offered.client_max_window_bits < 15 ? own_bits
                                                                   : std::uint8_t{15};
  out = p;
  return {};
}

std::error_code negotiate_deflate(std::string_view header, const DeflateConfig& c,
                                  std::optional<DeflateParams>& out, std::string& response) {
  check_deflate_config(c);
  out.reset();
  response.clear();
  std::vector<Element> elements;
  if (!ExtensionParser(header).parse(elements)) return error::bad_extension_offer;
  if (!c.enable) return {};

  for (const Element& e : elements) {
    if (!iequal(e.name, extension_name)) continue;
    Parsed o;
    // RFC 7692 5: decline an offer with unknown or repeated parameters or an
    // invalid value, and try the next one.
    if (!parse_params(e, false, o)) continue;

    DeflateParams p = local_settings(c);
    // 7.1.1.1: an offered server_no_context_takeover must be accepted by
    // echoing it; we may also send it unasked (our own choice).
    p.server_no_context_takeover = o.server_no_context_takeover || c.server_no_context_takeover;
    // 7.1.1.2: echoing an offered client_no_context_takeover lets us inflate
    // without per-connection state; we may also require it unasked.
    p.client_no_context_takeover = o.client_no_context_takeover || c.client_no_context_takeover;

    // 7.1.2.1: our window is at most the offered one; we may also announce a
    // smaller one unasked. An offered 8 is accepted and honoured by sending
    // uncompressed (zlib cannot compress with 8; see the header).
    std::uint8_t server_bits = compressor_bits(c.server_max_window_bits);
    if (o.has_server_max_window_bits) server_bits = std::min(server_bits, o.server_max_window_bits);
    bool say_server_bits = o.has_server_max_window_bits || server_bits < 15;
    p.server_max_window_bits = server_bits;

    // 7.1.2.2: the client's window may be limited only if the offer named
    // client_max_window_bits, and only to its value or below.
    std::uint8_t client_bits = 15;
    bool say_client_bits = false;
    if (o.has_client_max_window_bits) {
      std::uint8_t offered_bits =
          o.client_max_window_bits_has_value ? o.client_max_window_bits : std::uint8_t{15};
      client_bits = std::min(offered_bits, c.client_max_window_bits);
      say_client_bits = client_bits < 15;
    }
    p.client_max_window_bits = client_bits;
    // 7.1.1.2: a client whose window we cannot limit is asked to drop its
    // context after each message instead, so its inflate state is not kept.
    if (c.client_no_context_takeover_unless_window_limited && c.client_max_window_bits < 15 &&
        !o.has_client_max_window_bits)
      p.client_no_context_takeover = true;

    response.assign(extension_name);
    if (p.server_no_context_takeover) (response += "; ") += p_server_no_context_takeover;
    if (p.client_no_context_takeover) (response += "; ") += p_client_no_context_takeover;
    if (say_server_bits) append_bits(response, p_server_max_window_bits, server_bits);
    if (say_client_bits) append_bits(response, p_client_max_window_bits, client_bits);
    out = p;
    return {};
  }
  return {};
}

}  // namespace duplex::protocol
