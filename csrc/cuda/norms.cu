// The fused multi-segment gradient norm and the in-place buffer ops (scale_ for clipping,
// clip_value_, fill_) on CUDA.
//
// segment_norms runs in two launches. The buffer is cut into fixed tiles of T elements (T a
// function of n only); block t sums squares (in double) of each segment's part inside tile t and
// writes the partial to slot t + s: consecutive (tile, segment) intersections have distinct,
// increasing t + s, so no index table is needed. One block then combines each segment's slots in
// a fixed order (one warp per segment, lanes strided over its tiles, a fixed shuffle tree) and
// the segments' sums in a fixed order for the global norm. No float atomics: the same input
// gives the same bits on every run.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

#include "deepgrad/cuda_array.h"
#include "deepgrad/cuda_kernels.h"

namespace dg::cuda {
namespace {

constexpr int kTileThreads = 256;
constexpr int kFinalThreads = 1024;

index_t tile_size(index_t n) {
  index_t t = 2048;
  while (t < 65536 && t * 1024 < n) t *= 2;
  return t;
}
index_t tile_count(index_t n) { return std::max<index_t>(1, (n + tile_size(n) - 1) / tile_size(n)); }

__device__ __forceinline__ void accumulate(float v, double& sq, int& nf) {
  if (!isfinite(v)) ++nf;
  sq += (double)v * (double)v;
}

// Sum of squares and non-finite count of buf[a, b), by the whole block (result in thread 0).
template <bool VEC>
__device__ void block_sumsq(const float* __restrict__ buf, index_t a, index_t b, double* sq_out,
                            int* nf_out) {
  __shared__ double wsq[kTileThreads / 32];
  __shared__ int wnf[kTileThreads / 32];
  double sq = 0.0;
  int nf = 0;
  if (VEC) {
    const index_t a4 = std::min<index_t>(b, (a + 3) & ~index_t(3));
    const index_t b4 = std::max<index_t>(a4, b & ~index_t(3));
    for (index_t i = a + threadIdx.x; i < a4; i += kTileThreads) accumulate(buf[i], sq, nf);
    const float4* v4 = reinterpret_cast<const float4*>(buf);
#pragma unroll 4
    for (index_t i = a4 / 4 + threadIdx.x; i < b4 / 4; i += kTileThreads) {
      const float4 v = __ldg(v4 + i);
      accumulate(v.x, sq, nf);
      accumulate(v.y, sq, nf);
      accumulate(v.z, sq, nf);
      accumulate(v.w, sq, nf);
    }
    for (index_t i = b4 + threadIdx.x; i < b; i += kTileThreads) accumulate(buf[i], sq, nf);
  } else {
#pragma unroll 4
    for (index_t i = a + threadIdx.x; i < b; i += kTileThreads) accumulate(buf[i], sq, nf);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    sq += __shfl_xor_sync(0xffffffffu, sq, o);
    nf += __shfl_xor_sync(0xffffffffu, nf, o);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) { wsq[warp] = sq; wnf[warp] = nf; }
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0.0;
    int c = 0;
    for (int w = 0; w < kTileThreads / 32; ++w) { s += wsq[w]; c += wnf[w]; }
    *sq_out = s;
    *nf_out = c;
  }
  __syncthreads();  // wsq / wnf are reused by the next segment of this tile
}

template <bool VEC>
__global__ void __launch_bounds__(kTileThreads)
    norms_partial_kernel(double* __restrict__ part, int* __restrict__ cnt,
                         const float* __restrict__ buf, const std::int64_t* __restrict__ off,
                         index_t n, int segments, index_t tile) {
  const index_t t = blockIdx.x;
  const index_t lo = t * tile, hi = std::min<index_t>(n, lo + tile);
  // First segment ending after lo: the smallest s with off[s + 1] > lo.
  int l = 0, r = segments;
  while (l < r) {
    const int mid = (l + r) / 2;
    if (off[mid + 1] > lo) r = mid; else l = mid + 1;
  }
  for (int s = l; s < segments && off[s] < hi; ++s) {
    const index_t a = std::max<index_t>(off[s], lo), b = std::min<index_t>(off[s + 1], hi);
    if (a >= b) continue;
    double sq;
    int nf;
    block_sumsq<VEC>(buf, a, b, &sq, &nf);
    if (threadIdx.x == 0) { part[t + s] = sq; cnt[t + s] = nf; }
  }
}

__global__ void __launch_bounds__(kFinalThreads)
    norms_final_kernel(double* __restrict__ norms, double* __restrict__ total,
                       std::int64_t* __restrict__ nonfinite, const double* __restrict__ part,
                       const int* __restrict__ cnt, const std::int64_t* __restrict__ off,
                       int segments, index_t tile) {
  __shared__ double wsq[kFinalThreads / 32];
  __shared__ long long wnf[kFinalThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  double wtotal = 0.0;
  long long wcount = 0;
  for (int s = warp; s < segments; s += kFinalThreads / 32) {
    const index_t a = off[s], b = off[s + 1];
    double sq = 0.0;
    long long c = 0;
    if (b > a) {
      const index_t t0 = a / tile, t1 = (b - 1) / tile;
      for (index_t t = t0 + lane; t <= t1; t += 32) { sq += part[t + s]; c += cnt[t + s]; }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      sq += __shfl_xor_sync(0xffffffffu, sq, o);
      c += __shfl_xor_sync(0xffffffffu, c, o);
    }
    if (lane == 0) norms[s] = sqrt(sq);
    wtotal += sq;
    wcount += c;
  }
  if (lane == 0) { wsq[warp] = wtotal; wnf[warp] = wcount; }
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0.0;
    long long c = 0;
    for (int w = 0; w < kFinalThreads / 32; ++w) { s += wsq[w]; c += wnf[w]; }
    *total = sqrt(s);
    *nonfinite = c;
  }
}

__global__ void scale_kernel(float* buf, index_t n, float factor) {
  for (index_t i = blockIdx.x * (index_t)blockDim.x + threadIdx.x; i < n;
       i += (index_t)gridDim.x * blockDim.x)
    buf[i] *= factor;
}
__global__ void clip_value_kernel(float* buf, index_t n, float clip) {
  for (index_t i = blockIdx.x * (index_t)blockDim.x + threadIdx.x; i < n;
       i += (index_t)gridDim.x * blockDim.x) {
    const float v = buf[i];  // NaN stays NaN (comparisons are false)
    buf[i] = v > clip ? clip : (v < -clip ? -clip : v);
  }
}
__global__ void fill_kernel(float* buf, index_t n, float value) {
  for (index_t i = blockIdx.x * (index_t)blockDim.x + threadIdx.x; i < n;
       i += (index_t)gridDim.x * blockDim.x)
    buf[i] = value;
}

unsigned flat_blocks(index_t n) { return (unsigned)std::min<index_t>((n + 255) / 256, 4 * 132 * 8); }

}  // namespace

std::size_t segment_norms_workspace(index_t n, index_t segments) {
  const std::size_t slots = (std::size_t)(tile_count(n) + segments);
  return slots * (sizeof(double) + sizeof(int)) + 16;
}

void segment_norms(double* norms, double* total, std::int64_t* nonfinite, void* workspace,
                   const float* buf, const std::int64_t* offsets, index_t n, index_t segments,
                   cudaStream_t stream) {
  if (segments > 0x7fffffff) throw std::runtime_error("cuda segment_norms: too many segments");
  const index_t tile = tile_size(n), tiles = tile_count(n);
  double* part = static_cast<double*>(workspace);
  int* cnt = reinterpret_cast<int*>(part + tiles + segments);
  if (n > 0 && segments > 0) {
    const bool vec = (reinterpret_cast<std::uintptr_t>(buf) & 15u) == 0;
    if (vec)
      norms_partial_kernel<true><<<(unsigned)tiles, kTileThreads, 0, stream>>>(
          part, cnt, buf, offsets, n, (int)segments, tile);
    else
      norms_partial_kernel<false><<<(unsigned)tiles, kTileThreads, 0, stream>>>(
          part, cnt, buf, offsets, n, (int)segments, tile);
    check_launch("cuda segment_norms (partial sums)");
  }
  norms_final_kernel<<<1, kFinalThreads, 0, stream>>>(norms, total, nonfinite, part, cnt, offsets,
                                                      (int)segments, tile);
  check_launch("cuda segment_norms (final pass)");
}

namespace {

// Scratch kept between host calls: device memory for [offsets | partials | results] and pinned
// host memory for the transfers. Outside the caching allocator on purpose (it is small, lives as
// long as the process, and must not show up in memory_allocated()). Offsets identical to the
// previous call's (the arena's, every step) are not uploaded again.
struct NormScratch {
  std::mutex mu;
  std::vector<std::int64_t> offsets;  // what the device copy holds
  void* dev = nullptr;
  std::size_t dev_bytes = 0;
  void* pinned = nullptr;
  std::size_t pinned_bytes = 0;
};

NormScratch& norm_scratch() {
  static NormScratch* s = new NormScratch();  // never destroyed: no CUDA calls at exit
  return *s;
}

std::size_t round8(std::size_t b) { return (b + 7) & ~std::size_t(7); }

}  // namespace

void segment_norms_host(double* norms, double* total, std::int64_t* nonfinite, const float* buf,
                        const std::int64_t* offsets, index_t n, index_t segments,
                        cudaStream_t stream) {
  NormScratch& sc = norm_scratch();
  std::lock_guard<std::mutex> lock(sc.mu);
  const std::size_t off_bytes = round8(sizeof(std::int64_t) * (std::size_t)(segments + 1));
  const std::size_t ws_bytes = round8(segment_norms_workspace(n, segments));
  const std::size_t res_bytes = sizeof(double) * (std::size_t)(segments + 2);
  const std::size_t need = off_bytes + ws_bytes + res_bytes;
  if (sc.dev_bytes < need) {
    if (sc.dev) check_status(cudaFree(sc.dev), "cudaFree (segment_norms scratch)");
    sc.dev = nullptr;
    sc.dev_bytes = 0;
    sc.offsets.clear();
    check_status(cudaMalloc(&sc.dev, need), "cudaMalloc (segment_norms scratch)");
    sc.dev_bytes = need;
  }
  const std::size_t pin_need = std::max(off_bytes, res_bytes);
  if (sc.pinned_bytes < pin_need) {
    if (sc.pinned) check_status(cudaFreeHost(sc.pinned), "cudaFreeHost (segment_norms)");
    sc.pinned = nullptr;
    sc.pinned_bytes = 0;
    check_status(cudaMallocHost(&sc.pinned, pin_need), "cudaMallocHost (segment_norms)");
    sc.pinned_bytes = pin_need;
  }
  char* base = static_cast<char*>(sc.dev);
  auto* d_off = reinterpret_cast<std::int64_t*>(base);
  void* d_ws = base + off_bytes;
  auto* d_res = reinterpret_cast<double*>(base + off_bytes + ws_bytes);
  const std::size_t nb = sizeof(std::int64_t) * (std::size_t)(segments + 1);
  if (sc.offsets.size() != (std::size_t)(segments + 1) ||
      std::memcmp(sc.offsets.data(), offsets, nb) != 0) {
    std::memcpy(sc.pinned, offsets, nb);
    check_status(cudaMemcpyAsync(d_off, sc.pinned, nb, cudaMemcpyHostToDevice, stream),
                 "cudaMemcpyAsync (segment_norms offsets)");
    sc.offsets.assign(offsets, offsets + segments + 1);
  }
  try {
    segment_norms(d_res, d_res + segments, reinterpret_cast<std::int64_t*>(d_res + segments + 1),
                  d_ws, buf, d_off, n, segments, stream);
  } catch (...) {
    sc.offsets.clear();
    throw;
  }
  // The pinned buffer is free again: the upload above completes before the kernels that follow it.
  check_status(cudaMemcpyAsync(sc.pinned, d_res, res_bytes, cudaMemcpyDeviceToHost, stream),
               "cudaMemcpyAsync (segment_norms results)");
  note_host_sync();
  check_status(cudaStreamSynchronize(stream), "cudaStreamSynchronize (segment_norms)");
  const double* h = static_cast<const double*>(sc.pinned);
  if (segments) std::memcpy(norms, h, sizeof(double) * (std::size_t)segments);
  *total = h[segments];
  std::memcpy(nonfinite, h + segments + 1, sizeof(std::int64_t));
}

void scale_(float* buf, index_t n, float factor, cudaStream_t stream) {
  if (n == 0) return;
  scale_kernel<<<flat_blocks(n), 256, 0, stream>>>(buf, n, factor);
  check_launch("cuda scale_");
}
void clip_value_(float* buf, index_t n, float clip, cudaStream_t stream) {
  if (n == 0) return;
  clip_value_kernel<<<flat_blocks(n), 256, 0, stream>>>(buf, n, clip);
  check_launch("cuda clip_value_");
}
void fill_(float* buf, index_t n, float value, cudaStream_t stream) {
  if (n == 0) return;
  fill_kernel<<<flat_blocks(n), 256, 0, stream>>>(buf, n, value);
  check_launch("cuda fill_");
}

}  // namespace dg::cuda
