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
// Also a 512-bit clone (the optimizer steps: compute-bound in L2 once they take statistics). No
// clone enables FMA, so every clone rounds each operation the same way: the same bits on any CPU.
#define DG_CLONES512 __attribute__((target_clones("avx512f", "avx2", "default")))
// The optimizer steps with statistics (optim.cpp, built without contraction): an "fma" clone
// (AVX + FMA) in place of "avx2", for the statistics' explicit fused multiply-adds.
#define DG_STATS_CLONES __attribute__((target_clones("avx512f", "fma", "default")))
#else
#define DG_CLONES
#define DG_CLONES512
#define DG_STATS_CLONES
#endif

namespace dg::cpu {

// Calls f(lo, hi) on disjoint sub-ranges covering [0, n), on threads_for(n * cost) threads.
// The range is cut into ~8 blocks per thread (multiples of 64 elements, so vector loops see whole
// cache lines) handed out dynamically: on a machine shared with other processes a thread that
// gets descheduled does not hold the others up at the barrier. Elementwise results do not depend
// on the cut.
template <class F>
void parallel_ranges(index_t n, index_t cost, F&& f) {
  const int nt = threads_for(n * cost);
  if (nt <= 1) {
    if (n > 0) f(index_t(0), n);
    return;
  }
#ifdef DG_HAVE_OPENMP
  // Each block carries at least a quarter of the grain's work, so the hand-out stays cheap.
  const index_t min_block = std::max<index_t>(64, kParallelGrain / (4 * std::max<index_t>(cost, 1)));
  const index_t block = (std::max(min_block, n / (8 * index_t(nt))) + 63) / 64 * 64;
  const index_t nblocks = (n + block - 1) / block;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (index_t k = 0; k < nblocks; ++k) f(k * block, std::min(n, (k + 1) * block));
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
  (void)nt;  // unused without OpenMP
#ifdef DG_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
#endif
  for (index_t k = 0; k < nchunks; ++k) part[k] = f(k * chunk, std::min(n, (k + 1) * chunk));
  double s = 0;
  for (index_t k = 0; k < nchunks; ++k) s += part[k];
  return s;
}

}  // namespace dg::cpu
