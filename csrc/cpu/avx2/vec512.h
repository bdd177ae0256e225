// The 512-bit vector wrapper shared by the AVX-512 kernels (the GEMM micro-kernels of
// gemm_avx512.cpp through gemm_tile.h, the recurrent products of cpu/rnn_seq.cpp): one type per
// element type with the few operations the tiles use. Every function carries the avx512f target
// itself, so a file compiled without -mavx512f can include it; call only after
// cpu_has_avx512f().
#pragma once
#include <immintrin.h>

namespace dg::avx512 {

#define DG_AVX512_FN __attribute__((target("avx512f"))) static

template <class T> struct Vec512;
template <> struct Vec512<float> {
  using V = __m512;
  static constexpr int W = 16;
  DG_AVX512_FN V zero() { return _mm512_setzero_ps(); }
  DG_AVX512_FN V load(const float* p) { return _mm512_loadu_ps(p); }
  DG_AVX512_FN V bcast(const float* p) { return _mm512_set1_ps(*p); }
  DG_AVX512_FN V set1(float x) { return _mm512_set1_ps(x); }
  DG_AVX512_FN V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  DG_AVX512_FN V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  DG_AVX512_FN void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  // the first n (< W) lanes; the others read as zero / are left alone
  DG_AVX512_FN V load_n(const float* p, int n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
  }
  DG_AVX512_FN void store_n(float* p, V v, int n) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), v);
  }
};
template <> struct Vec512<double> {
  using V = __m512d;
  static constexpr int W = 8;
  DG_AVX512_FN V zero() { return _mm512_setzero_pd(); }
  DG_AVX512_FN V load(const double* p) { return _mm512_loadu_pd(p); }
  DG_AVX512_FN V bcast(const double* p) { return _mm512_set1_pd(*p); }
  DG_AVX512_FN V set1(double x) { return _mm512_set1_pd(x); }
  DG_AVX512_FN V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  DG_AVX512_FN V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  DG_AVX512_FN void store(double* p, V v) { _mm512_storeu_pd(p, v); }
  DG_AVX512_FN V load_n(const double* p, int n) {
    return _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1), p);
  }
  DG_AVX512_FN void store_n(double* p, V v, int n) {
    _mm512_mask_storeu_pd(p, static_cast<__mmask8>((1u << n) - 1), v);
  }
};

#undef DG_AVX512_FN

}  // namespace dg::avx512
