// The register-blocked GEMM micro-kernel, written once over a vector wrapper S (S::V the vector
// type, S::W its lanes, zero/load/bcast/set1/fma/mul/store): an R x 2W tile of C. Included by the
// ISA files (gemm_avx2.cpp with AVX2 vectors, gemm_avx512.cpp with AVX-512 ones), each inside its
// own anonymous namespace and target options, so every instantiation is private to its file.
// Each element of C gets the same operations in the same order whatever the vector width:
// acc = fma(a_ip, b_pj, acc) for p = 0..kc-1, then alpha * acc (+ beta * c), so the AVX2 and
// AVX-512 kernels give bitwise equal results.
#pragma once

// R rows x 2 vectors of accumulators (R = 6: 12 of the 16 ymm registers, plus 2 for B and one
// for the broadcast A value). Edge tiles with few rows use R = 2 or 4 instead of computing
// rows they drop. Rows past m reuse row 0, so nothing past the matrix is read.
template <class S, int R, bool kPacked, class T>
inline void tile(index_t kc, const T* a, index_t rsa, index_t csa, const T* b, index_t rsb, T* c,
                 index_t ldc, T alpha, T beta, int m, int n) {
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
  alignas(64) T t[R][NR];
#pragma GCC unroll 6
  for (int i = 0; i < R; ++i) {
    S::store(&t[i][0], acc[i][0]);
    S::store(&t[i][W], acc[i][1]);
  }
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j)
      c[i * ldc + j] = beta != T(0) ? alpha * t[i][j] + beta * c[i * ldc + j] : alpha * t[i][j];
}

template <class S, class T>
void ukernel(index_t kc, const T* a, index_t rsa, index_t csa, const T* b, index_t rsb, T* c,
             index_t ldc, T alpha, T beta, int m, int n) {
  if (rsa == 1 && csa == 6) {
    if (m > 4) tile<S, 6, true>(kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta, m, n);
    else if (m > 2) tile<S, 4, true>(kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta, m, n);
    else tile<S, 2, true>(kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta, m, n);
  } else {
    if (m > 4) tile<S, 6, false>(kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta, m, n);
    else if (m > 2) tile<S, 4, false>(kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta, m, n);
    else tile<S, 2, false>(kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta, m, n);
  }
}

