// Fused LSTM/GRU cell gate arithmetic on the CPU: one pass over (B, H) per time step, calling the
// shared per-unit formulas from deepgrad/rnn.h. Rows are independent, so batches big enough to
// pay for a fork are split over OpenMP threads.
#include "deepgrad/rnn.h"

namespace dg::cpu {

template <class T>
void lstm_cell_forward(T* h, T* c, T* act, const T* gates, const T* c_prev, index_t B, index_t H) {
  const int nt = threads_for(B * H * 4);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (index_t b = 0; b < B; ++b) {
    const T* a = gates + b * 4 * H;
    T* s = act + b * 4 * H;
    for (index_t j = 0; j < H; ++j) {
      lstm_unit_forward(a[j], a[H + j], a[2 * H + j], a[3 * H + j], c_prev[b * H + j], &s[j],
                        &s[H + j], &s[2 * H + j], &s[3 * H + j], &c[b * H + j], &h[b * H + j]);
    }
  }
}

template <class T>
void lstm_cell_backward(T* dgates, T* dc_prev, const T* dh, const T* dc, const T* c_prev,
                        const T* c, const T* act, index_t B, index_t H) {
  const int nt = threads_for(B * H * 4);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (index_t b = 0; b < B; ++b) {
    const T* s = act + b * 4 * H;
    T* d = dgates + b * 4 * H;
    for (index_t j = 0; j < H; ++j) {
      const index_t k = b * H + j;
      lstm_unit_backward(dh ? dh[k] : T(0), dc ? dc[k] : T(0), s[j], s[H + j], s[2 * H + j],
                         s[3 * H + j], c_prev[k], c[k], &d[j], &d[H + j], &d[2 * H + j],
                         &d[3 * H + j], &dc_prev[k]);
    }
  }
}

template <class T>
void gru_cell_forward(T* h, T* act, const T* xg, const T* hg, const T* h_prev, index_t B, index_t H) {
  const int nt = threads_for(B * H * 4);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (index_t b = 0; b < B; ++b) {
    const T* x = xg + b * 3 * H;
    const T* g = hg + b * 3 * H;
    T* s = act + b * 4 * H;
    for (index_t j = 0; j < H; ++j) {
      const index_t k = b * H + j;
      gru_unit_forward(x[j], x[H + j], x[2 * H + j], g[j], g[H + j], g[2 * H + j], h_prev[k],
                       &s[j], &s[H + j], &s[2 * H + j], &h[k]);
      s[3 * H + j] = g[2 * H + j];
    }
  }
}

template <class T>
void gru_cell_backward(T* dxg, T* dhg, T* dh_prev, const T* dh, const T* h_prev, const T* act,
                       index_t B, index_t H) {
  const int nt = threads_for(B * H * 4);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (index_t b = 0; b < B; ++b) {
    const T* s = act + b * 4 * H;
    T* dx = dxg + b * 3 * H;
    T* dg = dhg + b * 3 * H;
    for (index_t j = 0; j < H; ++j) {
      const index_t k = b * H + j;
      gru_unit_backward(dh[k], s[j], s[H + j], s[2 * H + j], s[3 * H + j], h_prev[k], &dx[j],
                        &dx[H + j], &dx[2 * H + j], &dg[j], &dg[H + j], &dg[2 * H + j],
                        &dh_prev[k]);
    }
  }
}

#define DG_INSTANTIATE(T)                                                                        \
  template void lstm_cell_forward<T>(T*, T*, T*, const T*, const T*, index_t, index_t);          \
  template void lstm_cell_backward<T>(T*, T*, const T*, const T*, const T*, const T*, const T*,  \
                                      index_t, index_t);                                         \
  template void gru_cell_forward<T>(T*, T*, const T*, const T*, const T*, index_t, index_t);     \
  template void gru_cell_backward<T>(T*, T*, T*, const T*, const T*, const T*, index_t, index_t);
DG_INSTANTIATE(float)
DG_INSTANTIATE(double)
#undef DG_INSTANTIATE

}  // namespace dg::cpu
