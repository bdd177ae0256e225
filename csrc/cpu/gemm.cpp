// GEMM: the blocked/packed driver, the portable micro-kernel and the naive reference.
// C (M,N) = alpha * op(A) (M,K) * op(B) (K,N) + beta * C, row-major.
//
// Large problems follow the BLIS/GotoBLAS structure: B is packed in KC x NC blocks (NR-wide
// panels), A in MC x KC blocks (MR-tall panels), and an MR x NR register-blocked micro-kernel
// sweeps the tiles. Threads split C into blocks (see gemm_driver). Small problems (dense layers
// of width 32..256) skip packing A: the micro-kernel reads it in place through its row/column
// strides, and B's rows too when B is small and not transposed, because packing would cost as
// much as the multiply itself.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>

#include "cpu/mid_fork.h"
#include "cpu/row_tiles.h"
#include "deepgrad/cpu_features.h"
#include "deepgrad/gemm.h"

namespace dg {
namespace {

// Cache blocking for Zen/Skylake-class cores (32-48 KiB L1d, >= 512 KiB L2): a KC x NR panel of
// B stays in L1 while the MC x KC block of A streams from L2; the KC x NC block of B sits in L3.
template <class T> struct Blocking;
template <> struct Blocking<float> { static constexpr index_t MC = 144, KC = 512, NC = 2048; };
template <> struct Blocking<double> { static constexpr index_t MC = 72, KC = 512, NC = 1024; };

// Problems up to kSmallWork multiply-adds (e.g. 32x512x512, 128x256x256) skip packing A: the
// micro-kernel reads it in place, and packing would cost as much as it saves. Measured on Zen 4.
constexpr index_t kSmallWork = index_t(1) << 23, kTinyWork = index_t(1) << 21;
// The most rows of an A^T B that gemm_at_panels takes in place of the packed path.
constexpr index_t kAtPanelsRows = 32;

// ---- scratch buffers: grown on demand, kept per calling thread --------------------------------
struct AlignedBuffer {
  void* p = nullptr;
  std::size_t bytes = 0;
  ~AlignedBuffer() { std::free(p); }
  void* get(std::size_t want) {
    if (want > bytes) {
      std::free(p);
      bytes = (want + 4095) & ~std::size_t(4095);
      p = std::aligned_alloc(64, bytes);
      if (!p) { bytes = 0; throw std::bad_alloc(); }
    }
    return p;
  }
};

template <class T>
T* scratch(int slot, std::size_t count) {
  thread_local AlignedBuffer bufs[2];  // 0: packed B, 1: packed A
  return static_cast<T*>(bufs[slot].get(count * sizeof(T)));
}

// ---- portable micro-kernel ----------------------------------------------------------------------
template <class T>
void ukernel_portable(index_t kc, const T* a, index_t rsa, index_t csa, const T* b, index_t rsb,
                      T* c, index_t ldc, T alpha, T beta, int m, int n) {
  constexpr int MR = GemmTile<T>::MR, NR = GemmTile<T>::NR;
  T acc[MR][NR] = {};
  const T* r[MR];
  for (int i = 0; i < MR; ++i) r[i] = a + (i < m ? i : 0) * rsa;
  for (index_t p = 0; p < kc; ++p) {
    const T* bp = b + p * rsb;
    for (int i = 0; i < MR; ++i) {
      const T av = r[i][p * csa];
      for (int j = 0; j < NR; ++j) acc[i][j] += av * bp[j];
    }
  }
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      T* cij = c + i * ldc + j;
      *cij = beta != T(0) ? alpha * acc[i][j] + beta * *cij : alpha * acc[i][j];
    }
}

// A micro-kernel and its tile width NR (MR = GemmTile<T>::MR = 6 for all of them).
template <class T>
struct Kernel {
  MicroKernel<T> fn;
  int nr;
};

template <class T>
Kernel<T> isa_kernel(GemmIsa isa) {
#ifdef DG_HAVE_AVX2_BUILD
  constexpr bool f32 = sizeof(T) == 4;
  if (isa == GemmIsa::avx512) {
    if constexpr (f32) return {&avx512::ukernel_f32, 32};
    else return {&avx512::ukernel_f64, 16};
  }
  if (isa == GemmIsa::avx2) {
    if constexpr (f32) return {&avx2::ukernel_f32, 16};
    else return {&avx2::ukernel_f64, 8};
  }
#endif
  return {&ukernel_portable<T>, GemmTile<T>::NR};
}

template <class T>
Kernel<T> best_kernel() {
  return isa_kernel<T>(gemm_best_isa());
}

// ---- packing ----------------------------------------------------------------------------------
// A block (mc, kc) with A(i,p) = a[i*rsa + p*csa] -> MR-tall panels, p-major, zero padded.
template <class T>
void pack_a(T* dst, const T* a, index_t rsa, index_t csa, index_t mc, index_t kc) {
  constexpr int MR = GemmTile<T>::MR;
  for (index_t ip = 0; ip * MR < mc; ++ip) {
    T* d = dst + ip * MR * kc;
    const index_t r0 = ip * MR;
    const int mr = static_cast<int>(std::min<index_t>(MR, mc - r0));
    if (csa == 1) {
      for (int i = 0; i < mr; ++i) {
        const T* s = a + (r0 + i) * rsa;
        for (index_t p = 0; p < kc; ++p) d[p * MR + i] = s[p];
      }
      for (int i = mr; i < MR; ++i)
        for (index_t p = 0; p < kc; ++p) d[p * MR + i] = T(0);
    } else {
      for (index_t p = 0; p < kc; ++p) {
        const T* s = a + p * csa + r0;
        for (int i = 0; i < mr; ++i) d[p * MR + i] = s[i];
        for (int i = mr; i < MR; ++i) d[p * MR + i] = T(0);
      }
    }
  }
}

// B block (kc, nc) with B(p,j) = b[p*rsb + j*csb] -> NR-wide panels, p-major, zero padded.
// Packs panels [jp0, npn) (the unpacked path packs only B's last, partial panel).
template <class T>
void pack_b(T* dst, const T* b, index_t rsb, index_t csb, index_t kc, index_t nc, int NR,
            index_t jp0 = 0) {
  for (index_t jp = jp0; jp * NR < nc; ++jp) {
    T* d = dst + jp * NR * kc;
    const index_t c0 = jp * NR;
    const int nr = static_cast<int>(std::min<index_t>(NR, nc - c0));
    if (csb == 1) {
      for (index_t p = 0; p < kc; ++p) {
        const T* s = b + p * rsb + c0;
        for (int j = 0; j < nr; ++j) d[p * NR + j] = s[j];
        for (int j = nr; j < NR; ++j) d[p * NR + j] = T(0);
      }
    } else {
      for (int j = 0; j < nr; ++j) {
        const T* s = b + (c0 + j) * csb;
        for (index_t p = 0; p < kc; ++p) d[p * NR + j] = s[p];
      }
      for (int j = nr; j < NR; ++j)
        for (index_t p = 0; p < kc; ++p) d[p * NR + j] = T(0);
    }
  }
}

inline void split(index_t total, int parts, int idx, index_t* lo, index_t* hi) {
  const index_t q = total / parts, r = total % parts;
  *lo = idx * q + std::min<index_t>(idx, r);
  *hi = *lo + q + (idx < r ? 1 : 0);
}

// C = beta * C (the K == 0 or alpha == 0 case).
template <class T>
void scale_c(T* c, index_t m, index_t n, index_t ldc, T beta) {
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) c[i * ldc + j] = beta != T(0) ? beta * c[i * ldc + j] : T(0);
}

// ---- the unpacked path ----------------------------------------------------------------------
// A is read in place through (rsa, csa); B in place when its rows are contiguous, except the last
// partial NR panel (and all of B when transposed), which is packed once up front.
template <class T>
void gemm_unpacked(const Kernel<T>& uk, T* c, const T* a, const T* b, index_t m, index_t n,
                   index_t k, index_t rsa, index_t csa, index_t ldb, index_t ldc, bool trans_b,
                   bool pack_all_b, T alpha, T beta) {
  constexpr int MR = GemmTile<T>::MR;
  const int NR = uk.nr;
  const index_t npm = (m + MR - 1) / MR, npn = (n + NR - 1) / NR;
  T* bp = nullptr;  // packed panels
  index_t first_packed = npn;
  if (trans_b || pack_all_b) {
    first_packed = 0;
    bp = scratch<T>(0, std::size_t(npn) * NR * k);
    if (trans_b) pack_b(bp, b, 1, ldb, k, n, NR);
    else pack_b(bp, b, ldb, 1, k, n, NR);
  } else if (n % NR) {
    first_packed = npn - 1;
    bp = scratch<T>(0, std::size_t(npn) * NR * k);
    pack_b(bp, b, ldb, 1, k, n, NR, first_packed);
  }
  for (index_t jp = 0; jp < npn; ++jp) {
    const bool packed = jp >= first_packed;
    const T* bj = packed ? bp + jp * NR * k : b + jp * NR;
    const index_t rsb = packed ? NR : ldb;
    const int nr = static_cast<int>(std::min<index_t>(NR, n - jp * NR));
    for (index_t ip = 0; ip < npm; ++ip) {
      const int mr = static_cast<int>(std::min<index_t>(MR, m - ip * MR));
      uk.fn(k, a + ip * MR * rsa, rsa, csa, bj, rsb, c + ip * MR * ldc + jp * NR, ldc, alpha, beta,
            mr, nr);
    }
  }
}

// ---- A^T B over many rows: B packed panel by panel into L1 -----------------------------------
// A weight gradient x^T dz over many rows with few columns of x (the input projection of a
// recurrent layer: K = T*B rows, M = 8-32 input features) on the small-problem path, B larger than
// 64 KiB. Packing all
// of B first (megabytes: it does not stay in L2) and then sweeping it once per row tile read B
// from memory three times for the few row tiles that use it. Here K goes in KC chunks, each
// chunk's NR-wide panel is packed into an L1 buffer and read there by every row tile, so B comes
// from memory once. The row tiles are row_tiles' (7-8 rows left go as 4 + 3 or 4 + 4: a 2-row tile
// runs the AVX2 kernel at half speed). gemm_packed sums K in the same KC chunks with the same
// micro-kernel: the results are its bits.
template <class T>
void gemm_at_panels(const Kernel<T>& uk, T* c, const T* a, const T* b, index_t m, index_t n,
                    index_t k, index_t lda, index_t ldb, index_t ldc, T alpha, T beta) {
  constexpr int MR = GemmTile<T>::MR;
  constexpr index_t KC = Blocking<T>::KC;
  const int NR = uk.nr;
  const index_t npn = (n + NR - 1) / NR;
  T* bp = scratch<T>(0, std::size_t(std::min(k, KC)) * NR);
  for (index_t p0 = 0; p0 < k; p0 += KC) {
    const index_t kc = std::min(KC, k - p0);
    const T beta_eff = p0 == 0 ? beta : T(1);
    for (index_t jp = 0; jp < npn; ++jp) {
      const int nr = static_cast<int>(std::min<index_t>(NR, n - jp * NR));
      pack_b(bp, b + p0 * ldb + jp * NR, ldb, 1, kc, nr, NR);
      cpu::row_tiles(0, m, MR, [&](index_t r, int mr) {
        uk.fn(kc, a + r + p0 * lda, 1, lda, bp, NR, c + r * ldc + jp * NR, ldc, alpha, beta_eff,
              mr, nr);
      });
    }
  }
}

// ---- the packed path ------------------------------------------------------------------------
template <class T>
void gemm_packed(const Kernel<T>& uk, T* c, const T* a, const T* b, index_t m, index_t n,
                 index_t k, index_t rsa, index_t csa, index_t rsb, index_t csb, index_t ldc,
                 T alpha, T beta) {
  constexpr int MR = GemmTile<T>::MR;
  const int NR = uk.nr;
  // The same blocks for the AVX-512 tiles: KC = 256 (so that their 128-byte-wide B panel fits
  // L1 like the AVX2 one) measured 5-10% slower at n = 1024-2048 on Zen 5, and KC = 512 keeps
  // the AVX2 and AVX-512 results bitwise equal.
  constexpr index_t MC = Blocking<T>::MC, KC = Blocking<T>::KC, NC = Blocking<T>::NC;
  const index_t kc_max = std::min(k, KC), nc_max = std::min(n, NC);
  T* bp = scratch<T>(0, std::size_t((nc_max + NR - 1) / NR) * NR * kc_max);
  T* ap = scratch<T>(1, std::size_t(MC) * kc_max);
  for (index_t jc = 0; jc < n; jc += NC) {
    const index_t nc = std::min(NC, n - jc), npn = (nc + NR - 1) / NR;
    for (index_t pc = 0; pc < k; pc += KC) {
      const index_t kc = std::min(KC, k - pc);
      const T beta_eff = pc == 0 ? beta : T(1);
      pack_b(bp, b + pc * rsb + jc * csb, rsb, csb, kc, nc, NR);
      for (index_t ic = 0; ic < m; ic += MC) {
        const index_t mc = std::min(MC, m - ic), npm = (mc + MR - 1) / MR;
        pack_a(ap, a + ic * rsa + pc * csa, rsa, csa, mc, kc);
        for (index_t jp = 0; jp < npn; ++jp) {
          const int nr = static_cast<int>(std::min<index_t>(NR, nc - jp * NR));
          const T* bj = bp + jp * NR * kc;
          for (index_t ip = 0; ip < npm; ++ip) {
            const int mr = static_cast<int>(std::min<index_t>(MR, mc - ip * MR));
            uk.fn(kc, ap + ip * MR * kc, 1, MR, bj, NR, c + (ic + ip * MR) * ldc + jc + jp * NR,
                  ldc, alpha, beta_eff, mr, nr);
          }
        }
      }
    }
  }
}

// One thread's GEMM: picks the unpacked or the packed path for this (sub)problem.
template <class T>
void gemm_serial(const Kernel<T>& uk, T* c, const T* a, const T* b, index_t m, index_t n,
                 index_t k, index_t lda, index_t ldb, index_t ldc, bool trans_a, bool trans_b,
                 T alpha, T beta) {
  const index_t rsa = trans_a ? 1 : lda, csa = trans_a ? lda : 1;
  const index_t work = m * n * k;
  const bool small = work <= kSmallWork && n * k <= (index_t(1) << 20);
  // A^T B with B over 64 KiB: on the small path (below), and in place of the packed path for A^T
  // of at most kAtPanelsRows rows, whose packed B block (KC x NC, up to 4 MiB) is read by only a
  // few row tiles; the same bits as the packed path (gemm_at_panels)
  if (trans_a && !trans_b && !small && m <= kAtPanelsRows &&
      n * k * index_t(sizeof(T)) > (64 << 10)) {
    gemm_at_panels(uk, c, a, b, m, n, k, lda, ldb, ldc, alpha, beta);
    return;
  }
  if (small) {
    // B is read in place only when its rows are contiguous and it fits in L1/L2 comfortably
    // (wide row strides alias in L1); otherwise its panels are packed once for all of M.
    const bool pack_all_b = trans_b || n * k * index_t(sizeof(T)) > (64 << 10) ||
                            (trans_a && work > kTinyWork);
    // (gemm_k_chunk in rnn_seq.cpp mirrors this choice; it depends on B's size only, not on the
    // work, so that a block of rows on another thread takes the same path)
    if (trans_a && !trans_b && n * k * index_t(sizeof(T)) > (64 << 10))
      gemm_at_panels(uk, c, a, b, m, n, k, lda, ldb, ldc, alpha, beta);
    else
      gemm_unpacked(uk, c, a, b, m, n, k, rsa, csa, ldb, ldc, trans_b, pack_all_b, alpha, beta);
  } else {
    const index_t rsb = trans_b ? 1 : ldb, csb = trans_b ? ldb : 1;
    gemm_packed(uk, c, a, b, m, n, k, rsa, csa, rsb, csb, ldc, alpha, beta);
  }
}

// Threads take disjoint blocks of C on a pm x pn grid and run independent serial GEMMs (each
// packs what it reads): no barriers, so a thread that the OS preempts delays only itself, and
// every element of C is computed by one thread in a fixed order. The grid minimises the
// duplicated packing pn*M + pm*N.
template <class T>
void gemm_driver(const Kernel<T>& uk, T* c, const T* a, const T* b, index_t m, index_t n, index_t k,
                 index_t lda, index_t ldb, index_t ldc, bool trans_a, bool trans_b, T alpha,
                 T beta, bool may_fork) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == T(0)) {
    scale_c(c, m, n, ldc, beta);
    return;
  }
  constexpr int MR = GemmTile<T>::MR;
  const int NR = uk.nr;
  // Fork from ~2M multiply-adds (e.g. 128x128x128, ~40 us on one core at ~50 G multiply-adds/s):
  // a fork and join costs a few us on an idle machine, but a whole scheduler time slice when a
  // team thread is preempted on a busy one, so small layers stay on the calling thread.
  int nt = may_fork ? threads_for(m * n * k / 64) : 1;
  const index_t npm = (m + MR - 1) / MR, npn = (n + NR - 1) / NR;
  if (nt > npm * npn) nt = static_cast<int>(npm * npn);
  if (nt <= 1) {
    // Mid-size (0.5M-4M multiply-adds, e.g. a recurrent layer's per-step h W_hh): one fork
    // with the backoff of cpu/mid_fork.h, each thread a block of rows (or of columns when
    // there are too few row tiles), whole tiles, so every element is computed as on one thread.
    const int nmid = may_fork ? cpu::mid_fork_threads(m * n * k) : 0;
    if (nmid > 1 && cpu::mid_fork_allowed()) {
      const bool by_rows = npm >= nmid;
      cpu::fork_team(nmid, [&](int t, int nteam) {
        index_t lo, hi;
        cpu::split_units(by_rows ? m : n, nteam, t, by_rows ? MR : NR, &lo, &hi);
        if (hi <= lo) return;
        if (by_rows)
          gemm_serial(uk, c + lo * ldc, trans_a ? a + lo : a + lo * lda, b, hi - lo, n, k, lda,
                      ldb, ldc, trans_a, trans_b, alpha, beta);
        else
          gemm_serial(uk, c + lo, a, trans_b ? b + lo * ldb : b + lo, m, hi - lo, k, lda, ldb,
                      ldc, trans_a, trans_b, alpha, beta);
      });
      return;
    }
    gemm_serial(uk, c, a, b, m, n, k, lda, ldb, ldc, trans_a, trans_b, alpha, beta);
    return;
  }
  int pm = 0, pn = 0;
  index_t best = -1;
  for (int d = 1; d <= nt; ++d) {  // d column blocks, nt/d row blocks
    const int q = nt / d;
    if (nt % d || q > npm || d > npn) continue;
    const index_t cost = d * m + q * n;
    if (best < 0 || cost < best) best = cost, pm = q, pn = d;
  }
  if (best < 0) {  // no exact grid (few tiles): use fewer threads
    pm = static_cast<int>(std::min<index_t>(nt, npm));
    pn = static_cast<int>(std::min<index_t>(nt / pm, npn));
    nt = pm * pn;
  }
#ifdef DG_HAVE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(static, 1)
#endif
  for (int t = 0; t < nt; ++t) {
    index_t i0, i1, j0, j1;
    split(npm, pm, t / pn, &i0, &i1);
    split(npn, pn, t % pn, &j0, &j1);
    i0 *= MR, j0 *= NR;
    i1 = std::min(m, i1 * MR), j1 = std::min(n, j1 * NR);
    if (i1 <= i0 || j1 <= j0) continue;
    const T* at = trans_a ? a + i0 : a + i0 * lda;
    const T* bt = trans_b ? b + j0 * ldb : b + j0;
    gemm_serial(uk, c + i0 * ldc + j0, at, bt, i1 - i0, j1 - j0, k, lda, ldb, ldc, trans_a,
                trans_b, alpha, beta);
  }
}

}  // namespace

template <class T>
void gemm(T* c, const T* a, const T* b, index_t m, index_t n, index_t k, index_t lda, index_t ldb,
          index_t ldc, bool trans_a, bool trans_b, T alpha, T beta) {
  static const Kernel<T> uk = best_kernel<T>();
  gemm_driver(uk, c, a, b, m, n, k, lda, ldb, ldc, trans_a, trans_b, alpha, beta, true);
}

template <class T>
void gemm_this_thread(T* c, const T* a, const T* b, index_t m, index_t n, index_t k, index_t lda,
                      index_t ldb, index_t ldc, bool trans_a, bool trans_b, T alpha, T beta) {
  static const Kernel<T> uk = best_kernel<T>();
  gemm_driver(uk, c, a, b, m, n, k, lda, ldb, ldc, trans_a, trans_b, alpha, beta, false);
}

template <class T>
void gemm_portable(T* c, const T* a, const T* b, index_t m, index_t n, index_t k, index_t lda,
                   index_t ldb, index_t ldc, bool trans_a, bool trans_b, T alpha, T beta) {
  gemm_with_isa(GemmIsa::portable, c, a, b, m, n, k, lda, ldb, ldc, trans_a, trans_b, alpha,
                beta);
}

bool gemm_isa_available(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::portable: return true;
    case GemmIsa::avx2: return cpu_has_avx2_fma();
    case GemmIsa::avx512: return cpu_has_avx2_fma() && cpu_has_avx512f();
  }
  return false;
}

GemmIsa gemm_best_isa() {
  static const GemmIsa best = gemm_isa_available(GemmIsa::avx512) ? GemmIsa::avx512
                              : gemm_isa_available(GemmIsa::avx2) ? GemmIsa::avx2
                                                                  : GemmIsa::portable;
  return best;
}

template <class T>
void gemm_with_isa(GemmIsa isa, T* c, const T* a, const T* b, index_t m, index_t n, index_t k,
                   index_t lda, index_t ldb, index_t ldc, bool trans_a, bool trans_b, T alpha,
                   T beta) {
  gemm_driver(isa_kernel<T>(gemm_isa_available(isa) ? isa : GemmIsa::portable), c, a, b, m, n, k,
              lda, ldb, ldc, trans_a, trans_b, alpha, beta, true);
}

template <class T>
void gemm_naive(T* c, const T* a, const T* b, index_t m, index_t n, index_t k, index_t lda,
                index_t ldb, index_t ldc, bool trans_a, bool trans_b, T alpha, T beta) {
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      T acc = T(0);
      for (index_t p = 0; p < k; ++p) {
        const T av = trans_a ? a[p * lda + i] : a[i * lda + p];
        const T bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
        acc += av * bv;
      }
      T* cij = c + i * ldc + j;
      *cij = beta != T(0) ? alpha * acc + beta * *cij : alpha * acc;
    }
}

namespace {
// The probe's loop without AVX2: 12 scalar chains (the portable micro-kernel's best case).
float fma_probe_scalar(index_t iters) {
  float acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = 0.001f * float(j);
  for (index_t it = 0; it < iters; ++it)
    for (int j = 0; j < 12; ++j) acc[j] = acc[j] * 0.999f + 0.001f;
  float s = 0;
  for (int j = 0; j < 12; ++j) s += acc[j];
  return s;
}
}  // namespace

void fma_peak_probe(GemmIsa isa, index_t iters, int threads, double* flops, double* seconds) {
  float (*probe)(index_t) = &fma_probe_scalar;
  int lanes = 1;
#ifdef DG_HAVE_AVX2_BUILD
  if (isa == GemmIsa::avx512 && gemm_isa_available(isa)) probe = &avx512::fma_probe_f32, lanes = 16;
  else if (isa != GemmIsa::portable && cpu_has_avx2_fma()) probe = &avx2::fma_probe_f32, lanes = 8;
#endif
  volatile float sink = 0;  // keeps the chains' results alive
  const auto t0 = std::chrono::steady_clock::now();
#ifdef DG_HAVE_OPENMP
#pragma omp parallel num_threads(threads)
  {
    const float r = probe(iters);
#pragma omp atomic
    sink += r;
  }
#else
  threads = 1;
  sink = probe(iters);
#endif
  *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  *flops = 2.0 * 12 * lanes * double(iters) * threads;
}

#define DG_INSTANTIATE_GEMM(T)                                                                  \
  template void gemm<T>(T*, const T*, const T*, index_t, index_t, index_t, index_t, index_t,    \
                        index_t, bool, bool, T, T);                                             \
  template void gemm_this_thread<T>(T*, const T*, const T*, index_t, index_t, index_t, index_t, \
                                    index_t, index_t, bool, bool, T, T);                        \
  template void gemm_portable<T>(T*, const T*, const T*, index_t, index_t, index_t, index_t,    \
                                 index_t, index_t, bool, bool, T, T);                           \
  template void gemm_naive<T>(T*, const T*, const T*, index_t, index_t, index_t, index_t,       \
                              index_t, index_t, bool, bool, T, T);                              \
  template void gemm_with_isa<T>(GemmIsa, T*, const T*, const T*, index_t, index_t, index_t,    \
                                 index_t, index_t, index_t, bool, bool, T, T);
DG_INSTANTIATE_GEMM(float)
DG_INSTANTIATE_GEMM(double)
#undef DG_INSTANTIATE_GEMM

}  // namespace dg
