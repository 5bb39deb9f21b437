// libFuzzer target: tokenizer.json loading. Any input must load or throw a crossbatch::error; a
// loaded tokenizer must encode and decode a few strings without crashing.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "crossbatch/text/batch.hpp"
#include "crossbatch/text/decode_stream.hpp"
#include "crossbatch/text/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace crossbatch::text;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  try {
    const tokenizer tok = tokenizer::from_json_text(input, "fuzz.json");
    for (std::string_view s :
         {"Hello world", "", "  a\tb\n1234 <s>[CLS] \xC3\xA9\xE4\xBD\xA0 \xF0\x9F\x99\x82",
          "\xFF\xC3"}) {
      const auto ids = tok.encode(s);
      (void)tok.decode(ids);
      (void)tok.decode(ids, false);
      (void)tok.encode_pair(s, "second");
      decode_stream ds(tok);
      for (auto id : ids) (void)ds.step(id);
      (void)ds.flush();
    }
  } catch (const crossbatch::error&) {
    // Rejected with a typed error: fine.
  }
  return 0;
}
