// The Qwen2.5-Coder-0.5B-Instruct tokenizer that tools/convert.py builds from the GGUF metadata
// (byte-level BPE, 151,936 tokens, tokenizer.ggml.pre = qwen2) gives, through our tokenizer, the ids
// of transformers' own GGUF tokenizer on every string of the shared corpus (2300 strings: code,
// Unicode, whitespace runs, Chinese) plus 30 code/Chinese strings (tests/data/qwen2.5-coder/
// tokenizer_ids.json, tools/make_qwen_reference.py), and decode(encode(s)) == s.
//
// It reads models/qwen2.5-coder-0.5b-instruct/tokenizer.json, or the weight-free
// models/qwen2.5-coder-0.5b-instruct-tokenizer/ (scripts/get_model.sh qwen2.5-coder-0.5b-instruct
// --tokenizer-only); with neither present the case is SKIPPED (Boost.Test precondition, with the reason).
#define BOOST_TEST_MODULE qwen_tokenizer
#include <filesystem>
#include <iostream>

#include "crossbatch/text/tokenizer.hpp"
#include "fixtures.hpp"

using namespace crossbatch::text;
namespace utf = boost::unit_test;
namespace tt = boost::test_tools;

namespace {

std::string tokenizer_file() {
  const std::string models = std::string(CROSSBATCH_SOURCE_DIR) + "/models/";
  for (const char* dir : {"qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b-instruct-tokenizer"})
    if (std::filesystem::exists(models + dir + "/tokenizer.json"))
      return models + dir + "/tokenizer.json";
  return "";
}

struct tokenizer_present {
  tt::assertion_result operator()(utf::test_unit_id) const {
    const bool present = !tokenizer_file().empty();
    tt::assertion_result r(present);
    if (!r)
      r.message() << "no Qwen tokenizer under models/: run scripts/get_model.sh "
                     "qwen2.5-coder-0.5b-instruct --tokenizer-only";
    static const bool said = [&] {  // ctest shows stderr of a failing test only: say it anyway
      if (!present) std::cerr << "SKIPPED: " << r.message().str() << "\n";
      return true;
    }();
    (void)said;
    return r;
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(ids_equal_transformers_gguf_tokenizer, *utf::precondition(tokenizer_present())) {
  const tokenizer tok = tokenizer::from_file(tokenizer_file());
  const json expected = cbtest::load_json("../qwen2.5-coder/tokenizer_ids.json");
  auto strings = cbtest::corpus();
  for (const auto& s : expected.at("extra_strings")) strings.push_back(s.get<std::string>());
  const auto& ids = expected.at("ids");
  BOOST_REQUIRE_EQUAL(ids.size(), strings.size());
  BOOST_REQUIRE(strings.size() >= 1000u);
  int bad = 0, bad_round_trip = 0;
  std::size_t total = 0;
  for (std::size_t i = 0; i < strings.size(); ++i) {
    const auto want = ids[i].get<std::vector<std::int32_t>>();
    const auto got = tok.encode(strings[i], {.add_special_tokens = false});
    total += want.size();
    if (got != want && ++bad <= 5)
      BOOST_ERROR("string " << i << " '" << cbtest::escape(strings[i]) << "'\n  got  "
                            << cbtest::show_ids(got) << "\n  want " << cbtest::show_ids(want));
    if (tok.decode(got, false) != strings[i] && ++bad_round_trip <= 5)
      BOOST_ERROR("round trip of string " << i << " '" << cbtest::escape(strings[i]) << "'");
  }
  BOOST_TEST_MESSAGE(strings.size() << " strings, " << total << " ids, " << bad << " mismatches, "
                                    << bad_round_trip << " round-trip failures");
  BOOST_TEST(bad == 0);
  BOOST_TEST(bad_round_trip == 0);
}
