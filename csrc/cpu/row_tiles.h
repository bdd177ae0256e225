// The micro-kernel's row tiles, shared by gemm() (gemm_at_panels) and the recurrent sequence
// kernels (rnn_seq.cpp).
#pragma once
#include "deepgrad/common.h"

namespace dg::cpu {

// Rows [r0, r1) in micro-kernel tiles f(r, mr) of at most mr_max rows (6 or 8). The AVX2 kernel
// computes 2, 4 or 6 rows and its 1-2 row tile runs at half speed, so a remainder of 7 or 8 rows
// goes as 4 + 3 or 4 + 4; the AVX-512 kernel computes exactly mr rows and wants 4 or more, so
// 9-11 rows go as two halves.
template <class F>
void row_tiles(index_t r0, index_t r1, int mr_max, F&& f) {
  for (index_t r = r0; r < r1;) {
    const index_t left = r1 - r;
    int mr;
    if (mr_max == 6) mr = left >= 9 || left == 6 ? 6 : left >= 7 ? 4 : static_cast<int>(left);
    else mr = left <= 8 ? static_cast<int>(left) : left < 12 ? static_cast<int>(left + 1) / 2 : 8;
    f(r, mr);
    r += mr;
  }
}

}  // namespace dg::cpu
