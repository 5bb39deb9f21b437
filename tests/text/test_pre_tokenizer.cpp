// Pre-tokenizers and added-token flags on small inputs, against outputs of the Python `tokenizers`
// library: every Split behaviour (with invert), Digits, BertPreTokenizer, Whitespace,
// WhitespaceSplit, Punctuation and ByteLevel with a prefix space.
#define BOOST_TEST_MODULE text_pre_tokenizer
#include "crossbatch/text/added_tokens.hpp"
#include "crossbatch/text/pre_tokenizer.hpp"
#include "crossbatch/text/tokenizer.hpp"
#include "fixtures.hpp"

using namespace crossbatch::text;
using words = std::vector<std::string>;

namespace {

words run(const json& j, const std::string& text) {
  const pre_tokenizer p = pre_tokenizer::from_json(json_node(j, "test"));
  return p.words(text);
}

json split(const char* behavior, bool invert) {
  return {{"type", "Split"},
          {"pattern", {{"String", "-"}}},
          {"behavior", behavior},
          {"invert", invert}};
}

const std::string sample =
    "Hello, w\xC3\xB6rld! 12\xC2\xBD 3,456 \xD9\xA3\xD9\xA4 ok\xE3\x80\x80there\tx";

}  // namespace

BOOST_AUTO_TEST_CASE(split_behaviors) {
  const std::string s = "the-final--countdown";
  BOOST_TEST(run(split("Removed", false), s) == (words{"the", "final", "countdown"}));
  BOOST_TEST(run(split("Removed", true), s) == (words{"-", "-", "-"}));
  BOOST_TEST(run(split("Isolated", false), s) ==
             (words{"the", "-", "final", "-", "-", "countdown"}));
  BOOST_TEST(run(split("MergedWithPrevious", false), s) ==
             (words{"the-", "final-", "-", "countdown"}));
  BOOST_TEST(run(split("MergedWithPrevious", true), s) ==
             (words{"the", "-final", "-", "-countdown"}));
  BOOST_TEST(run(split("MergedWithNext", false), s) == (words{"the", "-final", "-", "-countdown"}));
  BOOST_TEST(run(split("MergedWithNext", true), s) == (words{"the-", "final-", "-", "countdown"}));
  BOOST_TEST(run(split("Contiguous", false), s) == (words{"the", "-", "final", "--", "countdown"}));
  const json re = {
      {"type", "Split"}, {"pattern", {{"Regex", "\\d+"}}}, {"behavior", "MergedWithPrevious"}};
  BOOST_TEST(run(re, sample) == (words{"Hello, w\xC3\xB6rld! 12", "\xC2\xBD 3", ",456",
                                       " \xD9\xA3\xD9\xA4", " ok\xE3\x80\x80there\tx"}));
}

BOOST_AUTO_TEST_CASE(character_splitters) {
  BOOST_TEST(run({{"type", "Digits"}, {"individual_digits", true}}, sample) ==
             (words{"Hello, w\xC3\xB6rld! ", "1", "2", "\xC2\xBD", " ", "3", ",", "4", "5", "6",
                    " ", "\xD9\xA3", "\xD9\xA4", " ok\xE3\x80\x80there\tx"}));
  BOOST_TEST(run({{"type", "Digits"}, {"individual_digits", false}}, sample) ==
             (words{"Hello, w\xC3\xB6rld! ", "12\xC2\xBD", " ", "3", ",", "456", " ",
                    "\xD9\xA3\xD9\xA4", " ok\xE3\x80\x80there\tx"}));
  BOOST_TEST(run({{"type", "BertPreTokenizer"}}, sample) ==
             (words{"Hello", ",", "w\xC3\xB6rld", "!", "12\xC2\xBD", "3", ",", "456",
                    "\xD9\xA3\xD9\xA4", "ok", "there", "x"}));
  BOOST_TEST(run({{"type", "Whitespace"}}, sample) ==
             (words{"Hello", ",", "w\xC3\xB6rld", "!", "12", "\xC2\xBD", "3", ",", "456",
                    "\xD9\xA3\xD9\xA4", "ok", "there", "x"}));
  BOOST_TEST(run({{"type", "WhitespaceSplit"}}, sample) ==
             (words{"Hello,", "w\xC3\xB6rld!", "12\xC2\xBD", "3,456", "\xD9\xA3\xD9\xA4", "ok",
                    "there", "x"}));
  BOOST_TEST(run({{"type", "Punctuation"}}, sample) ==
             (words{"Hello", ",", " w\xC3\xB6rld", "!", " 12\xC2\xBD 3", ",",
                    "456 \xD9\xA3\xD9\xA4 ok\xE3\x80\x80there\tx"}));
}

BOOST_AUTO_TEST_CASE(byte_level_with_prefix_space) {
  const json bl = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  BOOST_TEST(run(bl, sample) ==
             (words{"\xC4\xA0Hello", ",", "\xC4\xA0w\xC3\x83\xC2\xB6rld", "!",
                    "\xC4\xA0"
                    "12\xC3\x82\xC2\xBD",
                    "\xC4\xA0"
                    "3",
                    ",", "456", "\xC4\xA0\xC3\x99\xC2\xA3\xC3\x99\xC2\xA4", "\xC4\xA0ok",
                    "\xC3\xA3\xC4\xA2\xC4\xA2", "there", "\xC4\x89", "x"}));
  const pre_tokenizer p = pre_tokenizer::from_json(json_node(bl, "test"));
  BOOST_TEST(p.byte_level_output());
  BOOST_TEST(p.words("").empty());
}

// The added-token flags, on the `flags` test tokenizer (its fixtures cover them on the whole
// corpus).
BOOST_AUTO_TEST_CASE(added_token_flags) {
  const tokenizer tok = tokenizer::from_file(cbtest::text_data("flags/tokenizer.json"));
  const auto id = [&](const char* t) { return *tok.token_to_id(t); };
  const encode_options plain{.add_special_tokens = false};
  // lstrip: the spaces before <mask> belong to it.
  const auto a = tok.encode("x   <mask>", plain);
  BOOST_TEST(a.back() == id("<mask>"));
  BOOST_TEST(tok.decode(a, false).find("   ") == std::string::npos);
  // single_word: "single" inside a word is not the added token.
  const auto in_word = tok.encode("singles", plain), alone = tok.encode("a single b", plain);
  BOOST_TEST((std::find(in_word.begin(), in_word.end(), id("single")) == in_word.end()));
  BOOST_TEST((std::find(alone.begin(), alone.end(), id("single")) != alone.end()));
  // normalized: "MiXeD" matches the lowercased text; "RawCase" only the raw text.
  const auto mixed = tok.encode("MIXED", plain);
  BOOST_TEST(mixed.size() == 1u);
  BOOST_TEST(mixed[0] == id("MiXeD"));
  BOOST_TEST(tok.encode("RawCase", plain) == std::vector<std::int32_t>{id("RawCase")});
  BOOST_TEST(tok.encode("rawcase", plain).size() > 1u);
  // Special tokens can be left to the model.
  BOOST_TEST(
      tok.encode("<mask>", {.add_special_tokens = false, .split_special_tokens = true}).size() >
      1u);
}
