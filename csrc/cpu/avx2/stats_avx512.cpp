// AVX-512F float32 sums for the layer statistics record: the loop of stats_avx2.cpp with 16
// lanes and 32 registers (the AVX2 one keeps 16 float accumulators and spills some of them to the
// stack). Compiled with the AVX2 options like the rest of csrc/cpu/avx2/; only the code after the
// target pragma uses AVX-512, and layer_stats.cpp calls it only after cpu_has_avx512f().
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "cpu/avx2/stats_avx2.h"

#include "cpu/avx2/avx512_begin.h"

namespace dg::avx512 {
namespace {


inline __m512d lo_pd(__m512 v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
inline __m512d hi_pd(__m512 v) {
  return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

// [lo, hi) in double lanes: exact squares over the whole float range.
inline void sums_double(double& ts, double& tq, const float* x, index_t lo, index_t hi) {
  __m512d S = _mm512_setzero_pd(), Q = S;
  index_t i = lo;
  for (; i + 16 <= hi; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    const __m512d a = lo_pd(v), b = hi_pd(v);
    S = _mm512_add_pd(S, _mm512_add_pd(a, b));
    Q = _mm512_add_pd(Q, _mm512_fmadd_pd(a, a, _mm512_mul_pd(b, b)));
  }
  ts += _mm512_reduce_add_pd(S);
  tq += _mm512_reduce_add_pd(Q);
  for (; i < hi; ++i) {
    const double v = x[i];
    ts += v;
    tq += v * v;
  }
}

// 128 elements per iteration in 8 float accumulators per sum (8 chains cover the add and FMA
// latency; 4 left the loop latency-bound at half the load rate), and with kCount the number of
// |x - center| > bound (NaN never counts) in 32-bit integer lanes. Each chunk of 2048 elements
// (16 terms per float lane) is folded, converted and added to double lanes, unless its float sum
// of squares is not finite or below avx2::kSumSafeLow (see stats_avx2.h): then the chunk's sums
// are taken again in double from L1 (the count is exact either way).
template <bool kWantSum, bool kCount>
void sums_impl(double* s, double* q, index_t* count, const float* x, index_t n, float center,
               float bound) {
  constexpr index_t kChunk = 2048, kStep = 128;
  __m512d S = _mm512_setzero_pd(), Q = S;
  double ts = 0, tq = 0;
  const __m512 c = _mm512_set1_ps(center), bd = _mm512_set1_ps(bound);
  const __m512i one = _mm512_set1_epi32(1);
  // 4 independent count chains (one masked add chain serialised the loop); each lane counts
  // at most n / 64 < 2^31 elements
  __m512i cnt[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                    _mm512_setzero_si512()};
  index_t i = 0;
  const index_t nv = n - n % kStep;
  while (i < nv) {
    const index_t start = i, end = std::min(nv, i + kChunk);
    __m512 sa[8], qa[8];
    for (int k = 0; k < 8; ++k) sa[k] = qa[k] = _mm512_setzero_ps();
    for (; i < end; i += kStep) {
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const __m512 v = _mm512_loadu_ps(x + i + 16 * k);
        if constexpr (kWantSum) sa[k] = _mm512_add_ps(sa[k], v);
        qa[k] = _mm512_fmadd_ps(v, v, qa[k]);
        if constexpr (kCount) {
          const __m512 d = _mm512_abs_ps(_mm512_sub_ps(v, c));  // AVX-512F (no DQ)
          cnt[k & 3] = _mm512_mask_add_epi32(cnt[k & 3], _mm512_cmp_ps_mask(d, bd, _CMP_GT_OQ),
                                             cnt[k & 3], one);
        }
      }
    }
    for (int w = 4; w >= 1; w /= 2)
      for (int k = 0; k < w; ++k) {
        if constexpr (kWantSum) sa[k] = _mm512_add_ps(sa[k], sa[k + w]);
        qa[k] = _mm512_add_ps(qa[k], qa[k + w]);
      }
    const __m512d qd = _mm512_add_pd(lo_pd(qa[0]), hi_pd(qa[0]));
    const double cq = _mm512_reduce_add_pd(qd);
    if (!(std::isfinite(cq) && cq >= double(avx2::kSumSafeLow))) {
      sums_double(ts, tq, x, start, end);
      continue;
    }
    Q = _mm512_add_pd(Q, qd);
    if constexpr (kWantSum) S = _mm512_add_pd(S, _mm512_add_pd(lo_pd(sa[0]), hi_pd(sa[0])));
  }
  ts += _mm512_reduce_add_pd(S);
  tq += _mm512_reduce_add_pd(Q);
  sums_double(ts, tq, x, i, n);  // the last < 128 elements
  if constexpr (kCount) {
    index_t k = 0;
    for (int j = 0; j < 4; ++j) k += index_t(_mm512_reduce_add_epi32(cnt[j]));
    for (; i < n; ++i) k += std::fabs(x[i] - center) > bound;
    *count += k;
  }
  if constexpr (kWantSum) *s += ts;
  *q += tq;
}

// sums_colmax_f32 (stats_avx2.h): column blocks of 64 (4 vectors, the last one masked), the
// maxima of a block in registers over all rows, the sums in 8 chains (4 vectors x row parity)
// folded per chunk of kRows rows (<= 2048 elements).
void sums_colmax_impl(double* s, double* q, float* colmax, const float* z, index_t rows,
                      index_t cols) {
  constexpr index_t kBlock = 64, kRows = 32;
  double ts = 0, tq = 0;
  __m512d S = _mm512_setzero_pd(), Q = S;
  for (index_t j0 = 0; j0 < cols; j0 += kBlock) {
    const index_t w = std::min(kBlock, cols - j0);
    __mmask16 m[4];
    for (int k = 0; k < 4; ++k) {
      const index_t left = w - 16 * k;
      m[k] = left >= 16 ? __mmask16(0xFFFF) : left <= 0 ? __mmask16(0)
                                                         : __mmask16((1u << left) - 1u);
    }
    __m512 cm[4];
    for (int k = 0; k < 4; ++k) cm[k] = _mm512_maskz_loadu_ps(m[k], colmax + j0 + 16 * k);
    for (index_t r0 = 0; r0 < rows; r0 += kRows) {
      const index_t r1 = std::min(rows, r0 + kRows);
      __m512 sa[8], qa[8];
      for (int k = 0; k < 8; ++k) sa[k] = qa[k] = _mm512_setzero_ps();
      // two rows an iteration, each into its own 4 chains (registers: named, not indexed)
      __m512 c0 = cm[0], c1 = cm[1], c2 = cm[2], c3 = cm[3];
      __m512 s0 = sa[0], s1 = sa[1], s2 = sa[2], s3 = sa[3], s4 = sa[4], s5 = sa[5], s6 = sa[6],
             s7 = sa[7];
      __m512 q0 = qa[0], q1 = qa[1], q2 = qa[2], q3 = qa[3], q4 = qa[4], q5 = qa[5], q6 = qa[6],
             q7 = qa[7];
      const __mmask16 m0 = m[0], m1 = m[1], m2 = m[2], m3 = m[3];
#define DG_ROW_VEC(zr, k, S, Q, C, M)                 \
  {                                                   \
    const __m512 v = _mm512_maskz_loadu_ps(M, (zr) + 16 * (k)); \
    S = _mm512_add_ps(S, v);                          \
    Q = _mm512_fmadd_ps(v, v, Q);                     \
    C = _mm512_mask_max_ps(C, M, v, C);               \
  }
      index_t r = r0;
      for (; r + 2 <= r1; r += 2) {
        const float* za = z + r * cols + j0;
        const float* zb = za + cols;
        DG_ROW_VEC(za, 0, s0, q0, c0, m0)
        DG_ROW_VEC(za, 1, s1, q1, c1, m1)
        DG_ROW_VEC(za, 2, s2, q2, c2, m2)
        DG_ROW_VEC(za, 3, s3, q3, c3, m3)
        DG_ROW_VEC(zb, 0, s4, q4, c0, m0)
        DG_ROW_VEC(zb, 1, s5, q5, c1, m1)
        DG_ROW_VEC(zb, 2, s6, q6, c2, m2)
        DG_ROW_VEC(zb, 3, s7, q7, c3, m3)
      }
      if (r < r1) {
        const float* za = z + r * cols + j0;
        DG_ROW_VEC(za, 0, s0, q0, c0, m0)
        DG_ROW_VEC(za, 1, s1, q1, c1, m1)
        DG_ROW_VEC(za, 2, s2, q2, c2, m2)
        DG_ROW_VEC(za, 3, s3, q3, c3, m3)
      }
#undef DG_ROW_VEC
      cm[0] = c0, cm[1] = c1, cm[2] = c2, cm[3] = c3;
      sa[0] = s0, sa[1] = s1, sa[2] = s2, sa[3] = s3, sa[4] = s4, sa[5] = s5, sa[6] = s6,
      sa[7] = s7;
      qa[0] = q0, qa[1] = q1, qa[2] = q2, qa[3] = q3, qa[4] = q4, qa[5] = q5, qa[6] = q6,
      qa[7] = q7;
      for (int wd = 4; wd >= 1; wd /= 2)
        for (int k = 0; k < wd; ++k) {
          sa[k] = _mm512_add_ps(sa[k], sa[k + wd]);
          qa[k] = _mm512_add_ps(qa[k], qa[k + wd]);
        }
      const __m512d qd = _mm512_add_pd(lo_pd(qa[0]), hi_pd(qa[0]));
      const double cq = _mm512_reduce_add_pd(qd);
      if (std::isfinite(cq) && cq >= double(avx2::kSumSafeLow)) {
        Q = _mm512_add_pd(Q, qd);
        S = _mm512_add_pd(S, _mm512_add_pd(lo_pd(sa[0]), hi_pd(sa[0])));
      } else {
        for (index_t r = r0; r < r1; ++r) sums_double(ts, tq, z + r * cols + j0, 0, w);
      }
    }
    for (int k = 0; k < 4; ++k) _mm512_mask_storeu_ps(colmax + j0 + 16 * k, m[k], cm[k]);
  }
  *s += ts + _mm512_reduce_add_pd(S);
  *q += tq + _mm512_reduce_add_pd(Q);
}

}  // namespace

void sums_colmax_f32(double* s, double* q, float* colmax, const float* z, index_t rows,
                     index_t cols) {
  sums_colmax_impl(s, q, colmax, z, rows, cols);
}

void sums_f32(double* s, double* q, const float* x, index_t n) {
  if (s) sums_impl<true, false>(s, q, nullptr, x, n, 0.0f, 0.0f);
  else sums_impl<false, false>(s, q, nullptr, x, n, 0.0f, 0.0f);
}

void sums_count_f32(double* s, double* q, index_t* count, const float* x, index_t n,
                    float center, float bound) {
  sums_impl<true, true>(s, q, count, x, n, center, bound);
}

}  // namespace dg::avx512

#include "cpu/avx2/avx512_end.h"
#endif
