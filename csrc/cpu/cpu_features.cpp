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

bool cpu_has_fma() {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("fma") != 0;
  }();
  return has;
#else
  return false;
#endif
}

bool cpu_has_avx512f() {
#if defined(DG_HAVE_AVX2_BUILD) && (defined(__GNUC__) || defined(__clang__))
  // libgcc's check includes XCR0's opmask/zmm bits, i.e. the OS saves the AVX-512 state.
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return has;
#else
  return false;
#endif
}

}  // namespace dg
