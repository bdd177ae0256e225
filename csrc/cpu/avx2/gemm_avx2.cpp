// AVX2/FMA GEMM micro-kernels: a 6x16 float tile (12 ymm accumulators) and a 6x8 double tile.
// Compiled with -mavx2 -mfma; gemm.cpp calls them only after dg::cpu_has_avx2_fma().
#include <immintrin.h>

#include "deepgrad/gemm.h"

namespace dg::avx2 {
namespace {

// The six A row pointers; rows past m reuse row 0 (their results are dropped), so nothing past
// the matrix is read.
template <class T>
inline void row_ptrs(const T* a, index_t rsa, int m, const T* r[6]) {
  for (int i = 0; i < 6; ++i) r[i] = a + (i < m ? i : 0) * rsa;
}

}  // namespace

void ukernel_f32(index_t kc, const float* a, index_t rsa, index_t csa, const float* b,
                 index_t rsb, float* c, index_t ldc, float alpha, float beta, int m, int n) {
  const float* r[6];
  row_ptrs(a, rsa, m, r);
  const float *a0 = r[0], *a1 = r[1], *a2 = r[2], *a3 = r[3], *a4 = r[4], *a5 = r[5];
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  index_t off = 0;
#pragma GCC unroll 4
  for (index_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    __m256 av = _mm256_broadcast_ss(a0 + off);
    c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(a1 + off);
    c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(a2 + off);
    c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(a3 + off);
    c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31);
    av = _mm256_broadcast_ss(a4 + off);
    c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41);
    av = _mm256_broadcast_ss(a5 + off);
    c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51);
    b += rsb;
    off += csa;
  }
  const __m256 acc[6][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                            {c30, c31}, {c40, c41}, {c50, c51}};
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  if (m == 6 && n == 16) {
    for (int i = 0; i < 6; ++i) {
      float* ci = c + i * ldc;
      for (int h = 0; h < 2; ++h) {
        __m256 v = _mm256_mul_ps(va, acc[i][h]);
        if (beta != 0.0f) v = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8 * h), v);
        _mm256_storeu_ps(ci + 8 * h, v);
      }
    }
    return;
  }
  alignas(32) float t[6][16];
  for (int i = 0; i < 6; ++i)
    for (int h = 0; h < 2; ++h) _mm256_store_ps(&t[i][8 * h], acc[i][h]);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j)
      c[i * ldc + j] = beta != 0.0f ? alpha * t[i][j] + beta * c[i * ldc + j] : alpha * t[i][j];
}

void ukernel_f64(index_t kc, const double* a, index_t rsa, index_t csa, const double* b,
                 index_t rsb, double* c, index_t ldc, double alpha, double beta, int m, int n) {
  const double* r[6];
  row_ptrs(a, rsa, m, r);
  const double *a0 = r[0], *a1 = r[1], *a2 = r[2], *a3 = r[3], *a4 = r[4], *a5 = r[5];
  __m256d c00 = _mm256_setzero_pd(), c01 = _mm256_setzero_pd();
  __m256d c10 = _mm256_setzero_pd(), c11 = _mm256_setzero_pd();
  __m256d c20 = _mm256_setzero_pd(), c21 = _mm256_setzero_pd();
  __m256d c30 = _mm256_setzero_pd(), c31 = _mm256_setzero_pd();
  __m256d c40 = _mm256_setzero_pd(), c41 = _mm256_setzero_pd();
  __m256d c50 = _mm256_setzero_pd(), c51 = _mm256_setzero_pd();
  index_t off = 0;
#pragma GCC unroll 4
  for (index_t p = 0; p < kc; ++p) {
    const __m256d b0 = _mm256_loadu_pd(b), b1 = _mm256_loadu_pd(b + 4);
    __m256d av = _mm256_broadcast_sd(a0 + off);
    c00 = _mm256_fmadd_pd(av, b0, c00); c01 = _mm256_fmadd_pd(av, b1, c01);
    av = _mm256_broadcast_sd(a1 + off);
    c10 = _mm256_fmadd_pd(av, b0, c10); c11 = _mm256_fmadd_pd(av, b1, c11);
    av = _mm256_broadcast_sd(a2 + off);
    c20 = _mm256_fmadd_pd(av, b0, c20); c21 = _mm256_fmadd_pd(av, b1, c21);
    av = _mm256_broadcast_sd(a3 + off);
    c30 = _mm256_fmadd_pd(av, b0, c30); c31 = _mm256_fmadd_pd(av, b1, c31);
    av = _mm256_broadcast_sd(a4 + off);
    c40 = _mm256_fmadd_pd(av, b0, c40); c41 = _mm256_fmadd_pd(av, b1, c41);
    av = _mm256_broadcast_sd(a5 + off);
    c50 = _mm256_fmadd_pd(av, b0, c50); c51 = _mm256_fmadd_pd(av, b1, c51);
    b += rsb;
    off += csa;
  }
  const __m256d acc[6][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                             {c30, c31}, {c40, c41}, {c50, c51}};
  const __m256d va = _mm256_set1_pd(alpha), vb = _mm256_set1_pd(beta);
  if (m == 6 && n == 8) {
    for (int i = 0; i < 6; ++i) {
      double* ci = c + i * ldc;
      for (int h = 0; h < 2; ++h) {
        __m256d v = _mm256_mul_pd(va, acc[i][h]);
        if (beta != 0.0) v = _mm256_fmadd_pd(vb, _mm256_loadu_pd(ci + 4 * h), v);
        _mm256_storeu_pd(ci + 4 * h, v);
      }
    }
    return;
  }
  alignas(32) double t[6][8];
  for (int i = 0; i < 6; ++i)
    for (int h = 0; h < 2; ++h) _mm256_store_pd(&t[i][4 * h], acc[i][h]);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j)
      c[i * ldc + j] = beta != 0.0 ? alpha * t[i][j] + beta * c[i * ldc + j] : alpha * t[i][j];
}

}  // namespace dg::avx2
