// One fork for a mid-size piece of work (~0.5M-4M multiply-adds, 10-80 us on one core): too
// small for the GEMM's own grid of independent blocks, big enough that one OpenMP fork pays on an
// idle machine. Used by the fused dense layer (dense.cpp) and by bare GEMMs of that size
// (gemm.cpp: the recurrent layers' per-step products). Callers split their work so that every
// output element gets the same operations in the same order as on one thread.
//
// Such a fork pays only while the team's threads get a CPU. When another process is busy, a
// team thread waits for a scheduler time slice (milliseconds) and the master waits for it at the
// join. So fork_team times the master's own share and the join, and keeps decayed sums of both
// over the last ~20 forks; when the joins waited longer than the work took (and over 300 us: on
// an idle 2-vCPU VM single joins wait 0.1-1.5 ms every few thousand forks, the host's doing),
// the next `len` mid-size calls run on the calling thread (mid_fork_allowed() says false). A
// trip within 1024 forks of the previous one doubles `len` (256 up to 64K calls, about a second
// of work); 8192 forks without a trip reset it. Measured on 2 vCPUs with one busy competing
// process, (50, 64, 128) MLP training steps: 5-8 ms against 4.9 ms without these forks (2.0-2.2
// ms against 2.9 ms on the idle machine).
#pragma once
#include <algorithm>
#include <chrono>
#include <exception>

#include "deepgrad/common.h"
#ifdef DG_HAVE_OPENMP
#include <omp.h>
#endif

namespace dg::cpu {

// Threads for a mid-size piece of `macs` multiply-adds: 0 when a GEMM of that size forks on its
// own grid (gemm.cpp, from threads_for(macs / 64) >= 2), else one thread per ~256K
// multiply-adds (~5 us), so the fork costs a few percent at most.
inline int mid_fork_threads(index_t macs) {
  if (threads_for(macs / 64) > 1) return 0;
  return threads_for(macs / 8);
}

// False while the backoff above keeps mid-size work on the calling thread (counts the call).
bool mid_fork_allowed();
// The backoff's measurement of one fork.
void mid_fork_report(double own_s, double join_wait_s);

// Runs body(t, nteam) on nt threads (t = 0 is the calling thread) and reports to the backoff.
// An exception in any thread (a scratch allocation failing) is rethrown on the calling thread.
template <class F>
void fork_team(int nt, F&& body) {
#ifdef DG_HAVE_OPENMP
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  clock::time_point t_own;
  std::exception_ptr error;
#pragma omp parallel num_threads(nt)
  {
    try {
      body(omp_get_thread_num(), omp_get_num_threads());
    } catch (...) {
#pragma omp critical(dg_fork_team_error)
      if (!error) error = std::current_exception();
    }
    if (omp_get_thread_num() == 0) t_own = clock::now();
  }
  if (error) std::rethrow_exception(error);
  const auto t1 = clock::now();
  mid_fork_report(std::chrono::duration<double>(t_own - t0).count(),
                  std::chrono::duration<double>(t1 - t_own).count());
#else
  (void)nt;
  body(0, 1);
#endif
}

// [lo, hi) of part idx of `total` items cut into `parts` blocks of whole `unit`s.
inline void split_units(index_t total, int parts, int idx, index_t unit, index_t* lo,
                        index_t* hi) {
  const index_t units = (total + unit - 1) / unit;
  const index_t q = units / parts, r = units % parts;
  const index_t u0 = idx * q + std::min<index_t>(idx, r);
  const index_t u1 = u0 + q + (idx < r ? 1 : 0);
  *lo = std::min(total, u0 * unit);
  *hi = std::min(total, u1 * unit);
}

}  // namespace dg::cpu
