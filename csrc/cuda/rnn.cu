// Fused LSTM/GRU cell gate arithmetic on CUDA: one thread per (batch row, hidden unit), calling
// the per-unit formulas of deepgrad/rnn.h (the same code the tested CPU kernels in
// csrc/cpu/rnn.cpp run). Indexing mirrors the CPU loops: unit k = b*H + j reads its gates at
// b*G*H + j + g*H for gate g of G (LSTM 4, GRU 3; act has 4 blocks for both).
#include <cuda_runtime.h>

#include <algorithm>

#include "deepgrad/cuda_array.h"
#include "deepgrad/cuda_kernels.h"
#include "deepgrad/rnn.h"

namespace dg::cuda {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(index_t n) {
  return (unsigned)std::min<index_t>((n + kThreads - 1) / kThreads, 65536);
}

// Grid-stride loop over the B*H units; f(b, j, k) with k = b*H + j.
template <class F>
__device__ __forceinline__ void for_each_unit(index_t B, index_t H, F&& f) {
  const index_t n = B * H;
  for (index_t k = blockIdx.x * (index_t)blockDim.x + threadIdx.x; k < n;
       k += (index_t)gridDim.x * blockDim.x)
    f(k / H, k % H, k);
}

__global__ void __launch_bounds__(kThreads)
    lstm_forward_kernel(float* __restrict__ h, float* __restrict__ c, float* __restrict__ act,
                        const float* __restrict__ gates, const float* __restrict__ c_prev,
                        index_t B, index_t H) {
  for_each_unit(B, H, [&](index_t b, index_t j, index_t k) {
    const float* a = gates + b * 4 * H;
    float* s = act + b * 4 * H;
    lstm_unit_forward<float>(a[j], a[H + j], a[2 * H + j], a[3 * H + j], c_prev[k], &s[j],
                             &s[H + j], &s[2 * H + j], &s[3 * H + j], &c[k], &h[k]);
  });
}

__global__ void __launch_bounds__(kThreads)
    lstm_backward_kernel(float* __restrict__ dgates, float* __restrict__ dc_prev,
                         const float* __restrict__ dh, const float* __restrict__ dc,
                         const float* __restrict__ c_prev, const float* __restrict__ c,
                         const float* __restrict__ act, index_t B, index_t H) {
  for_each_unit(B, H, [&](index_t b, index_t j, index_t k) {
    const float* s = act + b * 4 * H;
    float* d = dgates + b * 4 * H;
    lstm_unit_backward<float>(dh ? dh[k] : 0.f, dc ? dc[k] : 0.f, s[j], s[H + j], s[2 * H + j],
                              s[3 * H + j], c_prev[k], c[k], &d[j], &d[H + j], &d[2 * H + j],
                              &d[3 * H + j], &dc_prev[k]);
  });
}

__global__ void __launch_bounds__(kThreads)
    gru_forward_kernel(float* __restrict__ h, float* __restrict__ act,
                       const float* __restrict__ xg, const float* __restrict__ hg,
                       const float* __restrict__ h_prev, index_t B, index_t H) {
  for_each_unit(B, H, [&](index_t b, index_t j, index_t k) {
    const float* x = xg + b * 3 * H;
    const float* g = hg + b * 3 * H;
    float* s = act + b * 4 * H;
    gru_unit_forward<float>(x[j], x[H + j], x[2 * H + j], g[j], g[H + j], g[2 * H + j],
                            h_prev[k], &s[j], &s[H + j], &s[2 * H + j], &h[k]);
    s[3 * H + j] = g[2 * H + j];
  });
}

__global__ void __launch_bounds__(kThreads)
    gru_backward_kernel(float* __restrict__ dxg, float* __restrict__ dhg,
                        float* __restrict__ dh_prev, const float* __restrict__ dh,
                        const float* __restrict__ h_prev, const float* __restrict__ act,
                        index_t B, index_t H) {
  for_each_unit(B, H, [&](index_t b, index_t j, index_t k) {
    const float* s = act + b * 4 * H;
    float* dx = dxg + b * 3 * H;
    float* dg = dhg + b * 3 * H;
    gru_unit_backward<float>(dh[k], s[j], s[H + j], s[2 * H + j], s[3 * H + j], h_prev[k],
                             &dx[j], &dx[H + j], &dx[2 * H + j], &dg[j], &dg[H + j],
                             &dg[2 * H + j], &dh_prev[k]);
  });
}

}  // namespace

void lstm_cell_forward(float* h, float* c, float* act, const float* gates, const float* c_prev,
                       index_t B, index_t H, cudaStream_t stream) {
  if (B * H == 0) return;
  lstm_forward_kernel<<<blocks_for(B * H), kThreads, 0, stream>>>(h, c, act, gates, c_prev, B, H);
  check_launch("cuda lstm_cell_forward");
}

void lstm_cell_backward(float* dgates, float* dc_prev, const float* dh, const float* dc,
                        const float* c_prev, const float* c, const float* act, index_t B,
                        index_t H, cudaStream_t stream) {
  if (B * H == 0) return;
  lstm_backward_kernel<<<blocks_for(B * H), kThreads, 0, stream>>>(dgates, dc_prev, dh, dc,
                                                                    c_prev, c, act, B, H);
  check_launch("cuda lstm_cell_backward");
}

void gru_cell_forward(float* h, float* act, const float* xg, const float* hg, const float* h_prev,
                      index_t B, index_t H, cudaStream_t stream) {
  if (B * H == 0) return;
  gru_forward_kernel<<<blocks_for(B * H), kThreads, 0, stream>>>(h, act, xg, hg, h_prev, B, H);
  check_launch("cuda gru_cell_forward");
}

void gru_cell_backward(float* dxg, float* dhg, float* dh_prev, const float* dh,
                       const float* h_prev, const float* act, index_t B, index_t H,
                       cudaStream_t stream) {
  if (B * H == 0) return;
  gru_backward_kernel<<<blocks_for(B * H), kThreads, 0, stream>>>(dxg, dhg, dh_prev, dh, h_prev,
                                                                   act, B, H);
  check_launch("cuda gru_cell_backward");
}

}  // namespace dg::cuda
