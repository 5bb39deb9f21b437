// The WordPiece model of BERT-family encoders: greedy longest-match-first with a "##" continuation
// prefix; a word longer than max_input_chars_per_word, or one that cannot be covered, becomes
// [UNK].
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crossbatch/text/hash_map.hpp"
#include "crossbatch/text/json_reader.hpp"
#include "crossbatch/text/utf8.hpp"

namespace crossbatch::text {

class wordpiece_model {
 public:
  wordpiece_model(string_map<std::int32_t> vocab, std::string unk_token, std::string prefix,
                  std::size_t max_input_chars_per_word, const std::string& where)
      : m_vocab(std::move(vocab)),
        m_unk_token(std::move(unk_token)),
        m_prefix(std::move(prefix)),
        m_max_chars(max_input_chars_per_word),
        m_serial(next_cache_serial()) {
    auto it = m_vocab.find(m_unk_token);
    if (it == m_vocab.end())
      throw format_error(where + ": unk_token '" + m_unk_token + "' is not in the vocabulary");
    m_unk_id = it->second;
    std::int32_t max_id = -1;
    for (const auto& [tok, id] : m_vocab) max_id = std::max(max_id, id);
    m_vocab_r.reset(m_vocab.size(), max_id);
    for (const auto& [tok, id] : m_vocab) m_vocab_r.set_if_absent(id, tok);
    // A byte trie of the vocabulary: the longest token that prefixes the rest of a word is one
    // walk.
    m_terminal.push_back(-1);
    for (const auto& [tok, id] : m_vocab) {
      std::int32_t node = 0;
      for (unsigned char b : tok) {
        const std::int32_t* next = m_children.find(node, b);
        if (next) {
          node = *next;
        } else {
          const auto fresh = static_cast<std::int32_t>(m_terminal.size());
          m_terminal.push_back(-1);
          m_children.assign(node, b, fresh);
          node = fresh;
        }
      }
      m_terminal[node] = id;
    }
    m_prefix_node = 0;
    for (unsigned char b : m_prefix) {
      const std::int32_t* next = m_prefix_node >= 0 ? m_children.find(m_prefix_node, b) : nullptr;
      m_prefix_node = next ? *next : -1;
    }
  }

  static wordpiece_model from_json(const json_node& model) {
    const json_node v = model.at("vocab");
    if (!v.value().is_object()) v.fail("expected an object {token: id}");
    string_map<std::int32_t> vocab;
    for (auto it = v.value().begin(); it != v.value().end(); ++it) {
      if (!it.value().is_number_integer() || it.value().get<std::int64_t>() < 0 ||
          it.value().get<std::int64_t>() > INT32_MAX)
        v.fail("token '" + it.key() + "' has no valid id");
      vocab.emplace(it.key(), static_cast<std::int32_t>(it.value().get<std::int64_t>()));
    }
    std::size_t max_chars = 100;
    if (auto m = model.find("max_input_chars_per_word"))
      max_chars = static_cast<std::size_t>(std::max<std::int64_t>(0, m->integer()));
    return wordpiece_model(std::move(vocab), model.string_or("unk_token", "[UNK]"),
                           model.string_or("continuing_subword_prefix", "##"), max_chars,
                           model.file() + ": " + model.path());
  }

  // BERT's vocab.txt: one token per line, the id is the line number (from 0).
  static wordpiece_model from_vocab_txt(const std::string& path, std::string unk_token = "[UNK]",
                                        std::string prefix = "##", std::size_t max_chars = 100) {
    const std::string text = read_text_file(path);
    string_map<std::int32_t> vocab;
    std::int32_t id = 0;
    for (std::size_t pos = 0; pos < text.size();) {
      std::size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) nl = text.size();
      std::string line = text.substr(pos, nl - pos);
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
        line.pop_back();
      vocab.emplace(std::move(line), id++);
      pos = nl + 1;
    }
    return wordpiece_model(std::move(vocab), std::move(unk_token), std::move(prefix), max_chars,
                           path);
  }

  // Appends the ids of one word (cached per thread: words repeat).
  void tokenize(std::string_view word, std::vector<std::int32_t>& out) const {
    if (word.empty()) return;
    word_cache& cache = thread_word_cache(m_serial, 0);
    std::size_t n = 0;
    if (const std::int32_t* hit = cache.find(word, n)) {
      out.insert(out.end(), hit, hit + n);
      return;
    }
    const std::size_t before = out.size();
    tokenize_uncached(word, out);
    cache.insert(word, out.data() + before, out.size() - before);
  }

  std::optional<std::int32_t> token_to_id(std::string_view token) const {
    auto it = m_vocab.find(token);
    if (it == m_vocab.end()) return std::nullopt;
    return it->second;
  }
  const std::string* id_to_token(std::int32_t id) const { return m_vocab_r.get(id); }
  std::size_t vocab_size() const { return m_vocab.size(); }
  const string_map<std::int32_t>& vocab() const { return m_vocab; }
  const std::string& continuing_subword_prefix() const { return m_prefix; }

 private:
  void tokenize_uncached(std::string_view word, std::vector<std::int32_t>& out) const {
    std::size_t chars = 0;
    for (unsigned char b : word) chars += (b & 0xC0) != 0x80;
    if (chars > m_max_chars) {
      out.push_back(m_unk_id);
      return;
    }
    // Greedy longest-match-first, as `tokenizers` does it by trying ever shorter substrings;
    // vocabulary tokens are whole UTF-8 characters, so the longest match ends on a character
    // boundary too.
    const std::size_t before = out.size();
    std::size_t start = 0;
    while (start < word.size()) {
      std::int32_t node = start == 0 ? 0 : m_prefix_node;
      std::int32_t found = -1;
      std::size_t found_end = start;
      for (std::size_t j = start; node >= 0 && j < word.size(); ++j) {
        const std::int32_t* next = m_children.find(node, static_cast<unsigned char>(word[j]));
        if (!next) break;
        node = *next;
        if (m_terminal[node] >= 0) {
          found = m_terminal[node];
          found_end = j + 1;
        }
      }
      if (found < 0) {
        out.resize(before);
        out.push_back(m_unk_id);
        return;
      }
      out.push_back(found);
      start = found_end;
    }
  }

  string_map<std::int32_t> m_vocab;
  id_table<std::string> m_vocab_r;
  std::string m_unk_token;
  std::string m_prefix;
  std::size_t m_max_chars;
  pair_map<std::int32_t> m_children;     // (node, byte) -> child node of the vocabulary trie
  std::vector<std::int32_t> m_terminal;  // node -> id of the token ending there, or -1
  std::int32_t m_prefix_node = -1;       // the node of the continuation prefix ("##"), -1 if absent
  std::int32_t m_unk_id = 0;
  std::uint64_t m_serial;
};

}  // namespace crossbatch::text
