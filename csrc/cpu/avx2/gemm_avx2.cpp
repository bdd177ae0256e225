// AVX2/FMA GEMM micro-kernels: a 6x16 float tile (12 ymm accumulators) and a 6x8 double tile
// (cpu/avx2/gemm_tile.h over the 256-bit vector wrapper below).
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

#include "cpu/avx2/gemm_tile.h"

}  // namespace

void ukernel_f32(index_t kc, const float* a, index_t rsa, index_t csa, const float* b,
                 index_t rsb, float* c, index_t ldc, float alpha, float beta, int m, int n) {
  ukernel<Vec<float>>(kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta, m, n);
}

void ukernel_f64(index_t kc, const double* a, index_t rsa, index_t csa, const double* b,
                 index_t rsb, double* c, index_t ldc, double alpha, double beta, int m, int n) {
  ukernel<Vec<double>>(kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta, m, n);
}

float fma_probe_f32(index_t iters) {
  // 12 independent chains: FMA latency (4 cycles on Zen 4, 4-5 on Intel) times 2 FMA ports
  // needs at least 8-10 in flight for the ports to issue every cycle.
  constexpr int kChains = 12;
  __m256 acc[kChains];
#pragma GCC unroll 12
  for (int j = 0; j < kChains; ++j) acc[j] = _mm256_set1_ps(0.001f * float(j));
  const __m256 mul = _mm256_set1_ps(0.999f), add = _mm256_set1_ps(0.001f);
  for (index_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int j = 0; j < kChains; ++j) acc[j] = _mm256_fmadd_ps(acc[j], mul, add);
  }
  __m256 s = acc[0];
  for (int j = 1; j < kChains; ++j) s = _mm256_add_ps(s, acc[j]);
  alignas(32) float t[8];
  _mm256_store_ps(t, s);
  return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}

}  // namespace dg::avx2
#endif
