// Kernels for the GradientMonitor: per-layer activation statistics in one pass over a layer's
// output, and the per-parameter norms of a step in one pass over the arena.
//
// Sums accumulate in double over 16 fixed lanes combined pairwise in a fixed order (the same bits
// on every run, as segment_norms); the counts are exact. Single-threaded: one memory-bound pass,
// no fork/join per call.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/ew_parallel.h"
#include "deepgrad/kernels.h"

namespace dg::cpu {
namespace {

constexpr int kLanes = 16;

inline double combine(double* acc) {
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
  return acc[0];
}

// (sum x, sum x^2) of x (n) in double
template <class T>
DG_CLONES void sum_sumsq(double* out, const T* x, index_t n) {
  double s[kLanes] = {}, q[kLanes] = {};
  index_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const double v = double(x[i + j]);
      s[j] += v;
      q[j] += v * v;
    }
  for (int j = 0; i < n; ++i, ++j) {
    const double v = double(x[i]);
    s[j] += v;
    q[j] += v * v;
  }
  out[0] = combine(s);
  out[1] = combine(q);
}

// sum of (x - p)^2 over n elements (p may be null), the difference taken in T, summed in double
template <class T>
DG_CLONES double sumsq(const T* x, const T* p, index_t n) {
  double q[kLanes] = {};
  index_t i = 0;
  if (p) {
    for (; i + kLanes <= n; i += kLanes)
      for (int j = 0; j < kLanes; ++j) {
        const double v = double(T(x[i + j] - p[i + j]));
        q[j] += v * v;
      }
    for (int j = 0; i < n; ++i, ++j) {
      const double v = double(T(x[i] - p[i]));
      q[j] += v * v;
    }
  } else {
    for (; i + kLanes <= n; i += kLanes)
      for (int j = 0; j < kLanes; ++j) {
        const double v = double(x[i + j]);
        q[j] += v * v;
      }
    for (int j = 0; i < n; ++i, ++j) {
      const double v = double(x[i]);
      q[j] += v * v;
    }
  }
  return combine(q);
}

}  // namespace

template <class T>
void act_stats(double* sums, index_t* counts, const T* z, const T* y, index_t n, index_t c,
               int saturation, T center, T bound, bool dead) {
  // z (N, C), y (N, C) -> sums (2), counts (2); see kernels.h
  const index_t size = n * c;
  sum_sumsq<T>(sums, z, size);
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

template <class T>
double l2_norm(const T* x, index_t n) {
  // x (n) -> ||x|| in double; NaN when x holds NaN or Inf (an overflow of the squares stays Inf)
  const double q = sumsq<T>(x, nullptr, n);
  if (std::isfinite(q)) return std::sqrt(q);
  for (index_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) return std::nan("");
  return q;
}

template <class T>
index_t monitor_norms(double* pnorms, double* gnorms, double* dnorms, T* prev, const T* params,
                      const T* grads, const index_t* offsets, index_t S, bool snapshot,
                      double* ghealth) {
  // params, grads, prev (offsets[S]) -> pnorms, gnorms, dnorms (S), ghealth (S, 3); kernels.h
  index_t nonfinite = 0;
  for (index_t s = 0; s < S; ++s) {
    const index_t b = offsets[s], n = offsets[s + 1] - b;
    pnorms[s] = std::sqrt(sumsq<T>(params + b, nullptr, n));
    if (ghealth) {  // the same single pass over the gradient, with L-inf and non-finite counts
      double h[7];
      health<T>(h, grads + b, n);
      const index_t bad = static_cast<index_t>(h[4] + h[5]);
      nonfinite += bad;
      gnorms[s] = bad ? std::nan("") : h[0];
      ghealth[3 * s] = h[1];
      ghealth[3 * s + 1] = double(bad);
      ghealth[3 * s + 2] = h[6];
    } else {
      const double g = sumsq<T>(grads + b, nullptr, n);
      if (!std::isfinite(g))
        for (index_t i = 0; i < n; ++i) nonfinite += !std::isfinite(grads[b + i]);
      gnorms[s] = std::sqrt(g);
    }
    if (dnorms) dnorms[s] = std::sqrt(sumsq<T>(params + b, prev + b, n));
    if (snapshot) std::copy(params + b, params + b + n, prev + b);
  }
  return nonfinite;
}

template <class T>
void param_norms(double* pn, double* dn, T* prev, const T* params, index_t n, bool snapshot) {
  // params, prev (n) -> *pn = ||params||, *dn = ||params - prev|| (when dn); prev = params (snapshot)
  *pn = std::sqrt(sumsq<T>(params, nullptr, n));
  if (dn) *dn = std::sqrt(sumsq<T>(params, prev, n));
  if (snapshot) std::copy(params, params + n, prev);
}

template void param_norms<float>(double*, double*, float*, const float*, index_t, bool);
template void param_norms<double>(double*, double*, double*, const double*, index_t, bool);
template double l2_norm<float>(const float*, index_t);
template double l2_norm<double>(const double*, index_t);
template index_t monitor_norms<float>(double*, double*, double*, float*, const float*, const float*,
                                      const index_t*, index_t, bool, double*);
template index_t monitor_norms<double>(double*, double*, double*, double*, const double*,
                                       const double*, const index_t*, index_t, bool, double*);

template void act_stats<float>(double*, index_t*, const float*, const float*, index_t, index_t, int,
                               float, float, bool);
template void act_stats<double>(double*, index_t*, const double*, const double*, index_t, index_t,
                                int, double, double, bool);

}  // namespace dg::cpu
