// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011): the value drawn for
// (seed, stream, counter) is a pure function of those three, so a sequence's samples do not depend
// on its batch companions, on thread scheduling, or on the device (the CUDA kernels call the
// same function). Callers use stream = sequence id and counter = decode step.
#pragma once

#include <array>
#include <cstdint>

#include "crossbatch/core/host_device.hpp"

namespace crossbatch {

struct philox4x32 {
  using block = std::array<std::uint32_t, 4>;

  CROSSBATCH_HD static inline void mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi,
                                           std::uint32_t& lo) {
    const std::uint64_t p = static_cast<std::uint64_t>(a) * b;
    hi = static_cast<std::uint32_t>(p >> 32);
    lo = static_cast<std::uint32_t>(p);
  }

  // Ten rounds of Philox4x32 on counter c with key k; returns four 32-bit random words.
  CROSSBATCH_HD static inline void generate(std::uint32_t c[4], std::uint32_t k0,
                                            std::uint32_t k1) {
    for (int round = 0; round < 10; ++round) {
      std::uint32_t hi0, lo0, hi1, lo1;
      mulhilo(0xD2511F53u, c[0], hi0, lo0);
      mulhilo(0xCD9E8D57u, c[2], hi1, lo1);
      const std::uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
      c[0] = n0;
      c[1] = lo1;
      c[2] = n2;
      c[3] = lo0;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
  }
};

// Seeded generator: uniform(stream, counter, lane) in [0, 1) with 24 bits of resolution.
struct counter_rng {
  std::uint64_t seed = 0;

  CROSSBATCH_HD std::uint32_t bits(std::uint64_t stream, std::uint64_t counter,
                                   unsigned lane = 0) const {
    std::uint32_t c[4] = {
        static_cast<std::uint32_t>(counter), static_cast<std::uint32_t>(counter >> 32),
        static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)};
    philox4x32::generate(c, static_cast<std::uint32_t>(seed),
                         static_cast<std::uint32_t>(seed >> 32));
    return c[lane & 3];
  }
  CROSSBATCH_HD float uniform(std::uint64_t stream, std::uint64_t counter,
                              unsigned lane = 0) const {
    return static_cast<float>(bits(stream, counter, lane) >> 8) * (1.0f / 16777216.0f);
  }
};

}  // namespace crossbatch
