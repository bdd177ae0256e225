// Small core entry points shared by every family (kept here so the module always has them).
#include "bindings/check.h"
#include "bindings/registry.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

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

  m.def("_tune_malloc", [](py::ssize_t top_pad, py::ssize_t mmap_threshold) {
#if defined(__GLIBC__)
    if (top_pad < 0 || mmap_threshold < 0 || top_pad > (py::ssize_t(1) << 30) ||
        mmap_threshold > (py::ssize_t(1) << 30))
      fail_value("_tune_malloc", "sizes must be in [0, 1 GiB]");
    return mallopt(M_TOP_PAD, static_cast<int>(top_pad)) == 1 &&
           mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold)) == 1;
#else
    (void)top_pad, (void)mmap_threshold;
    return false;
#endif
  }, py::arg("top_pad"), py::arg("mmap_threshold"),
     "glibc mallopt(M_TOP_PAD, top_pad) and mallopt(M_MMAP_THRESHOLD, mmap_threshold); False "
     "where the C library is not glibc. See deepgrad/__init__.py.");
}

DG_REGISTER_BINDINGS(bind_core);

}  // namespace
}  // namespace dg::bind
