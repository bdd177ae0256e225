// Fused recurrent-cell gate arithmetic: the elementwise part of one LSTM or GRU time step.
// The matmuls (x·W_ih, h·W_hh) stay in gemm; these kernels take the gate pre-activations and do
// everything after them in one pass, forward and backward. The per-unit scalar formulas are
// DG_HOST_DEVICE so the CUDA kernels run exactly the math the CPU tests check.
#pragma once
#include "deepgrad/common.h"
#include "deepgrad/math.h"

namespace dg {

// The scalar functions the cell formulas call: math.h's sigmoid_ and std::tanh. The CPU float32
// loops pass a policy with the same formulas in vectorizable form (cpu/vec_math.h) instead.
struct CellMath {
  DG_HOST_DEVICE static float sigmoid(float x) { return sigmoid_(x); }
  DG_HOST_DEVICE static double sigmoid(double x) { return sigmoid_(x); }
  DG_HOST_DEVICE static float tanh(float x) { return std::tanh(x); }
  DG_HOST_DEVICE static double tanh(double x) { return std::tanh(x); }
};

// ---- LSTM (gate order i, f, g, o as in PyTorch) ------------------------------------------------
// i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o); c = f·c_prev + i·g; h = o·tanh(c).
template <class T, class M = CellMath>
DG_HOST_DEVICE void lstm_unit_forward(T a_i, T a_f, T a_g, T a_o, T c_prev, T* i, T* f, T* g,
                                      T* o, T* c, T* h) {
  *i = M::sigmoid(a_i);
  *f = M::sigmoid(a_f);
  *g = M::tanh(a_g);
  *o = M::sigmoid(a_o);
  *c = *f * c_prev + *i * *g;
  *h = *o * M::tanh(*c);
}

// Given dL/dh and dL/dc (the cell state's gradient from the next step and from outside), returns
// dL/d(a_i, a_f, a_g, a_o) and dL/dc_prev.
template <class T, class M = CellMath>
DG_HOST_DEVICE void lstm_unit_backward(T dh, T dc, T i, T f, T g, T o, T c_prev, T c, T* da_i,
                                       T* da_f, T* da_g, T* da_o, T* dc_prev) {
  const T tc = M::tanh(c);
  const T dct = dc + dh * o * (T(1) - tc * tc);  // total gradient reaching c
  *da_o = dh * tc * o * (T(1) - o);
  *da_i = dct * g * i * (T(1) - i);
  *da_f = dct * c_prev * f * (T(1) - f);
  *da_g = dct * i * (T(1) - g * g);
  *dc_prev = dct * f;
}

// ---- GRU (gate order r, z, n as in PyTorch) ----------------------------------------------------
// r = σ(x_r + h_r), z = σ(x_z + h_z), n = tanh(x_n + r·h_n), h = (1 − z)·n + z·h_prev,
// where x_* = x·W_ih + b_ih and h_* = h_prev·W_hh + b_hh.
template <class T, class M = CellMath>
DG_HOST_DEVICE void gru_unit_forward(T x_r, T x_z, T x_n, T h_r, T h_z, T h_n, T h_prev, T* r,
                                     T* z, T* n, T* h) {
  *r = M::sigmoid(x_r + h_r);
  *z = M::sigmoid(x_z + h_z);
  *n = M::tanh(x_n + *r * h_n);
  *h = (T(1) - *z) * *n + *z * h_prev;
}

// Given dL/dh, returns dL/d(x_r, x_z, x_n), dL/d(h_r, h_z, h_n) and the direct part of
// dL/dh_prev (the part through W_hh is added by the caller's matmul).
template <class T>
DG_HOST_DEVICE void gru_unit_backward(T dh, T r, T z, T n, T h_n, T h_prev, T* dx_r, T* dx_z,
                                      T* dx_n, T* dh_r, T* dh_z, T* dh_n, T* dh_prev) {
  const T dan = dh * (T(1) - z) * (T(1) - n * n);
  const T daz = dh * (h_prev - n) * z * (T(1) - z);
  const T dar = dan * h_n * r * (T(1) - r);
  *dx_r = dar;
  *dh_r = dar;
  *dx_z = daz;
  *dh_z = daz;
  *dx_n = dan;
  *dh_n = dan * r;
  *dh_prev = dh * z;
}

namespace cpu {

// gates (B, 4H), c_prev (B, H) -> h (B, H), c (B, H), act (B, 4H) = activated (i, f, g, o)
template <class T>
void lstm_cell_forward(T* h, T* c, T* act, const T* gates, const T* c_prev, index_t B, index_t H);

// dh (B, H) or null, dc (B, H) or null, c_prev (B, H), c (B, H), act (B, 4H)
//   -> dgates (B, 4H) (overwritten), dc_prev (B, H) (overwritten)
template <class T>
void lstm_cell_backward(T* dgates, T* dc_prev, const T* dh, const T* dc, const T* c_prev,
                        const T* c, const T* act, index_t B, index_t H);

// xg (B, 3H), hg (B, 3H), h_prev (B, H) -> h (B, H), act (B, 4H) = (r, z, n, h_n)
template <class T>
void gru_cell_forward(T* h, T* act, const T* xg, const T* hg, const T* h_prev, index_t B, index_t H);

// dh (B, H), h_prev (B, H), act (B, 4H) -> dxg (B, 3H), dhg (B, 3H), dh_prev (B, H) (overwritten)
template <class T>
void gru_cell_backward(T* dxg, T* dhg, T* dh_prev, const T* dh, const T* h_prev, const T* act,
                       index_t B, index_t H);

// The same four cell kernels on the calling thread only (no fork): for callers that have split
// their rows over threads already (the sequence kernels below). Same results, bit for bit.
template <class T>
void lstm_cell_forward_here(T* h, T* c, T* act, const T* gates, const T* c_prev, index_t B,
                            index_t H);
template <class T>
void lstm_cell_backward_here(T* dgates, T* dc_prev, const T* dh, const T* dc, const T* c_prev,
                             const T* c, const T* act, index_t B, index_t H);
template <class T>
void gru_cell_forward_here(T* h, T* act, const T* xg, const T* hg, const T* h_prev, index_t B,
                           index_t H);
template <class T>
void gru_cell_backward_here(T* dxg, T* dhg, T* dh_prev, const T* dh, const T* h_prev,
                            const T* act, index_t B, index_t H);

// ---- a whole LSTM sequence on the CPU (one native call each way; nn.LSTM's tape node) ----
// xw (T*B, 4H): x_t W_ih + b for every step, time-major; w (H, 4H); hs[0], cs[0] (B, H) hold
// h0 and c0 on entry. Writes hs[1..T], cs[1..T] (hs, cs: (T+1, B, H)), acts (T, B, 4H) and
// y (B, T+1, H) = h_1 .. h_T then c_T.
template <class T>
void lstm_sequence_forward(T* y, T* hs, T* cs, T* acts, const T* xw, const T* w, index_t B,
                           index_t steps, index_t H);

// gy (B, T+1, H): dL/dy -> dxw (T*B, 4H), dw (H, 4H) (both overwritten), dh0, dc0 (B, H);
// norms (T) or null: ||dL/dh_t|| per step (NaN where dL/dh_t is not finite).
template <class T>
void lstm_sequence_backward(T* dxw, T* dw, T* dh0, T* dc0, double* norms, const T* gy,
                            const T* hs, const T* cs, const T* acts, const T* w, index_t B,
                            index_t steps, index_t H);

// ---- whole RNN and GRU sequences on the CPU (same layout conventions as the LSTM) ---------
// Elman: xw (T*B, H), w (H, H), hs[0] = h0 on entry -> hs[1..T], zs (T, B, H) pre-activations,
// y (B, T, H); h_t = act(xw_t + h_{t-1} w).
template <class T>
void rnn_sequence_forward(T* y, T* hs, T* zs, const T* xw, const T* w, index_t B, index_t steps,
                          index_t H, Act act);
// gy (B, T, H) -> dxw (T*B, H), dw (H, H), dh0 (B, H), norms (T) or null.
template <class T>
void rnn_sequence_backward(T* dxw, T* dw, T* dh0, double* norms, const T* gy, const T* hs,
                           const T* zs, const T* w, index_t B, index_t steps, index_t H, Act act);

// GRU: xw (T*B, 3H) = x W_ih + b_ih, w (H, 3H), bh (3H) or null, hs[0] = h0 on entry ->
// hs[1..T], acts (T, B, 4H) (the cell's saved values), y (B, T, H).
template <class T>
void gru_sequence_forward(T* y, T* hs, T* acts, const T* xw, const T* w, const T* bh, index_t B,
                          index_t steps, index_t H);
// gy (B, T, H) -> dxw (T*B, 3H), dw (H, 3H), dbh (3H) or null, dh0 (B, H), norms (T) or null.
template <class T>
void gru_sequence_backward(T* dxw, T* dw, T* dbh, T* dh0, double* norms, const T* gy,
                           const T* hs, const T* acts, const T* w, index_t B, index_t steps,
                           index_t H);

// The fast sequence kernels' micro-kernel: AVX-512 where the CPU has it (twice the multiply-adds
// per cycle on full-width cores, same results), else gemm.h's AVX2 one, else the stepwise path.
// rnn_set_kernel_limit(1) keeps them to AVX2 (tests and benchmarks of both); 0 restores the best.
// The float32 LSTM forward cell takes AVX-512 under the same switch (same bits as its AVX2 loop).
void rnn_set_kernel_limit(int limit);
bool rnn_use_avx512();  // AVX-512 kernels allowed and the CPU has them
const char* rnn_fast_kernel_name();  // "avx512", "avx2" or "stepwise"

// The reference implementations of the six sequence kernels above (same arguments): per step one
// gemm() call (which packs W_hh again every step) and one cell kernel call over the whole batch.
// The fast kernels fall back to these where the CPU lacks AVX2/FMA; tests and bench_rnn.py
// compare against them.
template <class T>
void lstm_sequence_forward_stepwise(T* y, T* hs, T* cs, T* acts, const T* xw, const T* w,
                                    index_t B, index_t steps, index_t H);
template <class T>
void lstm_sequence_backward_stepwise(T* dxw, T* dw, T* dh0, T* dc0, double* norms, const T* gy,
                                     const T* hs, const T* cs, const T* acts, const T* w,
                                     index_t B, index_t steps, index_t H);
template <class T>
void rnn_sequence_forward_stepwise(T* y, T* hs, T* zs, const T* xw, const T* w, index_t B,
                                   index_t steps, index_t H, Act act);
template <class T>
void rnn_sequence_backward_stepwise(T* dxw, T* dw, T* dh0, double* norms, const T* gy,
                                    const T* hs, const T* zs, const T* w, index_t B,
                                    index_t steps, index_t H, Act act);
template <class T>
void gru_sequence_forward_stepwise(T* y, T* hs, T* acts, const T* xw, const T* w, const T* bh,
                                   index_t B, index_t steps, index_t H);
template <class T>
void gru_sequence_backward_stepwise(T* dxw, T* dw, T* dbh, T* dh0, double* norms, const T* gy,
                                    const T* hs, const T* acts, const T* w, index_t B,
                                    index_t steps, index_t H);

}  // namespace cpu
}  // namespace dg
