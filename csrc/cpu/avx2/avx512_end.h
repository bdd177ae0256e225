// Closes the region of AVX-512F code opened by cpu/avx2/avx512_begin.h.
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
