// Fused LSTM/GRU cell gate arithmetic on CUDA: one thread per (batch row, hidden unit), calling
// the per-unit formulas of deepgrad/rnn.h (the same code the tested CPU kernels in
// csrc/cpu/rnn.cpp run). Indexing mirrors the CPU loops: unit k = b*H + j reads its gates at
// b*G*H + j + g*H for gate g of G (LSTM 4, GRU 3; act has 4 blocks for both).
//
// Below them, whole RNN / GRU / LSTM sequences in one host call each way, the loops of
// csrc/cpu/rnn_seq.cpp with the same layouts: per step one gemm and the fused cell (or
// activation) kernel, queued on the stream with no host synchronisation; the backward walks
// the steps in reverse and forms dW with one gemm over all steps. ||dL/dh_t|| per step goes to a
// device float64 array (one block per step, a fixed reduction order: deterministic).
#include <cuda_runtime.h>

#include <algorithm>
#include <utility>

#include "deepgrad/cuda_array.h"
#include "deepgrad/cuda_kernels.h"
#include "deepgrad/rnn.h"
#include "warp.cuh"

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


// dst (B, H) = column t of g (B, ld / H, H) (+ add (B, H) when non-null).
__global__ void __launch_bounds__(kThreads)
    step_column_kernel(float* __restrict__ dst, const float* __restrict__ g,
                       const float* __restrict__ add, index_t B, index_t H, index_t ld,
                       index_t t) {
  for_each_unit(B, H, [&](index_t b, index_t j, index_t k) {
    const float v = g[b * ld + t * H + j];
    dst[k] = add ? v + add[k] : v;
  });
}

// y (B, T (+1), H) batch-first from hs[1..T] (time-major (T+1, B, H)), then last (B, H) at
// column T when non-null.
__global__ void __launch_bounds__(kThreads)
    batch_first_kernel(float* __restrict__ y, const float* __restrict__ hs,
                       const float* __restrict__ last, index_t B, index_t T, index_t H) {
  const index_t cols = last ? T + 1 : T, n = B * cols * H;
  for (index_t k = blockIdx.x * (index_t)blockDim.x + threadIdx.x; k < n;
       k += (index_t)gridDim.x * blockDim.x) {
    const index_t j = k % H, t = (k / H) % cols, b = k / (H * cols);
    y[k] = t < T ? hs[(t + 1) * B * H + b * H + j] : last[b * H + j];
  }
}

// rows (B, G) = v (G) in every row.
__global__ void __launch_bounds__(kThreads)
    fill_rows_kernel(float* __restrict__ rows, const float* __restrict__ v, index_t B, index_t G) {
  for (index_t k = blockIdx.x * (index_t)blockDim.x + threadIdx.x; k < B * G;
       k += (index_t)gridDim.x * blockDim.x)
    rows[k] = v[k % G];
}

constexpr int kNormThreads = 1024;

// *out = ||x (n)|| in double (NaN when the sum of squares is not finite, as on the CPU); one
// block, each thread a fixed strided subset, a fixed tree: the same bits on every run.
__global__ void __launch_bounds__(kNormThreads)
    norm_kernel(double* __restrict__ out, const float* __restrict__ x, index_t n) {
  __shared__ double part[kNormThreads / 32];
  double s = 0.0;
  for (index_t i = threadIdx.x; i < n; i += kNormThreads) {
    const double d = x[i];
    s += d * d;
  }
  s = warp_sum(s);
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0.0;
    for (int w = 0; w < kNormThreads / 32; ++w) t += part[w];
    *out = isfinite(t) ? sqrt(t) : nan("");
  }
}

void step_column(float* dst, const float* g, const float* add, index_t B, index_t H, index_t ld,
                 index_t t, cudaStream_t s) {
  step_column_kernel<<<blocks_for(B * H), kThreads, 0, s>>>(dst, g, add, B, H, ld, t);
  check_launch("cuda recurrent sequence (dL/dh_t)");
}

void step_norm(double* norms, index_t t, const float* dh, index_t n, cudaStream_t s) {
  if (!norms) return;
  norm_kernel<<<1, kNormThreads, 0, s>>>(norms + t, dh, n);
  check_launch("cuda recurrent sequence (||dL/dh_t||)");
}

void batch_first(float* y, const float* hs, const float* last, index_t B, index_t T, index_t H,
                 cudaStream_t s) {
  const index_t n = B * (last ? T + 1 : T) * H;
  batch_first_kernel<<<blocks_for(n), kThreads, 0, s>>>(y, hs, last, B, T, H);
  check_launch("cuda recurrent sequence (batch-first output)");
}

void copy_async(float* dst, const float* src, index_t n, cudaStream_t s) {
  check_status(cudaMemcpyAsync(dst, src, sizeof(float) * (std::size_t)n, cudaMemcpyDeviceToDevice, s),
               "cudaMemcpyAsync (cuda recurrent sequence)");
}

void zero_async(float* dst, index_t n, cudaStream_t s) {
  check_status(cudaMemsetAsync(dst, 0, sizeof(float) * (std::size_t)n, s),
               "cudaMemsetAsync (cuda recurrent sequence)");
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

// ---- whole sequences ---------------------------------------------------------------------------

void lstm_sequence_forward(float* y, float* hs, float* cs, float* acts, float* work,
                           const float* xw, const float* w, index_t B, index_t T, index_t H,
                           cudaStream_t stream) {
  const index_t G = 4 * H, BH = B * H;
  float* gates = work;  // (B, 4H)
  for (index_t t = 0; t < T; ++t) {
    copy_async(gates, xw + t * B * G, B * G, stream);
    gemm(gates, hs + t * BH, w, B, G, H, false, false, 1.f, 1.f, stream);  // += h_{t-1} W
    lstm_cell_forward(hs + (t + 1) * BH, cs + (t + 1) * BH, acts + t * B * G, gates, cs + t * BH,
                      B, H, stream);
  }
  batch_first(y, hs, cs + T * BH, B, T, H, stream);  // h_1 .. h_T, then c_T
}

void lstm_sequence_backward(float* dxw, float* dw, float* dh0, float* dc0, double* norms,
                            float* work, const float* gy, const float* hs, const float* cs,
                            const float* acts, const float* w, index_t B, index_t T, index_t H,
                            cudaStream_t stream) {
  const index_t G = 4 * H, BH = B * H, ld = (T + 1) * H;
  float *dh = work, *dc = work + BH, *dcp = work + 2 * BH, *dhn = work + 3 * BH;
  step_column(dc, gy, nullptr, B, H, ld, T, stream);  // dL/dc_T
  zero_async(dhn, BH, stream);
  for (index_t t = T - 1; t >= 0; --t) {
    step_column(dh, gy, dhn, B, H, ld, t, stream);  // output at t + what came from step t + 1
    step_norm(norms, t, dh, BH, stream);
    float* dg = dxw + t * B * G;
    lstm_cell_backward(dg, dcp, dh, dc, cs + t * BH, cs + (t + 1) * BH, acts + t * B * G, B, H,
                       stream);
    gemm(dhn, dg, w, B, H, G, false, true, 1.f, 0.f, stream);  // dgates W^T
    std::swap(dc, dcp);
  }
  gemm(dw, hs, dxw, H, G, T * B, true, false, 1.f, 0.f, stream);  // sum_t h_{t-1}^T dgates_t
  copy_async(dh0, dhn, BH, stream);
  copy_async(dc0, dc, BH, stream);
}

void rnn_sequence_forward(float* y, float* hs, float* zs, const float* xw, const float* w,
                          index_t B, index_t T, index_t H, Act act, cudaStream_t stream) {
  const index_t BH = B * H;
  for (index_t t = 0; t < T; ++t) {
    float* z = zs + t * BH;
    copy_async(z, xw + t * BH, BH, stream);
    gemm(z, hs + t * BH, w, B, H, H, false, false, 1.f, 1.f, stream);
    act_forward(hs + (t + 1) * BH, z, BH, act, 0.01f, stream);
  }
  batch_first(y, hs, nullptr, B, T, H, stream);
}

void rnn_sequence_backward(float* dxw, float* dw, float* dh0, double* norms, float* work,
                           const float* gy, const float* hs, const float* zs, const float* w,
                           index_t B, index_t T, index_t H, Act act, cudaStream_t stream) {
  const index_t BH = B * H;
  float *dh = work, *dhn = work + BH;
  zero_async(dhn, BH, stream);
  for (index_t t = T - 1; t >= 0; --t) {
    step_column(dh, gy, dhn, B, H, T * H, t, stream);
    step_norm(norms, t, dh, BH, stream);
    float* dz = dxw + t * BH;
    act_backward(dz, dh, zs + t * BH, hs + (t + 1) * BH, BH, act, 0.01f, stream);
    gemm(dhn, dz, w, B, H, H, false, true, 1.f, 0.f, stream);  // dz W^T
  }
  gemm(dw, hs, dxw, H, H, T * B, true, false, 1.f, 0.f, stream);
  copy_async(dh0, dhn, BH, stream);
}

void gru_sequence_forward(float* y, float* hs, float* acts, float* work, const float* xw,
                          const float* w, const float* bh, index_t B, index_t T, index_t H,
                          cudaStream_t stream) {
  const index_t G = 3 * H, BH = B * H;
  float* hg = work;  // (B, 3H) = b_hh, then += h_{t-1} W
  for (index_t t = 0; t < T; ++t) {
    if (bh) {
      fill_rows_kernel<<<blocks_for(B * G), kThreads, 0, stream>>>(hg, bh, B, G);
      check_launch("cuda gru_sequence_forward (b_hh)");
    }
    gemm(hg, hs + t * BH, w, B, G, H, false, false, 1.f, bh ? 1.f : 0.f, stream);
    gru_cell_forward(hs + (t + 1) * BH, acts + t * B * 4 * H, xw + t * B * G, hg, hs + t * BH, B,
                     H, stream);
  }
  batch_first(y, hs, nullptr, B, T, H, stream);
}

void gru_sequence_backward(float* dxw, float* dw, float* dbh, float* dh0, double* norms,
                           float* work, const float* gy, const float* hs, const float* acts,
                           const float* w, index_t B, index_t T, index_t H, cudaStream_t stream) {
  const index_t G = 3 * H, BH = B * H;
  float *dh = work, *dhn = work + BH, *dhg = work + 2 * BH;  // dhg (T*B, 3H) time-major
  zero_async(dhn, BH, stream);
  for (index_t t = T - 1; t >= 0; --t) {
    step_column(dh, gy, dhn, B, H, T * H, t, stream);
    step_norm(norms, t, dh, BH, stream);
    float* dhg_t = dhg + t * B * G;
    // dhn = z * dh (the direct part), then += dhg W^T
    gru_cell_backward(dxw + t * B * G, dhg_t, dhn, dh, hs + t * BH, acts + t * B * 4 * H, B, H,
                      stream);
    gemm(dhn, dhg_t, w, B, H, G, false, true, 1.f, 1.f, stream);
  }
  gemm(dw, hs, dhg, H, G, T * B, true, false, 1.f, 0.f, stream);
  if (dbh) {  // column sums of dhg over all steps and rows, in a fixed order
    zero_async(dbh, G, stream);
    column_sum_add(dbh, dhg, T * B, G, stream);
  }
  copy_async(dh0, dhn, BH, stream);
}

}  // namespace dg::cuda
