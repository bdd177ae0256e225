// Single-precision GEMM on CUDA cores: c = alpha op(a) op(b) + beta c, row-major, with an
// optional fused epilogue (bias + activation, keeping the pre-activation) for dense layers.
//
// Block tile BM x BN over a K slab of BK, double-buffered in shared memory (one barrier per
// slab); each thread owns a TM x TN register tile, read from shared memory as float4 rows, and
// the next slab is fetched from global memory into registers (float4 where the rows are
// 16-byte aligned) while the current one is multiplied. Edge tiles are zero-filled on load and
// masked on store, so any M, N, K works.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "deepgrad/cuda_array.h"
#include "deepgrad/cuda_kernels.h"

namespace dg::cuda {
namespace {

struct Epilogue {
  float alpha, beta;
  const float* bias;  // (N) or null
  float* z_out;       // pre-activation (M, N) or null
  Act act;
  float act_alpha;
};

// Not inlined: the epilogue's 64 calls would otherwise each expand every activation.
__device__ __noinline__ float apply_act(Act a, float z, float alpha) {
  return dg::act_forward<float>(a, z, alpha);
}

// The four floats p[0..3] of a storage row, p[0] at column c of a row of `cols` columns: one
// float4 load when rows are 16-byte aligned and all four are inside the row, else element by
// element, the ones at or past column `cols` read as zero.
__device__ __forceinline__ float4 load_group(const float* p, int c, int cols, bool vec) {
  float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
  if (vec && c + 3 < cols) return __ldg(reinterpret_cast<const float4*>(p));
  if (c < cols) v.x = __ldg(p);
  if (c + 1 < cols) v.y = __ldg(p + 1);
  if (c + 2 < cols) v.z = __ldg(p + 2);
  if (c + 3 < cols) v.w = __ldg(p + 3);
  return v;
}

template <int BM, int BN, int BK, int TM, int TN, bool TA, bool TB>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
    sgemm_kernel(float* __restrict__ C, const float* __restrict__ A, const float* __restrict__ B,
                 int M, int N, int K, bool vec_a, bool vec_b, bool vec_c, Epilogue ep) {
  constexpr int THREADS = (BM / TM) * (BN / TN);
  constexpr int GM = TM / 4, GN = TN / 4;          // 4-wide groups per thread in each dim
  constexpr int SM = BM / GM, SN = BN / GN;        // stride between a thread's groups
  constexpr int PAD = 4;                            // keeps float4 alignment, breaks bank conflicts
  constexpr int A_GROUPS = BM * BK / 4, B_GROUPS = BN * BK / 4;
  constexpr int NA = (A_GROUPS + THREADS - 1) / THREADS;
  constexpr int NB = (B_GROUPS + THREADS - 1) / THREADS;
  static_assert(TM % 4 == 0 && TN % 4 == 0 && BK % 4 == 0, "tile shape");

  __shared__ __align__(16) float As[2][BK][BM + PAD];
  __shared__ __align__(16) float Bs[2][BK][BN + PAD];

  const int tid = threadIdx.x;
  const int tx = tid % (BN / TN), ty = tid / (BN / TN);
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int lda = TA ? M : K, ldb = TB ? K : N;

  float4 ra[NA], rb[NB];

  // op(A)[m][k]: TA ? A[k][m] : A[m][k]. Groups run along the contiguous axis of the storage.
  auto load_a = [&](int k0) {
#pragma unroll
    for (int i = 0; i < NA; ++i) {
      const int g = tid + i * THREADS;
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (g < A_GROUPS) {
        int r, c, rows, cols;  // storage row/col of the group's first element
        if (!TA) { r = m0 + g / (BK / 4); c = k0 + (g % (BK / 4)) * 4; rows = M; cols = K; }
        else     { r = k0 + g / (BM / 4); c = m0 + (g % (BM / 4)) * 4; rows = K; cols = M; }
        if (r < rows) v = load_group(A + (size_t)r * lda + c, c, cols, vec_a);
      }
      ra[i] = v;
    }
  };
  // op(B)[k][n]: TB ? B[n][k] : B[k][n].
  auto load_b = [&](int k0) {
#pragma unroll
    for (int i = 0; i < NB; ++i) {
      const int g = tid + i * THREADS;
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (g < B_GROUPS) {
        int r, c, rows, cols;
        if (!TB) { r = k0 + g / (BN / 4); c = n0 + (g % (BN / 4)) * 4; rows = K; cols = N; }
        else     { r = n0 + g / (BK / 4); c = k0 + (g % (BK / 4)) * 4; rows = N; cols = K; }
        if (r < rows) v = load_group(B + (size_t)r * ldb + c, c, cols, vec_b);
      }
      rb[i] = v;
    }
  };
  auto store_tiles = [&](int buf) {
#pragma unroll
    for (int i = 0; i < NA; ++i) {
      const int g = tid + i * THREADS;
      if (g < A_GROUPS) {
        if (!TA) {
          const int m = g / (BK / 4), k = (g % (BK / 4)) * 4;
          As[buf][k + 0][m] = ra[i].x;
          As[buf][k + 1][m] = ra[i].y;
          As[buf][k + 2][m] = ra[i].z;
          As[buf][k + 3][m] = ra[i].w;
        } else {
          const int k = g / (BM / 4), m = (g % (BM / 4)) * 4;
          *reinterpret_cast<float4*>(&As[buf][k][m]) = ra[i];
        }
      }
    }
#pragma unroll
    for (int i = 0; i < NB; ++i) {
      const int g = tid + i * THREADS;
      if (g < B_GROUPS) {
        if (!TB) {
          const int k = g / (BN / 4), n = (g % (BN / 4)) * 4;
          *reinterpret_cast<float4*>(&Bs[buf][k][n]) = rb[i];
        } else {
          const int n = g / (BK / 4), k = (g % (BK / 4)) * 4;
          Bs[buf][k + 0][n] = rb[i].x;
          Bs[buf][k + 1][n] = rb[i].y;
          Bs[buf][k + 2][n] = rb[i].z;
          Bs[buf][k + 3][n] = rb[i].w;
        }
      }
    }
  };

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  const int ktiles = (K + BK - 1) / BK;
  if (ktiles > 0) {
    load_a(0);
    load_b(0);
    store_tiles(0);
  }
  __syncthreads();
  for (int kt = 0; kt < ktiles; ++kt) {
    const int cur = kt & 1;
    const bool more = kt + 1 < ktiles;
    if (more) {
      load_a((kt + 1) * BK);
      load_b((kt + 1) * BK);
    }
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[TM], b[TN];
#pragma unroll
      for (int g = 0; g < GM; ++g) {
        const float4 t = *reinterpret_cast<const float4*>(&As[cur][kk][g * SM + ty * 4]);
        a[g * 4 + 0] = t.x; a[g * 4 + 1] = t.y; a[g * 4 + 2] = t.z; a[g * 4 + 3] = t.w;
      }
#pragma unroll
      for (int g = 0; g < GN; ++g) {
        const float4 t = *reinterpret_cast<const float4*>(&Bs[cur][kk][g * SN + tx * 4]);
        b[g * 4 + 0] = t.x; b[g * 4 + 1] = t.y; b[g * 4 + 2] = t.z; b[g * 4 + 3] = t.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (more) store_tiles(cur ^ 1);
    __syncthreads();
  }

  // Epilogue: alpha, beta (never reading C when beta == 0), bias, keep z, activation.
  const bool has_act = ep.act != Act::identity;
#pragma unroll
  for (int gi = 0; gi < GM; ++gi)
#pragma unroll
    for (int ii = 0; ii < 4; ++ii) {
      const int row = m0 + gi * SM + ty * 4 + ii;
      if (row >= M) continue;
#pragma unroll
      for (int gj = 0; gj < GN; ++gj) {
        const int col = n0 + gj * SN + tx * 4;
        float v[4];
#pragma unroll
        for (int jj = 0; jj < 4; ++jj) v[jj] = ep.alpha * acc[gi * 4 + ii][gj * 4 + jj];
        const size_t off = (size_t)row * N + col;
        if (vec_c && col + 3 < N) {
          if (ep.beta != 0.f) {
            const float4 o = *reinterpret_cast<const float4*>(C + off);
            v[0] += ep.beta * o.x; v[1] += ep.beta * o.y; v[2] += ep.beta * o.z; v[3] += ep.beta * o.w;
          }
          if (ep.bias) {
            const float4 bb = __ldg(reinterpret_cast<const float4*>(ep.bias + col));
            v[0] += bb.x; v[1] += bb.y; v[2] += bb.z; v[3] += bb.w;
          }
          if (ep.z_out) *reinterpret_cast<float4*>(ep.z_out + off) = make_float4(v[0], v[1], v[2], v[3]);
          if (has_act)
#pragma unroll
            for (int jj = 0; jj < 4; ++jj) v[jj] = apply_act(ep.act, v[jj], ep.act_alpha);
          *reinterpret_cast<float4*>(C + off) = make_float4(v[0], v[1], v[2], v[3]);
        } else {
#pragma unroll
          for (int jj = 0; jj < 4; ++jj) {
            if (col + jj >= N) break;
            float x = v[jj];
            if (ep.beta != 0.f) x += ep.beta * C[off + jj];
            if (ep.bias) x += ep.bias[col + jj];
            if (ep.z_out) ep.z_out[off + jj] = x;
            if (has_act) x = apply_act(ep.act, x, ep.act_alpha);
            C[off + jj] = x;
          }
        }
      }
    }
}

__global__ void sgemm_naive_kernel(float* C, const float* A, const float* B, int M, int N, int K,
                                   bool ta, bool tb, float alpha, float beta) {
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  const int row = blockIdx.y * blockDim.y + threadIdx.y;
  if (row >= M || col >= N) return;
  float s = 0.f;
  for (int k = 0; k < K; ++k) {
    const float a = ta ? A[(size_t)k * M + row] : A[(size_t)row * K + k];
    const float b = tb ? B[(size_t)col * K + k] : B[(size_t)k * N + col];
    s = fmaf(a, b, s);
  }
  float v = alpha * s;
  if (beta != 0.f) v += beta * C[(size_t)row * N + col];
  C[(size_t)row * N + col] = v;
}

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

template <int BM, int BN, int BK, int TM, int TN, bool TA, bool TB>
void launch_tile(float* c, const float* a, const float* b, int M, int N, int K, const Epilogue& ep,
                 cudaStream_t stream) {
  constexpr int threads = (BM / TM) * (BN / TN);
  const dim3 grid((N + BN - 1) / BN, (M + BM - 1) / BM);
  if (grid.y > 65535) throw std::runtime_error("cuda gemm: M = " + std::to_string(M) + " rows exceed the grid limit");
  const bool vec_a = aligned16(a) && ((TA ? M : K) % 4 == 0);
  const bool vec_b = aligned16(b) && ((TB ? K : N) % 4 == 0);
  const bool vec_c = aligned16(c) && (N % 4 == 0) && (!ep.z_out || aligned16(ep.z_out)) &&
                     (!ep.bias || aligned16(ep.bias));
  sgemm_kernel<BM, BN, BK, TM, TN, TA, TB>
      <<<grid, threads, 0, stream>>>(c, a, b, M, N, K, vec_a, vec_b, vec_c, ep);
}

template <bool TA, bool TB>
void launch_gemm(float* c, const float* a, const float* b, int M, int N, int K, const Epilogue& ep,
                 cudaStream_t stream) {
  // 128x128 tiles (8x8 per thread) once they fill the GPU; 64x64 (4x4 per thread) for the
  // small products of narrow layers, where more blocks matter more than reuse.
  const long long big_tiles = (long long)((M + 127) / 128) * ((N + 127) / 128);
  if (big_tiles >= 96)
    launch_tile<128, 128, 8, 8, 8, TA, TB>(c, a, b, M, N, K, ep, stream);
  else
    launch_tile<64, 64, 16, 4, 4, TA, TB>(c, a, b, M, N, K, ep, stream);
}

void check_dims(const char* what, index_t M, index_t N, index_t K) {
  const index_t lim = (index_t(1) << 31) - 1;
  if (M < 0 || N < 0 || K < 0 || M > lim || N > lim || K > lim || M * N > (index_t(1) << 40))
    throw std::runtime_error(std::string(what) + ": matrix dimensions out of range");
}

void gemm_dispatch(float* c, const float* a, const float* b, index_t M, index_t N, index_t K,
                   bool ta, bool tb, const Epilogue& ep, cudaStream_t stream, const char* what) {
  check_dims(what, M, N, K);
  if (M == 0 || N == 0) return;
  const int m = (int)M, n = (int)N, k = (int)K;
  if (!ta && !tb) launch_gemm<false, false>(c, a, b, m, n, k, ep, stream);
  else if (!ta && tb) launch_gemm<false, true>(c, a, b, m, n, k, ep, stream);
  else if (ta && !tb) launch_gemm<true, false>(c, a, b, m, n, k, ep, stream);
  else launch_gemm<true, true>(c, a, b, m, n, k, ep, stream);
  check_launch(what);
}

}  // namespace

void gemm(float* c, const float* a, const float* b, index_t M, index_t N, index_t K, bool trans_a,
          bool trans_b, float alpha, float beta, cudaStream_t stream) {
  const Epilogue ep{alpha, beta, nullptr, nullptr, Act::identity, 0.f};
  gemm_dispatch(c, a, b, M, N, K, trans_a, trans_b, ep, stream, "cuda gemm");
}

void gemm_bias_act(float* y, float* z_out, const float* a, const float* b, const float* bias,
                   index_t M, index_t N, index_t K, bool trans_a, bool trans_b, Act act,
                   float act_alpha, cudaStream_t stream) {
  const Epilogue ep{1.f, 0.f, bias, z_out, act, act_alpha};
  gemm_dispatch(y, a, b, M, N, K, trans_a, trans_b, ep, stream, "cuda gemm_bias_act");
}

void gemm_naive(float* c, const float* a, const float* b, index_t M, index_t N, index_t K,
                bool trans_a, bool trans_b, float alpha, float beta, cudaStream_t stream) {
  check_dims("cuda gemm_naive", M, N, K);
  if (M == 0 || N == 0) return;
  const dim3 block(16, 16);
  const dim3 grid((unsigned)((N + 15) / 16), (unsigned)((M + 15) / 16));
  sgemm_naive_kernel<<<grid, block, 0, stream>>>(c, a, b, (int)M, (int)N, (int)K, trans_a, trans_b,
                                                 alpha, beta);
  check_launch("cuda gemm_naive");
}

}  // namespace dg::cuda
