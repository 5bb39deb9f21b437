// Reading a data set by the reference's --dataset name: squad, hotpot, quac, drop, quality,
// cmb (with --cmb-subset CMB-Clin | random | subdomain | context), triviaqa, triviaqa_sim.
#pragma once

#include <string>
#include <vector>

#include "crossbatch/pardec/datasets/cmb.hpp"
#include "crossbatch/pardec/datasets/drop.hpp"
#include "crossbatch/pardec/datasets/hotpot.hpp"
#include "crossbatch/pardec/datasets/quality.hpp"
#include "crossbatch/pardec/datasets/squad.hpp"
#include "crossbatch/pardec/datasets/triviaqa.hpp"

namespace crossbatch::pardec {

struct dataset_request {
  std::string name;  // --dataset
  std::string path;  // the file
  grouping_options grouping;
  std::string cmb_subset = "CMB-Clin";  // --cmb-subset
  bool quality_hard_only = false;       // --quality-hard-only
  double similarity_threshold = 0.5;    // --similarity-threshold (triviaqa_sim)
  embed_fn embed;                       // triviaqa_sim's sentence embeddings
};

inline std::vector<question_group> read_dataset(const dataset_request& r) {
  const auto& g = r.grouping;
  if (r.name == "squad") return read_squad_groups(r.path, g);
  if (r.name == "hotpot") return read_hotpot_groups(r.path, g);
  if (r.name == "quac") return read_quac_groups(r.path, g);
  if (r.name == "drop") return read_drop_groups(r.path, g);
  if (r.name == "quality") return read_quality_groups(r.path, g, r.quality_hard_only);
  if (r.name == "triviaqa") return read_triviaqa_groups(r.path, g);
  if (r.name == "triviaqa_sim") {
    require(bool(r.embed), "triviaqa_sim: needs a sentence-embedding model (--embedding-model)");
    return read_triviaqa_sim_groups(r.path, g, r.embed, r.similarity_threshold);
  }
  if (r.name == "cmb") {
    if (r.cmb_subset == "CMB-Clin") return read_cmb_clin_groups(r.path, g);
    return read_cmb_exam_groups(r.path, parse_cmb_grouping(r.cmb_subset), g);
  }
  throw value_error("--dataset '" + r.name +
                    "': expected squad, hotpot, quac, drop, quality, cmb, triviaqa or triviaqa_sim");
}

}  // namespace crossbatch::pardec
