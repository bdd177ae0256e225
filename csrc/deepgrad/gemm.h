// Matrix multiplication and the fused dense-layer kernels. Row-major, float and double.
//   gemm:  C (M,N) = alpha * op(A) (M,K) * op(B) (K,N) + beta * C
// op(A) = A (M,K) with row stride lda, or A^T when trans_a (A stored (K,M)); likewise for B.
// beta == 0 overwrites C without reading it (BLAS semantics: NaN in an old C does not leak).
#pragma once
#include "deepgrad/common.h"
#include "deepgrad/math.h"

namespace dg {

// Blocked, packed GEMM: cache blocking, packed panels, register-blocked micro-kernel (AVX2/FMA
// when the CPU has it), OpenMP across tiles. Small problems skip packing and run on one thread.
template <class T>
void gemm(T* c, const T* a, const T* b, index_t m, index_t n, index_t k, index_t lda,
          index_t ldb, index_t ldc, bool trans_a, bool trans_b, T alpha, T beta);

// gemm without forking: for a caller that has already split its work over threads. Each element
// of C gets the same operations, in the same order, as from gemm on one thread.
template <class T>
void gemm_this_thread(T* c, const T* a, const T* b, index_t m, index_t n, index_t k, index_t lda,
                      index_t ldb, index_t ldc, bool trans_a, bool trans_b, T alpha, T beta);

// The micro-kernel families: the portable one, AVX2/FMA (6x16 float, 6x8 double tiles) and
// AVX-512F (6x32, 6x16). gemm uses the widest this CPU runs; AVX2 and AVX-512 give bitwise equal
// results (each element is the same chain of FMAs).
enum class GemmIsa { portable, avx2, avx512 };
bool gemm_isa_available(GemmIsa isa);
GemmIsa gemm_best_isa();

// gemm with one family's micro-kernel (the portable one when the CPU lacks it): tests, benchmarks.
template <class T>
void gemm_with_isa(GemmIsa isa, T* c, const T* a, const T* b, index_t m, index_t n, index_t k,
                   index_t lda, index_t ldb, index_t ldc, bool trans_a, bool trans_b, T alpha,
                   T beta);

// The triple loop: the test oracle.
template <class T>
void gemm_naive(T* c, const T* a, const T* b, index_t m, index_t n, index_t k, index_t lda,
                index_t ldb, index_t ldc, bool trans_a, bool trans_b, T alpha, T beta);

// The blocked driver with the portable micro-kernel, whatever the CPU (so tests cover it).
template <class T>
void gemm_portable(T* c, const T* a, const T* b, index_t m, index_t n, index_t k, index_t lda,
                   index_t ldb, index_t ldc, bool trans_a, bool trans_b, T alpha, T beta);

// x (N,IN), w (IN,OUT), b (OUT) or null -> y (N,OUT) = act(x w + b); z (N,OUT) = x w + b is
// written only when z is not null (the caller passes it when act_needs_pre(act)).
// stats (may be null): a layer statistics record (deepgrad/layer_stats.h); when its kWantForward
// slot is set, the epilogue fills the forward slots for this call while each block is in cache.
template <class T>
void dense_forward(T* y, T* z, const T* x, const T* w, const T* b, index_t n, index_t in,
                   index_t out, Act act, T alpha, double* stats = nullptr);

// dy, z, y (N,OUT), x (N,IN), w (IN,OUT) -> dx (N,IN) (overwritten; skipped when null),
// dw (IN,OUT) += x^T dz, db (OUT) += colsum(dz) (skipped when null), with dz = dy * act'(z).
// z may be null when !act_needs_pre(act); y may be null (it is then recomputed from z).
// stats (may be null): a layer statistics record that receives ||dy||^2 (kSignalSq).
template <class T>
void dense_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* z,
                    const T* y, index_t n, index_t in, index_t out, Act act, T alpha,
                    double* stats = nullptr);

// ---- micro-kernel interface (shared by gemm.cpp and the ISA-specific files) -------------------
// C tile (m,n) = alpha * sum_p A(i,p) B(p,j) + beta * C over p < kc, where
// A(i,p) = a[i*rsa + p*csa] and B(p,j) = b[p*rsb + j] (NR values readable per p even when n < NR);
// m <= MR, n <= NR.
template <class T>
using MicroKernel = void (*)(index_t kc, const T* a, index_t rsa, index_t csa, const T* b,
                             index_t rsb, T* c, index_t ldc, T alpha, T beta, int m, int n);

// The portable and AVX2 tiles (MR x NR); the AVX-512 ones are MR x 2*NR. Callers that split C
// over threads use these as units (any split is correct; whole tiles are faster).
template <class T> struct GemmTile;
template <> struct GemmTile<float> { static constexpr int MR = 6, NR = 16; };
template <> struct GemmTile<double> { static constexpr int MR = 6, NR = 8; };

namespace avx2 {
void ukernel_f32(index_t kc, const float* a, index_t rsa, index_t csa, const float* b,
                 index_t rsb, float* c, index_t ldc, float alpha, float beta, int m, int n);
void ukernel_f64(index_t kc, const double* a, index_t rsa, index_t csa, const double* b,
                 index_t rsb, double* c, index_t ldc, double alpha, double beta, int m, int n);
// iters x 12 independent 8-wide float FMAs (the peak probe's inner loop); returns their sum.
float fma_probe_f32(index_t iters);
}  // namespace avx2

namespace avx512 {
void ukernel_f32(index_t kc, const float* a, index_t rsa, index_t csa, const float* b,
                 index_t rsb, float* c, index_t ldc, float alpha, float beta, int m, int n);
void ukernel_f64(index_t kc, const double* a, index_t rsa, index_t csa, const double* b,
                 index_t rsb, double* c, index_t ldc, double alpha, double beta, int m, int n);
float fma_probe_f32(index_t iters);  // as avx2::fma_probe_f32, 16 lanes
}  // namespace avx512

// The FMA peak probe (benchmarks): `threads` threads each run `iters` x 12 independent float
// FMA chains of isa's vector width (16 lanes for AVX-512, 8 for AVX2, 1 for portable; a narrower
// one when the CPU lacks it). Returns the floating-point operations done (2 per lane per FMA) and
// the wall seconds they took.
void fma_peak_probe(GemmIsa isa, index_t iters, int threads, double* flops, double* seconds);

}  // namespace dg
