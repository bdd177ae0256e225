// Fused optimizer updates on CUDA: one launch over the whole flat parameter buffer each, with
// math.h's per-element formulas (the ones the CPU kernels run). float4 loads and stores when
// every buffer is 16-byte aligned; otherwise (views at odd offsets) one element per thread.
#include <cuda_runtime.h>

#include <algorithm>

#include "deepgrad/cuda_array.h"
#include "deepgrad/cuda_kernels.h"

namespace dg::cuda {
namespace {

constexpr int kThreads = 256;

// Applies f(i) to every index in [0, n) with a grid-stride loop.
template <class F>
__device__ __forceinline__ void for_each_index(index_t n, F&& f) {
  for (index_t i = blockIdx.x * (index_t)blockDim.x + threadIdx.x; i < n;
       i += (index_t)gridDim.x * blockDim.x)
    f(i);
}

template <bool VEC>
__global__ void __launch_bounds__(kThreads)
    adam_kernel(float* __restrict__ p, float* __restrict__ m, float* __restrict__ v,
                const float* __restrict__ g, index_t n, AdamHyper<float> h) {
  if (VEC) {
    const index_t n4 = n / 4;
    for_each_index(n4, [&](index_t i) {
      float4 pp = reinterpret_cast<float4*>(p)[i], mm = reinterpret_cast<float4*>(m)[i];
      float4 vv = reinterpret_cast<float4*>(v)[i];
      const float4 gg = __ldg(reinterpret_cast<const float4*>(g) + i);
      adam_update<float>(h, pp.x, gg.x, mm.x, vv.x);
      adam_update<float>(h, pp.y, gg.y, mm.y, vv.y);
      adam_update<float>(h, pp.z, gg.z, mm.z, vv.z);
      adam_update<float>(h, pp.w, gg.w, mm.w, vv.w);
      reinterpret_cast<float4*>(p)[i] = pp;
      reinterpret_cast<float4*>(m)[i] = mm;
      reinterpret_cast<float4*>(v)[i] = vv;
    });
    const index_t i = n4 * 4 + blockIdx.x * (index_t)blockDim.x + threadIdx.x;
    if (i < n) adam_update<float>(h, p[i], g[i], m[i], v[i]);
  } else {
    for_each_index(n, [&](index_t i) { adam_update<float>(h, p[i], g[i], m[i], v[i]); });
  }
}

template <bool VEC>
__global__ void __launch_bounds__(kThreads)
    sgd_kernel(float* __restrict__ p, float* __restrict__ buf, const float* __restrict__ g,
               index_t n, SgdHyper<float> h) {
  float dummy = 0.f;
  if (VEC) {
    const index_t n4 = n / 4;
    for_each_index(n4, [&](index_t i) {
      float4 pp = reinterpret_cast<float4*>(p)[i];
      const float4 gg = __ldg(reinterpret_cast<const float4*>(g) + i);
      float4 bb = buf ? reinterpret_cast<float4*>(buf)[i] : make_float4(0.f, 0.f, 0.f, 0.f);
      sgd_update<float>(h, pp.x, gg.x, bb.x);
      sgd_update<float>(h, pp.y, gg.y, bb.y);
      sgd_update<float>(h, pp.z, gg.z, bb.z);
      sgd_update<float>(h, pp.w, gg.w, bb.w);
      reinterpret_cast<float4*>(p)[i] = pp;
      if (buf) reinterpret_cast<float4*>(buf)[i] = bb;
    });
    const index_t i = n4 * 4 + blockIdx.x * (index_t)blockDim.x + threadIdx.x;
    if (i < n) sgd_update<float>(h, p[i], g[i], buf ? buf[i] : dummy);
  } else {
    for_each_index(n, [&](index_t i) { sgd_update<float>(h, p[i], g[i], buf ? buf[i] : dummy); });
  }
}

__global__ void __launch_bounds__(kThreads)
    rmsprop_kernel(float* __restrict__ p, float* __restrict__ sq, float* __restrict__ buf,
                   float* __restrict__ ga, const float* __restrict__ g, index_t n,
                   RmspropHyper<float> h) {
  for_each_index(n, [&](index_t i) {
    float b = buf ? buf[i] : 0.f, a = ga ? ga[i] : 0.f;
    rmsprop_update<float>(h, p[i], g[i], sq[i], b, a);
    if (buf) buf[i] = b;
    if (ga) ga[i] = a;
  });
}

bool aligned16(const void* q) { return (reinterpret_cast<std::uintptr_t>(q) & 15u) == 0; }

unsigned blocks_for(index_t work) {
  return (unsigned)std::max<index_t>(1, std::min<index_t>((work + kThreads - 1) / kThreads, 132 * 16));
}

}  // namespace

void adam_step(float* param, float* m, float* v, const float* grad, index_t n,
               const AdamHyper<float>& h, cudaStream_t stream) {
  if (n == 0) return;
  if (aligned16(param) && aligned16(m) && aligned16(v) && aligned16(grad))
    adam_kernel<true><<<blocks_for(n / 4 + 1), kThreads, 0, stream>>>(param, m, v, grad, n, h);
  else
    adam_kernel<false><<<blocks_for(n), kThreads, 0, stream>>>(param, m, v, grad, n, h);
  check_launch("cuda adam_step");
}

void sgd_step(float* param, float* momentum_buf, const float* grad, index_t n,
              const SgdHyper<float>& h, cudaStream_t stream) {
  if (n == 0) return;
  float* buf = h.momentum != 0.f ? momentum_buf : nullptr;
  if (aligned16(param) && aligned16(grad) && (!buf || aligned16(buf)))
    sgd_kernel<true><<<blocks_for(n / 4 + 1), kThreads, 0, stream>>>(param, buf, grad, n, h);
  else
    sgd_kernel<false><<<blocks_for(n), kThreads, 0, stream>>>(param, buf, grad, n, h);
  check_launch("cuda sgd_step");
}

void rmsprop_step(float* param, float* square_avg, float* momentum_buf, float* grad_avg,
                  const float* grad, index_t n, const RmspropHyper<float>& h, cudaStream_t stream) {
  if (n == 0) return;
  rmsprop_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
      param, square_avg, h.momentum > 0.f ? momentum_buf : nullptr, h.centered ? grad_avg : nullptr,
      grad, n, h);
  check_launch("cuda rmsprop_step");
}

}  // namespace dg::cuda
