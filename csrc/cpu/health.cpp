// One-pass tensor health: per segment of a flat buffer, the L2 and L-infinity norms, min and max
// of the finite elements, the counts of NaN and of +-Inf, and the index of the first non-finite
// element. Sums in double over 16 fixed lanes combined pairwise (the same bits on every run).
// The main loop has no branch and vectorizes (it is the sum of squares plus min, max and a
// running sum of x - x, which turns NaN at the first non-finite element); only a segment that
// holds a NaN or an Inf is read a second time, element by element.
#include <algorithm>
#include <cmath>
#include <limits>

#include <type_traits>

#ifdef DG_HAVE_AVX2_BUILD
#include "cpu/avx2/stats_avx2.h"
#endif
#include "cpu/ew_parallel.h"
#include "deepgrad/cpu_features.h"
#include "deepgrad/kernels.h"

namespace dg::cpu {
namespace {

constexpr int kLanes = 16;

// The exact path: every element tested; only for a segment that holds a NaN or an Inf.
template <class T>
void health_slow(double* out, const T* x, index_t n) {
  double q = 0, linf = 0;
  T mn = std::numeric_limits<T>::infinity(), mx = -mn;
  index_t nan = 0, inf = 0, first = -1;
  for (index_t i = 0; i < n; ++i) {
    const T v = x[i];
    if (v != v) {
      ++nan;
    } else if (std::isinf(v)) {
      ++inf;
    } else {
      const double d = double(v);
      q += d * d;
      linf = std::max(linf, std::fabs(d));
      mn = std::min(mn, v), mx = std::max(mx, v);
      continue;
    }
    if (first < 0) first = i;
  }
  const bool any = nan + inf < n;
  out[0] = std::sqrt(q), out[1] = linf;
  out[2] = any ? double(mn) : std::nan(""), out[3] = any ? double(mx) : std::nan("");
  out[4] = double(nan), out[5] = double(inf), out[6] = double(first);
}

// The fast path, one branch-free pass that vectorizes: sum of squares in double, min and max
// in T, and z = sum of (x - x), which is 0 for finite elements and NaN as soon as one is not;
// L-inf is max(-min, max). A NaN z sends the segment to health_slow.
template <class T>
DG_CLONES void health_portable(double* out, const T* x, index_t n) {
  double q[kLanes] = {};
  T mn[kLanes], mx[kLanes], z[kLanes];
  const T inf = std::numeric_limits<T>::infinity();
  for (int j = 0; j < kLanes; ++j) mn[j] = inf, mx[j] = -inf, z[j] = T(0);
  index_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const T v = x[i + j];
      const double d = double(v);
      q[j] += d * d;
      mn[j] = v < mn[j] ? v : mn[j];
      mx[j] = v > mx[j] ? v : mx[j];
      z[j] += v - v;
    }
  for (int j = 0; i < n; ++i, ++j) {
    const T v = x[i];
    const double d = double(v);
    q[j] += d * d;
    mn[j] = v < mn[j] ? v : mn[j];
    mx[j] = v > mx[j] ? v : mx[j];
    z[j] += v - v;
  }
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int j = 0; j < w; ++j) {
      q[j] += q[j + w];
      mn[j] = std::min(mn[j], mn[j + w]);
      mx[j] = std::max(mx[j], mx[j + w]);
      z[j] += z[j + w];
    }
  if (z[0] != T(0) || !std::isfinite(q[0])) {   // a NaN/Inf in the segment (or, for float64,
    health_slow<T>(out, x, n);                   // squares that overflow): the exact path
    return;
  }
  out[0] = std::sqrt(q[0]);
  out[1] = n ? std::max(-double(mn[0]), double(mx[0])) : 0.0;
  out[2] = n ? double(mn[0]) : std::nan("");
  out[3] = n ? double(mx[0]) : std::nan("");
  out[4] = 0, out[5] = 0, out[6] = -1;
}

// float32 with AVX2: the intrinsics loop (squares in double lanes, min and max in float vectors,
// no per-element check: a NaN or Inf shows in the sum); otherwise the portable loop.
template <class T>
void health_one(double* out, const T* x, index_t n) {
#ifdef DG_HAVE_AVX2_BUILD
  if constexpr (std::is_same_v<T, float>) {
    static const bool avx2 = cpu_has_avx2_fma();
    if (avx2) {
      double r[3];
      avx2::health_f32(r, x, n);
      if (!std::isfinite(r[0])) {  // a NaN or an Inf in the segment
        health_slow<T>(out, x, n);
        return;
      }
      out[0] = std::sqrt(r[0]);
      out[1] = n ? std::max(-r[1], r[2]) : 0.0;
      out[2] = n ? r[1] : std::nan("");
      out[3] = n ? r[2] : std::nan("");
      out[4] = 0, out[5] = 0, out[6] = -1;
      return;
    }
  }
#endif
  health_portable<T>(out, x, n);
}

}  // namespace

template <class T>
void segment_health(double* out, const T* buf, const index_t* offsets, index_t S) {
  // buf (offsets[S]) in segments [offsets[s], offsets[s+1]) -> out (S, 7); see kernels.h
  const int nt = S > 1 ? threads_for(offsets[S]) : 1;
  (void)nt;
#ifdef DG_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
#endif
  for (index_t s = 0; s < S; ++s)
    health_one<T>(out + 7 * s, buf + offsets[s], offsets[s + 1] - offsets[s]);
}

template <class T>
void health(double* out, const T* x, index_t n) {
  // x (n) -> out (7); see kernels.h
  health_one<T>(out, x, n);
}

template void segment_health<float>(double*, const float*, const index_t*, index_t);
template void segment_health<double>(double*, const double*, const index_t*, index_t);
template void health<float>(double*, const float*, index_t);
template void health<double>(double*, const double*, index_t);

}  // namespace dg::cpu
