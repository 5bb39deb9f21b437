// Typed errors: every failure names what is wrong and where (file, field, tensor).
// Callers catch crossbatch::error or a subclass; nothing in the library aborts on bad input.
#pragma once

#include <stdexcept>
#include <string>

namespace crossbatch {

// Base of every error the library throws.
struct error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A file could not be opened, read or written.
struct io_error : error {
  using error::error;
};
// A file's bytes do not follow its format (npy header, JSON, tokenizer.json, GGUF...).
struct format_error : error {
  using error::error;
};
// A tensor's shape does not match what the model or op expects.
struct shape_error : error {
  using error::error;
};
// A config field is missing, of the wrong type, or has an unsupported value.
struct config_error : error {
  using error::error;
};
// An argument is out of its valid range (prompt longer than the context, bad sampler setting).
struct value_error : error {
  using error::error;
};
// A device call failed (CUDA runtime, cuBLASLt).
struct device_error : error {
  using error::error;
};

// Throws E(message) when cond is false; keeps call sites one line long.
template <class E = value_error>
inline void require(bool cond, const std::string& message) {
  if (!cond) throw E(message);
}

}  // namespace crossbatch
