// The ensemble step policy of paraphrase fusion: one batch_session whose rows are all the
// paraphrases of Q questions (question q owns rows [offsets[q], offsets[q + 1])), driven as a
// batch of Q sequences. Each step the rows of a question are combined by that question's
// combiner (fusion/grouped_combine.hpp) into one row of logits (Q, V), the driver draws one token
// per question, and step() feeds that token to every row of the question: all paraphrases of a
// question step together on the same generated ids. Works with decode() and, on CUDA, with the
// graph driver (include fusion/cuda/grouped_combine.cuh there); the session takes its fused
// decode step.
//   avg           mean_logits_combiner
//   max           max_prob_combiner
//   weighted_avg  weighted_mean_combiner with the paraphrases' confidences
//   weighted_max  weighted_mean_combiner, weight 1 on the most confident paraphrase (see
//                 fusion/confidence.hpp)
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "crossbatch/core/transfer.hpp"
#include "crossbatch/fusion/grouped_combine.hpp"
#include "crossbatch/generate/batch_session.hpp"
#include "crossbatch/generate/step_policy.hpp"

namespace crossbatch {

template <class T, class D = cpu, logit_combiner C = mean_logits_combiner>
class ensemble_step {
 public:
  using session_type = batch_session<T, D, left_padded>;

  // session: P rows; offsets (Q + 1); combiners (Q), each checked against its group's size.
  ensemble_step(session_type& session, std::vector<int> offsets, std::vector<C> combiners)
      : m_session(session), m_offsets(std::move(offsets)), m_combiners(std::move(combiners)) {
    static_assert(std::is_trivially_copyable_v<C> && alignof(C) <= alignof(float));
    const int rows = session.batch();
    check_group_offsets(m_offsets, rows);
    const int q_count = static_cast<int>(m_offsets.size()) - 1;
    require(static_cast<int>(m_combiners.size()) == q_count,
            "ensemble_step: " + std::to_string(m_combiners.size()) + " combiners for " +
                std::to_string(q_count) + " questions");
    tensor<std::int32_t> offs({q_count + 1}), group({rows});
    for (int q = 0; q < q_count; ++q) {
      m_combiners[q].check(m_offsets[q + 1] - m_offsets[q]);
      for (int r = m_offsets[q]; r < m_offsets[q + 1]; ++r) group(r) = q;
    }
    for (int q = 0; q <= q_count; ++q) offs(q) = m_offsets[q];
    m_dev_offsets = to_device<D>(offs);
    m_row_group = to_device<D>(group);
    const std::size_t bytes = sizeof(C) * m_combiners.size();
    m_dev_combiners = tensor<float, D>({index_t((bytes + sizeof(float) - 1) / sizeof(float))});
    device_traits<D>::upload(m_dev_combiners.data(), m_combiners.data(), bytes);
    m_row_ids = tensor<std::int32_t, D>({rows});
    m_logits = tensor<T, D>({q_count, session.model().config.vocab_size});
  }

  int batch() const { return static_cast<int>(m_offsets.size()) - 1; }
  const model_config& config() const { return m_session.model().config; }
  const std::vector<int>& offsets() const { return m_offsets; }
  void prefill() {
    m_session.prefill(no_hooks{}, step_outputs{.hidden = false});
    combine();
  }
  bool step(tensor_view<const std::int32_t, D> ids, std::uint64_t*) {
    require<shape_error>(ids.shape == shape_t{batch()}, "ensemble_step: ids must be (Q)");
    expand_group_ids(m_session.ctx(), static_cast<const std::int32_t*>(m_row_group.data()), ids,
                     m_row_ids.view());
    m_session.step(tensor_view<const std::int32_t, D>(m_row_ids.view()), no_hooks{},
                   step_outputs{.hidden = false});
    combine();
    return false;
  }
  tensor_view<const T, D> logits() const { return m_logits.view(); }
  std::int32_t* retire_groups() { return nullptr; }
  template <class F>
  void for_each_session(F&& f) {
    f(m_session);
  }

 private:
  void combine() {
    combine_groups(m_session.ctx(), reinterpret_cast<const C*>(m_dev_combiners.data()),
                   static_cast<const int*>(m_dev_offsets.data()), m_logits.view(),
                   m_session.logits());
  }

  session_type& m_session;
  std::vector<int> m_offsets;
  std::vector<C> m_combiners;
  tensor<std::int32_t, D> m_dev_offsets, m_row_group, m_row_ids;  // (Q + 1), (P), (P)
  tensor<float, D> m_dev_combiners;                               // (Q) combiners, as bytes
  tensor<T, D> m_logits;                                          // (Q, V)
};

}  // namespace crossbatch
