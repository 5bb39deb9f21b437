// The ARMT configuration (armt_config.json next to the model's config.json, written by
// tools/convert_armt.py): segment size S, memory tokens M, d_mem, the DPFP order nu, whether the
// write uses the gamma correction, and where the memory tokens sit in position space.
//   {"segment_size": 1024, "num_mem_tokens": 128, "d_mem": 64, "nu": 3, "correction": true,
//    "wrap_pos": false, "layers_attr": "model.layers"}
// wrap_pos (GPT-2, the reference's default there): memory row j uses position
// memory_position_start + j of an extended position table (memory_cell.model.transformer.wpe);
// otherwise memory rows continue the segment's text positions (len + j).
#pragma once

#include <string>

#include "crossbatch/model/config.hpp"
#include "crossbatch/model/json_field.hpp"

namespace crossbatch {

struct armt_config {
  int segment_size = 0;    // S: text tokens per segment
  int num_mem_tokens = 0;  // M: memory tokens appended to every segment
  int d_mem = 64;          // width of the memory query/key projections
  int nu = 3;              // DPFP order
  bool correction = true;  // gamma = clip(1 - den / |k|^2, 0, 1) on z updates after segment 0
  bool wrap_pos = false;   // memory rows at positions memory_position_start + j (GPT-2)
  int memory_position_start = 0;
  std::string layers_attr;  // state-dict prefix of the layers: model.layers or transformer.h

  int d_key() const { return 2 * nu * d_mem; }
  int rows() const { return segment_size + num_mem_tokens; }  // T of a full segment
  // Number of segments of a sequence of n tokens (left-aligned chunks, the last may be short).
  int segments(int n) const { return (n + segment_size - 1) / segment_size; }
};

// Parses and checks an ARMT config against the base model's; `where` prefixes every error.
inline armt_config parse_armt_config(const json& j, const model_config& base,
                                     const std::string& where) {
  if (!j.is_object()) throw config_error(where + ": ARMT config must be a JSON object");
  if (!base.is_decoder())
    throw config_error(where + ": ARMT needs a decoder model, not '" + base.model_type + "'");
  armt_config c;
  c.segment_size = required_field<int>(j, "segment_size", where);
  c.num_mem_tokens = required_field<int>(j, "num_mem_tokens", where);
  c.d_mem = optional_field<int>(j, "d_mem", where).value_or(64);
  c.nu = optional_field<int>(j, "nu", where).value_or(3);
  c.correction = optional_field<bool>(j, "correction", where).value_or(true);
  c.wrap_pos = optional_field<bool>(j, "wrap_pos", where).value_or(base.kind == family::gpt2);
  c.layers_attr = optional_field<std::string>(j, "layers_attr", where)
                      .value_or(base.kind == family::gpt2 ? "transformer.h" : "model.layers");
  detail::require_positive(c.segment_size, "segment_size", where);
  detail::require_positive(c.num_mem_tokens, "num_mem_tokens", where);
  detail::require_positive(c.d_mem, "d_mem", where);
  detail::require_positive(c.nu, "nu", where);
  if (c.nu > 2 * c.d_mem)
    throw config_error(where + ": nu (" + std::to_string(c.nu) + ") must be at most 2 * d_mem");
  if (c.wrap_pos) {
    if (base.kind != family::gpt2)
      throw config_error(where + ": wrap_pos needs learned positions (gpt2), not '" +
                         base.model_type + "'");
    c.memory_position_start =
        optional_field<int>(j, "memory_position_start", where).value_or(base.max_positions);
    if (c.memory_position_start < 0)
      throw config_error(where + ": field 'memory_position_start' must be >= 0");
  } else if (base.kind == family::gpt2 && c.rows() > base.max_positions) {
    throw config_error(where + ": segment_size + num_mem_tokens (" + std::to_string(c.rows()) +
                       ") exceeds the model's " + std::to_string(base.max_positions) +
                       " positions");
  }
  if (base.kind == family::gpt2 && c.segment_size > base.max_positions)
    throw config_error(where + ": segment_size (" + std::to_string(c.segment_size) +
                       ") exceeds the model's " + std::to_string(base.max_positions) +
                       " positions");
  return c;
}

inline armt_config load_armt_config(const std::string& path, const model_config& base) {
  return parse_armt_config(read_json_file(path), base, path);
}

}  // namespace crossbatch
