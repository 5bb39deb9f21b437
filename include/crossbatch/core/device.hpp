// Device tags and their memory traits. `cpu` is always available; `cuda` is declared here
// and given its traits by crossbatch/cuda.hpp, so CPU-only programs never see CUDA headers.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

namespace crossbatch {

struct cpu {
  static constexpr const char* name = "cpu";
};
struct cuda {
  static constexpr const char* name = "cuda";
};

template <class D>
struct device_traits;

template <>
struct device_traits<cpu> {
  static void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    // 64-byte alignment keeps Eigen's vectorised loads aligned.
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return p;
  }
  static void free(void* p) noexcept { std::free(p); }
  static void copy(void* dst, const void* src, std::size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  static void upload(void* dst, const void* src, std::size_t bytes) { copy(dst, src, bytes); }
  static void download(void* dst, const void* src, std::size_t bytes) { copy(dst, src, bytes); }
};

}  // namespace crossbatch
