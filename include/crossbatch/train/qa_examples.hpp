// Training examples of the four reference methods (train_cross_batch): question groups of a data
// set (pardec/dataset.hpp; SQuAD-format files with context_parts / visible_part give every
// question only its visible part, as multi-context groups), each question's prompt exactly as
// compare_strategies' `batch` strategy builds it (pardec/prompts.hpp, the model's chat template
// with a generation prompt) and its teacher-forced target `<answer>{gold}</answer>` followed by
// the end-of-turn token.
#pragma once

#include <string>
#include <vector>

#include "crossbatch/eval/squad.hpp"
#include "crossbatch/pardec/dataset.hpp"
#include "crossbatch/pardec/prompts.hpp"
#include "crossbatch/text/chat_template.hpp"
#include "crossbatch/text/tokenizer.hpp"

namespace crossbatch {

// One question of a group, tokenised.
struct qa_example {
  std::string id;
  int group = 0;             // index of its group: only questions of one group mix
  std::vector<int> prompt;   // chat-template prompt ids (generation prompt included)
  std::vector<int> target;   // ids of "<answer>{gold}</answer>" + end-of-turn (>= 2 tokens)
};

// The groups of a data file. For "squad" files whose paragraphs carry context_parts and whose
// questions carry visible_part (tools/make_stories.py's split-context stories), each question gets
// its visible part as its own context (multi-context mode); pardec's reader would give every
// question the whole story. Other files and data sets: pardec::read_dataset.
inline std::vector<pardec::question_group> read_training_groups(const pardec::dataset_request& r) {
  if (r.name == "squad") {
    const auto ds = read_squad(r.path);
    bool split = false;
    for (const auto* p : ds.groups())
      for (const auto& q : p->qas) split = split || (q.visible_part && !p->context_parts.empty());
    if (split) {
      std::vector<pardec::question_group> contexts;
      for (const auto* p : ds.groups()) {
        pardec::question_group g;
        g.id = p->path;
        g.style = pardec::answer_style::extractive;
        for (const auto& q : p->qas) {
          pardec::group_question gq;
          gq.id = q.id;
          gq.text = q.question;
          gq.answers = q.answer_texts();
          if (gq.answers.empty())
            throw format_error(r.path + ": " + q.path + ": no answers (split-context files are SQuAD v1.1)");
          if (!q.visible_part)
            throw format_error(r.path + ": " + q.path + ": no visible_part in a split-context file");
          gq.context = p->context_parts.at(std::size_t(*q.visible_part)).text;
          gq.source = r.path + ": " + q.path;
          g.questions.push_back(std::move(gq));
        }
        contexts.push_back(std::move(g));
      }
      return pardec::sample_context_groups(std::move(contexts), r.grouping);
    }
  }
  return pardec::read_dataset(r);
}

// Tokenises prompts and targets the way compare_strategies' batch strategy prompts the model.
class qa_tokenizer {
 public:
  qa_tokenizer(text::tokenizer tok, text::chat_template tmpl, bool allow_unknown)
      : m_tok(std::move(tok)), m_tmpl(std::move(tmpl)), m_allow_unknown(allow_unknown) {
    for (const char* name : {"<|im_end|>", "<|eot_id|>", "<|endoftext|>", "</s>"})
      if (auto id = m_tok.token_to_id(name)) {
        m_end = *id;
        break;
      }
    require(m_end >= 0, "qa_tokenizer: no end-of-turn token (<|im_end|>, <|eot_id|>, <|endoftext|>, </s>)");
  }
  static qa_tokenizer from_model_dir(const std::string& dir, bool allow_unknown) {
    return {text::tokenizer::from_file(dir + "/tokenizer.json"),
            text::chat_template::from_tokenizer_config(dir), allow_unknown};
  }

  int end_of_turn() const { return m_end; }
  const text::tokenizer& tokenizer() const { return m_tok; }
  const text::chat_template& chat_template() const { return m_tmpl; }
  pardec::prompt_style style(const pardec::question_group& g) const { return {g.style, m_allow_unknown}; }

  std::vector<int> prompt(const pardec::question_group& g, std::size_t k) const {
    return ids(m_tmpl.render(pardec::single_question_prompt(g, k, style(g)), true));
  }
  // "<answer>{gold}</answer>" + end-of-turn, gold = the first gold answer.
  std::vector<int> target(const pardec::group_question& q) const {
    require(!q.answers.empty(), "qa_tokenizer: question " + q.id + " has no gold answer");
    auto t = ids("<answer>" + q.answers.front() + "</answer>");
    t.push_back(m_end);
    return t;
  }

  // Every question of every group; group ids are the groups' positions.
  std::vector<qa_example> examples(const std::vector<pardec::question_group>& groups) const {
    std::vector<qa_example> out;
    for (std::size_t gi = 0; gi < groups.size(); ++gi)
      for (std::size_t k = 0; k < groups[gi].questions.size(); ++k)
        out.push_back({groups[gi].questions[k].id, int(gi), prompt(groups[gi], k),
                       target(groups[gi].questions[k])});
    return out;
  }

 private:
  std::vector<int> ids(const std::string& s) const {
    const auto v = m_tok.encode(s, {.add_special_tokens = false});
    return {v.begin(), v.end()};
  }
  text::tokenizer m_tok;
  text::chat_template m_tmpl;
  bool m_allow_unknown = false;
  int m_end = -1;
};

}  // namespace crossbatch
