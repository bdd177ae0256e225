// Warp-level reductions shared by the CUDA kernels (include from .cu files only).
#pragma once
#include <cuda_runtime.h>

namespace dg::cuda {

// Sum of v over the 32 lanes of a warp (butterfly: every lane gets the total).
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

}  // namespace dg::cuda
