// Loss kernels: elementwise losses (mse, bce, bce_logits) and fused softmax cross-entropy from
// logits. Sums are accumulated in double over fixed chunks (deterministic for any thread count).
#include <cmath>
#include <type_traits>

#include "cpu/ew_parallel.h"
#include "cpu/vec_math.h"
#include "deepgrad/kernels.h"

namespace dg::cpu {
namespace {

constexpr index_t kLossChunk = 4096;

template <Loss L, class T> DG_HOST_DEVICE T term(T p, T t) {
  if constexpr (L == Loss::mse) return mse_term(p, t);
  else if constexpr (L == Loss::bce) return bce_term(p, t);
  else return bce_logits_term(p, t);
}
template <Loss L, class T> DG_VM_INLINE T term_grad(T p, T t) {
  if constexpr (L == Loss::mse) return mse_grad(p, t);
  else if constexpr (L == Loss::bce) return bce_grad(p, t);
  else if constexpr (std::is_same_v<T, float>) return vm::sigmoid(p) - t;  // bce_logits_grad, vector exp
  else return bce_logits_grad(p, t);
}

// Writes terms (when non-null) and returns their sum over [0, n), in blocks of 256 through a
// stack buffer so the term loop and the 8-lane sum vectorize (fixed order: deterministic).
template <Loss L, class T>
DG_CLONES double terms_range(T* terms, const T* p, const T* t, index_t n) {
  constexpr index_t kBlock = 256;
  T buf[kBlock];
  double s = 0;
  for (index_t b = 0; b < n; b += kBlock) {
    const index_t len = std::min(kBlock, n - b);
    T* out = terms ? terms + b : buf;
    for (index_t i = 0; i < len; ++i) out[i] = term<L, T>(p[b + i], t[b + i]);
    s += vm::sum_lanes(out, len);
  }
  return s;
}

template <Loss L, class T>
DG_CLONES void grad_range(T* d, const T* p, const T* t, const T* g, T scale, index_t n) {
  if (g)
    for (index_t i = 0; i < n; ++i) d[i] = g[i] * term_grad<L, T>(p[i], t[i]);
  else
    for (index_t i = 0; i < n; ++i) d[i] = scale * term_grad<L, T>(p[i], t[i]);
}

template <class F>
void with_loss(Loss k, F&& f) {
  switch (k) {
    case Loss::mse: f(std::integral_constant<Loss, Loss::mse>{}); return;
    case Loss::bce: f(std::integral_constant<Loss, Loss::bce>{}); return;
    case Loss::bce_logits: f(std::integral_constant<Loss, Loss::bce_logits>{}); return;
    case Loss::cross_entropy: return;  // not elementwise: see cross_entropy_*
  }
}

constexpr index_t loss_cost(Loss k) { return k == Loss::mse ? 2 : 20; }

// One row of logits: its max and the sum of e^{x - max} (double, fixed order).
template <class T>
DG_VM_INLINE void row_stats(const T* x, index_t c, T* m, double* s) {
  *m = vm::max_lanes(x, c);
  *s = vm::sum_exp_shifted(x, c, *m);
}

}  // namespace

template <class T> double loss_forward(T* terms, Loss kind, const T* pred, const T* target, index_t n) {
  double total = 0;
  with_loss(kind, [&](auto L) {
    total = chunked_sum(n, kLossChunk, loss_cost(L), [&](index_t lo, index_t hi) {
      return terms_range<decltype(L)::value, T>(terms ? terms + lo : nullptr, pred + lo, target + lo, hi - lo);
    });
  });
  return total;
}

template <class T>
void loss_backward(T* dpred, Loss kind, const T* pred, const T* target, const T* grad_terms,
                   T scale, index_t n) {
  with_loss(kind, [&](auto L) {
    parallel_ranges(n, loss_cost(L), [&](index_t lo, index_t hi) {
      grad_range<decltype(L)::value, T>(dpred + lo, pred + lo, target + lo,
                                        grad_terms ? grad_terms + lo : nullptr, scale, hi - lo);
    });
  });
}

namespace {

// Rows [lo, hi) of the fused cross-entropy; DG_CLONES so the row loops get the AVX2 build.
template <class T>
DG_CLONES double ce_rows_forward(T* losses, const T* logits, const std::int64_t* labels, index_t lo,
                                 index_t hi, index_t C) {
  double s = 0;
  for (index_t r = lo; r < hi; ++r) {
    const T* x = logits + r * C;
    T m;
    double se;
    row_stats(x, C, &m, &se);
    const T l = ce_row_loss<T>(x[labels[r]], m, T(se));
    if (losses) losses[r] = l;
    s += l;
  }
  return s;
}

template <class T>
DG_CLONES void ce_rows_backward(T* dlogits, const T* logits, const std::int64_t* labels,
                                const T* grad_rows, T scale, index_t lo, index_t hi, index_t C) {
  for (index_t r = lo; r < hi; ++r) {
    const T* x = logits + r * C;
    T* d = dlogits + r * C;
    T m;
    double se;
    row_stats(x, C, &m, &se);
    const T inv = T(1.0 / se);
    const T g = grad_rows ? grad_rows[r] : scale;
    // ce_grad (math.h) with the vector exp: e^{x - m} / s - [j == label]
    for (index_t j = 0; j < C; ++j) d[j] = g * (vm::exp_le0(x[j] - m) * inv);
    d[labels[r]] -= g;
  }
}

}  // namespace

template <class T>
double cross_entropy_forward(T* losses, const T* logits, const std::int64_t* labels, index_t N, index_t C) {
  // Rows are the chunks here: 4096 / C rows per chunk (at least one), combined in order.
  const index_t rows_per_chunk = std::max<index_t>(1, kLossChunk / std::max<index_t>(C, 1));
  return chunked_sum(N, rows_per_chunk, C * 20, [&](index_t lo, index_t hi) {
    return ce_rows_forward(losses, logits, labels, lo, hi, C);
  });
}

template <class T>
void cross_entropy_backward(T* dlogits, const T* logits, const std::int64_t* labels,
                            const T* grad_rows, T scale, index_t N, index_t C) {
  parallel_ranges(N, C * 40, [&](index_t lo, index_t hi) {
    ce_rows_backward(dlogits, logits, labels, grad_rows, scale, lo, hi, C);
  });
}

#define DG_INST(T)                                                                                 \
  template double loss_forward<T>(T*, Loss, const T*, const T*, index_t);                           \
  template void loss_backward<T>(T*, Loss, const T*, const T*, const T*, T, index_t);               \
  template double cross_entropy_forward<T>(T*, const T*, const std::int64_t*, index_t, index_t);    \
  template void cross_entropy_backward<T>(T*, const T*, const std::int64_t*, const T*, T, index_t, index_t);
DG_INST(float)
DG_INST(double)
#undef DG_INST

}  // namespace dg::cpu
