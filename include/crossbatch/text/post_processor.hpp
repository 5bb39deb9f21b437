// Post-processors of a tokenizer.json ("post_processor" field) that add special tokens around one
// sequence or a pair and assign token type ids: TemplateProcessing (BOS/EOS, [CLS] A [SEP] B
// [SEP]), BertProcessing, ByteLevel (offsets only, no effect on ids) and Sequence.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "crossbatch/text/encoding.hpp"
#include "crossbatch/text/json_reader.hpp"

namespace crossbatch::text {

class post_processor {
 public:
  struct piece {
    bool sequence = false;                  // a sequence (A or B) or a special token
    int which = 0;                          // sequence: 0 for A, 1 for B
    std::vector<std::int32_t> special_ids;  // special token: its ids
    std::int32_t type_id = 0;
  };

  post_processor() = default;

  bool empty() const { return !m_active; }

  // Number of tokens the processor adds (used to shorten truncation, as `tokenizers` does).
  std::size_t added_tokens(bool pair) const {
    if (!m_active) return 0;
    std::size_t n = 0;
    for (const auto& p : pair ? m_pair : m_single)
      if (!p.sequence) n += p.special_ids.size();
    return n;
  }

  // Combines a and optionally b. Without special tokens (or without a template) the sequences are
  // concatenated, b keeping type id 1.
  encoding process(encoding a, const encoding* b, bool add_special_tokens) const {
    if (!m_active || !add_special_tokens) {
      if (b) {
        a.ids.insert(a.ids.end(), b->ids.begin(), b->ids.end());
        a.type_ids.insert(a.type_ids.end(), b->type_ids.begin(), b->type_ids.end());
      }
      return a;
    }
    encoding out;
    for (const auto& p : b ? m_pair : m_single) {
      if (p.sequence) {
        const encoding& src = p.which == 0 ? a : *b;
        out.ids.insert(out.ids.end(), src.ids.begin(), src.ids.end());
        out.type_ids.insert(out.type_ids.end(), src.ids.size(), p.type_id);
      } else {
        out.ids.insert(out.ids.end(), p.special_ids.begin(), p.special_ids.end());
        out.type_ids.insert(out.type_ids.end(), p.special_ids.size(), p.type_id);
      }
    }
    return out;
  }

  static post_processor from_json(const std::optional<json_node>& node) {
    post_processor pp;
    if (node) pp.parse(*node);
    return pp;
  }

  // A plain template: the given ids before and after the sequence (pairs repeat it around B).
  static post_processor bos_eos(std::vector<std::int32_t> before, std::vector<std::int32_t> after) {
    post_processor pp;
    pp.m_active = true;
    auto add = [&](std::vector<piece>& t, int which, std::int32_t type) {
      if (!before.empty()) t.push_back({false, 0, before, type});
      t.push_back({true, which, {}, type});
      if (!after.empty()) t.push_back({false, 0, after, type});
    };
    add(pp.m_single, 0, 0);
    add(pp.m_pair, 0, 0);
    add(pp.m_pair, 1, 1);
    return pp;
  }

 private:
  void parse(const json_node& n) {
    const std::string type = n.at("type").string();
    if (type == "Sequence") {
      const json_node list = n.at("processors");
      for (std::size_t i = 0; i < list.size(); ++i) parse(list.at(i));
    } else if (type == "ByteLevel") {
      // Only trims offsets.
    } else if (type == "TemplateProcessing") {
      if (m_active) n.fail("only one TemplateProcessing/BertProcessing per tokenizer is supported");
      m_active = true;
      const json_node specials = n.at("special_tokens");
      m_single = parse_template(n.at("single"), specials);
      m_pair = parse_template(n.at("pair"), specials);
    } else if (type == "BertProcessing") {
      if (m_active) n.fail("only one TemplateProcessing/BertProcessing per tokenizer is supported");
      m_active = true;
      const std::int32_t cls = n.at("cls").at(1).id(), sep = n.at("sep").at(1).id();
      m_single = {{false, 0, {cls}, 0}, {true, 0, {}, 0}, {false, 0, {sep}, 0}};
      m_pair = {{false, 0, {cls}, 0},
                {true, 0, {}, 0},
                {false, 0, {sep}, 0},
                {true, 1, {}, 1},
                {false, 0, {sep}, 1}};
    } else {
      n.at("type").fail("unsupported post-processor type '" + type +
                        "' (supported: TemplateProcessing, BertProcessing, ByteLevel, Sequence)");
    }
  }

  static std::vector<piece> parse_template(const json_node& list, const json_node& specials) {
    std::vector<piece> out;
    for (std::size_t i = 0; i < list.size(); ++i) {
      const json_node item = list.at(i);
      if (auto seq = item.find("Sequence")) {
        const std::string id = seq->at("id").string();
        if (id != "A" && id != "B")
          seq->at("id").fail("expected sequence id A or B, got '" + id + "'");
        out.push_back(
            {true, id == "A" ? 0 : 1, {}, static_cast<std::int32_t>(seq->at("type_id").integer())});
      } else if (auto sp = item.find("SpecialToken")) {
        const std::string id = sp->at("id").string();
        auto entry = specials.find(id);
        if (!entry) sp->at("id").fail("special token '" + id + "' is not in special_tokens");
        const json_node ids = entry->at("ids");
        piece p{false, 0, {}, static_cast<std::int32_t>(sp->at("type_id").integer())};
        for (std::size_t k = 0; k < ids.size(); ++k) p.special_ids.push_back(ids.at(k).id());
        out.push_back(std::move(p));
      } else {
        item.fail("expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
      }
    }
    return out;
  }

  bool m_active = false;
  std::vector<piece> m_single, m_pair;
};

}  // namespace crossbatch::text
