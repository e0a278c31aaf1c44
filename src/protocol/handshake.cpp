// The RFC 6455 section 4 opening handshake: HTTP/1.1 header blocks in and out.
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <duplex/error.hpp>
#include <duplex/protocol/handshake.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "protocol/base64.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace duplex::protocol {
namespace {

// --- character classes ----------------------------------------------------------

enum CharClass : std::uint8_t {
  // RFC 9110 5.6.2: tchar, the characters of a token (field names, methods).
  tchar = 1,
  // RFC 9110 5.5: field-vchar / SP / HTAB (VCHAR and obs-text), what a field
  // value may hold; every other control, CR, LF and NUL included, is refused.
  value_char = 2,
  // RFC 9112 3.2: a request target has no white space or controls. Bytes over
  // 0x7F are accepted on receipt (some clients send raw UTF-8 paths) though we
  // never send them.
  target_char = 4,
  // RFC 3986 3.2.2 and 3.2.3: the characters of a Host value, uri-host (a
  // reg-name: unreserved, pct-encoded, sub-delims; or an [IP-literal]) and
  // ":" port.
  host_char = 8,
};

constexpr std::array<std::uint8_t, 256> make_char_table() {
  std::array<std::uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    std::uint8_t v = 0;
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    constexpr std::string_view extra = "!#$%&'*+-.^_`|~";
    if (alnum || extra.find(static_cast<char>(c)) != std::string_view::npos) v |= tchar;
    if (c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7F)) v |= value_char;
    if (c >= 0x21 && c != 0x7F) v |= target_char;
    constexpr std::string_view host_extra = "-._~%!$&'()*+,;=:[]";
    if (alnum || host_extra.find(static_cast<char>(c)) != std::string_view::npos) v |= host_char;
    t[static_cast<std::size_t>(c)] = v;
  }
  return t;
}
constexpr auto char_table = make_char_table();

bool is(char c, CharClass cls) noexcept {
  return (char_table[static_cast<unsigned char>(c)] & cls) != 0;
}
bool all_of(std::string_view s, CharClass cls) noexcept {
  for (char c : s)
    if (!is(c, cls)) return false;
  return true;
}
bool is_ows(char c) noexcept {
  return c == ' ' || c == '\t';
}

std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

// A field name (or token) to recognise case-insensitively without a call:
// built at compile time from its lower-case spelling as the words to compare
// (8 bytes, or 4 for names under 8, the last word ending at the end) and,
// per word, 0x20 in the bytes that are letters. `s | fold == word` then
// accepts both cases of each letter and only the exact byte elsewhere ('-'
// is 0x2D, and so is CR | 0x20).
template <std::size_t Size>
struct FieldName {
  static_assert(Size >= 4, "shorter names are compared with iequals");
  static constexpr std::size_t width = Size >= 8 ? 8 : 4;
  static constexpr std::size_t words = (Size + width - 1) / width;
  std::array<std::uint64_t, words> word{};
  std::array<std::uint64_t, words> fold{};

  static constexpr std::size_t offset(std::size_t i) noexcept {
    return i + 1 == words ? Size - width : i * width;
  }

  consteval explicit FieldName(const char (&lower)[Size + 1]) {
    for (std::size_t i = 0; i < words; ++i)
      for (std::size_t b = 0; b < width; ++b) {
        const auto c = static_cast<unsigned char>(lower[offset(i) + b]);
        word[i] |= std::uint64_t{c} << (8 * b);
        if (c >= 'a' && c <= 'z') fold[i] |= std::uint64_t{0x20} << (8 * b);
      }
  }

  [[nodiscard]] bool matches(std::string_view s) const noexcept {
    if (s.size() != Size) return false;
    for (std::size_t i = 0; i < words; ++i) {
      std::uint64_t w = 0;
      if constexpr (std::endian::native == std::endian::little) {
        if constexpr (width == 8) {
          std::memcpy(&w, s.data() + offset(i), 8);
        } else {
          std::uint32_t v;
          std::memcpy(&v, s.data() + offset(i), 4);
          w = v;
        }
      } else {
        for (std::size_t b = 0; b < width; ++b)
          w |= std::uint64_t{static_cast<unsigned char>(s[offset(i) + b])} << (8 * b);
      }
      if ((w | fold[i]) != word[i]) return false;
    }
    return true;
  }
};
template <std::size_t N>
FieldName(const char (&)[N]) -> FieldName<N - 1>;

// Skips 16 or 8 bytes at a time while none of them is a control or DEL (all
// value characters; HTAB too is left to the byte loop). Exact: the "has a byte less
// than n" bit trick can misreport which byte, never whether there is one.
const char* skip_plain_value_words(const char* p, const char* end) noexcept {
#if defined(__SSE2__)
  // 16 bytes per step: a byte below 0x20 (compared signed after flipping the
  // top bit, so obs-text stays in) or DEL stops the scan at its position.
  const __m128i flip = _mm_set1_epi8(static_cast<char>(0x80));
  const __m128i space = _mm_set1_epi8(static_cast<char>(0x20 ^ 0x80));
  const __m128i del_byte = _mm_set1_epi8(0x7F);
  while (end - p >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i stop =
        _mm_or_si128(_mm_cmplt_epi8(_mm_xor_si128(v, flip), space), _mm_cmpeq_epi8(v, del_byte));
    if (const auto mask = static_cast<unsigned>(_mm_movemask_epi8(stop)); mask != 0)
      return p + std::countr_zero(mask);
    p += 16;
  }
#endif
  constexpr std::uint64_t ones = 0x0101010101010101;
  constexpr std::uint64_t high = 0x8080808080808080;
  while (end - p >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, sizeof w);
    const std::uint64_t del = w ^ (ones * 0x7F);
    const std::uint64_t below_space = (w - ones * 0x20) & ~w & high;
    const std::uint64_t is_del = (del - ones) & ~del & high;
    if ((below_space | is_del) != 0) break;
    p += 8;
  }
  return p;
}

// A field value we write: value characters only, and no white space at either
// end (a parser trims it, so it would not survive the trip).
bool is_valid_value(std::string_view v) noexcept {
  const char* const rest = skip_plain_value_words(v.data(), v.data() + v.size());
  return all_of(v.substr(static_cast<std::size_t>(rest - v.data())), value_char) &&
         (v.empty() || (!is_ows(v.front()) && !is_ows(v.back())));
}

// Calls f(element) for each trimmed, non-empty element of a comma list
// (RFC 9110 5.6.1). A comma inside a quoted-string (RFC 9110 5.6.4) does not
// split; f returns true to stop.
template <class F>
bool for_each_element(std::string_view value, F&& f) {
  std::size_t start = 0;
  bool quoted = false;
  for (std::size_t i = 0; i <= value.size(); ++i) {
    if (i < value.size()) {
      const char c = value[i];
      if (quoted) {
        // quoted-pair: the next byte, if any, is literal.
        if (c == '\\' && i + 1 < value.size())
          ++i;
        else if (c == '"')
          quoted = false;
        continue;
      }
      if (c == '"') {
        quoted = true;
        continue;
      }
      if (c != ',') continue;
    }
    const auto element = trim_ows(value.substr(start, std::min(i, value.size()) - start));
    if (!element.empty() && f(element)) return true;
    start = i + 1;
  }
  return false;
}

std::size_t count_headers(const HttpHeaders& headers, std::string_view name) noexcept {
  return static_cast<std::size_t>(std::count_if(
      headers.begin(), headers.end(), [&](const HttpHeader& h) { return iequals(h.name, name); }));
}

// Writes into `out` (reusing its storage) the non-empty values of every
// header named `name`, joined with ", ".
void join_values(const HttpHeaders& headers, std::string_view name, std::string& out) {
  out.clear();
  for (const auto& h : headers) {
    if (!iequals(h.name, name) || h.value.empty()) continue;
    if (!out.empty()) out += ", ";
    out += h.value;
  }
}

// --- header block parsing ---------------------------------------------------------

// Replaces the contents of `s` with [p, p + n), reusing its storage. The
// string's append path is the shortest one in libstdc++ (assign goes through
// the general replace, which also handles overlapping source and target).
void set(std::string& s, const char* p, std::size_t n) {
  s.clear();
  s.append(p, n);
}
void set(std::string& s, std::string_view v) {
  set(s, v.data(), v.size());
}

// Looks for the end of the header block ("\r\n\r\n") within max_size bytes,
// resuming at `scanned`. Returns the block's size, or 0 (incomplete or error).
std::size_t find_block_end(std::string_view data, std::size_t max_size, std::size_t& scanned,
                           std::error_code& ec) noexcept {
  ec.clear();
  const std::size_t limit = std::min(data.size(), max_size);
  std::size_t i = std::min(scanned, limit);
  // Each LF: 0 to go on, else the block's size + 1 (or 1 for an error).
  const auto at_lf = [&](std::size_t p) -> std::size_t {
    // RFC 9112 2.2: lines end in CRLF; a bare LF is refused rather than taken
    // as a line end, so we never read a message differently from a proxy.
    if (p == 0 || data[p - 1] != '\r') {
      ec = make_error_code(error::bad_http_message);
      return 1;
    }
    // The LF two bytes back was itself checked to follow a CR: an empty line.
    if (p >= 3 && data[p - 2] == '\n') {
      scanned = p + 1;
      return p + 2;
    }
    return 0;
  };
#if defined(__SSE2__)
  // 16 bytes per step, every LF of the step taken from one mask: a request
  // has a line end every 20-40 bytes, where a memchr call per line costs
  // more than the search itself.
  const __m128i lf = _mm_set1_epi8('\n');
  for (; limit - i >= 16; i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data.data() + i));
    for (auto mask = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, lf))); mask != 0;
         mask &= mask - 1)
      if (const std::size_t r = at_lf(i + static_cast<std::size_t>(std::countr_zero(mask))))
        return r - 1;
  }
#endif
  while (i < limit) {
    const void* hit = std::memchr(data.data() + i, '\n', limit - i);
    if (hit == nullptr) break;
    const auto p = static_cast<std::size_t>(static_cast<const char*>(hit) - data.data());
    if (const std::size_t r = at_lf(p)) return r - 1;
    i = p + 1;
  }
  scanned = limit;
  // RFC 6455 4.2.1 leaves the size to us: past the bound the block cannot end
  // in time, so refuse it instead of buffering more.
  if (data.size() >= max_size) ec = make_error_code(error::header_too_large);
  return 0;
}

// The first line of a complete block, without its CRLF. Every LF in the block
// follows a CR (find_block_end checked it).
std::string_view first_line(std::string_view block) noexcept {
  return block.substr(0, block.find('\n') - 1);
}

bool malformed(std::error_code& ec) noexcept {
  ec = make_error_code(error::bad_http_message);
  return false;
}

// RFC 9112 2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive.
bool parse_version(std::string_view v, int& minor, std::error_code& ec) noexcept {
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
      v[7] < '0' || v[7] > '9')
    return malformed(ec);
  // RFC 9110 6.2: a different major version is a different protocol.
  if (v[5] != '1') {
    ec = make_error_code(error::bad_http_version);
    return false;
  }
  minor = v[7] - '0';
  return true;
}

// Parses the field lines of `block` from offset `pos` (just after the start
// line) into `headers`, reusing the strings already there. One pass per line:
// the block ends in CRLF CRLF, so every loop below stops at a CR inside it.
// The first ':' in [p, end), or end: 8 bytes per step ("has a zero byte"
// on the word XOR ':', exact for the first match), then byte by byte.
const char* find_colon(const char* p, const char* end) noexcept {
  if constexpr (std::endian::native == std::endian::little) {
    constexpr std::uint64_t ones = 0x0101010101010101;
    constexpr std::uint64_t high = 0x8080808080808080;
    while (end - p >= 8) {
      std::uint64_t w;
      std::memcpy(&w, p, sizeof w);
      const std::uint64_t x = w ^ (ones * ':');
      if (const std::uint64_t hit = (x - ones) & ~x & high; hit != 0)
        return p + std::countr_zero(hit) / 8;
      p += 8;
    }
  }
  while (p != end && *p != ':') ++p;
  return p;
}

// Names the handshake looks for, and others an upgrade request (a
// browser's) mostly holds.
constexpr FieldName host_name("host");
constexpr FieldName origin_name("origin");
constexpr FieldName pragma_name("pragma");
constexpr FieldName upgrade_name("upgrade");
constexpr FieldName connection_name("connection");
constexpr FieldName user_agent_name("user-agent");
constexpr FieldName cache_control_name("cache-control");
constexpr FieldName content_length_name("content-length");
constexpr FieldName accept_encoding_name("accept-encoding");
constexpr FieldName accept_language_name("accept-language");
constexpr FieldName key_name("sec-websocket-key");
constexpr FieldName transfer_encoding_name("transfer-encoding");
constexpr FieldName version_name("sec-websocket-version");
constexpr FieldName protocol_name("sec-websocket-protocol");
constexpr FieldName extensions_name("sec-websocket-extensions");

// True for the common names, in any letter case: a match is a token, known
// without looking at each byte.
bool is_common_name(std::string_view name) noexcept {
  switch (name.size()) {
    case 4: return host_name.matches(name);
    case 6: return origin_name.matches(name) || pragma_name.matches(name);
    case 7: return upgrade_name.matches(name);
    case 10: return connection_name.matches(name) || user_agent_name.matches(name);
    case 13: return cache_control_name.matches(name);
    case 14: return content_length_name.matches(name);
    case 15: return accept_encoding_name.matches(name) || accept_language_name.matches(name);
    case 17: return key_name.matches(name) || transfer_encoding_name.matches(name);
    case 21: return version_name.matches(name);
    case 22: return protocol_name.matches(name);
    case 24: return extensions_name.matches(name);
    default: return false;
  }
}

bool parse_fields(std::string_view block, std::size_t pos, HttpHeaders& headers,
                  std::error_code& ec) {
  const char* p = block.data() + pos;
  const char* const end = block.data() + block.size();
  std::size_t n = 0;
  for (;;) {
    // The first empty line ends the block (find_block_end stopped there), so a
    // CR opening a line anywhere else is a bare CR.
    if (*p == '\r') {
      if (p + 2 != end) return malformed(ec);
      break;
    }
    const char* const name = p;
    p = find_colon(p, end);
    // RFC 9112 5.2: obs-fold (a line starting with white space) may be refused
    // with 400; we refuse it rather than guess how another parser joins it.
    // RFC 9112 5.1: no white space between the field name and the colon: the
    // name is a token up to the first ':' (a line without one fails here
    // too, on the CR of its end).
    const std::string_view name_text(name, static_cast<std::size_t>(p - name));
    if (p == end || name_text.empty() || (!is_common_name(name_text) && !all_of(name_text, tchar)))
      return malformed(ec);
    const char* const name_end = p++;
    while (is_ows(*p)) ++p;
    const char* const value = p;
    // RFC 9110 5.5: CR, LF and NUL in a value are dangerous; we refuse every
    // control but HTAB (the loop stops at the first one, which must be CRLF).
    p = skip_plain_value_words(p, end);
    while (is(*p, value_char)) ++p;
    if (p[0] != '\r' || p[1] != '\n') return malformed(ec);
    const char* value_end = p;
    while (value_end != value && is_ows(value_end[-1])) --value_end;
    // Room for a typical request's fields at once, not a growth step per few.
    if (n == 0 && headers.capacity() < 16) headers.reserve(16);
    if (n == headers.size()) headers.emplace_back();
    set(headers[n].name, name, static_cast<std::size_t>(name_end - name));
    set(headers[n].value, value, static_cast<std::size_t>(value_end - value));
    ++n;
    p += 2;
  }
  headers.resize(n);
  return true;
}

bool parse_request_block(std::string_view block, HttpRequest& out, std::error_code& ec) {
  // RFC 9112 3: request-line = method SP request-target SP HTTP-version, read
  // in one pass that also checks each part's characters. The block ends in
  // CRLF CRLF, so each loop stops inside it.
  const char* p = block.data();
  const char* const end = block.data() + block.size();
  const char* const method = p;
  while (is(*p, tchar)) ++p;
  const char* const method_end = p;
  if (method_end == method || *p != ' ') return malformed(ec);
  const char* const target = ++p;
  while (is(*p, target_char)) ++p;
  const char* const target_end = p;
  if (target_end == target || *p != ' ') return malformed(ec);
  ++p;
  // The version is the rest of the line: exactly 8 characters, then CRLF.
  constexpr std::size_t version_size = 8;
  if (end - p < static_cast<std::ptrdiff_t>(version_size + 2) || p[version_size] != '\r' ||
      p[version_size + 1] != '\n')
    return malformed(ec);
  if (!parse_version(std::string_view(p, version_size), out.version_minor, ec)) return false;
  set(out.method, method, static_cast<std::size_t>(method_end - method));
  set(out.target, target, static_cast<std::size_t>(target_end - target));
  const auto line_end = static_cast<std::size_t>(p + version_size + 2 - block.data());
  return parse_fields(block, line_end, out.headers, ec);
}

bool parse_response_block(std::string_view block, HttpResponse& out, std::error_code& ec) {
  const auto line = first_line(block);
  // RFC 9112 4: status-line = HTTP-version SP status-code SP [ reason-phrase ].
  // A missing SP before an empty reason is tolerated (seen in the wild, and
  // harmless: the status code already ends at 3 digits).
  if (line.size() < 12 || line[8] != ' ' || (line.size() > 12 && line[12] != ' '))
    return malformed(ec);
  if (!parse_version(line.substr(0, 8), out.version_minor, ec)) return false;
  const auto code = line.substr(9, 3);
  int status = 0;
  for (char c : code) {
    if (c < '0' || c > '9') return malformed(ec);
    status = status * 10 + (c - '0');
  }
  // RFC 9110 15: the first digit is the class, 1 to 5.
  const auto reason = line.size() > 13 ? line.substr(13) : std::string_view{};
  if (status < 100 || status > 599 || !all_of(reason, value_char)) return malformed(ec);
  out.status = status;
  set(out.reason, reason);
  return parse_fields(block, line.size() + 2, out.headers, ec);
}

template <class Message, class ParseBlock>
std::size_t parse_message(std::string_view data, Message& out, std::error_code& ec,
                          std::size_t max_size, std::size_t& scanned, ParseBlock parse_block) {
  const std::size_t size = find_block_end(data, max_size, scanned, ec);
  if (size == 0) return 0;
  if (!parse_block(data.substr(0, size), out, ec)) return 0;
  return size;
}

// --- building ------------------------------------------------------------------------

void append_header(std::string& out, std::string_view name, std::string_view value) {
  out.append(name).append(": ").append(value).append("\r\n");
}

[[noreturn]] void invalid(const char* what) {
  throw std::invalid_argument(what);
}

// RFC 6455 1.3: the GUID every server appends to the key.
constexpr std::string_view websocket_guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
// RFC 6455 4.1: the key is 16 random bytes.
constexpr std::size_t key_bytes = 16;

// Canonical base64 (RFC 4648 3.5) of exactly 16 bytes, checked without
// decoding it.
bool is_valid_key(std::string_view key) noexcept {
  return detail::base64_decodes_to(key, key_bytes);
}

// RFC 9112 3.2 and RFC 3986 3.2.2: Host is uri-host [":" port], where uri-host
// is a reg-name (unreserved, pct-encoded, sub-delims) or an [IP-literal]. The
// check is on characters only: enough to keep white space, '/', '@', quotes and
// controls out of a value we hand on.
bool is_valid_host(std::string_view host) noexcept {
  return !host.empty() && all_of(host, host_char);
}

bool is_absolute_form(std::string_view target) noexcept {
  // RFC 3986 3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then
  // "://" and a non-empty authority for the schemes a WebSocket may use.
  const auto sep = target.find("://");
  if (sep == 0 || sep == std::string_view::npos || sep + 3 == target.size()) return false;
  for (std::size_t i = 0; i < sep; ++i) {
    const char c = target[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    const bool other = (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
    if (!alpha && !(i > 0 && other)) return false;
  }
  return true;
}

}  // namespace

// --- header access --------------------------------------------------------------------

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  std::size_t i = 0;
  // Names usually arrive in the case we compare with: equal words are
  // skipped 8 bytes at a time, a word that differs is checked byte by byte.
  for (; i + 8 <= a.size(); i += 8) {
    std::uint64_t x;
    std::uint64_t y;
    std::memcpy(&x, a.data() + i, sizeof x);
    std::memcpy(&y, b.data() + i, sizeof y);
    if (x != y) break;
  }
  for (; i < a.size(); ++i) {
    const char x = a[i];
    const char y = b[i];
    if (x == y) continue;
    // Different bytes match only as the two cases of one ASCII letter.
    const char lx = static_cast<char>(x | 0x20);
    if (lx != static_cast<char>(y | 0x20) || lx < 'a' || lx > 'z') return false;
  }
  return true;
}

std::optional<std::string_view> find_header(const HttpHeaders& headers,
                                            std::string_view name) noexcept {
  for (const auto& h : headers)
    if (iequals(h.name, name)) return std::string_view(h.value);
  return std::nullopt;
}

bool header_has_token(const HttpHeaders& headers, std::string_view name,
                      std::string_view token) noexcept {
  for (const auto& h : headers) {
    if (!iequals(h.name, name)) continue;
    if (for_each_element(h.value, [&](std::string_view e) { return iequals(e, token); }))
      return true;
  }
  return false;
}

std::vector<std::string> header_list(const HttpHeaders& headers, std::string_view name) {
  std::vector<std::string> out;
  header_list(headers, name, out);
  return out;
}

void header_list(const HttpHeaders& headers, std::string_view name, std::vector<std::string>& out) {
  std::size_t n = 0;
  for (const auto& h : headers) {
    if (!iequals(h.name, name)) continue;
    for_each_element(h.value, [&](std::string_view e) {
      if (n == out.size())
        out.emplace_back(e);
      else
        out[n].assign(e);
      ++n;
      return false;
    });
  }
  out.resize(n);
}

void join_header(const HttpHeaders& headers, std::string_view name, std::string& out) {
  join_values(headers, name, out);
}

// --- parsing ----------------------------------------------------------------------------

std::size_t parse_http_request(std::string_view data, HttpRequest& out, std::error_code& ec,
                               std::size_t max_size, std::size_t& scanned) {
  return parse_message(data, out, ec, max_size, scanned, parse_request_block);
}

std::size_t parse_http_response(std::string_view data, HttpResponse& out, std::error_code& ec,
                                std::size_t max_size, std::size_t& scanned) {
  return parse_message(data, out, ec, max_size, scanned, parse_response_block);
}

std::size_t parse_http_request(std::string_view data, HttpRequest& out, std::error_code& ec,
                               std::size_t max_size) {
  std::size_t scanned = 0;
  return parse_http_request(data, out, ec, max_size, scanned);
}

std::size_t parse_http_response(std::string_view data, HttpResponse& out, std::error_code& ec,
                                std::size_t max_size) {
  std::size_t scanned = 0;
  return parse_http_response(data, out, ec, max_size, scanned);
}

// --- client ---------------------------------------------------------------------------------

std::string generate_key() {
  std::array<std::uint8_t, key_bytes> bytes{};
  // RFC 6455 4.1 / 10.3: the nonce must be unpredictable, so a CSPRNG.
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1)
    throw std::runtime_error("generate_key: OpenSSL RAND_bytes failed");
  return detail::base64_encode(std::span<const std::uint8_t>(bytes));
}

namespace {

/// SHA-1 as OpenSSL's provider implements it, fetched once for the process
/// and kept until exit. OpenSSL 3's one-shot SHA1() fetches the algorithm on
/// every call (EVP_Q_digest): about 37,000 instructions, most of a handshake.
/// Never freed: the last reference's release destroys its lock, and a thread
/// exiting could do that while another thread takes a reference.
const EVP_MD* sha1_algorithm() {
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA1", nullptr);
  if (md == nullptr) throw std::runtime_error("SHA-1: OpenSSL has no SHA1");
  return md;
}

/// SHA-1 contexts of one thread: `start_` initialised once, copied into
/// `ctx_` for each digest. OpenSSL 3.0's EVP_DigestInit_ex2 frees and
/// re-creates the provider's context on every call; the copy re-uses the
/// algorithm and costs about 120 instructions less per digest (measured
/// under callgrind: 2,648 against 2,764 with the 60-byte input of a
/// handshake, 1,806 of them the compression itself).
class Sha1 {
public:
  Sha1() : start_(EVP_MD_CTX_new()), ctx_(EVP_MD_CTX_new()) {
    if (start_ == nullptr || ctx_ == nullptr) {
      release();
      throw std::runtime_error("SHA-1: out of memory");
    }
    if (EVP_DigestInit_ex2(start_, sha1_algorithm(), nullptr) != 1) {
      release();
      throw std::runtime_error("SHA-1: OpenSSL digest failed");
    }
  }
  ~Sha1() { release(); }
  Sha1(const Sha1&) = delete;
  Sha1& operator=(const Sha1&) = delete;

  /// The digest of a + b.
  std::array<std::uint8_t, SHA_DIGEST_LENGTH> digest(std::string_view a, std::string_view b) {
    std::array<std::uint8_t, SHA_DIGEST_LENGTH> out{};
    unsigned int size = 0;
    bool ok = EVP_MD_CTX_copy_ex(ctx_, start_) == 1;
    // A key of usual size goes in with the GUID in one update (one call
    // through the provider instead of two).
    std::array<char, 128> joined;
    if (ok && a.size() + b.size() <= joined.size()) {
      std::memcpy(joined.data(), a.data(), a.size());
      std::memcpy(joined.data() + a.size(), b.data(), b.size());
      ok = EVP_DigestUpdate(ctx_, joined.data(), a.size() + b.size()) == 1;
    } else if (ok) {
      ok = EVP_DigestUpdate(ctx_, a.data(), a.size()) == 1 &&
           EVP_DigestUpdate(ctx_, b.data(), b.size()) == 1;
    }
    if (!ok || EVP_DigestFinal_ex(ctx_, out.data(), &size) != 1 || size != out.size())
      throw std::runtime_error("SHA-1: OpenSSL digest failed");
    return out;
  }

private:
  void release() noexcept {
    EVP_MD_CTX_free(ctx_);
    EVP_MD_CTX_free(start_);
  }

  EVP_MD_CTX* start_;
  EVP_MD_CTX* ctx_;
};

}  // namespace

namespace {

// The length of Sec-WebSocket-Accept's value: base64 of a SHA-1 digest.
constexpr std::size_t accept_size = detail::base64_encoded_size(SHA_DIGEST_LENGTH);

// Writes Sec-WebSocket-Accept for `key` at `out` (accept_size characters).
char* write_accept(std::string_view key, char* out) {
  thread_local Sha1 sha1;
  const auto digest = sha1.digest(key, websocket_guid);
  return detail::base64_encode(std::span<const std::uint8_t>(digest), out);
}

// Appends Sec-WebSocket-Accept for `key` to `out`.
void append_accept(std::string_view key, std::string& out) {
  std::array<char, accept_size> text;
  write_accept(key, text.data());
  out.append(text.data(), text.size());
}

}  // namespace

std::string compute_accept(std::string_view key) {
  std::string out;
  append_accept(key, out);
  return out;
}

std::string build_client_request(const ClientHandshakeOptions& options, std::string_view key) {
  // RFC 9112 3.2: Host is a uri-host[:port], no white space or controls.
  if (options.host.empty()) invalid("build_client_request: options.host must not be empty");
  if (!is_valid_host(options.host))
    invalid("build_client_request: options.host must be host[:port] (RFC 3986 characters)");
  // RFC 6455 4.1: the request target is the resource name, origin-form.
  if (options.target.empty() || options.target.front() != '/')
    invalid("build_client_request: options.target must start with '/'");
  for (char c : options.target)
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7F)
      invalid(
          "build_client_request: options.target must be printable ASCII (percent-encode the rest)");
  if (!is_valid_key(key)) invalid("build_client_request: key must be the base64 text of 16 bytes");
  if (!is_valid_value(options.origin))
    invalid("build_client_request: options.origin must not hold control characters");
  if (!is_valid_value(options.extensions))
    invalid("build_client_request: options.extensions must not hold control characters");
  // RFC 6455 4.1: each subprotocol is a token, and each is offered once.
  for (std::size_t i = 0; i < options.protocols.size(); ++i) {
    if (!is_token(options.protocols[i]))
      invalid("build_client_request: options.protocols elements must be HTTP tokens");
    for (std::size_t j = 0; j < i; ++j)
      if (options.protocols[j] == options.protocols[i])
        invalid("build_client_request: options.protocols must not repeat a protocol");
  }
  for (const auto& h : options.headers) {
    if (!is_valid_header(h.name, h.value))
      invalid(
          "build_client_request: options.headers must be valid and not set by the library "
          "(is_valid_header)");
    if (!options.origin.empty() && iequals(h.name, "Origin"))
      invalid("build_client_request: Origin given both in options.origin and options.headers");
  }

  std::string out;
  out.reserve(256 + options.target.size() + options.host.size() + options.origin.size() +
              options.extensions.size());
  out.append("GET ").append(options.target).append(" HTTP/1.1\r\n");
  append_header(out, "Host", options.host);
  append_header(out, "Upgrade", "websocket");
  append_header(out, "Connection", "Upgrade");
  append_header(out, "Sec-WebSocket-Key", key);
  append_header(out, "Sec-WebSocket-Version", "13");
  if (!options.origin.empty()) append_header(out, "Origin", options.origin);
  if (!options.protocols.empty()) {
    out.append("Sec-WebSocket-Protocol: ");
    for (std::size_t i = 0; i < options.protocols.size(); ++i) {
      if (i != 0) out.append(", ");
      out.append(options.protocols[i]);
    }
    out.append("\r\n");
  }
  if (!options.extensions.empty())
    append_header(out, "Sec-WebSocket-Extensions", options.extensions);
  for (const auto& h : options.headers) append_header(out, h.name, h.value);
  out.append("\r\n");
  return out;
}

std::error_code validate_server_response(const HttpResponse& response, std::string_view key,
                                         std::span<const std::string> offered_protocols,
                                         ClientHandshakeResult& out) {
  // RFC 6455 4.1 step 1: anything but 101 is handled per HTTP, not as a socket.
  if (response.status != 101) return make_http_error(response.status);
  // Step 2: Upgrade must name websocket.
  if (!header_has_token(response.headers, "Upgrade", "websocket"))
    return make_error_code(error::bad_upgrade);
  // Step 3: Connection must name Upgrade.
  if (!header_has_token(response.headers, "Connection", "upgrade"))
    return make_error_code(error::bad_connection);
  // Step 4: one accept value, the hash of our key; a second copy is ambiguous.
  if (count_headers(response.headers, "Sec-WebSocket-Accept") != 1 ||
      *find_header(response.headers, "Sec-WebSocket-Accept") != compute_accept(key))
    return make_error_code(error::bad_accept);
  // Step 6: the server selects at most one of the protocols we offered.
  std::string protocol;
  const auto protocol_headers = count_headers(response.headers, "Sec-WebSocket-Protocol");
  if (protocol_headers > 1) return make_error_code(error::unexpected_protocol);
  if (protocol_headers == 1) {
    const auto selected = *find_header(response.headers, "Sec-WebSocket-Protocol");
    if (std::find(offered_protocols.begin(), offered_protocols.end(), selected) ==
        offered_protocols.end())
      return make_error_code(error::unexpected_protocol);
    protocol.assign(selected);
  }
  // Step 5 belongs to the extension negotiator, which knows what was offered.
  out.protocol = std::move(protocol);
  join_values(response.headers, "Sec-WebSocket-Extensions", out.extensions);
  return {};
}

// --- server ---------------------------------------------------------------------------------

std::error_code check_client_request(const HttpRequest& request, ClientRequestView& out) noexcept {
  const auto& headers = request.headers;
  // RFC 6455 4.2.1 item 1: the method is GET (methods are case-sensitive).
  if (request.method != "GET") return make_error_code(error::bad_method);
  // Item 1: HTTP/1.1 or higher (the parser refuses majors other than 1).
  if (request.version_minor < 1) return make_error_code(error::bad_http_version);
  // Item 1: a Request-URI; RFC 9112 3.2.2 makes servers accept absolute-form.
  if (request.target.empty() ||
      (request.target.front() != '/' && !is_absolute_form(request.target)))
    return make_error_code(error::bad_http_message);

  // One pass over the headers (each name recognised by its length, then one
  // comparison), then the checks in the order above.
  struct Seen {
    std::size_t count = 0;
    const std::string* first = nullptr;
    void add(const std::string& value) noexcept {
      if (count++ == 0) first = &value;
    }
  };
  Seen host, version, key, origin;
  bool transfer_encoding = false;
  bool content_length = false;  // one other than 0
  bool upgrade = false;
  bool connection = false;
  bool protocols_valid = true;
  bool has_protocols = false;
  bool has_extensions = false;
  static constexpr FieldName websocket_token("websocket");
  const auto& upgrade_token = upgrade_name;
  // Most clients send the one token alone: compared at once, the list walked
  // only otherwise.
  const auto has = [](const std::string& value, const auto& token) {
    return token.matches(value) ||
           for_each_element(value, [&](std::string_view e) { return token.matches(e); });
  };
  for (const auto& h : headers) {
    const std::string_view name = h.name;
    switch (name.size()) {
      case 4:
        if (host_name.matches(name)) host.add(h.value);
        break;
      case 6:
        if (origin_name.matches(name)) origin.add(h.value);
        break;
      case 7:
        if (upgrade_name.matches(name)) upgrade = upgrade || has(h.value, websocket_token);
        break;
      case 10:
        if (connection_name.matches(name)) connection = connection || has(h.value, upgrade_token);
        break;
      case 14:
        if (content_length_name.matches(name)) content_length = content_length || h.value != "0";
        break;
      case 17:
        if (key_name.matches(name))
          key.add(h.value);
        else if (transfer_encoding_name.matches(name))
          transfer_encoding = true;
        break;
      case 21:
        if (version_name.matches(name)) version.add(h.value);
        break;
      case 22:
        if (protocol_name.matches(name)) {
          has_protocols = true;
          // Item 8 / 4.1: each offered subprotocol is a token.
          for_each_element(h.value, [&](std::string_view p) {
            protocols_valid = protocols_valid && is_token(p);
            return !protocols_valid;
          });
        }
        break;
      case 24:
        if (extensions_name.matches(name)) has_extensions = true;
        break;
      default: break;
    }
  }

  // An upgrade request has no body: bytes after the block are frames, so a
  // declared body would make us read one message two ways (RFC 9112 6.3).
  if (transfer_encoding || content_length) return make_error_code(error::bad_http_message);
  // Item 2: Host; RFC 9112 3.2: exactly one, else 400.
  if (host.count > 1) return make_error_code(error::bad_http_message);
  if (host.count == 0 || host.first->empty()) return make_error_code(error::missing_host);
  if (!is_valid_host(*host.first)) return make_error_code(error::bad_http_message);
  // Item 3: Upgrade holds "websocket".
  if (!upgrade) return make_error_code(error::bad_upgrade);
  // Item 4: Connection holds "Upgrade".
  if (!connection) return make_error_code(error::bad_connection);
  // Item 6 / 4.4: version 13, else 426 naming the version we speak.
  if (version.count != 1 || *version.first != "13") return make_error_code(error::bad_version);
  // Item 5: one key, base64 of 16 bytes.
  if (key.count != 1 || !is_valid_key(*key.first)) return make_error_code(error::bad_key);
  // Item 8 / 4.1: each offered subprotocol is a token (checked in the walk).
  if (!protocols_valid) return make_error_code(error::bad_http_message);

  out.host = *host.first;
  out.origin = origin.count != 0 ? std::string_view(*origin.first) : std::string_view{};
  out.key = *key.first;
  out.has_protocols = has_protocols;
  out.has_extensions = has_extensions;
  return {};
}

std::error_code validate_client_request(const HttpRequest& request, ServerHandshakeRequest& out) {
  ClientRequestView view;
  if (const auto ec = check_client_request(request, view)) return ec;
  out.target = request.target;
  out.host.assign(view.host);
  out.origin.assign(view.origin);
  out.key.assign(view.key);
  if (view.has_protocols)
    header_list(request.headers, "Sec-WebSocket-Protocol", out.protocols);
  else
    out.protocols.clear();
  if (view.has_extensions)
    join_values(request.headers, "Sec-WebSocket-Extensions", out.extensions);
  else
    out.extensions.clear();
  return {};
}

std::string build_server_response(std::string_view key, std::string_view protocol,
                                  std::string_view extensions, const HttpHeaders& extra) {
  std::string out;
  write_server_response(out, key, protocol, extensions, extra);
  return out;
}

void write_server_response(std::string& out, std::string_view key, std::string_view protocol,
                           std::string_view extensions, const HttpHeaders& extra) {
  if (key.empty()) invalid("build_server_response: key must not be empty");
  if (!is_valid_value(key)) invalid("build_server_response: key must not hold control characters");
  if (!protocol.empty() && !is_token(protocol))
    invalid("build_server_response: protocol must be an HTTP token");
  if (!is_valid_value(extensions))
    invalid("build_server_response: extensions must not hold control characters");
  for (const auto& h : extra)
    if (!is_valid_header(h.name, h.value))
      invalid(
          "build_server_response: extra headers must be valid and not set by the library "
          "(is_valid_header)");

  // Sized once and written in place: one call into the string instead of
  // one per piece.
  constexpr std::string_view head =
      "HTTP/1.1 101 Switching Protocols\r\n"
      "Upgrade: websocket\r\n"
      "Connection: Upgrade\r\n"
      "Sec-WebSocket-Accept: ";
  constexpr std::string_view protocol_field = "Sec-WebSocket-Protocol";
  constexpr std::string_view extensions_field = "Sec-WebSocket-Extensions";
  const auto line_size = [](std::string_view name, std::string_view value) {
    return name.size() + 2 + value.size() + 2;
  };
  // Hashed first: `out` is left alone if OpenSSL fails.
  std::array<char, accept_size> accept;
  write_accept(key, accept.data());
  std::size_t size = head.size() + accept_size + 2 + 2;
  if (!protocol.empty()) size += line_size(protocol_field, protocol);
  if (!extensions.empty()) size += line_size(extensions_field, extensions);
  for (const auto& h : extra) size += line_size(h.name, h.value);
  out.resize(size);
  char* p = out.data();
  const auto put = [&p](std::string_view text) {
    std::memcpy(p, text.data(), text.size());
    p += text.size();
  };
  const auto put_line = [&put](std::string_view name, std::string_view value) {
    put(name);
    put(": ");
    put(value);
    put("\r\n");
  };
  put(head);
  put(std::string_view(accept.data(), accept.size()));
  put("\r\n");
  if (!protocol.empty()) put_line(protocol_field, protocol);
  if (!extensions.empty()) put_line(extensions_field, extensions);
  for (const auto& h : extra) put_line(h.name, h.value);
  put("\r\n");
}

std::string build_error_response(int status, std::string_view body, const HttpHeaders& extra) {
  // A 1xx answer has no body and 101 is the success path, so errors are 2xx-5xx
  // (2xx and 3xx allowed for a refusing hook that redirects or answers plainly).
  if (status < 200 || status > 599) invalid("build_error_response: status must be within 200-599");
  // RFC 9110 15.3.5, 15.4.5: 204 and 304 never carry a body.
  if (status == 204 || status == 304)
    invalid("build_error_response: status must allow a body (not 204 or 304)");
  bool has_version = false;
  bool has_allow = false;
  for (const auto& h : extra) {
    if (!is_token(h.name) || !is_valid_value(h.value))
      invalid("build_error_response: extra header names must be tokens and values printable");
    if (iequals(h.name, "Connection") || iequals(h.name, "Content-Type") ||
        iequals(h.name, "Content-Length") || iequals(h.name, "Transfer-Encoding"))
      invalid(
          "build_error_response: extra must not hold Connection, Content-Type, Content-Length "
          "or Transfer-Encoding");
    has_version = has_version || iequals(h.name, "Sec-WebSocket-Version");
    has_allow = has_allow || iequals(h.name, "Allow");
  }

  std::string out;
  out.reserve(160 + body.size());
  out.append("HTTP/1.1 ");
  out.append(std::to_string(status)).append(" ").append(reason_phrase(status)).append("\r\n");
  append_header(out, "Connection", "close");
  append_header(out, "Content-Type", "text/plain; charset=utf-8");
  append_header(out, "Content-Length", std::to_string(body.size()));
  // RFC 6455 4.4: a 426 names the version(s) the server speaks.
  if (status == 426 && !has_version) append_header(out, "Sec-WebSocket-Version", "13");
  // RFC 9110 15.5.6: a 405 lists the allowed methods.
  if (status == 405 && !has_allow) append_header(out, "Allow", "GET");
  for (const auto& h : extra) append_header(out, h.name, h.value);
  out.append("\r\n");
  out.append(body);
  return out;
}

// --- plain HTTP ------------------------------------------------------------------------------

std::error_code request_body_length(const HttpRequest& request, std::size_t max_size,
                                    std::size_t& length) noexcept {
  // RFC 9112 6.1: Transfer-Encoding decides over Content-Length. We read
  // bodies by length only: a chunked body may come again with a length (411,
  // RFC 9110 15.5.12); any other coding is one we do not implement (501).
  bool has_coding = false;
  bool last_chunked = false;
  for (const auto& h : request.headers) {
    if (!iequals(h.name, "Transfer-Encoding")) continue;
    has_coding = true;
    for_each_element(h.value, [&](std::string_view coding) {
      last_chunked = iequals(coding, "chunked");
      return false;
    });
  }
  if (has_coding) return make_http_error(last_chunked ? 411 : 501);

  // RFC 9112 6.3 item 5: a Content-Length that is not a number, or several
  // that differ, make the message length unknowable: 400.
  std::optional<std::size_t> declared;
  for (const auto& h : request.headers) {
    if (!iequals(h.name, "Content-Length")) continue;
    if (h.value.empty()) return make_error_code(error::bad_http_message);
    std::size_t value = 0;
    bool too_large = false;
    for (char c : h.value) {
      if (c < '0' || c > '9') return make_error_code(error::bad_http_message);
      const auto digit = static_cast<std::size_t>(c - '0');
      if (value > (SIZE_MAX - digit) / 10)
        too_large = true;
      else
        value = value * 10 + digit;
    }
    // Over the bound (or over what size_t holds): refused before any of it is read.
    if (too_large || value > max_size) return make_http_error(413);
    if (declared && *declared != value) return make_error_code(error::bad_http_message);
    declared = value;
  }
  // RFC 9112 6.3 item 7: a request with neither header has no body.
  length = declared.value_or(0);
  return {};
}

std::string build_http_response(int status, const HttpHeaders& headers, std::string_view body,
                                bool head_request) {
  // A 1xx is not a final answer, and 101 belongs to the upgrade.
  if (status < 200 || status > 599) invalid("build_http_response: status must be within 200-599");
  // RFC 9110 15.3.5, 15.4.5: 204 and 304 never carry a body.
  const bool no_body = status == 204 || status == 304;
  if (no_body && !body.empty())
    invalid("build_http_response: a 204 or 304 answer must have an empty body");
  for (const auto& h : headers) {
    if (!is_token(h.name) || !is_valid_value(h.value))
      invalid("build_http_response: header names must be tokens and values printable");
    if (iequals(h.name, "Connection") || iequals(h.name, "Content-Length") ||
        iequals(h.name, "Transfer-Encoding"))
      invalid(
          "build_http_response: headers must not hold Connection, Content-Length or "
          "Transfer-Encoding (set here)");
  }
  std::string out;
  out.reserve(96 + body.size());
  out.append("HTTP/1.1 ");
  out.append(std::to_string(status)).append(" ").append(reason_phrase(status)).append("\r\n");
  for (const auto& h : headers) append_header(out, h.name, h.value);
  append_header(out, "Connection", "close");
  if (!no_body) append_header(out, "Content-Length", std::to_string(body.size()));
  out.append("\r\n");
  if (!head_request) out.append(body);
  return out;
}

std::string_view reason_phrase(int status) noexcept {
  // RFC 9110 15: the registered reason phrases.
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

int status_for(std::error_code ec) noexcept {
  if (ec.category() == http_category() && ec.value() >= 400 && ec.value() <= 599) return ec.value();
  if (ec.category() != error_category()) return 400;
  switch (static_cast<error>(ec.value())) {
    // RFC 6455 4.4: an unsupported version is answered 426 Upgrade Required.
    case error::bad_version: return 426;
    // RFC 6585 5: header fields too large.
    case error::header_too_large: return 431;
    case error::bad_method: return 405;
    // RFC 9110 15.6.6: the server does not support the request's HTTP version.
    case error::bad_http_version: return 505;
    case error::handshake_refused: return 403;
    default: return 400;
  }
}

bool is_reserved_header(std::string_view name) noexcept {
  constexpr std::string_view reserved[] = {"Host",
                                           "Upgrade",
                                           "Connection",
                                           "Sec-WebSocket-Key",
                                           "Sec-WebSocket-Version",
                                           "Sec-WebSocket-Accept",
                                           "Sec-WebSocket-Protocol",
                                           "Sec-WebSocket-Extensions",
                                           "Content-Length",
                                           "Transfer-Encoding"};
  for (auto r : reserved)
    if (iequals(name, r)) return true;
  return false;
}

bool is_valid_header(std::string_view name, std::string_view value) noexcept {
  return is_token(name) && !is_reserved_header(name) && is_valid_value(value);
}

bool is_token(std::string_view s) noexcept {
  return !s.empty() && all_of(s, tchar);
}

}  // namespace duplex::protocol
