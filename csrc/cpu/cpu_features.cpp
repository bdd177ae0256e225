#include "deepgrad/cpu_features.h"

namespace dg {

bool cpu_has_avx2_fma() {
#if defined(DG_HAVE_AVX2_BUILD) && (defined(__GNUC__) || defined(__clang__))
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return has;
#else
  return false;
#endif
}

}  // namespace dg
