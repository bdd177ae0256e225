// Whole RNN / GRU / LSTM sequences in one native call each way: the recurrent layers' tape node
// on the CPU.
//
// The fast path (lstm/rnn/gru_sequence_forward/backward) packs W_hh once per sequence into the
// GEMM micro-kernel's NR-wide panels (W for the forward, W^T for the backward), and then runs
// each step as one pass over the rows of a chain (a block of up to 32 batch rows): the recurrent
// product (h_{t-1} W, or d(pre-activations) W^T) panel by panel over the chain's micro-kernel row
// tiles into a small buffer that stays in L1/L2, and at once the chain's gate arithmetic (the
// fused LSTM/GRU cell or the activation). Batch rows are independent through the whole
// recurrence, so threads claim chains one at a time and run every step of each: one fork per
// sequence and no barrier between steps (see Chains). Nothing is allocated per step. The input
// projection of all steps (x W_ih + b) is one GEMM before the forward (the caller's dense op),
// and dW_hh one GEMM over all T*B rows after the backward.
//
// The reference path (*_stepwise, the previous implementation and the fallback without AVX2/FMA)
// runs per step one gemm() call, which packs W again every step, and the cell kernel over the
// whole batch. Both paths give every element the same operations in the same order: the fast
// path sums K in the chunks gemm() on one thread uses (see gemm_k_chunk), so results match the
// reference bit for bit wherever gemm() is unchanged, on any number of threads.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "cpu/avx2/vec512.h"
#endif

#include "cpu/mid_fork.h"
#include "cpu/row_tiles.h"
#include "deepgrad/cpu_features.h"
#include "deepgrad/gemm.h"
#include "deepgrad/kernels.h"
#include "deepgrad/rnn.h"
#ifdef DG_HAVE_OPENMP
#include <omp.h>
#endif

namespace dg::cpu {
namespace {

// dh (B, H) = gy[:, t, :] (gy (B, ld/H, H)) + dhn, and ||dh|| into norms[t] (NaN if not finite).
template <class T>
void total_dh(T* dh, const T* gy, const T* dhn, index_t B, index_t H, index_t ld, index_t t,
              double* norms) {
  double ss = 0.0;
  for (index_t b = 0; b < B; ++b) {
    const T* g = gy + b * ld + t * H;
    const T* n = dhn + b * H;
    T* d = dh + b * H;
    for (index_t j = 0; j < H; ++j) {
      d[j] = g[j] + n[j];
      ss += double(d[j]) * double(d[j]);
    }
  }
  if (norms) norms[t] = std::isfinite(ss) ? std::sqrt(ss) : std::nan("");
}

// out (C) = the column sums of x (R, C), rows added in order (the same bits on every path)
template <class T>
void col_sums(T* out, const T* x, index_t R, index_t C) {
  for (index_t j = 0; j < C; ++j) out[j] = T(0);
  for (index_t r = 0; r < R; ++r) {
    const T* row = x + r * C;
    for (index_t j = 0; j < C; ++j) out[j] += row[j];
  }
}

// y (B, T, H) batch-first from hs[1..T] (time-major (T+1, B, H)); ld is y's row stride.
template <class T>
void batch_first(T* y, const T* hs, index_t B, index_t steps, index_t H, index_t ld) {
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < steps; ++t)
      std::memcpy(y + b * ld + t * H, hs + (t + 1) * B * H + b * H, sizeof(T) * H);
}

// ---- the fast path's pieces --------------------------------------------------------------------

// ---- an AVX-512 micro-kernel for the recurrent products -----------------------------------
// Same contract as gemm.h's MicroKernel (C tile = alpha * sum_p A(i,p) B(p,j) + beta * C), on
// R x 32 float (R x 16 double) tiles of two zmm vectors per row. Each element of C is one FMA
// chain over p from zero, then alpha * acc and beta * C added as in gemm.h's AVX2 kernel, so the
// two kernels give the same bits; on cores with full-width AVX-512 units (Zen 5) it does twice
// the multiply-adds per cycle. Rows past m are not computed (R = m); columns past n are masked.
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(_M_X64))
#define DG_RNN_AVX512 1
#define DG_TARGET_AVX512 __attribute__((target("avx512f")))

// the 512-bit vector wrapper the GEMM's AVX-512 micro-kernels use (cpu/avx2/vec512.h)
template <class T>
using Z = avx512::Vec512<T>;

template <class T, int R>
DG_TARGET_AVX512 void tile_avx512(index_t kc, const T* a, index_t rsa, index_t csa, const T* b,
                                  index_t rsb, T* c, index_t ldc, T alpha, T beta, int n) {
  using S = Z<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  V acc[R][2];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = S::zero();
  index_t off = 0;
#pragma GCC unroll 2
  for (index_t p = 0; p < kc; ++p) {
    const V b0 = S::load(b), b1 = S::load(b + W);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const V av = S::set1(a[i * rsa + off]);
      acc[i][0] = S::fma(av, b0, acc[i][0]);
      acc[i][1] = S::fma(av, b1, acc[i][1]);
    }
    b += rsb;
    off += csa;
  }
  const V va = S::set1(alpha), vb = S::set1(beta);
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    T* ci = c + i * ldc;
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const int cols = n - h * W;
      if (cols <= 0) break;
      V v = S::mul(va, acc[i][h]);
      if (cols >= W) {
        if (beta != T(0)) v = S::fma(vb, S::load(ci + h * W), v);
        S::store(ci + h * W, v);
      } else {
        if (beta != T(0)) v = S::fma(vb, S::load_n(ci + h * W, cols), v);
        S::store_n(ci + h * W, v, cols);
      }
    }
  }
}

template <class T>
void ukernel_avx512(index_t kc, const T* a, index_t rsa, index_t csa, const T* b, index_t rsb,
                    T* c, index_t ldc, T alpha, T beta, int m, int n) {
  switch (m) {
#define DG_TILE_CASE(R) \
  case R: return tile_avx512<T, R>(kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta, n);
    DG_TILE_CASE(1) DG_TILE_CASE(2) DG_TILE_CASE(3) DG_TILE_CASE(4)
    DG_TILE_CASE(5) DG_TILE_CASE(6) DG_TILE_CASE(7) DG_TILE_CASE(8)
#undef DG_TILE_CASE
  }
}

#endif

// The fast path's micro-kernel: its tile width nr (W_hh's panels) and height mr.
template <class T>
struct Kernel {
  MicroKernel<T> uk = nullptr;  // null: no fast kernel on this CPU (the stepwise path runs)
  int nr = 0, mr = 0;
};

template <class T>
Kernel<T> fast_kernel() {
#ifdef DG_RNN_AVX512
  if (rnn_use_avx512())
    return {&ukernel_avx512<T>, 2 * Z<T>::W, 8};
#endif
#ifdef DG_HAVE_AVX2_BUILD
  if (cpu_has_avx2_fma()) {
    if constexpr (std::is_same_v<T, float>) return {&avx2::ukernel_f32, GemmTile<T>::NR, 6};
    else return {&avx2::ukernel_f64, GemmTile<T>::NR, 6};
  }
#endif
  return {};
}

// The chunks along K in which gemm() on one thread sums an (m, n, k) product: all of K at once on
// its small-problem path (m n k <= 2^23 and n k <= 2^20), else blocks of its KC = 512, each added
// to C in turn; an A^T B (trans_a, B not transposed) on the small path goes in KC blocks too when
// B is larger than 64 KiB (gemm.cpp's gemm_at_panels).
// The fast path sums in the same chunks, so its results equal the reference's.
template <class T>
inline index_t gemm_k_chunk(index_t m, index_t n, index_t k, bool trans_a = false) {
  const bool small = m * n * k <= (index_t(1) << 23) && n * k <= (index_t(1) << 20);
  const bool at_panels = trans_a && n * k * index_t(sizeof(T)) > (64 << 10);
  return small && !at_panels ? k : index_t(512);
}

// B (K, N) with B(p, j) = b[p * rs + j * cs] -> nr-wide panels [jp0, jp1), p-major, zero padded
// (the micro-kernel reads nr values per p): panel jp at dst + jp * nr * K.
template <class T>
void pack_panels(T* dst, const T* b, index_t rs, index_t cs, index_t K, index_t N, int nr,
                 index_t jp0, index_t jp1) {
  for (index_t jp = jp0; jp < jp1; ++jp) {
    T* d = dst + jp * nr * K;
    const index_t j0 = jp * nr;
    const int n = static_cast<int>(std::min<index_t>(nr, N - j0));
    if (cs == 1 && n == nr) {  // whole rows of the panel: plain copies
      for (index_t p = 0; p < K; ++p) std::memcpy(d + p * nr, b + p * rs + j0, sizeof(T) * nr);
    } else if (cs == 1) {
      for (index_t p = 0; p < K; ++p) {
        const T* s = b + p * rs + j0;
        for (int j = 0; j < n; ++j) d[p * nr + j] = s[j];
        for (int j = n; j < nr; ++j) d[p * nr + j] = T(0);
      }
    } else {
      for (int j = 0; j < n; ++j) {
        const T* s = b + (j0 + j) * cs;
        for (index_t p = 0; p < K; ++p) d[p * nr + j] = s[p * rs];
      }
      for (int j = n; j < nr; ++j)
        for (index_t p = 0; p < K; ++p) d[p * nr + j] = T(0);
    }
  }
}

// W packed once per sequence: (K, N) = W (W stored (K, N)) or W^T (W stored (N, K)).
template <class T>
struct Panels {
  std::vector<T> buf;
  const T* b;
  index_t rs, cs, K, N;
  int nr;
  index_t npn;
  Panels(const T* w, index_t K_, index_t N_, bool transposed, int nr_)
      : b(w), rs(transposed ? 1 : N_), cs(transposed ? K_ : 1), K(K_), N(N_), nr(nr_),
        npn((N_ + nr_ - 1) / nr_) {
    buf.resize(static_cast<size_t>(npn * nr * K));
  }
  void pack(index_t jp) { pack_panels(buf.data(), b, rs, cs, K, N, nr, jp, jp + 1); }
};

constexpr int kTileRows = 8;  // the most rows row_tiles hands out

// body(t, n) on a team of nt threads (t = 0 is the caller).
template <class F>
void team(int nt, F&& body) {
#ifdef DG_HAVE_OPENMP
  if (nt > 1) {
#pragma omp parallel num_threads(nt)
    body(omp_get_thread_num(), omp_get_num_threads());
    return;
  }
#endif
  body(0, 1);
}

// C rows [0, m) (row stride ldc) = beta C + A rows (row stride lda) . B from its packed panels:
// panel by panel, each panel's K x nr block read by every row tile of the block in turn (it stays
// in L1 between them; W_hh itself may not fit in L2). Each tile sums K in chunks of kc (from the
// second chunk on, added to C), so each element gets the operations of gemm() on one thread.
template <class T>
void block_times(const Kernel<T>& kn, T* c, index_t ldc, const T* a, index_t lda, index_t m,
                 const Panels<T>& bp, index_t kc, T beta) {
  const index_t K = bp.K, N = bp.N;
  const int nr = bp.nr;
  for (index_t jp = 0; jp < bp.npn; ++jp) {
    const int n = static_cast<int>(std::min<index_t>(nr, N - jp * nr));
    const T* bj = bp.buf.data() + jp * nr * K;
    row_tiles(0, m, kn.mr, [&](index_t r, int mr) {
      for (index_t p0 = 0; p0 < K; p0 += kc)
        kn.uk(std::min(kc, K - p0), a + r * lda + p0, lda, 1, bj + p0 * nr, nr,
              c + r * ldc + jp * nr, ldc, T(1), p0 == 0 ? beta : T(1), mr, n);
    });
  }
}

inline void spin_pause() {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_pause();
#endif
}

// The batch cut into chains: blocks of consecutive rows, each run through every step of the
// sequence by one thread (rows are independent through the whole recurrence). Threads claim
// chains one at a time from a shared counter, so a thread that gets less CPU (another process
// on its core, a late start) takes fewer chains instead of holding up the others at the join;
// with one static block of rows per thread (the previous split) the whole sequence waited for
// its slowest thread. A chain's step runs its row tiles panel by panel (block_times), so each
// W_hh panel comes from L2 once per chain and step and from L1 for the chain's other tiles:
// chains hold up to 32 rows on one thread, 16 on a team (more chains to balance). A team gets
// at most one thread per chain, and at least min(threads, B / 4) chains are made so that small
// batches still split.
//
// When a team still loses to one thread (a team thread waits for a CPU that another process
// holds, and the calling thread waited for it longer than its chains saved) twice in a row,
// sequence calls (forward, backward, weight gradient) run on the calling thread for a while
// (a single loss is often a worker's slow wake-up after an idle spell): 25 ms at first,
// twice as long after each further loss (up to 0.4 s), as the mid-size fork's backoff
// (cpu/mid_fork.h) does for per-step GEMMs; while that backoff keeps mid-size forks on one
// thread, the sequences stay on it too. The backoff counts time, not calls: sequence calls take
// 0.1-20 ms, and a count long enough to amortize a loss at one size kept another size on one
// thread for seconds after the machine was idle again. With another busy process on a 2-vCPU
// VM, one losing team costs about a scheduler slice (~10 ms, libgomp's spinning join); RNN
// (64, 50, 64) forward + backward on 2 threads: 10-45 ms per call without the backoff, 0.3 ms
// with it (0.27 ms idle).
class SequenceBackoff {
 public:
  using clock = std::chrono::steady_clock;
  bool allow() const {
    return clock::now().time_since_epoch().count() >= until_.load(std::memory_order_relaxed);
  }
  // The calling thread's view of one team run: waited_s, its time waiting (from the fork until
  // it runs, for W's panels other threads claimed, and at the join); saved_s, the chains the
  // other threads ran, at its own time per chain. Lost: the waits exceeded what the team saved,
  // and 300 us (on an idle VM the join's jitter stays below ~0.1 ms).
  void report(double waited_s, double saved_s) {
    if (!seen_.exchange(true, std::memory_order_relaxed)) return;  // the first fork starts the pool
    if (waited_s > saved_s && waited_s > 300e-6) {
      // one loss alone (a worker's slow wake-up after an idle spell) does not start a window
      if (streak_.fetch_add(1, std::memory_order_relaxed) < 1) return;
      streak_.store(0, std::memory_order_relaxed);
      const double len = len_.load(std::memory_order_relaxed);
      until_.store(clock::now().time_since_epoch().count() +
                       std::chrono::duration_cast<clock::duration>(
                           std::chrono::duration<double>(len)).count(),
                   std::memory_order_relaxed);
      len_.store(std::min(2 * len, kMax), std::memory_order_relaxed);
    } else {
      streak_.store(0, std::memory_order_relaxed);
      len_.store(kMin, std::memory_order_relaxed);
    }
  }

 private:
  static constexpr double kMin = 0.025, kMax = 0.4;  // seconds on one thread after two losses
  std::atomic<int> streak_{0};
  std::atomic<clock::rep> until_{0};
  std::atomic<double> len_{kMin};
  std::atomic<bool> seen_{false};
};
inline SequenceBackoff g_seq_backoff;

// Team size for `macs` multiply-adds that can use up to `units` threads: as gemm() would fork
// for them, and 1 while either backoff holds.
inline int sequence_threads(index_t macs, index_t units) {
  const int want = static_cast<int>(std::min<index_t>(threads_for(macs / 64), units));
  if (want <= 1) return 1;
  return g_seq_backoff.allow() && mid_fork_allowed() ? want : 1;
}

template <class T>
struct Chains {
  std::vector<index_t> bounds;  // chain c: rows [bounds[c], bounds[c + 1])
  int nt = 1;
  index_t rows = 0;  // the most rows of a chain
  // `macs`: the multiply-adds of the whole sequence.
  Chains(index_t B, index_t macs) {
    const int want = threads_for(macs / 64);
    const index_t most = want > 1 ? 16 : 32;
    index_t nch = (B + most - 1) / most;
    nch = std::max<index_t>(nch, std::min<index_t>(want, B / 4));
    nt = nch > 1 ? sequence_threads(macs, nch) : 1;
    for (index_t c = 0; c < nch; ++c) {
      index_t lo, hi;
      split_units(B, static_cast<int>(nch), static_cast<int>(c), 1, &lo, &hi);
      bounds.push_back(lo);
      rows = std::max(rows, hi - lo);
    }
    bounds.push_back(B);
  }
  // Packs W's panels (claimed one at a time; every thread waits until all are packed, without a
  // barrier that a late thread would hold), then chain(t, r0, r1) for every chain.
  template <class F>
  void run(Panels<T>& wp, F&& chain) const {
    std::atomic<index_t> next_panel{0}, packed{0}, next_chain{0};
    const index_t nch = static_cast<index_t>(bounds.size()) - 1;
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    clock::time_point t_start, t_wait, t_packed, t_own;  // the calling thread's
    index_t done = 0;
    team(nt, [&](int t, int) {
      if (t == 0) t_start = clock::now();
      for (index_t jp; (jp = next_panel.fetch_add(1, std::memory_order_relaxed)) < wp.npn;) {
        wp.pack(jp);
        packed.fetch_add(1, std::memory_order_release);
      }
      if (t == 0) t_wait = clock::now();
      while (packed.load(std::memory_order_acquire) < wp.npn) spin_pause();
      if (t == 0) t_packed = clock::now();
      for (index_t c; (c = next_chain.fetch_add(1, std::memory_order_relaxed)) < nch;) {
        chain(t, bounds[c], bounds[c + 1]);
        if (t == 0) ++done;
      }
      if (t == 0) t_own = clock::now();
    });
    if (nt > 1) {
      const auto t_end = clock::now();
      auto sec = [](clock::duration d) { return std::chrono::duration<double>(d).count(); };
      // done == 0: the other threads ran everything while this one waited (it was not
      // scheduled at the fork), nothing was saved
      const double saved = done > 0 ? sec(t_own - t_packed) / done * (nch - done) : 0.0;
      g_seq_backoff.report(sec(t_start - t0) + sec(t_packed - t_wait) + sec(t_end - t_own), saved);
    }
  }
};

// dW (M, N) = A^T D over all T*B rows: A stored (K, M) (hs[0 .. T-1]), D (K, N) (the gate
// gradients), overwritten. The weight gradient's one GEMM per sequence, on the fast path's
// micro-kernel. K is summed in gemm_k_chunk's chunks exactly as gemm() on one thread sums it,
// so dW is the same as from gemm(). The micro-kernel reads A^T straight from hs (a row tile's
// mr values of one p are adjacent; a packed copy of A, a transposing pass over all of hs, cost
// more than it saved: LSTM (128, 20, 256) fused forward + backward -5% without it); threads take
// blocks of D's panels and pack each (chunk, panel) block of D once.
template <class T>
void weight_grad(const Kernel<T>& kn, T* c, const T* a, const T* d, index_t M, index_t N,
                 index_t K) {
  const index_t kc = gemm_k_chunk<T>(M, N, K, true);
  const int nr = kn.nr;
  const index_t npn = (N + nr - 1) / nr;
  const int nt = sequence_threads(M * N * K, npn);
  const index_t kb = std::min(kc, K);
  std::vector<T> dbuf(static_cast<size_t>(nt * kb * nr));
  team(nt, [&](int t, int n) {
    index_t lo, hi;
    split_units(npn, n, t, 1, &lo, &hi);
    T* db = dbuf.data() + t * kb * nr;
    for (index_t p0 = 0; p0 < K; p0 += kc) {
      const index_t k = std::min(kc, K - p0);
      for (index_t jp = lo; jp < hi; ++jp) {
        const int ncols = static_cast<int>(std::min<index_t>(nr, N - jp * nr));
        pack_panels(db, d + p0 * N + jp * nr, N, index_t(1), k, index_t(ncols), nr, 0, 1);
        row_tiles(0, M, kn.mr, [&](index_t r, int mr) {
          kn.uk(k, a + p0 * M + r, 1, M, db, nr, c + r * N + jp * nr, N, T(1),
                p0 == 0 ? T(0) : T(1), mr, ncols);
        });
      }
    }
  });
}

// dh rows (mr, H) = gy[b, t, :] + dhn[b] for b in [r, r + mr) (gy row stride ld); with ss, the
// sum of squares of each dh row into ss[b] (in double).
template <class T>
void tile_dh(T* dh, const T* gy, const T* dhn, index_t r, int mr, index_t H, index_t ld,
             index_t t, double* ss) {
  for (int i = 0; i < mr; ++i) {
    const T* g = gy + (r + i) * ld + t * H;
    const T* n = dhn + (r + i) * H;
    T* d = dh + i * H;
    for (index_t j = 0; j < H; ++j) d[j] = g[j] + n[j];
    if (ss) {
      double s = 0.0;
      for (index_t j = 0; j < H; ++j) s += double(d[j]) * double(d[j]);
      ss[r + i] = s;
    }
  }
}

// norms[t] = ||dL/dh_t|| from the per-row sums of squares ss (steps, B), rows added in order.
inline void norms_from_rows(double* norms, const std::vector<double>& ss, index_t B,
                            index_t steps) {
  for (index_t t = 0; t < steps; ++t) {
    double s = 0.0;
    for (index_t b = 0; b < B; ++b) s += ss[t * B + b];
    norms[t] = std::isfinite(s) ? std::sqrt(s) : std::nan("");
  }
}

}  // namespace

// ---- reference: one gemm() call and one cell kernel call per step ---------------------------

template <class T>
void lstm_sequence_forward_stepwise(T* y, T* hs, T* cs, T* acts, const T* xw, const T* w,
                                    index_t B, index_t steps, index_t H) {
  const index_t G = 4 * H, BH = B * H;
  std::vector<T> gates(static_cast<size_t>(B * G));
  for (index_t t = 0; t < steps; ++t) {
    std::memcpy(gates.data(), xw + t * B * G, sizeof(T) * B * G);
    gemm<T>(gates.data(), hs + t * BH, w, B, G, H, H, G, G, false, false, T(1), T(1));
    lstm_cell_forward<T>(hs + (t + 1) * BH, cs + (t + 1) * BH, acts + t * B * G, gates.data(),
                         cs + t * BH, B, H);
  }
  // y (B, T+1, H): h_1 .. h_T, then c_T
  const index_t ld = (steps + 1) * H;
  batch_first(y, hs, B, steps, H, ld);
  for (index_t b = 0; b < B; ++b)
    std::memcpy(y + b * ld + steps * H, cs + steps * BH + b * H, sizeof(T) * H);
}

template <class T>
void lstm_sequence_backward_stepwise(T* dxw, T* dw, T* dh0, T* dc0, double* norms, const T* gy,
                                     const T* hs, const T* cs, const T* acts, const T* w,
                                     index_t B, index_t steps, index_t H) {
  const index_t G = 4 * H, BH = B * H, ld = (steps + 1) * H;
  std::vector<T> dh(static_cast<size_t>(BH)), dc(static_cast<size_t>(BH)),
      dcp(static_cast<size_t>(BH)), dhn(static_cast<size_t>(BH), T(0));
  for (index_t b = 0; b < B; ++b)  // dL/dc_T
    std::memcpy(dc.data() + b * H, gy + b * ld + steps * H, sizeof(T) * H);
  for (index_t t = steps - 1; t >= 0; --t) {
    total_dh(dh.data(), gy, dhn.data(), B, H, ld, t, norms);  // output at t + step t + 1
    T* dg = dxw + t * B * G;
    lstm_cell_backward<T>(dg, dcp.data(), dh.data(), dc.data(), cs + t * BH, cs + (t + 1) * BH,
                          acts + t * B * G, B, H);
    gemm<T>(dhn.data(), dg, w, B, H, G, G, G, H, false, true, T(1), T(0));  // dgates W^T
    dc.swap(dcp);
  }
  // dW = sum_t h_{t-1}^T dgates_t: hs[0 .. T-1] as one (T*B, H) matrix
  gemm<T>(dw, hs, dxw, H, G, steps * B, H, G, G, true, false, T(1), T(0));
  std::memcpy(dh0, dhn.data(), sizeof(T) * BH);
  std::memcpy(dc0, dc.data(), sizeof(T) * BH);
}

template <class T>
void rnn_sequence_forward_stepwise(T* y, T* hs, T* zs, const T* xw, const T* w, index_t B,
                                   index_t steps, index_t H, Act act) {
  const index_t BH = B * H;
  for (index_t t = 0; t < steps; ++t) {
    T* z = zs + t * BH;
    std::memcpy(z, xw + t * BH, sizeof(T) * BH);
    gemm<T>(z, hs + t * BH, w, B, H, H, H, H, H, false, false, T(1), T(1));
    act_forward<T>(hs + (t + 1) * BH, z, BH, act, T(0.01));
  }
  batch_first(y, hs, B, steps, H, steps * H);
}

template <class T>
void rnn_sequence_backward_stepwise(T* dxw, T* dw, T* dh0, double* norms, const T* gy,
                                    const T* hs, const T* zs, const T* w, index_t B,
                                    index_t steps, index_t H, Act act) {
  const index_t BH = B * H;
  std::vector<T> dh(static_cast<size_t>(BH)), dhn(static_cast<size_t>(BH), T(0));
  for (index_t t = steps - 1; t >= 0; --t) {
    total_dh(dh.data(), gy, dhn.data(), B, H, steps * H, t, norms);
    T* dz = dxw + t * BH;
    act_backward<T>(dz, dh.data(), zs + t * BH, hs + (t + 1) * BH, BH, act, T(0.01));
    gemm<T>(dhn.data(), dz, w, B, H, H, H, H, H, false, true, T(1), T(0));  // dz W^T
  }
  gemm<T>(dw, hs, dxw, H, H, steps * B, H, H, H, true, false, T(1), T(0));
  std::memcpy(dh0, dhn.data(), sizeof(T) * BH);
}

template <class T>
void gru_sequence_forward_stepwise(T* y, T* hs, T* acts, const T* xw, const T* w, const T* bh,
                                   index_t B, index_t steps, index_t H) {
  const index_t G = 3 * H, BH = B * H;
  std::vector<T> hg(static_cast<size_t>(B * G));
  for (index_t t = 0; t < steps; ++t) {
    for (index_t b = 0; b < B; ++b)  // hg = b_hh, then += h_{t-1} W
      if (bh) std::memcpy(hg.data() + b * G, bh, sizeof(T) * G);
    gemm<T>(hg.data(), hs + t * BH, w, B, G, H, H, G, G, false, false, T(1), bh ? T(1) : T(0));
    gru_cell_forward<T>(hs + (t + 1) * BH, acts + t * B * 4 * H, xw + t * B * G, hg.data(),
                        hs + t * BH, B, H);
  }
  batch_first(y, hs, B, steps, H, steps * H);
}

template <class T>
void gru_sequence_backward_stepwise(T* dxw, T* dw, T* dbh, T* dh0, double* norms, const T* gy,
                                    const T* hs, const T* acts, const T* w, index_t B,
                                    index_t steps, index_t H) {
  const index_t G = 3 * H, BH = B * H;
  std::vector<T> dh(static_cast<size_t>(BH)), dhn(static_cast<size_t>(BH), T(0));
  std::vector<T> dhg(static_cast<size_t>(steps * B * G));  // d(h W + b_hh), time-major
  for (index_t t = steps - 1; t >= 0; --t) {
    total_dh(dh.data(), gy, dhn.data(), B, H, steps * H, t, norms);
    T* dhg_t = dhg.data() + t * B * G;
    // dhn = z * dh (the direct part), then += dhg W^T
    gru_cell_backward<T>(dxw + t * B * G, dhg_t, dhn.data(), dh.data(), hs + t * BH,
                         acts + t * B * 4 * H, B, H);
    gemm<T>(dhn.data(), dhg_t, w, B, H, G, G, G, H, false, true, T(1), T(1));
  }
  gemm<T>(dw, hs, dhg.data(), H, G, steps * B, H, G, G, true, false, T(1), T(0));
  if (dbh) col_sums(dbh, dhg.data(), steps * B, G);
  std::memcpy(dh0, dhn.data(), sizeof(T) * BH);
}

// ---- fast: W packed once, the batch in chains of rows, each chain through every step ---------

template <class T>
void lstm_sequence_forward(T* y, T* hs, T* cs, T* acts, const T* xw, const T* w, index_t B,
                           index_t steps, index_t H) {
  const Kernel<T> kn = fast_kernel<T>();
  if (!kn.uk) return lstm_sequence_forward_stepwise(y, hs, cs, acts, xw, w, B, steps, H);
  const index_t G = 4 * H, BH = B * H, kc = gemm_k_chunk<T>(B, G, H), ld = (steps + 1) * H;
  Panels<T> wp(w, H, G, false, kn.nr);
  const Chains<T> ch(B, B * G * H * steps);
  std::vector<T> gbuf(static_cast<size_t>(ch.nt * ch.rows * G));
  ch.run(wp, [&](int t, index_t r0, index_t r1) {
    T* g = gbuf.data() + t * ch.rows * G;
    const index_t m = r1 - r0;
    for (index_t s = 0; s < steps; ++s) {  // gates = xw_t + h_{t-1} W, then the cell
      const T *hp = hs + s * BH + r0 * H, *cp = cs + s * BH + r0 * H;
      std::memcpy(g, xw + s * B * G + r0 * G, sizeof(T) * m * G);
      block_times(kn, g, G, hp, H, m, wp, kc, T(1));
      lstm_cell_forward_here<T>(hs + (s + 1) * BH + r0 * H, cs + (s + 1) * BH + r0 * H,
                                acts + s * B * G + r0 * G, g, cp, m, H);
    }
    for (index_t b = r0; b < r1; ++b) {  // y (B, T+1, H): h_1 .. h_T, then c_T
      for (index_t s = 0; s < steps; ++s)
        std::memcpy(y + b * ld + s * H, hs + (s + 1) * BH + b * H, sizeof(T) * H);
      std::memcpy(y + b * ld + steps * H, cs + steps * BH + b * H, sizeof(T) * H);
    }
  });
}

template <class T>
void lstm_sequence_backward(T* dxw, T* dw, T* dh0, T* dc0, double* norms, const T* gy,
                            const T* hs, const T* cs, const T* acts, const T* w, index_t B,
                            index_t steps, index_t H) {
  const Kernel<T> kn = fast_kernel<T>();
  if (!kn.uk)
    return lstm_sequence_backward_stepwise(dxw, dw, dh0, dc0, norms, gy, hs, cs, acts, w, B,
                                           steps, H);
  const index_t G = 4 * H, BH = B * H, kc = gemm_k_chunk<T>(B, H, G), ld = (steps + 1) * H;
  Panels<T> wt(w, G, H, true, kn.nr);  // W^T (4H, H)
  const Chains<T> ch(B, B * G * H * steps);
  std::vector<T> dhn(static_cast<size_t>(BH)), dcs(static_cast<size_t>(2 * BH)),
      dhbuf(static_cast<size_t>(ch.nt * kTileRows * H));
  std::vector<double> ss(norms ? static_cast<size_t>(steps * B) : 0);
  ch.run(wt, [&](int t, index_t r0, index_t r1) {
    T* dh = dhbuf.data() + t * kTileRows * H;
    for (index_t b = r0; b < r1; ++b) {  // dL/dc_T from the output, dL/dh_T's recurrent part 0
      std::memcpy(dcs.data() + b * H, gy + b * ld + steps * H, sizeof(T) * H);
      std::fill_n(dhn.data() + b * H, H, T(0));
    }
    int cur = 0;
    for (index_t s = steps - 1; s >= 0; --s) {
      const T* dc = dcs.data() + cur * BH;
      T* dcp = dcs.data() + (1 - cur) * BH;
      T* dg = dxw + s * B * G;
      double* ssr = norms ? ss.data() + s * B : nullptr;
      row_tiles(r0, r1, kn.mr, [&](index_t r, int mr) {
        tile_dh(dh, gy, dhn.data(), r, mr, H, ld, s, ssr);  // output at t + step t + 1
        lstm_cell_backward_here<T>(dg + r * G, dcp + r * H, dh, dc + r * H, cs + s * BH + r * H,
                                   cs + (s + 1) * BH + r * H, acts + s * B * G + r * G, mr, H);
      });
      block_times(kn, dhn.data() + r0 * H, H, dg + r0 * G, G, r1 - r0, wt, kc, T(0));  // dg W^T
      cur = 1 - cur;
    }
  });
  // dW = sum_t h_{t-1}^T dgates_t: hs[0 .. T-1] as one (T*B, H) matrix
  weight_grad(kn, dw, hs, dxw, H, G, steps * B);
  std::memcpy(dh0, dhn.data(), sizeof(T) * BH);
  std::memcpy(dc0, dcs.data() + (steps % 2) * BH, sizeof(T) * BH);  // the half written last
  if (norms) norms_from_rows(norms, ss, B, steps);
}

template <class T>
void rnn_sequence_forward(T* y, T* hs, T* zs, const T* xw, const T* w, index_t B, index_t steps,
                          index_t H, Act act) {
  const Kernel<T> kn = fast_kernel<T>();
  if (!kn.uk) return rnn_sequence_forward_stepwise(y, hs, zs, xw, w, B, steps, H, act);
  const index_t BH = B * H, kc = gemm_k_chunk<T>(B, H, H);
  Panels<T> wp(w, H, H, false, kn.nr);
  const Chains<T> ch(B, B * H * H * steps);
  ch.run(wp, [&](int, index_t r0, index_t r1) {
    const index_t m = r1 - r0;
    for (index_t s = 0; s < steps; ++s) {  // z = xw_t + h_{t-1} W, h_t = act(z)
      T* z = zs + s * BH + r0 * H;
      std::memcpy(z, xw + s * BH + r0 * H, sizeof(T) * m * H);
      block_times(kn, z, H, hs + s * BH + r0 * H, H, m, wp, kc, T(1));
      act_forward<T>(hs + (s + 1) * BH + r0 * H, z, m * H, act, T(0.01));
    }
    for (index_t b = r0; b < r1; ++b)
      for (index_t s = 0; s < steps; ++s)
        std::memcpy(y + b * steps * H + s * H, hs + (s + 1) * BH + b * H, sizeof(T) * H);
  });
}

template <class T>
void rnn_sequence_backward(T* dxw, T* dw, T* dh0, double* norms, const T* gy, const T* hs,
                           const T* zs, const T* w, index_t B, index_t steps, index_t H, Act act) {
  const Kernel<T> kn = fast_kernel<T>();
  if (!kn.uk)
    return rnn_sequence_backward_stepwise(dxw, dw, dh0, norms, gy, hs, zs, w, B, steps, H, act);
  const index_t BH = B * H, kc = gemm_k_chunk<T>(B, H, H);
  Panels<T> wt(w, H, H, true, kn.nr);
  const Chains<T> ch(B, B * H * H * steps);
  std::vector<T> dhn(static_cast<size_t>(BH)), dhbuf(static_cast<size_t>(ch.nt * kTileRows * H));
  std::vector<double> ss(norms ? static_cast<size_t>(steps * B) : 0);
  ch.run(wt, [&](int t, index_t r0, index_t r1) {
    T* dh = dhbuf.data() + t * kTileRows * H;
    std::fill(dhn.data() + r0 * H, dhn.data() + r1 * H, T(0));
    for (index_t s = steps - 1; s >= 0; --s) {
      double* ssr = norms ? ss.data() + s * B : nullptr;
      row_tiles(r0, r1, kn.mr, [&](index_t r, int mr) {
        tile_dh(dh, gy, dhn.data(), r, mr, H, steps * H, s, ssr);
        act_backward<T>(dxw + s * BH + r * H, dh, zs + s * BH + r * H, hs + (s + 1) * BH + r * H,
                        mr * H, act, T(0.01));
      });
      block_times(kn, dhn.data() + r0 * H, H, dxw + s * BH + r0 * H, H, r1 - r0, wt, kc,
                  T(0));  // dz W^T
    }
  });
  weight_grad(kn, dw, hs, dxw, H, H, steps * B);  // dW = hs[0 .. T-1]^T dz
  std::memcpy(dh0, dhn.data(), sizeof(T) * BH);
  if (norms) norms_from_rows(norms, ss, B, steps);
}

template <class T>
void gru_sequence_forward(T* y, T* hs, T* acts, const T* xw, const T* w, const T* bh, index_t B,
                          index_t steps, index_t H) {
  const Kernel<T> kn = fast_kernel<T>();
  if (!kn.uk) return gru_sequence_forward_stepwise(y, hs, acts, xw, w, bh, B, steps, H);
  const index_t G = 3 * H, BH = B * H, kc = gemm_k_chunk<T>(B, G, H);
  Panels<T> wp(w, H, G, false, kn.nr);
  const Chains<T> ch(B, B * G * H * steps);
  std::vector<T> gbuf(static_cast<size_t>(ch.nt * ch.rows * G));
  ch.run(wp, [&](int t, index_t r0, index_t r1) {
    T* g = gbuf.data() + t * ch.rows * G;
    const index_t m = r1 - r0;
    for (index_t s = 0; s < steps; ++s) {  // hg = b_hh + h_{t-1} W, then the cell
      const T* hp = hs + s * BH + r0 * H;
      if (bh)
        for (index_t i = 0; i < m; ++i) std::memcpy(g + i * G, bh, sizeof(T) * G);
      block_times(kn, g, G, hp, H, m, wp, kc, bh ? T(1) : T(0));
      gru_cell_forward_here<T>(hs + (s + 1) * BH + r0 * H, acts + s * B * 4 * H + r0 * 4 * H,
                               xw + s * B * G + r0 * G, g, hp, m, H);
    }
    for (index_t b = r0; b < r1; ++b)
      for (index_t s = 0; s < steps; ++s)
        std::memcpy(y + b * steps * H + s * H, hs + (s + 1) * BH + b * H, sizeof(T) * H);
  });
}

template <class T>
void gru_sequence_backward(T* dxw, T* dw, T* dbh, T* dh0, double* norms, const T* gy,
                           const T* hs, const T* acts, const T* w, index_t B, index_t steps,
                           index_t H) {
  const Kernel<T> kn = fast_kernel<T>();
  if (!kn.uk)
    return gru_sequence_backward_stepwise(dxw, dw, dbh, dh0, norms, gy, hs, acts, w, B, steps,
                                          H);
  const index_t G = 3 * H, BH = B * H, kc = gemm_k_chunk<T>(B, H, G);
  Panels<T> wt(w, G, H, true, kn.nr);  // W^T (3H, H)
  const Chains<T> ch(B, B * G * H * steps);
  std::vector<T> dhn(static_cast<size_t>(BH)), dhbuf(static_cast<size_t>(ch.nt * kTileRows * H));
  std::vector<T> dhg(static_cast<size_t>(steps * B * G));  // d(h W + b_hh), time-major
  std::vector<double> ss(norms ? static_cast<size_t>(steps * B) : 0);
  ch.run(wt, [&](int t, index_t r0, index_t r1) {
    T* dh = dhbuf.data() + t * kTileRows * H;
    std::fill(dhn.data() + r0 * H, dhn.data() + r1 * H, T(0));
    for (index_t s = steps - 1; s >= 0; --s) {
      double* ssr = norms ? ss.data() + s * B : nullptr;
      T* dhg_s = dhg.data() + s * B * G;
      row_tiles(r0, r1, kn.mr, [&](index_t r, int mr) {
        tile_dh(dh, gy, dhn.data(), r, mr, H, steps * H, s, ssr);
        // dhn = z * dh (the direct part), then += dhg W^T
        gru_cell_backward_here<T>(dxw + s * B * G + r * G, dhg_s + r * G, dhn.data() + r * H, dh,
                                  hs + s * BH + r * H, acts + s * B * 4 * H + r * 4 * H, mr, H);
      });
      block_times(kn, dhn.data() + r0 * H, H, dhg_s + r0 * G, G, r1 - r0, wt, kc, T(1));
    }
  });
  weight_grad(kn, dw, hs, dhg.data(), H, G, steps * B);  // dW = hs[0 .. T-1]^T dhg
  if (dbh) col_sums(dbh, dhg.data(), steps * B, G);
  std::memcpy(dh0, dhn.data(), sizeof(T) * BH);
  if (norms) norms_from_rows(norms, ss, B, steps);
}

const char* rnn_fast_kernel_name() {
  const Kernel<float> k = fast_kernel<float>();
  if (!k.uk) return "stepwise";
  return k.nr == 32 ? "avx512" : "avx2";
}

#define DG_INSTANTIATE_SEQ(T, SUFFIX)                                                            \
  template void lstm_sequence_forward##SUFFIX<T>(T*, T*, T*, T*, const T*, const T*, index_t,    \
                                                 index_t, index_t);                              \
  template void lstm_sequence_backward##SUFFIX<T>(T*, T*, T*, T*, double*, const T*, const T*,   \
                                                  const T*, const T*, const T*, index_t, index_t, \
                                                  index_t);                                      \
  template void rnn_sequence_forward##SUFFIX<T>(T*, T*, T*, const T*, const T*, index_t, index_t, \
                                                index_t, Act);                                   \
  template void rnn_sequence_backward##SUFFIX<T>(T*, T*, T*, double*, const T*, const T*,        \
                                                 const T*, const T*, index_t, index_t, index_t,  \
                                                 Act);                                           \
  template void gru_sequence_forward##SUFFIX<T>(T*, T*, T*, const T*, const T*, const T*,        \
                                                index_t, index_t, index_t);                      \
  template void gru_sequence_backward##SUFFIX<T>(T*, T*, T*, T*, double*, const T*, const T*,    \
                                                 const T*, const T*, index_t, index_t, index_t);
DG_INSTANTIATE_SEQ(float, )
DG_INSTANTIATE_SEQ(double, )
DG_INSTANTIATE_SEQ(float, _stepwise)
DG_INSTANTIATE_SEQ(double, _stepwise)
#undef DG_INSTANTIATE_SEQ

}  // namespace dg::cpu
