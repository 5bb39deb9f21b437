// The synthetic stories of tools/make_stories.py (a committed sample under tests/data/eval/stories)
// read back through the SQuAD reader: valid offsets, paraphrases, dependencies within a group,
// and split contexts whose answers lie in a sibling's part, not in the question's own.
#define BOOST_TEST_MODULE eval_stories
#include <set>

#include "crossbatch/eval/squad.hpp"
#include "crossbatch/eval/squad_eval.hpp"
#include "support.hpp"

using namespace crossbatch;

namespace {

std::string story_file(const std::string& name) {
  return cbtest::data_dir() + "/eval/stories/" + name;
}

// Whether `word` occurs in `text` with no word character (Python's \w) right before or after.
bool contains_word(const std::string& text, const std::string& word) {
  for (std::size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) {
    const auto before = unicode::decode_utf8(text.substr(0, at));
    const auto after = unicode::decode_utf8(text.substr(at + word.size()));
    if ((before.empty() || !unicode::is_word(before.back())) &&
        (after.empty() || !unicode::is_word(after.front())))
      return true;
  }
  return false;
}

// Checks shared by both variants; returns the number of questions.
std::size_t check_common(const squad_dataset& ds) {
  BOOST_TEST(ds.version == "1.1");
  BOOST_TEST(ds.mismatches.empty(), ds.source << ": " << ds.mismatches.size() << " bad offsets");
  BOOST_TEST(ds.extra["generator"]["tool"] == "tools/make_stories.py");
  for (const auto* g : ds.groups()) {
    BOOST_TEST(g->qas.size() >= 3u);
    std::set<std::string> earlier;
    for (const auto& q : g->qas) {
      BOOST_TEST_CONTEXT(q.id) {
        BOOST_REQUIRE(q.answers.size() == 1u);
        const auto& a = q.answers[0];
        BOOST_TEST(a.offset_ok);
        BOOST_TEST(g->context.substr(a.byte_start, a.byte_end - a.byte_start) == a.text);
        BOOST_TEST(q.paraphrases.size() >= 3u);
        std::set<std::string> wordings(q.paraphrases.begin(), q.paraphrases.end());
        wordings.insert(q.question);
        BOOST_TEST(wordings.size() == q.paraphrases.size() + 1, "paraphrases repeat");
        BOOST_TEST(q.extra.contains("question_type"));
        // Dependencies name questions of the same group that come earlier.
        for (const auto& d : q.depends_on) {
          BOOST_TEST(d != q.id);
          BOOST_TEST(g->find(d) != nullptr, "depends_on " << d << " not in the group");
          BOOST_TEST(earlier.count(d) == 1u, "depends_on " << d << " comes later");
        }
      }
      earlier.insert(q.id);
    }
  }
  // The gold answers score 100 as predictions, through the same evaluation as model outputs.
  prediction_map gold;
  for (const auto* g : ds.groups())
    for (const auto& q : g->qas) gold[q.id] = q.answers[0].text;
  const auto ev = evaluate_squad(ds, gold);
  BOOST_TEST(ev.exact_match == 100.0);
  BOOST_TEST(ev.f1 == 100.0);
  return ds.question_count();
}

}  // namespace

BOOST_AUTO_TEST_CASE(full_stories) {
  std::set<std::string> contexts;
  for (const char* name : {"stories_train.json", "stories_test.json"}) {
    const auto ds = read_squad(story_file(name));
    BOOST_TEST_CONTEXT(name) {
      BOOST_TEST(check_common(ds) >= 20u);
      std::size_t dependent = 0;
      for (const auto* g : ds.groups()) {
        BOOST_TEST(g->context_parts.empty());
        // Each story carries one chain: an anchor question and questions that need its answer.
        bool chain = false;
        for (const auto& q : g->qas) chain = chain || !q.depends_on.empty();
        BOOST_TEST(chain, g->path << " has no dependent question");
        for (const auto& q : g->qas) dependent += !q.depends_on.empty();
        BOOST_TEST(contexts.insert(g->context).second, "story repeats: " << g->context);
      }
      BOOST_TEST(dependent >= ds.groups().size());
    }
  }
}

BOOST_AUTO_TEST_CASE(split_context_stories) {
  std::set<std::string> contexts;
  for (const char* name : {"stories_split_train.json", "stories_split_test.json"}) {
    const auto ds = read_squad(story_file(name));
    BOOST_TEST_CONTEXT(name) {
      BOOST_TEST(check_common(ds) >= 20u);
      for (const auto* g : ds.groups()) {
        BOOST_TEST_CONTEXT(g->path) {
          BOOST_TEST(contexts.insert(g->context).second, "story repeats");
          const auto& parts = g->context_parts;
          BOOST_REQUIRE(parts.size() >= 2u);
          // The parts tile the context, joined by single spaces; the context stays the full story.
          std::string joined;
          for (std::size_t k = 0; k < parts.size(); ++k) {
            BOOST_TEST(parts[k].offset_ok);
            joined += (k ? " " : "") + parts[k].text;
          }
          BOOST_TEST(joined == g->context);
          std::set<int> seen_by;
          for (const auto& q : g->qas) {
            BOOST_REQUIRE(q.visible_part.has_value());
            seen_by.insert(*q.visible_part);
          }
          for (const auto& q : g->qas) {
            BOOST_TEST_CONTEXT(q.id) {
              const auto& a = q.answers[0];
              const int own = *q.visible_part;
              int home = -1;  // the part holding the answer span
              for (std::size_t k = 0; k < parts.size(); ++k)
                if (parts[k].byte_start <= a.byte_start && a.byte_end <= parts[k].byte_end)
                  home = static_cast<int>(k);
              BOOST_REQUIRE(home >= 0);
              BOOST_TEST(home != own, "the answer lies in the question's own part");
              BOOST_TEST(q.extra["answer_part"] == home);
              // Some sibling question sees the part with the answer.
              bool sibling_sees = false;
              for (const auto& s : g->qas)
                sibling_sees = sibling_sees || (&s != &q && s.visible_part == home);
              BOOST_TEST(sibling_sees);
              BOOST_TEST(!contains_word(parts[own].text, a.text),
                         "'" << a.text << "' can be read in the question's own part");
            }
          }
        }
      }
    }
  }
}
