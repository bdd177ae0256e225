// The float32 exp (x <= 0), sigmoid and tanh of act_avx2.cpp on 16 lanes: the same operations in
// the same order on zmm registers, so every element gets the same bits as on the AVX2 path (the
// exp polynomial, sigmoid via e^{-|x|}, tanh via e^{-2|x|} and the Cephes odd polynomial below
// 0.625, the two-factor scaling for subnormal results). Used by the array loops of
// act_avx512.cpp and the LSTM row of cpu/rnn.cpp. Every function carries the avx512f target
// itself (as vec512.h), so a file compiled without -mavx512f can include it; call only after
// cpu_has_avx512f().
#pragma once
#if defined(__GNUC__) && (defined(__x86_64__) || defined(_M_X64))
#include <immintrin.h>

namespace dg::avx512 {

#define DG_T512 __attribute__((target("avx512f"), always_inline)) inline

DG_T512 __m512 z1(float v) { return _mm512_set1_ps(v); }

DG_T512 __m512 exp_nonpos16(__m512 x) {
  const __m512 xc = _mm512_max_ps(z1(-104.0f), x);  // max(a, NaN) returns the NaN
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(xc, z1(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, z1(0.693359375f), xc);
  r = _mm512_fnmadd_ps(k, z1(-2.12194440e-4f), r);
  const __m512 z = _mm512_mul_ps(r, r);
  __m512 p = z1(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, z1(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, z1(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, z1(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, z1(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, z1(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, z, _mm512_add_ps(r, z1(1.0f)));
  const __m512i ki = _mm512_cvtps_epi32(k);
  const __m512i bias = _mm512_set1_epi32(127);
  if (!_mm512_cmp_ps_mask(xc, z1(-87.0f), _CMP_LT_OQ)) {
    const __m512 sc = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(ki, bias), 23));
    return _mm512_mul_ps(p, sc);
  }
  const __m512i k1 = _mm512_srai_epi32(ki, 1), k2 = _mm512_sub_epi32(ki, k1);
  const __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(k1, bias), 23));
  const __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(k2, bias), 23));
  return _mm512_mul_ps(_mm512_mul_ps(p, s1), s2);
}

DG_T512 __m512 or_ps(__m512 a, __m512 b) {
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}
DG_T512 __m512 and_ps(__m512 a, __m512 b) {
  return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}
DG_T512 __m512 andnot_ps(__m512 a, __m512 b) {  // ~a & b
  return _mm512_castsi512_ps(_mm512_andnot_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}

DG_T512 __m512 sigmoid16(__m512 x) {
  const __m512 e = exp_nonpos16(or_ps(x, z1(-0.0f)));  // e^{-|x|}
  const __m512 d = _mm512_div_ps(z1(1.0f), _mm512_add_ps(z1(1.0f), e));
  const __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);  // not NaN
  return _mm512_mul_ps(d, _mm512_mask_blend_ps(pos, e, z1(1.0f)));
}

DG_T512 __m512 tanh16(__m512 x) {
  const __m512 sign = z1(-0.0f);
  const __m512 ax = andnot_ps(sign, x);
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 p = z1(-5.70498872745e-3f);
  p = _mm512_fmadd_ps(p, z, z1(2.06390887954e-2f));
  p = _mm512_fmadd_ps(p, z, z1(-5.37397155531e-2f));
  p = _mm512_fmadd_ps(p, z, z1(1.33314422036e-1f));
  p = _mm512_fmadd_ps(p, z, z1(-3.33332819422e-1f));
  const __m512 small = _mm512_mul_ps(x, _mm512_fmadd_ps(p, z, z1(1.0f)));
  const __m512 e = exp_nonpos16(_mm512_mul_ps(z1(-2.0f), ax));
  const __m512 big_abs = _mm512_div_ps(_mm512_sub_ps(z1(1.0f), e), _mm512_add_ps(z1(1.0f), e));
  const __m512 big = or_ps(big_abs, and_ps(sign, x));  // copysign
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, z1(0.625f), _CMP_LT_OQ), big, small);
}

}  // namespace dg::avx512
#endif
