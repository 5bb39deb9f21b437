// libFuzzer target: encoding arbitrary bytes (invalid UTF-8 included) with the real and test
// tokenizers. Checks, besides memory safety: decode(encode(x)) == x with invalid UTF-8 replaced,
// for the lossless byte-level tokenizers; streamed decoding equals decoding at once.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "crossbatch/text/decode_stream.hpp"
#include "crossbatch/text/tokenizer.hpp"

#ifndef CROSSBATCH_TEST_DATA
#define CROSSBATCH_TEST_DATA "tests/data"
#endif

namespace {

struct loaded {
  std::vector<crossbatch::text::tokenizer> all;
  std::vector<bool> lossless;  // byte-level, no normalizer, every byte in the vocabulary
};

const loaded& tokenizers() {
  static const loaded l = [] {
    loaded out;
    const std::string dir = std::string(CROSSBATCH_TEST_DATA) + "/text/";
    for (const char* name : {"smollm2", "minilm", "gpt2", "llama3", "qwen2", "flags"}) {
      out.all.push_back(crossbatch::text::tokenizer::from_file(dir + name + "/tokenizer.json"));
      out.lossless.push_back(std::string_view(name) == "gpt2" ||
                             std::string_view(name) == "llama3");
    }
    return out;
  }();
  return l;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace crossbatch::text;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const loaded& l = tokenizers();
  const std::string repaired = repair_utf8(input);
  for (std::size_t k = 0; k < l.all.size(); ++k) {
    const tokenizer& tok = l.all[k];
    const auto ids = tok.encode(input);
    if (tok.encode(repaired) != ids)
      std::abort();  // the invalid UTF-8 policy: replace, then encode
    const std::string text = tok.decode(ids);
    if (!is_valid_utf8(text)) std::abort();
    if (l.lossless[k]) {
      const auto plain =
          tok.encode(input, {.add_special_tokens = false, .split_special_tokens = true});
      if (tok.decode(plain, false) != repaired) std::abort();
    }
    decode_stream ds(tok);
    std::string streamed;
    for (auto id : ids) {
      const std::string chunk = ds.step(id);
      if (!is_valid_utf8(chunk)) std::abort();
      streamed += chunk;
    }
    streamed += ds.flush();
    if (streamed != text) std::abort();
    (void)tok.encode_pair(input, input);
  }
  return 0;
}
