// One-pass tensor health on CUDA: per segment of a flat float32/float64 buffer, the row of
// deepgrad/health.h ([L2, L-inf, min, max] of the finite elements, NaN count, Inf count, first
// non-finite index), the meaning of csrc/cpu/health.cpp.
//
// Two launches, the layout of segment_norms (norms.cu): the buffer is cut into fixed tiles (the
// tile size a function of n only); block t folds each segment's part inside tile t into one
// HealthAcc and writes it to slot t + s (consecutive (tile, segment) intersections have
// distinct, increasing t + s). One block then merges each segment's slots in tile order (one
// warp per segment, a fixed shuffle tree) and writes the rows. No atomics: the same input gives
// the same bits on every run. The per-element and merge steps are health.h's DG_HOST_DEVICE
// functions, replayed on the host by _C.health_replay in every build's tests.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>

#include "deepgrad/cuda_array.h"
#include "deepgrad/cuda_kernels.h"
#include "deepgrad/health.h"

namespace dg::cuda {
namespace {

constexpr int kTileThreads = 256;
constexpr int kFinalThreads = 1024;

// float4 / double2: 16-byte loads.
template <class T> struct Vec16;
template <> struct Vec16<float> { using type = float4; static constexpr int n = 4; };
template <> struct Vec16<double> { using type = double2; static constexpr int n = 2; };

template <class T>
__device__ __forceinline__ HealthAcc<T> shfl_xor(const HealthAcc<T>& a, int o) {
  HealthAcc<T> b;
  b.sumsq = __shfl_xor_sync(0xffffffffu, a.sumsq, o);
  b.mn = __shfl_xor_sync(0xffffffffu, a.mn, o);
  b.mx = __shfl_xor_sync(0xffffffffu, a.mx, o);
  b.nan = __shfl_xor_sync(0xffffffffu, (long long)a.nan, o);
  b.inf = __shfl_xor_sync(0xffffffffu, (long long)a.inf, o);
  b.first = __shfl_xor_sync(0xffffffffu, (long long)a.first, o);
  return b;
}

// The merge of the 32 lanes' values (a fixed butterfly: every lane gets the same result).
template <class T>
__device__ __forceinline__ void warp_merge(HealthAcc<T>& a) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) health_merge(a, shfl_xor(a, o));
}

// buf[lo, hi) folded by the whole block; the result is valid in thread 0.
template <class T, bool VEC>
__device__ HealthAcc<T> block_health(const T* __restrict__ buf, index_t lo, index_t hi) {
  __shared__ HealthAcc<T> wacc[kTileThreads / 32];
  HealthAcc<T> a = health_empty<T>();
  if (VEC) {
    constexpr int W = Vec16<T>::n;
    using V = typename Vec16<T>::type;
    const index_t a4 = std::min<index_t>(hi, (lo + W - 1) / W * W);
    const index_t b4 = std::max<index_t>(a4, hi / W * W);
    for (index_t i = lo + threadIdx.x; i < a4; i += kTileThreads) health_add(a, buf[i], i);
    const V* v = reinterpret_cast<const V*>(buf);
#pragma unroll 4
    for (index_t k = a4 / W + threadIdx.x; k < b4 / W; k += kTileThreads) {
      const V x = __ldg(v + k);
      const T* e = reinterpret_cast<const T*>(&x);
#pragma unroll
      for (int j = 0; j < W; ++j) health_add(a, e[j], k * W + j);
    }
    for (index_t i = b4 + threadIdx.x; i < hi; i += kTileThreads) health_add(a, buf[i], i);
  } else {
#pragma unroll 4
    for (index_t i = lo + threadIdx.x; i < hi; i += kTileThreads) health_add(a, buf[i], i);
  }
  warp_merge(a);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) wacc[warp] = a;
  __syncthreads();
  if (threadIdx.x == 0)
    for (int w = 1; w < kTileThreads / 32; ++w) health_merge(a, wacc[w]);  // a is wacc[0]'s value
  __syncthreads();  // wacc is reused by the next segment of this tile
  return a;
}

// Where the segments' elements live. FlatSource: one buffer cut by device offsets (element
// indices global to the buffer). TensorSource: up to kMaxTensors separate arrays laid end to end
// in a virtual buffer (kernel-argument space, nothing to upload; indices local to each array).
template <class T, bool VEC>
struct FlatSource {
  const T* buf;
  const std::int64_t* off;
  static constexpr bool kLocal = false;
  __device__ std::int64_t operator[](int s) const { return off[s]; }
  __device__ HealthAcc<T> fold(int, index_t a, index_t b) const {
    return block_health<T, VEC>(buf, a, b);
  }
};

constexpr int kMaxTensors = 64;

template <class T>
struct TensorSource {
  const T* ptr[kMaxTensors];
  std::int64_t off[kMaxTensors + 1];  // cumulative sizes
  static constexpr bool kLocal = true;
  __device__ std::int64_t operator[](int s) const { return off[s]; }
  __device__ HealthAcc<T> fold(int s, index_t a, index_t b) const {
    const T* p = ptr[s];
    const index_t base = off[s];
    if ((reinterpret_cast<std::uintptr_t>(p) & 15u) == 0)  // the same for the whole block
      return block_health<T, true>(p, a - base, b - base);
    return block_health<T, false>(p, a - base, b - base);
  }
};

template <class T, class Src>
__global__ void __launch_bounds__(kTileThreads)
    health_partial_kernel(HealthAcc<T>* __restrict__ part, const Src src, index_t n,
                          int segments, index_t tile) {
  const index_t t = blockIdx.x;
  const index_t lo = t * tile, hi = std::min<index_t>(n, lo + tile);
  int l = 0, r = segments;  // the first segment ending after lo
  while (l < r) {
    const int mid = (l + r) / 2;
    if (src[mid + 1] > lo) r = mid; else l = mid + 1;
  }
  for (int s = l; s < segments && src[s] < hi; ++s) {
    const index_t a = std::max<index_t>(src[s], lo), b = std::min<index_t>(src[s + 1], hi);
    if (a >= b) continue;
    const HealthAcc<T> acc = src.fold(s, a, b);
    if (threadIdx.x == 0) part[t + s] = acc;
  }
}

template <class T, class Src>
__global__ void __launch_bounds__(kFinalThreads)
    health_final_kernel(double* __restrict__ out, const HealthAcc<T>* __restrict__ part,
                        const Src src, int segments, index_t tile) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int s = warp; s < segments; s += kFinalThreads / 32) {
    const index_t a = src[s], b = src[s + 1];
    HealthAcc<T> acc = health_empty<T>();
    if (b > a) {
      const index_t t0 = a / tile, t1 = (b - 1) / tile;
      for (index_t t = t0 + lane; t <= t1; t += 32) health_merge(acc, part[t + s]);
    }
    warp_merge(acc);
    if (lane == 0) health_finish(out + (std::size_t)kHealthStats * s, acc, Src::kLocal ? 0 : a);
  }
}

// Both passes over n elements in `segments` segments of src.
template <class T, class Src>
void launch_passes(double* out, HealthAcc<T>* part, const Src& src, index_t n, index_t segments,
                   cudaStream_t stream) {
  const index_t tile = health_tile_size(n), tiles = health_tile_count(n);
  if (n > 0) {
    health_partial_kernel<T, Src><<<(unsigned)tiles, kTileThreads, 0, stream>>>(
        part, src, n, (int)segments, tile);
    check_launch("cuda segment_health (partial pass)");
  }
  health_final_kernel<T, Src><<<1, kFinalThreads, 0, stream>>>(out, part, src, (int)segments,
                                                                tile);
  check_launch("cuda segment_health (final pass)");
}

template <class T>
void launch_health(double* out, void* workspace, const T* buf, const std::int64_t* offsets,
                   index_t n, index_t segments, cudaStream_t stream) {
  if (segments > 0x7fffffff) throw std::runtime_error("cuda segment_health: too many segments");
  if (segments == 0) return;
  auto* part = static_cast<HealthAcc<T>*>(workspace);
  if ((reinterpret_cast<std::uintptr_t>(buf) & 15u) == 0)
    launch_passes<T>(out, part, FlatSource<T, true>{buf, offsets}, n, segments, stream);
  else
    launch_passes<T>(out, part, FlatSource<T, false>{buf, offsets}, n, segments, stream);
}

// Groups of up to kMaxTensors arrays, one pair of launches each.
template <class T>
void launch_tensors(double* out, void* workspace, const void* const* ptrs, const index_t* sizes,
                    index_t count, cudaStream_t stream) {
  auto* part = static_cast<HealthAcc<T>*>(workspace);
  for (index_t g = 0; g < count; g += kMaxTensors) {
    const int m = (int)std::min<index_t>(kMaxTensors, count - g);
    TensorSource<T> src{};
    src.off[0] = 0;
    for (int k = 0; k < m; ++k) {
      src.ptr[k] = static_cast<const T*>(ptrs[g + k]);
      src.off[k + 1] = src.off[k] + sizes[g + k];
    }
    launch_passes<T>(out + kHealthStats * g, part, src, src.off[m], m, stream);
  }
}

// out (n) = a - b, the difference taken in T (as the CPU's sumsq(x, p)).
template <class T>
__global__ void diff_kernel(T* __restrict__ out, const T* __restrict__ a, const T* __restrict__ b,
                            index_t n) {
  for (index_t i = blockIdx.x * (index_t)blockDim.x + threadIdx.x; i < n;
       i += (index_t)gridDim.x * blockDim.x)
    out[i] = a[i] - b[i];
}

std::size_t round16(std::size_t b) { return (b + 15) & ~std::size_t(15); }

// Scratch kept between host calls of segment_health_host (as norms.cu's): device memory for
// [offsets | partials | rows], pinned host memory for the transfers; offsets equal to the
// previous call's are not uploaded again.
struct HealthScratch {
  std::mutex mu;
  std::vector<std::int64_t> offsets;
  void* dev = nullptr;
  std::size_t dev_bytes = 0;
  void* pinned = nullptr;
  std::size_t pinned_bytes = 0;
};

HealthScratch& health_scratch() {
  static HealthScratch* s = new HealthScratch();  // never destroyed: no CUDA calls at exit
  return *s;
}

}  // namespace

std::size_t segment_health_workspace(index_t n, index_t segments, DType t) {
  const std::size_t acc = t == DType::f64 ? sizeof(HealthAcc<double>) : sizeof(HealthAcc<float>);
  return (std::size_t)(health_tile_count(n) + segments) * acc;
}

void segment_health(double* out, void* workspace, const void* buf, DType t,
                    const std::int64_t* offsets, index_t n, index_t segments,
                    cudaStream_t stream) {
  if (t == DType::f64)
    launch_health<double>(out, workspace, static_cast<const double*>(buf), offsets, n, segments,
                          stream);
  else
    launch_health<float>(out, workspace, static_cast<const float*>(buf), offsets, n, segments,
                         stream);
}

namespace {

// The scratch of one host call, laid out as [offsets | workspace | rows (R, S, 7)], with the
// offsets uploaded unless they equal the previous call's. The lock is held by the caller.
struct HostCall {
  std::int64_t* d_off;
  void* d_ws;
  double* d_rows;
};

HostCall prepare(HealthScratch& sc, const std::int64_t* offsets, index_t n, index_t segments,
                 DType t, int row_sets, cudaStream_t stream) {
  const std::size_t off_bytes = round16(sizeof(std::int64_t) * (std::size_t)(segments + 1));
  const std::size_t ws_bytes = round16(segment_health_workspace(n, segments, t));
  const std::size_t res_bytes = sizeof(double) * kHealthStats * (std::size_t)segments * row_sets;
  const std::size_t need = off_bytes + ws_bytes + round16(res_bytes);
  if (sc.dev_bytes < need) {
    if (sc.dev) check_status(cudaFree(sc.dev), "cudaFree (segment_health scratch)");
    sc.dev = nullptr;
    sc.dev_bytes = 0;
    sc.offsets.clear();
    check_status(cudaMalloc(&sc.dev, need), "cudaMalloc (segment_health scratch)");
    sc.dev_bytes = need;
  }
  const std::size_t pin_need = std::max(off_bytes, res_bytes);
  if (sc.pinned_bytes < pin_need) {
    if (sc.pinned) check_status(cudaFreeHost(sc.pinned), "cudaFreeHost (segment_health)");
    sc.pinned = nullptr;
    sc.pinned_bytes = 0;
    check_status(cudaMallocHost(&sc.pinned, pin_need), "cudaMallocHost (segment_health)");
    sc.pinned_bytes = pin_need;
  }
  char* base = static_cast<char*>(sc.dev);
  HostCall c{reinterpret_cast<std::int64_t*>(base), base + off_bytes,
             reinterpret_cast<double*>(base + off_bytes + ws_bytes)};
  const std::size_t nb = sizeof(std::int64_t) * (std::size_t)(segments + 1);
  if (sc.offsets.size() != (std::size_t)(segments + 1) ||
      std::memcmp(sc.offsets.data(), offsets, nb) != 0) {
    sc.offsets.clear();  // until the upload below is enqueued
    std::memcpy(sc.pinned, offsets, nb);
    check_status(cudaMemcpyAsync(c.d_off, sc.pinned, nb, cudaMemcpyHostToDevice, stream),
                 "cudaMemcpyAsync (segment_health offsets)");
    sc.offsets.assign(offsets, offsets + segments + 1);
  }
  return c;
}

// The rows (bytes) back to `out` through the pinned buffer: the one host synchronisation.
// The pinned buffer is free again: an offsets upload from it completes before the kernels.
void rows_to_host(HealthScratch& sc, double* out, const double* d_rows, std::size_t bytes,
                  cudaStream_t stream) {
  if (bytes == 0) return;
  check_status(cudaMemcpyAsync(sc.pinned, d_rows, bytes, cudaMemcpyDeviceToHost, stream),
               "cudaMemcpyAsync (segment_health rows)");
  note_host_sync();
  check_status(cudaStreamSynchronize(stream), "cudaStreamSynchronize (segment_health)");
  std::memcpy(out, sc.pinned, bytes);
}

}  // namespace

std::size_t tensors_health_workspace(const index_t* sizes, index_t count, DType t) {
  std::size_t most = 0;
  for (index_t g = 0; g < count; g += kMaxTensors) {
    const index_t m = std::min<index_t>(kMaxTensors, count - g);
    index_t n = 0;
    for (index_t k = 0; k < m; ++k) n += sizes[g + k];
    most = std::max(most, segment_health_workspace(n, m, t));
  }
  return most;
}

void tensors_health(double* out, void* workspace, const void* const* ptrs, const index_t* sizes,
                    index_t count, DType t, cudaStream_t stream) {
  if (t == DType::f64)
    launch_tensors<double>(out, workspace, ptrs, sizes, count, stream);
  else
    launch_tensors<float>(out, workspace, ptrs, sizes, count, stream);
}

void segment_health_host(double* out, const void* buf, DType t, const std::int64_t* offsets,
                         index_t n, index_t segments, cudaStream_t stream) {
  HealthScratch& sc = health_scratch();
  std::lock_guard<std::mutex> lock(sc.mu);
  const HostCall c = prepare(sc, offsets, n, segments, t, 1, stream);
  try {
    segment_health(c.d_rows, c.d_ws, buf, t, c.d_off, n, segments, stream);
  } catch (...) {
    sc.offsets.clear();
    throw;
  }
  rows_to_host(sc, out, c.d_rows, sizeof(double) * kHealthStats * (std::size_t)segments, stream);
}

void health_rows_host(double* rows, const void* params, const void* grads, void* prev,
                      void* diff_work, DType t, const std::int64_t* offsets, index_t n,
                      index_t segments, bool diff, bool snapshot, cudaStream_t stream) {
  HealthScratch& sc = health_scratch();
  std::lock_guard<std::mutex> lock(sc.mu);
  const int sets = diff ? 3 : 2;
  const HostCall c = prepare(sc, offsets, n, segments, t, sets, stream);
  const std::size_t set = (std::size_t)kHealthStats * segments;
  const std::size_t item = dtype_size(t);
  try {
    segment_health(c.d_rows, c.d_ws, grads, t, c.d_off, n, segments, stream);
    segment_health(c.d_rows + set, c.d_ws, params, t, c.d_off, n, segments, stream);
    if (diff && n > 0) {
      const unsigned blocks = (unsigned)std::min<index_t>((n + 255) / 256, 4096);
      if (t == DType::f64)
        diff_kernel<double><<<blocks, 256, 0, stream>>>(static_cast<double*>(diff_work),
                                                        static_cast<const double*>(params),
                                                        static_cast<const double*>(prev), n);
      else
        diff_kernel<float><<<blocks, 256, 0, stream>>>(static_cast<float*>(diff_work),
                                                       static_cast<const float*>(params),
                                                       static_cast<const float*>(prev), n);
      check_launch("cuda monitor_norms (params - prev)");
    }
    if (diff) segment_health(c.d_rows + 2 * set, c.d_ws, diff_work, t, c.d_off, n, segments, stream);
    if (snapshot && n > 0)
      check_status(cudaMemcpyAsync(prev, params, item * (std::size_t)n, cudaMemcpyDeviceToDevice,
                                   stream),
                   "cudaMemcpyAsync (monitor_norms snapshot)");
  } catch (...) {
    sc.offsets.clear();
    throw;
  }
  rows_to_host(sc, rows, c.d_rows, sizeof(double) * set * sets, stream);
}

}  // namespace dg::cuda
