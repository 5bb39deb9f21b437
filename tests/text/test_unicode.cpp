// Unicode and UTF-8 against Python: the invalid UTF-8 policy (errors="replace"), NFC/NFD/NFKC/NFKD,
// lowercase and the BERT normalizer as `tokenizers` computes them, Jinja's trim, the byte-level
// alphabet and the regex translation for PCRE2.
#define BOOST_TEST_MODULE text_unicode
#include <set>

#include "crossbatch/text/byte_level.hpp"
#include "crossbatch/text/normalizer.hpp"
#include "crossbatch/text/regex.hpp"
#include "crossbatch/text/tokenizer.hpp"
#include "crossbatch/text/unicode.hpp"
#include "crossbatch/text/utf8.hpp"
#include "fixtures.hpp"

using namespace crossbatch::text;

namespace {

std::string from_hex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(invalid_utf8_is_replaced_like_python) {
  const json cases = cbtest::load_json("invalid_utf8.json").at("cases");
  const tokenizer tok = tokenizer::from_file(cbtest::text_data("smollm2/tokenizer.json"));
  BOOST_REQUIRE(cases.size() >= 10u);
  for (const auto& c : cases) {
    const std::string bytes = from_hex(c["hex"]);
    const std::string want = from_hex(c["replaced_hex"]);
    BOOST_TEST(repair_utf8(bytes) == want, "repair of " << c["hex"]);
    BOOST_TEST(is_valid_utf8(want));
    BOOST_TEST(is_valid_utf8(bytes) == (bytes == want));  // U+FFFF is a valid noncharacter
    BOOST_TEST(tok.encode(bytes) == c["smollm2_ids"].get<std::vector<std::int32_t>>(),
               "ids of " << c["hex"]);
  }
  BOOST_TEST(first_invalid_utf8("ab\xC3\xA9\xFF") == 4u);
}

BOOST_AUTO_TEST_CASE(utf8_round_trip_of_every_code_point) {
  std::string all;
  for (char32_t c = 0; c < 0x110000; ++c)
    if (c < 0xD800 || c >= 0xE000) append_utf8(all, c);
  BOOST_TEST(is_valid_utf8(all));
  std::size_t i = 0;
  char32_t expect = 0;
  bool ok = true;
  while (i < all.size()) {
    if (expect == 0xD800) expect = 0xE000;
    ok = ok && next_code_point(all, i) == expect++;
  }
  BOOST_TEST(ok);
  BOOST_TEST(!is_valid_utf8("\xED\xA0\x80"));  // a surrogate
}

BOOST_AUTO_TEST_CASE(normalization_matches_tokenizers) {
  const auto strings = cbtest::corpus();
  const json u = cbtest::load_json("unicode.json");
  const std::pair<const char*, normal_form> forms[] = {{"nfc", normal_form::nfc},
                                                       {"nfd", normal_form::nfd},
                                                       {"nfkc", normal_form::nfkc},
                                                       {"nfkd", normal_form::nfkd}};
  bert_normalizer bert;
  bert_normalizer cased;
  cased.lowercase = cased.strip_accents = false;
  int checked = 0;
  for (const auto& idx : u.at("indices")) {
    const std::size_t i = idx.get<std::size_t>();
    const std::string key = std::to_string(i);
    const std::string& s = strings[i];
    auto want = [&](const char* form) {
      return u[form].contains(key) ? u[form][key].get<std::string>() : s;
    };
    for (const auto& [name, form] : forms)
      BOOST_TEST(normalize(s, form) == want(name),
                 name << " of string " << i << " '" << cbtest::escape(s) << "'");
    BOOST_TEST(lowercase(s) == want("lowercase"), "lowercase of " << i);
    BOOST_TEST(bert.apply(s) == want("bert"), "bert of " << i);
    BOOST_TEST(cased.apply(s) == want("bert_cased"), "bert cased of " << i);
    BOOST_TEST(std::string(python_strip(s)) == want("python_strip"), "strip of " << i);
    ++checked;
  }
  BOOST_TEST(checked > 400);
}

BOOST_AUTO_TEST_CASE(normalization_basics) {
  BOOST_TEST(normalize("e\xCC\x81", normal_form::nfc) == "\xC3\xA9");
  BOOST_TEST(normalize("\xC3\xA9", normal_form::nfd) == "e\xCC\x81");
  BOOST_TEST(normalize("\xEF\xAC\x81", normal_form::nfkc) == "fi");  // the ligature
  BOOST_TEST(normalize("\xEA\xB0\x80", normal_form::nfd) ==
             "\xE1\x84\x80\xE1\x85\xA1");  // Hangul GA
  BOOST_TEST(normalize("\xE1\x84\x80\xE1\x85\xA1", normal_form::nfc) == "\xEA\xB0\x80");
  // Canonical reordering: dot below (220) goes before diaeresis (230).
  BOOST_TEST(normalize("a\xCC\x88\xCC\xA3", normal_form::nfd) == "a\xCC\xA3\xCC\x88");
  BOOST_TEST(combining_class(0x301) == 230);
  BOOST_TEST(static_cast<std::uint32_t>(compose_pair('e', 0x301)) == 0xE9u);
  BOOST_TEST(lowercase("\xC4\xB0") == "i\xCC\x87");  // U+0130 lowercases to two code points
  BOOST_TEST(lowercase("\xCE\xA3\xCE\xA3") == "\xCF\x83\xCF\x83");  // no final-sigma rule
}

BOOST_AUTO_TEST_CASE(character_classes) {
  BOOST_TEST(is_white_space(0x3000));
  BOOST_TEST(!is_white_space(0x180E));  // not White_Space since Unicode 6.3
  BOOST_TEST(!is_white_space(0x200B));
  BOOST_TEST(is_python_space(0x1C));
  BOOST_TEST(!is_white_space(0x1C));
  BOOST_TEST(is_bert_chinese(0x4E2D));
  BOOST_TEST(is_bert_punctuation('$'));
  BOOST_TEST(is_numeric(0x0663));
  BOOST_TEST(is_numeric(0x00BD));  // ½ is No
  BOOST_TEST(is_word_character(0x0301));
  BOOST_TEST(!is_word_character('-'));
  BOOST_TEST(is_nonspacing_mark(0x0301));
}

BOOST_AUTO_TEST_CASE(byte_level_alphabet_is_a_bijection) {
  const auto& a = byte_level_alphabet::get();
  std::set<char32_t> seen;
  for (int b = 0; b < 256; ++b) {
    const char32_t c = a.char_of(static_cast<unsigned char>(b));
    BOOST_TEST(a.byte_of(c) == b);
    seen.insert(c);
  }
  BOOST_TEST(seen.size() == 256u);
  BOOST_TEST(static_cast<std::uint32_t>(a.char_of(' ')) == 0x120u);  // 'Ġ'
  BOOST_TEST(static_cast<std::uint32_t>(a.char_of('A')) == 65u);
}

BOOST_AUTO_TEST_CASE(regex_translation_follows_oniguruma) {
  const regex ws(R"(\s+)", "test");
  std::vector<std::pair<std::size_t, std::size_t>> m;
  ws.for_each_match(
      "a\xE1\xA0\x8E"
      "b c",
      [&](std::size_t b, std::size_t e) { m.emplace_back(b, e); });
  BOOST_REQUIRE(m.size() == 1u);  // U+180E is not \s
  BOOST_TEST(m[0].first == 5u);
  // A letter of Unicode 16 (Egyptian hieroglyph extension) is \p{L} for Oniguruma.
  const regex letters(R"(\p{L}+)", "test");
  m.clear();
  letters.for_each_match("\xF0\x93\xA1\x8E",
                         [&](std::size_t b, std::size_t e) { m.emplace_back(b, e); });
  BOOST_TEST(m.size() == 1u);
  // Empty matches advance by one character.
  const regex empty("x*", "test");
  int count = 0;
  empty.for_each_match("\xC3\xA9\xC3\xA9", [&](std::size_t, std::size_t) { ++count; });
  BOOST_TEST(count == 3);
  BOOST_CHECK_THROW(regex("(unclosed", "file.json: pre_tokenizer.pattern"),
                    crossbatch::format_error);
}
