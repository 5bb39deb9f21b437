// Logit combiners over the rows of one question (the ensembles of paraphrase fusion): all the
// paraphrases of a question are rows of one batch_session, question q owning rows
// [offsets[q], offsets[q + 1]); every step the question's rows are combined into one row of
// logits by the question's own combiner (sample/logit_combiner.hpp: mean_logits, max_prob,
// weighted_mean), one token is drawn per question, and that token is fed to all its rows.
// CPU forms here, CUDA forms in fusion/cuda/grouped_combine.cuh (same signatures).
#pragma once

#include <span>
#include <string>
#include <vector>

#include "crossbatch/core/context.hpp"
#include "crossbatch/core/error.hpp"
#include "crossbatch/core/tensor.hpp"
#include "crossbatch/sample/logit_combiner.hpp"

namespace crossbatch {

// Host checks of the grouping: offsets (Q + 1) from 0 to P, each group 1..max_combined_models.
inline void check_group_offsets(const std::vector<int>& offsets, int rows) {
  require(offsets.size() >= 2 && offsets.front() == 0 && offsets.back() == rows,
          "grouped combine: offsets must run from 0 to the " + std::to_string(rows) + " rows");
  for (std::size_t q = 0; q + 1 < offsets.size(); ++q) {
    const int n = offsets[q + 1] - offsets[q];
    require(n >= 1 && n <= max_combined_models,
            "grouped combine: question " + std::to_string(q) + " has " + std::to_string(n) +
                " rows; 1.." + std::to_string(max_combined_models) + " can be combined");
  }
}

// out (Q, V) row q = combiners[q] over rows offsets[q] .. offsets[q + 1] - 1 of in (P, V).
// offsets and combiners are host pointers on the CPU.
template <class T, logit_combiner C>
void combine_groups(const context<cpu>&, const C* combiners, const int* offsets, tensor_view<T> out,
                    tensor_view<const T> in) {
  const index_t q_count = out.shape[0], v = out.shape[1];
  require<shape_error>(
      in.shape.size() == 2 && in.shape[1] == v && in.contiguous() && out.contiguous(),
      "combine_groups: in (P, V) and out (Q, V) disagree");
  std::vector<float> lse(max_combined_models), l(max_combined_models), lp(max_combined_models);
  for (index_t q = 0; q < q_count; ++q) {
    const int first = offsets[q], m = offsets[q + 1] - offsets[q];
    const auto at = [&](int i, index_t j) {
      return static_cast<float>(in.data[(first + i) * v + j]);
    };
    if constexpr (C::needs_log_probs)
      for (int i = 0; i < m; ++i)
        lse[i] = detail::log_sum_exp(v, [&](index_t j) { return at(i, j); });
    for (index_t j = 0; j < v; ++j) {
      for (int i = 0; i < m; ++i) {
        l[i] = at(i, j);
        lp[i] = C::needs_log_probs ? l[i] - lse[i] : 0.0f;
      }
      out.data[q * v + j] = static_cast<T>(combiners[q](l.data(), lp.data(), m));
    }
  }
}

// rows (P) = ids (Q) spread to each question's rows: rows[r] = ids[row_group[r]].
inline void expand_group_ids(const context<cpu>&, const std::int32_t* row_group,
                             tensor_view<const std::int32_t> ids, tensor_view<std::int32_t> rows) {
  for (index_t r = 0; r < rows.shape[0]; ++r) rows.data[r] = ids.data[row_group[r]];
}

}  // namespace crossbatch
