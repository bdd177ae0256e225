// Opens a region of AVX-512F code in a file of csrc/cpu/avx2/ (compiled with the AVX2 options):
// every function defined from here to the matching #include "cpu/avx2/avx512_end.h" gets the
// avx512f target. Include after the other headers; no include guard (a region per inclusion).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f")
#endif
