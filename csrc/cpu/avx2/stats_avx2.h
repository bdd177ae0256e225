// AVX2 float32 sums for the layer statistics record (stats_avx2.cpp); call only when
// dg::cpu_has_avx2_fma().
#pragma once
#include "deepgrad/common.h"

namespace dg::avx2 {
// x (n) -> *s += sum x (when s is not null), *q += sum x^2: 64 float lanes over chunks of 512
// elements (8 terms per lane), each chunk converted and added to double lanes, folded at the end.
void sums_f32(double* s, double* q, const float* x, index_t n);
// *s += sum v (when s is not null), *q += sum v^2 for v = x - p (p not null, the difference in
// float) or x, every term in double lanes (~1e-16 relative: the monitor's norms and statistics of
// other frameworks' tensors, compared with float64 references)
void sums_f32_exact(double* s, double* q, const float* x, const float* p, index_t n);
// The fast path of the tensor health kernel (cpu/health.cpp) for float32: out[0] = sum x^2
// (in double lanes), out[1] = min, out[2] = max, out[3] = sum of
// (x - x) (NaN as soon as one element is NaN or Inf). The caller takes the exact path when
// out[3] != 0 or the sum is not finite.
void health_f32(double* out, const float* x, index_t n);
}  // namespace dg::avx2
