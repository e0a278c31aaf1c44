// RFC 3629 / RFC 6455 8.1: incremental UTF-8 validation that fails at the first
// byte that can no longer lead to valid text.
#include <duplex/protocol/utf8.hpp>

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "utf8_reference.hpp"

namespace duplex::protocol {
namespace {

std::string s(std::initializer_list<int> v) {
  std::string out;
  for (int b : v) out.push_back(static_cast<char>(b));
  return out;
}

std::string encode(std::uint32_t cp) {
  std::string o;
  if (cp < 0x80) {
    o.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    o.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    o.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    o.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    o.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    o.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    o.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    o.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    o.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    o.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return o;
}

// The byte index at which feeding one byte at a time first fails, or npos.
std::size_t fail_index_bytewise(const std::string& text) {
  Utf8Validator v;
  for (std::size_t i = 0; i < text.size(); ++i)
    if (!v.feed(std::string_view(text).substr(i, 1))) return i;
  return std::string::npos;
}

std::size_t ref_fail(const std::string& t, bool* boundary = nullptr) {
  return test::utf8_first_bad(reinterpret_cast<const std::uint8_t*>(t.data()), t.size(), boundary);
}

// --- Valid text -----------------------------------------------------------------

TEST(Utf8, AcceptsEmptyAndAscii) {
  EXPECT_TRUE(is_valid_utf8(std::string_view{}));
  EXPECT_TRUE(is_valid_utf8("Hello, world"));
  std::string all;
  for (int c = 0; c < 0x80; ++c) all.push_back(static_cast<char>(c));
  EXPECT_TRUE(is_valid_utf8(all));
}

TEST(Utf8, AcceptsBoundaryCodePoints) {
  for (std::uint32_t cp :
       {0x0u, 0x7Fu, 0x80u, 0x7FFu, 0x800u, 0xFFFu, 0x1000u, 0xD7FFu, 0xE000u, 0xFFFDu, 0xFFFEu,
        0xFFFFu, 0x10000u, 0x3FFFFu, 0x40000u, 0xFFFFFu, 0x100000u, 0x10FFFFu})
    EXPECT_TRUE(is_valid_utf8(encode(cp))) << std::hex << cp;
}

TEST(Utf8, AcceptsClassicSamples) {
  EXPECT_TRUE(is_valid_utf8("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"));  // "kosme"
  EXPECT_TRUE(
      is_valid_utf8("Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!"));
  EXPECT_TRUE(is_valid_utf8("\xf0\x9f\x98\x80 emoji \xe2\x82\xac"));
}

TEST(Utf8, AcceptsEveryScalarValue) {
  std::string all;
  for (std::uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    all += encode(cp);
  }
  EXPECT_TRUE(is_valid_utf8(all));
}

// --- Invalid text: where it fails -------------------------------------------------

TEST(Utf8, RejectsC0C1AndF5ToFFAtOnce) {
  for (int b : {0xC0, 0xC1, 0xF5, 0xF6, 0xF7, 0xF8, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF}) {
    Utf8Validator v;
    EXPECT_FALSE(v.feed(s({b}))) << b;
    EXPECT_FALSE(v.ok());
  }
}

TEST(Utf8, RejectsStrayContinuationBytes) {
  for (int b = 0x80; b <= 0xBF; ++b) {
    Utf8Validator v;
    EXPECT_FALSE(v.feed(s({b}))) << b;
    EXPECT_EQ(fail_index_bytewise(s({'a', 0xC3, 0xA9, b})), 3u) << b;
  }
}

TEST(Utf8, F490FailsAtThe90) {
  Utf8Validator v;
  EXPECT_TRUE(v.feed(s({0xF4})));
  EXPECT_TRUE(v.ok());
  EXPECT_FALSE(v.complete());
  EXPECT_FALSE(v.feed(s({0x90})));
  EXPECT_EQ(fail_index_bytewise(s({0xF4, 0x90, 0x80, 0x80})), 1u);
  EXPECT_TRUE(is_valid_utf8(s({0xF4, 0x8F, 0xBF, 0xBF})));
}

TEST(Utf8, EDA0FailsAtTheA0) {
  EXPECT_EQ(fail_index_bytewise(s({0xED, 0xA0, 0x80})), 1u);
  EXPECT_EQ(fail_index_bytewise(s({0xED, 0xBF, 0xBF})), 1u);
  EXPECT_TRUE(is_valid_utf8(s({0xED, 0x9F, 0xBF})));
}

TEST(Utf8, RejectsOverlongForms) {
  EXPECT_EQ(fail_index_bytewise(s({0xC0, 0xAF})), 0u);
  EXPECT_EQ(fail_index_bytewise(s({0xC1, 0xBF})), 0u);
  EXPECT_EQ(fail_index_bytewise(s({0xE0, 0x80, 0xAF})), 1u);
  EXPECT_EQ(fail_index_bytewise(s({0xE0, 0x9F, 0xBF})), 1u);
  EXPECT_EQ(fail_index_bytewise(s({0xF0, 0x80, 0x80, 0xAF})), 1u);
  EXPECT_EQ(fail_index_bytewise(s({0xF0, 0x8F, 0xBF, 0xBF})), 1u);
  EXPECT_TRUE(is_valid_utf8(s({0xE0, 0xA0, 0x80})));
  EXPECT_TRUE(is_valid_utf8(s({0xF0, 0x90, 0x80, 0x80})));
}

TEST(Utf8, RejectsSurrogatesAndPairs) {
  for (std::uint32_t cp : {0xD800u, 0xDB7Fu, 0xDB80u, 0xDBFFu, 0xDC00u, 0xDF80u, 0xDFFFu}) {
    std::string t = s({0xE0 | static_cast<int>(cp >> 12), 0x80 | static_cast<int>((cp >> 6) & 0x3F),
                       0x80 | static_cast<int>(cp & 0x3F)});
    EXPECT_FALSE(is_valid_utf8(t)) << std::hex << cp;
  }
  EXPECT_FALSE(is_valid_utf8(s({0xED, 0xA0, 0x80, 0xED, 0xB0, 0x80})));
}

TEST(Utf8, RejectsAboveU10FFFF) {
  EXPECT_FALSE(is_valid_utf8(s({0xF4, 0x90, 0x80, 0x80})));
  EXPECT_FALSE(is_valid_utf8(s({0xF7, 0xBF, 0xBF, 0xBF})));
  EXPECT_FALSE(is_valid_utf8(s({0xF8, 0x88, 0x80, 0x80, 0x80})));
  EXPECT_FALSE(is_valid_utf8(s({0xFC, 0x84, 0x80, 0x80, 0x80, 0x80})));
}

TEST(Utf8, TruncatedAtEndIsIncompleteNotFailed) {
  for (const std::string& t : {s({0xC3}), s({0xE2, 0x82}), s({0xF0, 0x9F, 0x98}), s({'a', 0xE2})}) {
    Utf8Validator v;
    EXPECT_TRUE(v.feed(t));
    EXPECT_TRUE(v.ok());
    EXPECT_FALSE(v.complete());
    EXPECT_FALSE(is_valid_utf8(t));
  }
}

TEST(Utf8, ShortSequenceInterruptedByAscii) {
  EXPECT_EQ(fail_index_bytewise(s({0xE2, 0x82, 'a'})), 2u);
  EXPECT_EQ(fail_index_bytewise(s({0xC3, 'a'})), 1u);
  EXPECT_EQ(fail_index_bytewise(s({0xF0, 0x9F, 0x98, 0xC3})), 3u);
}

TEST(Utf8, StaysFailedUntilReset) {
  Utf8Validator v;
  EXPECT_FALSE(v.feed(s({0xFF})));
  EXPECT_FALSE(v.feed("abc"));
  EXPECT_FALSE(v.ok());
  EXPECT_FALSE(v.complete());
  v.reset();
  EXPECT_TRUE(v.ok());
  EXPECT_TRUE(v.feed("abc"));
  EXPECT_TRUE(v.complete());
}

TEST(Utf8, BadByteInsideLongAsciiRunAtEveryPosition) {
  for (std::size_t pos = 0; pos < 200; ++pos) {
    std::string t(200, 'x');
    t[pos] = static_cast<char>(0x80);
    Utf8Validator v;
    EXPECT_FALSE(v.feed(t)) << pos;
    EXPECT_EQ(ref_fail(t), pos);
    // The prefix before the bad byte is fine.
    Utf8Validator w;
    EXPECT_TRUE(w.feed(std::string_view(t).substr(0, pos)));
  }
}

// Short text takes the overlapping-word path: every length up to 40, every
// position of a bad byte, and a valid two-byte sequence at every position.
TEST(Utf8, ShortTextAtEveryLengthAndPosition) {
  for (std::size_t n = 0; n <= 40; ++n) {
    const std::string ascii(n, 'a');
    EXPECT_TRUE(is_valid_utf8(ascii)) << n;
    for (std::size_t pos = 0; pos < n; ++pos) {
      std::string bad = ascii;
      bad[pos] = static_cast<char>(0xFF);
      EXPECT_FALSE(is_valid_utf8(bad)) << n << " " << pos;
      if (pos + 1 < n) {
        std::string two = ascii;
        two[pos] = static_cast<char>(0xC3);
        two[pos + 1] = static_cast<char>(0xA9);  // U+00E9
        EXPECT_TRUE(is_valid_utf8(two)) << n << " " << pos;
      }
    }
  }
}

TEST(Utf8, MultibyteAfterLongAsciiRunAtEveryPosition) {
  for (std::size_t pos = 0; pos < 100; ++pos) {
    std::string t(pos, 'y');
    t += "\xe2\x82\xac";
    t += std::string(50, 'z');
    EXPECT_TRUE(is_valid_utf8(t)) << pos;
    t.pop_back();
    t += "\xed\xa0";  // truncated surrogate start fails at A0
    EXPECT_FALSE(is_valid_utf8(t)) << pos;
  }
}

// --- Against the reference -------------------------------------------------------

TEST(Utf8, AllOneAndTwoByteSequencesMatchReference) {
  for (int a = 0; a < 256; ++a)
    for (int b = -1; b < 256; ++b) {
      std::string t = b < 0 ? s({a}) : s({a, b});
      bool boundary = false;
      const std::size_t ref = ref_fail(t, &boundary);
      Utf8Validator v;
      const bool ok = v.feed(t);
      ASSERT_EQ(ok, ref == test::utf8_ok) << a << " " << b;
      ASSERT_EQ(v.complete(), ok && boundary) << a << " " << b;
      ASSERT_EQ(fail_index_bytewise(t), ref == test::utf8_ok ? std::string::npos : ref);
    }
}

TEST(Utf8, AllThreeByteSequencesWithNonAsciiLeadMatchReference) {
  for (int a = 0x80; a < 256; ++a)
    for (int b = 0; b < 256; ++b)
      for (int c = 0; c < 256; ++c) {
        const std::string t = s({a, b, c});
        bool boundary = false;
        const std::size_t ref = ref_fail(t, &boundary);
        Utf8Validator v;
        const bool ok = v.feed(t);
        ASSERT_EQ(ok, ref == test::utf8_ok) << a << " " << b << " " << c;
        ASSERT_EQ(v.complete(), ok && boundary) << a << " " << b << " " << c;
      }
}

TEST(Utf8, FourByteSequencesAroundEdgesMatchReferenceBytewise) {
  for (int a : {0xF0, 0xF1, 0xF3, 0xF4, 0xF5})
    for (int b = 0x70; b < 0xD0; ++b)
      for (int c : {0x7F, 0x80, 0xBF, 0xC0})
        for (int d : {0x00, 0x80, 0xBF, 0xC0}) {
          const std::string t = s({a, b, c, d});
          const std::size_t ref = ref_fail(t);
          ASSERT_EQ(fail_index_bytewise(t), ref == test::utf8_ok ? std::string::npos : ref)
              << a << " " << b << " " << c << " " << d;
        }
}

std::string random_text(std::mt19937& rng, std::size_t pieces) {
  std::string t;
  for (std::size_t i = 0; i < pieces; ++i) {
    switch (rng() % 6) {
      case 0: t += std::string(rng() % 40, static_cast<char>('a' + rng() % 26)); break;
      case 1: t += encode(static_cast<std::uint32_t>(0x80 + rng() % 0x780)); break;
      case 2: {
        auto cp = static_cast<std::uint32_t>(0x800 + rng() % 0xF800);
        if (cp >= 0xD800 && cp <= 0xDFFF) cp -= 0x800;
        t += encode(cp);
        break;
      }
      case 3: t += encode(static_cast<std::uint32_t>(0x10000 + rng() % 0x100000)); break;
      case 4:
        if (rng() % 8 == 0) t.push_back(static_cast<char>(rng() & 0xFF));
        break;
      default: t += "h\xc3\xa9llo w\xc3\xb6rld "; break;
    }
  }
  return t;
}

TEST(Utf8, RandomTextAtRandomSplitsMatchesReference) {
  std::mt19937 rng(20260);
  for (int trial = 0; trial < 3000; ++trial) {
    const std::string t = random_text(rng, 1 + rng() % 20);
    bool boundary = false;
    const std::size_t ref = ref_fail(t, &boundary);
    // Feed in random pieces; the validator must fail in exactly the piece that
    // holds the reference's first bad byte.
    Utf8Validator v;
    std::size_t pos = 0;
    bool failed_in_right_piece = ref == test::utf8_ok;
    while (pos < t.size()) {
      const std::size_t n = std::min<std::size_t>(1 + rng() % 24, t.size() - pos);
      const bool ok = v.feed(std::string_view(t).substr(pos, n));
      const bool bad_here = ref != test::utf8_ok && ref >= pos && ref < pos + n;
      if (ref == test::utf8_ok || ref >= pos + n) {
        ASSERT_TRUE(ok) << trial;
      } else {
        ASSERT_FALSE(ok) << trial;
        if (bad_here) failed_in_right_piece = true;
        break;
      }
      pos += n;
    }
    EXPECT_TRUE(failed_in_right_piece) << trial;
    if (ref == test::utf8_ok) {
      EXPECT_EQ(v.complete(), boundary) << trial;
    }
    EXPECT_EQ(is_valid_utf8(t), ref == test::utf8_ok && boundary) << trial;
  }
}

TEST(Utf8, EverySplitOfMixedTextGivesSameResult) {
  const std::string t = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z\xed\x9f\xbf\xf4\x8f\xbf\xbf";
  ASSERT_TRUE(is_valid_utf8(t));
  for (std::size_t i = 0; i <= t.size(); ++i)
    for (std::size_t j = i; j <= t.size(); ++j) {
      Utf8Validator v;
      ASSERT_TRUE(v.feed(std::string_view(t).substr(0, i)));
      ASSERT_TRUE(v.feed(std::string_view(t).substr(i, j - i)));
      ASSERT_TRUE(v.feed(std::string_view(t).substr(j)));
      ASSERT_TRUE(v.complete());
    }
}

// Long non-ASCII text takes the 16-bytes-at-a-time path: corrupt one byte at
// every position with every kind of bad byte and compare with the reference.
TEST(Utf8, LongTextWithOneCorruptionAtEveryPositionMatchesReference) {
  std::string base;
  for (int i = 0; base.size() < 260; ++i)
    base += i % 4 == 0   ? "\xc3\xa9t\xc3\xa9 "
            : i % 4 == 1 ? "\xe4\xbd\xa0\xe5\xa5\xbd"
            : i % 4 == 2 ? "\xf0\x9f\x98\x80"
                         : "\xd0\xbc\xd0\xb8\xd1\x80";
  ASSERT_TRUE(is_valid_utf8(base));
  std::mt19937 rng(99);
  for (std::size_t pos = 0; pos < base.size(); ++pos)
    for (int r : {0x00, 0x61, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1,
                  0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xF8, 0xFF}) {
      std::string t = base;
      t[pos] = static_cast<char>(r);
      bool boundary = false;
      const std::size_t ref = ref_fail(t, &boundary);
      const bool expect_valid = ref == test::utf8_ok && boundary;
      ASSERT_EQ(is_valid_utf8(t), expect_valid) << pos << " " << r;
      // The same text in two pieces cut at a random point.
      const std::size_t cut = rng() % (t.size() + 1);
      Utf8Validator v;
      const bool first = v.feed(std::string_view(t).substr(0, cut));
      ASSERT_EQ(first, ref == test::utf8_ok || ref >= cut) << pos << " " << r << " cut " << cut;
      if (first) {
        ASSERT_EQ(v.feed(std::string_view(t).substr(cut)), ref == test::utf8_ok)
            << pos << " " << r << " cut " << cut;
      }
    }
}

TEST(Utf8, LongTextEndingInEveryTruncation) {
  std::string base;
  while (base.size() < 200) base += "\xe2\x82\xac\xf0\x9f\x98\x80\xc3\xa9";
  for (std::size_t len = 64; len <= base.size(); ++len) {
    const std::string t = base.substr(0, len);
    bool boundary = false;
    ASSERT_EQ(ref_fail(t, &boundary), test::utf8_ok);
    Utf8Validator v;
    ASSERT_TRUE(v.feed(t)) << len;
    ASSERT_EQ(v.complete(), boundary) << len;
  }
}

TEST(Utf8, ByteSpanOverloadAgreesWithStringView) {
  const std::string t = "\xe2\x82\xac ok";
  EXPECT_TRUE(is_valid_utf8(std::as_bytes(std::span(t.data(), t.size()))));
  const std::string u = "\xe2\x82 ok";
  EXPECT_FALSE(is_valid_utf8(std::as_bytes(std::span(u.data(), u.size()))));
}

}  // namespace
}  // namespace duplex::protocol
