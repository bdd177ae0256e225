// AVX-512F GEMM micro-kernels: a 6x32 float tile (12 zmm accumulators) and a 6x16 double tile
// (cpu/avx2/gemm_tile.h over the 512-bit vector wrapper below). For CPUs whose FMA units are
// 512 bits wide (Zen 5, Intel server cores) this doubles the arithmetic per instruction over AVX2.
// The file is compiled with the AVX2 options like the rest of csrc/cpu/avx2/; only the code after
// the target pragma (all of it private to this file, but the exported entry points) may use
// AVX-512, and gemm.cpp calls it only after cpu_has_avx512f().
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "cpu/avx2/vec512.h"
#include "deepgrad/gemm.h"

#include "cpu/avx2/avx512_begin.h"

namespace dg::avx512 {
namespace {

template <class T>
using Vec = Vec512<T>;  // cpu/avx2/vec512.h

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
  constexpr int kChains = 12;  // as in avx2::fma_probe_f32
  __m512 acc[kChains];
#pragma GCC unroll 12
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(0.001f * float(j));
  const __m512 mul = _mm512_set1_ps(0.999f), add = _mm512_set1_ps(0.001f);
  for (index_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], mul, add);
  }
  __m512 s = acc[0];
  for (int j = 1; j < kChains; ++j) s = _mm512_add_ps(s, acc[j]);
  return _mm512_reduce_add_ps(s);
}

}  // namespace dg::avx512

#include "cpu/avx2/avx512_end.h"
#endif
