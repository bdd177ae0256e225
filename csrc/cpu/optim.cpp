// Optimizer updates over flat buffers, one pass each; the per-element formulas are math.h's
// sgd_update / adam_update / rmsprop_update (shared with the CUDA kernels).
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#ifdef DG_HAVE_AVX2_BUILD
#include "cpu/avx2/stats_avx2.h"
#endif
#include "cpu/ew_parallel.h"
#include "deepgrad/cpu_features.h"
#include "deepgrad/kernels.h"

namespace dg::cpu {
namespace {

// ---- step statistics (kernels.h): each segment in chunks of kStatChunk elements; a chunk's old
// parameters are kept on the stack, the update runs on the chunk, then one pass over the chunk
// (in L1) takes the gradient's and the new parameters' sums.
constexpr index_t kStatChunk = 256;
constexpr int kPart = 5;  // per chunk: sum g^2, max |g| (finite), g - g (NaN: non-finite), sum p^2, sum d^2

template <class T>
DG_CLONES void chunk_stats_portable(double* o, const T* g, const T* pn, const T* po, index_t k) {
  double q = 0, m = 0, c = 0, ps = 0, ds = 0;
  for (index_t i = 0; i < k; ++i) {
    const T v = g[i], a = std::abs(v), w = pn[i], d = T(w - po[i]);
    q += double(v) * double(v);
    if (a <= std::numeric_limits<T>::max()) m = std::max(m, double(a));  // finite values only
    c += double(v - v);
    ps += double(w) * double(w);
    ds += double(d) * double(d);
  }
  o[0] = q;
  o[1] = m;
  o[2] = c;
  o[3] = ps;
  o[4] = ds;
}

// A chunk's (sum g^2, max finite |g|, sum (g - g), sum p^2, sum d^2): AVX2 float lanes for
// float32 where the CPU has it, double accumulation otherwise.
template <class T>
void chunk_stats(double* o, const T* g, const T* pn, const T* po, index_t k) {
#ifdef DG_HAVE_AVX2_BUILD
  if constexpr (std::is_same_v<T, float>) {
    static const bool avx2 = cpu_has_avx2_fma();
    if (avx2) return avx2::step_chunk_f32(o, g, pn, po, k);
  }
#endif
  chunk_stats_portable<T>(o, g, pn, po, k);
}

// Runs update(lo, hi) over [0, n) chunk by chunk and fills st.stats (see kernels.h).
template <class T, class Update>
void step_with_stats(T* p, const T* g, const StepStatsOut& st, index_t cost, Update&& update) {
  const index_t S = st.segments;
  const index_t* off = st.offsets;
  std::vector<index_t> lo, seg;
  for (index_t s = 0; s < S; ++s)
    for (index_t a = off[s]; a < off[s + 1]; a += kStatChunk) {
      lo.push_back(a);
      seg.push_back(s);
    }
  const index_t m = static_cast<index_t>(lo.size());
  std::vector<double> part(static_cast<size_t>(m) * kPart);
  parallel_ranges(m, kStatChunk * cost, [&](index_t a, index_t b) {
    T old[kStatChunk];
    for (index_t k = a; k < b; ++k) {
      const index_t l = lo[k], h = std::min(l + kStatChunk, off[seg[k] + 1]);
      std::copy(p + l, p + h, old);
      update(l, h);
      chunk_stats<T>(part.data() + k * kPart, g + l, p + l, old, h - l);
    }
  });
  double* out = st.stats;
  for (index_t s = 0; s < S; ++s) {
    double* o = out + s * kStepStats;
    std::fill(o, o + kStepStats, 0.0);
  }
  for (index_t k = 0; k < m; ++k) {
    double* o = out + seg[k] * kStepStats;
    const double* q = part.data() + k * kPart;
    o[0] += q[0];
    o[1] = std::max(o[1], q[1]);
    o[2] += q[2];  // NaN once any chunk saw a non-finite gradient value (or float overflow)
    o[4] += q[3];
    o[5] += q[4];
  }
  for (index_t s = 0; s < S; ++s) {
    double* o = out + s * kStepStats;
    const index_t b = off[s], n = off[s + 1] - b;
    if (std::isnan(o[2])) {  // rare: the segment's health pass for the exact numbers
      double h[7];
      health<T>(h, g + b, n);
      const bool bad = h[4] + h[5] > 0;  // else float squares overflowed: the exact norm
      o[0] = bad ? std::nan("") : h[0];
      o[1] = h[1];
      o[2] = h[4] + h[5];
      o[3] = h[6];
    } else {
      o[0] = std::sqrt(o[0]);
      o[2] = 0.0;
      o[3] = -1.0;
    }
    o[4] = std::sqrt(o[4]);
    o[5] = std::sqrt(o[5]);
    o[6] = 1.0;
  }
}

// Per-element cost for the threading grain (sqrt + divide for the adaptive methods).
constexpr index_t kSgdCost = 4, kAdaptiveCost = 16;

template <class T, bool kHaveBuf>
DG_CLONES void sgd_range(T* p, T* buf, const T* g, index_t n, SgdHyper<T> h) {
  for (index_t i = 0; i < n; ++i) {
    T dummy = T(0);
    sgd_update(h, p[i], g[i], kHaveBuf ? buf[i] : dummy);
  }
}

template <class T>
DG_CLONES void adam_range(T* p, T* m, T* v, const T* g, index_t n, AdamHyper<T> h) {
  for (index_t i = 0; i < n; ++i) adam_update(h, p[i], g[i], m[i], v[i]);
}

template <class T, bool kHaveBuf, bool kCentered>
DG_CLONES void rmsprop_range(T* p, T* sq, T* buf, T* ga, const T* g, index_t n, RmspropHyper<T> h) {
  for (index_t i = 0; i < n; ++i) {
    T dummy_buf = T(0), dummy_ga = T(0);
    rmsprop_update(h, p[i], g[i], sq[i], kHaveBuf ? buf[i] : dummy_buf, kCentered ? ga[i] : dummy_ga);
  }
}

}  // namespace

template <class T>
void sgd_step(T* param, T* momentum_buf, const T* grad, index_t n, const SgdHyper<T>& h,
              const StepStatsOut& st) {
  const bool have_buf = h.momentum != T(0) && momentum_buf != nullptr;
  auto range = [&](index_t lo, index_t hi) {
    if (have_buf) sgd_range<T, true>(param + lo, momentum_buf + lo, grad + lo, hi - lo, h);
    else sgd_range<T, false>(param + lo, nullptr, grad + lo, hi - lo, h);
  };
  if (st.stats) return step_with_stats(param, grad, st, kSgdCost, range);
  parallel_ranges(n, kSgdCost, range);
}

template <class T>
void adam_step(T* param, T* m, T* v, const T* grad, index_t n, const AdamHyper<T>& h,
               const StepStatsOut& st) {
  auto range = [&](index_t lo, index_t hi) {
    adam_range(param + lo, m + lo, v + lo, grad + lo, hi - lo, h);
  };
  if (st.stats) return step_with_stats(param, grad, st, kAdaptiveCost, range);
  parallel_ranges(n, kAdaptiveCost, range);
}

template <class T>
void rmsprop_step(T* param, T* square_avg, T* momentum_buf, T* grad_avg, const T* grad, index_t n,
                  const RmspropHyper<T>& h, const StepStatsOut& st) {
  const bool have_buf = h.momentum > T(0) && momentum_buf != nullptr;
  const bool centered = h.centered && grad_avg != nullptr;
  auto range = [&](index_t lo, index_t hi) {
    T* p = param + lo;
    T* sq = square_avg + lo;
    T* b = have_buf ? momentum_buf + lo : nullptr;
    T* ga = centered ? grad_avg + lo : nullptr;
    const T* g = grad + lo;
    const index_t k = hi - lo;
    if (have_buf && centered) rmsprop_range<T, true, true>(p, sq, b, ga, g, k, h);
    else if (have_buf) rmsprop_range<T, true, false>(p, sq, b, ga, g, k, h);
    else if (centered) rmsprop_range<T, false, true>(p, sq, b, ga, g, k, h);
    else rmsprop_range<T, false, false>(p, sq, b, ga, g, k, h);
  };
  if (st.stats) return step_with_stats(param, grad, st, kAdaptiveCost, range);
  parallel_ranges(n, kAdaptiveCost, range);
}

#define DG_INST(T)                                                                              \
  template void sgd_step<T>(T*, T*, const T*, index_t, const SgdHyper<T>&, const StepStatsOut&); \
  template void adam_step<T>(T*, T*, T*, const T*, index_t, const AdamHyper<T>&,                \
                             const StepStatsOut&);                                             \
  template void rmsprop_step<T>(T*, T*, T*, T*, const T*, index_t, const RmspropHyper<T>&,      \
                                const StepStatsOut&);
DG_INST(float)
DG_INST(double)
#undef DG_INST

}  // namespace dg::cpu
