#include "deepgrad/cpu_features.h"

namespace dg {

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define DG_CPUID_CHECKS 1
// The running CPU's answer to `expr` (__builtin_cpu_supports calls), asked once.
#define DG_CPU_ONCE(expr)                 \
  static const bool has = [] {            \
    __builtin_cpu_init();                 \
    return bool(expr);                    \
  }();                                    \
  return has
#endif

bool cpu_has_avx2_fma() {
#if defined(DG_HAVE_AVX2_BUILD) && defined(DG_CPUID_CHECKS)
  DG_CPU_ONCE(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
#else
  return false;
#endif
}

bool cpu_has_fma() {
#if defined(DG_CPUID_CHECKS)
  DG_CPU_ONCE(__builtin_cpu_supports("fma"));
#else
  return false;
#endif
}

bool cpu_has_avx512f() {
#if defined(DG_HAVE_AVX2_BUILD) && defined(DG_CPUID_CHECKS)
  // libgcc's check includes XCR0's opmask/zmm bits, i.e. the OS saves the AVX-512 state.
  DG_CPU_ONCE(__builtin_cpu_supports("avx512f"));
#else
  return false;
#endif
}

}  // namespace dg
