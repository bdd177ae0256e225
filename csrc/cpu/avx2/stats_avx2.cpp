// AVX2 float32 sums for the layer statistics record (cpu/layer_stats.cpp). The portable loop
// left GCC spilling its lane arrays to the stack (0.6 ns per element); this is ~0.1.
#include "cpu/avx2/stats_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

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

void sums_f32(double* s, double* q, const float* x, index_t n) {
  constexpr index_t kChunk = 256;
  __m256d S0 = _mm256_setzero_pd(), S1 = S0, S2 = S0, S3 = S0;
  __m256d Q0 = S0, Q1 = S0, Q2 = S0, Q3 = S0;
  index_t i = 0;
  const index_t nv = n - n % 16;
  while (i < nv) {
    const index_t end = std::min(nv, i + kChunk);
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, q0 = s0, q1 = s0;
    for (; i < end; i += 16) {
      const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
      s0 = _mm256_add_ps(s0, a);
      s1 = _mm256_add_ps(s1, b);
      q0 = _mm256_fmadd_ps(a, a, q0);
      q1 = _mm256_fmadd_ps(b, b, q1);
    }
    if (s) {
      S0 = _mm256_add_pd(S0, lo_pd(s0));
      S1 = _mm256_add_pd(S1, hi_pd(s0));
      S2 = _mm256_add_pd(S2, lo_pd(s1));
      S3 = _mm256_add_pd(S3, hi_pd(s1));
    }
    Q0 = _mm256_add_pd(Q0, lo_pd(q0));
    Q1 = _mm256_add_pd(Q1, hi_pd(q0));
    Q2 = _mm256_add_pd(Q2, lo_pd(q1));
    Q3 = _mm256_add_pd(Q3, hi_pd(q1));
  }
  double ts = hsum(_mm256_add_pd(_mm256_add_pd(S0, S1), _mm256_add_pd(S2, S3)));
  double tq = hsum(_mm256_add_pd(_mm256_add_pd(Q0, Q1), _mm256_add_pd(Q2, Q3)));
  for (; i < n; ++i) {
    const double v = x[i];
    ts += v;
    tq += v * v;
  }
  if (s) *s += ts;
  *q += tq;
}

void health_f32(double* out, const float* x, index_t n) {
  // squares in double (each float32 is exact in double: the sum matches a float64 reference to
  // rounding), min, max and the x - x check in float vectors
  const float inf = __builtin_inff();
  __m256d Q0 = _mm256_setzero_pd(), Q1 = Q0, Q2 = Q0, Q3 = Q0;
  __m256 mn0 = _mm256_set1_ps(inf), mn1 = mn0, mx0 = _mm256_set1_ps(-inf), mx1 = mx0;
  __m256 z0 = _mm256_setzero_ps(), z1 = z0;
  index_t i = 0;
  for (; i + 16 <= n; i += 16) {
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
    z0 = _mm256_add_ps(z0, _mm256_sub_ps(a, a));
    z1 = _mm256_add_ps(z1, _mm256_sub_ps(b, b));
  }
  double q = hsum(_mm256_add_pd(_mm256_add_pd(Q0, Q1), _mm256_add_pd(Q2, Q3)));
  alignas(32) float a[8], b[8], c[8], d[8], e[8], f[8];
  _mm256_store_ps(a, mn0);
  _mm256_store_ps(b, mn1);
  _mm256_store_ps(c, mx0);
  _mm256_store_ps(d, mx1);
  _mm256_store_ps(e, z0);
  _mm256_store_ps(f, z1);
  float mn = inf, mx = -inf, z = 0.0f;
  for (int j = 0; j < 8; ++j) {
    mn = std::min(mn, std::min(a[j], b[j]));
    mx = std::max(mx, std::max(c[j], d[j]));
    z += e[j] + f[j];
  }
  for (; i < n; ++i) {
    const float v = x[i];
    q += double(v) * double(v);
    mn = v < mn ? v : mn;
    mx = v > mx ? v : mx;
    z += v - v;
  }
  out[0] = q;
  out[1] = mn;
  out[2] = mx;
  out[3] = z;
}

void step_chunk_f32(double* o, const float* g, const float* pn, const float* po, index_t k) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 inf = _mm256_set1_ps(__builtin_inff());
  __m256 q = _mm256_setzero_ps(), m = q, ps = q, ds = q;
  index_t i = 0;
  for (; i + 8 <= k; i += 8) {
    const __m256 v = _mm256_loadu_ps(g + i), w = _mm256_loadu_ps(pn + i);
    const __m256 d = _mm256_sub_ps(w, _mm256_loadu_ps(po + i));
    const __m256 a = _mm256_and_ps(v, absmask);
    q = _mm256_fmadd_ps(v, v, q);
    // the finite values only: |v| < inf (false for NaN and +-Inf)
    m = _mm256_max_ps(m, _mm256_and_ps(a, _mm256_cmp_ps(a, inf, _CMP_LT_OQ)));
    ps = _mm256_fmadd_ps(w, w, ps);
    ds = _mm256_fmadd_ps(d, d, ds);
  }
  alignas(32) float lq[8], lm[8], lp[8], ld[8];
  _mm256_store_ps(lq, q);
  _mm256_store_ps(lm, m);
  _mm256_store_ps(lp, ps);
  _mm256_store_ps(ld, ds);
  double sq = 0, mx = 0, sp = 0, sd = 0;
  for (int j = 0; j < 8; ++j) {
    sq += lq[j];
    mx = std::max(mx, double(lm[j]));
    sp += lp[j];
    sd += ld[j];
  }
  for (; i < k; ++i) {
    const float v = g[i], w = pn[i], d = w - po[i], a = std::fabs(v);
    sq += double(v * v);
    if (a < __builtin_inff()) mx = std::max(mx, double(a));
    sp += double(w * w);
    sd += double(d * d);
  }
  o[0] = sq;
  o[1] = mx;
  // a NaN or an Inf in g makes the sum of squares NaN or Inf (so does an overflow of the float
  // squares, |g| > 1.8e19: the caller's exact pass then sorts it out)
  o[2] = std::isfinite(sq) ? 0.0 : std::nan("");
  o[3] = sp;
  o[4] = sd;
}

}  // namespace dg::avx2
