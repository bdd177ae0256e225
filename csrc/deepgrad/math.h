// Scalar formulas written once and used by the C++ kernels and the CUDA kernels alike, so the
// CPU tests cover the math the GPU runs. Everything here is DG_HOST_DEVICE and header-only.
#pragma once
#include <cmath>
#include <cstring>

#include "deepgrad/common.h"

namespace dg {

// ---- activations ------------------------------------------------------------------------------
enum class Act : int {
  identity = 0,
  step,        // forward only; its derivative is zero everywhere
  sigmoid,
  tanh_,
  relu,
  leaky_relu,  // alpha = negative slope
  elu,         // alpha = scale of the negative part
  selu,
  gelu,        // exact (erf) form, as PyTorch's default
  softplus,
  silu,        // also called swish
  softsign,
};

// Parses an activation name ("relu", "swish", "tanh", ...). Returns false if unknown.
inline bool parse_act(const char* name, Act* out) {
  struct Entry { const char* n; Act a; };
  static const Entry table[] = {
      {"identity", Act::identity}, {"linear", Act::identity}, {"none", Act::identity},
      {"step", Act::step},         {"sigmoid", Act::sigmoid}, {"tanh", Act::tanh_},
      {"relu", Act::relu},         {"leaky_relu", Act::leaky_relu}, {"elu", Act::elu},
      {"selu", Act::selu},         {"gelu", Act::gelu},       {"softplus", Act::softplus},
      {"silu", Act::silu},         {"swish", Act::silu},      {"softsign", Act::softsign},
  };
  for (const Entry& e : table)
    if (std::strcmp(e.n, name) == 0) { *out = e.a; return true; }
  return false;
}

inline const char* act_names() {
  return "identity, step, sigmoid, tanh, relu, leaky_relu, elu, selu, gelu, softplus, silu (swish), softsign";
}

constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;

template <class T> DG_HOST_DEVICE T sigmoid_(T x) {
  // Stable for large |x|: never exponentiates a large positive number.
  if (x >= T(0)) { T e = std::exp(-x); return T(1) / (T(1) + e); }
  T e = std::exp(x);
  return e / (T(1) + e);
}

template <class T> DG_HOST_DEVICE T softplus_(T x) {
  // log(1 + e^x) = max(x, 0) + log1p(e^{-|x|})
  return (x > T(0) ? x : T(0)) + std::log1p(std::exp(-std::fabs(x)));
}

// y = act(z)
template <class T> DG_HOST_DEVICE T act_forward(Act a, T z, T alpha) {
  switch (a) {
    case Act::identity: return z;
    case Act::step: return z > T(0) ? T(1) : T(0);
    case Act::sigmoid: return sigmoid_(z);
    case Act::tanh_: return std::tanh(z);
    case Act::relu: return z > T(0) ? z : T(0);
    case Act::leaky_relu: return z > T(0) ? z : alpha * z;
    case Act::elu: return z > T(0) ? z : alpha * std::expm1(z);
    case Act::selu: return T(kSeluScale) * (z > T(0) ? z : T(kSeluAlpha) * std::expm1(z));
    case Act::gelu: return T(0.5) * z * (T(1) + std::erf(z * T(0.70710678118654752440)));
    case Act::softplus: return softplus_(z);
    case Act::silu: return z * sigmoid_(z);
    case Act::softsign: return z / (T(1) + std::fabs(z));
  }
  return z;
}

// d act(z) / dz, given the pre-activation z and the output y = act(z) (whichever is cheaper).
template <class T> DG_HOST_DEVICE T act_derivative(Act a, T z, T y, T alpha) {
  switch (a) {
    case Act::identity: return T(1);
    case Act::step: return T(0);
    case Act::sigmoid: return y * (T(1) - y);
    case Act::tanh_: return T(1) - y * y;
    case Act::relu: return z > T(0) ? T(1) : T(0);
    case Act::leaky_relu: return z > T(0) ? T(1) : alpha;
    case Act::elu: return z > T(0) ? T(1) : y + alpha;  // alpha*e^z = y + alpha for z <= 0
    case Act::selu: return z > T(0) ? T(kSeluScale) : y + T(kSeluScale * kSeluAlpha);
    case Act::gelu: {
      const T cdf = T(0.5) * (T(1) + std::erf(z * T(0.70710678118654752440)));
      const T pdf = std::exp(T(-0.5) * z * z) * T(0.39894228040143267794);
      return cdf + z * pdf;
    }
    case Act::softplus: return sigmoid_(z);
    case Act::silu: { const T s = sigmoid_(z); return s * (T(1) + z * (T(1) - s)); }
    case Act::softsign: { const T d = T(1) + std::fabs(z); return T(1) / (d * d); }
  }
  return T(1);
}

// True when the derivative needs z (pre-activation); false when y alone suffices.
DG_HOST_DEVICE bool act_needs_pre(Act a) {
  return !(a == Act::identity || a == Act::step || a == Act::sigmoid || a == Act::tanh_);
}

}  // namespace dg
