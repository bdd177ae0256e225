// Strided copies (transpose/permute, slicing, broadcast_to, concat/split, basic setitem and its
// accumulate backward), flat gather and the deterministic flat scatter used by indexing.
#include "cuda/ew_common.cuh"

namespace dg::cuda {

Indexer collapse(const Indexer& ix, int nop) {
  Indexer out;
  // Keep dims of size != 1, innermost last.
  for (int d = 0; d < ix.ndim; ++d) {
    if (ix.shape[d] == 1) continue;
    const int k = out.ndim++;
    out.shape[k] = ix.shape[d];
    for (int p = 0; p < nop; ++p) out.stride[p][k] = ix.stride[p][d];
  }
  // Merge dim k-1 into dim k when every operand steps through them as one.
  Indexer m;
  for (int d = 0; d < out.ndim; ++d) {
    if (m.ndim > 0) {
      const int k = m.ndim - 1;
      bool mergeable = true;
      for (int p = 0; p < nop; ++p)
        mergeable = mergeable && m.stride[p][k] == out.stride[p][d] * out.shape[d];
      if (mergeable) {
        m.shape[k] *= out.shape[d];
        for (int p = 0; p < nop; ++p) m.stride[p][k] = out.stride[p][d];
        continue;
      }
    }
    const int k = m.ndim++;
    m.shape[k] = out.shape[d];
    for (int p = 0; p < nop; ++p) m.stride[p][k] = out.stride[p][d];
  }
  return m;
}

bool is_contiguous(const Indexer& ix, int operand) {
  index_t expect = 1;
  for (int d = ix.ndim - 1; d >= 0; --d) {
    if (ix.shape[d] != 1 && ix.stride[operand][d] != expect) return false;
    expect *= ix.shape[d];
  }
  return true;
}

namespace {

template <class T, class I>
__global__ void strided_copy_kernel(T* dst, const T* src, OffsetCalc<I, 2> oc, I n, bool acc) {
  for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
    I o[2];
    oc.get(i, o);
    if (acc) dst[o[0]] += src[o[1]];
    else dst[o[0]] = src[o[1]];
  }
}

template <class T>
__global__ void gather_kernel(T* out, const T* src, const index_t* flat, index_t m) {
  for (index_t i = blockIdx.x * (index_t)blockDim.x + threadIdx.x; i < m; i += (index_t)gridDim.x * blockDim.x)
    out[i] = src[flat[i]];
}

template <class T>
__global__ void scatter_kernel(T* dst, const T* values, const index_t* target, const index_t* seg,
                               const index_t* order, index_t nu, bool acc) {
  for (index_t u = blockIdx.x * (index_t)blockDim.x + threadIdx.x; u < nu; u += (index_t)gridDim.x * blockDim.x) {
    const index_t b = seg[u], e = seg[u + 1];
    if (acc) {
      T s = T(0);
      for (index_t j = b; j < e; ++j) s += values[order[j]];
      dst[target[u]] += s;
    } else {
      dst[target[u]] = values[order[e - 1]];
    }
  }
}

}  // namespace

void launch_strided_copy(void* dst, const void* src, DType t, const Indexer& ix0, index_t n,
                         bool accumulate, cudaStream_t stream) {
  if (n == 0) return;
  const Indexer ix = collapse(ix0, 2);
  if (!accumulate && is_contiguous(ix, 0) && is_contiguous(ix, 1)) {
    memcpy_d2d(dst, src, static_cast<std::size_t>(n) * dtype_size(t));
    return;
  }
  dispatch_all(t, [&](auto tag) {
    using T = decltype(tag);
    if (fits_int32(ix, 2, n))
      strided_copy_kernel<T, int><<<grid_for(n), kThreads, 0, stream>>>(
          static_cast<T*>(dst), static_cast<const T*>(src), OffsetCalc<int, 2>(ix, 0), (int)n, accumulate);
    else
      strided_copy_kernel<T, index_t><<<grid_for(n), kThreads, 0, stream>>>(
          static_cast<T*>(dst), static_cast<const T*>(src), OffsetCalc<index_t, 2>(ix, 0), n, accumulate);
  });
  check_launch("strided copy kernel");
}

void launch_gather_flat(void* out, const void* src, DType t, const index_t* flat, index_t m,
                        cudaStream_t stream) {
  if (m == 0) return;
  dispatch_all(t, [&](auto tag) {
    using T = decltype(tag);
    gather_kernel<T><<<grid_for(m), kThreads, 0, stream>>>(static_cast<T*>(out), static_cast<const T*>(src), flat, m);
  });
  check_launch("gather kernel");
}

void launch_scatter_flat(void* dst, const void* values, DType t, const index_t* target,
                         const index_t* seg, const index_t* order, index_t nu, bool accumulate,
                         cudaStream_t stream) {
  if (nu == 0) return;
  dispatch_all(t, [&](auto tag) {
    using T = decltype(tag);
    scatter_kernel<T><<<grid_for(nu), kThreads, 0, stream>>>(static_cast<T*>(dst), static_cast<const T*>(values),
                                                             target, seg, order, nu, accumulate);
  });
  check_launch("scatter kernel");
}

}  // namespace dg::cuda
