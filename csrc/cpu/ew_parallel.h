// Private helpers for the elementwise CPU kernels: function multi-versioning for AVX2 and a
// static split of a range over OpenMP threads (one thread below dg::threads_for's grain).
#pragma once
#include <algorithm>
#include <vector>

#include "deepgrad/common.h"
#ifdef DG_HAVE_OPENMP
#include <omp.h>
#endif

// Hot loops are compiled twice (AVX2 and baseline x86-64) and picked at load time; elsewhere
// they are plain functions.
#if defined(__GNUC__) && (defined(__x86_64__) || defined(_M_X64)) && !defined(__clang__)
#define DG_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define DG_CLONES
#endif

namespace dg::cpu {

// Calls f(lo, hi) on disjoint sub-ranges covering [0, n), on threads_for(n * cost) threads.
// Split points are multiples of 64 elements so vector loops see whole cache lines.
template <class F>
void parallel_ranges(index_t n, index_t cost, F&& f) {
  const int nt = threads_for(n * cost);
  if (nt <= 1) {
    if (n > 0) f(index_t(0), n);
    return;
  }
#ifdef DG_HAVE_OPENMP
#pragma omp parallel num_threads(nt)
  {
    const index_t t = omp_get_thread_num(), T = omp_get_num_threads();
    const index_t blocks = (n + 63) / 64;
    const index_t lo = std::min(n, blocks * t / T * 64);
    const index_t hi = std::min(n, blocks * (t + 1) / T * 64);
    if (lo < hi) f(lo, hi);
  }
#else
  f(index_t(0), n);
#endif
}

// Deterministic reduction: sum over fixed chunks [k*chunk, (k+1)*chunk) of [0, n) of
// f(lo, hi) -> double, the per-chunk partials added in chunk order. The result does not depend
// on the number of threads or on how the chunks were scheduled.
template <class F>
double chunked_sum(index_t n, index_t chunk, index_t cost, F&& f) {
  const index_t nchunks = (n + chunk - 1) / chunk;
  if (nchunks <= 1) return n > 0 ? f(index_t(0), n) : 0.0;
  std::vector<double> part(static_cast<size_t>(nchunks));
  const int nt = threads_for(n * cost);
#ifdef DG_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (index_t k = 0; k < nchunks; ++k) part[k] = f(k * chunk, std::min(n, (k + 1) * chunk));
  double s = 0;
  for (index_t k = 0; k < nchunks; ++k) s += part[k];
  return s;
}

}  // namespace dg::cpu
