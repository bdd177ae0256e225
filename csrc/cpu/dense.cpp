// Fused dense layer: forward Y = act(X W + b) and backward (dX, dW +=, db +=) in one call each.
// The GEMM writes X W; then one pass over its output, row by row, adds the bias and applies the
// activation kernel of activations.cpp (the math.h formulas), O(N*OUT) against the GEMM's
// O(N*OUT*IN).
#include <algorithm>
#include <memory>

#include "deepgrad/gemm.h"
#include "deepgrad/kernels.h"

namespace dg {
namespace {

// Runs f(i) for i in [0, n) on nt threads; a plain loop when nt == 1 (no OpenMP entry cost,
// which matters for the small layers this library is mostly used with).
template <class F>
void parallel_for(index_t n, int nt, F&& f) {
  if (nt <= 1) {
    for (index_t i = 0; i < n; ++i) f(i);
    return;
  }
#ifdef DG_HAVE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
#endif
  for (index_t i = 0; i < n; ++i) f(i);
}

// dz's buffer, kept per calling thread and grown on demand: a fresh allocation per call costs
// page faults once it is large enough for malloc to map and unmap it (a 256x256 float32 dz
// is 256 KiB), more than forming dz itself.
template <class T>
T* dz_scratch(index_t count) {
  thread_local std::unique_ptr<T[]> buf;
  thread_local index_t cap = 0;
  if (count > cap) {
    buf.reset();
    buf.reset(new T[count]);
    cap = count;
  }
  return buf.get();
}

}  // namespace

template <class T>
void dense_forward(T* y, T* z, const T* x, const T* w, const T* b, index_t n, index_t in,
                   index_t out, Act act, T alpha) {
  // x (N,IN), w (IN,OUT), b (OUT) -> y (N,OUT), z (N,OUT) when not null
  T* pre = z ? z : y;
  gemm<T>(pre, x, w, n, out, in, in, out, out, false, false, T(1), T(0));
  if (!b && act == Act::identity && pre == y) return;
  // One pass, row by row while the row is in L1: bias, then the activation kernel on the row.
  // Forks only from ~50 us of work (the vectorized transcendental activations cost ~1 ns per
  // float32 element, the piecewise ones a fraction of that), like the GEMM above.
  const bool simple = act == Act::identity || act == Act::relu || act == Act::leaky_relu;
  parallel_for(n, threads_for(n * out * (simple ? 1 : 8) / 16), [&](index_t i) {
    T* pi = pre + i * out;
    if (b)
      for (index_t j = 0; j < out; ++j) pi[j] += b[j];
    if (act != Act::identity || pi != y + i * out)
      cpu::act_forward<T>(y + i * out, pi, out, act, alpha);
  });
}

template <class T>
void dense_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* z,
                    const T* y, index_t n, index_t in, index_t out, Act act, T alpha) {
  // dy (N,OUT), x (N,IN), w (IN,OUT), z/y (N,OUT) -> dx (N,IN); dw (IN,OUT) +=; db (OUT) +=
  if (n <= 0) {
    return;  // no samples: no contribution to dw/db, and dx is empty
  }
  if (act == Act::step) {  // act' = 0: no gradient flows (z and y may both be null)
    if (dx) std::fill(dx, dx + n * in, T(0));
    return;
  }
  const index_t size = n * out;
  const T* dz = dy;  // dz = dy * act'(z), formed once for the three uses below
  if (act != Act::identity) {
    T* d = dz_scratch<T>(size);
    cpu::act_backward<T>(d, dy, z, y, size, act, alpha);
    dz = d;
  }
  if (dx) gemm<T>(dx, dz, w, n, in, out, out, out, in, false, true, T(1), T(0));
  gemm<T>(dw, x, dz, in, out, n, in, out, out, true, false, T(1), T(1));
  if (db) {
    // Column sums, parallel over columns only, so the result does not depend on thread count.
    constexpr index_t chunk = 64;
    const index_t nchunks = (out + chunk - 1) / chunk;
    parallel_for(nchunks, threads_for(size / 8), [&](index_t cidx) {
      const index_t j0 = cidx * chunk, j1 = std::min(out, j0 + chunk);
      T acc[chunk] = {};
      for (index_t i = 0; i < n; ++i) {
        const T* di = dz + i * out;
        for (index_t j = j0; j < j1; ++j) acc[j - j0] += di[j];
      }
      for (index_t j = j0; j < j1; ++j) db[j] += acc[j - j0];
    });
  }
}

#define DG_INSTANTIATE_DENSE(T)                                                                  \
  template void dense_forward<T>(T*, T*, const T*, const T*, const T*, index_t, index_t, index_t, \
                                 Act, T);                                                        \
  template void dense_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*,  \
                                  index_t, index_t, index_t, Act, T);
DG_INSTANTIATE_DENSE(float)
DG_INSTANTIATE_DENSE(double)
#undef DG_INSTANTIATE_DENSE

}  // namespace dg
