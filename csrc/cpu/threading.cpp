#include "deepgrad/common.h"
#ifdef DG_HAVE_OPENMP
#include <omp.h>
#endif

namespace dg {

int max_threads() {
#ifdef DG_HAVE_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

int threads_for(index_t work) {
  if (work < kParallelGrain) return 1;
  index_t t = work / kParallelGrain;
  int mt = max_threads();
  return t < mt ? static_cast<int>(t) : mt;
}

}  // namespace dg
