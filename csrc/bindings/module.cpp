// The pybind11 module deepgrad._C. Each kernel family registers its entry points from its own
// bindings file through a bind_* function declared in bindings/registry.h.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/registry.h"
#include "deepgrad/common.h"
#include "deepgrad/cpu_features.h"
#ifdef DG_HAVE_CUDA
#include "deepgrad/cuda_info.h"
#endif
#ifdef DG_HAVE_OPENMP
#include <omp.h>
#endif

namespace py = pybind11;

#ifndef DG_VERSION
#define DG_VERSION "0.0.0"
#endif
#ifndef DG_CXX_COMPILER
#define DG_CXX_COMPILER "unknown"
#endif

static py::dict build_info() {
  py::dict d;
  d["version"] = DG_VERSION;
  d["compiler"] = DG_CXX_COMPILER;
  d["simd"] = dg::cpu_has_avx2_fma() ? "avx2+fma" : "portable";
#ifdef DG_HAVE_OPENMP
  d["openmp"] = true;
#else
  d["openmp"] = false;
#endif
  d["threads"] = dg::max_threads();
#ifdef DG_HAVE_CUDA
  d["cuda"] = true;
  d["cuda_architectures"] = std::string(DG_CUDA_ARCHS);
  d["cuda_device_count"] = dg::cuda::device_count();
#else
  d["cuda"] = false;
  d["cuda_architectures"] = "";
  d["cuda_device_count"] = 0;
#endif
  return d;
}

static void set_num_threads(int n) {
  if (n < 1) throw py::value_error("set_num_threads: n must be >= 1, got " + std::to_string(n));
#ifdef DG_HAVE_OPENMP
  omp_set_num_threads(n);
#endif
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "deepgrad native kernels (private; use the deepgrad package)";
  m.def("build_info", &build_info, "Facts about how this extension was built.");
  m.def("get_num_threads", &dg::max_threads, "Threads the kernels may use.");
  m.def("set_num_threads", &set_num_threads, py::arg("n"), "Set the threads the kernels may use.");
  dg::bind::register_all(m);
}
