// Layer norm forward and backward on the CPU: one row per iteration, statistics in double in a
// fixed order, x̂ through math.h's layer_norm_xhat, as the CUDA kernels (cuda/norm_layers.cu).
// A finite float32 row never overflows; a row with NaN/Inf gives NaN in the whole row.
#include "cpu/norm_layers.h"

#include <vector>

#include "cpu/ew_parallel.h"
#include "deepgrad/math.h"

namespace dg::cpu {
namespace {

template <class T>
DG_CLONES void ln_rows_forward(T* y, T* mean, T* invstd, const T* x, const T* gamma, const T* beta,
                               index_t lo, index_t hi, index_t d, double eps) {
  for (index_t r = lo; r < hi; ++r) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
    double s = 0.0;
    for (index_t j = 0; j < d; ++j) s += xr[j];
    const double mu = s / double(d);
    double q = 0.0;
    for (index_t j = 0; j < d; ++j) {
      const double t = xr[j] - mu;
      q += t * t;
    }
    const double inv = layer_norm_invstd(q / double(d), eps);
    mean[r] = T(mu);
    invstd[r] = T(inv);
    for (index_t j = 0; j < d; ++j)
      yr[j] = layer_norm_xhat<T>(xr[j], mu, inv) * (gamma ? gamma[j] : T(1)) +
              (beta ? beta[j] : T(0));
  }
}

template <class T>
DG_CLONES void ln_rows_backward_dx(T* dx, const T* dy, const T* x, const T* gamma, const T* mean,
                                   const T* invstd, index_t lo, index_t hi, index_t d) {
  for (index_t r = lo; r < hi; ++r) {
    const T* xr = x + r * d;
    const T* dyr = dy + r * d;
    T* dxr = dx + r * d;
    const double mu = mean[r], inv = invstd[r];
    double sg = 0.0, sgx = 0.0;
    for (index_t j = 0; j < d; ++j) {
      const T g = dyr[j] * (gamma ? gamma[j] : T(1));
      sg += g;
      sgx += double(g) * layer_norm_xhat<T>(xr[j], mu, inv);
    }
    const T mg = T(sg / double(d)), mgx = T(sgx / double(d));
    for (index_t j = 0; j < d; ++j) {
      const T g = dyr[j] * (gamma ? gamma[j] : T(1));
      dxr[j] = invstd[r] * (g - mg - layer_norm_xhat<T>(xr[j], mu, inv) * mgx);
    }
  }
}

// Columns [c0, c1): every row in order, sums in double (the same bits for any split).
template <class T>
DG_CLONES void ln_cols_backward_params(T* dgamma, T* dbeta, const T* dy, const T* x,
                                       const T* mean, const T* invstd, index_t c0, index_t c1,
                                       index_t n, index_t d) {
  std::vector<double> sdy(static_cast<size_t>(c1 - c0), 0.0), sdyx(sdy.size(), 0.0);
  for (index_t r = 0; r < n; ++r) {
    const T* xr = x + r * d;
    const T* dyr = dy + r * d;
    const double mu = mean[r], inv = invstd[r];
    for (index_t j = c0; j < c1; ++j) {
      const double g = dyr[j];
      sdy[j - c0] += g;
      sdyx[j - c0] += g * double(layer_norm_xhat<T>(xr[j], mu, inv));
    }
  }
  for (index_t j = c0; j < c1; ++j) {
    if (dgamma) dgamma[j] += T(sdyx[j - c0]);
    if (dbeta) dbeta[j] += T(sdy[j - c0]);
  }
}

}  // namespace

template <class T>
void layer_norm_forward(T* y, T* mean, T* invstd, const T* x, const T* gamma, const T* beta,
                        index_t n, index_t d, double eps) {
  parallel_ranges(n, d * 8, [&](index_t lo, index_t hi) {
    ln_rows_forward(y, mean, invstd, x, gamma, beta, lo, hi, d, eps);
  });
}

template <class T>
void layer_norm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma,
                         const T* mean, const T* invstd, index_t n, index_t d) {
  if (n == 0 || d == 0) return;
  if (dx)
    parallel_ranges(n, d * 10, [&](index_t lo, index_t hi) {
      ln_rows_backward_dx(dx, dy, x, gamma, mean, invstd, lo, hi, d);
    });
  if (dgamma || dbeta)
    parallel_ranges(d, n * 6, [&](index_t lo, index_t hi) {
      ln_cols_backward_params(dgamma, dbeta, dy, x, mean, invstd, lo, hi, n, d);
    });
}

#define DG_INST(T)                                                                              \
  template void layer_norm_forward<T>(T*, T*, T*, const T*, const T*, const T*, index_t, index_t, \
                                      double);                                                    \
  template void layer_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,        \
                                       const T*, index_t, index_t);
DG_INST(float)
DG_INST(double)
#undef DG_INST

}  // namespace dg::cpu
