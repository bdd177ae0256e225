// Launchers of the CUDA glue kernels the tape needs: elementwise with broadcasting, reductions
// over an axis, strided copies and flat gather/scatter (csrc/cuda/elementwise.cu,
// reduce_ops.cu, copy.cu). Free of CUDA headers; conventions in deepgrad/cuda_array.h.
// Element types: float32, float64 and int64 (dtype passed at run time); pointers are raw device
// pointers at the array's offset. Every launcher enqueues on `stream` and checks the launch.
#pragma once
#include <cstddef>

#include "deepgrad/cuda_array.h"

namespace dg::cuda {

constexpr int kMaxDims = 8;

// An iteration space of up to kMaxDims dims and, for each of up to 3 operands, its strides in
// elements over that space (0 on broadcast axes). make_indexer() collapses adjacent dims.
struct Indexer {
  int ndim = 0;
  index_t shape[kMaxDims] = {};
  index_t stride[3][kMaxDims] = {};
};

enum class BinOp : int { add, sub, mul, div, pow, maximum, minimum, eq, ne, lt, le, gt, ge };
enum class UnOp : int { neg, exp, log, sqrt, abs, sign, square, reciprocal, clip };
enum class RedOp : int { sum, mean, max, min, argmax };

// ---- elementwise.cu -------------------------------------------------------------------------
// out (contiguous over ix.shape) = a[ix.stride[1]] op b[ix.stride[2]]; ix.stride[0] unused.
// Comparisons write 1/0 in the operand dtype.
void launch_binary(void* out, const void* a, const void* b, DType t, BinOp op, const Indexer& ix,
                   index_t n, cudaStream_t stream);
// out (n) = a op s, or s op a when scalar_left.
void launch_binary_scalar(void* out, const void* a, double s, DType t, BinOp op, bool scalar_left,
                          index_t n, cudaStream_t stream);
// out (n) = f(a); clip uses lo = p0, hi = p1.
void launch_unary(void* out, const void* a, DType t, UnOp op, double p0, double p1, index_t n,
                  cudaStream_t stream);
// out (contiguous) = cond != 0 ? a : b, operands 0/1/2 = cond/a/b over ix.
void launch_where(void* out, const void* cond, const void* a, const void* b, DType t,
                  const Indexer& ix, index_t n, cudaStream_t stream);
void launch_fill(void* out, DType t, double value, index_t n, cudaStream_t stream);
void launch_cast(void* out, DType to, const void* in, DType from, index_t n, cudaStream_t stream);
// True if any of the n float values is NaN/Inf (synchronises). Deterministic.
bool has_nonfinite(const void* a, DType t, index_t n);

// ---- reduce_ops.cu --------------------------------------------------------------------------
// in (outer, len, inner) -> out (outer, inner). Deterministic (fixed partition, block partial
// results, then one final pass; no atomics). argmax writes int64 (first maximum; NaN wins).
void launch_reduce(void* out, const void* in, DType t, RedOp op, index_t outer, index_t len,
                   index_t inner, cudaStream_t stream);

// ---- copy.cu --------------------------------------------------------------------------------
// For each index of ix.shape: dst[ix.stride[0]] = src[ix.stride[1]] (or += when accumulate,
// float types only). Both pointers are at their views' first element. Transpose, slicing,
// broadcast_to, concat/split, basic setitem and its backward all go through here.
void launch_strided_copy(void* dst, const void* src, DType t, const Indexer& ix, index_t n,
                         bool accumulate, cudaStream_t stream);
// out (m) = src[flat[k]] for k < m; flat int64 on the device, checked by the caller.
void launch_gather_flat(void* out, const void* src, DType t, const index_t* flat, index_t m,
                        cudaStream_t stream);
// Deterministic scatter: for each unique target u < nu, the values at positions
// order[seg[u] .. seg[u+1]) are summed in that order and added to dst[target[u]]
// (accumulate), or the last of them is stored (assign). One thread per target, no atomics.
void launch_scatter_flat(void* dst, const void* values, DType t, const index_t* target,
                         const index_t* seg, const index_t* order, index_t nu, bool accumulate,
                         cudaStream_t stream);

// Helpers for building Indexers on the host (csrc/cuda/copy.cu).
// Merges adjacent dims that are contiguous with each other in every operand, drops size-1 dims.
Indexer collapse(const Indexer& ix, int noperands);
// True if the operand's strides are those of a C-contiguous array of ix.shape.
bool is_contiguous(const Indexer& ix, int operand);

}  // namespace dg::cuda
