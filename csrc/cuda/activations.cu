// Elementwise activations and their derivatives on CUDA; the formulas are math.h's
// act_forward / act_derivative, the same code the CPU kernels run.
#include <cuda_runtime.h>

#include <algorithm>

#include "deepgrad/cuda_array.h"
#include "deepgrad/cuda_kernels.h"

namespace dg::cuda {
namespace {

__global__ void act_forward_kernel(float* __restrict__ y, const float* __restrict__ x, index_t n,
                                   Act act, float alpha) {
  for (index_t i = blockIdx.x * (index_t)blockDim.x + threadIdx.x; i < n;
       i += (index_t)gridDim.x * blockDim.x)
    y[i] = dg::act_forward<float>(act, x[i], alpha);
}

__global__ void act_backward_kernel(float* __restrict__ dz, const float* __restrict__ dy,
                                    const float* __restrict__ z, const float* __restrict__ y,
                                    index_t n, Act act, float alpha) {
  for (index_t i = blockIdx.x * (index_t)blockDim.x + threadIdx.x; i < n;
       i += (index_t)gridDim.x * blockDim.x)
  {
    // Without y (sigmoid / tanh called with z only) the output is recomputed from z.
    const float zz = z ? z[i] : 0.f;
    const float yy = y ? y[i] : dg::act_forward<float>(act, zz, alpha);
    dz[i] = act_grad<float>(act, dy[i], zz, yy, alpha);
  }
}

unsigned blocks_for(index_t n, int threads) {
  return (unsigned)std::min<index_t>((n + threads - 1) / threads, 65536);
}

}  // namespace

void act_forward(float* y, const float* x, index_t n, Act act, float alpha, cudaStream_t stream) {
  if (n == 0) return;
  act_forward_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(y, x, n, act, alpha);
  check_launch("cuda act_forward");
}

void act_backward(float* dz, const float* dy, const float* z, const float* y, index_t n, Act act,
                  float alpha, cudaStream_t stream) {
  if (n == 0) return;
  act_backward_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(dz, dy, z, y, n, act, alpha);
  check_launch("cuda act_backward");
}

}  // namespace dg::cuda
