#pragma once
namespace dg {
// True when the running CPU supports AVX2 and FMA and the AVX2 kernels were compiled in.
bool cpu_has_avx2_fma();
// True when the running CPU has FMA (fused multiply-add, FMA3) on x86 with GCC or Clang.
bool cpu_has_fma();
// True when the running CPU (and the OS, for the zmm state) supports AVX-512F and the x86 SIMD
// kernels were compiled in.
bool cpu_has_avx512f();
}  // namespace dg
