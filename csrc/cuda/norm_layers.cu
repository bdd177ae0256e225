// Batch norm and layer norm, forward and backward, on CUDA. Statistics are accumulated in
// double and combined in a fixed order (deterministic). Batch norm: one block owns 32 channels
// and all rows (column reductions). Layer norm: one warp owns one row; dgamma / dbeta are
// column reductions by a second kernel.
#include <cuda_runtime.h>

#include <cmath>

#include "deepgrad/cuda_array.h"
#include "deepgrad/cuda_kernels.h"
#include "cuda/warp.cuh"

namespace dg::cuda {
namespace {

constexpr int kCols = 32;  // channels per block
constexpr int kLanes = 16; // row lanes per block

// Sums a per-thread value over the kLanes row lanes of the block (fixed order); every thread of
// the column gets the result.
__device__ double column_reduce(double v, double (*sh)[kCols + 1]) {
  sh[threadIdx.y][threadIdx.x] = v;
  __syncthreads();
  double s = 0.0;
#pragma unroll
  for (int k = 0; k < kLanes; ++k) s += sh[k][threadIdx.x];
  __syncthreads();
  return s;
}

__global__ void batch_norm_forward_kernel(float* __restrict__ y, float* __restrict__ save_mean,
                                          float* __restrict__ save_invstd, float* running_mean,
                                          float* running_var, const float* __restrict__ x,
                                          const float* __restrict__ gamma,
                                          const float* __restrict__ beta, int n, int c, float eps,
                                          float momentum, bool training) {
  __shared__ double sh[kLanes][kCols + 1];
  const int col = blockIdx.x * kCols + threadIdx.x;
  const bool ok = col < c;
  float mean, invstd;
  if (training) {
    double s = 0.0;
    if (ok)
      for (int r = threadIdx.y; r < n; r += kLanes) s += x[(size_t)r * c + col];
    const double mu = column_reduce(s, sh) / n;
    double q = 0.0;
    if (ok)
      for (int r = threadIdx.y; r < n; r += kLanes) {
        const double d = x[(size_t)r * c + col] - mu;
        q += d * d;
      }
    const double var = column_reduce(q, sh) / n;
    mean = (float)mu;
    invstd = (float)(1.0 / sqrt(var + (double)eps));
    if (ok && threadIdx.y == 0) {
      if (running_mean) running_mean[col] = (1.f - momentum) * running_mean[col] + momentum * mean;
      if (running_var) {
        const double unbiased = n > 1 ? var * n / (n - 1) : var;
        running_var[col] = (1.f - momentum) * running_var[col] + momentum * (float)unbiased;
      }
    }
  } else {
    mean = ok ? running_mean[col] : 0.f;
    invstd = ok ? (float)(1.0 / sqrt((double)running_var[col] + (double)eps)) : 0.f;
  }
  if (!ok) return;
  if (threadIdx.y == 0) { save_mean[col] = mean; save_invstd[col] = invstd; }
  const float g = gamma ? gamma[col] : 1.f, b = beta ? beta[col] : 0.f;
  for (int r = threadIdx.y; r < n; r += kLanes) {
    const size_t i = (size_t)r * c + col;
    y[i] = (x[i] - mean) * invstd * g + b;
  }
}

__global__ void batch_norm_backward_kernel(float* __restrict__ dx, float* __restrict__ dgamma,
                                           float* __restrict__ dbeta, const float* __restrict__ dy,
                                           const float* __restrict__ x,
                                           const float* __restrict__ gamma,
                                           const float* __restrict__ save_mean,
                                           const float* __restrict__ save_invstd, int n, int c,
                                           bool training) {
  __shared__ double sh[kLanes][kCols + 1];
  const int col = blockIdx.x * kCols + threadIdx.x;
  const bool ok = col < c;
  const float mean = ok ? save_mean[col] : 0.f, invstd = ok ? save_invstd[col] : 0.f;
  double sdy = 0.0, sdyx = 0.0;
  if (ok)
    for (int r = threadIdx.y; r < n; r += kLanes) {
      const size_t i = (size_t)r * c + col;
      const double g = dy[i];
      sdy += g;
      sdyx += g * (double)((x[i] - mean) * invstd);
    }
  sdy = column_reduce(sdy, sh);
  sdyx = column_reduce(sdyx, sh);
  if (!ok) return;
  if (threadIdx.y == 0) {
    if (dgamma) dgamma[col] += (float)sdyx;
    if (dbeta) dbeta[col] += (float)sdy;
  }
  if (!dx) return;
  const float g = gamma ? gamma[col] : 1.f;
  if (training) {
    const float mdy = (float)(sdy / n), mdyx = (float)(sdyx / n);
    for (int r = threadIdx.y; r < n; r += kLanes) {
      const size_t i = (size_t)r * c + col;
      const float xh = (x[i] - mean) * invstd;
      dx[i] = g * invstd * (dy[i] - mdy - xh * mdyx);
    }
  } else {
    for (int r = threadIdx.y; r < n; r += kLanes) {
      const size_t i = (size_t)r * c + col;
      dx[i] = g * invstd * dy[i];
    }
  }
}

constexpr int kRowWarps = 8;


__global__ void layer_norm_forward_kernel(float* __restrict__ y, float* __restrict__ save_mean,
                                          float* __restrict__ save_invstd,
                                          const float* __restrict__ x,
                                          const float* __restrict__ gamma,
                                          const float* __restrict__ beta, index_t n, int d,
                                          float eps) {
  const index_t r = blockIdx.x * (index_t)kRowWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= n) return;
  const float* xr = x + r * d;
  float* yr = y + r * d;
  double s = 0.0;
  for (int j = lane; j < d; j += 32) s += xr[j];
  const double mu = warp_sum(s) / d;
  double q = 0.0;
  for (int j = lane; j < d; j += 32) { const double t = xr[j] - mu; q += t * t; }
  // math.h's layer-norm formulas, as the CPU kernel (cpu/norm_layers.cpp): a row with NaN/Inf
  // gives NaN everywhere (PyTorch); a finite float row cannot overflow the double statistics.
  const double inv = layer_norm_invstd(warp_sum(q) / d, (double)eps);
  if (lane == 0) { save_mean[r] = (float)mu; save_invstd[r] = (float)inv; }
  for (int j = lane; j < d; j += 32) {
    const float v = layer_norm_xhat<float>(xr[j], mu, inv);
    yr[j] = v * (gamma ? gamma[j] : 1.f) + (beta ? beta[j] : 0.f);
  }
}

__global__ void layer_norm_backward_dx_kernel(float* __restrict__ dx, const float* __restrict__ dy,
                                              const float* __restrict__ x,
                                              const float* __restrict__ gamma,
                                              const float* __restrict__ save_mean,
                                              const float* __restrict__ save_invstd, index_t n,
                                              int d) {
  const index_t r = blockIdx.x * (index_t)kRowWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= n) return;
  const float* xr = x + r * d;
  const float* dyr = dy + r * d;
  float* dxr = dx + r * d;
  const float mean = save_mean[r], invstd = save_invstd[r];
  double sg = 0.0, sgx = 0.0;
  for (int j = lane; j < d; j += 32) {
    const float g = dyr[j] * (gamma ? gamma[j] : 1.f);
    sg += g;
    sgx += (double)g * layer_norm_xhat<float>(xr[j], mean, invstd);
  }
  const float mg = (float)(warp_sum(sg) / d), mgx = (float)(warp_sum(sgx) / d);
  for (int j = lane; j < d; j += 32) {
    const float g = dyr[j] * (gamma ? gamma[j] : 1.f);
    const float xh = layer_norm_xhat<float>(xr[j], mean, invstd);
    dxr[j] = invstd * (g - mg - xh * mgx);
  }
}

// dgamma (D) += Σ_rows dy x̂, dbeta (D) += Σ_rows dy; one block per 32 columns.
__global__ void layer_norm_backward_params_kernel(float* __restrict__ dgamma,
                                                  float* __restrict__ dbeta,
                                                  const float* __restrict__ dy,
                                                  const float* __restrict__ x,
                                                  const float* __restrict__ save_mean,
                                                  const float* __restrict__ save_invstd, int n,
                                                  int d) {
  __shared__ double sh[kLanes][kCols + 1];
  const int col = blockIdx.x * kCols + threadIdx.x;
  double sdy = 0.0, sdyx = 0.0;
  if (col < d)
    for (int r = threadIdx.y; r < n; r += kLanes) {
      const size_t i = (size_t)r * d + col;
      const double g = dy[i];
      sdy += g;
      sdyx += g * (double)layer_norm_xhat<float>(x[i], save_mean[r], save_invstd[r]);
    }
  sdy = column_reduce(sdy, sh);
  sdyx = column_reduce(sdyx, sh);
  if (col < d && threadIdx.y == 0) {
    if (dgamma) dgamma[col] += (float)sdyx;
    if (dbeta) dbeta[col] += (float)sdy;
  }
}

void check_int(index_t v, const char* what) {
  if (v > 0x7fffffff) throw std::runtime_error(std::string(what) + ": dimension too large");
}

}  // namespace

void batch_norm_forward(float* y, float* save_mean, float* save_invstd, float* running_mean,
                        float* running_var, const float* x, const float* gamma, const float* beta,
                        index_t n, index_t c, float eps, float momentum, bool training,
                        cudaStream_t stream) {
  if (c == 0) return;
  check_int(n, "cuda batch_norm_forward");
  check_int(c, "cuda batch_norm_forward");
  const dim3 block(kCols, kLanes), grid((unsigned)((c + kCols - 1) / kCols));
  batch_norm_forward_kernel<<<grid, block, 0, stream>>>(y, save_mean, save_invstd, running_mean,
                                                        running_var, x, gamma, beta, (int)n, (int)c,
                                                        eps, momentum, training);
  check_launch("cuda batch_norm_forward");
}

void batch_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                         const float* gamma, const float* save_mean, const float* save_invstd,
                         index_t n, index_t c, bool training, cudaStream_t stream) {
  if (c == 0) return;
  check_int(n, "cuda batch_norm_backward");
  check_int(c, "cuda batch_norm_backward");
  const dim3 block(kCols, kLanes), grid((unsigned)((c + kCols - 1) / kCols));
  batch_norm_backward_kernel<<<grid, block, 0, stream>>>(dx, dgamma, dbeta, dy, x, gamma,
                                                         save_mean, save_invstd, (int)n, (int)c,
                                                         training);
  check_launch("cuda batch_norm_backward");
}

void layer_norm_forward(float* y, float* save_mean, float* save_invstd, const float* x,
                        const float* gamma, const float* beta, index_t n, index_t d, float eps,
                        cudaStream_t stream) {
  if (n == 0) return;
  check_int(d, "cuda layer_norm_forward");
  const unsigned blocks = (unsigned)((n + kRowWarps - 1) / kRowWarps);
  layer_norm_forward_kernel<<<blocks, kRowWarps * 32, 0, stream>>>(y, save_mean, save_invstd, x,
                                                                   gamma, beta, n, (int)d, eps);
  check_launch("cuda layer_norm_forward");
}

void layer_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                         const float* gamma, const float* save_mean, const float* save_invstd,
                         index_t n, index_t d, cudaStream_t stream) {
  if (n == 0 || d == 0) return;
  check_int(n, "cuda layer_norm_backward");
  check_int(d, "cuda layer_norm_backward");
  if (dx) {
    const unsigned blocks = (unsigned)((n + kRowWarps - 1) / kRowWarps);
    layer_norm_backward_dx_kernel<<<blocks, kRowWarps * 32, 0, stream>>>(dx, dy, x, gamma,
                                                                         save_mean, save_invstd,
                                                                         n, (int)d);
    check_launch("cuda layer_norm_backward (dx)");
  }
  if (dgamma || dbeta) {
    const dim3 block(kCols, kLanes), grid((unsigned)((d + kCols - 1) / kCols));
    layer_norm_backward_params_kernel<<<grid, block, 0, stream>>>(dgamma, dbeta, dy, x, save_mean,
                                                                  save_invstd, (int)n, (int)d);
    check_launch("cuda layer_norm_backward (dgamma, dbeta)");
  }
}

}  // namespace dg::cuda
