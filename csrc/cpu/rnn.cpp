// Fused LSTM/GRU cell gate arithmetic on the CPU: one pass over (B, H) per time step, calling the
// shared per-unit formulas from deepgrad/rnn.h. Each row is one loop over the H units that GCC
// vectorizes (AVX2 clone): float32 takes the vectorizable sigmoid/tanh of cpu/vec_math.h (same
// formulas; glibc's scalar tanhf/expf made a 64x64 LSTM cell ~60 ns per unit), float64 the
// libm ones. The float32 LSTM forward (five sigmoid/tanh per unit) runs the same formulas on
// AVX2 intrinsics where the CPU has them (cpu/avx2/act_avx2.cpp). Rows are independent, so
// batches big enough to pay for a fork are split over OpenMP threads.
#include <type_traits>

#include "cpu/avx2/act_avx2.h"
#include "cpu/ew_parallel.h"
#include "cpu/mid_fork.h"
#include "cpu/vec_math.h"
#include "deepgrad/cpu_features.h"
#include "deepgrad/rnn.h"

namespace dg::cpu {
namespace {

struct VecCellMath {
  static DG_VM_INLINE float sigmoid(float x) { return vm::sigmoid(x); }
  static DG_VM_INLINE double sigmoid(double x) { return sigmoid_(x); }
  static DG_VM_INLINE float tanh(float x) { return vm::tanh(x); }
  static DG_VM_INLINE double tanh(double x) { return std::tanh(x); }
};
using M = VecCellMath;

// Per-element cost for the threading grain (five transcendental functions per LSTM unit).
constexpr index_t kCellCost = 16;

// Rows over threads: a cell step is 5-50 us at common sizes, so the fork goes through the
// mid-size fork's backoff (cpu/mid_fork.h), which keeps it on the calling thread while forks
// wait for a busy CPU.
// kFork false: all rows on the calling thread (the sequence kernels split rows themselves).
template <bool kFork = true, class F>
void rows(index_t B, index_t H, F&& row) {
  const int nt = kFork ? threads_for(B * H * kCellCost) : 1;
  if (nt > 1 && mid_fork_allowed()) {
    fork_team(nt, [&](int t, int nteam) {
      index_t lo, hi;
      split_units(B, nteam, t, 1, &lo, &hi);
      for (index_t b = lo; b < hi; ++b) row(b);
    });
    return;
  }
  for (index_t b = 0; b < B; ++b) row(b);
}

template <class T>
DG_CLONES void lstm_fwd_row(T* __restrict h, T* __restrict c, T* __restrict s,
                            const T* __restrict a, const T* __restrict cp, index_t H) {
  for (index_t j = 0; j < H; ++j)
    lstm_unit_forward<T, M>(a[j], a[H + j], a[2 * H + j], a[3 * H + j], cp[j], &s[j], &s[H + j],
                            &s[2 * H + j], &s[3 * H + j], &c[j], &h[j]);
}

template <class T, bool kDh, bool kDc>
DG_CLONES void lstm_bwd_row(T* __restrict d, T* __restrict dcp, const T* __restrict dh,
                            const T* __restrict dc, const T* __restrict cp,
                            const T* __restrict c, const T* __restrict s, index_t H) {
  for (index_t j = 0; j < H; ++j)
    lstm_unit_backward<T, M>(kDh ? dh[j] : T(0), kDc ? dc[j] : T(0), s[j], s[H + j],
                             s[2 * H + j], s[3 * H + j], cp[j], c[j], &d[j], &d[H + j],
                             &d[2 * H + j], &d[3 * H + j], &dcp[j]);
}

template <class T>
DG_CLONES void gru_fwd_row(T* __restrict h, T* __restrict s, const T* __restrict x,
                           const T* __restrict g, const T* __restrict hp, index_t H) {
  for (index_t j = 0; j < H; ++j) {
    gru_unit_forward<T, M>(x[j], x[H + j], x[2 * H + j], g[j], g[H + j], g[2 * H + j], hp[j],
                           &s[j], &s[H + j], &s[2 * H + j], &h[j]);
    s[3 * H + j] = g[2 * H + j];
  }
}

template <class T>
DG_CLONES void gru_bwd_row(T* __restrict dx, T* __restrict dg, T* __restrict dhp,
                           const T* __restrict dh, const T* __restrict s, const T* __restrict hp,
                           index_t H) {
  for (index_t j = 0; j < H; ++j)
    gru_unit_backward(dh[j], s[j], s[H + j], s[2 * H + j], s[3 * H + j], hp[j], &dx[j],
                      &dx[H + j], &dx[2 * H + j], &dg[j], &dg[H + j], &dg[2 * H + j], &dhp[j]);
}

// The cell kernels over B rows, split over threads (kFork) or on the calling thread.
template <bool kFork, class T>
void lstm_fwd(T* h, T* c, T* act, const T* gates, const T* c_prev, index_t B, index_t H) {
#ifdef DG_HAVE_AVX2_BUILD
  if constexpr (std::is_same_v<T, float>) {  // the same formulas on AVX2/FMA intrinsics
    static const bool avx2 = cpu_has_avx2_fma();
    if (avx2) {
      rows<kFork>(B, H, [&](index_t b) {
        avx2::lstm_forward_row_f32(h + b * H, c + b * H, act + b * 4 * H, gates + b * 4 * H,
                                   c_prev + b * H, H);
      });
      return;
    }
  }
#endif
  rows<kFork>(B, H, [&](index_t b) {
    lstm_fwd_row(h + b * H, c + b * H, act + b * 4 * H, gates + b * 4 * H, c_prev + b * H, H);
  });
}

template <bool kFork, class T>
void lstm_bwd(T* dgates, T* dc_prev, const T* dh, const T* dc, const T* c_prev, const T* c,
              const T* act, index_t B, index_t H) {
  rows<kFork>(B, H, [&](index_t b) {
    T* d = dgates + b * 4 * H;
    T* dcp = dc_prev + b * H;
    const T* dhb = dh ? dh + b * H : nullptr;
    const T* dcb = dc ? dc + b * H : nullptr;
    const T* cpb = c_prev + b * H;
    const T* cb = c + b * H;
    const T* s = act + b * 4 * H;
    if (dh && dc) lstm_bwd_row<T, true, true>(d, dcp, dhb, dcb, cpb, cb, s, H);
    else if (dh) lstm_bwd_row<T, true, false>(d, dcp, dhb, dcb, cpb, cb, s, H);
    else if (dc) lstm_bwd_row<T, false, true>(d, dcp, dhb, dcb, cpb, cb, s, H);
    else lstm_bwd_row<T, false, false>(d, dcp, dhb, dcb, cpb, cb, s, H);
  });
}

template <bool kFork, class T>
void gru_fwd(T* h, T* act, const T* xg, const T* hg, const T* h_prev, index_t B, index_t H) {
  rows<kFork>(B, H, [&](index_t b) {
    gru_fwd_row(h + b * H, act + b * 4 * H, xg + b * 3 * H, hg + b * 3 * H, h_prev + b * H, H);
  });
}

template <bool kFork, class T>
void gru_bwd(T* dxg, T* dhg, T* dh_prev, const T* dh, const T* h_prev, const T* act, index_t B,
             index_t H) {
  rows<kFork>(B, H, [&](index_t b) {
    gru_bwd_row(dxg + b * 3 * H, dhg + b * 3 * H, dh_prev + b * H, dh + b * H, act + b * 4 * H,
                h_prev + b * H, H);
  });
}

}  // namespace

template <class T>
void lstm_cell_forward(T* h, T* c, T* act, const T* gates, const T* c_prev, index_t B, index_t H) {
  lstm_fwd<true>(h, c, act, gates, c_prev, B, H);
}
template <class T>
void lstm_cell_forward_here(T* h, T* c, T* act, const T* gates, const T* c_prev, index_t B,
                            index_t H) {
  lstm_fwd<false>(h, c, act, gates, c_prev, B, H);
}
template <class T>
void lstm_cell_backward(T* dgates, T* dc_prev, const T* dh, const T* dc, const T* c_prev,
                        const T* c, const T* act, index_t B, index_t H) {
  lstm_bwd<true>(dgates, dc_prev, dh, dc, c_prev, c, act, B, H);
}
template <class T>
void lstm_cell_backward_here(T* dgates, T* dc_prev, const T* dh, const T* dc, const T* c_prev,
                             const T* c, const T* act, index_t B, index_t H) {
  lstm_bwd<false>(dgates, dc_prev, dh, dc, c_prev, c, act, B, H);
}
template <class T>
void gru_cell_forward(T* h, T* act, const T* xg, const T* hg, const T* h_prev, index_t B, index_t H) {
  gru_fwd<true>(h, act, xg, hg, h_prev, B, H);
}
template <class T>
void gru_cell_forward_here(T* h, T* act, const T* xg, const T* hg, const T* h_prev, index_t B,
                           index_t H) {
  gru_fwd<false>(h, act, xg, hg, h_prev, B, H);
}
template <class T>
void gru_cell_backward(T* dxg, T* dhg, T* dh_prev, const T* dh, const T* h_prev, const T* act,
                       index_t B, index_t H) {
  gru_bwd<true>(dxg, dhg, dh_prev, dh, h_prev, act, B, H);
}
template <class T>
void gru_cell_backward_here(T* dxg, T* dhg, T* dh_prev, const T* dh, const T* h_prev,
                            const T* act, index_t B, index_t H) {
  gru_bwd<false>(dxg, dhg, dh_prev, dh, h_prev, act, B, H);
}

#define DG_INSTANTIATE_CELLS(T, SUFFIX)                                                         \
  template void lstm_cell_forward##SUFFIX<T>(T*, T*, T*, const T*, const T*, index_t, index_t);  \
  template void lstm_cell_backward##SUFFIX<T>(T*, T*, const T*, const T*, const T*, const T*,    \
                                              const T*, index_t, index_t);                       \
  template void gru_cell_forward##SUFFIX<T>(T*, T*, const T*, const T*, const T*, index_t,       \
                                            index_t);                                            \
  template void gru_cell_backward##SUFFIX<T>(T*, T*, T*, const T*, const T*, const T*, index_t,  \
                                             index_t);
#define DG_INSTANTIATE(T) DG_INSTANTIATE_CELLS(T, ) DG_INSTANTIATE_CELLS(T, _here)
DG_INSTANTIATE(float)
DG_INSTANTIATE(double)
#undef DG_INSTANTIATE
#undef DG_INSTANTIATE_CELLS

}  // namespace dg::cpu
