// The prompts of the parallel-decoding strategies as chat messages (the model's chat template
// renders them, with a generation prompt). Structure as the reference's prompts.py:
//  - every prompt asks for `<answer>text</answer>`; extractive data adds "extract it from the
//    passage", SQuAD-style data allows `unknown`;
//  - batch / collab_*: one conversation per question, system = instructions + background,
//    user = "Question (Qk): ..." (multi-context: the question's own context in the user turn);
//  - dependency prompt: the question preceded by its parents' answers ("Qj - text / Answer: ...");
//  - all_in_one: the background and every question as Q1..Qn, answered one line each
//    `Qk: <answer>text</answer>` (multi-context: one "Context (Qk)" block per question);
//  - sequential: one chat growing turn by turn with the model's full replies;
//  - collab_llm's dependency request: the questions alone, a JSON object of edges in a fence.
#pragma once

#include <string>
#include <vector>

#include "crossbatch/pardec/question_group.hpp"
#include "crossbatch/text/chat_template.hpp"

namespace crossbatch::pardec {

using text::chat_message;

struct prompt_style {
  answer_style style = answer_style::extractive;
  bool allow_unknown = false;  // SQuAD (v2.0 has unanswerable questions)
};

inline std::string question_label(std::size_t index) { return "Q" + std::to_string(index + 1); }

// The question as shown, with its options for multiple choice ("A. text" lines).
inline std::string question_text(const group_question& q) {
  std::string s = q.text;
  for (const auto& o : q.options) s += "\n" + o.letter + ". " + o.text;
  return s;
}

// The instructions of the system message (without the background).
inline std::string instructions(const prompt_style& p, bool many) {
  std::string s = many ? "You are a helpful assistant. Answer each question."
                       : "You are a helpful assistant. Answer the question.";
  switch (p.style) {
    case answer_style::extractive:
      s += " Extract the answer from the passage: the shortest span of it that answers the question.";
      break;
    case answer_style::short_answer:
      s += " Give a short answer: a number, a name or a short phrase.";
      break;
    case answer_style::multiple_choice:
      s += " Choose one option and give its letter only.";
      break;
    case answer_style::long_form:
      s += " Answer in complete sentences.";
      break;
  }
  if (p.allow_unknown) s += " If the passage does not contain the answer, answer unknown.";
  s += many ? " Wrap each answer in <answer></answer>." : " Reply only with <answer>your answer</answer>.";
  return s;
}

inline std::string with_background(std::string system, const std::string& background) {
  if (!background.empty()) system += "\n\nBackground:\n" + background;
  return system;
}

// A parent's answer shown to a dependent question.
struct known_answer {
  std::size_t index = 0;  // the parent's position in the group
  std::string question;   // its text
  std::string answer;     // its extracted answer
};

// The user turn of question k: its own context (multi-context), the known answers of its parents,
// then "Question (Qk): ...".
inline std::string question_turn(const question_group& g, std::size_t k,
                                 const std::vector<known_answer>& parents = {}) {
  const auto& q = g.questions.at(k);
  std::string s;
  if (!q.context.empty()) s += "Context (" + question_label(k) + "):\n" + q.context + "\n\n";
  if (!parents.empty()) {
    s += "Answers to related questions:\n";
    for (const auto& p : parents)
      s += question_label(p.index) + " - " + p.question + "\nAnswer: <answer>" + p.answer + "</answer>\n";
    s += "\n";
  }
  s += "Question (" + question_label(k) + "): " + question_text(q);
  return s;
}

// batch and the collab strategies: one conversation for question k.
inline std::vector<chat_message> single_question_prompt(const question_group& g, std::size_t k,
                                                        const prompt_style& p,
                                                        const std::vector<known_answer>& parents = {}) {
  return {{"system", with_background(instructions(p, false), g.context)},
          {"user", question_turn(g, k, parents)}};
}

// all_in_one: every question in one prompt.
inline std::vector<chat_message> all_in_one_prompt(const question_group& g, const prompt_style& p) {
  std::string user;
  const bool multi = g.multi_context();
  if (multi)
    for (std::size_t k = 0; k < g.questions.size(); ++k)
      user += "Context (" + question_label(k) + "):\n" + g.questions[k].context + "\n\n";
  user += "Questions:\n";
  for (std::size_t k = 0; k < g.questions.size(); ++k)
    user += question_label(k) + ": " + question_text(g.questions[k]) + "\n";
  user += "\nAnswer every question on its own line, in order, as Qk: <answer>text</answer>.";
  return {{"system", with_background(instructions(p, true), g.context)}, {"user", user}};
}

// sequential: the conversation before question k, given the model's full replies to the earlier
// questions (replies.size() == k).
inline std::vector<chat_message> sequential_prompt(const question_group& g, std::size_t k,
                                                   const std::vector<std::string>& replies,
                                                   const prompt_style& p) {
  require(replies.size() == k, "sequential_prompt: one reply per earlier question needed");
  std::vector<chat_message> m{{"system", with_background(instructions(p, false), g.context)}};
  for (std::size_t i = 0; i <= k; ++i) {
    m.push_back({"user", question_turn(g, i)});
    if (i < k) m.push_back({"assistant", replies[i]});
  }
  return m;
}

// collab_llm: asks the model for the dependency edges between the questions (no background).
inline std::vector<chat_message> dependency_request_prompt(const question_group& g) {
  std::string user = "Questions:\n";
  for (std::size_t k = 0; k < g.questions.size(); ++k)
    user += question_label(k) + ": " + g.questions[k].text + "\n";
  user +=
      "\nWhich questions need the answer of another question to be answered? Reply with a JSON "
      "object {\"edges\": [{\"Q3\": \"Q1\"}, ...]} where {\"Qi\": \"Qj\"} means Qi needs the answer "
      "of Qj. List the most important edges first, never form a cycle, and use {\"edges\": []} "
      "when the questions are independent. Put the JSON inside a ```json fence.";
  return {{"system", "You analyse dependencies between questions."}, {"user", user}};
}

}  // namespace crossbatch::pardec
