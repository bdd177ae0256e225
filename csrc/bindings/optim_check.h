// Hyperparameter checks of the optimizer entry points, shared by the CPU (bind_optim.cpp) and
// CUDA (bind_cuda_kernels.cpp) bindings: ValueError naming the function and the value.
#pragma once
#include <cmath>
#include <string>

#include "bindings/check.h"

namespace dg::bind {

inline void check_hyper(const char* fn, const char* name, double v, double lo) {
  if (!std::isfinite(v) || v < lo)
    fail_value(fn, std::string(name) + " must be finite and >= " + std::to_string(lo) + ", got " +
                       std::to_string(v));
}
inline void check_beta(const char* fn, const char* name, double v) {
  if (!(v >= 0.0 && v < 1.0)) fail_value(fn, std::string(name) + " must be in [0, 1), got " + std::to_string(v));
}

inline void check_sgd_hyper(const char* fn, double lr, double momentum, double dampening,
                            bool nesterov, double weight_decay) {
  check_hyper(fn, "lr", lr, 0);
  check_hyper(fn, "momentum", momentum, 0);
  check_hyper(fn, "weight_decay", weight_decay, 0);
  if (!std::isfinite(dampening)) fail_value(fn, "dampening must be finite");
  if (nesterov && (momentum <= 0 || dampening != 0))
    fail_value(fn, "Nesterov momentum requires momentum > 0 and dampening = 0");
}

inline void check_adam_hyper(const char* fn, long long step, double lr, double beta1,
                             double beta2, double eps, double weight_decay) {
  if (step < 1) fail_value(fn, "step counts from 1, got " + std::to_string(step));
  check_hyper(fn, "lr", lr, 0);
  check_beta(fn, "beta1", beta1);
  check_beta(fn, "beta2", beta2);
  check_hyper(fn, "eps", eps, 0);
  check_hyper(fn, "weight_decay", weight_decay, 0);
}

inline void check_rmsprop_hyper(const char* fn, double lr, double alpha, double eps,
                                double weight_decay, double momentum) {
  check_hyper(fn, "lr", lr, 0);
  check_hyper(fn, "alpha", alpha, 0);
  check_hyper(fn, "eps", eps, 0);
  check_hyper(fn, "weight_decay", weight_decay, 0);
  check_hyper(fn, "momentum", momentum, 0);
}

}  // namespace dg::bind
