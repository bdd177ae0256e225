// Per-layer activation statistics for the GradientMonitor: one pass over a layer's output.
//
// Sums accumulate in double over 8 fixed lanes combined in a fixed order (the same bits on every
// run); the counts are exact. Single-threaded: a monitored layer's output is small and the
// monitor calls this once per layer per recorded step.
#include <cmath>
#include <vector>

#include "deepgrad/kernels.h"

namespace dg::cpu {

template <class T>
void act_stats(double* sums, index_t* counts, const T* z, const T* y, index_t n, index_t c,
               int saturation, T center, T bound, bool dead) {
  // z (N, C), y (N, C) -> sums (2), counts (2); see kernels.h
  const index_t size = n * c;
  double s[8] = {0, 0, 0, 0, 0, 0, 0, 0}, q[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  index_t i = 0;
  for (; i + 8 <= size; i += 8)
    for (int k = 0; k < 8; ++k) {
      const double v = static_cast<double>(z[i + k]);
      s[k] += v;
      q[k] += v * v;
    }
  double sum = 0, sq = 0;
  for (int k = 0; k < 8; ++k) {
    sum += s[k];
    sq += q[k];
  }
  for (; i < size; ++i) {
    const double v = static_cast<double>(z[i]);
    sum += v;
    sq += v * v;
  }
  sums[0] = sum;
  sums[1] = sq;
  counts[0] = counts[1] = 0;
  if (saturation) {
    const T* a = saturation == 1 ? y : z;
    index_t cnt = 0;
    for (index_t j = 0; j < size; ++j) cnt += std::abs(a[j] - center) > bound;  // NaN: no
    counts[0] = cnt;
  }
  if (dead) {
    std::vector<unsigned char> alive(static_cast<size_t>(c), 0);
    for (index_t r = 0; r < n; ++r) {
      const T* row = y + r * c;
      for (index_t j = 0; j < c; ++j) alive[j] |= static_cast<unsigned char>(row[j] > T(0));
    }
    index_t cnt = 0;
    for (index_t j = 0; j < c; ++j) cnt += alive[j];
    counts[1] = cnt;
  }
}

template void act_stats<float>(double*, index_t*, const float*, const float*, index_t, index_t, int,
                               float, float, bool);
template void act_stats<double>(double*, index_t*, const double*, const double*, index_t, index_t,
                                int, double, double, bool);

}  // namespace dg::cpu
