// One-pass tensor health, the scalar part: what one element adds to a segment's running
// statistics, how two partial results merge, and the 7-value row a segment reports. Written once
// as DG_HOST_DEVICE code for the CUDA kernel (csrc/cuda/health.cu) and its host-side replay
// (_C.health_replay, tested on every build), with the meaning of csrc/cpu/health.cpp:
//
//   row = [L2, L-inf, min, max of the finite elements, NaN count, Inf count,
//          index of the first non-finite element (-1: none)]
//
// min and max are NaN when the segment holds no finite element; L2 and L-inf are then 0. The
// sum of squares is in double; min and max stay in the element type (exact in double later).
// Finite, NaN and Inf are told apart with arithmetic only (v - v is 0 exactly for finite v), so
// the same code runs on the host and the device without <cmath> classification calls.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

#include "deepgrad/common.h"

namespace dg {

constexpr int kHealthStats = 7;
constexpr index_t kHealthNoIndex = std::numeric_limits<index_t>::max();

// The CUDA kernel's tiling (csrc/cuda/health.cu, and its host replay): a function of n only, so
// a buffer is folded the same way on every run. Tiles of 2048 to 65536 elements, ~1024 of them
// for large buffers.
inline index_t health_tile_size(index_t n) {
  index_t t = 2048;
  while (t < 65536 && t * 1024 < n) t *= 2;
  return t;
}
inline index_t health_tile_count(index_t n) {
  const index_t t = health_tile_size(n);
  return n > 0 ? (n + t - 1) / t : 1;
}

template <class T>
struct HealthAcc {
  double sumsq;  // of the finite elements
  T mn, mx;      // of the finite elements; +inf / -inf while there is none
  index_t nan, inf;
  index_t first;  // smallest index of a non-finite element; kHealthNoIndex while none
};

template <class T>
DG_HOST_DEVICE HealthAcc<T> health_empty() {
  HealthAcc<T> a;
  a.sumsq = 0.0;
  a.mn = std::numeric_limits<T>::infinity();
  a.mx = -std::numeric_limits<T>::infinity();
  a.nan = 0;
  a.inf = 0;
  a.first = kHealthNoIndex;
  return a;
}

// Element v at index i of the buffer joins a.
template <class T>
DG_HOST_DEVICE void health_add(HealthAcc<T>& a, T v, index_t i) {
  if (v - v == T(0)) {  // finite; tested in T, so a float32 element costs one widening and one
    const double d = double(v);  // float64 FMA (float64 is 1/32-1/64 rate on T4/L4-class GPUs)
    a.sumsq += d * d;
    a.mn = v < a.mn ? v : a.mn;
    a.mx = v > a.mx ? v : a.mx;
    return;
  }
  if (v != v) ++a.nan;
  else ++a.inf;
  a.first = i < a.first ? i : a.first;
}

// b joins a. Every field but the sum of squares is order-free; callers merge in a fixed order so
// that the sum is the same bits on every run.
template <class T>
DG_HOST_DEVICE void health_merge(HealthAcc<T>& a, const HealthAcc<T>& b) {
  a.sumsq += b.sumsq;
  a.mn = b.mn < a.mn ? b.mn : a.mn;
  a.mx = b.mx > a.mx ? b.mx : a.mx;
  a.nan += b.nan;
  a.inf += b.inf;
  a.first = b.first < a.first ? b.first : a.first;
}

// The segment's row out[0..6]; `first` is reported relative to the segment start `base`.
template <class T>
DG_HOST_DEVICE void health_finish(double* out, const HealthAcc<T>& a, index_t base) {
  const bool any = a.mn <= a.mx;  // some finite element
  const double mn = double(a.mn), mx = double(a.mx);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  out[0] = sqrt(a.sumsq);  // +inf when the finite squares overflow, as on the CPU
  out[1] = any ? (-mn > mx ? -mn : mx) : 0.0;
  out[2] = any ? mn : nan;
  out[3] = any ? mx : nan;
  out[4] = double(a.nan);
  out[5] = double(a.inf);
  out[6] = a.first == kHealthNoIndex ? -1.0 : double(a.first - base);
}

}  // namespace dg
