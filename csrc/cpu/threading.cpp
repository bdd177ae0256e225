#include <atomic>

#include "deepgrad/common.h"
#ifdef DG_HAVE_OPENMP
#include <omp.h>
#endif

namespace dg {

namespace {
// omp_set_num_threads changes only the calling thread's setting: a kernel called from another
// Python thread would fork OpenMP's default team. Every fork passes num_threads(...) computed
// from this one process-wide value instead. 0 = not set: OpenMP's default.
std::atomic<int> g_threads{0};

int default_threads() {
#ifdef DG_HAVE_OPENMP
  static const int d = omp_get_max_threads();  // the initial setting (OMP_NUM_THREADS / cores)
  return d;
#else
  return 1;
#endif
}
}  // namespace

int max_threads() {
  const int n = g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : default_threads();
}

void set_max_threads(int n) {
  default_threads();  // pin the default before the first change
  g_threads.store(n, std::memory_order_relaxed);
#ifdef DG_HAVE_OPENMP
  omp_set_num_threads(n);  // the calling thread's own regions (none of deepgrad's rely on it)
#endif
}

int threads_for(index_t work) {
  if (work < kParallelGrain) return 1;
  index_t t = work / kParallelGrain;
  int mt = max_threads();
  return t < mt ? static_cast<int>(t) : mt;
}

}  // namespace dg
