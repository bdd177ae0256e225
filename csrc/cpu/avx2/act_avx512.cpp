// AVX-512F float32 sigmoid, tanh and silu over arrays, 16 lanes at a time (the tail through a
// masked load and store): act_avx2.cpp's formulas, operation for operation (the same exp
// polynomial, FMAs in the same places, the same two-factor scaling for subnormal results), so
// every element comes out with the same bits as on the AVX2 path, twice as many per instruction.
// Compiled with the AVX2 options like the rest of csrc/cpu/avx2/; only the code after the target
// pragma uses AVX-512, and activations.cpp calls it only after cpu_has_avx512f().
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "cpu/avx2/act_avx2.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f")
#endif

namespace dg::avx512 {
namespace {

inline __m512 set1(float v) { return _mm512_set1_ps(v); }
inline __m512 as_ps(__m512i v) { return _mm512_castsi512_ps(v); }
inline __m512i as_si(__m512 v) { return _mm512_castps_si512(v); }
inline __m512i sign_bits() { return _mm512_set1_epi32(static_cast<int>(0x80000000u)); }

// avx2::exp_nonpos on 16 lanes: e^x for x <= 0 (NaN -> NaN, -inf -> 0)
inline __m512 exp_nonpos(__m512 x) {
  const __m512 xc = _mm512_max_ps(set1(-104.0f), x);  // max(a, NaN) returns the NaN
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(xc, set1(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, set1(0.693359375f), xc);
  r = _mm512_fnmadd_ps(k, set1(-2.12194440e-4f), r);
  const __m512 z = _mm512_mul_ps(r, r);
  __m512 p = set1(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, set1(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, set1(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, set1(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, set1(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, set1(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, z, _mm512_add_ps(r, set1(1.0f)));
  const __m512i ki = _mm512_cvtps_epi32(k);  // NaN lanes: p is NaN already
  const __m512i bias = _mm512_set1_epi32(127);
  if (!_mm512_cmp_ps_mask(xc, set1(-87.0f), _CMP_LT_OQ)) {
    const __m512 s = as_ps(_mm512_slli_epi32(_mm512_add_epi32(ki, bias), 23));
    return _mm512_mul_ps(p, s);
  }
  const __m512i k1 = _mm512_srai_epi32(ki, 1), k2 = _mm512_sub_epi32(ki, k1);
  const __m512 s1 = as_ps(_mm512_slli_epi32(_mm512_add_epi32(k1, bias), 23));
  const __m512 s2 = as_ps(_mm512_slli_epi32(_mm512_add_epi32(k2, bias), 23));
  return _mm512_mul_ps(_mm512_mul_ps(p, s1), s2);
}

inline __m512 sigmoid16(__m512 x) {
  const __m512 nax = as_ps(_mm512_or_si512(as_si(x), sign_bits()));  // -|x|
  const __m512 e = exp_nonpos(nax);
  const __m512 d = _mm512_div_ps(set1(1.0f), _mm512_add_ps(set1(1.0f), e));
  const __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);  // false for NaN
  return _mm512_mul_ps(d, _mm512_mask_blend_ps(pos, e, set1(1.0f)));
}

inline __m512 tanh16(__m512 x) {
  const __m512 ax = as_ps(_mm512_andnot_si512(sign_bits(), as_si(x)));
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 p = set1(-5.70498872745e-3f);
  p = _mm512_fmadd_ps(p, z, set1(2.06390887954e-2f));
  p = _mm512_fmadd_ps(p, z, set1(-5.37397155531e-2f));
  p = _mm512_fmadd_ps(p, z, set1(1.33314422036e-1f));
  p = _mm512_fmadd_ps(p, z, set1(-3.33332819422e-1f));
  const __m512 small = _mm512_mul_ps(x, _mm512_fmadd_ps(p, z, set1(1.0f)));  // keeps -0
  const __m512 e = exp_nonpos(_mm512_mul_ps(set1(-2.0f), ax));
  const __m512 big_abs =
      _mm512_div_ps(_mm512_sub_ps(set1(1.0f), e), _mm512_add_ps(set1(1.0f), e));
  const __m512 big = as_ps(_mm512_or_si512(as_si(big_abs), _mm512_and_si512(sign_bits(), as_si(x))));
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, set1(0.625f), _CMP_LT_OQ), big, small);
}

template <class F>
inline void map16(float* y, const float* x, index_t n, F f) {
  index_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, f(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(y + i, m, f(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

}  // namespace

void sigmoid_f32(float* y, const float* x, index_t n) { map16(y, x, n, sigmoid16); }
void tanh_f32(float* y, const float* x, index_t n) { map16(y, x, n, tanh16); }
void silu_f32(float* y, const float* x, index_t n) {
  map16(y, x, n, [](__m512 v) { return _mm512_mul_ps(v, sigmoid16(v)); });
}

}  // namespace dg::avx512

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
