// Kernels for the GradientMonitor: per-layer activation statistics in one pass over a layer's
// output, and the per-parameter norms of a step in one pass over the arena.
//
// Sums in double lanes in a fixed order (the same bits on every run; AVX2 double lanes for float32);
// the counts are cpu/layer_stats.h's, the ones the fused dense kernels take for deepgrad's own
// layers, exact.
// Single-threaded: one pass, no fork/join per call.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#ifdef DG_HAVE_AVX2_BUILD
#include "cpu/avx2/stats_avx2.h"
#endif
#include "cpu/ew_parallel.h"
#include "cpu/layer_stats.h"
#include "deepgrad/cpu_features.h"
#include "deepgrad/kernels.h"

namespace dg::cpu {
namespace {

// *s += sum v (s may be null), *q += sum v^2 for v = x - p (p not null; the difference in T) or x,
// every term in double: float32 through AVX2 double lanes where the CPU has them
template <class T>
DG_CLONES void exact_sums_portable(double* s, double* q, const T* x, const T* p, index_t n) {
  double ts = 0.0, tq = 0.0;
#pragma omp simd reduction(+ : ts, tq)
  for (index_t i = 0; i < n; ++i) {
    const double v = p ? double(T(x[i] - p[i])) : double(x[i]);
    ts += v;
    tq += v * v;
  }
  if (s) *s += ts;
  *q += tq;
}

template <class T>
void exact_sums(double* s, double* q, const T* x, const T* p, index_t n) {
#ifdef DG_HAVE_AVX2_BUILD
  if constexpr (std::is_same_v<T, float>) {
    static const bool avx2 = cpu_has_avx2_fma();
    if (avx2) return avx2::sums_f32_exact(s, q, x, p, n);
  }
#endif
  exact_sums_portable<T>(s, q, x, p, n);
}

// sum of (x - p)^2 (or x^2 when p is null) in double
template <class T>
double sumsq(const T* x, const T* p, index_t n) {
  double q = 0.0;
  exact_sums<T>(nullptr, &q, x, p, n);
  return q;
}

}  // namespace

template <class T>
void act_stats(double* sums, index_t* counts, const T* z, const T* y, index_t n, index_t c,
               int saturation, T center, T bound, bool dead) {
  // z (N, C), y (N, C) -> sums (2), counts (2); see kernels.h
  const index_t size = n * c;
  sums[0] = sums[1] = 0.0;
  exact_sums<T>(&sums[0], &sums[1], z, nullptr, size);
  counts[0] = saturation ? count_outside<T>(saturation == 1 ? y : z, size, center, bound) : 0;
  counts[1] = 0;
  if (dead && c > 0) {  // alive columns: some y > 0 (NaN never counts)
    thread_local std::vector<T> colmax;
    colmax.assign(static_cast<size_t>(c), T(0));
    col_max<T>(colmax.data(), y, n, c);
    for (index_t j = 0; j < c; ++j) counts[1] += colmax[j] > T(0);
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
