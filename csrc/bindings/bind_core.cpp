// Small core entry points shared by every family (kept here so the module always has them).
#include "bindings/check.h"
#include "bindings/registry.h"

namespace dg::bind {
namespace {

void bind_core(py::module_& m) {
  m.def("has_nonfinite", [](py::handle x) {
    py::array a = float_input(x, "has_nonfinite", "x");
    return dispatch_float(a, [&](auto tag) {
      using T = decltype(tag);
      const T* p = cdata_of<T>(a);
      const py::ssize_t n = a.size();
      py::gil_scoped_release nogil;
      for (py::ssize_t i = 0; i < n; ++i)
        if (!std::isfinite(p[i])) return true;
      return false;
    });
  }, py::arg("x"), "True if x holds any NaN or Inf.");
}

DG_REGISTER_BINDINGS(bind_core);

}  // namespace
}  // namespace dg::bind
