// Encoding a batch of texts into one padded (B, T) block of ids with its attention mask and token
// type ids, padded on the side the caller asks for (left for decoder-only generation, right for
// encoders), like encode_batch of `tokenizers` with padding enabled.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crossbatch/core/tensor.hpp"
#include "crossbatch/text/encoding.hpp"
#include "crossbatch/text/tokenizer.hpp"

namespace crossbatch::text {

struct batch_encoding {
  tensor<std::int32_t> ids;             // (B, T)
  tensor<std::int32_t> attention_mask;  // (B, T): 1 for tokens, 0 for padding
  tensor<std::int32_t> type_ids;        // (B, T)
  std::vector<std::size_t> lengths;     // (B) unpadded lengths
};

// Pads already encoded sequences to a common length (the longest, or options.fixed_length, rounded
// up to pad_to_multiple_of). Sequences longer than a fixed length are kept whole (the length
// grows).
inline batch_encoding pad_batch(std::span<const encoding> seqs, const padding_options& options) {
  std::size_t longest = 0;
  for (const auto& s : seqs) longest = std::max(longest, s.ids.size());
  std::size_t t = options.fixed_length ? std::max(*options.fixed_length, longest) : longest;
  if (options.pad_to_multiple_of > 0 && t % options.pad_to_multiple_of)
    t += options.pad_to_multiple_of - t % options.pad_to_multiple_of;
  const auto b = static_cast<index_t>(seqs.size());
  batch_encoding out{tensor<std::int32_t>({b, static_cast<index_t>(t)}),
                     tensor<std::int32_t>({b, static_cast<index_t>(t)}),
                     tensor<std::int32_t>({b, static_cast<index_t>(t)}),
                     {}};
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    const encoding& s = seqs[i];
    const std::size_t n = s.ids.size(), pad = t - n;
    const std::size_t first = options.direction == side::left ? pad : 0;  // where the tokens start
    std::int32_t* ids = out.ids.data() + i * t;
    std::int32_t* mask = out.attention_mask.data() + i * t;
    std::int32_t* types = out.type_ids.data() + i * t;
    std::fill(ids, ids + t, options.pad_id);
    std::fill(mask, mask + t, 0);
    std::fill(types, types + t, options.pad_type_id);
    std::copy(s.ids.begin(), s.ids.end(), ids + first);
    std::fill(mask + first, mask + first + n, 1);
    if (s.type_ids.size() == n)
      std::copy(s.type_ids.begin(), s.type_ids.end(), types + first);
    else
      std::fill(types + first, types + first + n, 0);
    out.lengths.push_back(n);
  }
  return out;
}

// Encodes and pads texts (B strings) into (B, T) tensors.
inline batch_encoding encode_batch(const tokenizer& tok, std::span<const std::string> texts,
                                   const padding_options& options, const encode_options& opt = {}) {
  std::vector<encoding> seqs;
  seqs.reserve(texts.size());
  for (const auto& s : texts) seqs.push_back(tok.encode_full(s, nullptr, opt));
  return pad_batch(seqs, options);
}

// Same, with the padding of the tokenizer.json ("padding" field), or right padding with id 0 when
// the file has none.
inline batch_encoding encode_batch(const tokenizer& tok, std::span<const std::string> texts,
                                   const encode_options& opt = {}) {
  return encode_batch(tok, texts, tok.padding().value_or(padding_options{}), opt);
}

}  // namespace crossbatch::text
