// The pybind11 module deepgrad._C. Each kernel family registers its entry points from its own
// bindings file through a bind_* function declared in bindings/registry.h.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

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

// The most threads set_num_threads accepts: 4 per core (more only oversubscribes; an absurd
// value used to reach OpenMP, whose failure to create threads exits the process).
static int thread_limit() {
  const unsigned hc = std::thread::hardware_concurrency();
  return 4 * static_cast<int>(hc ? hc : 1);
}

// Starts n - 1 threads and joins them before the setting changes, so a machine that cannot give
// that many threads (RLIMIT_NPROC, cgroup pids limit, memory for stacks) raises RuntimeError
// here, with the setting unchanged, instead of OpenMP exiting the process at the next fork.
static void probe_threads(int n) {
  std::vector<std::thread> ts;
  ts.reserve(static_cast<std::size_t>(n));
  int started = 1;
  try {
    for (int i = 1; i < n; ++i) {
      ts.emplace_back([] {});
      ++started;
    }
  } catch (const std::system_error& e) {
    for (auto& t : ts) t.join();
    throw std::runtime_error("set_num_threads: only " + std::to_string(started) + " of " +
                             std::to_string(n) + " threads could be started (" + e.what() +
                             "); the setting is unchanged, use fewer threads");
  }
  for (auto& t : ts) t.join();
}

static void set_num_threads(long long n) {
  const int lim = thread_limit();
  if (n < 1 || n > lim)
    throw py::value_error("set_num_threads: n must be between 1 and " + std::to_string(lim) +
                          " (4 per core on this machine), got " + std::to_string(n));
  if (n > dg::max_threads()) probe_threads(static_cast<int>(n));
  dg::set_max_threads(static_cast<int>(n));
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "deepgrad native kernels (private; use the deepgrad package)";
  m.def("build_info", &build_info, "Facts about how this extension was built.");
  m.def("get_num_threads", &dg::max_threads, "Threads the kernels may use.");
  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Set the threads the kernels may use, for the whole process (every Python thread).");
  m.def("max_num_threads", &thread_limit, "The largest value set_num_threads accepts.");
  dg::bind::register_all(m);
}
