// AVX-512F float32 sigmoid, tanh and silu over arrays, 16 lanes at a time (the tail through a
// masked load and store): act512.h's formulas, act_avx2.cpp's operation for operation, so every
// element comes out with the same bits as on the AVX2 path, twice as many per instruction.
// Compiled with the AVX2 options like the rest of csrc/cpu/avx2/; only the code after the target
// pragma uses AVX-512, and activations.cpp calls it only after cpu_has_avx512f().
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "cpu/avx2/act512.h"
#include "cpu/avx2/act_avx2.h"

#include "cpu/avx2/avx512_begin.h"

namespace dg::avx512 {
namespace {

enum class Op { sigmoid, tanh, silu };

template <Op kOp>
DG_T512 __m512 apply(__m512 v) {
  if constexpr (kOp == Op::sigmoid) return sigmoid16(v);
  else if constexpr (kOp == Op::tanh) return tanh16(v);
  else return _mm512_mul_ps(v, sigmoid16(v));  // silu: x * sigmoid(x)
}

template <Op kOp>
void map16(float* y, const float* x, index_t n) {
  index_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, apply<kOp>(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(y + i, m, apply<kOp>(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

}  // namespace

void sigmoid_f32(float* y, const float* x, index_t n) { map16<Op::sigmoid>(y, x, n); }
void tanh_f32(float* y, const float* x, index_t n) { map16<Op::tanh>(y, x, n); }
void silu_f32(float* y, const float* x, index_t n) { map16<Op::silu>(y, x, n); }

}  // namespace dg::avx512

#include "cpu/avx2/avx512_end.h"
#endif
