// AVX2/FMA float32 sigmoid and tanh over arrays, 8 lanes at a time (the tail through a masked
// load and store, so every element gets the same operations wherever it sits). The same
// formulas and exp polynomial as cpu/vec_math.h (sigmoid via e^{-|x|}, tanh via e^{-2|x|} and
// the Cephes odd polynomial below 0.625), written with intrinsics: GCC's vectorization of the
// portable loop spills and selects through integer registers and runs ~1.5x slower.
// Compiled with -mavx2 -mfma; activations.cpp calls these only after dg::cpu_has_avx2_fma().
#if defined(__x86_64__) || defined(_M_X64)  // the glob picks this file up on every target
#include <immintrin.h>

#include "cpu/avx2/act_avx2.h"
#include "deepgrad/rnn.h"

namespace dg::avx2 {
namespace {

inline __m256 set1(float v) { return _mm256_set1_ps(v); }

// e^x for x <= 0 (NaN -> NaN, -inf -> 0), accuracy a few ulp. Results below 2^-126 are
// subnormal, not flushed: 2^k is applied in two factors when some lane is below -87.
inline __m256 exp_nonpos(__m256 x) {
  const __m256 xc = _mm256_max_ps(set1(-104.0f), x);  // max(a, NaN) returns the NaN
  const __m256 k = _mm256_round_ps(_mm256_mul_ps(xc, set1(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(k, set1(0.693359375f), xc);
  r = _mm256_fnmadd_ps(k, set1(-2.12194440e-4f), r);
  const __m256 z = _mm256_mul_ps(r, r);
  __m256 p = set1(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, set1(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, set1(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, set1(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, set1(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, set1(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_add_ps(r, set1(1.0f)));
  const __m256i ki = _mm256_cvtps_epi32(k);  // NaN lanes: p is NaN already
  const __m256i bias = _mm256_set1_epi32(127);
  if (!_mm256_movemask_ps(_mm256_cmp_ps(xc, set1(-87.0f), _CMP_LT_OQ))) {
    const __m256 s = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ki, bias), 23));
    return _mm256_mul_ps(p, s);
  }
  const __m256i k1 = _mm256_srai_epi32(ki, 1), k2 = _mm256_sub_epi32(ki, k1);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

inline __m256 sigmoid8(__m256 x) {
  const __m256 nax = _mm256_or_ps(x, set1(-0.0f));  // -|x|
  const __m256 e = exp_nonpos(nax);
  const __m256 d = _mm256_div_ps(set1(1.0f), _mm256_add_ps(set1(1.0f), e));
  const __m256 pos = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ);  // false for NaN
  return _mm256_mul_ps(d, _mm256_blendv_ps(e, set1(1.0f), pos));
}

inline __m256 tanh8(__m256 x) {
  const __m256 sign = set1(-0.0f);
  const __m256 ax = _mm256_andnot_ps(sign, x);
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 p = set1(-5.70498872745e-3f);
  p = _mm256_fmadd_ps(p, z, set1(2.06390887954e-2f));
  p = _mm256_fmadd_ps(p, z, set1(-5.37397155531e-2f));
  p = _mm256_fmadd_ps(p, z, set1(1.33314422036e-1f));
  p = _mm256_fmadd_ps(p, z, set1(-3.33332819422e-1f));
  const __m256 small = _mm256_mul_ps(x, _mm256_fmadd_ps(p, z, set1(1.0f)));  // keeps -0
  const __m256 e = exp_nonpos(_mm256_mul_ps(set1(-2.0f), ax));
  const __m256 big_abs = _mm256_div_ps(_mm256_sub_ps(set1(1.0f), e), _mm256_add_ps(set1(1.0f), e));
  const __m256 big = _mm256_or_ps(big_abs, _mm256_and_ps(sign, x));  // copysign
  return _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, set1(0.625f), _CMP_LT_OQ));
}

inline __m256i tail_mask(index_t left) {  // lanes [0, left) set, 0 < left < 8
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(left)), lane);
}

template <class F>
inline void map8(float* y, const float* x, index_t n, F f) {
  index_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i m = tail_mask(n - i);
    _mm256_maskstore_ps(y + i, m, f(_mm256_maskload_ps(x + i, m)));
  }
}

// The LSTM formulas of deepgrad/rnn.h evaluated on 8 units at once (GCC's vector extensions
// give __m256 the + and * the formulas use).
struct CellMath8 {
  static __m256 sigmoid(__m256 x) { return sigmoid8(x); }
  static __m256 tanh(__m256 x) { return tanh8(x); }
};

}  // namespace

void lstm_forward_row_f32(float* h, float* c, float* act, const float* a, const float* c_prev,
                          index_t H) {
  // Plain loads and stores for whole blocks of 8 (masked moves are slow on AMD cores), masked
  // ones for the last, partial block.
  auto block = [&](index_t j, auto ld, auto st) {
    __m256 i, f, g, o, cc, hh;
    lstm_unit_forward<__m256, CellMath8>(ld(a + j), ld(a + H + j), ld(a + 2 * H + j),
                                         ld(a + 3 * H + j), ld(c_prev + j), &i, &f, &g, &o, &cc,
                                         &hh);
    st(act + j, i);
    st(act + H + j, f);
    st(act + 2 * H + j, g);
    st(act + 3 * H + j, o);
    st(c + j, cc);
    st(h + j, hh);
  };
  index_t j = 0;
  for (; j + 8 <= H; j += 8)
    block(j, [](const float* p) { return _mm256_loadu_ps(p); },
          [](float* p, __m256 v) { _mm256_storeu_ps(p, v); });
  if (j < H) {
    const __m256i m = tail_mask(H - j);
    block(j, [m](const float* p) { return _mm256_maskload_ps(p, m); },
          [m](float* p, __m256 v) { _mm256_maskstore_ps(p, m, v); });
  }
}

void sigmoid_f32(float* y, const float* x, index_t n) { map8(y, x, n, sigmoid8); }
void tanh_f32(float* y, const float* x, index_t n) { map8(y, x, n, tanh8); }
void silu_f32(float* y, const float* x, index_t n) {
  map8(y, x, n, [](__m256 v) { return _mm256_mul_ps(v, sigmoid8(v)); });
}

}  // namespace dg::avx2
#endif
