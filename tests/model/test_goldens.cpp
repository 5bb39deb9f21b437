// The CPU models against Hugging Face transformers: logits, per-layer hidden states and greedy
// continuations recorded by tools/make_goldens.py for small random models of every family
// (tests/data/goldens/README.md describes the files). Float32 tolerance from dtype_traits.
#define BOOST_TEST_MODULE goldens
#include <boost/test/data/test_case.hpp>

#include "crossbatch/generate/generate.hpp"
#include "crossbatch/model/bert.hpp"
#include "support.hpp"

using namespace crossbatch;
namespace bdata = boost::unit_test::data;

namespace {

std::string golden(const std::string& c) { return cbtest::data_dir() + "/goldens/" + c + "/"; }

struct padded_batch {
  std::vector<std::vector<int>> prompts;  // unpadded ids
  std::vector<int> pad;                   // left padding per row
  index_t b = 0, t = 0;
};

padded_batch read_batch(const std::string& dir) {
  const auto ids = load_npy<std::int64_t>(dir + "input_ids.npy");
  const auto mask = load_npy<std::int64_t>(dir + "attention_mask.npy");
  padded_batch p;
  p.b = ids.dim(0), p.t = ids.dim(1);
  for (index_t s = 0; s < p.b; ++s) {
    std::vector<int> row;
    int pad = 0;
    for (index_t i = 0; i < p.t; ++i) {
      if (mask(s, i))
        row.push_back(int(ids(s, i)));
      else
        pad += 1;
    }
    p.prompts.push_back(row);
    p.pad.push_back(pad);
  }
  return p;
}

// Rows (non-padded positions) of a (B, T, X) tensor compared with the reference.
void compare_real_positions(const tensor<float>& got, const tensor<float>& want,
                            const padded_batch& p, const std::string& what) {
  BOOST_REQUIRE_MESSAGE(got.shape() == want.shape(), what << ": " << to_string(got.shape())
                                                          << " vs " << to_string(want.shape()));
  const index_t x = got.dim(2);
  cbtest::diff_stats all;  // every real position, for the message
  for (index_t s = 0; s < p.b; ++s) {
    const index_t n = (p.t - p.pad[s]) * x, off = (s * p.t + p.pad[s]) * x;
    tensor_view<const float> a(got.data() + off, {n}), b(want.data() + off, {n});
    cbtest::check_close<float>(a, b, what + " row " + std::to_string(s));
    all.add(a.data, b.data, std::size_t(n));
  }
  BOOST_TEST_MESSAGE(what << ": max abs error " << all.max_abs);
}

const auto decoder_cases = bdata::make(
    std::vector<std::string>{"gpt2", "llama_gqa_tied", "llama3_scaled_untied", "qwen2"});

// Runs the full prefill layer by layer, returning logits (B, T, V) and hidden states (L+1, B, T, C)
// in the layout of transformers' output_hidden_states (the last one after the final norm).
void run_decoder(const decoder_model<float>& m, const padded_batch& p, tensor<float>& logits,
                 tensor<float>& hidden) {
  context<cpu> ctx;
  const auto& c = m.config;
  const index_t n = p.b * p.t, C = c.hidden_size;
  tensor<std::int32_t> ids({n}), pos({n}), pad({p.b});
  for (index_t s = 0; s < p.b; ++s) {
    pad(s) = p.pad[s];
    for (index_t i = 0; i < p.t; ++i) {
      const bool real = i >= p.pad[s];
      ids(s * p.t + i) = real ? p.prompts[s][i - p.pad[s]] : 0;
      pos(s * p.t + i) = real ? int(i - p.pad[s]) : 0;
    }
  }
  auto cache = m.make_cache(int(p.b), int(p.t));
  decoder_workspace<float> ws(c, n);
  tensor<float> x({p.b, p.t, C});
  hidden = tensor<float>({c.num_layers + 1, p.b, p.t, C});
  const all_of<causal, left_padding> mask(causal{}, left_padding{pad.data()});
  m.embed_tokens(ctx, x.view().reshape({n, C}), ids.view(), pos.view());
  for (int l = 0; l <= c.num_layers; ++l) {
    if (l > 0) m.run_layers(ctx, x.view(), pos.view(), cache, 0, mask, l - 1, l, ws);
    std::copy_n(x.data(), x.size(), hidden.data() + l * x.size());
  }
  tensor<float> normed({n, C});
  m.final_norm(ctx, normed.view(), x.view().reshape({n, C}));
  std::copy_n(normed.data(), normed.size(), hidden.data() + c.num_layers * x.size());
  logits = tensor<float>({p.b, p.t, c.vocab_size});
  m.logits(ctx, logits.view().reshape({n, c.vocab_size}), normed.view());
}

}  // namespace

BOOST_DATA_TEST_CASE(decoder_logits_hidden_states_and_greedy, decoder_cases, name) {
  const auto dir = golden(name);
  const auto m = decoder_model<float>::load(dir + "model");
  const auto p = read_batch(dir);
  tensor<float> logits, hidden;
  run_decoder(m, p, logits, hidden);
  compare_real_positions(logits, load_npy<float>(dir + "logits.npy"), p, name + " logits");
  const auto want_hidden = load_npy<float>(dir + "hidden_states.npy");
  BOOST_REQUIRE(want_hidden.shape() == hidden.shape());
  for (int l = 0; l <= m.config.num_layers; ++l) {
    tensor<float> got({p.b, p.t, hidden.dim(3)}), want({p.b, p.t, hidden.dim(3)});
    std::copy_n(hidden.data() + l * got.size(), got.size(), got.data());
    std::copy_n(want_hidden.data() + l * want.size(), want.size(), want.data());
    compare_real_positions(got, want, p, name + " hidden state " + std::to_string(l));
  }
  // Greedy continuation, token-identical to transformers' generate.
  const auto greedy_ref = load_npy<std::int64_t>(dir + "greedy.npy");
  generation_options opt;
  opt.max_new_tokens = int(greedy_ref.dim(1));
  opt.stop_at_eos = false;
  context<cpu> ctx;
  const auto r = generate(ctx, m, p.prompts, greedy{}, opt);
  for (index_t s = 0; s < p.b; ++s)
    for (index_t i = 0; i < greedy_ref.dim(1); ++i)
      BOOST_CHECK_MESSAGE(r.tokens[s][i] == greedy_ref(s, i),
                          name << " greedy seq " << s << " token " << i << ": " << r.tokens[s][i]
                               << " vs " << greedy_ref(s, i));
}

BOOST_AUTO_TEST_CASE(llama3_transformers4_config_layout) {
  // The same weights with the transformers-4 config layout give the same logits.
  const auto dir = golden("llama3_scaled_untied");
  const auto m = decoder_model<float>::load(dir + "model", dir + "config_v4.json");
  BOOST_TEST(m.config.rope.type == "llama3");
  const auto p = read_batch(dir);
  tensor<float> logits, hidden;
  run_decoder(m, p, logits, hidden);
  compare_real_positions(logits, load_npy<float>(dir + "logits.npy"), p, "llama3 v4 config logits");
}

BOOST_AUTO_TEST_CASE(bert_encoder) {
  const auto dir = golden("bert");
  const auto m = bert_model<float>::load(dir + "model");
  const auto ids = load_npy<std::int64_t>(dir + "input_ids.npy");
  const auto mask = load_npy<std::int64_t>(dir + "attention_mask.npy");
  const auto types = load_npy<std::int64_t>(dir + "token_type_ids.npy");
  padded_batch p;
  p.b = ids.dim(0), p.t = ids.dim(1);
  std::vector<std::vector<int>> seqs, type_seqs;
  for (index_t s = 0; s < p.b; ++s) {
    std::vector<int> a, t;
    for (index_t i = 0; i < p.t; ++i)
      if (mask(s, i)) a.push_back(int(ids(s, i))), t.push_back(int(types(s, i)));
    seqs.push_back(a), type_seqs.push_back(t);
    p.pad.push_back(0);
  }
  context<cpu> ctx;
  const auto want_att = load_npy<float>(dir + "attentions.npy");  // (L, B, H, T, T)
  for (int layer = 0; layer < m.config.num_layers; ++layer) {
    const auto out = m.encode(ctx, seqs, type_seqs, {layer, true});
    if (layer == 0) {
      // Compare real positions only: transformers' padded rows are not meaningful outputs.
      padded_batch real = p;
      tensor<float> got = out.last_hidden_state.clone();
      auto want = load_npy<float>(dir + "last_hidden_state.npy");
      for (index_t s = 0; s < p.b; ++s)
        for (index_t i = out.lengths[s]; i < p.t; ++i)
          for (index_t j = 0; j < got.dim(2); ++j) got(s, i, j) = want(s, i, j);
      compare_real_positions(got, want, real, "bert last_hidden_state");
      const auto pooled = load_npy<float>(dir + "pooler_output.npy");
      cbtest::check_close<float>(out.pooler_output.view(), pooled.view(), "bert pooler");
    }
    const index_t h = out.attentions.dim(1);
    for (index_t s = 0; s < p.b; ++s)
      for (index_t hh = 0; hh < h; ++hh)
        for (index_t q = 0; q < out.lengths[s]; ++q) {
          tensor_view<const float> got(&out.attentions(s, hh, q, 0), {p.t});
          tensor_view<const float> want(&want_att(layer, s, hh, q, 0), {p.t});
          cbtest::check_close<float>(got, want, "bert attention layer " + std::to_string(layer));
        }
  }
}
