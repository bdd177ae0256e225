// Layer norm on the CPU (csrc/cpu/norm_layers.cpp): the CUDA kernels' formulas (math.h
// layer_norm_invstd / layer_norm_xhat), rows in parallel, deterministic for any thread count.
#pragma once
#include "deepgrad/common.h"

namespace dg::cpu {

// x (N, D), gamma/beta (D) or null -> y (N, D), mean (N), invstd (N) (saved for the backward).
template <class T>
void layer_norm_forward(T* y, T* mean, T* invstd, const T* x, const T* gamma, const T* beta,
                        index_t n, index_t d, double eps);

// dy, x (N, D), gamma (D) or null, mean/invstd (N) -> dx (N, D) (when dx is not null);
// dgamma (D) += sum_rows dy x̂ and dbeta (D) += sum_rows dy (each when not null).
template <class T>
void layer_norm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma,
                         const T* mean, const T* invstd, index_t n, index_t d);

}  // namespace dg::cpu
