// The ids of an encoded sequence with their token type ids, and the length policies applied to
// them: truncation (longest first / only first / only second, from either side) and padding
// options, as in the "truncation" and "padding" fields of a tokenizer.json.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "crossbatch/text/json_reader.hpp"

namespace crossbatch::text {

struct encoding {
  std::vector<std::int32_t> ids;       // (T)
  std::vector<std::int32_t> type_ids;  // (T)
};

enum class side { left, right };

struct truncation_params {
  enum class strategy { longest_first, only_first, only_second };
  std::size_t max_length = 512;
  strategy strat = strategy::longest_first;
  side direction = side::right;  // which end loses tokens

  static std::optional<truncation_params> from_json(const std::optional<json_node>& n) {
    if (!n) return std::nullopt;
    truncation_params t;
    t.max_length =
        static_cast<std::size_t>(std::max<std::int64_t>(0, n->at("max_length").integer()));
    const std::string s = n->string_or("strategy", "LongestFirst");
    if (s == "LongestFirst")
      t.strat = strategy::longest_first;
    else if (s == "OnlyFirst")
      t.strat = strategy::only_first;
    else if (s == "OnlySecond")
      t.strat = strategy::only_second;
    else
      n->at("strategy").fail("unknown truncation strategy '" + s + "'");
    t.direction = n->string_or("direction", "Right") == "Left" ? side::left : side::right;
    return t;
  }
};

struct padding_options {
  side direction = side::right;  // where pad tokens go
  std::int32_t pad_id = 0;
  std::int32_t pad_type_id = 0;
  std::optional<std::size_t> fixed_length;  // pad to this length (BatchLongest when unset)
  std::size_t pad_to_multiple_of = 0;       // 0: no rounding

  static std::optional<padding_options> from_json(const std::optional<json_node>& n) {
    if (!n) return std::nullopt;
    padding_options p;
    p.direction = n->string_or("direction", "Right") == "Left" ? side::left : side::right;
    if (auto id = n->find("pad_id")) p.pad_id = id->id();
    if (auto t = n->find("pad_type_id")) p.pad_type_id = t->id();
    if (auto m = n->find("pad_to_multiple_of")) {
      p.pad_to_multiple_of = static_cast<std::size_t>(m->id());
      if (p.pad_to_multiple_of > (1u << 24)) m->fail("pad_to_multiple_of is implausible");
    }
    if (auto s = n->find("strategy"); s && s->value().is_object()) {
      if (auto f = s->find("Fixed")) {
        p.fixed_length = static_cast<std::size_t>(f->id());
        if (*p.fixed_length > (1u << 24))
          f->fail("fixed padding length " + std::to_string(*p.fixed_length) + " is implausible");
      }
    }
    return p;
  }
};

namespace detail {

inline void truncate_to(encoding& e, std::size_t n, side direction) {
  if (e.ids.size() <= n) return;
  if (direction == side::right) {
    e.ids.resize(n);
    e.type_ids.resize(n);
  } else {
    e.ids.erase(e.ids.begin(), e.ids.end() - static_cast<std::ptrdiff_t>(n));
    e.type_ids.erase(e.type_ids.begin(), e.type_ids.end() - static_cast<std::ptrdiff_t>(n));
  }
}

}  // namespace detail

// truncate_encodings of `tokenizers`: shortens a (and b) so that together they fit max_length.
inline void truncate(encoding& a, encoding* b, const truncation_params& p) {
  if (p.max_length == 0) {
    detail::truncate_to(a, 0, p.direction);
    if (b) detail::truncate_to(*b, 0, p.direction);
    return;
  }
  const std::size_t total = a.ids.size() + (b ? b->ids.size() : 0);
  if (total <= p.max_length) return;
  const std::size_t to_remove = total - p.max_length;
  if (p.strat == truncation_params::strategy::longest_first) {
    if (!b) {
      detail::truncate_to(a, total - to_remove, p.direction);
      return;
    }
    std::size_t n1 = a.ids.size(), n2 = b->ids.size();
    const bool swap = n1 > n2;
    if (swap) std::swap(n1, n2);
    n2 = n1 > p.max_length ? n1 : std::max(n1, p.max_length - n1);
    if (n1 + n2 > p.max_length) {
      n1 = p.max_length / 2;
      n2 = n1 + p.max_length % 2;
    }
    if (swap) std::swap(n1, n2);
    detail::truncate_to(a, n1, p.direction);
    detail::truncate_to(*b, n2, p.direction);
    return;
  }
  encoding* target = p.strat == truncation_params::strategy::only_first ? &a : b;
  if (!target) throw value_error("truncation only_second needs a pair of sequences");
  if (target->ids.size() <= to_remove)
    throw value_error("truncation: the sequence to truncate is too short to fit max_length " +
                      std::to_string(p.max_length));
  detail::truncate_to(*target, target->ids.size() - to_remove, p.direction);
}

}  // namespace crossbatch::text
