// AVX2/FMA float32 activation and LSTM-cell loops (act_avx2.cpp); call only when dg::cpu_has_avx2_fma().
// The AVX-512 activation loops (act_avx512.cpp, the same formulas and bits): only when
// dg::cpu_has_avx512f() as well.
#pragma once
#include "deepgrad/common.h"

namespace dg::avx2 {
void sigmoid_f32(float* y, const float* x, index_t n);
void tanh_f32(float* y, const float* x, index_t n);
void silu_f32(float* y, const float* x, index_t n);  // x * sigmoid(x)
// One row of dg::cpu::lstm_cell_forward (rnn.h's formulas): a (4H) gate pre-activations,
// c_prev (H) -> h (H), c (H), act (4H).
void lstm_forward_row_f32(float* h, float* c, float* act, const float* a, const float* c_prev,
                          index_t H);
}  // namespace dg::avx2

namespace dg::avx512 {
void sigmoid_f32(float* y, const float* x, index_t n);
void tanh_f32(float* y, const float* x, index_t n);
void silu_f32(float* y, const float* x, index_t n);
}  // namespace dg::avx512
