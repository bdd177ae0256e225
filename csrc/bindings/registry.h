// Self-registration of binding families: each csrc/bindings/*.cpp file defines a function that
// adds its entry points to the module and registers it with a static DG_REGISTER_BINDINGS(fn).
#pragma once
#include <pybind11/pybind11.h>
#include <vector>

namespace dg::bind {

using BindFn = void (*)(pybind11::module_&);

inline std::vector<BindFn>& registry() {
  static std::vector<BindFn> fns;
  return fns;
}

struct Registrar {
  explicit Registrar(BindFn fn) { registry().push_back(fn); }
};

inline void register_all(pybind11::module_& m) {
  for (BindFn fn : registry()) fn(m);
}

}  // namespace dg::bind

#define DG_CONCAT_INNER(a, b) a##b
#define DG_CONCAT(a, b) DG_CONCAT_INNER(a, b)
#define DG_REGISTER_BINDINGS(fn) \
  static ::dg::bind::Registrar DG_CONCAT(dg_registrar_, __LINE__)(fn)
