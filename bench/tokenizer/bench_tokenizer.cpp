// Tokenizer throughput: encodes a text file line by line on one thread and prints, per tokenizer,
// "name MB/s tokens checksum": MB/s from the best of three passes after a warm-up pass, in process
// CPU time (a shared machine's load then matters less); checksum is FNV-1a over all ids, so that
// the Python side (hf_tokenizer_bench.py) can confirm the ids are the same.
//   bench_tokenizer TEXT_FILE NAME=tokenizer.json [NAME=tokenizer.json ...]
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "crossbatch/text/tokenizer.hpp"

namespace {

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s TEXT_FILE NAME=tokenizer.json ...\n", argv[0]);
    return 2;
  }
  std::vector<std::string> lines;
  std::size_t bytes = 0;
  {
    std::ifstream f(argv[1], std::ios::binary);
    if (!f) {
      std::fprintf(stderr, "cannot read %s\n", argv[1]);
      return 1;
    }
    for (std::string line; std::getline(f, line);) {
      bytes += line.size() + 1;
      lines.push_back(std::move(line));
    }
  }
  for (int a = 2; a < argc; ++a) {
    const std::string spec = argv[a];
    const auto eq = spec.find('=');
    const std::string name = spec.substr(0, eq), path = spec.substr(eq + 1);
    const auto tok = crossbatch::text::tokenizer::from_file(path);
    std::size_t tokens = 0;
    std::uint64_t checksum = 0;
    double best = 1e30;
    for (int pass = 0; pass < 4; ++pass) {  // pass 0 warms the caches, as on the Python side
      std::size_t n = 0;
      std::uint64_t h = 0xcbf29ce484222325ull;
      const double t0 = cpu_seconds();
      for (const auto& l : lines) {
        const auto ids = tok.encode(l);
        n += ids.size();
        for (auto id : ids) h = (h ^ static_cast<std::uint32_t>(id)) * 0x100000001b3ull;
        h = (h ^ 0xFFFFFFFFull) * 0x100000001b3ull;  // line separator
      }
      const double s = cpu_seconds() - t0;
      if (pass > 0) best = std::min(best, s);
      tokens = n;
      checksum = h;
    }
    std::printf("%s %.2f %zu %016llx\n", name.c_str(), static_cast<double>(bytes) / 1e6 / best,
                tokens, static_cast<unsigned long long>(checksum));
  }
  return 0;
}
