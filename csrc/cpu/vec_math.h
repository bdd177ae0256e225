// Branch-free helpers for the CPU activation loops: a bitwise select, and float32 exp / sigmoid / tanh that GCC auto-vectorizes (glibc's scalar expf/tanhf
// are 10-50x slower than a SIMD loop, and libmvec needs -ffast-math). They evaluate the same
// formulas as math.h (sigmoid_ via e^{-|x|}, tanh via e^{-2|x|}) with a Cephes-style exp
// polynomial; accuracy is a few float32 ulp. NaN passes through. CPU float32 only: the CUDA
// kernels use the device's own exp on math.h's formulas.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

// Force inlining: these are called from DG_CLONES loops, and an out-of-line copy would be the
// baseline (non-AVX2) build.
#if defined(__GNUC__)
#define DG_VM_INLINE inline __attribute__((always_inline))
#else
#define DG_VM_INLINE inline
#endif

namespace dg::cpu::vm {

DG_VM_INLINE float bits_to_float(std::int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

// c ? a : b computed from both values with bit operations. A plain ?: lets GCC sink the
// computation of a or b into a branch, and a branch holding a multiply or divide (which may trap
// under the default -ftrapping-math) stops vectorization and mispredicts on random signs.
template <class T>
DG_VM_INLINE T blend(bool c, T a, T b) {
  using I = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
  I ia, ib;
  std::memcpy(&ia, &a, sizeof ia);
  std::memcpy(&ib, &b, sizeof ib);
  const I m = -static_cast<I>(c);
  const I r = (ia & m) | (ib & ~m);
  T out;
  std::memcpy(&out, &r, sizeof out);
  return out;
}

// e^x for x <= 0 (x = -inf gives 0; results below 2^-126 are subnormal, not flushed). NaN -> NaN.
DG_VM_INLINE float exp_nonpos(float x) {
  // Only selects, no branches, so loops over it vectorize. NaN flows through the polynomial.
  const float xc = blend(x < -104.0f, -104.0f, x);  // below this e^x rounds to 0 anyway
  // k = round(x / ln 2) by the 1.5 * 2^23 trick (|x / ln 2| < 2^22 here); floorf does not vectorize.
  const float k = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = xc - k * 0.693359375f;
  r = r + k * 2.12194440e-4f;
  const float z = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * z + r + 1.0f;
  // 2^k in two factors so that k down to -150 stays representable (subnormal results).
  const std::int32_t ki = static_cast<std::int32_t>(blend(k > -160.0f, k, -160.0f));  // NaN -> -160
  const std::int32_t k1 = ki / 2, k2 = ki - k1;
  return p * bits_to_float((k1 + 127) << 23) * bits_to_float((k2 + 127) << 23);
}

// e^x - 1 for x <= 0 (NaN -> NaN). Near 0, where e^x - 1 cancels, the Taylor series to x^7
// (truncation < 2e-8 relative for |x| < 0.35); elsewhere exp_nonpos(x) - 1.
DG_VM_INLINE float expm1_nonpos(float x) {
  float p = 1.0f / 5040.0f;
  p = p * x + 1.0f / 720.0f;
  p = p * x + 1.0f / 120.0f;
  p = p * x + 1.0f / 24.0f;
  p = p * x + 1.0f / 6.0f;
  p = p * x + 0.5f;
  const float series = x + x * x * p;
  const float direct = exp_nonpos(x) - 1.0f;
  return blend(x > -0.35f, series, direct);  // NaN: direct is NaN
}

DG_VM_INLINE float sigmoid(float x) {
  const float ax = __builtin_fabsf(x);
  const float e = exp_nonpos(-ax);
  const float d = 1.0f / (1.0f + e);
  return d * blend(x >= 0.0f, 1.0f, e);  // NaN: e and d are NaN
}

DG_VM_INLINE float tanh(float x) {
  const float ax = __builtin_fabsf(x);
  // |x| < 0.625: odd polynomial (Cephes tanhf); else (1 - e^{-2|x|}) / (1 + e^{-2|x|}).
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = x * (1.0f + p * z);  // keeps the sign of -0
  const float e = exp_nonpos(-2.0f * ax);
  const float big_abs = (1.0f - e) / (1.0f + e);
  const float big = __builtin_copysignf(big_abs, x);
  return blend(ax < 0.625f, small, big);  // NaN: e and big are NaN
}

// e^x for x <= 0 (softmax's x - max, log-probabilities): the vector exp in float32, libm in float64.
DG_VM_INLINE float exp_le0(float x) { return exp_nonpos(x); }
DG_VM_INLINE double exp_le0(double x) { return std::exp(x); }

// Sum of x[0, n) in double with 8 interleaved accumulators: vectorizes, and the order of the
// additions is fixed by the source (deterministic).
template <class T>
DG_VM_INLINE double sum_lanes(const T* x, std::int64_t n) {
  double acc[8] = {};
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += double(x[i + j]);
  for (int j = 0; i < n; ++i, ++j) acc[j] += double(x[i]);
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// max of x[0, n), n >= 1, over 8 lanes (vectorizes). NaN elements are skipped unless x[0] is NaN;
// a NaN still poisons the softmax row through e^{x - max}.
template <class T>
DG_VM_INLINE T max_lanes(const T* x, std::int64_t n) {
  T acc[8];
  for (int j = 0; j < 8; ++j) acc[j] = x[0];
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
  for (int j = 0; i < n; ++i, ++j) acc[j] = x[i] > acc[j] ? x[i] : acc[j];
  T m = acc[0];
  for (int j = 1; j < 8; ++j) m = acc[j] > m ? acc[j] : m;
  return m;
}

// sum of e^{x - m} over x[0, n) in double (x <= m for every element). Blocks of 256 go through
// a stack buffer so that both the exp loop and the 8-lane sum vectorize; the order of the
// additions is fixed by the source (deterministic).
template <class T>
DG_VM_INLINE double sum_exp_shifted(const T* x, std::int64_t n, T m) {
  constexpr std::int64_t kBlock = 256;
  T buf[kBlock];
  double s = 0;
  for (std::int64_t b = 0; b < n; b += kBlock) {
    const std::int64_t len = n - b < kBlock ? n - b : kBlock;
    for (std::int64_t j = 0; j < len; ++j) buf[j] = exp_le0(x[b + j] - m);
    s += sum_lanes(buf, len);
  }
  return s;
}

}  // namespace dg::cpu::vm
