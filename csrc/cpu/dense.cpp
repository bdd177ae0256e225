// Fused dense layer: forward Y = act(X W + b) and backward (dX, dW +=, db +=) in one call each.
// The GEMM writes X W; then one pass over its output, block of rows by block, adds the bias and
// applies the activation kernel of activations.cpp (the math.h formulas), O(N*OUT) against the GEMM's
// O(N*OUT*IN).
//
// Threads. Large layers (from ~4M multiply-adds) let the GEMM fork on its own grid. Mid-size
// layers (~0.5M-4M multiply-adds, 10-80 us on one core: width 64-256 at batch 128) are below
// that, and a fork per GEMM would cost as much as it saves; instead the whole layer forks once:
// in the forward each thread takes a block of rows and does its GEMM rows, bias and activation;
// in the backward each thread forms dz, then half the team computes blocks of dX rows and the
// other half blocks of dW and db columns (cpu/mid_fork.h: the fork and its backoff). No barrier
// inside, and every element gets the same operations in the same order as on one thread, so
// results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>

#include <vector>

#include "cpu/ew_parallel.h"
#include "cpu/layer_stats.h"
#include "cpu/mid_fork.h"
#include "deepgrad/gemm.h"
#include "deepgrad/kernels.h"
#include "deepgrad/layer_stats.h"

namespace dg {
namespace {

using cpu::fork_team;
using cpu::mid_fork_allowed;
using cpu::mid_fork_threads;
using cpu::split_units;

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

// Rows per block of the bias + activation epilogue: ~4K elements (16-32 KiB, in L1/L2), so the
// activation is ONE call per block (a call per row cost ~40 ns each, a fifth of a 128-wide tanh
// row).
inline index_t epilogue_rows(index_t out) { return std::max<index_t>(1, 4096 / std::max<index_t>(out, 1)); }

// The forward's share of the layer statistics record (deepgrad/layer_stats.h), taken in the
// epilogue while each block is in cache, per part (a thread's rows or a block of rows): double
// sums of z, saturated counts, column maxima of y (alive columns: maximum > 0). The parts are
// combined in order; the counts are exact, the sums may differ in the last bits between thread
// counts (a different cut into parts).
template <class T>
struct FwdStats {
  int sat = 0;  // 0: none, 1: on y, 2: on z
  T center = 0, bound = 0;
  bool dead = false;
  // the alive columns taken on z with its sums (some y > 0 exactly when some z > 0: ReLU, leaky
  // ReLU with a slope >= 0, identity), not in a pass over y
  bool alive_on_z = false;
  index_t out = 0;
  int parts = 0;
  // per part: s, q (sum z, sum z^2), saturated count, then per part and column the maximum of y:
  // all in one buffer of the calling thread, reused from forward to forward (no allocation per
  // layer call once it has grown)
  double* s = nullptr;
  double* q = nullptr;
  index_t* saturated = nullptr;
  T* colmax = nullptr;

  FwdStats(const double* rec, index_t out_, int parts_, Act act, T alpha)
      : sat(static_cast<int>(rec[layer_stats::kSatMode])), center(T(rec[layer_stats::kCenter])),
        bound(T(rec[layer_stats::kBound])), dead(rec[layer_stats::kDead] != 0), out(out_),
        parts(parts_) {
    static_assert(sizeof(index_t) == sizeof(double) && sizeof(T) <= sizeof(double));
    // tanh and the sigmoid are increasing and odd about their centre (0 and 1/2), so a count of
    // |y - centre| > bound is the count of |z| > the bound taken through the inverse: counted on z
    // in the same loads as z's sums instead of in a pass over y (the two may differ for a z
    // within the activation kernel's rounding of the threshold)
    const double b = rec[layer_stats::kBound], c = rec[layer_stats::kCenter];
    const double inf = std::numeric_limits<double>::infinity();
    if (sat == 1 && act == Act::tanh_ && c == 0.0) {
      sat = 2;
      bound = T(b < 0 ? -1.0 : b < 1 ? std::atanh(b) : inf);
    } else if (sat == 1 && act == Act::sigmoid && c == 0.5) {
      sat = 2;
      center = T(0);
      bound = T(b < 0 ? -1.0 : 2 * b < 1 ? 2 * std::atanh(2 * b) : inf);
    }
    alive_on_z = dead && sat == 0 &&
                 (act == Act::relu || act == Act::identity || (act == Act::leaky_relu && alpha >= 0));
    thread_local std::vector<double> buf;
    const size_t cols = dead ? (size_t(parts) * out * sizeof(T) + sizeof(double) - 1) / sizeof(double) : 0;
    const size_t need = 3 * size_t(parts) + cols;
    if (buf.size() < need) buf.resize(need);
    std::fill(buf.begin(), buf.begin() + need, 0.0);  // zero bits: 0.0, 0 and T(0) alike
    s = buf.data();
    q = s + parts;
    saturated = reinterpret_cast<index_t*>(q + parts);
    colmax = reinterpret_cast<T*>(q + 2 * parts);
  }

  // rows [i0, i1) of z (pre), before the activation
  void on_pre(const T* z, index_t rows, int part) {
    if (sat == 2) cpu::add_sums_count<T>(&s[part], &q[part], &saturated[part], z, rows * out, center, bound);
    else if (alive_on_z) cpu::add_sums_colmax<T>(&s[part], &q[part], colmax + size_t(part) * out, z, rows, out);
    else cpu::add_sums<T>(&s[part], &q[part], z, rows * out);
  }
  // the same rows of y, after the activation
  void on_out(const T* y, index_t rows, int part) {
    if (sat == 1) saturated[part] += cpu::count_outside<T>(y, rows * out, center, bound);
    if (dead && !alive_on_z) cpu::col_max<T>(colmax + size_t(part) * out, y, rows, out);
  }
  void write(double* rec, index_t n) const {
    double ts = 0.0, tq = 0.0;
    index_t nsat = 0, nalive = 0;
    for (int p = 0; p < parts; ++p) {
      ts += s[p];
      tq += q[p];
      nsat += saturated[p];
    }
    if (dead) {
      for (index_t j = 0; j < out; ++j) {
        bool a = false;
        for (int p = 0; p < parts; ++p) a = a || colmax[size_t(p) * out + j] > T(0);
        nalive += a;
      }
    }
    rec[layer_stats::kElements] = double(n * out);
    rec[layer_stats::kColumns] = double(out);
    rec[layer_stats::kSum] = ts;
    rec[layer_stats::kSumSq] = tq;
    rec[layer_stats::kSaturated] = double(nsat);
    rec[layer_stats::kAlive] = double(nalive);
    rec[layer_stats::kFwdCount] += 1.0;
  }
};

// z (rows, out) += b on every row, in the CPU's widest vectors (the baseline build is SSE2).
template <class T>
DG_CLONES512 void add_bias_rows(T* __restrict z, const T* __restrict b, index_t rows, index_t out) {
  for (index_t i = 0; i < rows; ++i) {
    T* zi = z + i * out;
    for (index_t j = 0; j < out; ++j) zi[j] += b[j];
  }
}

// pre rows [r0, r1) += b, then y = act(pre) on those rows (in place when pre == y), block by
// block; st (may be null) takes its statistics of each block as part `part`.
template <class T>
void bias_act_rows(T* y, T* pre, const T* b, index_t r0, index_t r1, index_t out, Act act,
                   T alpha, FwdStats<T>* st = nullptr, int part = 0) {
  const index_t rows = epilogue_rows(out);
  for (index_t i0 = r0; i0 < r1; i0 += rows) {
    const index_t i1 = std::min(r1, i0 + rows);
    T* p0 = pre + i0 * out;
    if (b) add_bias_rows(p0, b, i1 - i0, out);
    if (st) st->on_pre(p0, i1 - i0, part);
    if (act != Act::identity || p0 != y + i0 * out)
      cpu::act_forward<T>(y + i0 * out, p0, (i1 - i0) * out, act, alpha);
    if (st) st->on_out(y + i0 * out, i1 - i0, part);
  }
}

// db[j0, j1) += column sums of dz (N,OUT) over those columns, rows in order: the same sums
// whatever the column blocks.
template <class T>
DG_CLONES512 void colsum_add(T* db, const T* dz, index_t n, index_t out, index_t j0, index_t j1) {
  constexpr index_t chunk = 64;
  for (index_t c0 = j0; c0 < j1; c0 += chunk) {
    const index_t c1 = std::min(j1, c0 + chunk);
    T acc[chunk] = {};
    for (index_t i = 0; i < n; ++i) {
      const T* di = dz + i * out;
      for (index_t j = c0; j < c1; ++j) acc[j - c0] += di[j];
    }
    for (index_t j = c0; j < c1; ++j) db[j] += acc[j - c0];
  }
}

}  // namespace

template <class T>
void dense_forward(T* y, T* z, const T* x, const T* w, const T* b, index_t n, index_t in,
                   index_t out, Act act, T alpha, double* stats) {
  // x (N,IN), w (IN,OUT), b (OUT) -> y (N,OUT), z (N,OUT) when not null; stats: see gemm.h
  T* pre = z ? z : y;
  const bool want = stats && stats[layer_stats::kWantForward] != 0.0;
  const int nt = mid_fork_threads(n * in * out);
  if (nt > 1 && mid_fork_allowed()) {
    std::optional<FwdStats<T>> st;
    if (want) st.emplace(stats, out, nt, act, alpha);
    fork_team(nt, [&](int t, int nteam) {
      index_t r0, r1;
      split_units(n, nteam, t, GemmTile<T>::MR, &r0, &r1);
      if (r1 <= r0) return;
      gemm_this_thread<T>(pre + r0 * out, x + r0 * in, w, r1 - r0, out, in, in, out, out, false,
                          false, T(1), T(0));
      bias_act_rows(y, pre, b, r0, r1, out, act, alpha, st ? &*st : nullptr, t);
    });
    if (st) st->write(stats, n);
    return;
  }
  gemm<T>(pre, x, w, n, out, in, in, out, out, false, false, T(1), T(0));
  if (!b && act == Act::identity && pre == y && !want) return;
  // One pass over blocks of rows while they are in L1/L2: bias, then the activation kernel on
  // the block. Forks only from ~50 us of work (the vectorized transcendental activations cost
  // ~0.5-1 ns per float32 element, the piecewise ones a fraction of that), like the GEMM above.
  const bool simple = act == Act::identity || act == Act::relu || act == Act::leaky_relu;
  const index_t rb = epilogue_rows(out);
  const index_t nblocks = (n + rb - 1) / rb;
  std::optional<FwdStats<T>> st;
  if (want) st.emplace(stats, out, static_cast<int>(nblocks), act, alpha);
  parallel_for(nblocks, threads_for(n * out * (simple ? 1 : 8) / 16), [&](index_t k) {
    bias_act_rows(y, pre, b, k * rb, std::min(n, (k + 1) * rb), out, act, alpha, st ? &*st : nullptr,
                  static_cast<int>(k));
  });
  if (st) st->write(stats, n);
}

template <class T>
void dense_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* z,
                    const T* y, index_t n, index_t in, index_t out, Act act, T alpha,
                    double* stats) {
  // dy (N,OUT), x (N,IN), w (IN,OUT), z/y (N,OUT) -> dx (N,IN); dw (IN,OUT) +=; db (OUT) +=
  if (stats) {  // the backward signal ||dL/dy||^2 for the layer statistics record
    stats[layer_stats::kSignalSq] = cpu::sumsq_or_nan<T>(dy, n * out);
    stats[layer_stats::kBwdCount] += 1.0;
  }
  if (n <= 0) {
    return;  // no samples: no contribution to dw/db, and dx is empty
  }
  if (act == Act::step) {  // act' = 0: no gradient flows (z and y may both be null)
    if (dx) std::fill(dx, dx + n * in, T(0));
    return;
  }
  const index_t size = n * out;
  const int nt = mid_fork_threads(n * in * out);
  if (nt > 1 && mid_fork_allowed()) {
    fork_team(nt, [&](int t, int nteam) {
      const T* dzt = dy;  // each thread forms all of dz: no barrier between dz and its uses
      if (act != Act::identity) {
        T* d = dz_scratch<T>(size);
        cpu::act_backward<T>(d, dy, z, y, size, act, alpha);
        dzt = d;
      }
      // The two GEMMs cost about the same: half the team takes blocks of dX rows, the other
      // half blocks of dW (and db) columns; a team of one does both.
      const int nx = nteam == 1 ? 1 : (dx ? nteam / 2 : 0);
      const int nw = nteam == 1 ? 1 : nteam - nx;
      if (dx && t < nx) {
        index_t r0, r1;
        split_units(n, nx, t, GemmTile<T>::MR, &r0, &r1);
        if (r1 > r0)
          gemm_this_thread<T>(dx + r0 * in, dzt + r0 * out, w, r1 - r0, in, out, out, out, in,
                              false, true, T(1), T(0));
      }
      if (nteam == 1 || t >= nx) {
        index_t c0, c1;
        split_units(out, nw, nteam == 1 ? 0 : t - nx, GemmTile<T>::NR, &c0, &c1);
        if (c1 > c0) {
          gemm_this_thread<T>(dw + c0, x, dzt + c0, in, c1 - c0, n, in, out, out, true, false,
                              T(1), T(1));
          if (db) colsum_add(db, dzt, n, out, c0, c1);
        }
      }
    });
    return;
  }
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
      colsum_add(db, dz, n, out, cidx * chunk, std::min(out, (cidx + 1) * chunk));
    });
  }
}

#define DG_INSTANTIATE_DENSE(T)                                                                  \
  template void dense_forward<T>(T*, T*, const T*, const T*, const T*, index_t, index_t, index_t, \
                                 Act, T, double*);                                               \
  template void dense_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*,  \
                                  index_t, index_t, index_t, Act, T, double*);
DG_INSTANTIATE_DENSE(float)
DG_INSTANTIATE_DENSE(double)
#undef DG_INSTANTIATE_DENSE

}  // namespace dg
