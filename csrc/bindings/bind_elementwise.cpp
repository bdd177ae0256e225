// Checked entry points for activations, softmax, losses, segment norms and in-place buffer ops
// (kernels in csrc/cpu/{activations,softmax,losses,reduce}.cpp).
#include <cmath>
#include <string>
#include <vector>

#include "bindings/check.h"
#include "bindings/registry.h"
#ifdef DG_HAVE_AVX2_BUILD
#include "cpu/avx2/act_avx2.h"
#endif
#include "deepgrad/cpu_features.h"
#include "deepgrad/kernels.h"

namespace dg::bind {
namespace {

std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}


// Test hook: float32 sigmoid / tanh / silu through one intrinsics path ('avx2' or 'avx512').
py::array act_f32_isa(py::handle x_o, const std::string& act, const std::string& isa) {
  const char* fn = "_act_f32_isa";
  py::array x = float_input(x_o, fn, "x");
  if (!is_f32(x)) fail_type(fn, "x must be float32");
  if (act != "sigmoid" && act != "tanh" && act != "silu")
    fail_value(fn, "activation must be sigmoid, tanh or silu, got '" + act + "'");
  py::array_t<float> y(shape_of(x));
  const float* px = cdata_of<float>(x);
  float* py_ = y.mutable_data();
  const index_t n = static_cast<index_t>(x.size());
  bool done = false;
#ifdef DG_HAVE_AVX2_BUILD
  if (isa == "avx2" && cpu_has_avx2_fma()) {
    if (act == "sigmoid") avx2::sigmoid_f32(py_, px, n);
    else if (act == "tanh") avx2::tanh_f32(py_, px, n);
    else avx2::silu_f32(py_, px, n);
    done = true;
  } else if (isa == "avx512" && cpu_has_avx2_fma() && cpu_has_avx512f()) {
    if (act == "sigmoid") avx512::sigmoid_f32(py_, px, n);
    else if (act == "tanh") avx512::tanh_f32(py_, px, n);
    else avx512::silu_f32(py_, px, n);
    done = true;
  }
#endif
  if (!done) fail_value(fn, "this build or CPU has no " + isa + " activation loop");
  return y;
}

void finite_scalar(const char* fn, const char* name, double v) {
  if (!std::isfinite(v)) fail_value(fn, std::string(name) + " must be finite, got " + std::to_string(v));
}

// ---- activations ----------------------------------------------------------------------------

py::array act_forward(py::handle x_o, const std::string& activation, double alpha) {
  const char* fn = "act_forward";
  const Act a = parse_activation(fn, activation);
  finite_scalar(fn, "alpha", alpha);
  py::array x = float_input(x_o, fn, "x");
  py::array y(x.dtype(), shape_of(x));
  dispatch_float(x, [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    cpu::act_forward<T>(data_of<T>(y), cdata_of<T>(x), x.size(), a, T(alpha));
  });
  return y;
}

py::array act_backward(py::handle dy_o, py::handle z_o, py::handle y_o, const std::string& activation,
                       double alpha) {
  const char* fn = "act_backward";
  const Act a = parse_activation(fn, activation);
  finite_scalar(fn, "alpha", alpha);
  py::array dy = float_input(dy_o, fn, "dy");
  py::array z, y;
  const bool has_z = !z_o.is_none(), has_y = !y_o.is_none();
  if (!has_z && !has_y && a != Act::identity && a != Act::step)
    fail_value(fn, "z and y are both None; pass the pre-activation z (or the output y)");
  if (!has_z && act_needs_pre(a))
    fail_value(fn, "activation '" + activation + "' needs the pre-activation z, but z is None");
  if (has_z) {
    z = float_input(z_o, fn, "z");
    same_dtype(fn, dy, "dy", z, "z");
    same_shape(fn, dy, "dy", z, "z");
  }
  if (has_y) {
    y = float_input(y_o, fn, "y");
    same_dtype(fn, dy, "dy", y, "y");
    same_shape(fn, dy, "dy", y, "y");
  }
  py::array dz(dy.dtype(), shape_of(dy));
  dispatch_float(dy, [&](auto tag) {
    using T = decltype(tag);
    const T* pz = has_z ? cdata_of<T>(z) : nullptr;
    const T* py_ = has_y ? cdata_of<T>(y) : nullptr;
    py::gil_scoped_release nogil;
    cpu::act_backward<T>(data_of<T>(dz), cdata_of<T>(dy), pz, py_, dy.size(), a, T(alpha));
  });
  return dz;
}

// ---- softmax ---------------------------------------------------------------------------------

py::array softmax_fwd(const char* fn, py::handle x_o, bool log) {
  py::array x = float_input(x_o, fn, "x");
  if (x.ndim() < 1) fail_value(fn, "x must have at least one axis (softmax runs over the last), got a 0-d array");
  const py::ssize_t cols = x.shape(x.ndim() - 1), rows = cols ? x.size() / cols : 0;
  py::array y(x.dtype(), shape_of(x));
  dispatch_float(x, [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    cpu::softmax_forward<T>(data_of<T>(y), cdata_of<T>(x), rows, cols, log);
  });
  return y;
}

py::array softmax_bwd(const char* fn, py::handle dy_o, py::handle y_o, bool log) {
  py::array dy = float_input(dy_o, fn, "dy");
  py::array y = float_input(y_o, fn, "y");
  same_dtype(fn, dy, "dy", y, "y");
  same_shape(fn, dy, "dy", y, "y");
  if (y.ndim() < 1) fail_value(fn, "y must have at least one axis (softmax runs over the last), got a 0-d array");
  const py::ssize_t cols = y.shape(y.ndim() - 1), rows = cols ? y.size() / cols : 0;
  py::array dx(y.dtype(), shape_of(y));
  dispatch_float(y, [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    cpu::softmax_backward<T>(data_of<T>(dx), cdata_of<T>(dy), cdata_of<T>(y), rows, cols, log);
  });
  return dx;
}

// ---- losses ----------------------------------------------------------------------------------

struct LossArgs {
  Loss kind;
  Reduction red;
  py::array pred, target;                           // target: float (elementwise) or unused
  py::array_t<std::int64_t, py::array::c_style> labels;  // cross_entropy only
  py::ssize_t N = 0, C = 0;                          // cross_entropy: logits (N, C)
  std::vector<py::ssize_t> terms_shape;             // shape of the per-sample losses
  py::ssize_t terms = 0;                            // their count (the divisor of "mean")
};

LossArgs loss_args(const char* fn, const std::string& kind, py::handle pred_o, py::handle target_o,
                   const std::string& reduction) {
  LossArgs L;
  if (!parse_loss(kind.c_str(), &L.kind))
    fail_value(fn, "unknown loss '" + kind + "'; valid kinds: " + loss_names());
  if (!parse_reduction(reduction.c_str(), &L.red))
    fail_value(fn, "unknown reduction '" + reduction + "'; valid reductions: " + reduction_names());
  L.pred = float_input(pred_o, fn, "pred");
  if (L.kind == Loss::cross_entropy) {
    ndim_is(fn, L.pred, "pred", 2);
    L.N = L.pred.shape(0);
    L.C = L.pred.shape(1);
    if (L.N == 0) fail_value(fn, "pred has shape " + shape_str(L.pred) + ": the batch is empty");
    if (L.C == 0) fail_value(fn, "pred has shape " + shape_str(L.pred) + ": there are no classes");
    L.labels = int_labels(target_o, fn, "target");
    if (L.labels.ndim() != 1 || L.labels.shape(0) != L.N)
      fail_value(fn, "target has shape " + shape_str(L.labels) + " but pred has shape " +
                         shape_str(L.pred) + "; target must be (" + std::to_string(L.N) +
                         ",) integer class labels");
    const std::int64_t* lab = L.labels.data();
    for (py::ssize_t i = 0; i < L.N; ++i)
      if (lab[i] < 0 || lab[i] >= L.C)
        fail_value(fn, "target[" + std::to_string(i) + "] = " + std::to_string(lab[i]) +
                           " is not a class index in [0, " + std::to_string(L.C) + ")");
    L.terms_shape = {L.N};
    L.terms = L.N;
  } else {
    L.target = float_input(target_o, fn, "target");
    same_dtype(fn, L.pred, "pred", L.target, "target");
    same_shape(fn, L.pred, "pred", L.target, "target");
    if (L.pred.size() == 0) fail_value(fn, "pred has shape " + shape_str(L.pred) + ": the batch is empty");
    if (L.kind == Loss::bce) {
      // PyTorch's rule: probabilities outside [0, 1] are an error (NaN passes through).
      const bool bad = dispatch_float(L.pred, [&](auto tag) {
        using T = decltype(tag);
        const T* p = cdata_of<T>(L.pred);
        for (py::ssize_t i = 0; i < L.pred.size(); ++i)
          if (p[i] < T(0) || p[i] > T(1)) return true;
        return false;
      });
      if (bad) fail_value(fn, "bce takes probabilities in [0, 1] as pred; use 'bce_logits' for logits");
    }
    L.terms_shape = shape_of(L.pred);
    L.terms = L.pred.size();
  }
  return L;
}

py::object loss_forward(const std::string& kind, py::handle pred_o, py::handle target_o,
                        const std::string& reduction) {
  const char* fn = "loss_forward";
  LossArgs L = loss_args(fn, kind, pred_o, target_o, reduction);
  py::array terms;
  if (L.red == Reduction::none) terms = py::array(L.pred.dtype(), L.terms_shape);
  const double total = dispatch_float(L.pred, [&](auto tag) {
    using T = decltype(tag);
    T* pt = L.red == Reduction::none ? data_of<T>(terms) : nullptr;
    const T* p = cdata_of<T>(L.pred);
    if (L.kind == Loss::cross_entropy) {
      const std::int64_t* lab = L.labels.data();
      py::gil_scoped_release nogil;
      return cpu::cross_entropy_forward<T>(pt, p, lab, L.N, L.C);
    }
    const T* t = cdata_of<T>(L.target);
    py::gil_scoped_release nogil;
    return cpu::loss_forward<T>(pt, L.kind, p, t, L.terms);
  });
  if (L.red == Reduction::none) return std::move(terms);
  return py::float_(L.red == Reduction::mean ? total / double(L.terms) : total);
}

py::array loss_backward(const std::string& kind, py::handle pred_o, py::handle target_o,
                        const std::string& reduction, py::handle grad_o) {
  const char* fn = "loss_backward";
  LossArgs L = loss_args(fn, kind, pred_o, target_o, reduction);
  py::array g;
  double scale = 1.0;
  if (L.red == Reduction::none) {
    if (!py::isinstance<py::array>(grad_o))
      fail_type(fn, "with reduction 'none', grad must be an array of the per-sample losses' shape");
    g = float_input(grad_o, fn, "grad");
    same_dtype(fn, L.pred, "pred", g, "grad");
    py::array ref(L.pred.dtype(), L.terms_shape);
    same_shape(fn, g, "grad", ref, "the per-sample losses");
  } else {
    if (py::isinstance<py::array>(grad_o) && py::reinterpret_borrow<py::array>(grad_o).size() != 1)
      fail_value(fn, "grad has shape " + shape_str(py::reinterpret_borrow<py::array>(grad_o)) +
                         " but with reduction '" + reduction + "' it must be a scalar (the loss's gradient)");
    try {
      scale = py::cast<double>(grad_o);
    } catch (const py::cast_error&) {
      fail_type(fn, "with reduction '" + reduction + "', grad must be a float");
    }
    if (L.red == Reduction::mean) scale /= double(L.terms);
  }
  py::array d(L.pred.dtype(), shape_of(L.pred));
  dispatch_float(L.pred, [&](auto tag) {
    using T = decltype(tag);
    const T* pg = L.red == Reduction::none ? cdata_of<T>(g) : nullptr;
    const T* p = cdata_of<T>(L.pred);
    if (L.kind == Loss::cross_entropy) {
      const std::int64_t* lab = L.labels.data();
      py::gil_scoped_release nogil;
      cpu::cross_entropy_backward<T>(data_of<T>(d), p, lab, pg, T(scale), L.N, L.C);
      return;
    }
    const T* t = cdata_of<T>(L.target);
    py::gil_scoped_release nogil;
    cpu::loss_backward<T>(data_of<T>(d), L.kind, p, t, pg, T(scale), L.terms);
  });
  return d;
}

// ---- norms and in-place ops ------------------------------------------------------------------

py::tuple segment_norms(py::handle buf_o, py::handle offsets_o) {
  const char* fn = "segment_norms";
  py::array buf = float_input(buf_o, fn, "buf");
  auto off = int_labels(offsets_o, fn, "offsets");
  if (off.ndim() != 1 || off.shape(0) < 1)
    fail_value(fn, "offsets must be 1-D with S+1 >= 1 entries (segment starts, then buf.size), got shape " +
                       shape_str(off));
  const py::ssize_t S = off.shape(0) - 1;
  const std::int64_t* o = off.data();
  if (o[0] != 0) fail_value(fn, "offsets[0] must be 0, got " + std::to_string(o[0]));
  for (py::ssize_t s = 0; s < S; ++s)
    if (o[s + 1] < o[s])
      fail_value(fn, "offsets must be non-decreasing, but offsets[" + std::to_string(s + 1) + "] = " +
                         std::to_string(o[s + 1]) + " < offsets[" + std::to_string(s) + "] = " +
                         std::to_string(o[s]));
  if (o[S] != buf.size())
    fail_value(fn, "offsets[-1] = " + std::to_string(o[S]) + " but buf has " + std::to_string(buf.size()) +
                       " elements; the last offset must equal buf.size");
  py::array_t<double> norms(S);
  double total = 0;
  const index_t nonfinite = dispatch_float(buf, [&](auto tag) {
    using T = decltype(tag);
    double* pn = norms.mutable_data();
    const T* x = cdata_of<T>(buf);
    py::gil_scoped_release nogil;
    return cpu::segment_norms<T>(pn, &total, x, o, S);
  });
  return py::make_tuple(norms, total, nonfinite);
}

void scale_(py::handle buf_o, double factor) {
  py::array buf = float_output(buf_o, "scale_", "buf");
  dispatch_float(buf, [&](auto tag) {
    using T = decltype(tag);
    T* x = data_of<T>(buf);
    py::gil_scoped_release nogil;
    cpu::scale_inplace<T>(x, buf.size(), T(factor));
  });
}

void clip_value_(py::handle buf_o, double clip) {
  const char* fn = "clip_value_";
  if (!(clip >= 0)) fail_value(fn, "clip must be >= 0, got " + std::to_string(clip));
  py::array buf = float_output(buf_o, fn, "buf");
  dispatch_float(buf, [&](auto tag) {
    using T = decltype(tag);
    T* x = data_of<T>(buf);
    py::gil_scoped_release nogil;
    cpu::clip_value_inplace<T>(x, buf.size(), T(clip));
  });
}

void fill_(py::handle buf_o, double value) {
  py::array buf = float_output(buf_o, "fill_", "buf");
  dispatch_float(buf, [&](auto tag) {
    using T = decltype(tag);
    T* x = data_of<T>(buf);
    py::gil_scoped_release nogil;
    cpu::fill_inplace<T>(x, buf.size(), T(value));
  });
}

void bind_elementwise(py::module_& m) {
  m.def("_act_f32_isa", &act_f32_isa, py::arg("x"), py::arg("activation"), py::arg("isa"),
        "Test hook: float32 sigmoid/tanh/silu through the 'avx2' or 'avx512' loop; ValueError "
        "when this build or CPU lacks it.");
  m.def("act_forward", &act_forward, py::arg("x"), py::arg("activation"), py::arg("alpha") = 0.01,
        "y = act(x), elementwise; x float32/float64 of any shape.");
  m.def("act_backward", &act_backward, py::arg("dy"), py::arg("z"), py::arg("y"), py::arg("activation"),
        py::arg("alpha") = 0.01, "dz = dy * act'(z); z may be None when the derivative needs only y.");
  m.def("softmax", [](py::handle x) { return softmax_fwd("softmax", x, false); }, py::arg("x"),
        "Row-wise softmax over the last axis (stable).");
  m.def("log_softmax", [](py::handle x) { return softmax_fwd("log_softmax", x, true); }, py::arg("x"),
        "Row-wise log_softmax over the last axis (stable).");
  m.def("softmax_backward", [](py::handle dy, py::handle y) { return softmax_bwd("softmax_backward", dy, y, false); },
        py::arg("dy"), py::arg("y"), "dx given dy and the softmax output y.");
  m.def("log_softmax_backward",
        [](py::handle dy, py::handle y) { return softmax_bwd("log_softmax_backward", dy, y, true); },
        py::arg("dy"), py::arg("y"), "dx given dy and the log_softmax output y.");
  m.def("loss_forward", &loss_forward, py::arg("kind"), py::arg("pred"), py::arg("target"),
        py::arg("reduction") = "mean",
        "Loss value (float for mean/sum, per-sample array for none); kind: mse, bce, bce_logits, cross_entropy.");
  m.def("loss_backward", &loss_backward, py::arg("kind"), py::arg("pred"), py::arg("target"),
        py::arg("reduction"), py::arg("grad"),
        "d loss / d pred; grad is a float (mean/sum) or an array of the per-sample losses' shape (none).");
  m.def("segment_norms", &segment_norms, py::arg("buf"), py::arg("offsets"),
        "(norms float64 (S,), total, nonfinite count): per-segment and global L2 norms, deterministic.");
  m.def("scale_", &scale_, py::arg("buf"), py::arg("factor"), "buf *= factor, in place.");
  m.def("clip_value_", &clip_value_, py::arg("buf"), py::arg("clip"), "Clamp buf to [-clip, clip], in place.");
  m.def("fill_", &fill_, py::arg("buf"), py::arg("value"), "buf[:] = value, in place.");
}

DG_REGISTER_BINDINGS(bind_elementwise);

}  // namespace
}  // namespace dg::bind
