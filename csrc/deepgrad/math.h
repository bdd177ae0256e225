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
    case Act::step: return z > T(0) ? T(1) : (z <= T(0) ? T(0) : z);  // NaN stays NaN
    case Act::sigmoid: return sigmoid_(z);
    case Act::tanh_: return std::tanh(z);
    case Act::relu: return z <= T(0) ? T(0) : z;  // NaN propagates, as in PyTorch
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

// dz = dy * act'(z) as every backward forms it, except that where act' is identically 0 (relu at
// z <= 0, step) dz is 0 even for an Inf/NaN dy, as PyTorch's threshold_backward selects
// (0 * inf would be NaN: sqrt(relu(x)) at x = 0 must give 0, not NaN).
template <class T> DG_HOST_DEVICE T act_grad(Act a, T dy, T z, T y, T alpha) {
  if (a == Act::relu) return z <= T(0) ? T(0) : dy;
  if (a == Act::step) return T(0);
  return dy * act_derivative<T>(a, z, y, alpha);
}

// True when the derivative needs z (pre-activation); false when y alone suffices.
DG_HOST_DEVICE bool act_needs_pre(Act a) {
  return !(a == Act::identity || a == Act::step || a == Act::sigmoid || a == Act::tanh_);
}

// ---- losses: per-element terms and their derivatives (PyTorch's definitions) -----------------
enum class Loss : int { mse = 0, bce, bce_logits, cross_entropy };
enum class Reduction : int { none = 0, mean, sum };

inline bool parse_loss(const char* name, Loss* out) {
  struct Entry { const char* n; Loss l; };
  static const Entry table[] = {{"mse", Loss::mse}, {"bce", Loss::bce},
                                {"bce_logits", Loss::bce_logits}, {"cross_entropy", Loss::cross_entropy}};
  for (const Entry& e : table)
    if (std::strcmp(e.n, name) == 0) { *out = e.l; return true; }
  return false;
}
inline const char* loss_names() { return "mse, bce, bce_logits, cross_entropy"; }

inline bool parse_reduction(const char* name, Reduction* out) {
  if (std::strcmp(name, "mean") == 0) { *out = Reduction::mean; return true; }
  if (std::strcmp(name, "sum") == 0) { *out = Reduction::sum; return true; }
  if (std::strcmp(name, "none") == 0) { *out = Reduction::none; return true; }
  return false;
}
inline const char* reduction_names() { return "mean, sum, none"; }

// Mean squared error: (p - t)^2 and d/dp = 2 (p - t).
template <class T> DG_HOST_DEVICE T mse_term(T p, T t) { const T d = p - t; return d * d; }
template <class T> DG_HOST_DEVICE T mse_grad(T p, T t) { return T(2) * (p - t); }

// Binary cross-entropy on probabilities p in [0, 1]; each log is clamped at -100 (PyTorch).
template <class T> DG_HOST_DEVICE T bce_term(T p, T t) {
  T lp = std::log(p);
  T l1p = std::log1p(-p);
  lp = lp < T(-100) ? T(-100) : lp;  // written so that NaN passes through, like std::max(lp, -100)
  l1p = l1p < T(-100) ? T(-100) : l1p;
  return (t - T(1)) * l1p - t * lp;
}
// d/dp = (p - t) / max(p (1 - p), 1e-12), PyTorch's clamped form.
template <class T> DG_HOST_DEVICE T bce_grad(T p, T t) {
  T d = (T(1) - p) * p;
  d = d < T(1e-12) ? T(1e-12) : d;
  return (p - t) / d;
}

// Binary cross-entropy from logits x, stable: max(x, 0) - x t + log1p(e^{-|x|}); d/dx = sigmoid(x) - t.
template <class T> DG_HOST_DEVICE T bce_logits_term(T x, T t) {
  return (x > T(0) ? x : T(0)) - x * t + std::log1p(std::exp(-std::fabs(x)));
}
template <class T> DG_HOST_DEVICE T bce_logits_grad(T x, T t) { return sigmoid_(x) - t; }

// Softmax cross-entropy for one row of logits with max m and s = sum_j e^{x_j - m}:
// loss = -log_softmax(x)_label = (m - x_label) + log(s); d/dx_j = e^{x_j - m} / s - [j == label].
// m - x_label first: exact for close logits, so two tied logits of 1e30 give log 2, not m + log 2
// rounded back to m.
template <class T> DG_HOST_DEVICE T ce_row_loss(T x_label, T row_max, T sum_exp) {
  return (row_max - x_label) + std::log(sum_exp);
}
template <class T> DG_HOST_DEVICE T ce_grad(T x, T row_max, T inv_sum_exp, bool is_label) {
  return std::exp(x - row_max) * inv_sum_exp - (is_label ? T(1) : T(0));
}

// ---- layer norm: the per-row formulas of the CPU and CUDA kernels -----------------------------
// Row statistics are accumulated in double. 1 / sqrt(var + eps), NaN where the variance is not
// finite (a NaN/Inf input, or a double row whose squares overflow): 1 / sqrt(inf) = 0 would turn
// the row into silent zeros.
DG_HOST_DEVICE double layer_norm_invstd(double var, double eps) {
  const double inv = 1.0 / std::sqrt(var + eps);
  return inv > 0.0 ? inv : NAN;
}
// x̂ = (x - mean) * invstd in double, rounded once: in float, x - mean can overflow (x = 3e38,
// mean = -1e38) although |x̂| <= sqrt(D).
template <class T> DG_HOST_DEVICE T layer_norm_xhat(T x, double mean, double invstd) {
  return T(((double)x - mean) * invstd);
}

// ---- optimizers: per-element updates (torch.optim's formulas, single-tensor path) -------------
// Hyper-parameters are passed by value in small structs so a CUDA kernel can take them as one
// argument. Scalars derived from the step count (bias corrections) are computed once on the host.

// SGD: d = g + wd p; with momentum: buf = d on the first step, else momentum buf + (1 - dampening) d;
// d = nesterov ? d + momentum buf : buf; p -= lr d. buf is untouched when momentum == 0.
template <class T> struct SgdHyper {
  T lr, momentum, dampening, weight_decay;
  bool nesterov, first_step;
};
// An update's branches on its hyper-parameters are template flags: 0 or 1 fixes a branch at compile
// time (loops that must vectorise without unswitching: cpu/optim.cpp), kAsHyper (the default)
// reads it from the hyper-parameters per call (the plain *_update forms, the CUDA kernels). One
// formula either way, so the same bits.
constexpr int kAsHyper = 2;
DG_HOST_DEVICE constexpr bool branch(int flag, bool from_hyper) {
  return flag == kAsHyper ? from_hyper : flag != 0;
}
// kWd: weight_decay != 0, kMom: momentum != 0, kFirst: first_step, kNesterov: nesterov
template <class T, int kWd = kAsHyper, int kMom = kAsHyper, int kFirst = kAsHyper,
          int kNesterov = kAsHyper>
DG_HOST_DEVICE void sgd_update_t(const SgdHyper<T>& h, T& p, T g, T& buf) {
  T d = g;
  if (branch(kWd, h.weight_decay != T(0))) d = d + h.weight_decay * p;
  if (branch(kMom, h.momentum != T(0))) {
    const T b = branch(kFirst, h.first_step) ? d : h.momentum * buf + (T(1) - h.dampening) * d;
    buf = b;
    d = branch(kNesterov, h.nesterov) ? d + h.momentum * b : b;
  }
  p = p - h.lr * d;
}
template <class T> DG_HOST_DEVICE void sgd_update(const SgdHyper<T>& h, T& p, T g, T& buf) {
  sgd_update_t<T>(h, p, g, buf);
}

// Adam (decoupled = false: L2 term wd p added to the gradient) and AdamW (decoupled = true:
// p *= 1 - lr wd before the update). m = lerp(m, g, 1 - beta1); v = beta2 v + (1 - beta2) g^2;
// p -= step_size m / (sqrt(v) / sqrt(1 - beta2^t) + eps) with step_size = lr / (1 - beta1^t); the
// division by sqrt(1 - beta2^t) is a multiply by its reciprocal (one divide per element fewer; the
// result stays within an ulp of torch's). Build the struct with make_adam_hyper.
template <class T> struct AdamHyper {
  T one_minus_beta1, beta2, one_minus_beta2, eps;
  T weight_decay;  // the L2 coefficient (Adam) or 0 (AdamW)
  T decay_factor;  // 1 - lr wd for AdamW, 1 for Adam
  T step_size, inv_bc2_sqrt;
};
template <class T>
inline AdamHyper<T> make_adam_hyper(double lr, double beta1, double beta2, double eps,
                                    double weight_decay, long long step, bool decoupled) {
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  AdamHyper<T> h;
  h.one_minus_beta1 = T(1.0 - beta1);
  h.beta2 = T(beta2);
  h.one_minus_beta2 = T(1.0 - beta2);
  h.eps = T(eps);
  h.weight_decay = decoupled ? T(0) : T(weight_decay);
  h.decay_factor = decoupled ? T(1.0 - lr * weight_decay) : T(1);
  h.step_size = T(lr / bc1);
  h.inv_bc2_sqrt = T(1.0 / std::sqrt(bc2));
  return h;
}
// kL2: weight_decay != 0 (see sgd_update_t)
template <class T, int kL2 = kAsHyper>
DG_HOST_DEVICE void adam_update_t(const AdamHyper<T>& h, T& p, T g, T& m, T& v) {
  const T pp = p * h.decay_factor;
  if (branch(kL2, h.weight_decay != T(0))) g = g + h.weight_decay * pp;
  const T mm = m + h.one_minus_beta1 * (g - m);
  const T vv = h.beta2 * v + h.one_minus_beta2 * (g * g);
  m = mm;
  v = vv;
  p = pp - h.step_size * (mm / (std::sqrt(vv) * h.inv_bc2_sqrt + h.eps));
}
template <class T> DG_HOST_DEVICE void adam_update(const AdamHyper<T>& h, T& p, T g, T& m, T& v) {
  adam_update_t<T>(h, p, g, m, v);
}

// RMSprop: g += wd p; sq = alpha sq + (1 - alpha) g^2; centered: ga = lerp(ga, g, 1 - alpha),
// avg = sqrt(sq - ga^2) + eps, else avg = sqrt(sq) + eps; with momentum: buf = momentum buf + g / avg,
// p -= lr buf; else p -= lr g / avg. buf / ga are untouched when momentum == 0 / not centered.
template <class T> struct RmspropHyper {
  T lr, alpha, eps, weight_decay, momentum;
  bool centered;
};
// kWd: weight_decay != 0, kCentered: centered, kMom: momentum > 0 (see sgd_update_t)
template <class T, int kWd = kAsHyper, int kCentered = kAsHyper, int kMom = kAsHyper>
DG_HOST_DEVICE void rmsprop_update_t(const RmspropHyper<T>& h, T& p, T g, T& sq, T& buf, T& ga) {
  if (branch(kWd, h.weight_decay != T(0))) g = g + h.weight_decay * p;
  const T s = h.alpha * sq + (T(1) - h.alpha) * (g * g);
  sq = s;
  T avg;
  if (branch(kCentered, h.centered)) {
    const T a = ga + (T(1) - h.alpha) * (g - ga);
    ga = a;
    avg = std::sqrt(s - a * a) + h.eps;
  } else {
    avg = std::sqrt(s) + h.eps;
  }
  if (branch(kMom, h.momentum > T(0))) {
    const T b = h.momentum * buf + g / avg;
    buf = b;
    p = p - h.lr * b;
  } else {
    p = p - h.lr * (g / avg);
  }
}
template <class T>
DG_HOST_DEVICE void rmsprop_update(const RmspropHyper<T>& h, T& p, T g, T& sq, T& buf, T& ga) {
  rmsprop_update_t<T>(h, p, g, sq, buf, ga);
}

}  // namespace dg
