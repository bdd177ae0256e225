// Fused LSTM/GRU cell gate arithmetic on the CPU: one pass over (B, H) per time step, calling the
// shared per-unit formulas from deepgrad/rnn.h. Each row is one loop over the H units that GCC
// vectorizes (AVX2 clone): float32 takes the vectorizable sigmoid/tanh of cpu/vec_math.h (same
// formulas; glibc's scalar tanhf/expf made a 64x64 LSTM cell ~60 ns per unit), float64 the
// libm ones. The float32 LSTM forward (five sigmoid/tanh per unit) runs the same formulas on
// AVX2 intrinsics where the CPU has them (cpu/avx2/act_avx2.cpp). Rows are independent, so
// batches big enough to pay for a fork are split over OpenMP threads.
#include <atomic>
#include <type_traits>
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include "cpu/avx2/act512.h"
#include "cpu/avx2/act_avx2.h"
#include "cpu/ew_parallel.h"
#include "cpu/mid_fork.h"
#include "cpu/vec_math.h"
#include "deepgrad/cpu_features.h"
#include "deepgrad/rnn.h"

namespace dg::cpu {
namespace {

struct VecCellMath {
  static DG_VM_INLINE float sigmoid(float x) { return vm::sigmoid(x); }
  static DG_VM_INLINE double sigmoid(double x) { return sigmoid_(x); }
  static DG_VM_INLINE float tanh(float x) { return vm::tanh(x); }
  static DG_VM_INLINE double tanh(double x) { return std::tanh(x); }
};
using M = VecCellMath;

// ---- the float32 LSTM forward row on AVX-512 (16 units at once) -------------------------------
// cpu/avx2/act_avx2.cpp's lstm_forward_row_f32 (the exp polynomial, sigmoid via e^{-|x|}, tanh
// via e^{-2|x|} and the Cephes odd polynomial below 0.625, c = f c_prev + i g as one FMA) with
// the same operations in the same order on zmm registers, so both give the same bits; on cores
// with full-width AVX-512 units it does twice the units per cycle.
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(_M_X64))
#define DG_CELL_AVX512 1

using avx512::and_ps;
using avx512::andnot_ps;
using avx512::or_ps;
using avx512::sigmoid16;
using avx512::tanh16;
using avx512::z1;

DG_T512 void lstm_block16(float* h, float* c, float* act, const float* a, const float* c_prev,
                          index_t H, index_t j, __mmask16 m) {
  const __m512 i = sigmoid16(_mm512_maskz_loadu_ps(m, a + j));
  const __m512 f = sigmoid16(_mm512_maskz_loadu_ps(m, a + H + j));
  const __m512 g = tanh16(_mm512_maskz_loadu_ps(m, a + 2 * H + j));
  const __m512 o = sigmoid16(_mm512_maskz_loadu_ps(m, a + 3 * H + j));
  const __m512 cp = _mm512_maskz_loadu_ps(m, c_prev + j);
  const __m512 cc = _mm512_fmadd_ps(f, cp, _mm512_mul_ps(i, g));  // as GCC contracts f cp + i g
  const __m512 hh = _mm512_mul_ps(o, tanh16(cc));
  _mm512_mask_storeu_ps(act + j, m, i);
  _mm512_mask_storeu_ps(act + H + j, m, f);
  _mm512_mask_storeu_ps(act + 2 * H + j, m, g);
  _mm512_mask_storeu_ps(act + 3 * H + j, m, o);
  _mm512_mask_storeu_ps(c + j, m, cc);
  _mm512_mask_storeu_ps(h + j, m, hh);
}

__attribute__((target("avx512f"))) void lstm_forward_row_f32_avx512(
    float* h, float* c, float* act, const float* a, const float* c_prev, index_t H) {
  index_t j = 0;
  for (; j + 16 <= H; j += 16) lstm_block16(h, c, act, a, c_prev, H, j, 0xFFFF);
  if (j < H) lstm_block16(h, c, act, a, c_prev, H, j, static_cast<__mmask16>((1u << (H - j)) - 1));
}

// The float32 GRU forward row on AVX-512: cpu/vec_math.h's exp, sigmoid and tanh as the portable
// row loop below runs them (its AVX2 clone has no FMA: every product is rounded before it is
// added), with the same operations in the same order on 16 lanes: the same bits as that loop.
// The _round_ forms (current rounding mode) are builtins that GCC does not contract into FMAs.
constexpr int kCur = _MM_FROUND_CUR_DIRECTION;
DG_T512 __m512 mul(__m512 a, __m512 b) { return _mm512_mul_round_ps(a, b, kCur); }
DG_T512 __m512 add(__m512 a, __m512 b) { return _mm512_add_round_ps(a, b, kCur); }
DG_T512 __m512 sub(__m512 a, __m512 b) { return _mm512_sub_round_ps(a, b, kCur); }
DG_T512 __m512 muladd(__m512 a, __m512 b, __m512 c) { return add(mul(a, b), c); }

DG_T512 __m512 exp_nonpos_vm16(__m512 x) {
  const __m512 xc = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, z1(-104.0f), _CMP_LT_OQ), x,
                                         z1(-104.0f));
  const __m512 k = add(muladd(xc, z1(1.44269504088896341f), z1(12582912.0f)), z1(-12582912.0f));
  __m512 r = sub(xc, mul(k, z1(0.693359375f)));
  r = add(r, mul(k, z1(2.12194440e-4f)));
  const __m512 z = mul(r, r);
  __m512 p = z1(1.9875691500e-4f);
  p = muladd(p, r, z1(1.3981999507e-3f));
  p = muladd(p, r, z1(8.3334519073e-3f));
  p = muladd(p, r, z1(4.1665795894e-2f));
  p = muladd(p, r, z1(1.6666665459e-1f));
  p = muladd(p, r, z1(5.0000001201e-1f));
  p = add(muladd(p, z, r), z1(1.0f));
  const __m512 kc = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z1(-160.0f), k, _CMP_LT_OQ),
                                         z1(-160.0f), k);
  const __m512i ki = _mm512_cvttps_epi32(kc);
  const __m512i k1 = _mm512_srai_epi32(_mm512_add_epi32(ki, _mm512_srli_epi32(ki, 31)), 1);
  const __m512i k2 = _mm512_sub_epi32(ki, k1);
  const __m512i bias = _mm512_set1_epi32(127);
  const __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(k1, bias), 23));
  const __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(k2, bias), 23));
  return mul(mul(p, s1), s2);
}

DG_T512 __m512 sigmoid_vm16(__m512 x) {
  const __m512 e = exp_nonpos_vm16(or_ps(x, z1(-0.0f)));  // -|x|
  const __m512 d = _mm512_div_ps(z1(1.0f), add(e, z1(1.0f)));
  return mul(
      d, _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ), e, z1(1.0f)));
}

DG_T512 __m512 tanh_vm16(__m512 x) {
  const __m512 sign = z1(-0.0f);
  const __m512 ax = andnot_ps(sign, x);
  const __m512 z = mul(x, x);
  __m512 p = z1(-5.70498872745e-3f);
  p = muladd(p, z, z1(2.06390887954e-2f));
  p = muladd(p, z, z1(-5.37397155531e-2f));
  p = muladd(p, z, z1(1.33314422036e-1f));
  p = muladd(p, z, z1(-3.33332819422e-1f));
  const __m512 small = mul(muladd(p, z, z1(1.0f)), x);
  const __m512 e = exp_nonpos_vm16(mul(ax, z1(-2.0f)));
  const __m512 big_abs = _mm512_div_ps(sub(z1(1.0f), e), add(e, z1(1.0f)));
  const __m512 big = or_ps(andnot_ps(sign, big_abs), and_ps(sign, x));  // copysign
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, z1(0.625f), _CMP_LT_OQ), big, small);
}

DG_T512 void gru_block16(float* h, float* s, const float* x, const float* g, const float* hp,
                         index_t H, index_t j, __mmask16 m) {
  const __m512 hn = _mm512_maskz_loadu_ps(m, g + 2 * H + j);
  const __m512 r = sigmoid_vm16(add(_mm512_maskz_loadu_ps(m, x + j),
                                    _mm512_maskz_loadu_ps(m, g + j)));
  const __m512 z = sigmoid_vm16(add(_mm512_maskz_loadu_ps(m, x + H + j),
                                    _mm512_maskz_loadu_ps(m, g + H + j)));
  const __m512 n = tanh_vm16(add(mul(r, hn), _mm512_maskz_loadu_ps(m, x + 2 * H + j)));
  const __m512 hh = add(mul(sub(z1(1.0f), z), n),
                        mul(z, _mm512_maskz_loadu_ps(m, hp + j)));
  _mm512_mask_storeu_ps(s + j, m, r);
  _mm512_mask_storeu_ps(s + H + j, m, z);
  _mm512_mask_storeu_ps(s + 2 * H + j, m, n);
  _mm512_mask_storeu_ps(s + 3 * H + j, m, hn);
  _mm512_mask_storeu_ps(h + j, m, hh);
}

// The float32 LSTM backward row (dh and dc given) on AVX-512, rnn.h's formulas as the portable
// row's AVX2 clone evaluates them (left to right, no FMA).
DG_T512 void lstm_bwd_block16(float* d, float* dcp, const float* dh, const float* dc,
                              const float* cp, const float* c, const float* s, index_t H,
                              index_t j, __mmask16 m) {
  const __m512 i = _mm512_maskz_loadu_ps(m, s + j), f = _mm512_maskz_loadu_ps(m, s + H + j);
  const __m512 g = _mm512_maskz_loadu_ps(m, s + 2 * H + j);
  const __m512 o = _mm512_maskz_loadu_ps(m, s + 3 * H + j);
  const __m512 dhv = _mm512_maskz_loadu_ps(m, dh + j), one = z1(1.0f);
  const __m512 tc = tanh_vm16(_mm512_maskz_loadu_ps(m, c + j));
  const __m512 dct = add(_mm512_maskz_loadu_ps(m, dc + j),
                         mul(mul(dhv, o), sub(one, mul(tc, tc))));
  const __m512 d_o = mul(mul(mul(dhv, tc), o), sub(one, o));
  const __m512 d_i = mul(mul(mul(dct, g), i), sub(one, i));
  const __m512 d_f = mul(mul(mul(dct, _mm512_maskz_loadu_ps(m, cp + j)), f), sub(one, f));
  const __m512 d_g = mul(mul(dct, i), sub(one, mul(g, g)));
  _mm512_mask_storeu_ps(d + j, m, d_i);
  _mm512_mask_storeu_ps(d + H + j, m, d_f);
  _mm512_mask_storeu_ps(d + 2 * H + j, m, d_g);
  _mm512_mask_storeu_ps(d + 3 * H + j, m, d_o);
  _mm512_mask_storeu_ps(dcp + j, m, mul(dct, f));
}

__attribute__((target("avx512f"))) void lstm_backward_row_f32_avx512(
    float* d, float* dcp, const float* dh, const float* dc, const float* cp, const float* c,
    const float* s, index_t H) {
  index_t j = 0;
  for (; j + 16 <= H; j += 16) lstm_bwd_block16(d, dcp, dh, dc, cp, c, s, H, j, 0xFFFF);
  if (j < H)
    lstm_bwd_block16(d, dcp, dh, dc, cp, c, s, H, j, static_cast<__mmask16>((1u << (H - j)) - 1));
}

__attribute__((target("avx512f"))) void gru_forward_row_f32_avx512(
    float* h, float* s, const float* x, const float* g, const float* hp, index_t H) {
  index_t j = 0;
  for (; j + 16 <= H; j += 16) gru_block16(h, s, x, g, hp, H, j, 0xFFFF);
  if (j < H) gru_block16(h, s, x, g, hp, H, j, static_cast<__mmask16>((1u << (H - j)) - 1));
}

bool cpu_has_avx512f() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return has;
}
#endif

// Which kernels the fast paths may use (rnn_set_kernel_limit): 0 = the best the CPU has, 1 = AVX2.
std::atomic<int> g_kernel_limit{0};

// Per-element cost for the threading grain (five transcendental functions per LSTM unit).
constexpr index_t kCellCost = 16;

// Rows over threads: a cell step is 5-50 us at common sizes, so the fork goes through the
// mid-size fork's backoff (cpu/mid_fork.h), which keeps it on the calling thread while forks
// wait for a busy CPU.
// kFork false: all rows on the calling thread (the sequence kernels split rows themselves).
template <bool kFork = true, class F>
void rows(index_t B, index_t H, F&& row) {
  const int nt = kFork ? threads_for(B * H * kCellCost) : 1;
  if (nt > 1 && mid_fork_allowed()) {
    fork_team(nt, [&](int t, int nteam) {
      index_t lo, hi;
      split_units(B, nteam, t, 1, &lo, &hi);
      for (index_t b = lo; b < hi; ++b) row(b);
    });
    return;
  }
  for (index_t b = 0; b < B; ++b) row(b);
}

template <class T>
DG_CLONES void lstm_fwd_row(T* __restrict h, T* __restrict c, T* __restrict s,
                            const T* __restrict a, const T* __restrict cp, index_t H) {
  for (index_t j = 0; j < H; ++j)
    lstm_unit_forward<T, M>(a[j], a[H + j], a[2 * H + j], a[3 * H + j], cp[j], &s[j], &s[H + j],
                            &s[2 * H + j], &s[3 * H + j], &c[j], &h[j]);
}

template <class T, bool kDh, bool kDc>
DG_CLONES void lstm_bwd_row(T* __restrict d, T* __restrict dcp, const T* __restrict dh,
                            const T* __restrict dc, const T* __restrict cp,
                            const T* __restrict c, const T* __restrict s, index_t H) {
  for (index_t j = 0; j < H; ++j)
    lstm_unit_backward<T, M>(kDh ? dh[j] : T(0), kDc ? dc[j] : T(0), s[j], s[H + j],
                             s[2 * H + j], s[3 * H + j], cp[j], c[j], &d[j], &d[H + j],
                             &d[2 * H + j], &d[3 * H + j], &dcp[j]);
}

template <class T>
DG_CLONES void gru_fwd_row(T* __restrict h, T* __restrict s, const T* __restrict x,
                           const T* __restrict g, const T* __restrict hp, index_t H) {
  for (index_t j = 0; j < H; ++j) {
    gru_unit_forward<T, M>(x[j], x[H + j], x[2 * H + j], g[j], g[H + j], g[2 * H + j], hp[j],
                           &s[j], &s[H + j], &s[2 * H + j], &h[j]);
    s[3 * H + j] = g[2 * H + j];
  }
}

template <class T>
DG_CLONES void gru_bwd_row(T* __restrict dx, T* __restrict dg, T* __restrict dhp,
                           const T* __restrict dh, const T* __restrict s, const T* __restrict hp,
                           index_t H) {
  for (index_t j = 0; j < H; ++j)
    gru_unit_backward(dh[j], s[j], s[H + j], s[2 * H + j], s[3 * H + j], hp[j], &dx[j],
                      &dx[H + j], &dx[2 * H + j], &dg[j], &dg[H + j], &dg[2 * H + j], &dhp[j]);
}

// The cell kernels over B rows, split over threads (kFork) or on the calling thread.
template <bool kFork, class T>
void lstm_fwd(T* h, T* c, T* act, const T* gates, const T* c_prev, index_t B, index_t H) {
#ifdef DG_HAVE_AVX2_BUILD
  if constexpr (std::is_same_v<T, float>) {  // the same formulas on AVX2/FMA intrinsics
#ifdef DG_CELL_AVX512
    if (rnn_use_avx512()) {
      rows<kFork>(B, H, [&](index_t b) {
        lstm_forward_row_f32_avx512(h + b * H, c + b * H, act + b * 4 * H, gates + b * 4 * H,
                                    c_prev + b * H, H);
      });
      return;
    }
#endif
    static const bool avx2 = cpu_has_avx2_fma();
    if (avx2) {
      rows<kFork>(B, H, [&](index_t b) {
        avx2::lstm_forward_row_f32(h + b * H, c + b * H, act + b * 4 * H, gates + b * 4 * H,
                                   c_prev + b * H, H);
      });
      return;
    }
  }
#endif
  rows<kFork>(B, H, [&](index_t b) {
    lstm_fwd_row(h + b * H, c + b * H, act + b * 4 * H, gates + b * 4 * H, c_prev + b * H, H);
  });
}

template <bool kFork, class T>
void lstm_bwd(T* dgates, T* dc_prev, const T* dh, const T* dc, const T* c_prev, const T* c,
              const T* act, index_t B, index_t H) {
  const bool use512 = rnn_use_avx512();
  (void)use512;
  rows<kFork>(B, H, [&](index_t b) {
    T* d = dgates + b * 4 * H;
    T* dcp = dc_prev + b * H;
    const T* dhb = dh ? dh + b * H : nullptr;
    const T* dcb = dc ? dc + b * H : nullptr;
    const T* cpb = c_prev + b * H;
    const T* cb = c + b * H;
    const T* s = act + b * 4 * H;
#ifdef DG_CELL_AVX512
    if constexpr (std::is_same_v<T, float>) {
      if (dh && dc && use512) {
        lstm_backward_row_f32_avx512(d, dcp, dhb, dcb, cpb, cb, s, H);
        return;
      }
    }
#endif
    if (dh && dc) lstm_bwd_row<T, true, true>(d, dcp, dhb, dcb, cpb, cb, s, H);
    else if (dh) lstm_bwd_row<T, true, false>(d, dcp, dhb, dcb, cpb, cb, s, H);
    else if (dc) lstm_bwd_row<T, false, true>(d, dcp, dhb, dcb, cpb, cb, s, H);
    else lstm_bwd_row<T, false, false>(d, dcp, dhb, dcb, cpb, cb, s, H);
  });
}

template <bool kFork, class T>
void gru_fwd(T* h, T* act, const T* xg, const T* hg, const T* h_prev, index_t B, index_t H) {
#ifdef DG_CELL_AVX512
  if constexpr (std::is_same_v<T, float>) {
    if (rnn_use_avx512()) {
      rows<kFork>(B, H, [&](index_t b) {
        gru_forward_row_f32_avx512(h + b * H, act + b * 4 * H, xg + b * 3 * H, hg + b * 3 * H,
                                   h_prev + b * H, H);
      });
      return;
    }
  }
#endif
  rows<kFork>(B, H, [&](index_t b) {
    gru_fwd_row(h + b * H, act + b * 4 * H, xg + b * 3 * H, hg + b * 3 * H, h_prev + b * H, H);
  });
}

template <bool kFork, class T>
void gru_bwd(T* dxg, T* dhg, T* dh_prev, const T* dh, const T* h_prev, const T* act, index_t B,
             index_t H) {
  rows<kFork>(B, H, [&](index_t b) {
    gru_bwd_row(dxg + b * 3 * H, dhg + b * 3 * H, dh_prev + b * H, dh + b * H, act + b * 4 * H,
                h_prev + b * H, H);
  });
}

}  // namespace

bool rnn_use_avx512() {
#ifdef DG_CELL_AVX512
  return g_kernel_limit.load(std::memory_order_relaxed) == 0 && cpu_has_avx512f();
#else
  return false;
#endif
}

void rnn_set_kernel_limit(int limit) { g_kernel_limit.store(limit, std::memory_order_relaxed); }

template <class T>
void lstm_cell_forward(T* h, T* c, T* act, const T* gates, const T* c_prev, index_t B, index_t H) {
  lstm_fwd<true>(h, c, act, gates, c_prev, B, H);
}
template <class T>
void lstm_cell_forward_here(T* h, T* c, T* act, const T* gates, const T* c_prev, index_t B,
                            index_t H) {
  lstm_fwd<false>(h, c, act, gates, c_prev, B, H);
}
template <class T>
void lstm_cell_backward(T* dgates, T* dc_prev, const T* dh, const T* dc, const T* c_prev,
                        const T* c, const T* act, index_t B, index_t H) {
  lstm_bwd<true>(dgates, dc_prev, dh, dc, c_prev, c, act, B, H);
}
template <class T>
void lstm_cell_backward_here(T* dgates, T* dc_prev, const T* dh, const T* dc, const T* c_prev,
                             const T* c, const T* act, index_t B, index_t H) {
  lstm_bwd<false>(dgates, dc_prev, dh, dc, c_prev, c, act, B, H);
}
template <class T>
void gru_cell_forward(T* h, T* act, const T* xg, const T* hg, const T* h_prev, index_t B, index_t H) {
  gru_fwd<true>(h, act, xg, hg, h_prev, B, H);
}
template <class T>
void gru_cell_forward_here(T* h, T* act, const T* xg, const T* hg, const T* h_prev, index_t B,
                           index_t H) {
  gru_fwd<false>(h, act, xg, hg, h_prev, B, H);
}
template <class T>
void gru_cell_backward(T* dxg, T* dhg, T* dh_prev, const T* dh, const T* h_prev, const T* act,
                       index_t B, index_t H) {
  gru_bwd<true>(dxg, dhg, dh_prev, dh, h_prev, act, B, H);
}
template <class T>
void gru_cell_backward_here(T* dxg, T* dhg, T* dh_prev, const T* dh, const T* h_prev,
                            const T* act, index_t B, index_t H) {
  gru_bwd<false>(dxg, dhg, dh_prev, dh, h_prev, act, B, H);
}

#define DG_INSTANTIATE_CELLS(T, SUFFIX)                                                         \
  template void lstm_cell_forward##SUFFIX<T>(T*, T*, T*, const T*, const T*, index_t, index_t);  \
  template void lstm_cell_backward##SUFFIX<T>(T*, T*, const T*, const T*, const T*, const T*,    \
                                              const T*, index_t, index_t);                       \
  template void gru_cell_forward##SUFFIX<T>(T*, T*, const T*, const T*, const T*, index_t,       \
                                            index_t);                                            \
  template void gru_cell_backward##SUFFIX<T>(T*, T*, T*, const T*, const T*, const T*, index_t,  \
                                             index_t);
#define DG_INSTANTIATE(T) DG_INSTANTIATE_CELLS(T, ) DG_INSTANTIATE_CELLS(T, _here)
DG_INSTANTIATE(float)
DG_INSTANTIATE(double)
#undef DG_INSTANTIATE
#undef DG_INSTANTIATE_CELLS

}  // namespace dg::cpu
