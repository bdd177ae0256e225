// Checked entry points for layer norm on the CPU (kernels in csrc/cpu/norm_layers.cpp); the same
// signatures as cuda_layer_norm_forward / cuda_layer_norm_backward.
#include <cmath>
#include <string>

#include "bindings/check.h"
#include "bindings/registry.h"
#include "cpu/norm_layers.h"

namespace dg::bind {
namespace {

// A null array handle: absent (py::array() would be an empty array with a data pointer).
py::array absent() { return py::reinterpret_steal<py::array>(py::handle()); }

// gamma / beta / dgamma / dbeta: None (absent), or a (d,) array of x's dtype.
py::array opt_vector(py::handle o, const char* fn, const char* name, const py::array& x,
                     py::ssize_t d, bool output) {
  if (o.is_none()) return absent();
  py::array a = output ? float_output(o, fn, name) : float_input(o, fn, name);
  same_dtype(fn, x, "x", a, name);
  if (a.ndim() != 1 || a.shape(0) != d)
    fail_value(fn, std::string(name) + " has shape " + shape_str(a) + " but x has " +
                       std::to_string(d) + " features; it must be (" + std::to_string(d) + ",)");
  return a;
}

py::array checked_x(py::handle x_o, const char* fn) {
  py::array x = float_input(x_o, fn, "x");
  ndim_is(fn, x, "x", 2);
  if (x.shape(1) == 0)
    fail_value(fn, "x has shape " + shape_str(x) + ": there are no features to normalize");
  return x;
}

template <class T> const T* cptr(const py::array& a) { return a.ptr() ? cdata_of<T>(a) : nullptr; }
template <class T> T* mptr(py::array& a) { return a.ptr() ? data_of<T>(a) : nullptr; }

py::tuple layer_norm_forward(py::handle x_o, py::handle gamma_o, py::handle beta_o, double eps) {
  const char* fn = "layer_norm_forward";
  py::array x = checked_x(x_o, fn);
  if (!(eps > 0) || !std::isfinite(eps))
    fail_value(fn, "eps must be a finite number > 0, got " + std::to_string(eps));
  const py::ssize_t n = x.shape(0), d = x.shape(1);
  py::array gamma = opt_vector(gamma_o, fn, "gamma", x, d, false);
  py::array beta = opt_vector(beta_o, fn, "beta", x, d, false);
  py::array y(x.dtype(), std::vector<py::ssize_t>{n, d});
  py::array mean(x.dtype(), std::vector<py::ssize_t>{n});
  py::array invstd(x.dtype(), std::vector<py::ssize_t>{n});
  dispatch_float(x, [&](auto tag) {
    using T = decltype(tag);
    T *py_ = data_of<T>(y), *pm = data_of<T>(mean), *pi = data_of<T>(invstd);
    const T *px = cdata_of<T>(x), *pg = cptr<T>(gamma), *pb = cptr<T>(beta);
    py::gil_scoped_release nogil;
    cpu::layer_norm_forward<T>(py_, pm, pi, px, pg, pb, n, d, eps);
  });
  return py::make_tuple(y, mean, invstd);
}

py::object layer_norm_backward(py::handle dy_o, py::handle x_o, py::handle gamma_o,
                               py::handle mean_o, py::handle invstd_o, py::handle dgamma_o,
                               py::handle dbeta_o, bool need_dx) {
  const char* fn = "layer_norm_backward";
  py::array x = checked_x(x_o, fn);
  py::array dy = float_input(dy_o, fn, "dy");
  same_dtype(fn, x, "x", dy, "dy");
  same_shape(fn, x, "x", dy, "dy");
  const py::ssize_t n = x.shape(0), d = x.shape(1);
  py::array gamma = opt_vector(gamma_o, fn, "gamma", x, d, false);
  py::array stats[2];
  const char* names[2] = {"save_mean", "save_invstd"};
  for (int i = 0; i < 2; ++i) {
    stats[i] = float_input(i ? invstd_o : mean_o, fn, names[i]);
    same_dtype(fn, x, "x", stats[i], names[i]);
    if (stats[i].ndim() != 1 || stats[i].shape(0) != n)
      fail_value(fn, std::string(names[i]) + " has shape " + shape_str(stats[i]) + " but x has " +
                         std::to_string(n) + " rows; pass what layer_norm_forward returned");
  }
  py::array dgamma = opt_vector(dgamma_o, fn, "dgamma", x, d, true);
  py::array dbeta = opt_vector(dbeta_o, fn, "dbeta", x, d, true);
  py::array dx = need_dx ? py::array(x.dtype(), std::vector<py::ssize_t>{n, d}) : absent();
  dispatch_float(x, [&](auto tag) {
    using T = decltype(tag);
    T *pdx = mptr<T>(dx), *pdg = mptr<T>(dgamma), *pdb = mptr<T>(dbeta);
    const T *pdy = cdata_of<T>(dy), *px = cdata_of<T>(x), *pg = cptr<T>(gamma);
    const T *pm = cdata_of<T>(stats[0]), *pi = cdata_of<T>(stats[1]);
    py::gil_scoped_release nogil;
    cpu::layer_norm_backward<T>(pdx, pdg, pdb, pdy, px, pg, pm, pi, n, d);
  });
  return need_dx ? py::object(dx) : py::object(py::none());
}

void bind_norm_layers(py::module_& m) {
  m.def("layer_norm_forward", &layer_norm_forward, py::arg("x"), py::arg("gamma"),
        py::arg("beta"), py::arg("eps") = 1e-5,
        "Layer norm over the rows of x (N, D); gamma/beta (D,) or None. Returns (y, save_mean "
        "(N,), save_invstd (N,)); statistics in float64, NaN rows for non-finite input.");
  m.def("layer_norm_backward", &layer_norm_backward, py::arg("dy"), py::arg("x"),
        py::arg("gamma"), py::arg("save_mean"), py::arg("save_invstd"), py::arg("dgamma"),
        py::arg("dbeta"), py::arg("need_dx") = true,
        "Backward of layer_norm_forward: returns dx (N, D) (None unless need_dx); dgamma and "
        "dbeta (D,) (or None) are accumulated into (+=).");
}

DG_REGISTER_BINDINGS(bind_norm_layers);

}  // namespace
}  // namespace dg::bind
