// Elementwise glue kernels: binary ops with numpy broadcasting, scalar ops, unary math, where,
// fill, casts and the non-finite check. Grid-stride loops; the contiguous float paths load
// 16-byte packs when every pointer is aligned. The op is a kernel argument (uniform across the
// grid, so the switch costs no divergence) to keep the number of instantiations small.
#include "cuda/ew_common.cuh"

namespace dg::cuda {
namespace {

template <class T>
__device__ __forceinline__ T bin_apply(BinOp op, T x, T y) {
  switch (op) {
    case BinOp::add: return x + y;
    case BinOp::sub: return x - y;
    case BinOp::mul: return x * y;
    case BinOp::div: return x / y;
    case BinOp::pow:
      if constexpr (std::is_floating_point_v<T>) return static_cast<T>(pow(x, y));
      else return T(0);  // rejected on the host
    case BinOp::maximum:
      if (is_nan(x)) return x;
      if (is_nan(y)) return y;
      return x > y ? x : y;
    case BinOp::minimum:
      if (is_nan(x)) return x;
      if (is_nan(y)) return y;
      return x < y ? x : y;
    case BinOp::eq: return T(x == y);
    case BinOp::ne: return T(x != y);
    case BinOp::lt: return T(x < y);
    case BinOp::le: return T(x <= y);
    case BinOp::gt: return T(x > y);
    case BinOp::ge: return T(x >= y);
  }
  return T(0);
}

template <class T>
__device__ __forceinline__ T un_apply(UnOp op, T x, T p0, T p1) {
  switch (op) {
    case UnOp::neg: return -x;
    case UnOp::abs: return x < T(0) ? -x : x;
    case UnOp::sign: return is_nan(x) ? x : T((x > T(0)) - (x < T(0)));
    case UnOp::square: return x * x;
    case UnOp::clip:
      if (is_nan(x)) return x;
      return x < p0 ? p0 : (x > p1 ? p1 : x);
    default: break;
  }
  if constexpr (std::is_floating_point_v<T>) {
    switch (op) {
      case UnOp::exp: return exp(x);
      case UnOp::log: return log(x);
      case UnOp::sqrt: return sqrt(x);
      case UnOp::reciprocal: return T(1) / x;
      default: break;
    }
  }
  return x;
}

// A 16-byte pack of T, for vectorised loads and stores.
template <class T>
struct alignas(16) Pack {
  static constexpr int N = 16 / sizeof(T);
  T v[N];
};

inline bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15) == 0; }

template <class T>
__global__ void binary_contig(T* out, const T* a, const T* b, BinOp op, index_t n, bool vec) {
  const index_t tid = blockIdx.x * (index_t)blockDim.x + threadIdx.x;
  const index_t step = (index_t)gridDim.x * blockDim.x;
  index_t start = 0;
  if (vec) {
    constexpr int V = Pack<T>::N;
    const index_t np = n / V;
    for (index_t p = tid; p < np; p += step) {
      Pack<T> x = reinterpret_cast<const Pack<T>*>(a)[p];
      const Pack<T> y = reinterpret_cast<const Pack<T>*>(b)[p];
#pragma unroll
      for (int k = 0; k < V; ++k) x.v[k] = bin_apply(op, x.v[k], y.v[k]);
      reinterpret_cast<Pack<T>*>(out)[p] = x;
    }
    start = np * V;
  }
  for (index_t i = start + tid; i < n; i += step) out[i] = bin_apply(op, a[i], b[i]);
}

template <class T, class I>
__global__ void binary_bcast(T* out, const T* a, const T* b, BinOp op, OffsetCalc<I, 2> oc, I n) {
  for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
    I o[2];
    oc.get(i, o);
    out[i] = bin_apply(op, a[o[0]], b[o[1]]);
  }
}

template <class T>
__global__ void binary_scalar(T* out, const T* a, T s, BinOp op, bool left, index_t n) {
  for (index_t i = blockIdx.x * (index_t)blockDim.x + threadIdx.x; i < n; i += (index_t)gridDim.x * blockDim.x)
    out[i] = left ? bin_apply(op, s, a[i]) : bin_apply(op, a[i], s);
}

template <class T>
__global__ void unary_kernel(T* out, const T* a, UnOp op, T p0, T p1, index_t n, bool vec) {
  const index_t tid = blockIdx.x * (index_t)blockDim.x + threadIdx.x;
  const index_t step = (index_t)gridDim.x * blockDim.x;
  index_t start = 0;
  if (vec) {
    constexpr int V = Pack<T>::N;
    const index_t np = n / V;
    for (index_t p = tid; p < np; p += step) {
      Pack<T> x = reinterpret_cast<const Pack<T>*>(a)[p];
#pragma unroll
      for (int k = 0; k < V; ++k) x.v[k] = un_apply(op, x.v[k], p0, p1);
      reinterpret_cast<Pack<T>*>(out)[p] = x;
    }
    start = np * V;
  }
  for (index_t i = start + tid; i < n; i += step) out[i] = un_apply(op, a[i], p0, p1);
}

template <class T, class I>
__global__ void where_kernel(T* out, const T* c, const T* a, const T* b, OffsetCalc<I, 3> oc, I n) {
  for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
    I o[3];
    oc.get(i, o);
    out[i] = c[o[0]] != T(0) ? a[o[1]] : b[o[2]];
  }
}

template <class T>
__global__ void fill_kernel(T* out, T v, index_t n) {
  for (index_t i = blockIdx.x * (index_t)blockDim.x + threadIdx.x; i < n; i += (index_t)gridDim.x * blockDim.x)
    out[i] = v;
}

template <class To, class From>
__global__ void cast_kernel(To* out, const From* in, index_t n) {
  for (index_t i = blockIdx.x * (index_t)blockDim.x + threadIdx.x; i < n; i += (index_t)gridDim.x * blockDim.x)
    out[i] = static_cast<To>(in[i]);
}

template <class T>
__global__ void nonfinite_kernel(int* flag, const T* a, index_t n) {
  bool bad = false;
  for (index_t i = blockIdx.x * (index_t)blockDim.x + threadIdx.x; i < n; i += (index_t)gridDim.x * blockDim.x)
    bad |= !isfinite(a[i]);
  if (__syncthreads_or(bad) && threadIdx.x == 0) *flag = 1;  // every writer stores the same 1
}

}  // namespace

void launch_binary(void* out, const void* a, const void* b, DType t, BinOp op, const Indexer& ix0,
                   index_t n, cudaStream_t stream) {
  if (n == 0) return;
  const Indexer ix = collapse(ix0, 3);
  dispatch_all(t, [&](auto tag) {
    using T = decltype(tag);
    T* o = static_cast<T*>(out);
    const T* pa = static_cast<const T*>(a);
    const T* pb = static_cast<const T*>(b);
    if (is_contiguous(ix, 1) && is_contiguous(ix, 2)) {
      const bool vec = aligned16(o) && aligned16(pa) && aligned16(pb);
      binary_contig<T><<<grid_for(vec ? n / Pack<T>::N + 1 : n), kThreads, 0, stream>>>(o, pa, pb, op, n, vec);
    } else if (fits_int32(ix, 3, n)) {
      binary_bcast<T, int><<<grid_for(n), kThreads, 0, stream>>>(o, pa, pb, op, OffsetCalc<int, 2>(ix, 1), (int)n);
    } else {
      binary_bcast<T, index_t><<<grid_for(n), kThreads, 0, stream>>>(o, pa, pb, op, OffsetCalc<index_t, 2>(ix, 1), n);
    }
  });
  check_launch("binary elementwise kernel");
}

void launch_binary_scalar(void* out, const void* a, double s, DType t, BinOp op, bool scalar_left,
                          index_t n, cudaStream_t stream) {
  if (n == 0) return;
  dispatch_all(t, [&](auto tag) {
    using T = decltype(tag);
    binary_scalar<T><<<grid_for(n), kThreads, 0, stream>>>(static_cast<T*>(out), static_cast<const T*>(a),
                                                           static_cast<T>(s), op, scalar_left, n);
  });
  check_launch("scalar elementwise kernel");
}

void launch_unary(void* out, const void* a, DType t, UnOp op, double p0, double p1, index_t n,
                  cudaStream_t stream) {
  if (n == 0) return;
  dispatch_all(t, [&](auto tag) {
    using T = decltype(tag);
    const bool vec = aligned16(out) && aligned16(a);
    T lo, hi;
    if constexpr (std::is_floating_point_v<T>) {
      lo = static_cast<T>(p0);
      hi = static_cast<T>(p1);
    } else {  // integer clip bounds: saturate infinities
      lo = p0 < -9.2e18 ? INT64_MIN : static_cast<T>(std::ceil(p0));
      hi = p1 > 9.2e18 ? INT64_MAX : static_cast<T>(std::floor(p1));
    }
    unary_kernel<T><<<grid_for(vec ? n / Pack<T>::N + 1 : n), kThreads, 0, stream>>>(
        static_cast<T*>(out), static_cast<const T*>(a), op, lo, hi, n, vec);
  });
  check_launch("unary elementwise kernel");
}

void launch_where(void* out, const void* cond, const void* a, const void* b, DType t,
                  const Indexer& ix0, index_t n, cudaStream_t stream) {
  if (n == 0) return;
  const Indexer ix = collapse(ix0, 3);
  dispatch_all(t, [&](auto tag) {
    using T = decltype(tag);
    const T* c = static_cast<const T*>(cond);
    if (fits_int32(ix, 3, n))
      where_kernel<T, int><<<grid_for(n), kThreads, 0, stream>>>(static_cast<T*>(out), c, static_cast<const T*>(a),
                                                                 static_cast<const T*>(b), OffsetCalc<int, 3>(ix, 0), (int)n);
    else
      where_kernel<T, index_t><<<grid_for(n), kThreads, 0, stream>>>(static_cast<T*>(out), c, static_cast<const T*>(a),
                                                                     static_cast<const T*>(b), OffsetCalc<index_t, 3>(ix, 0), n);
  });
  check_launch("where kernel");
}

void launch_fill(void* out, DType t, double value, index_t n, cudaStream_t stream) {
  if (n == 0) return;
  dispatch_all(t, [&](auto tag) {
    using T = decltype(tag);
    fill_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(static_cast<T*>(out), static_cast<T>(value), n);
  });
  check_launch("fill kernel");
}

void launch_cast(void* out, DType to, const void* in, DType from, index_t n, cudaStream_t stream) {
  if (n == 0) return;
  dispatch_all(to, [&](auto tto) {
    dispatch_all(from, [&](auto tfrom) {
      using To = decltype(tto);
      using From = decltype(tfrom);
      cast_kernel<To, From><<<grid_for(n), kThreads, 0, stream>>>(static_cast<To*>(out), static_cast<const From*>(in), n);
    });
  });
  check_launch("cast kernel");
}

bool has_nonfinite(const void* a, DType t, index_t n) {
  if (n == 0 || t == DType::i64) return false;
  CudaArray flag = CudaArray::zeros({1}, DType::i64);
  int* f = static_cast<int*>(flag.raw());
  if (t == DType::f32)
    nonfinite_kernel<float><<<grid_for(n), kThreads, 0, current_stream()>>>(f, static_cast<const float*>(a), n);
  else
    nonfinite_kernel<double><<<grid_for(n), kThreads, 0, current_stream()>>>(f, static_cast<const double*>(a), n);
  check_launch("has_nonfinite kernel");
  int host = 0;
  memcpy_d2h(&host, f, sizeof(int));
  return host != 0;
}

}  // namespace dg::cuda
