// Dense layer on CUDA: y = act(x w + b) as one GEMM with the bias + activation epilogue, and the
// backward as (dz = dy act'(z) fused with db's column sums) + two GEMMs (dx = dz wᵀ,
// dw += xᵀ dz). Column sums are deterministic: each block owns 32 columns and combines its
// row partials in a fixed order.
#include <cuda_runtime.h>

#include "deepgrad/cuda_array.h"
#include "deepgrad/cuda_kernels.h"

namespace dg::cuda {
namespace {

constexpr int kColTile = 32;   // columns per block (one warp wide)
constexpr int kRowLanes = 16;  // row lanes per block

// g (N, OUT) -> db (OUT) += column sums. With act: dz = dy act'(z, y) is computed on the fly,
// written to dz_out, and summed; without: g = dy is summed as is.
template <bool WITH_ACT>
__global__ void colsum_kernel(float* __restrict__ db, float* __restrict__ dz_out,
                              const float* __restrict__ dy, const float* __restrict__ z,
                              const float* __restrict__ y, int n, int out, Act act, float alpha) {
  __shared__ float part[kRowLanes][kColTile + 1];
  const int col = blockIdx.x * kColTile + threadIdx.x;
  float s = 0.f;
  if (col < out) {
    for (int r = threadIdx.y; r < n; r += kRowLanes) {
      const size_t i = (size_t)r * out + col;
      float g = dy[i];
      if (WITH_ACT) {
        const float zz = z ? z[i] : 0.f;
        g = act_grad<float>(act, g, zz, y ? y[i] : dg::act_forward<float>(act, zz, alpha), alpha);
        dz_out[i] = g;
      }
      s += g;
    }
  }
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < out && db) {
    float t = 0.f;
#pragma unroll
    for (int k = 0; k < kRowLanes; ++k) t += part[k][threadIdx.x];
    db[col] += t;
  }
}

template <bool WITH_ACT>
void launch_colsum(float* db, float* dz_out, const float* dy, const float* z, const float* y,
                   index_t n, index_t out, Act act, float alpha, cudaStream_t stream) {
  const dim3 block(kColTile, kRowLanes);
  const dim3 grid((unsigned)((out + kColTile - 1) / kColTile));
  colsum_kernel<WITH_ACT><<<grid, block, 0, stream>>>(db, dz_out, dy, z, y, (int)n, (int)out, act, alpha);
}

}  // namespace

void dense_forward(float* y, float* z, const float* x, const float* w, const float* b, index_t n,
                   index_t in, index_t out, Act act, float alpha, cudaStream_t stream) {
  gemm_bias_act(y, z, x, w, b, n, out, in, false, false, act, alpha, stream);
}

void column_sum_add(float* db, const float* g, index_t n, index_t out, cudaStream_t stream) {
  if (out == 0) return;
  launch_colsum<false>(db, nullptr, g, nullptr, nullptr, n, out, Act::identity, 0.f, stream);
  check_launch("cuda column_sum_add");
}

void dense_backward(float* dx, float* dw, float* db, float* work, const float* dy, const float* x,
                    const float* w, const float* z, const float* y, index_t n, index_t in,
                    index_t out, Act act, float alpha, cudaStream_t stream) {
  const float* dz = dy;
  if (act != Act::identity) {
    if (n * out > 0) {
      // The column-sum kernel also writes dz; it runs even without db (db null skips the sum).
      launch_colsum<true>(db, work, dy, z, y, n, out, act, alpha, stream);
      check_launch("cuda dense_backward (activation derivative)");
    }
    dz = work;
  } else if (db && n * out > 0) {
    column_sum_add(db, dy, n, out, stream);
  }
  if (dx) gemm(dx, dz, w, n, in, out, false, true, 1.f, 0.f, stream);  // dz (N,OUT) wᵀ (OUT,IN)
  if (dw) gemm(dw, x, dz, in, out, n, true, false, 1.f, 1.f, stream);  // xᵀ (IN,N) dz (N,OUT)
}

}  // namespace dg::cuda
