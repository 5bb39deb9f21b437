// libFuzzer target: the npy reader from memory (parse_npy) and its conversions to tensors of every
// element type. Any input must parse or throw a crossbatch::error; any other exception escapes and
// crashes the fuzzer (std::out_of_range, std::invalid_argument, std::bad_alloc, length_error...).
// Invariants of an accepted input, checked with abort(): the data is exactly numel x item size
// bytes, one byte more or less is rejected, and a '<f4' array converts to float bit for bit.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "crossbatch/core/npy.hpp"

namespace {

using namespace crossbatch;

template <class T>
void convert(const npy_array& a) {
  try {
    const tensor<T> t = npy_to_tensor<T>(a, "fuzz.npy");
    if (t.shape() != a.shape) std::abort();
    // Read every element (UBSan checks bool loads: a '|b1' byte of 2 must not become a bool 2).
    std::size_t nonzero = 0;
    for (index_t i = 0; i < t.size(); ++i) nonzero += t.data()[i] != T(0);
    if (nonzero > std::size_t(t.size())) std::abort();
  } catch (const format_error&) {
    // A float array as an integer tensor or vice versa: a typed rejection.
  }
}

bool rejected(std::string_view bytes) {
  try {
    (void)parse_npy(bytes, "fuzz.npy");
    return false;
  } catch (const format_error&) {
    return true;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  npy_array a;
  try {
    a = parse_npy(input, "fuzz.npy");
  } catch (const crossbatch::error&) {
    return 0;  // rejected with a typed error: fine
  }
  const std::size_t item = detail::npy_item_size(a.descr, "fuzz.npy");
  if (a.bytes.size() != item * static_cast<std::size_t>(numel(a.shape))) std::abort();
  // Trailing or missing bytes are never accepted.
  std::string longer(input);
  longer += '\0';
  if (!rejected(longer)) std::abort();
  if (!a.bytes.empty() && !rejected(input.substr(0, size - 1))) std::abort();
  convert<float>(a);
  convert<half>(a);
  convert<bfloat16>(a);
  convert<std::int32_t>(a);
  convert<std::int64_t>(a);
  convert<bool>(a);
  if (a.descr == "<f4") {
    const tensor<float> t = npy_to_tensor<float>(a, "fuzz.npy");
    if (!a.bytes.empty() && std::memcmp(t.data(), a.bytes.data(), a.bytes.size()) != 0)
      std::abort();
  }
  return 0;
}
