// Optimizer updates over flat buffers, one pass each; the per-element formulas are math.h's
// sgd_update / adam_update / rmsprop_update (shared with the CUDA kernels).
#include "cpu/ew_parallel.h"
#include "deepgrad/kernels.h"

namespace dg::cpu {
namespace {

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

template <class T> void sgd_step(T* param, T* momentum_buf, const T* grad, index_t n, const SgdHyper<T>& h) {
  const bool have_buf = h.momentum != T(0) && momentum_buf != nullptr;
  parallel_ranges(n, kSgdCost, [&](index_t lo, index_t hi) {
    if (have_buf) sgd_range<T, true>(param + lo, momentum_buf + lo, grad + lo, hi - lo, h);
    else sgd_range<T, false>(param + lo, nullptr, grad + lo, hi - lo, h);
  });
}

template <class T> void adam_step(T* param, T* m, T* v, const T* grad, index_t n, const AdamHyper<T>& h) {
  parallel_ranges(n, kAdaptiveCost, [&](index_t lo, index_t hi) {
    adam_range(param + lo, m + lo, v + lo, grad + lo, hi - lo, h);
  });
}

template <class T>
void rmsprop_step(T* param, T* square_avg, T* momentum_buf, T* grad_avg, const T* grad, index_t n,
                  const RmspropHyper<T>& h) {
  const bool have_buf = h.momentum > T(0) && momentum_buf != nullptr;
  const bool centered = h.centered && grad_avg != nullptr;
  parallel_ranges(n, kAdaptiveCost, [&](index_t lo, index_t hi) {
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
  });
}

#define DG_INST(T)                                                                              \
  template void sgd_step<T>(T*, T*, const T*, index_t, const SgdHyper<T>&);                     \
  template void adam_step<T>(T*, T*, T*, const T*, index_t, const AdamHyper<T>&);               \
  template void rmsprop_step<T>(T*, T*, T*, T*, const T*, index_t, const RmspropHyper<T>&);
DG_INST(float)
DG_INST(double)
#undef DG_INST

}  // namespace dg::cpu
