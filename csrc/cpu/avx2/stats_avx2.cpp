// AVX2 float32 sums for the layer statistics record (cpu/layer_stats.cpp). The portable loop
// left GCC spilling its lane arrays to the stack (0.6 ns per element); this is ~0.1.
#include "cpu/avx2/stats_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace dg::avx2 {
namespace {

inline __m256d lo_pd(__m256 v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
inline __m256d hi_pd(__m256 v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }

inline double hsum(__m256d a) {
  const __m128d l = _mm256_castpd256_pd128(a), h = _mm256_extractf128_pd(a, 1);
  const __m128d t = _mm_add_pd(l, h);
  return _mm_cvtsd_f64(_mm_add_sd(t, _mm_unpackhi_pd(t, t)));
}

}  // namespace

namespace {

// The chunk [lo, hi) in double lanes (exact squares over the whole float range).
inline void sums_double(double& ts, double& tq, const float* x, index_t lo, index_t hi) {
  __m256d S = _mm256_setzero_pd(), Q = S;
  index_t i = lo;
  for (; i + 8 <= hi; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256d a = lo_pd(v), b = hi_pd(v);
    S = _mm256_add_pd(S, _mm256_add_pd(a, b));
    Q = _mm256_add_pd(Q, _mm256_fmadd_pd(a, a, _mm256_mul_pd(b, b)));
  }
  ts += hsum(S);
  tq += hsum(Q);
  for (; i < hi; ++i) {
    const double v = x[i];
    ts += v;
    tq += v * v;
  }
}

// 32 elements per iteration in 4 independent float accumulators per sum, and with kCount the
// number of |x - center| > bound (NaN never counts) from the same loads in 32-bit integer lanes;
// every chunk of 256 elements (8 terms per float lane) is converted and added to double lanes, or
// taken again in double (see kSumSafeLow). Four chains per sum keep every accumulator, the count
// and the constants in the 16 ymm registers: eight (the earlier loop) spilled to the stack and
// ran at 3.3 cycles per vector on a Zen 1 core.
template <bool kWantSum, bool kCount>
inline void sums_f32_impl(double* s, double* q, index_t* count, const float* x, index_t n,
                          float center, float bound) {
  constexpr index_t kChunk = 256, kStep = 32;
  __m256d S0 = _mm256_setzero_pd(), S1 = S0, Q0 = S0, Q1 = S0;
  index_t i = 0;
  const index_t nv = n - n % kStep;
  double ts = 0, tq = 0;  // the chunks taken again in double
  const __m256 c = _mm256_set1_ps(center), bd = _mm256_set1_ps(bound);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256i cnt = _mm256_setzero_si256();  // each lane counts at most n / 8 < 2^31 elements
  while (i < nv) {
    const index_t start = i, end = std::min(nv, i + kChunk);
    __m256 sa[4], qa[4];
    for (int k = 0; k < 4; ++k) sa[k] = qa[k] = _mm256_setzero_ps();
    for (; i < end; i += kStep)
      for (int k = 0; k < 4; ++k) {
        const __m256 v = _mm256_loadu_ps(x + i + 8 * k);
        if constexpr (kWantSum) sa[k] = _mm256_add_ps(sa[k], v);
        qa[k] = _mm256_fmadd_ps(v, v, qa[k]);
        if constexpr (kCount) {  // the comparison's all-ones lanes are -1: subtract them
          const __m256 d = _mm256_andnot_ps(sign, _mm256_sub_ps(v, c));
          cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(_mm256_cmp_ps(d, bd, _CMP_GT_OQ)));
        }
      }
    if constexpr (kWantSum) sa[0] = _mm256_add_ps(_mm256_add_ps(sa[0], sa[1]), _mm256_add_ps(sa[2], sa[3]));
    const __m256 qs = _mm256_add_ps(_mm256_add_ps(qa[0], qa[1]), _mm256_add_ps(qa[2], qa[3]));
    const __m256d qlo = lo_pd(qs), qhi = hi_pd(qs);
    const double cq = hsum(_mm256_add_pd(qlo, qhi));
    if (!(std::isfinite(cq) && cq >= double(kSumSafeLow))) {  // the chunk again, in double
      double ws = 0;
      sums_double(ws, tq, x, start, end);
      if constexpr (kWantSum) ts += ws;
      continue;
    }
    if constexpr (kWantSum) {
      S0 = _mm256_add_pd(S0, lo_pd(sa[0]));
      S1 = _mm256_add_pd(S1, hi_pd(sa[0]));
    }
    Q0 = _mm256_add_pd(Q0, qlo);
    Q1 = _mm256_add_pd(Q1, qhi);
  }
  ts += hsum(_mm256_add_pd(S0, S1));
  tq += hsum(_mm256_add_pd(Q0, Q1));
  double ws = 0;
  sums_double(ws, tq, x, i, n);  // the last < 32 elements
  if constexpr (kWantSum) ts += ws;
  if constexpr (kCount) {
    alignas(32) int32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), cnt);
    index_t k = 0;
    for (int j = 0; j < 8; ++j) k += lanes[j];
    for (; i < n; ++i) k += std::fabs(x[i] - center) > bound;
    *count += k;
  }
  if constexpr (kWantSum) *s += ts;
  *q += tq;
}

}  // namespace

void sums_f32(double* s, double* q, const float* x, index_t n) {
  if (s) sums_f32_impl<true, false>(s, q, nullptr, x, n, 0.0f, 0.0f);
  else sums_f32_impl<false, false>(s, q, nullptr, x, n, 0.0f, 0.0f);
}

void sums_count_f32(double* s, double* q, index_t* count, const float* x, index_t n,
                    float center, float bound) {
  sums_f32_impl<true, true>(s, q, count, x, n, center, bound);
}

void sums_colmax_f32(double* s, double* q, float* colmax, const float* z, index_t rows,
                     index_t cols) {
  // Column blocks of 32 (4 vectors): per row one load of each vector feeds its sum, its sum of
  // squares and its column maxima (12 accumulators in the 16 ymm registers); the float sums of
  // kRows rows (16 terms per lane) are converted and added to double lanes, or that block of rows
  // taken again in double (see kSumSafeLow). The last cols % 32 columns: double sums and scalar
  // maxima. NaN never enters a maximum (max keeps the accumulator when the value is NaN).
  constexpr index_t kBlock = 32, kRows = 16;
  double ts = 0, tq = 0;
  __m256d S0 = _mm256_setzero_pd(), S1 = S0, Q0 = S0, Q1 = S0;
  const index_t cv = cols - cols % kBlock;
  for (index_t j0 = 0; j0 < cv; j0 += kBlock) {
    __m256 cm[4];
    for (int k = 0; k < 4; ++k) cm[k] = _mm256_loadu_ps(colmax + j0 + 8 * k);
    for (index_t r0 = 0; r0 < rows; r0 += kRows) {
      const index_t r1 = std::min(rows, r0 + kRows);
      __m256 sa[4], qa[4];
      for (int k = 0; k < 4; ++k) sa[k] = qa[k] = _mm256_setzero_ps();
      for (index_t r = r0; r < r1; ++r) {
        const float* zr = z + r * cols + j0;
        for (int k = 0; k < 4; ++k) {
          const __m256 v = _mm256_loadu_ps(zr + 8 * k);
          sa[k] = _mm256_add_ps(sa[k], v);
          qa[k] = _mm256_fmadd_ps(v, v, qa[k]);
          cm[k] = _mm256_max_ps(v, cm[k]);  // NaN in v: cm[k] kept
        }
      }
      const __m256 ss = _mm256_add_ps(_mm256_add_ps(sa[0], sa[1]), _mm256_add_ps(sa[2], sa[3]));
      const __m256 qs = _mm256_add_ps(_mm256_add_ps(qa[0], qa[1]), _mm256_add_ps(qa[2], qa[3]));
      const __m256d qlo = lo_pd(qs), qhi = hi_pd(qs);
      const double cq = hsum(_mm256_add_pd(qlo, qhi));
      if (std::isfinite(cq) && cq >= double(kSumSafeLow)) {
        S0 = _mm256_add_pd(S0, lo_pd(ss));
        S1 = _mm256_add_pd(S1, hi_pd(ss));
        Q0 = _mm256_add_pd(Q0, qlo);
        Q1 = _mm256_add_pd(Q1, qhi);
      } else {  // these rows of the block again, in double
        for (index_t r = r0; r < r1; ++r) sums_double(ts, tq, z + r * cols + j0, 0, kBlock);
      }
    }
    for (int k = 0; k < 4; ++k) _mm256_storeu_ps(colmax + j0 + 8 * k, cm[k]);
  }
  for (index_t r = 0; r < rows && cv < cols; ++r) {
    const float* zr = z + r * cols;
    for (index_t j = cv; j < cols; ++j) {
      const double v = zr[j];
      ts += v;
      tq += v * v;
      colmax[j] = zr[j] > colmax[j] ? zr[j] : colmax[j];
    }
  }
  *s += ts + hsum(_mm256_add_pd(S0, S1));
  *q += tq + hsum(_mm256_add_pd(Q0, Q1));
}

void sums_f32_exact(double* s, double* q, const float* x, const float* p, index_t n) {
  // 16 elements per iteration, each 4-wide double group in its own chain for both sums
  __m256d S[4], Q[4];
  for (int k = 0; k < 4; ++k) S[k] = Q[k] = _mm256_setzero_pd();
  index_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    if (p) {
      a = _mm256_sub_ps(a, _mm256_loadu_ps(p + i));
      b = _mm256_sub_ps(b, _mm256_loadu_ps(p + i + 8));
    }
    const __m256d d[4] = {lo_pd(a), hi_pd(a), lo_pd(b), hi_pd(b)};
    for (int k = 0; k < 4; ++k) {
      S[k] = _mm256_add_pd(S[k], d[k]);
      Q[k] = _mm256_fmadd_pd(d[k], d[k], Q[k]);
    }
  }
  double ts = hsum(_mm256_add_pd(_mm256_add_pd(S[0], S[1]), _mm256_add_pd(S[2], S[3])));
  double tq = hsum(_mm256_add_pd(_mm256_add_pd(Q[0], Q[1]), _mm256_add_pd(Q[2], Q[3])));
  for (; i < n; ++i) {
    const double v = p ? double(x[i] - p[i]) : double(x[i]);
    ts += v;
    tq += v * v;
  }
  if (s) *s += ts;
  *q += tq;
}

void health_f32(double* out, const float* x, index_t n) {
  // squares in double (each float32 is exact in double: the sum matches a float64 reference to
  // rounding), min and max in float vectors. A NaN or an Inf makes the sum NaN or Inf (float
  // squares cannot overflow double), which sends the caller to the exact path: no separate
  // x - x check (it cost a fifth of the loop's operations, on cores with 128-bit units the
  // difference between the conversions' rate and the core's read bandwidth).
  const float inf = __builtin_inff();
  __m256d Q0 = _mm256_setzero_pd(), Q1 = Q0, Q2 = Q0, Q3 = Q0;
  __m256 mn0 = _mm256_set1_ps(inf), mn1 = mn0, mx0 = _mm256_set1_ps(-inf), mx1 = mx0;
  index_t i = 0;
  for (; i + 16 <= n; i += 16) {
    // 4 KiB ahead: the hardware prefetch alone left the pass at 9.4-9.9 GB/s on a Zen 1 core,
    // 49-55% of the copy bandwidth (11.3-11.8 GB/s, 64-68%, with it)
    _mm_prefetch(reinterpret_cast<const char*>(x + i) + 4096, _MM_HINT_T0);
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    const __m256d a0 = lo_pd(a), a1 = hi_pd(a), b0 = lo_pd(b), b1 = hi_pd(b);
    Q0 = _mm256_fmadd_pd(a0, a0, Q0);
    Q1 = _mm256_fmadd_pd(a1, a1, Q1);
    Q2 = _mm256_fmadd_pd(b0, b0, Q2);
    Q3 = _mm256_fmadd_pd(b1, b1, Q3);
    mn0 = _mm256_min_ps(mn0, a);
    mn1 = _mm256_min_ps(mn1, b);
    mx0 = _mm256_max_ps(mx0, a);
    mx1 = _mm256_max_ps(mx1, b);
  }
  double q = hsum(_mm256_add_pd(_mm256_add_pd(Q0, Q1), _mm256_add_pd(Q2, Q3)));
  alignas(32) float a[8], b[8], c[8], d[8];
  _mm256_store_ps(a, mn0);
  _mm256_store_ps(b, mn1);
  _mm256_store_ps(c, mx0);
  _mm256_store_ps(d, mx1);
  float mn = inf, mx = -inf;
  for (int j = 0; j < 8; ++j) {
    mn = std::min(mn, std::min(a[j], b[j]));
    mx = std::max(mx, std::max(c[j], d[j]));
  }
  for (; i < n; ++i) {
    const float v = x[i];
    q += double(v) * double(v);
    mn = v < mn ? v : mn;
    mx = v > mx ? v : mx;
  }
  out[0] = q;
  out[1] = mn;
  out[2] = mx;
}

}  // namespace dg::avx2
