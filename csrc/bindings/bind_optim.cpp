// Checked entry points for the fused optimizer updates (kernels in csrc/cpu/optim.cpp). Every
// buffer is updated in place and must be C-contiguous, writeable and shaped like param.
#include <cmath>
#include <cstdint>
#include <string>

#include "bindings/check.h"
#include "bindings/optim_check.h"
#include "bindings/registry.h"
#include "deepgrad/kernels.h"

namespace dg::bind {
namespace {


// param is the reference: every other buffer must match its dtype and shape.
py::array state_arg(const char* fn, py::handle o, const char* name, const py::array& param) {
  if (o.is_none()) fail_value(fn, std::string(name) + " is None but this configuration needs it");
  py::array a = float_output(o, fn, name);
  same_dtype(fn, param, "param", a, name);
  same_shape(fn, param, "param", a, name);
  return a;
}
py::array grad_arg(const char* fn, py::handle o, const py::array& param) {
  py::array g = float_input(o, fn, "grad");
  same_dtype(fn, param, "param", g, "grad");
  same_shape(fn, param, "param", g, "grad");
  return g;
}

// The optional step statistics (kernels.h StepStatsOut): offsets (S+1) int64 from 0 to param's
// size, non-decreasing, and stats a writeable C-contiguous float64 (S, kStepStats); both None for
// none. The arrays are kept alive by the caller's handles for the call.
struct StepStatsArgs {
  py::array_t<std::int64_t, py::array::c_style> offsets;
  cpu::StepStatsOut out;
};
StepStatsArgs step_stats_arg(const char* fn, py::handle off_o, py::handle st_o,
                             const py::array& param) {
  StepStatsArgs r;
  if (off_o.is_none() && st_o.is_none()) return r;
  if (off_o.is_none() || st_o.is_none())
    fail_value(fn, "offsets and stats go together: pass both (step statistics) or neither");
  r.offsets = int_labels(off_o, fn, "offsets");
  const py::ssize_t S = r.offsets.ndim() == 1 ? r.offsets.shape(0) - 1 : -1;
  if (S < 0) fail_value(fn, "offsets must be a 1-D array of segment starts ending with the size");
  const std::int64_t* o = r.offsets.data();
  if (o[0] != 0 || o[S] != param.size())
    fail_value(fn, "offsets must run from 0 to param's size " + std::to_string(param.size()) +
                       ", got " + std::to_string(o[0]) + " .. " + std::to_string(o[S]));
  for (py::ssize_t s = 0; s < S; ++s)
    if (o[s + 1] < o[s]) fail_value(fn, "offsets must be non-decreasing");
  if (!py::isinstance<py::array>(st_o))
    fail_type(fn, "stats must be a float64 numpy array of shape (segments, " +
                      std::to_string(cpu::kStepStats) + ")");
  py::array st = py::reinterpret_borrow<py::array>(st_o);
  if (!is_f64(st) || st.ndim() != 2 || st.shape(0) != S || st.shape(1) != cpu::kStepStats ||
      !(st.flags() & py::array::c_style) || !st.writeable())
    fail_value(fn, "stats must be a writeable contiguous float64 array of shape (" +
                       std::to_string(S) + ", " + std::to_string(cpu::kStepStats) + "), got " +
                       dtype_str(st) + " " + shape_str(st));
  r.out = cpu::StepStatsOut{o, static_cast<index_t>(S), static_cast<double*>(st.mutable_data())};
  return r;
}

void sgd_step(py::handle param_o, py::handle grad_o, py::handle buf_o, double lr, double momentum,
              double dampening, bool nesterov, double weight_decay, bool first_step,
              py::handle off_o, py::handle st_o) {
  const char* fn = "sgd_step";
  check_sgd_hyper(fn, lr, momentum, dampening, nesterov, weight_decay);
  py::array param = float_output(param_o, fn, "param");
  const StepStatsArgs sa = step_stats_arg(fn, off_o, st_o, param);
  py::array grad = grad_arg(fn, grad_o, param);
  py::array buf;
  if (momentum != 0) buf = state_arg(fn, buf_o, "momentum_buf", param);
  dispatch_float(param, [&](auto tag) {
    using T = decltype(tag);
    const SgdHyper<T> h{T(lr), T(momentum), T(dampening), T(weight_decay), nesterov, first_step};
    T* p = data_of<T>(param);
    T* b = momentum != 0 ? data_of<T>(buf) : nullptr;
    const T* g = cdata_of<T>(grad);
    py::gil_scoped_release nogil;
    cpu::sgd_step<T>(p, b, g, param.size(), h, sa.out);
  });
}

void adam_step(py::handle param_o, py::handle grad_o, py::handle m_o, py::handle v_o, long long step,
               double lr, double beta1, double beta2, double eps, double weight_decay, bool decoupled,
               py::handle off_o, py::handle st_o) {
  const char* fn = "adam_step";
  check_adam_hyper(fn, step, lr, beta1, beta2, eps, weight_decay);
  py::array param = float_output(param_o, fn, "param");
  const StepStatsArgs sa = step_stats_arg(fn, off_o, st_o, param);
  py::array grad = grad_arg(fn, grad_o, param);
  py::array m = state_arg(fn, m_o, "m", param);
  py::array v = state_arg(fn, v_o, "v", param);
  dispatch_float(param, [&](auto tag) {
    using T = decltype(tag);
    const AdamHyper<T> h = make_adam_hyper<T>(lr, beta1, beta2, eps, weight_decay, step, decoupled);
    T* p = data_of<T>(param);
    T* pm = data_of<T>(m);
    T* pv = data_of<T>(v);
    const T* g = cdata_of<T>(grad);
    py::gil_scoped_release nogil;
    cpu::adam_step<T>(p, pm, pv, g, param.size(), h, sa.out);
  });
}

void rmsprop_step(py::handle param_o, py::handle grad_o, py::handle sq_o, double lr, double alpha,
                  double eps, double weight_decay, double momentum, py::handle buf_o, bool centered,
                  py::handle ga_o, py::handle off_o, py::handle st_o) {
  const char* fn = "rmsprop_step";
  check_rmsprop_hyper(fn, lr, alpha, eps, weight_decay, momentum);
  py::array param = float_output(param_o, fn, "param");
  const StepStatsArgs sa = step_stats_arg(fn, off_o, st_o, param);
  py::array grad = grad_arg(fn, grad_o, param);
  py::array sq = state_arg(fn, sq_o, "square_avg", param);
  py::array buf, ga;
  if (momentum > 0) buf = state_arg(fn, buf_o, "momentum_buf", param);
  if (centered) ga = state_arg(fn, ga_o, "grad_avg", param);
  dispatch_float(param, [&](auto tag) {
    using T = decltype(tag);
    const RmspropHyper<T> h{T(lr), T(alpha), T(eps), T(weight_decay), T(momentum), centered};
    T* p = data_of<T>(param);
    T* s = data_of<T>(sq);
    T* b = momentum > 0 ? data_of<T>(buf) : nullptr;
    T* a = centered ? data_of<T>(ga) : nullptr;
    const T* g = cdata_of<T>(grad);
    py::gil_scoped_release nogil;
    cpu::rmsprop_step<T>(p, s, b, a, g, param.size(), h, sa.out);
  });
}

void bind_optim(py::module_& m) {
  m.def("sgd_step", &sgd_step, py::arg("param"), py::arg("grad"), py::arg("momentum_buf"), py::arg("lr"),
        py::arg("momentum") = 0.0, py::arg("dampening") = 0.0, py::arg("nesterov") = false,
        py::arg("weight_decay") = 0.0, py::arg("first_step") = false,
        py::arg("offsets") = py::none(), py::arg("stats") = py::none(),
        "torch.optim.SGD's update in place; momentum_buf may be None when momentum == 0. "
        "offsets (S+1) and stats (S, 8): step statistics per segment (see adam_step).");
  m.def("adam_step", &adam_step, py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"),
        py::arg("step"), py::arg("lr") = 1e-3, py::arg("beta1") = 0.9, py::arg("beta2") = 0.999,
        py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0, py::arg("decoupled") = false,
        py::arg("offsets") = py::none(), py::arg("stats") = py::none(),
        "torch.optim.Adam (decoupled=False) / AdamW (decoupled=True) update in place; step counts "
        "from 1. With offsets (S+1, segment starts and the size) and stats (float64 (S, 8)), "
        "each segment's row gets ||grad|| (NaN if non-finite), L-inf of its finite values, "
        "non-finite count, first non-finite index (-1), ||param|| after, ||update||, 1 (filled).");
  m.def("rmsprop_step", &rmsprop_step, py::arg("param"), py::arg("grad"), py::arg("square_avg"),
        py::arg("lr") = 1e-2, py::arg("alpha") = 0.99, py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0,
        py::arg("momentum") = 0.0, py::arg("momentum_buf") = py::none(), py::arg("centered") = false,
        py::arg("grad_avg") = py::none(), py::arg("offsets") = py::none(),
        py::arg("stats") = py::none(),
        "torch.optim.RMSprop's update in place; offsets/stats: step statistics (see adam_step).");
}

DG_REGISTER_BINDINGS(bind_optim);

}  // namespace
}  // namespace dg::bind
