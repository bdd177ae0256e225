// Whole RNN / GRU / LSTM sequences in one native call each way (the recurrent layers' tape node
// on the CPU): per step one GEMM (the pre-activations = xw_t + h_{t-1} W, accumulated into a
// copy of xw_t) and the activation or fused cell kernel; the backward walks the steps in
// reverse (cell backward, dh_{t-1} = d(pre-activations) W^T) and forms dW with one GEMM over
// all steps. The Python loop this replaces cost ~20 us per step in calls, Tensors and
// temporaries, more than the kernels at hidden sizes below ~64.
#include <cmath>
#include <cstring>
#include <vector>

#include "deepgrad/gemm.h"
#include "deepgrad/kernels.h"
#include "deepgrad/rnn.h"

namespace dg::cpu {
namespace {

// dh (B, H) = gy[:, t, :] (gy (B, ld/H, H)) + dhn, and ||dh|| into norms[t] (NaN if not finite).
template <class T>
void total_dh(T* dh, const T* gy, const T* dhn, index_t B, index_t H, index_t ld, index_t t,
              double* norms) {
  double ss = 0.0;
  for (index_t b = 0; b < B; ++b) {
    const T* g = gy + b * ld + t * H;
    const T* n = dhn + b * H;
    T* d = dh + b * H;
    for (index_t j = 0; j < H; ++j) {
      d[j] = g[j] + n[j];
      ss += double(d[j]) * double(d[j]);
    }
  }
  if (norms) norms[t] = std::isfinite(ss) ? std::sqrt(ss) : std::nan("");
}

// y (B, T, H) batch-first from hs[1..T] (time-major (T+1, B, H)); ld is y's row stride.
template <class T>
void batch_first(T* y, const T* hs, index_t B, index_t steps, index_t H, index_t ld) {
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < steps; ++t)
      std::memcpy(y + b * ld + t * H, hs + (t + 1) * B * H + b * H, sizeof(T) * H);
}

}  // namespace

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
  batch_first(y, hs, B, steps, H, ld);
  for (index_t b = 0; b < B; ++b)
    std::memcpy(y + b * ld + steps * H, cs + steps * BH + b * H, sizeof(T) * H);
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
    total_dh(dh.data(), gy, dhn.data(), B, H, ld, t, norms);  // output at t + step t + 1
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

template <class T>
void rnn_sequence_forward(T* y, T* hs, T* zs, const T* xw, const T* w, index_t B, index_t steps,
                          index_t H, Act act) {
  const index_t BH = B * H;
  for (index_t t = 0; t < steps; ++t) {
    T* z = zs + t * BH;
    std::memcpy(z, xw + t * BH, sizeof(T) * BH);
    gemm<T>(z, hs + t * BH, w, B, H, H, H, H, H, false, false, T(1), T(1));
    act_forward<T>(hs + (t + 1) * BH, z, BH, act, T(0.01));
  }
  batch_first(y, hs, B, steps, H, steps * H);
}

template <class T>
void rnn_sequence_backward(T* dxw, T* dw, T* dh0, double* norms, const T* gy, const T* hs,
                           const T* zs, const T* w, index_t B, index_t steps, index_t H, Act act) {
  const index_t BH = B * H;
  std::vector<T> dh(static_cast<size_t>(BH)), dhn(static_cast<size_t>(BH), T(0));
  for (index_t t = steps - 1; t >= 0; --t) {
    total_dh(dh.data(), gy, dhn.data(), B, H, steps * H, t, norms);
    T* dz = dxw + t * BH;
    act_backward<T>(dz, dh.data(), zs + t * BH, hs + (t + 1) * BH, BH, act, T(0.01));
    gemm<T>(dhn.data(), dz, w, B, H, H, H, H, H, false, true, T(1), T(0));  // dz W^T
  }
  gemm<T>(dw, hs, dxw, H, H, steps * B, H, H, H, true, false, T(1), T(0));
  std::memcpy(dh0, dhn.data(), sizeof(T) * BH);
}

template <class T>
void gru_sequence_forward(T* y, T* hs, T* acts, const T* xw, const T* w, const T* bh, index_t B,
                          index_t steps, index_t H) {
  const index_t G = 3 * H, BH = B * H;
  std::vector<T> hg(static_cast<size_t>(B * G));
  for (index_t t = 0; t < steps; ++t) {
    for (index_t b = 0; b < B; ++b)  // hg = b_hh, then += h_{t-1} W
      if (bh) std::memcpy(hg.data() + b * G, bh, sizeof(T) * G);
    gemm<T>(hg.data(), hs + t * BH, w, B, G, H, H, G, G, false, false, T(1), bh ? T(1) : T(0));
    gru_cell_forward<T>(hs + (t + 1) * BH, acts + t * B * 4 * H, xw + t * B * G, hg.data(),
                        hs + t * BH, B, H);
  }
  batch_first(y, hs, B, steps, H, steps * H);
}

template <class T>
void gru_sequence_backward(T* dxw, T* dw, T* dbh, T* dh0, double* norms, const T* gy,
                           const T* hs, const T* acts, const T* w, index_t B, index_t steps,
                           index_t H) {
  const index_t G = 3 * H, BH = B * H;
  std::vector<T> dh(static_cast<size_t>(BH)), dhn(static_cast<size_t>(BH), T(0));
  std::vector<T> dhg(static_cast<size_t>(steps * B * G));  // d(h W + b_hh), time-major
  for (index_t t = steps - 1; t >= 0; --t) {
    total_dh(dh.data(), gy, dhn.data(), B, H, steps * H, t, norms);
    T* dhg_t = dhg.data() + t * B * G;
    // dhn = z * dh (the direct part), then += dhg W^T
    gru_cell_backward<T>(dxw + t * B * G, dhg_t, dhn.data(), dh.data(), hs + t * BH,
                         acts + t * B * 4 * H, B, H);
    gemm<T>(dhn.data(), dhg_t, w, B, H, G, G, G, H, false, true, T(1), T(1));
  }
  gemm<T>(dw, hs, dhg.data(), H, G, steps * B, H, G, G, true, false, T(1), T(0));
  if (dbh) {  // column sums of dhg over all steps and rows, in order
    for (index_t j = 0; j < G; ++j) dbh[j] = T(0);
    for (index_t r = 0; r < steps * B; ++r) {
      const T* row = dhg.data() + r * G;
      for (index_t j = 0; j < G; ++j) dbh[j] += row[j];
    }
  }
  std::memcpy(dh0, dhn.data(), sizeof(T) * BH);
}

#define DG_INSTANTIATE(T)                                                                       \
  template void lstm_sequence_forward<T>(T*, T*, T*, T*, const T*, const T*, index_t, index_t,  \
                                         index_t);                                              \
  template void lstm_sequence_backward<T>(T*, T*, T*, T*, double*, const T*, const T*,         \
                                          const T*, const T*, const T*, index_t, index_t,       \
                                          index_t);                                            \
  template void rnn_sequence_forward<T>(T*, T*, T*, const T*, const T*, index_t, index_t,       \
                                        index_t, Act);                                          \
  template void rnn_sequence_backward<T>(T*, T*, T*, double*, const T*, const T*, const T*,     \
                                         const T*, index_t, index_t, index_t, Act);             \
  template void gru_sequence_forward<T>(T*, T*, T*, const T*, const T*, const T*, index_t,      \
                                        index_t, index_t);                                      \
  template void gru_sequence_backward<T>(T*, T*, T*, T*, double*, const T*, const T*,          \
                                         const T*, const T*, index_t, index_t, index_t);
DG_INSTANTIATE(float)
DG_INSTANTIATE(double)
#undef DG_INSTANTIATE

}  // namespace dg::cpu
