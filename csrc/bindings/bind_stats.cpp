// Checked entry point for the GradientMonitor's per-layer activation statistics
// (csrc/cpu/act_stats.cpp).
#include <string>

#include "bindings/check.h"
#include "bindings/registry.h"
#include "deepgrad/kernels.h"

namespace dg::bind {
namespace {

py::tuple act_stats(py::handle z_o, py::handle y_o, int saturation, double center, double bound,
                    bool dead) {
  const char* fn = "act_stats";
  py::array z = float_input(z_o, fn, "z");
  ndim_is(fn, z, "z", 2);
  if (saturation < 0 || saturation > 2)
    fail_value(fn, "saturation must be 0 (none), 1 (on y) or 2 (on z), got " + std::to_string(saturation));
  const bool need_y = saturation == 1 || dead;
  py::array y;
  if (need_y) {
    if (y_o.is_none()) fail_value(fn, "y is needed for saturation=1 or dead=True but is None");
    y = float_input(y_o, fn, "y");
    same_dtype(fn, z, "z", y, "y");
    if (y.ndim() != 2 || y.shape(0) != z.shape(0) || y.shape(1) != z.shape(1))
      fail_value(fn, "y has shape " + shape_str(y) + " but z has shape " + shape_str(z) +
                         "; they must match");
  }
  const index_t n = z.shape(0), c = z.shape(1);
  double sums[2];
  index_t counts[2];
  dispatch_float(z, [&](auto tag) {
    using T = decltype(tag);
    const T* pz = cdata_of<T>(z);
    const T* py_ = need_y ? cdata_of<T>(y) : nullptr;
    py::gil_scoped_release nogil;
    cpu::act_stats<T>(sums, counts, pz, py_, n, c, saturation, T(center), T(bound), dead);
  });
  return py::make_tuple(sums[0], sums[1], counts[0], counts[1]);
}

void bind_stats(py::module_& m) {
  m.def("act_stats", &act_stats, py::arg("z"), py::arg("y"), py::arg("saturation") = 0,
        py::arg("center") = 0.0, py::arg("bound") = 0.0, py::arg("dead") = false,
        "z (N, C) pre-activation, y (N, C) output -> (sum z, sum z^2 in float64, count of "
        "|a - center| > bound with a = y (saturation=1) or z (saturation=2), columns with some "
        "y > 0 when dead), in one pass.");
}

DG_REGISTER_BINDINGS(bind_stats);

}  // namespace
}  // namespace dg::bind
