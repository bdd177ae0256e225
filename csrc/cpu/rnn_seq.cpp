// Whole RNN / GRU / LSTM sequences in one native call each way: the recurrent layers' tape node
// on the CPU.
//
// The fast path (lstm/rnn/gru_sequence_forward/backward) packs W_hh once per sequence into the
// GEMM micro-kernel's NR-wide panels (W for the forward, W^T for the backward), and then runs
// each step as one pass over micro-kernel row tiles of the batch: the tile's recurrent product
// (h_{t-1} W, or d(pre-activations) W^T) straight into a small buffer that stays in L1, and at
// once the tile's gate arithmetic (the fused LSTM/GRU cell or the activation). Batch rows are
// independent through the whole recurrence, so threads take blocks of rows and each runs every
// step of its own rows: one fork per sequence and no barrier between steps. Nothing is allocated
// per step. The input projection of all steps (x W_ih + b) is one GEMM before the forward (the
// caller's dense op), and dW_hh one GEMM over all T*B rows after the backward.
//
// The reference path (*_stepwise, the previous implementation and the fallback without AVX2/FMA)
// runs per step one gemm() call, which packs W again every step, and the cell kernel over the
// whole batch. Both paths give every element the same operations in the same order: the fast
// path sums K in the chunks gemm() on one thread uses (see gemm_k_chunk), so results match the
// reference bit for bit wherever gemm() is unchanged, on any number of threads.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/mid_fork.h"
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

// y (B, T, H) batch-first from hs[1..T] (time-major (T+1, B, H)); ld is y's row stride.
template <class T>
void batch_first(T* y, const T* hs, index_t B, index_t steps, index_t H, index_t ld) {
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < steps; ++t)
      std::memcpy(y + b * ld + t * H, hs + (t + 1) * B * H + b * H, sizeof(T) * H);
}

// ---- the fast path's pieces --------------------------------------------------------------------

// The micro-kernel of gemm.h where the CPU has AVX2/FMA, else null (the stepwise path then).
template <class T> MicroKernel<T> fast_ukernel();
template <> MicroKernel<float> fast_ukernel<float>() {
#ifdef DG_HAVE_AVX2_BUILD
  if (cpu_has_avx2_fma()) return &avx2::ukernel_f32;
#endif
  return nullptr;
}
template <> MicroKernel<double> fast_ukernel<double>() {
#ifdef DG_HAVE_AVX2_BUILD
  if (cpu_has_avx2_fma()) return &avx2::ukernel_f64;
#endif
  return nullptr;
}

// The chunks along K in which gemm() on one thread sums an (m, n, k) product: all of K at once on
// its small-problem path (m n k <= 2^23 and n k <= 2^20), else blocks of its KC = 512, each added
// to C in turn. The fast path sums in the same chunks, so its results equal the reference's.
inline index_t gemm_k_chunk(index_t m, index_t n, index_t k) {
  const bool small = m * n * k <= (index_t(1) << 23) && n * k <= (index_t(1) << 20);
  return small ? k : index_t(512);
}

// B (K, N) with B(p, j) = b[p * rs + j * cs] -> NR-wide panels [jp0, jp1), p-major, zero padded
// (the micro-kernel reads NR values per p): panel jp at dst + jp * NR * K.
template <class T>
void pack_panels(T* dst, const T* b, index_t rs, index_t cs, index_t K, index_t N, index_t jp0,
                 index_t jp1) {
  constexpr int NR = GemmTile<T>::NR;
  for (index_t jp = jp0; jp < jp1; ++jp) {
    T* d = dst + jp * NR * K;
    const index_t j0 = jp * NR;
    const int nr = static_cast<int>(std::min<index_t>(NR, N - j0));
    if (cs == 1) {
      for (index_t p = 0; p < K; ++p) {
        const T* s = b + p * rs + j0;
        for (int j = 0; j < nr; ++j) d[p * NR + j] = s[j];
        for (int j = nr; j < NR; ++j) d[p * NR + j] = T(0);
      }
    } else {
      for (int j = 0; j < nr; ++j) {
        const T* s = b + (j0 + j) * cs;
        for (index_t p = 0; p < K; ++p) d[p * NR + j] = s[p * rs];
      }
      for (int j = nr; j < NR; ++j)
        for (index_t p = 0; p < K; ++p) d[p * NR + j] = T(0);
    }
  }
}

// W packed once per sequence: (K, N) = W (ldw = N) or W^T (W stored (N, K), ldw = K).
template <class T>
struct Panels {
  std::vector<T> buf;
  const T* b;
  index_t rs, cs, K, N, npn;
  Panels(const T* w, index_t K_, index_t N_, bool transposed)
      : b(w), rs(transposed ? 1 : N_), cs(transposed ? K_ : 1), K(K_), N(N_),
        npn((N_ + GemmTile<T>::NR - 1) / GemmTile<T>::NR) {
    buf.resize(static_cast<size_t>(npn * GemmTile<T>::NR * K));
  }
  // Thread t of n packs its share of the panels.
  void pack(int t, int n) {
    index_t lo, hi;
    split_units(npn, n, t, 1, &lo, &hi);
    pack_panels(buf.data(), b, rs, cs, K, N, lo, hi);
  }
};

// C rows (mr, N) (row stride ldc) = beta C + A rows (mr, K) (row stride lda) . B from its packed
// panels, K summed in chunks of kc (from the second chunk on, each is added to C).
template <class T>
void rows_times(MicroKernel<T> uk, T* c, index_t ldc, const T* a, index_t lda,
                const Panels<T>& bp, index_t kc, int mr, T beta) {
  constexpr int NR = GemmTile<T>::NR;
  const index_t K = bp.K, N = bp.N;
  for (index_t jp = 0; jp < bp.npn; ++jp) {
    const int nr = static_cast<int>(std::min<index_t>(NR, N - jp * NR));
    const T* bj = bp.buf.data() + jp * NR * K;
    for (index_t p0 = 0; p0 < K; p0 += kc)
      uk(std::min(kc, K - p0), a + p0, lda, 1, bj + p0 * NR, NR, c + jp * NR, ldc, T(1),
         p0 == 0 ? beta : T(1), mr, nr);
  }
}

// Rows [r0, r1) in micro-kernel tiles f(r, mr): 6 rows each, but a remainder of 7 or 8 rows goes
// as 4 + 3 or 4 + 4 (the 4-row kernel runs at full speed, the 1-2 row one at half).
template <class F>
void row_tiles(index_t r0, index_t r1, F&& f) {
  for (index_t r = r0; r < r1;) {
    const index_t left = r1 - r;
    const int mr = left >= 9 || left == 6 ? 6 : left >= 7 ? 4 : static_cast<int>(left);
    f(r, mr);
    r += mr;
  }
}

constexpr int kTileRows = 6;  // GemmTile<T>::MR: the most rows row_tiles hands out

// Threads for a sequence of `macs` multiply-adds over B rows: as gemm() would fork for it, with
// at least 4 rows per thread.
inline int sequence_threads(index_t B, index_t macs) {
  const int nt = threads_for(macs / 64);
  return static_cast<int>(std::max<index_t>(1, std::min<index_t>(nt, B / 4)));
}

// body(t, n) on a team of nt threads (t = 0 is the caller); body may use `#pragma omp barrier`.
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

inline void team_barrier() {
#ifdef DG_HAVE_OPENMP
#pragma omp barrier
#endif
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
  if (dbh) {  // column sums of dhg over all steps and rows, in order
    for (index_t j = 0; j < G; ++j) dbh[j] = T(0);
    for (index_t r = 0; r < steps * B; ++r) {
      const T* row = dhg.data() + r * G;
      for (index_t j = 0; j < G; ++j) dbh[j] += row[j];
    }
  }
  std::memcpy(dh0, dhn.data(), sizeof(T) * BH);
}

// ---- fast: W packed once, per step one pass over row tiles, rows split over threads ----------

template <class T>
void lstm_sequence_forward(T* y, T* hs, T* cs, T* acts, const T* xw, const T* w, index_t B,
                           index_t steps, index_t H) {
  const MicroKernel<T> uk = fast_ukernel<T>();
  if (!uk) return lstm_sequence_forward_stepwise(y, hs, cs, acts, xw, w, B, steps, H);
  const index_t G = 4 * H, BH = B * H, kc = gemm_k_chunk(B, G, H), ld = (steps + 1) * H;
  Panels<T> wp(w, H, G, false);
  const int nt = sequence_threads(B, B * G * H * steps);
  std::vector<T> gbuf(static_cast<size_t>(nt * kTileRows * G));
  team(nt, [&](int t, int n) {
    wp.pack(t, n);
    team_barrier();
    index_t r0, r1;
    split_units(B, n, t, 1, &r0, &r1);
    T* g = gbuf.data() + t * kTileRows * G;
    for (index_t s = 0; s < steps; ++s) {
      const T *hp = hs + s * BH, *cp = cs + s * BH, *x = xw + s * B * G;
      T *hn = hs + (s + 1) * BH, *cn = cs + (s + 1) * BH, *a = acts + s * B * G;
      row_tiles(r0, r1, [&](index_t r, int mr) {  // gates = xw_t + h_{t-1} W, then the cell
        std::memcpy(g, x + r * G, sizeof(T) * mr * G);
        rows_times(uk, g, G, hp + r * H, H, wp, kc, mr, T(1));
        lstm_cell_forward_here<T>(hn + r * H, cn + r * H, a + r * G, g, cp + r * H, mr, H);
      });
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
  const MicroKernel<T> uk = fast_ukernel<T>();
  if (!uk)
    return lstm_sequence_backward_stepwise(dxw, dw, dh0, dc0, norms, gy, hs, cs, acts, w, B,
                                           steps, H);
  const index_t G = 4 * H, BH = B * H, kc = gemm_k_chunk(B, H, G), ld = (steps + 1) * H;
  Panels<T> wt(w, G, H, true);  // W^T (4H, H)
  const int nt = sequence_threads(B, B * G * H * steps);
  std::vector<T> dhn(static_cast<size_t>(BH)), dcs(static_cast<size_t>(2 * BH)),
      dhbuf(static_cast<size_t>(nt * kTileRows * H));
  std::vector<double> ss(norms ? static_cast<size_t>(steps * B) : 0);
  int last = 0;  // which half of dcs holds dL/dc_0 at the end
  team(nt, [&](int t, int n) {
    wt.pack(t, n);
    team_barrier();
    index_t r0, r1;
    split_units(B, n, t, 1, &r0, &r1);
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
      row_tiles(r0, r1, [&](index_t r, int mr) {
        tile_dh(dh, gy, dhn.data(), r, mr, H, ld, s, ssr);  // output at t + step t + 1
        lstm_cell_backward_here<T>(dg + r * G, dcp + r * H, dh, dc + r * H, cs + s * BH + r * H,
                                   cs + (s + 1) * BH + r * H, acts + s * B * G + r * G, mr, H);
        rows_times(uk, dhn.data() + r * H, H, dg + r * G, G, wt, kc, mr, T(0));  // dgates W^T
      });
      cur = 1 - cur;
    }
    if (t == 0) last = cur;
  });
  // dW = sum_t h_{t-1}^T dgates_t: hs[0 .. T-1] as one (T*B, H) matrix
  gemm<T>(dw, hs, dxw, H, G, steps * B, H, G, G, true, false, T(1), T(0));
  std::memcpy(dh0, dhn.data(), sizeof(T) * BH);
  std::memcpy(dc0, dcs.data() + last * BH, sizeof(T) * BH);
  if (norms) norms_from_rows(norms, ss, B, steps);
}

template <class T>
void rnn_sequence_forward(T* y, T* hs, T* zs, const T* xw, const T* w, index_t B, index_t steps,
                          index_t H, Act act) {
  const MicroKernel<T> uk = fast_ukernel<T>();
  if (!uk) return rnn_sequence_forward_stepwise(y, hs, zs, xw, w, B, steps, H, act);
  const index_t BH = B * H, kc = gemm_k_chunk(B, H, H);
  Panels<T> wp(w, H, H, false);
  const int nt = sequence_threads(B, B * H * H * steps);
  team(nt, [&](int t, int n) {
    wp.pack(t, n);
    team_barrier();
    index_t r0, r1;
    split_units(B, n, t, 1, &r0, &r1);
    for (index_t s = 0; s < steps; ++s) {
      row_tiles(r0, r1, [&](index_t r, int mr) {  // z = xw_t + h_{t-1} W, h_t = act(z)
        T* z = zs + s * BH + r * H;
        std::memcpy(z, xw + s * BH + r * H, sizeof(T) * mr * H);
        rows_times(uk, z, H, hs + s * BH + r * H, H, wp, kc, mr, T(1));
        act_forward<T>(hs + (s + 1) * BH + r * H, z, mr * H, act, T(0.01));
      });
    }
    for (index_t b = r0; b < r1; ++b)
      for (index_t s = 0; s < steps; ++s)
        std::memcpy(y + b * steps * H + s * H, hs + (s + 1) * BH + b * H, sizeof(T) * H);
  });
}

template <class T>
void rnn_sequence_backward(T* dxw, T* dw, T* dh0, double* norms, const T* gy, const T* hs,
                           const T* zs, const T* w, index_t B, index_t steps, index_t H, Act act) {
  const MicroKernel<T> uk = fast_ukernel<T>();
  if (!uk)
    return rnn_sequence_backward_stepwise(dxw, dw, dh0, norms, gy, hs, zs, w, B, steps, H, act);
  const index_t BH = B * H, kc = gemm_k_chunk(B, H, H);
  Panels<T> wt(w, H, H, true);
  const int nt = sequence_threads(B, B * H * H * steps);
  std::vector<T> dhn(static_cast<size_t>(BH)), dhbuf(static_cast<size_t>(nt * kTileRows * H));
  std::vector<double> ss(norms ? static_cast<size_t>(steps * B) : 0);
  team(nt, [&](int t, int n) {
    wt.pack(t, n);
    team_barrier();
    index_t r0, r1;
    split_units(B, n, t, 1, &r0, &r1);
    T* dh = dhbuf.data() + t * kTileRows * H;
    std::fill(dhn.data() + r0 * H, dhn.data() + r1 * H, T(0));
    for (index_t s = steps - 1; s >= 0; --s) {
      double* ssr = norms ? ss.data() + s * B : nullptr;
      row_tiles(r0, r1, [&](index_t r, int mr) {
        tile_dh(dh, gy, dhn.data(), r, mr, H, steps * H, s, ssr);
        T* dz = dxw + s * BH + r * H;
        act_backward<T>(dz, dh, zs + s * BH + r * H, hs + (s + 1) * BH + r * H, mr * H, act,
                        T(0.01));
        rows_times(uk, dhn.data() + r * H, H, dz, H, wt, kc, mr, T(0));  // dz W^T
      });
    }
  });
  gemm<T>(dw, hs, dxw, H, H, steps * B, H, H, H, true, false, T(1), T(0));
  std::memcpy(dh0, dhn.data(), sizeof(T) * BH);
  if (norms) norms_from_rows(norms, ss, B, steps);
}

template <class T>
void gru_sequence_forward(T* y, T* hs, T* acts, const T* xw, const T* w, const T* bh, index_t B,
                          index_t steps, index_t H) {
  const MicroKernel<T> uk = fast_ukernel<T>();
  if (!uk) return gru_sequence_forward_stepwise(y, hs, acts, xw, w, bh, B, steps, H);
  const index_t G = 3 * H, BH = B * H, kc = gemm_k_chunk(B, G, H);
  Panels<T> wp(w, H, G, false);
  const int nt = sequence_threads(B, B * G * H * steps);
  std::vector<T> gbuf(static_cast<size_t>(nt * kTileRows * G));
  team(nt, [&](int t, int n) {
    wp.pack(t, n);
    team_barrier();
    index_t r0, r1;
    split_units(B, n, t, 1, &r0, &r1);
    T* g = gbuf.data() + t * kTileRows * G;
    for (index_t s = 0; s < steps; ++s) {
      const T* hp = hs + s * BH;
      row_tiles(r0, r1, [&](index_t r, int mr) {  // hg = b_hh + h_{t-1} W, then the cell
        if (bh)
          for (int i = 0; i < mr; ++i) std::memcpy(g + i * G, bh, sizeof(T) * G);
        rows_times(uk, g, G, hp + r * H, H, wp, kc, mr, bh ? T(1) : T(0));
        gru_cell_forward_here<T>(hs + (s + 1) * BH + r * H, acts + s * B * 4 * H + r * 4 * H,
                                 xw + s * B * G + r * G, g, hp + r * H, mr, H);
      });
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
  const MicroKernel<T> uk = fast_ukernel<T>();
  if (!uk)
    return gru_sequence_backward_stepwise(dxw, dw, dbh, dh0, norms, gy, hs, acts, w, B, steps,
                                          H);
  const index_t G = 3 * H, BH = B * H, kc = gemm_k_chunk(B, H, G);
  Panels<T> wt(w, G, H, true);  // W^T (3H, H)
  const int nt = sequence_threads(B, B * G * H * steps);
  std::vector<T> dhn(static_cast<size_t>(BH)), dhbuf(static_cast<size_t>(nt * kTileRows * H));
  std::vector<T> dhg(static_cast<size_t>(steps * B * G));  // d(h W + b_hh), time-major
  std::vector<double> ss(norms ? static_cast<size_t>(steps * B) : 0);
  team(nt, [&](int t, int n) {
    wt.pack(t, n);
    team_barrier();
    index_t r0, r1;
    split_units(B, n, t, 1, &r0, &r1);
    T* dh = dhbuf.data() + t * kTileRows * H;
    std::fill(dhn.data() + r0 * H, dhn.data() + r1 * H, T(0));
    for (index_t s = steps - 1; s >= 0; --s) {
      double* ssr = norms ? ss.data() + s * B : nullptr;
      T* dhg_s = dhg.data() + s * B * G;
      row_tiles(r0, r1, [&](index_t r, int mr) {
        tile_dh(dh, gy, dhn.data(), r, mr, H, steps * H, s, ssr);
        // dhn = z * dh (the direct part), then += dhg W^T
        gru_cell_backward_here<T>(dxw + s * B * G + r * G, dhg_s + r * G, dhn.data() + r * H, dh,
                                  hs + s * BH + r * H, acts + s * B * 4 * H + r * 4 * H, mr, H);
        rows_times(uk, dhn.data() + r * H, H, dhg_s + r * G, G, wt, kc, mr, T(1));
      });
    }
  });
  gemm<T>(dw, hs, dhg.data(), H, G, steps * B, H, G, G, true, false, T(1), T(0));
  if (dbh) {  // column sums of dhg over all steps and rows, in order
    for (index_t j = 0; j < G; ++j) dbh[j] = T(0);
    for (index_t r = 0; r < steps * B; ++r) {
      const T* row = dhg.data() + r * G;
      for (index_t j = 0; j < G; ++j) dbh[j] += row[j];
    }
  }
  std::memcpy(dh0, dhn.data(), sizeof(T) * BH);
  if (norms) norms_from_rows(norms, ss, B, steps);
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
