// Optimizer updates over flat buffers, one pass each; the per-element formulas are math.h's
// sgd_update / adam_update / rmsprop_update (shared with the CUDA kernels).
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "cpu/ew_parallel.h"
#include "deepgrad/kernels.h"

namespace dg::cpu {
namespace {

// ---- step statistics (kernels.h): each segment is cut into chunks of kStatChunk elements; one
// loop per chunk applies the update and takes, in the same registers, the gradient's and the new
// parameters' sums (a chunk's partial sums in T, combined in double in chunk order: the same bits
// for any thread count). The update is the same per-element function as without statistics, in a
// function of the same target clones, so the parameters come out bit-identical.
constexpr index_t kStatChunk = 1024;
// The per-element updates below are lambdas inlined into the target clones of the loop (GCC would
// otherwise call them element by element, unvectorised).
#define DG_INLINE_LAMBDA __attribute__((always_inline))
constexpr int kPart = 5;  // per chunk: sum g^2, max |g| (finite), non-finite flag, sum p^2, sum d^2

// elem(i) updates element i in place (p[i] among others); po[i] is element i's value before the
// update (po == p: read just before elem(i)). Writes the chunk's (sum g^2, max finite |g|, NaN when
// g held a NaN/Inf or its float squares overflowed (else 0), sum p^2, sum (p - po)^2) into o;
// max |g| is exact only when o[2] is 0.
template <class T, class Elem>
DG_CLONES512 void update_range_stats(double* o, T* p, const T* po, const T* g, index_t n, Elem elem) {
  T q = 0, mx = 0, ps = 0, ds = 0;
#pragma omp simd reduction(+ : q, ps, ds) reduction(max : mx)
  for (index_t i = 0; i < n; ++i) {
    const T v = g[i], old = po[i];
    elem(i);
    const T w = p[i], d = T(w - old);
    q += v * v;  // NaN or Inf once g holds a NaN or an Inf
    mx = std::max(mx, std::abs(v));
    ps += w * w;
    ds += d * d;
  }
  // A sum of squares that is not finite flags the chunk (a NaN or Inf in g, or float squares that
  // overflowed): the caller then takes the segment's exact health pass, whose L-inf counts the
  // finite values only.
  o[0] = double(q);
  o[1] = double(mx);
  o[2] = std::isfinite(q) ? 0.0 : std::nan("");
  o[3] = double(ps);
  o[4] = double(ds);
}

// For updates whose per-element function branches on its hyper-parameters (SGD, RMSprop: the
// statistics loop above would not vectorise around them): the chunk's old values on the stack,
// the update's own vectorised range(), then the sums over the chunk in L1.
template <class T, class Range>
void update_chunk_then_stats(double* o, T* p, const T* g, index_t n, Range&& range) {
  T old[kStatChunk];
  std::copy(p, p + n, old);
  range();
  update_range_stats(o, p, old, g, n, [](index_t) DG_INLINE_LAMBDA {});
}

// Runs the update over [0, n) chunk by chunk (chunk(o, lo, hi): update_range_stats over the
// chunk) and fills st.stats (see kernels.h).
template <class T, class Chunk>
void step_with_stats(const T* g, const StepStatsOut& st, index_t cost, Chunk&& chunk) {
  const index_t S = st.segments;
  const index_t* off = st.offsets;
  std::vector<index_t> lo, seg;
  lo.reserve(static_cast<size_t>(off[S] / kStatChunk + S + 1));
  seg.reserve(lo.capacity());
  for (index_t s = 0; s < S; ++s)
    for (index_t a = off[s]; a < off[s + 1]; a += kStatChunk) {
      lo.push_back(a);
      seg.push_back(s);
    }
  const index_t m = static_cast<index_t>(lo.size());
  std::vector<double> part(static_cast<size_t>(m) * kPart);
  parallel_ranges(m, kStatChunk * cost, [&](index_t a, index_t b) {
    for (index_t k = a; k < b; ++k) {
      const index_t l = lo[k], h = std::min(l + kStatChunk, off[seg[k] + 1]);
      chunk(part.data() + k * kPart, l, h);
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
DG_CLONES512 void sgd_range(T* p, T* buf, const T* g, index_t n, SgdHyper<T> h) {
  for (index_t i = 0; i < n; ++i) {
    T dummy = T(0);
    sgd_update(h, p[i], g[i], kHaveBuf ? buf[i] : dummy);
  }
}

template <class T>
DG_CLONES512 void adam_range(T* p, T* m, T* v, const T* g, index_t n, AdamHyper<T> h) {
  for (index_t i = 0; i < n; ++i) adam_update(h, p[i], g[i], m[i], v[i]);
}

template <class T, bool kHaveBuf, bool kCentered>
DG_CLONES512 void rmsprop_range(T* p, T* sq, T* buf, T* ga, const T* g, index_t n, RmspropHyper<T> h) {
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
  if (st.stats) {
    return step_with_stats(grad, st, kSgdCost, [&](double* o, index_t lo, index_t hi) {
      update_chunk_then_stats(o, param + lo, grad + lo, hi - lo, [&] { range(lo, hi); });
    });
  }
  parallel_ranges(n, kSgdCost, range);
}

template <class T>
void adam_step(T* param, T* m, T* v, const T* grad, index_t n, const AdamHyper<T>& h,
               const StepStatsOut& st) {
  if (st.stats) {  // Adam's element function vectorises inside the statistics loop: one pass
    const AdamHyper<T> hv = h;
    return step_with_stats(grad, st, kAdaptiveCost, [&](double* o, index_t lo, index_t hi) {
      T *p = param + lo, *mm = m + lo, *vv = v + lo;
      const T* g = grad + lo;
      if (hv.weight_decay != T(0)) {
        update_range_stats(o, p, p, g, hi - lo, [=](index_t i) DG_INLINE_LAMBDA {
          adam_update_l2<T, true>(hv, p[i], g[i], mm[i], vv[i]);
        });
      } else {
        update_range_stats(o, p, p, g, hi - lo, [=](index_t i) DG_INLINE_LAMBDA {
          adam_update_l2<T, false>(hv, p[i], g[i], mm[i], vv[i]);
        });
      }
    });
  }
  parallel_ranges(n, kAdaptiveCost, [&](index_t lo, index_t hi) {
    adam_range(param + lo, m + lo, v + lo, grad + lo, hi - lo, h);
  });
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
  if (st.stats) {
    return step_with_stats(grad, st, kAdaptiveCost, [&](double* o, index_t lo, index_t hi) {
      update_chunk_then_stats(o, param + lo, grad + lo, hi - lo, [&] { range(lo, hi); });
    });
  }
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
