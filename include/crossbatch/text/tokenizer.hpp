// The tokenizer: loads a Hugging Face tokenizer.json (BPE or WordPiece with their normalizer,
// pre-tokenizer, added tokens, post-processor, decoder, truncation and padding), or the older
// vocab.json + merges.txt pair, or a BERT vocab.txt, and encodes text to the same ids as the Python
// `tokenizers` library and decodes them back.
//
// Invalid UTF-8 input is never an error: each maximal ill-formed subsequence is replaced by U+FFFD
// first (Python's bytes.decode("utf-8", errors="replace")), and the result is encoded.
// A tokenizer is immutable after loading and may be used from several threads at once.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "crossbatch/text/added_tokens.hpp"
#include "crossbatch/text/bpe.hpp"
#include "crossbatch/text/decoder.hpp"
#include "crossbatch/text/encoding.hpp"
#include "crossbatch/text/json_reader.hpp"
#include "crossbatch/text/normalizer.hpp"
#include "crossbatch/text/post_processor.hpp"
#include "crossbatch/text/pre_tokenizer.hpp"
#include "crossbatch/text/utf8.hpp"
#include "crossbatch/text/wordpiece.hpp"

namespace crossbatch::text {

struct encode_options {
  bool add_special_tokens = true;     // apply the post-processor (BOS, [CLS] ... [SEP])
  bool split_special_tokens = false;  // encode special-token strings in the text as plain text
};

class tokenizer {
 public:
  using model_type = std::variant<bpe_model, wordpiece_model>;

  tokenizer(model_type model, normalizer norm, pre_tokenizer pre, std::vector<added_token> added,
            post_processor post, decoder dec, std::optional<truncation_params> trunc = std::nullopt,
            std::optional<padding_options> pad = std::nullopt)
      : m_model(std::move(model)),
        m_normalizer(std::move(norm)),
        m_pre(std::move(pre)),
        m_added(std::move(added), m_normalizer),
        m_post(std::move(post)),
        m_decoder(std::move(dec)),
        m_truncation(trunc),
        m_padding(pad) {}

  // --- loading ---

  // A tokenizer.json file. io_error when it cannot be read; format_error naming the file and the
  // JSON path of the first bad or unsupported field.
  static tokenizer from_file(const std::string& path) {
    return from_json_text(read_text_file(path), path);
  }

  // tokenizer.json content; `name` stands for the file in errors.
  static tokenizer from_json_text(std::string_view text,
                                  const std::string& name = "tokenizer.json") {
    return from_json(parse_json(text, name), name);
  }

  static tokenizer from_json(const json& j, const std::string& name = "tokenizer.json") {
    const json_node root(j, name);
    if (!j.is_object()) root.fail("expected a JSON object");
    const json_node model = root.at("model");
    std::string type;
    if (auto t = model.find("type"))
      type = t->string();
    else
      type = model.has("merges") ? "BPE" : "WordPiece";  // files older than the "type" tag
    model_type m = [&]() -> model_type {
      if (type == "BPE") return bpe_model::from_json(model);
      if (type == "WordPiece") return wordpiece_model::from_json(model);
      model.at("type").fail("unsupported model type '" + type + "' (supported: BPE, WordPiece)");
    }();
    normalizer norm = normalizer::from_json(root.find("normalizer"));
    std::vector<added_token> added;
    if (auto list = root.find("added_tokens")) {
      for (std::size_t i = 0; i < list->size(); ++i) {
        const json_node t = list->at(i);
        added_token a;
        a.content = t.at("content").string();
        a.special = t.boolean_or("special", false);
        a.single_word = t.boolean_or("single_word", false);
        a.lstrip = t.boolean_or("lstrip", false);
        a.rstrip = t.boolean_or("rstrip", false);
        a.normalized = t.boolean_or("normalized", !a.special);
        // The model's id wins when the content is in its vocabulary (as `tokenizers` does).
        const auto model_id =
            std::visit([&](const auto& mm) { return mm.token_to_id(a.content); }, m);
        a.id = model_id ? *model_id : t.at("id").id();
        added.push_back(std::move(a));
      }
    }
    return tokenizer(std::move(m), std::move(norm),
                     pre_tokenizer::from_json(root.find("pre_tokenizer")), std::move(added),
                     post_processor::from_json(root.find("post_processor")),
                     decoder::from_json(root.find("decoder")),
                     truncation_params::from_json(root.find("truncation")),
                     padding_options::from_json(root.find("padding")));
  }

  // GPT-2's vocab.json + merges.txt: byte-level BPE with GPT-2's split pattern and no prefix space.
  // `special_tokens` (e.g. "<|endoftext|>") are matched in the text when they are in the
  // vocabulary.
  static tokenizer from_bpe_files(const std::string& vocab_json, const std::string& merges_txt,
                                  const std::vector<std::string>& special_tokens = {},
                                  bool add_prefix_space = false) {
    bpe_model m = bpe_model::from_files(vocab_json, merges_txt);
    byte_level_pre_tokenizer bl;
    bl.add_prefix_space = add_prefix_space;
    bl.re = regex(gpt2_split_pattern, merges_txt);
    std::vector<added_token> added;
    for (const auto& s : special_tokens)
      if (auto id = m.token_to_id(s)) added.push_back(special_token(s, *id));
    return tokenizer(std::move(m), normalizer(), pre_tokenizer({std::move(bl)}), std::move(added),
                     post_processor(), decoder({byte_level_decoder{}}));
  }

  // BERT's vocab.txt with the uncased (lowercase = true) or cased BERT pipeline: BertNormalizer,
  // BertPreTokenizer, WordPiece, [CLS] A [SEP] (B [SEP]) and the WordPiece decoder.
  static tokenizer from_wordpiece_vocab(const std::string& vocab_txt, bool lowercase = true) {
    wordpiece_model m = wordpiece_model::from_vocab_txt(vocab_txt);
    std::vector<added_token> added;
    for (const char* s : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"})
      if (auto id = m.token_to_id(s)) added.push_back(special_token(s, *id));
    const auto cls = m.token_to_id("[CLS]"), sep = m.token_to_id("[SEP]");
    if (!cls || !sep)
      throw format_error(vocab_txt + ": [CLS] or [SEP] is missing from the vocabulary");
    bert_normalizer bn;
    bn.lowercase = bn.strip_accents = lowercase;
    return tokenizer(std::move(m), normalizer({bn}), pre_tokenizer({bert_pre_tokenizer{}}),
                     std::move(added), bert_post(*cls, *sep), decoder({wordpiece_decoder{}}));
  }

  // --- encoding ---

  // The ids of one text (with the post-processor's special tokens unless told otherwise).
  std::vector<std::int32_t> encode(std::string_view text, const encode_options& opt = {}) const {
    if (!m_truncation && (m_post.empty() || !opt.add_special_tokens))
      return encode_plain(text, opt.split_special_tokens);
    return encode_full(text, nullptr, opt).ids;
  }
  // Ids and token type ids of one text, or of a pair (e.g. [CLS] a [SEP] b [SEP]).
  encoding encode_full(std::string_view a, const std::string_view* b,
                       const encode_options& opt = {}) const {
    encoding ea{encode_plain(a, opt.split_special_tokens), {}};
    ea.type_ids.assign(ea.ids.size(), 0);
    std::optional<encoding> eb;
    if (b) {
      eb = encoding{encode_plain(*b, opt.split_special_tokens), {}};
      eb->type_ids.assign(eb->ids.size(), 1);
    }
    if (m_truncation) {
      truncation_params p = *m_truncation;
      const std::size_t added = opt.add_special_tokens ? m_post.added_tokens(b != nullptr) : 0;
      p.max_length = p.max_length > added ? p.max_length - added : 0;
      truncate(ea, eb ? &*eb : nullptr, p);
    }
    return m_post.process(std::move(ea), eb ? &*eb : nullptr, opt.add_special_tokens);
  }
  encoding encode_pair(std::string_view a, std::string_view b,
                       const encode_options& opt = {}) const {
    return encode_full(a, &b, opt);
  }

  // Ids of the text without post-processing or truncation (added tokens are still matched).
  std::vector<std::int32_t> encode_plain(std::string_view text,
                                         bool split_special_tokens = false) const {
    std::vector<std::int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    const std::size_t bad = first_invalid_utf8(text);
    std::string repaired;
    if (bad != text.size()) {
      repaired = repair_utf8(text);
      text = repaired;
    }
    thread_local std::vector<text_piece> pieces;  // reused between calls: no allocation per call
    m_added.extract_and_normalize(text, m_normalizer, split_special_tokens, pieces);
    for (const auto& piece : pieces) {
      if (piece.id >= 0) {
        ids.push_back(piece.id);
        continue;
      }
      m_pre.run(piece.text,
                [&](std::string_view word, bool raw) { tokenize_word(word, raw, ids); });
    }
    return ids;
  }

  // --- decoding ---

  // The text of ids; special tokens are left out unless skip_special_tokens is false. Unknown ids
  // are ignored, as in `tokenizers`.
  std::string decode(std::span<const std::int32_t> ids, bool skip_special_tokens = true) const {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (std::int32_t id : ids) {
      if (const added_token* a = m_added.by_id(id)) {
        if (skip_special_tokens && a->special) continue;
        tokens.push_back(a->decoded);
      } else if (const std::string* t = model_token(id)) {
        tokens.push_back(*t);
      }
    }
    return m_decoder.decode(std::move(tokens));
  }

  // --- vocabulary ---

  std::optional<std::int32_t> token_to_id(std::string_view token) const {
    if (auto id = m_added.id_of(token)) return id;
    return std::visit([&](const auto& m) { return m.token_to_id(token); }, m_model);
  }
  std::optional<std::string> id_to_token(std::int32_t id) const {
    if (const added_token* a = m_added.by_id(id)) return a->decoded;
    if (const std::string* t = model_token(id)) return *t;
    return std::nullopt;
  }
  bool is_special(std::int32_t id) const {
    const added_token* a = m_added.by_id(id);
    return a && a->special;
  }
  // Number of tokens: the model's vocabulary plus added tokens outside it (tokenizers'
  // get_vocab_size).
  std::size_t vocab_size(bool with_added_tokens = true) const {
    std::size_t n = std::visit([](const auto& m) { return m.vocab_size(); }, m_model);
    if (with_added_tokens)
      for (const auto& t : m_added.tokens())
        if (!std::visit([&](const auto& m) { return m.token_to_id(t.content).has_value(); },
                        m_model))
          ++n;
    return n;
  }

  const model_type& model() const { return m_model; }
  const normalizer& get_normalizer() const { return m_normalizer; }
  const pre_tokenizer& get_pre_tokenizer() const { return m_pre; }
  const added_vocabulary& added_tokens() const { return m_added; }
  const post_processor& get_post_processor() const { return m_post; }
  const decoder& get_decoder() const { return m_decoder; }
  const std::optional<truncation_params>& truncation() const { return m_truncation; }
  void set_truncation(std::optional<truncation_params> t) { m_truncation = t; }
  // The file's "padding" section, the default of encode_batch.
  const std::optional<padding_options>& padding() const { return m_padding; }

 private:
  // A special token matched verbatim in the text (no flags, not normalized).
  static added_token special_token(std::string content, std::int32_t id) {
    added_token t;
    t.content = std::move(content);
    t.id = id;
    t.special = true;
    t.normalized = false;
    return t;
  }

  static post_processor bert_post(std::int32_t cls, std::int32_t sep) {
    json j = {{"type", "BertProcessing"}, {"cls", {"[CLS]", cls}}, {"sep", {"[SEP]", sep}}};
    return post_processor::from_json(json_node(j, "BertProcessing"));
  }

  const std::string* model_token(std::int32_t id) const {
    return std::visit([&](const auto& m) { return m.id_to_token(id); }, m_model);
  }

  void tokenize_word(std::string_view word, bool raw, std::vector<std::int32_t>& ids) const {
    if (const auto* bpe = std::get_if<bpe_model>(&m_model)) {
      bpe->tokenize(word, raw, ids);
      return;
    }
    const auto& wp = std::get<wordpiece_model>(m_model);
    if (!raw) {
      wp.tokenize(word, ids);
      return;
    }
    std::string mapped;
    byte_level_alphabet::get().map(word, mapped);
    wp.tokenize(mapped, ids);
  }

  model_type m_model;
  normalizer m_normalizer;
  pre_tokenizer m_pre;
  added_vocabulary m_added;
  post_processor m_post;
  decoder m_decoder;
  std::optional<truncation_params> m_truncation;
  std::optional<padding_options> m_padding;
};

}  // namespace crossbatch::text
