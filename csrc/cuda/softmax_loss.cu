// Row-wise softmax / log_softmax and the losses on CUDA. One warp owns one row (shuffle
// reductions in a fixed order, so results are deterministic); the softmax cross-entropy reads
// its logits once per pass and never materializes the probabilities. Loss terms are math.h's.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "deepgrad/cuda_array.h"
#include "deepgrad/cuda_kernels.h"
#include "cuda/warp.cuh"

namespace dg::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Row max and Σ e^{x - max} of one row, computed by the whole warp.
__device__ __forceinline__ void row_max_sumexp(const float* x, int cols, int lane, float* m_out,
                                               float* s_out) {
  float m = -INFINITY;
  for (int j = lane; j < cols; j += 32) m = fmaxf(m, x[j]);
  m = warp_max(m);
  // A row of -inf (or NaN) keeps its value instead of producing exp(-inf + inf).
  const float shift = isfinite(m) ? m : 0.f;
  float s = 0.f;
  for (int j = lane; j < cols; j += 32) s += expf(x[j] - shift);
  *s_out = warp_sum(s);
  *m_out = shift;
}

__global__ void softmax_kernel(float* __restrict__ y, const float* __restrict__ x, index_t rows,
                               int cols, bool log) {
  const index_t r = blockIdx.x * (index_t)kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const float* xr = x + r * cols;
  float* yr = y + r * cols;
  float m, s;
  row_max_sumexp(xr, cols, lane, &m, &s);
  if (log) {
    const float ls = logf(s);
    for (int j = lane; j < cols; j += 32) yr[j] = xr[j] - m - ls;
  } else {
    const float inv = 1.f / s;
    for (int j = lane; j < cols; j += 32) yr[j] = expf(xr[j] - m) * inv;
  }
}

__global__ void softmax_backward_kernel(float* __restrict__ dx, const float* __restrict__ dy,
                                        const float* __restrict__ y, index_t rows, int cols,
                                        bool log) {
  const index_t r = blockIdx.x * (index_t)kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const float* dyr = dy + r * cols;
  const float* yr = y + r * cols;
  float* dxr = dx + r * cols;
  float dot = 0.f;
  if (log) {
    for (int j = lane; j < cols; j += 32) dot += dyr[j];
    dot = warp_sum(dot);
    for (int j = lane; j < cols; j += 32) dxr[j] = dyr[j] - expf(yr[j]) * dot;
  } else {
    for (int j = lane; j < cols; j += 32) dot += dyr[j] * yr[j];
    dot = warp_sum(dot);
    for (int j = lane; j < cols; j += 32) dxr[j] = yr[j] * (dyr[j] - dot);
  }
}

__global__ void elementwise_terms_kernel(float* __restrict__ terms, Loss kind,
                                         const float* __restrict__ p, const float* __restrict__ t,
                                         index_t n) {
  for (index_t i = blockIdx.x * (index_t)blockDim.x + threadIdx.x; i < n;
       i += (index_t)gridDim.x * blockDim.x) {
    const float a = p[i], b = t[i];
    float v;
    switch (kind) {
      case Loss::mse: v = mse_term<float>(a, b); break;
      case Loss::bce: v = bce_term<float>(a, b); break;
      default: v = bce_logits_term<float>(a, b); break;
    }
    terms[i] = v;
  }
}

__global__ void elementwise_grad_kernel(float* __restrict__ dp, Loss kind,
                                        const float* __restrict__ p, const float* __restrict__ t,
                                        const float* __restrict__ gterms,
                                        const float* __restrict__ gscalar, float scale, index_t n) {
  if (gscalar) scale *= *gscalar;
  for (index_t i = blockIdx.x * (index_t)blockDim.x + threadIdx.x; i < n;
       i += (index_t)gridDim.x * blockDim.x) {
    const float a = p[i], b = t[i];
    float d;
    switch (kind) {
      case Loss::mse: d = mse_grad<float>(a, b); break;
      case Loss::bce: d = bce_grad<float>(a, b); break;
      default: d = bce_logits_grad<float>(a, b); break;
    }
    dp[i] = d * (gterms ? gterms[i] : scale);
  }
}

__device__ __forceinline__ bool label_ok(std::int64_t l, int cols) { return l >= 0 && l < cols; }

__global__ void ce_terms_kernel(float* __restrict__ terms, std::int64_t* bad_row,
                                const float* __restrict__ x, const std::int64_t* __restrict__ labels,
                                index_t rows, int cols) {
  const index_t r = blockIdx.x * (index_t)kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const std::int64_t label = labels[r];
  if (!label_ok(label, cols)) {
    if (lane == 0) {
      terms[r] = NAN;
      atomicMin(reinterpret_cast<unsigned long long*>(bad_row), (unsigned long long)r);
    }
    return;
  }
  const float* xr = x + r * cols;
  float m, s;
  row_max_sumexp(xr, cols, lane, &m, &s);
  if (lane == 0) terms[r] = ce_row_loss<float>(xr[label], m, s);
}

__global__ void ce_grad_kernel(float* __restrict__ dx, const float* __restrict__ x,
                               const std::int64_t* __restrict__ labels,
                               const float* __restrict__ gterms,
                               const float* __restrict__ gscalar, float scale, index_t rows,
                               int cols) {
  const index_t r = blockIdx.x * (index_t)kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const std::int64_t label = labels[r];
  const float* xr = x + r * cols;
  float* dxr = dx + r * cols;
  if (!label_ok(label, cols)) {
    for (int j = lane; j < cols; j += 32) dxr[j] = NAN;
    return;
  }
  const float g = gterms ? gterms[r] : gscalar ? scale * *gscalar : scale;
  float m, s;
  row_max_sumexp(xr, cols, lane, &m, &s);
  const float inv = 1.f / s;
  for (int j = lane; j < cols; j += 32) dxr[j] = g * ce_grad<float>(xr[j], m, inv, j == label);
}

constexpr int kSumThreads = 1024;

// One block: thread i sums elements i, i + 1024, ... in double, then a fixed tree.
__global__ void sum_double_kernel(double* out, const float* __restrict__ x, index_t n, double scale) {
  __shared__ double part[kSumThreads];
  double s = 0.0;
  for (index_t i = threadIdx.x; i < n; i += kSumThreads) s += (double)x[i];
  part[threadIdx.x] = s;
  __syncthreads();
  for (int w = kSumThreads / 2; w > 0; w >>= 1) {
    if ((int)threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = part[0] * scale;
}

unsigned row_blocks(index_t rows) { return (unsigned)((rows + kWarpsPerBlock - 1) / kWarpsPerBlock); }
unsigned flat_blocks(index_t n) { return (unsigned)std::min<index_t>((n + 255) / 256, 65536); }

void check_rows(index_t rows, const char* what) {
  if (row_blocks(rows) > 2147483647u) throw std::runtime_error(std::string(what) + ": too many rows");
}

}  // namespace

void softmax(float* y, const float* x, index_t rows, index_t cols, bool log, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  check_rows(rows, "cuda softmax");
  softmax_kernel<<<row_blocks(rows), kWarpsPerBlock * 32, 0, stream>>>(y, x, rows, (int)cols, log);
  check_launch(log ? "cuda log_softmax" : "cuda softmax");
}

void softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols,
                      bool log, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  check_rows(rows, "cuda softmax_backward");
  softmax_backward_kernel<<<row_blocks(rows), kWarpsPerBlock * 32, 0, stream>>>(dx, dy, y, rows,
                                                                                (int)cols, log);
  check_launch(log ? "cuda log_softmax_backward" : "cuda softmax_backward");
}

void loss_terms(float* terms, std::int64_t* bad_row, Loss kind, const float* pred,
                const float* target, const std::int64_t* labels, index_t rows, index_t cols,
                cudaStream_t stream) {
  if (kind == Loss::cross_entropy) {
    if (rows == 0) return;
    check_rows(rows, "cuda loss_forward");
    ce_terms_kernel<<<row_blocks(rows), kWarpsPerBlock * 32, 0, stream>>>(terms, bad_row, pred,
                                                                          labels, rows, (int)cols);
  } else {
    const index_t n = rows * cols;
    if (n == 0) return;
    elementwise_terms_kernel<<<flat_blocks(n), 256, 0, stream>>>(terms, kind, pred, target, n);
  }
  check_launch("cuda loss_forward");
}

void sum_to_double(double* out, const float* x, index_t n, double scale, cudaStream_t stream) {
  sum_double_kernel<<<1, kSumThreads, 0, stream>>>(out, x, n, scale);
  check_launch("cuda sum_to_double");
}

void loss_backward(float* dpred, Loss kind, const float* pred, const float* target,
                   const std::int64_t* labels, const float* grad_terms, const float* grad_scalar,
                   float scale, index_t rows, index_t cols, cudaStream_t stream) {
  if (kind == Loss::cross_entropy) {
    if (rows == 0 || cols == 0) return;
    check_rows(rows, "cuda loss_backward");
    ce_grad_kernel<<<row_blocks(rows), kWarpsPerBlock * 32, 0, stream>>>(dpred, pred, labels,
                                                                         grad_terms, grad_scalar,
                                                                         scale, rows, (int)cols);
  } else {
    const index_t n = rows * cols;
    if (n == 0) return;
    elementwise_grad_kernel<<<flat_blocks(n), 256, 0, stream>>>(dpred, kind, pred, target,
                                                               grad_terms, grad_scalar, scale, n);
  }
  check_launch("cuda loss_backward");
}

}  // namespace dg::cuda
