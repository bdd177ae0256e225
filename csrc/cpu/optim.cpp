// Optimizer updates over flat buffers, one pass each; the per-element formulas are math.h's
// sgd_update / adam_update / rmsprop_update (shared with the CUDA kernels).
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define DG_HAVE_MXCSR 1
#endif

#include "cpu/ew_parallel.h"
#include "deepgrad/cpu_features.h"
#include "deepgrad/kernels.h"

namespace dg::cpu {
namespace {

// Flush-to-zero for one thread's part of an optimizer step, the previous mode restored after.
// The moment buffers of parameters whose gradient stays at zero (dead ReLU units, unused
// embeddings) decay geometrically (m by beta1 each step) into the subnormal range, where x86
// cores take a slow path for every operation that produces a subnormal: measured 2.6x on the
// Adam step of a trained ReLU MLP with 15% of its m subnormal. A result below FLT_MIN becomes 0
// instead (its contribution to any update is below the resolution of a normal parameter).
// Inputs are left as they are (no denormals-are-zero): a subnormal gradient still counts in the
// statistics.
struct FlushToZero {
#ifdef DG_HAVE_MXCSR
  unsigned saved = _mm_getcsr();
  FlushToZero() { _mm_setcsr(saved | 0x8000u); }
  ~FlushToZero() { _mm_setcsr(saved); }
#endif
};

// ---- step statistics (kernels.h): each segment is cut into chunks of kStatChunk elements; one
// loop per chunk applies the update and takes, in the same registers, the gradient's and the new
// parameters' sums (a chunk's partial sums in T, combined in double in chunk order: the same bits
// for any thread count). The update is the same per-element function as without statistics, in a
// function of the same target clones, so the parameters come out bit-identical.
constexpr index_t kStatChunk = 2048;  // float partial sums: 128 terms per AVX-512 lane
// The per-element updates below are inlined into the target clones of the statistics loop (GCC
// would otherwise call them element by element, unvectorised).
#define DG_INLINE_LAMBDA __attribute__((always_inline))
constexpr int kPart = 5;  // per chunk: sum g^2, max |g| (finite), non-finite flag, sum p^2, sum d^2

// A chunk's sum of squares taken in T is as good as one in double (the health kernel's) while it
// is finite and at least kSafeLow: each of the at most kStatChunk = 2^11 squares that fell below
// T's smallest normal lost less than that (2^-126 for float), so the sum is then off by at most
// 2^-40 of itself from underflow (plus the usual rounding of a float sum). Below, the chunk's sum
// is taken again in double from the values still in cache. Float squares underflow from
// |x| < 1e-19: the gradients of a network whose gradient vanishes, the case this library exists
// to measure.
template <class T>
constexpr T kSafeLow = std::numeric_limits<T>::min() * T(2251799813685248.0);  // * 2^51

template <class T>
double sumsq_double(const T* x, index_t n) {
  double q = 0;
  for (index_t i = 0; i < n; ++i) q += double(x[i]) * double(x[i]);
  return q;
}

// elem(i, g_i, p_i) updates element i in place (p[i] among others), returns the new p[i] from its
// registers (a reload through another pointer would wait on the store) and hands back the
// gradient and the parameter it loaded (loading them again here cost two more loads per vector:
// the compiler cannot tell that its pointers and these are the same). For each chunk k of
// [ka, kb) writes (sum g^2, max |g|, NaN when g held a NaN/Inf (else 0), sum p^2,
// sum (p - p before)^2), each sum as exact as a sum in double (see kSafeLow); max |g| is exact
// only when the flag is 0. One call per thread's run of chunks (not one per chunk through the
// clone dispatch).
//
// The sums of squares use fused multiply-adds where the CPU has them: on cores whose 128-bit FP
// pipes bound this loop (Zen 1: 16.5 cycles per 8 elements plain, 27 with statistics in
// separate multiplies and adds) the three adds move onto the multiply pipes. The file is built
// without contraction (-ffp-contract=off) so that the update's own arithmetic is the same in
// every clone; the FMAs here are explicit and touch only the statistics. GCC's "avx2" clone has
// no FMA, so this function's clones (DG_STATS_CLONES) are "fma" (AVX + FMA: every operation
// here is a float one) and "avx512f"; the update's operations are IEEE-exact in any of them, so the parameters stay
// bit-identical to update_range's (test_step_stats).
#define DG_STATS_CHUNK_LOOP(SQ_ADD)                                       \
  _Pragma("omp simd reduction(+ : q, ps, ds) reduction(max : mx)")        \
  for (index_t i = lo; i < hi; ++i) {                                     \
    T v, old;                                                             \
    const T w = elem(i, v, old), d = T(w - old);                          \
    bf[i] = old;                                                          \
    q = SQ_ADD(v, q); /* NaN or Inf once g holds a NaN or an Inf */       \
    mx = std::max(mx, std::abs(v));                                       \
    ps = SQ_ADD(w, ps);                                                   \
    ds = SQ_ADD(d, ds);                                                   \
  }
#define DG_SQ_FMA(x, acc) std::fma(x, x, acc)
#define DG_SQ_MADD(x, acc) T(acc + T(x * x))
template <class T, class Elem>
DG_STATS_CLONES void update_range_stats(double* parts, const index_t* bounds, index_t ka,
                                        index_t kb, const T* p, const T* g, Elem elem) {
  // the chunk's parameters before the update, for the rare chunk whose update sum is redone
  alignas(64) T before[kStatChunk];
  // (the "default" clone runs on CPUs without FMA: a std::fma there would be a library call)
  static const bool fma = cpu_has_fma();
  // chunk k is [bounds[k], bounds[k + 1]); its sums go to parts[k * kPart ...]
  for (index_t k = ka; k < kb; ++k) {
    T q = 0, ps = 0, ds = 0, mx = 0;
    const index_t lo = bounds[k], hi = bounds[k + 1];
    T* bf = before - lo;
    if (fma) {
      DG_STATS_CHUNK_LOOP(DG_SQ_FMA)
    } else {
      DG_STATS_CHUNK_LOOP(DG_SQ_MADD)
    }
    const index_t n = hi - lo;
    double* o = parts + k * kPart;
    // A gradient sum that is not finite flags the chunk (a NaN or Inf in g, or squares that
    // overflowed T): the caller then takes the segment's exact health pass, whose L-inf counts
    // the finite values only.
    o[0] = (q < kSafeLow<T> && mx > T(0)) ? sumsq_double(g + lo, n) : double(q);
    o[1] = double(mx);
    o[2] = std::isfinite(q) ? 0.0 : std::nan("");
    o[3] = (ps < kSafeLow<T> || !std::isfinite(ps)) ? sumsq_double(p + lo, n) : double(ps);
    // The update's sum is taken again whenever it is small, a chunk whose update is exactly 0
    // included (a max |d| in the loop to tell those apart cost 1.2 us of the 4 us the statistics
    // add to a 83k-parameter Adam step; a chunk that did not move costs one pass over 2048 values)
    if (ds < kSafeLow<T> || !std::isfinite(ds)) {
      double s = 0;
      for (index_t i = 0; i < n; ++i) {
        const double d = double(T(p[lo + i] - before[i]));
        s += d * d;
      }
      o[4] = s;
    } else {
      o[4] = double(ds);
    }
  }
}

// Runs the update over the segments cut into chunks (run(parts, bounds, ka, kb): chunks [ka, kb)
// through update_range_stats) and fills st.stats (see kernels.h).
template <class T, class Run>
void step_with_stats(const T* g, const StepStatsOut& st, index_t cost, Run&& run) {
  const index_t S = st.segments;
  const index_t* off = st.offsets;
  std::vector<index_t> bounds, seg;  // chunk k: [bounds[k], bounds[k + 1]) in segment seg[k]
  bounds.reserve(static_cast<size_t>(off[S] / kStatChunk + S + 2));
  seg.reserve(bounds.capacity());
  for (index_t s = 0; s < S; ++s)
    for (index_t a = off[s]; a < off[s + 1]; a += kStatChunk) {
      bounds.push_back(a);
      seg.push_back(s);
    }
  bounds.push_back(off[S]);  // the chunks tile [0, off[S]): each ends where the next starts
  const index_t m = static_cast<index_t>(seg.size());
  std::vector<double> part(static_cast<size_t>(m) * kPart);
  parallel_ranges(m, kStatChunk * cost, [&](index_t a, index_t b) {
    FlushToZero ftz;
    run(part.data(), bounds.data(), a, b);
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

// The plain update: elem over [0, n), in the same clones as the statistics loop.
template <class T, class Elem>
DG_CLONES512 void update_range(index_t lo, index_t hi, Elem elem) {
  for (index_t i = lo; i < hi; ++i) {
    T v, old;
    elem(i, v, old);
  }
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
  parallel_ranges(n, cost, [&](index_t lo, index_t hi) {
    FlushToZero ftz;
    run(nullptr, nullptr, lo, hi);
  });
}

// parts null: the plain update of elements [a, b); else the chunks [a, b) of bounds with their
// statistics into parts (elem indexes the whole buffers)
template <class T, class Elem>
void range_or_stats(double* parts, const index_t* bounds, index_t a, index_t b, const T* p,
                    const T* g, const Elem& elem) {
  if (parts) update_range_stats(parts, bounds, a, b, p, g, elem);
  else update_range<T>(a, b, elem);
}

template <class T>
void sgd_step(T* param, T* momentum_buf, const T* grad, index_t n, const SgdHyper<T>& h,
              const StepStatsOut& st) {
  const SgdHyper<T> hv = h;
  const bool mom = h.momentum != T(0) && momentum_buf != nullptr;
  run_step(n, kSgdCost, grad, st, [&](double* parts, const index_t* bounds, index_t a, index_t z) {
    T *p = param, *b = mom ? momentum_buf : nullptr;
    const T* g = grad;
    with_flags([&](auto kwd, auto kmom, auto kfirst, auto knest) {
      range_or_stats(parts, bounds, a, z, p, g, [=](index_t i, T& gi, T& p0) DG_INLINE_LAMBDA {
        T bi = kmom ? b[i] : T(0);  // a local: the buffer is untouched without momentum
        T pi = p0 = p[i];
        gi = g[i];
        sgd_update_t<T, kwd, kmom, kfirst, knest>(hv, pi, gi, bi);
        p[i] = pi;
        if (kmom) b[i] = bi;
        return pi;
      });
    }, hv.weight_decay != T(0), mom, mom && hv.first_step, mom && hv.nesterov);
  });
}

template <class T>
void adam_step(T* param, T* m, T* v, const T* grad, index_t n, const AdamHyper<T>& h,
               const StepStatsOut& st) {
  const AdamHyper<T> hv = h;
  run_step(n, kAdaptiveCost, grad, st, [&](double* parts, const index_t* bounds, index_t a, index_t z) {
    T *p = param, *mm = m, *vv = v;
    const T* g = grad;
    with_flags([&](auto kl2) {
      range_or_stats(parts, bounds, a, z, p, g, [=](index_t i, T& gi, T& p0) DG_INLINE_LAMBDA {
        T pi = p0 = p[i];
        gi = g[i];
        adam_update_t<T, kl2>(hv, pi, gi, mm[i], vv[i]);
        p[i] = pi;
        return pi;
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
  run_step(n, kAdaptiveCost, grad, st, [&](double* parts, const index_t* bounds, index_t a, index_t z) {
    T *p = param, *sq = square_avg;
    T* b = mom ? momentum_buf : nullptr;
    T* ga = centered ? grad_avg : nullptr;
    const T* g = grad;
    with_flags([&](auto kwd, auto kcen, auto kmom) {
      range_or_stats(parts, bounds, a, z, p, g, [=](index_t i, T& gr, T& p0) DG_INLINE_LAMBDA {
        // the state in locals; the buffers a configuration does not use are left alone
        T s = sq[i], bi = kmom ? b[i] : T(0), gi = kcen ? ga[i] : T(0);
        T pi = p0 = p[i];
        gr = g[i];
        rmsprop_update_t<T, kwd, kcen, kmom>(hv, pi, gr, s, bi, gi);
        p[i] = pi;
        sq[i] = s;
        if (kmom) b[i] = bi;
        if (kcen) ga[i] = gi;
        return pi;
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
