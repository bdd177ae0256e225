// AVX2/FMA float32 activation loops (act_avx2.cpp); call only when dg::cpu_has_avx2_fma().
#pragma once
#include "deepgrad/common.h"

namespace dg::avx2 {
void sigmoid_f32(float* y, const float* x, index_t n);
void tanh_f32(float* y, const float* x, index_t n);
void silu_f32(float* y, const float* x, index_t n);  // x * sigmoid(x)
}  // namespace dg::avx2
