// AVX2 float32 sums for the layer statistics record (stats_avx2.cpp); call only when
// dg::cpu_has_avx2_fma(). The AVX-512 sums (stats_avx512.cpp): only when dg::cpu_has_avx512f().
#pragma once
#include "deepgrad/common.h"

namespace dg::avx2 {
// A chunk's float sum of squares is as good as a double one while it is finite and at least
// FLT_MIN * 2^51 = 2^-75: at most 2048 squares fell below FLT_MIN (|x| < 1e-19), each losing less
// than that, so underflow moved the sum by at most 2^-40 of itself. A smaller or non-finite chunk
// (a vanishing or an exploding signal, the cases the statistics exist to show) is summed again
// in double from L1.
constexpr float kSumSafeLow = 2.64697796e-23f;  // 2^-75

// x (n) -> *s += sum x (when s is not null), *q += sum x^2: 32 float lanes over chunks of 256
// elements (8 terms per lane), each chunk converted and added to double lanes (or summed again
// in double, see kSumSafeLow), folded at the end.
void sums_f32(double* s, double* q, const float* x, index_t n);
// sums_f32 (s not null) and, from the same loads, *count += the number of |x - center| > bound
// (NaN never counts).
void sums_count_f32(double* s, double* q, index_t* count, const float* x, index_t n,
                    float center, float bound);
// z (rows, cols), row stride cols: *s += sum z, *q += sum z^2 and colmax[j] = max(colmax[j],
// z[r, j]) (NaN never enters) from the same loads, as avx512::sums_colmax_f32.
void sums_colmax_f32(double* s, double* q, float* colmax, const float* z, index_t rows,
                     index_t cols);
// *s += sum v (when s is not null), *q += sum v^2 for v = x - p (p not null, the difference in
// float) or x, every term in double lanes (~1e-16 relative: the monitor's norms and statistics of
// other frameworks' tensors, compared with float64 references)
void sums_f32_exact(double* s, double* q, const float* x, const float* p, index_t n);
// The fast path of the tensor health kernel (cpu/health.cpp) for float32: out[0] = sum x^2
// (in double lanes; NaN or Inf when x holds a NaN or an Inf), out[1] = min, out[2] = max.
// The caller takes the exact path when the sum is not finite.
void health_f32(double* out, const float* x, index_t n);
}  // namespace dg::avx2

namespace dg::avx512 {
// As avx2::sums_f32, 16 lanes, chunks of 2048 elements (16 terms per float lane).
void sums_f32(double* s, double* q, const float* x, index_t n);
// sums_f32 (s not null) and, from the same loads, *count += the number of |x - center| > bound
// (NaN never counts).
void sums_count_f32(double* s, double* q, index_t* count, const float* x, index_t n,
                    float center, float bound);
// z (rows, cols), row stride cols: *s += sum z, *q += sum z^2 (as sums_f32: float lanes over
// chunks of at most 2048 elements, a chunk whose squares under- or overflowed summed again in
// double) and colmax[j] = max(colmax[j], z[r, j]) (NaN never enters), from the same loads: the
// ReLU layer's record (alive columns: some z > 0, the same as some y > 0) without a pass over y.
void sums_colmax_f32(double* s, double* q, float* colmax, const float* z, index_t rows,
                     index_t cols);
}  // namespace dg::avx512
