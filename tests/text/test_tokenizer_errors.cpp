// Malformed tokenizer files give typed errors that name the file and the JSON path (or line) of the
// problem: bad JSON, a missing model, unknown component types, merges with unknown tokens, bad
// regexes.
#define BOOST_TEST_MODULE text_tokenizer_errors
#include <fstream>

#include "crossbatch/text/tokenizer.hpp"
#include "fixtures.hpp"

using namespace crossbatch;
using namespace crossbatch::text;

namespace {

json small() {
  return json::parse(R"({
    "version": "1.0", "added_tokens": [{"id": 3, "content": "<s>", "special": true}],
    "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}]},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]},
    "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
      {"Sequence": {"id": "A", "type_id": 0}}], "pair": [{"Sequence": {"id": "A", "type_id": 0}},
      {"Sequence": {"id": "B", "type_id": 1}}], "special_tokens": {"<s>": {"id": "<s>", "ids": [3], "tokens": ["<s>"]}}},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<s>": 3}, "merges": ["a b"]}})");
}

// Loading j must throw E with every one of `parts` in the message.
template <class E = format_error>
void expect_error(const json& j, std::initializer_list<std::string> parts) {
  try {
    tokenizer::from_json(j, "bad_tokenizer.json");
    BOOST_ERROR("no error for " << j.dump().substr(0, 200));
  } catch (const E& e) {
    const std::string what = e.what();
    for (const auto& p : parts)
      BOOST_TEST(what.find(p) != std::string::npos, "'" << what << "' lacks '" << p << "'");
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(small_tokenizer_loads) {
  const tokenizer t = tokenizer::from_json(small(), "small");
  BOOST_TEST(cbtest::show_ids(t.encode("AB a")) == "[3 2 0]");
}

BOOST_AUTO_TEST_CASE(bad_json_and_missing_files) {
  BOOST_CHECK_THROW(tokenizer::from_file("/nonexistent/tokenizer.json"), io_error);
  try {
    tokenizer::from_json_text("{\"model\": {", "broken.json");
    BOOST_ERROR("no error");
  } catch (const format_error& e) {
    BOOST_TEST(std::string(e.what()).find("broken.json: invalid JSON at byte") == 0u);
  }
  BOOST_CHECK_THROW(tokenizer::from_json_text("[1, 2]", "array.json"), format_error);
  const auto dir = cbtest::scratch_dir("errors");
  std::ofstream(dir / "vocab.json") << R"({"a": 0, "b": 1, "ab": 2})";
  std::ofstream(dir / "merges.txt") << "#version: 0.2\na b\nab\n";
  try {
    tokenizer::from_bpe_files((dir / "vocab.json").string(), (dir / "merges.txt").string());
    BOOST_ERROR("no error");
  } catch (const format_error& e) {
    BOOST_TEST(std::string(e.what()).find("merges.txt: line 3") != std::string::npos, e.what());
  }
  std::ofstream(dir / "merges2.txt") << "#version: 0.2\na b\nb c\n";
  try {
    tokenizer::from_bpe_files((dir / "vocab.json").string(), (dir / "merges2.txt").string());
    BOOST_ERROR("no error");
  } catch (const format_error& e) {
    BOOST_TEST(std::string(e.what()).find(
                   "merges2.txt: line 3: token 'c' is not in the vocabulary") != std::string::npos,
               e.what());
  }
  BOOST_CHECK_THROW(tokenizer::from_wordpiece_vocab((dir / "vocab.json").string()),
                    format_error);  // no [UNK]
}

BOOST_AUTO_TEST_CASE(model_errors) {
  json j = small();
  j.erase("model");
  expect_error(j, {"bad_tokenizer.json", "model", "missing field"});
  j = small();
  j["model"]["type"] = "Unigram";
  expect_error(j, {"model.type", "unsupported model type 'Unigram'"});
  j = small();
  j["model"]["merges"] = json::array({"a b", "b zz"});
  expect_error(j, {"model.merges[1]", "token 'zz' is not in the vocabulary"});
  j = small();
  j["model"]["merges"] = json::array({json::array({"b", "a"})});
  expect_error(j, {"model.merges[0]", "merged token 'ba'"});
  j = small();
  j["model"]["merges"] = json::array({"a b c"});
  expect_error(j, {"model.merges[0]", "exactly one space"});
  j = small();
  j["model"]["merges"] = json::array({42});
  expect_error(j, {"model.merges[0]"});
  j = small();
  j["model"]["vocab"]["a"] = "zero";
  expect_error(j, {"model.vocab", "token 'a' has no valid id"});
  j = small();
  j["model"].erase("vocab");
  expect_error(j, {"model.vocab", "missing field"});
  j = small();
  j["model"]["dropout"] = 0.1;
  expect_error(j, {"model.dropout"});
  j = small();
  j["model"] = {{"type", "WordPiece"}, {"vocab", {{"a", 0}}}, {"unk_token", "[UNK]"}};
  expect_error(j, {"unk_token '[UNK]' is not in the vocabulary"});
}

BOOST_AUTO_TEST_CASE(component_errors) {
  json j = small();
  j["normalizer"]["normalizers"][1]["type"] = "Precompiled";
  expect_error(j, {"normalizer.normalizers[1].type", "unsupported normalizer type 'Precompiled'"});
  j = small();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "([a-";
  expect_error(j, {"pre_tokenizer.pretokenizers[0].pattern.Regex", "cannot compile regex"});
  j = small();
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways";
  expect_error(j, {"pre_tokenizer.pretokenizers[0].behavior", "unknown split behavior"});
  j = small();
  j["pre_tokenizer"]["pretokenizers"][1]["type"] = "Metaspace";
  expect_error(j, {"pre_tokenizer.pretokenizers[1].type", "Metaspace"});
  j = small();
  j["decoder"]["type"] = "CTC";
  expect_error(j, {"decoder.type", "unsupported decoder type 'CTC'"});
  j = small();
  j["post_processor"]["type"] = "RobertaProcessing";
  expect_error(j, {"post_processor.type", "RobertaProcessing"});
  j = small();
  j["post_processor"]["single"][0]["SpecialToken"]["id"] = "<bos>";
  expect_error(j, {"post_processor.single[0].SpecialToken.id", "'<bos>' is not in special_tokens"});
  j = small();
  j["added_tokens"][0].erase("content");
  expect_error(j, {"added_tokens[0].content", "missing field"});
  j = small();
  j["added_tokens"][0]["content"] = 7;
  expect_error(j, {"added_tokens[0].content", "expected a string"});
  j = small();
  j["truncation"] = {{"max_length", 5}, {"strategy", "Middle"}};
  expect_error(j, {"truncation.strategy"});
}

// Errors in real files name the real path.
BOOST_AUTO_TEST_CASE(file_names_in_errors) {
  const auto dir = cbtest::scratch_dir("errors_file");
  json j = cbtest::load_json("gpt2/tokenizer.json");
  j["model"]["merges"][100] = json::array({"Ġthe", "nonexistent_token"});
  const std::string path = (dir / "tokenizer.json").string();
  std::ofstream(path) << j.dump();
  try {
    tokenizer::from_file(path);
    BOOST_ERROR("no error");
  } catch (const format_error& e) {
    BOOST_TEST(
        std::string(e.what()).find(path + ": model.merges[100]: token 'nonexistent_token'") == 0u,
        e.what());
  }
}
