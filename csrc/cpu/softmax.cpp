// Row-wise softmax / log_softmax and their backward passes. Stable: each row subtracts its max
// before exponentiating; row sums are accumulated in double.
#include <cmath>

#include "cpu/ew_parallel.h"
#include "cpu/vec_math.h"
#include "deepgrad/kernels.h"

namespace dg::cpu {
namespace {

// x (rows, cols) -> y (rows, cols) for rows [0, rows). e^{x - max} goes through y first so the
// exp loop and the (8-lane, fixed-order) sum vectorize.
template <class T>
DG_CLONES void softmax_rows(T* y, const T* x, index_t rows, index_t c, bool log) {
  for (index_t r = 0; r < rows; ++r) {
    const T* xr = x + r * c;
    T* yr = y + r * c;
    const T m = vm::max_lanes(xr, c);
    for (index_t j = 0; j < c; ++j) yr[j] = vm::exp_le0(xr[j] - m);
    const double s = vm::sum_lanes(yr, c);
    if (log) {
      const T lse = T(std::log(s));
      for (index_t j = 0; j < c; ++j) yr[j] = (xr[j] - m) - lse;
    } else {
      const T inv = T(1.0 / s);
      for (index_t j = 0; j < c; ++j) yr[j] *= inv;
    }
  }
}

// softmax:     dx = y * (dy - sum(dy * y))
// log_softmax: dx = dy - exp(y) * sum(dy)
template <class T>
DG_CLONES void softmax_backward_rows(T* dx, const T* dy, const T* y, index_t rows, index_t c, bool log) {
  for (index_t r = 0; r < rows; ++r) {
    const T* dyr = dy + r * c;
    const T* yr = y + r * c;
    T* dxr = dx + r * c;
    if (log) {
      const T st = T(vm::sum_lanes(dyr, c));
      for (index_t j = 0; j < c; ++j) dxr[j] = dyr[j] - vm::exp_le0(yr[j]) * st;
    } else {
      for (index_t j = 0; j < c; ++j) dxr[j] = dyr[j] * yr[j];  // dx as scratch for the products
      const T st = T(vm::sum_lanes(dxr, c));
      for (index_t j = 0; j < c; ++j) dxr[j] = yr[j] * (dyr[j] - st);
    }
  }
}

}  // namespace

template <class T> void softmax_forward(T* y, const T* x, index_t rows, index_t cols, bool log) {
  if (cols == 0) return;
  // Threads split whole rows; the cost estimate counts one exp per element.
  parallel_ranges(rows, cols * 20, [&](index_t lo, index_t hi) {
    softmax_rows(y + lo * cols, x + lo * cols, hi - lo, cols, log);
  });
}

template <class T>
void softmax_backward(T* dx, const T* dy, const T* y, index_t rows, index_t cols, bool log) {
  if (cols == 0) return;
  parallel_ranges(rows, cols * (log ? 20 : 3), [&](index_t lo, index_t hi) {
    softmax_backward_rows(dx + lo * cols, dy + lo * cols, y + lo * cols, hi - lo, cols, log);
  });
}

template void softmax_forward<float>(float*, const float*, index_t, index_t, bool);
template void softmax_forward<double>(double*, const double*, index_t, index_t, bool);
template void softmax_backward<float>(float*, const float*, const float*, index_t, index_t, bool);
template void softmax_backward<double>(double*, const double*, const double*, index_t, index_t, bool);

}  // namespace dg::cpu
