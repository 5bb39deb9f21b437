// Batches padded left or right with attention masks, equal to encode_batch of `tokenizers` with
// padding enabled; streaming decode that never splits a UTF-8 character.
#define BOOST_TEST_MODULE text_batch
#include <thread>

#include "crossbatch/text/batch.hpp"
#include "crossbatch/text/decode_stream.hpp"
#include "fixtures.hpp"

using namespace crossbatch;
using namespace crossbatch::text;

BOOST_AUTO_TEST_CASE(padding_matches_tokenizers) {
  const json b = cbtest::load_json("batch.json");
  const auto strings = b["strings"].get<std::vector<std::string>>();
  int checked = 0;
  for (const auto& c : b["cases"]) {
    const std::string name = c["tokenizer"];
    tokenizer tok = tokenizer::from_file(cbtest::text_data(name + "/tokenizer.json"));
    padding_options p;
    p.direction = c["side"] == "left" ? side::left : side::right;
    p.pad_id = c["pad_id"];
    if (!c["pad_to_multiple_of"].is_null()) p.pad_to_multiple_of = c["pad_to_multiple_of"];
    const batch_encoding e = encode_batch(tok, strings, p);
    const auto want_ids = c["ids"].get<std::vector<std::vector<std::int32_t>>>();
    const auto want_mask = c["attention_mask"].get<std::vector<std::vector<std::int32_t>>>();
    BOOST_REQUIRE_EQUAL(e.ids.dim(0), static_cast<index_t>(strings.size()));
    for (std::size_t i = 0; i < strings.size(); ++i) {
      BOOST_REQUIRE_EQUAL(e.ids.dim(1), static_cast<index_t>(want_ids[i].size()));
      std::vector<std::int32_t> row(e.ids.data() + i * e.ids.dim(1),
                                    e.ids.data() + (i + 1) * e.ids.dim(1));
      std::vector<std::int32_t> mask(e.attention_mask.data() + i * e.ids.dim(1),
                                     e.attention_mask.data() + (i + 1) * e.ids.dim(1));
      BOOST_TEST(row == want_ids[i], name << " " << c["side"] << " row " << i);
      BOOST_TEST(mask == want_mask[i], name << " " << c["side"] << " mask " << i);
    }
    ++checked;
  }
  BOOST_TEST(checked == 8);
}

BOOST_AUTO_TEST_CASE(fixed_length_and_file_defaults) {
  // all-MiniLM-L6-v2's tokenizer.json pads right to a fixed 128 with [PAD] = 0.
  const tokenizer tok = tokenizer::from_file(cbtest::text_data("minilm/tokenizer.json"));
  BOOST_REQUIRE(tok.padding().has_value());
  BOOST_TEST(*tok.padding()->fixed_length == 128u);
  const std::vector<std::string> texts = {"hello world", "a"};
  const batch_encoding e = encode_batch(tok, texts);
  BOOST_TEST(e.ids.dim(1) == 128);
  BOOST_TEST(e.ids(0, 0) == 101);
  BOOST_TEST(e.attention_mask(0, 3) == 1);
  BOOST_TEST(e.attention_mask(0, 4) == 0);
  BOOST_TEST(e.ids(1, 127) == 0);
  BOOST_TEST(e.lengths[1] == 3u);
  // Pairs keep their token type ids under padding.
  padding_options left;
  left.direction = side::left;
  left.pad_type_id = 0;
  const std::vector<encoding> seqs = {tok.encode_pair("a", "b"),
                                      tok.encode_pair("hello there", "general kenobi")};
  const batch_encoding pe = pad_batch(seqs, left);
  BOOST_TEST(pe.type_ids(0, pe.type_ids.dim(1) - 1) == 1);
  BOOST_TEST(pe.type_ids(0, 0) == 0);
  BOOST_TEST(pe.attention_mask(0, 0) == 0);
  BOOST_TEST(pe.attention_mask(1, 0) == 1);
}

namespace {

// Streams ids through decode_stream; checks every chunk is valid UTF-8 and that the chunks add up.
void check_stream(const tokenizer& tok, const std::vector<std::int32_t>& ids,
                  const std::string& what) {
  decode_stream ds(tok);
  std::string all;
  for (std::int32_t id : ids) {
    const std::string chunk = ds.step(id);
    BOOST_TEST(is_valid_utf8(chunk),
               what << ": chunk '" << cbtest::escape(chunk) << "' is not valid UTF-8");
    all += chunk;
  }
  all += ds.flush();
  BOOST_TEST(all == tok.decode(ids), what << ": '" << cbtest::escape(all) << "' vs '"
                                          << cbtest::escape(tok.decode(ids)) << "'");
}

}  // namespace

BOOST_AUTO_TEST_CASE(streaming_decode_never_breaks_a_character) {
  const auto strings = cbtest::corpus();
  for (const char* name : {"smollm2", "llama3", "minilm", "qwen2"}) {
    const tokenizer tok =
        tokenizer::from_file(cbtest::text_data(std::string(name) + "/tokenizer.json"));
    for (std::size_t i = 0; i < strings.size(); i += 3)
      check_stream(tok, tok.encode(strings[i]), name + std::to_string(i));
  }
  // An emoji split over byte tokens comes out whole, in one chunk.
  const tokenizer tok = tokenizer::from_file(cbtest::text_data("gpt2/tokenizer.json"));
  const auto ids = tok.encode("a \xF0\x9F\xA5\xB2 b");
  decode_stream ds(tok);
  std::vector<std::string> chunks;
  for (auto id : ids) chunks.push_back(ds.step(id));
  bool emoji_whole = false;
  for (const auto& c : chunks)
    emoji_whole = emoji_whole || c.find("\xF0\x9F\xA5\xB2") != std::string::npos;
  BOOST_TEST(emoji_whole);
  // A stream cut inside a character: held back, then flushed as U+FFFD.
  const auto cut = std::vector<std::int32_t>(ids.begin(), ids.begin() + 2);
  decode_stream partial(tok);
  std::string out;
  for (auto id : cut) out += partial.step(id);
  out += partial.flush();
  BOOST_TEST(out == tok.decode(cut));
}

// One tokenizer used from several threads at once gives every thread the same ids (per-thread
// caches).
BOOST_AUTO_TEST_CASE(concurrent_encoding) {
  const tokenizer tok = tokenizer::from_file(cbtest::text_data("smollm2/tokenizer.json"));
  const auto strings = cbtest::corpus();
  std::vector<std::vector<std::int32_t>> want;
  for (const auto& s : strings) want.push_back(tok.encode(s));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 2; ++round)
        for (std::size_t i = t; i < strings.size() + t; ++i) {
          const std::size_t k = (i * 7 + t) % strings.size();
          if (tok.encode(strings[k]) != want[k]) ++mismatches[t];
        }
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) BOOST_TEST(mismatches[t] == 0);
}
