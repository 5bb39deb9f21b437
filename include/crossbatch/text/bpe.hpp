// The BPE model of a tokenizer.json (byte-level or not): vocabulary, ranked merges given as "a b"
// strings or [a, b] pairs, ignore_merges, unk/byte_fallback, and a per-thread cache of merged
// words. The merge loop is the `tokenizers` one (a min-heap on (rank, position) with its staleness
// check), so ties and odd merge tables resolve to the same ids.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crossbatch/text/byte_level.hpp"
#include "crossbatch/text/hash_map.hpp"
#include "crossbatch/text/json_reader.hpp"

namespace crossbatch::text {

class bpe_model {
 public:
  struct options {
    std::optional<std::string> unk_token;
    std::string continuing_subword_prefix;
    std::string end_of_word_suffix;
    bool fuse_unk = false;
    bool byte_fallback = false;
    bool ignore_merges = false;
  };

  // `merges` are (left, right) token pairs in rank order; `where(i)` names merge i in errors.
  bpe_model(string_map<std::int32_t> vocab,
            const std::vector<std::pair<std::string, std::string>>& merges, options opts,
            const std::function<std::string(std::size_t)>& where)
      : m_vocab(std::move(vocab)), m_opts(std::move(opts)), m_serial(next_cache_serial()) {
    std::int32_t max_id = -1;
    for (const auto& [tok, id] : m_vocab) max_id = std::max(max_id, id);
    m_vocab_r.reset(m_vocab.size(), max_id);
    for (const auto& [tok, id] : m_vocab) m_vocab_r.set_if_absent(id, tok);
    const std::size_t prefix_len = m_opts.continuing_subword_prefix.size();
    m_merges.reserve(merges.size());
    for (std::size_t i = 0; i < merges.size(); ++i) {
      const auto& [a, b] = merges[i];
      const auto ia = m_vocab.find(a);
      if (ia == m_vocab.end())
        throw format_error(where(i) + ": token '" + a + "' is not in the vocabulary");
      const auto ib = m_vocab.find(b);
      if (ib == m_vocab.end())
        throw format_error(where(i) + ": token '" + b + "' is not in the vocabulary");
      if (b.size() < prefix_len)
        throw format_error(where(i) + ": token '" + b +
                           "' is shorter than the continuing_subword_prefix");
      const std::string merged = a + b.substr(prefix_len);
      const auto im = m_vocab.find(merged);
      if (im == m_vocab.end())
        throw format_error(where(i) + ": merged token '" + merged + "' is not in the vocabulary");
      m_merges.assign(ia->second, ib->second, merge{static_cast<std::uint32_t>(i), im->second});
    }
    if (m_opts.unk_token && !m_vocab.count(*m_opts.unk_token))
      throw format_error(where(0) + ": unk_token '" + *m_opts.unk_token +
                         "' is not in the vocabulary");
    // Byte-level fast path: the id of each byte's alphabet character, when words arrive as raw
    // bytes.
    const auto& alpha = byte_level_alphabet::get();
    for (int b = 0; b < 256; ++b) {
      auto it = m_vocab.find(alpha.utf8_of(static_cast<unsigned char>(b)));
      m_byte_ids[b] = it == m_vocab.end() ? -1 : it->second;
    }
  }

  // Parses model (type "BPE") of a tokenizer.json.
  static bpe_model from_json(const json_node& model) {
    options o;
    if (auto u = model.find("unk_token")) o.unk_token = u->string();
    o.continuing_subword_prefix = model.string_or("continuing_subword_prefix", "");
    o.end_of_word_suffix = model.string_or("end_of_word_suffix", "");
    o.fuse_unk = model.boolean_or("fuse_unk", false);
    o.byte_fallback = model.boolean_or("byte_fallback", false);
    o.ignore_merges = model.boolean_or("ignore_merges", false);
    if (auto d = model.find("dropout")) {
      if (!d->value().is_number() || d->value().get<double>() != 0.0)
        d->fail("BPE dropout is random; only null or 0 is supported");
    }
    string_map<std::int32_t> vocab = read_vocab(model.at("vocab"));
    const json_node merges_node = model.at("merges");
    std::vector<std::pair<std::string, std::string>> merges;
    merges.reserve(merges_node.size());
    for (std::size_t i = 0; i < merges_node.size(); ++i) {
      const json_node m = merges_node.at(i);
      if (m.value().is_string()) {
        merges.push_back(split_merge(m.string(), [&](const std::string& w) { m.fail(w); }));
      } else if (m.value().is_array() && m.value().size() == 2) {
        merges.emplace_back(m.at(0).string(), m.at(1).string());
      } else {
        m.fail("expected a merge as \"a b\" or [\"a\", \"b\"]");
      }
    }
    const std::string file = model.file();
    const std::string path = merges_node.path();
    return bpe_model(std::move(vocab), merges, std::move(o), [&](std::size_t i) {
      return file + ": " + path + "[" + std::to_string(i) + "]";
    });
  }

  // The older file pair: vocab.json ({token: id}) and merges.txt ("#version" line, then "a b"
  // lines).
  static bpe_model from_files(const std::string& vocab_json, const std::string& merges_txt) {
    return from_files(vocab_json, merges_txt, options());
  }
  static bpe_model from_files(const std::string& vocab_json, const std::string& merges_txt,
                              options o) {
    const json vj = parse_json(read_text_file(vocab_json), vocab_json);
    string_map<std::int32_t> vocab = read_vocab(json_node(vj, vocab_json));
    const std::string text = read_text_file(merges_txt);
    std::vector<std::pair<std::string, std::string>> merges;
    std::vector<std::size_t> lines;
    std::size_t line_no = 0;
    for (std::size_t pos = 0; pos < text.size();) {
      std::size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) nl = text.size();
      std::string line = text.substr(pos, nl - pos);
      pos = nl + 1;
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || line.rfind("#version", 0) == 0) continue;
      merges.push_back(split_merge(line, [&](const std::string& w) {
        throw format_error(merges_txt + ": line " + std::to_string(line_no) + ": " + w);
      }));
      lines.push_back(line_no);
    }
    return bpe_model(std::move(vocab), merges, std::move(o), [&](std::size_t i) {
      return merges_txt + ": line " + std::to_string(i < lines.size() ? lines[i] : 0);
    });
  }

  // Appends the ids of one pre-tokenized word. With raw_bytes the word is raw bytes that stand for
  // their byte-level alphabet characters (what the ByteLevel pre-tokenizer produces).
  void tokenize(std::string_view word, bool raw_bytes, std::vector<std::int32_t>& out) const {
    if (word.empty()) return;
    word_cache& wc = thread_word_cache(m_serial, raw_bytes ? 0 : 1);
    std::size_t n = 0;
    if (const std::int32_t* hit = wc.find(word, n)) {
      out.insert(out.end(), hit, hit + n);
      return;
    }
    const std::size_t before = out.size();
    tokenize_uncached(word, raw_bytes, out);
    wc.insert(word, out.data() + before, out.size() - before);
  }

  std::optional<std::int32_t> token_to_id(std::string_view token) const {
    auto it = m_vocab.find(token);
    if (it == m_vocab.end()) return std::nullopt;
    return it->second;
  }
  // The token of id, or nullptr when the vocabulary has no such id.
  const std::string* id_to_token(std::int32_t id) const { return m_vocab_r.get(id); }
  std::size_t vocab_size() const { return m_vocab.size(); }
  const string_map<std::int32_t>& vocab() const { return m_vocab; }
  const options& opts() const { return m_opts; }

 private:
  struct merge {
    std::uint32_t rank = 0;
    std::int32_t new_id = -1;
  };
  struct symbol {
    std::int32_t id;
    std::int32_t prev, next;
    std::uint32_t len;  // 0 once merged into its left neighbour
  };
  struct queued {
    std::uint32_t rank, pos;
    std::int32_t new_id;
    bool operator>(const queued& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  struct scratch {
    std::vector<symbol> symbols;
    std::vector<queued> heap;
    std::string mapped;
  };
  static scratch& thread_scratch() {
    thread_local scratch s;
    return s;
  }

  static string_map<std::int32_t> read_vocab(const json_node& v) {
    if (!v.value().is_object()) v.fail("expected an object {token: id}");
    string_map<std::int32_t> vocab;
    vocab.reserve(v.value().size());
    for (auto it = v.value().begin(); it != v.value().end(); ++it) {
      if (!it.value().is_number_integer() || it.value().get<std::int64_t>() < 0 ||
          it.value().get<std::int64_t>() > INT32_MAX)
        v.fail("token '" + it.key() + "' has no valid id");
      vocab.emplace(it.key(), static_cast<std::int32_t>(it.value().get<std::int64_t>()));
    }
    return vocab;
  }

  template <class Fail>
  static std::pair<std::string, std::string> split_merge(const std::string& s, Fail&& fail) {
    const std::size_t sp = s.find(' ');
    if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
      fail("expected a merge \"a b\" with exactly one space, got '" + s + "'");
    return {s.substr(0, sp), s.substr(sp + 1)};
  }

  void tokenize_uncached(std::string_view word, bool raw_bytes,
                         std::vector<std::int32_t>& out) const {
    scratch& s = thread_scratch();
    const bool affixes =
        !m_opts.continuing_subword_prefix.empty() || !m_opts.end_of_word_suffix.empty();
    bool fast_bytes = raw_bytes && !affixes;
    if (fast_bytes)
      for (unsigned char b : word) fast_bytes = fast_bytes && m_byte_ids[b] >= 0;
    std::string_view text = word;
    if (raw_bytes && (!fast_bytes || m_opts.ignore_merges)) {
      s.mapped.clear();
      byte_level_alphabet::get().map(word, s.mapped);
      text = s.mapped;
    }
    if (m_opts.ignore_merges) {
      if (auto it = m_vocab.find(text); it != m_vocab.end()) {
        out.push_back(it->second);
        return;
      }
    }
    auto& syms = s.symbols;
    syms.clear();
    if (fast_bytes) {
      for (unsigned char b : word) add_symbol(syms, m_byte_ids[b], 1);
    } else {
      build_symbols(text, syms);
    }
    merge_all(syms, s.heap);
    for (const auto& sym : syms)
      if (sym.len) out.push_back(sym.id);
  }

  static void add_symbol(std::vector<symbol>& syms, std::int32_t id, std::uint32_t len) {
    const auto n = static_cast<std::int32_t>(syms.size());
    if (n) syms.back().next = n;
    syms.push_back({id, n - 1, -1, len});
  }

  // One symbol per character, as BPE::merge_word does (affixes, byte fallback, unk).
  void build_symbols(std::string_view w, std::vector<symbol>& syms) const {
    std::optional<std::pair<std::int32_t, std::uint32_t>> unk;
    std::string piece;
    for (std::size_t i = 0; i < w.size();) {
      const std::size_t n =
          std::min(utf8_length_of_lead(static_cast<unsigned char>(w[i])), w.size() - i);
      const bool first = i == 0, last = i + n == w.size();
      std::string_view ch = w.substr(i, n);
      i += n;
      std::string_view key = ch;
      if ((!first && !m_opts.continuing_subword_prefix.empty()) ||
          (last && !m_opts.end_of_word_suffix.empty())) {
        piece.assign(first ? "" : m_opts.continuing_subword_prefix);
        piece += ch;
        if (last) piece += m_opts.end_of_word_suffix;
        key = piece;
      }
      if (auto it = m_vocab.find(key); it != m_vocab.end()) {
        if (unk) {
          add_symbol(syms, unk->first, unk->second);
          unk.reset();
        }
        add_symbol(syms, it->second, static_cast<std::uint32_t>(n));
        continue;
      }
      if (m_opts.byte_fallback) {
        std::vector<std::int32_t> ids;
        for (unsigned char b : key) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "<0x%02X>", b);
          auto it = m_vocab.find(std::string_view(buf));
          if (it == m_vocab.end()) break;
          ids.push_back(it->second);
        }
        if (ids.size() == key.size()) {
          for (std::int32_t id : ids) add_symbol(syms, id, 1);
          continue;
        }
      }
      if (m_opts.unk_token) {
        const std::int32_t unk_id = m_vocab.find(*m_opts.unk_token)->second;
        if (unk && m_opts.fuse_unk) {
          unk->second += static_cast<std::uint32_t>(n);
        } else {
          if (unk) add_symbol(syms, unk->first, unk->second);
          unk = std::make_pair(unk_id, static_cast<std::uint32_t>(n));
        }
      }
      // Without an unk token the character is dropped, as in `tokenizers`.
    }
    if (unk) add_symbol(syms, unk->first, unk->second);
  }

  void merge_all(std::vector<symbol>& syms, std::vector<queued>& heap) const {
    heap.clear();
    const std::greater<queued> cmp;
    for (std::size_t i = 0; i + 1 < syms.size(); ++i)
      if (const merge* m = m_merges.find(syms[i].id, syms[i + 1].id))
        heap.push_back({m->rank, static_cast<std::uint32_t>(i), m->new_id});
    std::make_heap(heap.begin(), heap.end(), cmp);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), cmp);
      const queued top = heap.back();
      heap.pop_back();
      symbol& cur = syms[top.pos];
      if (cur.len == 0 || cur.next == -1) continue;
      const symbol right = syms[cur.next];
      const merge* m = m_merges.find(cur.id, right.id);
      if (!m || m->new_id != top.new_id) continue;  // stale entry
      const std::int32_t right_pos = cur.next;
      cur.id = top.new_id;
      cur.len += right.len;
      cur.next = right.next;
      syms[right_pos].len = 0;
      if (right.next >= 0) syms[right.next].prev = static_cast<std::int32_t>(top.pos);
      if (cur.prev >= 0) {
        if (const merge* pm = m_merges.find(syms[cur.prev].id, cur.id)) {
          heap.push_back({pm->rank, static_cast<std::uint32_t>(cur.prev), pm->new_id});
          std::push_heap(heap.begin(), heap.end(), cmp);
        }
      }
      if (cur.next >= 0) {
        if (const merge* nm = m_merges.find(cur.id, syms[cur.next].id)) {
          heap.push_back({nm->rank, top.pos, nm->new_id});
          std::push_heap(heap.begin(), heap.end(), cmp);
        }
      }
    }
  }

  string_map<std::int32_t> m_vocab;
  id_table<std::string> m_vocab_r;
  pair_map<merge> m_merges;
  options m_opts;
  std::int32_t m_byte_ids[256];
  std::uint64_t m_serial;
};

}  // namespace crossbatch::text
