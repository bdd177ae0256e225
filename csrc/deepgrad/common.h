// Shared definitions for every deepgrad kernel: host/device qualifiers, index type, threading.
#pragma once
#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define DG_HOST_DEVICE __host__ __device__ __forceinline__
#elif defined(__GNUC__)
// Always inlined: the CPU loops that call these formulas (often several per element) vectorize
// only when every call is inlined.
#define DG_HOST_DEVICE inline __attribute__((always_inline))
#else
#define DG_HOST_DEVICE inline
#endif

namespace dg {

using index_t = std::int64_t;

// Below this many scalar operations a kernel runs on one thread: an OpenMP fork costs a few
// microseconds, more than a tiny layer's whole forward pass.
constexpr index_t kParallelGrain = 1 << 15;

// Number of threads kernels may use: one process-wide setting (set_max_threads), read by every
// fork whichever thread calls the kernel; until it is set, OpenMP's default (OMP_NUM_THREADS or
// the cores). 1 without OpenMP.
int max_threads();
// Sets it for the whole process (n >= 1; the binding validates the range).
void set_max_threads(int n);
// Threads to use for `work` scalar operations.
int threads_for(index_t work);

}  // namespace dg
