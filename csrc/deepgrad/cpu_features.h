#pragma once
namespace dg {
// True when the running CPU supports AVX2 and FMA and the AVX2 kernels were compiled in.
bool cpu_has_avx2_fma();
}  // namespace dg
