// AVX2/FMA GEMM micro-kernels: a 6x16 float tile (12 ymm accumulators) and a 6x8 double tile,
// written once over a small vector wrapper.
// Compiled with -mavx2 -mfma; gemm.cpp calls them only after dg::cpu_has_avx2_fma().
#if defined(__x86_64__) || defined(_M_X64)  // the glob picks this file up on every target
#include <immintrin.h>

#include "deepgrad/gemm.h"

namespace dg::avx2 {
namespace {

template <class T> struct Vec;
template <> struct Vec<float> {
  using V = __m256;
  static constexpr int W = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
};
template <> struct Vec<double> {
  using V = __m256d;
  static constexpr int W = 4;
  static V zero() { return _mm256_setzero_pd(); }
  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static V bcast(const double* p) { return _mm256_broadcast_sd(p); }
  static V set1(double x) { return _mm256_set1_pd(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
};

// R rows x 2 vectors of accumulators (R = 6: 12 of the 16 ymm registers, plus 2 for B and one
// for the broadcast A value). Edge tiles with few rows use R = 2 or 4 instead of computing
// rows they drop. Rows past m reuse row 0, so nothing past the matrix is read.
template <class T, int R, bool kPacked>
inline void tile(index_t kc, const T* a, index_t rsa, index_t csa, const T* b, index_t rsb, T* c,
                 index_t ldc, T alpha, T beta, int m, int n) {
  using S = Vec<T>;
  using V = typename S::V;
  constexpr int W = S::W, NR = 2 * W;
  const T* r[R];
#pragma GCC unroll 6
  for (int i = 0; i < R; ++i) r[i] = a + (i < m ? i : 0) * rsa;
  V acc[R][2];
#pragma GCC unroll 6
  for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = S::zero();
  if (kPacked) {
    // Packed A (rsa == 1, csa == 6): one pointer and constant offsets, fewer address updates.
#pragma GCC unroll 4
    for (index_t p = 0; p < kc; ++p) {
      const V b0 = S::load(b), b1 = S::load(b + W);
#pragma GCC unroll 6
      for (int i = 0; i < R; ++i) {
        const V av = S::bcast(a + i);
        acc[i][0] = S::fma(av, b0, acc[i][0]);
        acc[i][1] = S::fma(av, b1, acc[i][1]);
      }
      b += rsb;
      a += 6;
    }
  } else {
    index_t off = 0;
#pragma GCC unroll 4
    for (index_t p = 0; p < kc; ++p) {
      const V b0 = S::load(b), b1 = S::load(b + W);
#pragma GCC unroll 6
      for (int i = 0; i < R; ++i) {
        const V av = S::bcast(r[i] + off);
        acc[i][0] = S::fma(av, b0, acc[i][0]);
        acc[i][1] = S::fma(av, b1, acc[i][1]);
      }
      b += rsb;
      off += csa;
    }
  }
  const V va = S::set1(alpha), vb = S::set1(beta);
  if (m == R && n == NR) {
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) {
      T* ci = c + i * ldc;
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        V v = S::mul(va, acc[i][h]);
        if (beta != T(0)) v = S::fma(vb, S::load(ci + W * h), v);
        S::store(ci + W * h, v);
      }
    }
    return;
  }
  alignas(32) T t[R][NR];
#pragma GCC unroll 6
  for (int i = 0; i < R; ++i) {
    S::store(&t[i][0], acc[i][0]);
    S::store(&t[i][W], acc[i][1]);
  }
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j)
      c[i * ldc + j] = beta != T(0) ? alpha * t[i][j] + beta * c[i * ldc + j] : alpha * t[i][j];
}

template <class T>
void ukernel(index_t kc, const T* a, index_t rsa, index_t csa, const T* b, index_t rsb, T* c,
             index_t ldc, T alpha, T beta, int m, int n) {
  if (rsa == 1 && csa == 6) {
    if (m > 4) tile<T, 6, true>(kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta, m, n);
    else if (m > 2) tile<T, 4, true>(kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta, m, n);
    else tile<T, 2, true>(kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta, m, n);
  } else {
    if (m > 4) tile<T, 6, false>(kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta, m, n);
    else if (m > 2) tile<T, 4, false>(kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta, m, n);
    else tile<T, 2, false>(kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta, m, n);
  }
}

}  // namespace

void ukernel_f32(index_t kc, const float* a, index_t rsa, index_t csa, const float* b,
                 index_t rsb, float* c, index_t ldc, float alpha, float beta, int m, int n) {
  ukernel<float>(kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta, m, n);
}

void ukernel_f64(index_t kc, const double* a, index_t rsa, index_t csa, const double* b,
                 index_t rsb, double* c, index_t ldc, double alpha, double beta, int m, int n) {
  ukernel<double>(kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta, m, n);
}

}  // namespace dg::avx2
#endif
