// A layer's activation statistics for the GradientMonitor on the device (the CPU's act_stats,
// csrc/cpu/act_stats.cpp): z (N, C) pre-activation, y (N, C) output ->
//   out[0] = sum z, out[1] = sum z^2 (every term in double),
//   out[2] = count of |a - center| > bound with a = y (saturation 1) or z (saturation 2), in T,
//            NaN never counts (0 when saturation is 0),
//   out[3] = count of columns j with some y[r, j] > 0 (when dead; else 0).
// Two launches and no host synchronisation: per-block partials (element blocks, then column
// blocks), then one block folds them in a fixed order. No atomics: the same bits every run.
#include <cub/block/block_reduce.cuh>

#include "deepgrad/cuda_array.h"
#include "deepgrad/cuda_kernels.h"

namespace dg::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxElemBlocks = 1024;

template <class T>
__global__ void act_stats_partial(double* __restrict__ part, const T* __restrict__ z,
                                  const T* __restrict__ y, index_t size, index_t rows,
                                  index_t cols, int saturation, T center, T bound, int elem_blocks) {
  using Reduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  double* p = part + 4 * (index_t)blockIdx.x;
  if ((int)blockIdx.x < elem_blocks) {
    double s = 0.0, q = 0.0, c = 0.0;
    const T* a = saturation == 1 ? y : z;
    for (index_t i = blockIdx.x * (index_t)kThreads + threadIdx.x; i < size;
         i += (index_t)elem_blocks * kThreads) {
      const double v = (double)z[i];
      s += v;
      q += v * v;
      if (saturation) {
        const T d = a[i] - center;
        c += (d < T(0) ? -d : d) > bound ? 1.0 : 0.0;
      }
    }
    s = Reduce(tmp).Sum(s);
    __syncthreads();
    q = Reduce(tmp).Sum(q);
    __syncthreads();
    c = Reduce(tmp).Sum(c);
    if (threadIdx.x == 0) {
      p[0] = s;
      p[1] = q;
      p[2] = c;
      p[3] = 0.0;
    }
  } else {
    // one thread per column: its rows in order (threads of a warp read one row's neighbours)
    const index_t j = ((index_t)blockIdx.x - elem_blocks) * kThreads + threadIdx.x;
    double alive = 0.0;
    if (j < cols) {
      bool any = false;
      for (index_t r = 0; r < rows && !any; ++r) any = y[r * cols + j] > T(0);
      alive = any ? 1.0 : 0.0;
    }
    alive = Reduce(tmp).Sum(alive);
    if (threadIdx.x == 0) {
      p[0] = p[1] = p[2] = 0.0;
      p[3] = alive;
    }
  }
}

// One block: thread t folds partials t, t + 256, ... in order, then a fixed-shape block sum.
__global__ void act_stats_fold(double* __restrict__ out, const double* __restrict__ part,
                               int blocks) {
  using Reduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  for (int k = 0; k < 4; ++k) {
    double v = 0.0;
    for (int b = threadIdx.x; b < blocks; b += kThreads) v += part[4 * b + k];
    v = Reduce(tmp).Sum(v);
    if (threadIdx.x == 0) out[k] = v;
    __syncthreads();
  }
}

}  // namespace

int act_stats_blocks(index_t rows, index_t cols, bool dead) {
  const index_t size = rows * cols;
  index_t e = (size + 8 * kThreads - 1) / (8 * kThreads);
  e = e < 1 ? 1 : (e > kMaxElemBlocks ? kMaxElemBlocks : e);
  const index_t c = dead ? (cols + kThreads - 1) / kThreads : 0;
  return static_cast<int>(e + c);
}

template <class T>
void act_stats(double* out, double* part, const T* z, const T* y, index_t rows, index_t cols,
               int saturation, T center, T bound, bool dead, cudaStream_t stream) {
  const index_t size = rows * cols;
  const int blocks = act_stats_blocks(rows, cols, dead);
  const int dead_blocks = dead ? static_cast<int>((cols + kThreads - 1) / kThreads) : 0;
  const int elem_blocks = blocks - dead_blocks;
  act_stats_partial<T><<<blocks, kThreads, 0, stream>>>(part, z, y, size, rows, cols, saturation,
                                                        center, bound, elem_blocks);
  act_stats_fold<<<1, kThreads, 0, stream>>>(out, part, blocks);
  check_launch("cuda act_stats");
}

template void act_stats<float>(double*, double*, const float*, const float*, index_t, index_t, int,
                               float, float, bool, cudaStream_t);
template void act_stats<double>(double*, double*, const double*, const double*, index_t, index_t,
                                int, double, double, bool, cudaStream_t);

}  // namespace dg::cuda
