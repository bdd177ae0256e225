// Deterministic reductions over one axis: in (outer, len, inner) -> out (outer, inner).
// The axis is cut into a fixed number of chunks that depends only on the shape; each chunk gives
// a partial (value, index) pair, a second pass folds the chunks in order, a last pass writes the
// output dtype (and divides for mean). No atomics: the same input gives the same bits every run.
#include <cub/block/block_reduce.cuh>

#include "cuda/ew_common.cuh"

namespace dg::cuda {
namespace {

template <class T> struct AccOf { using type = double; };
template <> struct AccOf<std::int64_t> { using type = std::int64_t; };

template <class A>
struct Pair {
  A v;
  index_t i;
};

template <class A>
__device__ __forceinline__ Pair<A> identity(RedOp op) {
  if (op == RedOp::sum || op == RedOp::mean) return {A(0), 0};
  // max/argmax and min start from the first element; mark "empty" with index -1.
  return {A(0), -1};
}

// Combine two partial results; `a` covers earlier positions than `b` when indices tie.
template <class A>
__device__ __forceinline__ Pair<A> combine(RedOp op, Pair<A> a, Pair<A> b) {
  if (op == RedOp::sum || op == RedOp::mean) return {a.v + b.v, 0};
  if (a.i < 0) return b;
  if (b.i < 0) return a;
  if (is_nan(a.v)) return (is_nan(b.v) && b.i < a.i) ? b : a;  // first NaN wins (numpy)
  if (is_nan(b.v)) return b;
  const bool take_b = op == RedOp::min ? (b.v < a.v || (b.v == a.v && b.i < a.i))
                                       : (b.v > a.v || (b.v == a.v && b.i < a.i));
  return take_b ? b : a;
}

struct PairOp {
  RedOp op;
  template <class A>
  __device__ __forceinline__ Pair<A> operator()(const Pair<A>& a, const Pair<A>& b) const {
    return combine(op, a, b);
  }
};

// Pass over a contiguous axis (inner == 1): block b reduces chunk (b % nchunks) of row
// (b / nchunks). Input values are In (T or the accumulator), input indices come from in_idx
// when given (second pass) or are the positions along the axis.
template <class In, class A>
__global__ void reduce_rows(A* pv, index_t* pi, const In* in, const index_t* in_idx, RedOp op,
                            index_t outer, index_t len, index_t nchunks, index_t chunk) {
  using BR = cub::BlockReduce<Pair<A>, kThreads>;
  __shared__ typename BR::TempStorage tmp;
  for (index_t b = blockIdx.x; b < outer * nchunks; b += gridDim.x) {
    const index_t row = b / nchunks, c = b % nchunks;
    const index_t lo = c * chunk, hi = min(len, lo + chunk);
    Pair<A> acc = identity<A>(op);
    const In* r = in + row * len;
    for (index_t l = lo + threadIdx.x; l < hi; l += blockDim.x) {
      Pair<A> x{static_cast<A>(r[l]), in_idx ? in_idx[row * len + l] : l};
      acc = combine(op, acc, x);
    }
    Pair<A> tot = BR(tmp).Reduce(acc, PairOp{op});
    if (threadIdx.x == 0) {
      pv[b] = tot.v;
      pi[b] = tot.i;
    }
    __syncthreads();  // tmp is reused by the next iteration
  }
}

// Pass over a strided axis (inner > 1): one thread per (row, chunk, inner) partial; threads of a
// warp read neighbouring inner positions, so loads coalesce.
template <class In, class A>
__global__ void reduce_cols(A* pv, index_t* pi, const In* in, const index_t* in_idx, RedOp op,
                            index_t outer, index_t len, index_t inner, index_t nchunks, index_t chunk) {
  const index_t total = outer * nchunks * inner;
  for (index_t t = blockIdx.x * (index_t)blockDim.x + threadIdx.x; t < total; t += (index_t)gridDim.x * blockDim.x) {
    const index_t i = t % inner, rc = t / inner;
    const index_t c = rc % nchunks, row = rc / nchunks;
    const index_t lo = c * chunk, hi = min(len, lo + chunk);
    Pair<A> acc = identity<A>(op);
    for (index_t l = lo; l < hi; ++l) {
      const index_t at = (row * len + l) * inner + i;
      Pair<A> x{static_cast<A>(in[at]), in_idx ? in_idx[at] : l};
      acc = combine(op, acc, x);
    }
    pv[t] = acc.v;
    pi[t] = acc.i;
  }
}

template <class T, class A>
__global__ void reduce_finish(void* out, const A* pv, const index_t* pi, RedOp op, index_t n, double scale) {
  for (index_t t = blockIdx.x * (index_t)blockDim.x + threadIdx.x; t < n; t += (index_t)gridDim.x * blockDim.x) {
    if (op == RedOp::argmax) static_cast<index_t*>(out)[t] = pi[t];
    else if (op == RedOp::mean) static_cast<T*>(out)[t] = static_cast<T>(pv[t] * scale);
    else static_cast<T*>(out)[t] = static_cast<T>(pv[t]);
  }
}

// One pass of (outer, len, inner) -> (outer, nchunks, inner) partials.
template <class In, class A>
void reduce_pass(A* pv, index_t* pi, const In* in, const index_t* in_idx, RedOp op, index_t outer,
                 index_t len, index_t inner, index_t nchunks, cudaStream_t stream) {
  const index_t chunk = (len + nchunks - 1) / nchunks;
  if (inner == 1)
    reduce_rows<In, A><<<grid_for(outer * nchunks * kThreads), kThreads, 0, stream>>>(
        pv, pi, in, in_idx, op, outer, len, nchunks, chunk);
  else
    reduce_cols<In, A><<<grid_for(outer * nchunks * inner), kThreads, 0, stream>>>(
        pv, pi, in, in_idx, op, outer, len, inner, nchunks, chunk);
}

// Chunks per row: enough independent work to fill the GPU, each chunk long enough to amortise.
index_t chunks_for(index_t outer, index_t len, index_t inner) {
  const index_t target = inner == 1 ? 1024 : 256 * 1024;  // blocks resp. threads wanted
  const index_t min_chunk = inner == 1 ? 4096 : 64;
  const index_t have = outer * inner;
  if (have >= target || len <= min_chunk) return 1;
  index_t c = (target + have - 1) / have;
  const index_t cap = (len + min_chunk - 1) / min_chunk;
  return c < cap ? c : cap;
}

}  // namespace

void launch_reduce(void* out, const void* in, DType t, RedOp op, index_t outer, index_t len,
                   index_t inner, cudaStream_t stream) {
  const index_t nout = outer * inner;
  if (nout == 0) return;
  if (len == 0) {
    if (op == RedOp::sum) return launch_fill(out, t, 0.0, nout, stream);
    if (op == RedOp::mean) return launch_fill(out, t, NAN, nout, stream);
    throw std::invalid_argument("reduction of an empty axis has no identity (max/min/argmax)");
  }
  dispatch_all(t, [&](auto tag) {
    using T = decltype(tag);
    using A = typename AccOf<T>::type;
    const index_t nchunks = chunks_for(outer, len, inner);
    CudaArray v1 = CudaArray::empty({outer * nchunks * inner}, DType::f64);
    CudaArray i1 = CudaArray::empty({outer * nchunks * inner}, DType::i64);
    A* pv = static_cast<A*>(v1.raw());  // f64 and i64 are both 8 bytes
    index_t* pi = i1.data<index_t>();
    reduce_pass<T, A>(pv, pi, static_cast<const T*>(in), nullptr, op, outer, len, inner, nchunks, stream);
    if (nchunks > 1) {
      CudaArray v2 = CudaArray::empty({nout}, DType::f64);
      CudaArray i2 = CudaArray::empty({nout}, DType::i64);
      reduce_pass<A, A>(static_cast<A*>(v2.raw()), i2.data<index_t>(), pv, pi, op, outer, nchunks, inner, 1, stream);
      v1 = v2;
      i1 = i2;
      pv = static_cast<A*>(v1.raw());
      pi = i1.data<index_t>();
    }
    reduce_finish<T, A><<<grid_for(nout), kThreads, 0, stream>>>(out, pv, pi, op, nout, 1.0 / static_cast<double>(len));
  });
  check_launch("reduce kernel");
}

}  // namespace dg::cuda
