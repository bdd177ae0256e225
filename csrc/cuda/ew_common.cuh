// Shared pieces of the glue kernels (elementwise.cu, reduce_ops.cu, copy.cu): launch sizing,
// dtype dispatch and the broadcast offset calculator.
#pragma once
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "deepgrad/cuda_array.h"
#include "deepgrad/cuda_ops.h"

namespace dg::cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items: enough to fill the GPU, never more than needed.
inline unsigned grid_for(index_t n, int threads = kThreads) {
  static int sms = 0;
  if (sms == 0) {
    int dev = 0;
    cudaGetDevice(&dev);
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms <= 0) {
      cudaGetLastError();
      sms = 80;
    }
  }
  const index_t want = (n + threads - 1) / threads;
  const index_t cap = static_cast<index_t>(sms) * 32;
  return static_cast<unsigned>(want < 1 ? 1 : (want < cap ? want : cap));
}

// Calls f(T{}) with T = float, double or int64_t according to t.
template <class F>
void dispatch_all(DType t, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); break;
    case DType::f64: f(double{}); break;
    case DType::i64: f(std::int64_t{}); break;
  }
}

template <class T>
__device__ __forceinline__ bool is_nan(T x) { return x != x; }

// Offsets of NOP operands for a linear index over an Indexer's shape (I = int or int64).
template <class I, int NOP>
struct OffsetCalc {
  int ndim;
  I shape[kMaxDims];
  I stride[NOP][kMaxDims];
  OffsetCalc(const Indexer& ix, int first_operand) : ndim(ix.ndim) {
    for (int d = 0; d < kMaxDims; ++d) {
      shape[d] = static_cast<I>(d < ix.ndim ? ix.shape[d] : 1);
      for (int k = 0; k < NOP; ++k)
        stride[k][d] = static_cast<I>(d < ix.ndim ? ix.stride[first_operand + k][d] : 0);
    }
  }
  __host__ __device__ __forceinline__ void get(I linear, I* offs) const {
#pragma unroll
    for (int k = 0; k < NOP; ++k) offs[k] = 0;
    // Fully unrolled so every shape/stride read is a constant-bank load, not local memory.
#pragma unroll
    for (int d = kMaxDims - 1; d >= 0; --d) {
      if (d < ndim) {
        const I q = linear / shape[d];
        const I r = linear - q * shape[d];
        linear = q;
#pragma unroll
        for (int k = 0; k < NOP; ++k) offs[k] += r * stride[k][d];
      }
    }
  }
};

// 32-bit index arithmetic is safe when every linear index and offset stays below 2^30.
inline bool fits_int32(const Indexer& ix, int nop, index_t n) {
  if (n >= (index_t{1} << 30)) return false;
  for (int k = 0; k < nop; ++k) {
    index_t span = 0;
    for (int d = 0; d < ix.ndim; ++d) {
      const index_t s = ix.stride[k][d] < 0 ? -ix.stride[k][d] : ix.stride[k][d];
      span += s * (ix.shape[d] > 0 ? ix.shape[d] - 1 : 0);
    }
    if (span >= (index_t{1} << 30)) return false;
  }
  return true;
}

}  // namespace dg::cuda
