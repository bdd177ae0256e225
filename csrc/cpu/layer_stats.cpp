// The passes behind the layer statistics record (cpu/layer_stats.h). Each is called on a block of
// rows the fused kernel has just written, so it reads from L1/L2, and it vectorizes: sums in fixed
// lanes folded once per call, counts as integer adds of comparison results, column maxima as
// vector max; no branch and no horizontal operation per element or per row.
#include "cpu/layer_stats.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#ifdef DG_HAVE_AVX2_BUILD
#include "cpu/avx2/stats_avx2.h"
#endif
#include "cpu/ew_parallel.h"
#include "deepgrad/cpu_features.h"

namespace dg::cpu {
namespace {

constexpr int kLanes = 16;

inline double fold(const double* acc) {
  double t[kLanes];
  for (int j = 0; j < kLanes; ++j) t[j] = acc[j];
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int j = 0; j < w; ++j) t[j] += t[j + w];
  return t[0];
}

template <class T, bool kWantSum>
DG_CLONES void sums_portable(double* s_out, double* q_out, const T* x, index_t n) {
  double S[kLanes] = {}, Q[kLanes] = {};
  index_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const double v = double(x[i + j]);
      if constexpr (kWantSum) S[j] += v;
      Q[j] += v * v;
    }
  for (int j = 0; i < n; ++i, ++j) {
    const double v = double(x[i]);
    if constexpr (kWantSum) S[j] += v;
    Q[j] += v * v;
  }
  if constexpr (kWantSum) *s_out += fold(S);
  *q_out += fold(Q);
}

// float32: the AVX-512 or AVX2 loop (float lanes per chunk, then double) where the CPU has it;
// otherwise, and for float64, double lanes
template <class T, bool kWantSum>
void sums_impl(double* s_out, double* q_out, const T* x, index_t n) {
#ifdef DG_HAVE_AVX2_BUILD
  if constexpr (std::is_same_v<T, float>) {
    static const bool avx512 = cpu_has_avx2_fma() && cpu_has_avx512f();
    static const bool avx2 = cpu_has_avx2_fma();
    if (avx512) return avx512::sums_f32(kWantSum ? s_out : nullptr, q_out, x, n);
    if (avx2) return avx2::sums_f32(kWantSum ? s_out : nullptr, q_out, x, n);
  }
#endif
  sums_portable<T, kWantSum>(s_out, q_out, x, n);
}

template <class T>
DG_CLONES512 index_t count_outside_impl(const T* a, index_t n, T center, T bound) {
  using I = std::conditional_t<std::is_same_v<T, float>, std::int32_t, std::int64_t>;
  index_t total = 0;
  for (index_t i0 = 0; i0 < n; i0 += (index_t(1) << 30)) {
    const index_t i1 = std::min(n, i0 + (index_t(1) << 30));
    I c = 0;  // lanes of the comparison's width
    for (index_t i = i0; i < i1; ++i) c += I(std::abs(a[i] - center) > bound);
    total += c;
  }
  return total;
}

// Column blocks of kColBlock with the maxima in registers over all rows (a row-by-row update of
// colmax in memory paid a store-to-load round trip and an alias check per row).
constexpr index_t kColBlock = 64;

template <class T>
DG_CLONES512 void col_max_impl(T* __restrict colmax, const T* __restrict y, index_t R, index_t C) {
  index_t j0 = 0;
  for (; j0 + kColBlock <= C; j0 += kColBlock) {
    T acc[kColBlock];
    for (index_t j = 0; j < kColBlock; ++j) acc[j] = colmax[j0 + j];
    for (index_t r = 0; r < R; ++r) {
      const T* row = y + r * C + j0;
      for (index_t j = 0; j < kColBlock; ++j) acc[j] = row[j] > acc[j] ? row[j] : acc[j];
    }
    for (index_t j = 0; j < kColBlock; ++j) colmax[j0 + j] = acc[j];
  }
  for (index_t r = 0; r < R && j0 < C; ++r) {
    const T* row = y + r * C;
    for (index_t j = j0; j < C; ++j) colmax[j] = row[j] > colmax[j] ? row[j] : colmax[j];
  }
}

}  // namespace

template <class T>
void add_sums(double* s, double* q, const T* x, index_t n) {
  sums_impl<T, true>(s, q, x, n);
}

template <class T>
void add_sums_count(double* s, double* q, index_t* count, const T* x, index_t n, T center,
                    T bound) {
#ifdef DG_HAVE_AVX2_BUILD
  if constexpr (std::is_same_v<T, float>) {
    static const bool avx512 = cpu_has_avx2_fma() && cpu_has_avx512f();
    static const bool avx2 = cpu_has_avx2_fma();
    if (avx512) return avx512::sums_count_f32(s, q, count, x, n, center, bound);
    if (avx2) return avx2::sums_count_f32(s, q, count, x, n, center, bound);
  }
#endif
  sums_impl<T, true>(s, q, x, n);
  *count += count_outside_impl(x, n, center, bound);
}

bool add_sums_isa(int isa, double* s, double* q, index_t* count, const float* x, index_t n,
                  float center, float bound) {
  if (isa == 0) {
    sums_portable<float, true>(s, q, x, n);
    if (count) *count += count_outside_impl(x, n, center, bound);
    return true;
  }
#ifdef DG_HAVE_AVX2_BUILD
  if (isa == 1 && cpu_has_avx2_fma()) {
    if (count) avx2::sums_count_f32(s, q, count, x, n, center, bound);
    else avx2::sums_f32(s, q, x, n);
    return true;
  }
  if (isa == 2 && cpu_has_avx2_fma() && cpu_has_avx512f()) {
    if (count) avx512::sums_count_f32(s, q, count, x, n, center, bound);
    else avx512::sums_f32(s, q, x, n);
    return true;
  }
#endif
  return false;
}

template <class T>
void add_sums_colmax(double* s, double* q, T* colmax, const T* z, index_t R, index_t C) {
#ifdef DG_HAVE_AVX2_BUILD
  if constexpr (std::is_same_v<T, float>) {
    static const bool avx512 = cpu_has_avx2_fma() && cpu_has_avx512f();
    static const bool avx2 = cpu_has_avx2_fma();
    if (avx512) return avx512::sums_colmax_f32(s, q, colmax, z, R, C);
    if (avx2) return avx2::sums_colmax_f32(s, q, colmax, z, R, C);
  }
#endif
  sums_impl<T, true>(s, q, z, R * C);
  col_max_impl(colmax, z, R, C);
}

bool add_sums_colmax_isa(int isa, double* s, double* q, float* colmax, const float* z, index_t R,
                         index_t C) {
  if (isa == 0) {
    sums_portable<float, true>(s, q, z, R * C);
    col_max_impl(colmax, z, R, C);
    return true;
  }
#ifdef DG_HAVE_AVX2_BUILD
  if (isa == 1 && cpu_has_avx2_fma()) {
    avx2::sums_colmax_f32(s, q, colmax, z, R, C);
    return true;
  }
  if (isa == 2 && cpu_has_avx2_fma() && cpu_has_avx512f()) {
    avx512::sums_colmax_f32(s, q, colmax, z, R, C);
    return true;
  }
#endif
  return false;
}

template <class T>
index_t count_outside(const T* a, index_t n, T center, T bound) {
  return count_outside_impl(a, n, center, bound);
}

template <class T>
void col_max(T* colmax, const T* y, index_t R, index_t C) {
  col_max_impl(colmax, y, R, C);
}

template <class T>
double sumsq_or_nan(const T* x, index_t n) {
  double unused = 0.0, q = 0.0;
  sums_impl<T, false>(&unused, &q, x, n);
  if (std::isfinite(q)) return q;
  for (index_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) return std::nan("");
  return q;  // an overflow of finite float64 squares: +Inf is the true value
}

#define DG_INST(T)                                                        \
  template void add_sums<T>(double*, double*, const T*, index_t);         \
  template void add_sums_count<T>(double*, double*, index_t*, const T*, index_t, T, T); \
  template void add_sums_colmax<T>(double*, double*, T*, const T*, index_t, index_t); \
  template index_t count_outside<T>(const T*, index_t, T, T);              \
  template void col_max<T>(T*, const T*, index_t, index_t);               \
  template double sumsq_or_nan<T>(const T*, index_t);
DG_INST(float)
DG_INST(double)
#undef DG_INST

}  // namespace dg::cpu
