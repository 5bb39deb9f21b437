// An ARMT model: a decoder of the llama or gpt2 family (model/decoder.hpp), its ARMT config and
// its associative-memory parameters. A directory holds config.json + the base npy files (the
// model's own loader reads them) and armt_config.json + the ARMT npy files (tools/convert_armt.py
// writes both from a trained checkpoint); the ARMT part may also live in a directory of its own.
#pragma once

#include <filesystem>
#include <string>

#include "crossbatch/model/decoder.hpp"
#include "crossbatch/recurrent/armt_config.hpp"
#include "crossbatch/recurrent/armt_weights.hpp"

namespace crossbatch {

template <class T, class D = cpu>
struct armt_model {
  decoder_model<T, D> base;
  armt_config armt;
  armt_weights<T, D> memory;

  // Loads the base model from `dir` and the ARMT config + parameters from `armt_dir` (default:
  // the same directory).
  static armt_model load(const std::string& dir, const std::string& armt_dir = "") {
    armt_model m;
    m.base = decoder_model<T, D>::load(dir);
    const std::string adir = armt_dir.empty() ? dir : armt_dir;
    const std::string cfg = adir + "/armt_config.json";
    if (!std::filesystem::exists(cfg))
      throw io_error(adir + ": no armt_config.json (an ARMT model directory holds one next to " +
                     "config.json; tools/convert_armt.py writes it)");
    m.armt = load_armt_config(cfg, m.base.config);
    m.memory = armt_weights<T, D>::load(adir, m.armt, m.base.config);
    return m;
  }

  const model_config& config() const { return base.config; }
  int layers() const { return base.config.num_layers; }
};

}  // namespace crossbatch
