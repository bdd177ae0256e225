// Activation forward/backward over contiguous buffers. The activation is a template parameter
// so the switch in math.h folds away and simple activations (relu, leaky_relu, ...) vectorize.
#include <type_traits>

#include "cpu/avx2/act_avx2.h"
#include "cpu/ew_parallel.h"
#include "cpu/vec_math.h"
#include "deepgrad/cpu_features.h"
#include "deepgrad/kernels.h"

namespace dg::cpu {
namespace {

// float32 sigmoid / tanh / silu / elu / selu evaluate math.h's formulas with the vectorizable exp of
// cpu/vec_math.h (glibc's scalar expf/tanhf made these loops 10-50x slower than numpy's).
template <Act A, class T>
constexpr bool kVecMath = std::is_same_v<T, float> && (A == Act::sigmoid || A == Act::tanh_ || A == Act::silu ||
                                                        A == Act::elu || A == Act::selu);

// Rough cost per element in "scalar operations" for the threading grain: a libm call is ~20x a
// multiply-add, the vectorized exp ~4x.
template <Act A, class T>
constexpr index_t act_cost() {
  if constexpr (kVecMath<A, T>) return 4;
  return (A == Act::identity || A == Act::step || A == Act::relu || A == Act::leaky_relu ||
          A == Act::softsign) ? 1 : 20;
}

// The piecewise activations are math.h's formulas with both sides computed and a bitwise select
// (vm::blend), so the loops vectorize instead of branching on the sign of every element.
template <Act A, class T> DG_VM_INLINE T fwd(T z, T alpha) {
  if constexpr (kVecMath<A, T>) {
    if constexpr (A == Act::sigmoid) return vm::sigmoid(z);
    else if constexpr (A == Act::tanh_) return vm::tanh(z);
    else if constexpr (A == Act::silu) return z * vm::sigmoid(z);
    else {
      // elu: z > 0 ? z : alpha expm1(z); selu: scale * (z > 0 ? z : selu_alpha expm1(z))
      const T em1 = vm::expm1_nonpos(vm::blend(z > T(0), T(0), z));
      if constexpr (A == Act::elu) return vm::blend(z > T(0), z, alpha * em1);
      else return T(kSeluScale) * vm::blend(z > T(0), z, T(kSeluAlpha) * em1);
    }
  } else if constexpr (A == Act::leaky_relu) {
    return vm::blend(z > T(0), z, alpha * z);
  } else {
    return dg::act_forward<T>(A, z, alpha);
  }
}

template <Act A, class T> DG_VM_INLINE T deriv(T z, T y, T alpha) {
  if constexpr (kVecMath<A, T> && A == Act::silu) {
    const T s = vm::sigmoid(z);  // math.h: s (1 + z (1 - s))
    return s * (T(1) + z * (T(1) - s));
  } else if constexpr (A == Act::leaky_relu) {
    return vm::blend(z > T(0), T(1), alpha);
  } else if constexpr (A == Act::elu) {
    return vm::blend(z > T(0), T(1), y + alpha);
  } else if constexpr (A == Act::selu) {
    return vm::blend(z > T(0), T(kSeluScale), y + T(kSeluScale * kSeluAlpha));
  } else {
    return dg::act_derivative<T>(A, z, y, alpha);
  }
}

template <Act A, class T>
DG_CLONES void act_fwd_loop(T* y, const T* x, index_t n, T alpha) {
  for (index_t i = 0; i < n; ++i) y[i] = fwd<A, T>(x[i], alpha);
}

// float32 sigmoid, tanh and silu take the AVX-512 or AVX2/FMA intrinsics loops where the CPU has
// them (~1.5x the vectorized portable loop with AVX2, ~2x that with AVX-512; same formulas, and
// the two intrinsics paths give the same bits).
template <Act A, class T>
void act_fwd_range(T* y, const T* x, index_t n, T alpha) {
#ifdef DG_HAVE_AVX2_BUILD
  if constexpr (std::is_same_v<T, float> && (A == Act::sigmoid || A == Act::tanh_ || A == Act::silu)) {
    static const bool avx512 = cpu_has_avx2_fma() && cpu_has_avx512f();
    static const bool avx2 = cpu_has_avx2_fma();
    if (avx512) {
      if constexpr (A == Act::sigmoid) avx512::sigmoid_f32(y, x, n);
      else if constexpr (A == Act::tanh_) avx512::tanh_f32(y, x, n);
      else avx512::silu_f32(y, x, n);
      return;
    }
    if (avx2) {
      if constexpr (A == Act::sigmoid) avx2::sigmoid_f32(y, x, n);
      else if constexpr (A == Act::tanh_) avx2::tanh_f32(y, x, n);
      else avx2::silu_f32(y, x, n);
      return;
    }
  }
#endif
  act_fwd_loop<A, T>(y, x, n, alpha);
}

// kHaveY: y is given; otherwise y is recomputed from z where the derivative needs it.
template <Act A, class T, bool kHaveY>
DG_CLONES void act_bwd_range(T* dz, const T* dy, const T* z, const T* y, index_t n, T alpha) {
  for (index_t i = 0; i < n; ++i) {
    const T zi = z[i];
    const T yi = kHaveY ? y[i] : fwd<A, T>(zi, alpha);
    if constexpr (A == Act::relu)  // math.h act_grad: a select, so Inf/NaN dy stops at z <= 0
      dz[i] = vm::blend(zi <= T(0), T(0), dy[i]);
    else if constexpr (A == Act::step)
      dz[i] = T(0);
    else
      dz[i] = dy[i] * deriv<A, T>(zi, yi, alpha);
  }
}

template <Act A, class T>
void act_forward_t(T* y, const T* x, index_t n, T alpha) {
  parallel_ranges(n, act_cost<A, T>(), [&](index_t lo, index_t hi) { act_fwd_range<A, T>(y + lo, x + lo, hi - lo, alpha); });
}

template <Act A, class T>
void act_backward_t(T* dz, const T* dy, const T* z, const T* y, index_t n, T alpha) {
  // Activations whose derivative ignores z may be called without it: y stands in for z.
  // identity and step need neither.
  if (z == nullptr) z = y;
  if (z == nullptr) {
    if constexpr (A == Act::identity || A == Act::step) {
      parallel_ranges(n, 1, [&](index_t lo, index_t hi) {
        for (index_t i = lo; i < hi; ++i) dz[i] = A == Act::identity ? dy[i] : T(0);
      });
    }
    return;
  }
  const index_t cost = act_cost<A, T>() * (y ? 1 : 2);
  parallel_ranges(n, cost, [&](index_t lo, index_t hi) {
    if (y) act_bwd_range<A, T, true>(dz + lo, dy + lo, z + lo, y + lo, hi - lo, alpha);
    else act_bwd_range<A, T, false>(dz + lo, dy + lo, z + lo, nullptr, hi - lo, alpha);
  });
}

// Calls f with std::integral_constant<Act, a> for the runtime activation a.
template <class F>
void with_act(Act a, F&& f) {
  switch (a) {
#define DG_ACT_CASE(name) case Act::name: f(std::integral_constant<Act, Act::name>{}); return;
    DG_ACT_CASE(identity) DG_ACT_CASE(step) DG_ACT_CASE(sigmoid) DG_ACT_CASE(tanh_)
    DG_ACT_CASE(relu) DG_ACT_CASE(leaky_relu) DG_ACT_CASE(elu) DG_ACT_CASE(selu)
    DG_ACT_CASE(gelu) DG_ACT_CASE(softplus) DG_ACT_CASE(silu) DG_ACT_CASE(softsign)
#undef DG_ACT_CASE
  }
}

}  // namespace

template <class T> void act_forward(T* y, const T* x, index_t n, Act a, T alpha) {
  with_act(a, [&](auto A) { act_forward_t<decltype(A)::value, T>(y, x, n, alpha); });
}

template <class T>
void act_backward(T* dz, const T* dy, const T* z, const T* y, index_t n, Act a, T alpha) {
  with_act(a, [&](auto A) { act_backward_t<decltype(A)::value, T>(dz, dy, z, y, n, alpha); });
}

template void act_forward<float>(float*, const float*, index_t, Act, float);
template void act_forward<double>(double*, const double*, index_t, Act, double);
template void act_backward<float>(float*, const float*, const float*, const float*, index_t, Act, float);
template void act_backward<double>(double*, const double*, const double*, const double*, index_t, Act, double);

}  // namespace dg::cpu
