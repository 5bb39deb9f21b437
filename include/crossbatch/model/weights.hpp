// Reads the weights of a model directory: one `<Hugging Face tensor name>.npy` per tensor.
// Every tensor is checked against the shape the config implies; errors name the file and shape.
#pragma once

#include <filesystem>
#include <string>

#include "crossbatch/core/error.hpp"
#include "crossbatch/core/npy.hpp"

namespace crossbatch {

class weight_dir {
 public:
  explicit weight_dir(std::string dir) : m_dir(std::move(dir)) {
    if (!std::filesystem::is_directory(m_dir))
      throw io_error(m_dir + ": model directory does not exist");
  }

  const std::string& path() const { return m_dir; }
  std::string file(const std::string& name) const { return m_dir + "/" + name + ".npy"; }
  bool has(const std::string& name) const { return std::filesystem::exists(file(name)); }

  // The tensor `name`, converted to T, which must have shape `expected`.
  template <class T>
  tensor<T> load(const std::string& name, const shape_t& expected) const {
    if (!has(name))
      throw format_error(m_dir + ": missing tensor '" + name + "' (expected " + file(name) +
                         " with shape " + to_string(expected) + ")");
    return load_npy<T>(file(name), expected);
  }

  // The first of several alternative names that exists (checkpoints differ in prefixes).
  std::string find(std::initializer_list<std::string> names) const {
    for (const auto& n : names)
      if (has(n)) return n;
    return *names.begin();
  }

 private:
  std::string m_dir;
};

}  // namespace crossbatch
