// A whole LSTM sequence in one native call each way (nn.LSTM's tape node on the CPU): per step
// one GEMM (gates = xw_t + h_{t-1} W, accumulated into a copy of xw_t) and the fused cell of
// rnn.cpp; the backward walks the steps in reverse (cell backward, dh_{t-1} = dgates W^T) and
// forms dW with one GEMM over all steps. The Python loop this replaces cost ~20 us per step in
// calls, Tensors and temporaries, more than the kernels at hidden sizes below ~64.
#include <cmath>
#include <cstring>
#include <vector>

#include "deepgrad/gemm.h"
#include "deepgrad/rnn.h"

namespace dg::cpu {

template <class T>
void lstm_sequence_forward(T* y, T* hs, T* cs, T* acts, const T* xw, const T* w, index_t B,
                           index_t steps, index_t H) {
  const index_t G = 4 * H, BH = B * H;
  std::vector<T> gates(static_cast<size_t>(B * G));
  for (index_t t = 0; t < steps; ++t) {
    std::memcpy(gates.data(), xw + t * B * G, sizeof(T) * B * G);
    gemm<T>(gates.data(), hs + t * BH, w, B, G, H, H, G, G, false, false, T(1), T(1));
    lstm_cell_forward<T>(hs + (t + 1) * BH, cs + (t + 1) * BH, acts + t * B * G, gates.data(),
                         cs + t * BH, B, H);
  }
  // y (B, T+1, H): h_1 .. h_T, then c_T
  const index_t ld = (steps + 1) * H;
  for (index_t b = 0; b < B; ++b) {
    for (index_t t = 0; t < steps; ++t)
      std::memcpy(y + b * ld + t * H, hs + (t + 1) * BH + b * H, sizeof(T) * H);
    std::memcpy(y + b * ld + steps * H, cs + steps * BH + b * H, sizeof(T) * H);
  }
}

template <class T>
void lstm_sequence_backward(T* dxw, T* dw, T* dh0, T* dc0, double* norms, const T* gy,
                            const T* hs, const T* cs, const T* acts, const T* w, index_t B,
                            index_t steps, index_t H) {
  const index_t G = 4 * H, BH = B * H, ld = (steps + 1) * H;
  std::vector<T> dh(static_cast<size_t>(BH)), dc(static_cast<size_t>(BH)),
      dcp(static_cast<size_t>(BH)), dhn(static_cast<size_t>(BH), T(0));
  for (index_t b = 0; b < B; ++b)  // dL/dc_T
    std::memcpy(dc.data() + b * H, gy + b * ld + steps * H, sizeof(T) * H);
  for (index_t t = steps - 1; t >= 0; --t) {
    // dL/dh_t: from the output at step t and, through step t + 1, dhn
    double ss = 0.0;
    for (index_t b = 0; b < B; ++b) {
      const T* g = gy + b * ld + t * H;
      const T* n = dhn.data() + b * H;
      T* d = dh.data() + b * H;
      for (index_t j = 0; j < H; ++j) {
        d[j] = g[j] + n[j];
        ss += double(d[j]) * double(d[j]);
      }
    }
    if (norms) norms[t] = std::isfinite(ss) ? std::sqrt(ss) : std::nan("");
    T* dg = dxw + t * B * G;
    lstm_cell_backward<T>(dg, dcp.data(), dh.data(), dc.data(), cs + t * BH, cs + (t + 1) * BH,
                          acts + t * B * G, B, H);
    gemm<T>(dhn.data(), dg, w, B, H, G, G, G, H, false, true, T(1), T(0));  // dgates W^T
    dc.swap(dcp);
  }
  // dW = sum_t h_{t-1}^T dgates_t: hs[0 .. T-1] as one (T*B, H) matrix
  gemm<T>(dw, hs, dxw, H, G, steps * B, H, G, G, true, false, T(1), T(0));
  std::memcpy(dh0, dhn.data(), sizeof(T) * BH);
  std::memcpy(dc0, dc.data(), sizeof(T) * BH);
}

#define DG_INSTANTIATE(T)                                                                       \
  template void lstm_sequence_forward<T>(T*, T*, T*, T*, const T*, const T*, index_t, index_t,  \
                                         index_t);                                              \
  template void lstm_sequence_backward<T>(T*, T*, T*, T*, double*, const T*, const T*,         \
                                          const T*, const T*, const T*, index_t, index_t,       \
                                          index_t);
DG_INSTANTIATE(float)
DG_INSTANTIATE(double)
#undef DG_INSTANTIATE

}  // namespace dg::cpu
