// Private helpers of the fused layer kernels for the layer statistics record
// (deepgrad/layer_stats.h): small single-threaded passes over a block that is already in cache.
#pragma once
#include "deepgrad/common.h"

namespace dg::cpu {

// act_stats.cpp (the monitor's kernels for other frameworks' tensors) uses the counts.
// x (n) -> *s += sum x, *q += sum x^2, in double (float32 with AVX-512 or AVX2 is summed in float
// lanes over chunks, each chunk added to double lanes or, when its squares under- or overflowed
// float32, summed again in double: relative error ~1e-7 over the whole float range)
template <class T> void add_sums(double* s, double* q, const T* x, index_t n);
// add_sums (and add_sums_count when count is not null) for float32 through one given loop (0:
// double lanes, 1: AVX2, 2: AVX-512), for the tests of each path; false when this build or this
// CPU lacks it
bool add_sums_isa(int isa, double* s, double* q, index_t* count, const float* x, index_t n,
                  float center, float bound);
// add_sums and *count += the count of |x[i] - center| > bound (NaN never counts), one pass with
// AVX-512 or AVX2
template <class T>
void add_sums_count(double* s, double* q, index_t* count, const T* x, index_t n, T center, T bound);
// add_sums over z (R, C) and col_max(colmax, z, R, C), one pass with AVX-512 or AVX2 (float32)
template <class T>
void add_sums_colmax(double* s, double* q, T* colmax, const T* z, index_t R, index_t C);
// the same through one given loop (0: add_sums and col_max in double lanes, 1: AVX2, 2: AVX-512), for the
// tests of each path; false when this build or this CPU lacks it
bool add_sums_colmax_isa(int isa, double* s, double* q, float* colmax, const float* z, index_t R,
                         index_t C);
// count of i < n with |a[i] - center| > bound (NaN never counts)
template <class T> index_t count_outside(const T* a, index_t n, T center, T bound);
// colmax[j] = max(colmax[j], y[r, j]) over the rows of y (R, C); NaN never enters
template <class T> void col_max(T* colmax, const T* y, index_t R, index_t C);
// sum of x[i]^2 in double; NaN when x holds a NaN or an Inf
template <class T> double sumsq_or_nan(const T* x, index_t n);

}  // namespace dg::cpu
