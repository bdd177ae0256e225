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
// The per-element updates below are inlined into the target clones of the statistics loop (GCC
// would otherwise call them element by element, unvectorised).
#define DG_INLINE_LAMBDA __attribute__((always_inline))
constexpr int kPart = 5;  // per chunk: sum g^2, max |g| (finite), non-finite flag, sum p^2, sum d^2

// elem(i) updates element i in place (p[i] among others) and returns the new p[i] from its
// registers (a reload through another pointer would wait on the store). Writes the chunk's
// (sum g^2, max |g|, NaN when g held a NaN/Inf or its float squares overflowed (else 0), sum p^2,
// sum (p - p before)^2) into o; max |g| is exact only when o[2] is 0.
template <class T, class Elem>
DG_CLONES512 void update_range_stats(double* o, const T* p, const T* g, index_t n, Elem elem) {
  T q = 0, mx = 0, ps = 0, ds = 0;
#pragma omp simd reduction(+ : q, ps, ds) reduction(max : mx)
  for (index_t i = 0; i < n; ++i) {
    const T v = g[i], old = p[i];
    const T w = elem(i), d = T(w - old);
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

// The plain update: elem(i) over [0, n), in the same clones as the statistics loop.
template <class T, class Elem>
DG_CLONES512 void update_range(index_t n, Elem elem) {
  for (index_t i = 0; i < n; ++i) elem(i);
}

}  // namespace

// f(std::bool_constant<b>...) for run-time flags b: one instantiation per combination.
template <class F>
void with_flags(F&& f) { f(); }
template <class F, class... B>
void with_flags(F&& f, bool b, B... rest) {
  if (b) with_flags([&](auto... k) { f(std::true_type{}, k...); }, rest...);
  else with_flags([&](auto... k) { f(std::false_type{}, k...); }, rest...);
}

// Each step below builds one element function per combination of its hyper-parameter branches
// (known at compile time, so both loops vectorise without unswitching) and runs it through
// update_range, or through update_range_stats chunk by chunk when statistics are asked for: the
// same element code either way, so the same bits.
template <class T, class Run>
void run_step(index_t n, index_t cost, const T* grad, const StepStatsOut& st, Run&& run) {
  if (st.stats) return step_with_stats(grad, st, cost, run);
  parallel_ranges(n, cost, [&](index_t lo, index_t hi) { run(nullptr, lo, hi); });
}

template <class T, class Elem>
void range_or_stats(double* o, const T* p, const T* g, index_t k, const Elem& elem) {
  if (o) update_range_stats(o, p, g, k, elem);
  else update_range<T>(k, elem);
}

template <class T>
void sgd_step(T* param, T* momentum_buf, const T* grad, index_t n, const SgdHyper<T>& h,
              const StepStatsOut& st) {
  const SgdHyper<T> hv = h;
  const bool mom = h.momentum != T(0) && momentum_buf != nullptr;
  run_step(n, kSgdCost, grad, st, [&](double* o, index_t lo, index_t hi) {
    T *p = param + lo, *b = mom ? momentum_buf + lo : nullptr;
    const T* g = grad + lo;
    with_flags([&](auto kwd, auto kmom, auto kfirst, auto knest) {
      range_or_stats(o, p, g, hi - lo, [=](index_t i) DG_INLINE_LAMBDA {
        T bi = kmom ? b[i] : T(0);  // a local: the buffer is untouched without momentum
        sgd_update_t<T, kwd, kmom, kfirst, knest>(hv, p[i], g[i], bi);
        if (kmom) b[i] = bi;
        return p[i];
      });
    }, hv.weight_decay != T(0), mom, mom && hv.first_step, mom && hv.nesterov);
  });
}

template <class T>
void adam_step(T* param, T* m, T* v, const T* grad, index_t n, const AdamHyper<T>& h,
               const StepStatsOut& st) {
  const AdamHyper<T> hv = h;
  run_step(n, kAdaptiveCost, grad, st, [&](double* o, index_t lo, index_t hi) {
    T *p = param + lo, *mm = m + lo, *vv = v + lo;
    const T* g = grad + lo;
    with_flags([&](auto kl2) {
      range_or_stats(o, p, g, hi - lo, [=](index_t i) DG_INLINE_LAMBDA {
        adam_update_l2<T, kl2>(hv, p[i], g[i], mm[i], vv[i]);
        return p[i];
      });
    }, hv.weight_decay != T(0));
  });
}

template <class T>
void rmsprop_step(T* param, T* square_avg, T* momentum_buf, T* grad_avg, const T* grad, index_t n,
                  const RmspropHyper<T>& h, const StepStatsOut& st) {
  const RmspropHyper<T> hv = h;
  const bool mom = h.momentum > T(0) && momentum_buf != nullptr;
  const bool centered = h.centered && grad_avg != nullptr;
  run_step(n, kAdaptiveCost, grad, st, [&](double* o, index_t lo, index_t hi) {
    T *p = param + lo, *sq = square_avg + lo;
    T* b = mom ? momentum_buf + lo : nullptr;
    T* ga = centered ? grad_avg + lo : nullptr;
    const T* g = grad + lo;
    with_flags([&](auto kwd, auto kcen, auto kmom) {
      range_or_stats(o, p, g, hi - lo, [=](index_t i) DG_INLINE_LAMBDA {
        // the state in locals; the buffers a configuration does not use are left alone
        T s = sq[i], bi = kmom ? b[i] : T(0), gi = kcen ? ga[i] : T(0);
        rmsprop_update_t<T, kwd, kcen, kmom>(hv, p[i], g[i], s, bi, gi);
        sq[i] = s;
        if (kmom) b[i] = bi;
        if (kcen) ga[i] = gi;
        return p[i];
      });
    }, hv.weight_decay != T(0), centered, mom);
  });
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
