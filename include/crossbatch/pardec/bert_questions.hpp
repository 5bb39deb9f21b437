// The BERT side of the parallel-decoding strategies, on the project's BERT (model/bert.hpp):
//  - sentence embeddings: last hidden state mean-pooled over the real tokens, L2-normalised
//    (sentence-transformers' all-MiniLM-L6-v2 pipeline: Transformer, mean Pooling, Normalize);
//  - question attention: `[CLS] q1 [SEP] q2 [SEP] ...` (each question cut at 64 word pieces, 512
//    in all), attention probabilities averaged over heads and then over layers, and the score of
//    an ordered pair score(i, j) = attention mass from Qi's tokens to Qj's tokens, summed over Qj's
//    tokens and averaged over Qi's tokens (collab_bert's dependency signal).
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "crossbatch/core/error.hpp"
#include "crossbatch/model/bert.hpp"
#include "crossbatch/text/tokenizer.hpp"

namespace crossbatch::pardec {

// Where each question's word pieces lie in the joined sequence: [begin, end) (empty when the
// 512-token budget ran out before it).
struct question_span {
  int begin = 0, end = 0;
};

// score[i][j] from a (T, T) attention matrix (rows: from, columns: to) averaged over heads and
// layers. The diagonal is the mass a question keeps on itself; questions without tokens score 0.
inline std::vector<std::vector<double>> question_attention_scores(const std::vector<std::vector<double>>& attn,
                                                                  const std::vector<question_span>& spans) {
  const std::size_t n = spans.size();
  std::vector<std::vector<double>> score(n, std::vector<double>(n, 0.0));
  for (std::size_t i = 0; i < n; ++i) {
    const auto [bi, ei] = spans[i];
    if (ei <= bi) continue;
    for (std::size_t j = 0; j < n; ++j) {
      const auto [bj, ej] = spans[j];
      double mass = 0;
      for (int r = bi; r < ei; ++r) {
        require(std::size_t(r) < attn.size(), "question_attention_scores: span beyond the matrix");
        for (int c = bj; c < ej; ++c) mass += attn[r][c];
      }
      score[i][j] = mass / double(ei - bi);
    }
  }
  return score;
}

template <class T = float, class D = cpu>
class bert_questions {
 public:
  bert_model<T, D> model;
  text::tokenizer tok;
  int max_question_tokens = 64;  // word pieces per question in the joined sequence
  int max_total_tokens = 512;
  int max_sentence_tokens = 256;  // sentence-transformers' max_seq_length for embeddings

  bert_questions(bert_model<T, D> m, text::tokenizer t) : model(std::move(m)), tok(std::move(t)) {
    const auto cls = tok.token_to_id("[CLS]"), sep = tok.token_to_id("[SEP]");
    require(cls && sep, "bert_questions: the tokenizer has no [CLS] / [SEP]");
    m_cls = *cls, m_sep = *sep;
    max_total_tokens = std::min(max_total_tokens, model.config.max_positions);
    max_sentence_tokens = std::min(max_sentence_tokens, model.config.max_positions);
  }
  static bert_questions load(const std::string& dir) {
    return bert_questions(bert_model<T, D>::load(dir), text::tokenizer::from_file(dir + "/tokenizer.json"));
  }

  // The joined input ids and each question's span.
  std::vector<int> joined_ids(const std::vector<std::string>& questions, std::vector<question_span>& spans) const {
    std::vector<int> ids{m_cls};
    spans.clear();
    for (const auto& q : questions) {
      auto piece = tok.encode(q, {.add_special_tokens = false});
      if (int(piece.size()) > max_question_tokens) piece.resize(max_question_tokens);
      const int room = max_total_tokens - int(ids.size()) - 1;  // keep one for [SEP]
      if (room <= 0) {
        spans.push_back({int(ids.size()), int(ids.size())});
        continue;
      }
      if (int(piece.size()) > room) piece.resize(room);
      question_span s{int(ids.size()), int(ids.size() + piece.size())};
      ids.insert(ids.end(), piece.begin(), piece.end());
      ids.push_back(m_sep);
      spans.push_back(s);
    }
    return ids;
  }

  // The (T, T) attention of the joined questions averaged over heads, then layers.
  std::vector<std::vector<double>> mean_attention(const context<D>& ctx, const std::vector<int>& ids) const {
    const auto out = model.encode(ctx, {ids}, {}, {.all_attentions = true});
    const int t = int(ids.size()), L = int(out.layer_attentions.size());
    std::vector<std::vector<double>> avg(t, std::vector<double>(t, 0.0));
    for (const auto& layer : out.layer_attentions) {
      const tensor<float> a = to_host(layer);  // (1, H, T, T)
      const index_t h = a.dim(1);
      for (int r = 0; r < t; ++r)
        for (int c = 0; c < t; ++c) {
          double s = 0;
          for (index_t k = 0; k < h; ++k) s += a(0, k, r, c);
          avg[r][c] += s / double(h) / double(L);
        }
    }
    return avg;
  }

  std::vector<std::vector<double>> attention_scores(const context<D>& ctx,
                                                    const std::vector<std::string>& questions) const {
    std::vector<question_span> spans;
    const auto ids = joined_ids(questions, spans);
    return question_attention_scores(mean_attention(ctx, ids), spans);
  }

  // Mean-pooled, L2-normalised sentence embeddings, one per text (texts cut at max_sentence_tokens,
  // [SEP] kept last).
  std::vector<std::vector<float>> embed(const context<D>& ctx, const std::vector<std::string>& texts) const {
    if (texts.empty()) return {};
    std::vector<std::vector<int>> batch;
    for (const auto& s : texts) {
      auto e = tok.encode(s);
      std::vector<int> ids(e.begin(), e.end());
      if (int(ids.size()) > max_sentence_tokens) {
        ids.resize(max_sentence_tokens);
        ids.back() = m_sep;
      }
      batch.push_back(std::move(ids));
    }
    const auto out = model.encode(ctx, batch);
    const tensor<T> h = to_host(out.last_hidden_state);  // (B, T, C)
    const index_t C = h.dim(2);
    std::vector<std::vector<float>> emb;
    for (std::size_t s = 0; s < batch.size(); ++s) {
      std::vector<double> acc(C, 0.0);
      const int len = out.lengths[s];
      for (int i = 0; i < len; ++i)
        for (index_t c = 0; c < C; ++c) acc[c] += double(h(index_t(s), i, c));
      double norm = 0;
      for (auto& v : acc) v /= len, norm += v * v;
      norm = std::max(std::sqrt(norm), 1e-12);  // torch.nn.functional.normalize's eps
      std::vector<float> e(C);
      for (index_t c = 0; c < C; ++c) e[c] = float(acc[c] / norm);
      emb.push_back(std::move(e));
    }
    return emb;
  }

 private:
  int m_cls = 0, m_sep = 0;
};

}  // namespace crossbatch::pardec
