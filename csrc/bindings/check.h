// Argument checking for the Python boundary. Every entry point validates its numpy arguments
// here, once, and raises ValueError/TypeError whose message names the function, the argument,
// what it got and what it expected. Kernels behind this boundary trust their inputs.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "deepgrad/common.h"
#include "deepgrad/math.h"

namespace dg::bind {

namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s << ", ";
    s << a.shape(i);
  }
  if (a.ndim() == 1) s << ",";
  s << ")";
  return s.str();
}

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

[[noreturn]] inline void fail_value(const char* fn, const std::string& msg) {
  throw py::value_error(std::string(fn) + ": " + msg);
}
[[noreturn]] inline void fail_type(const char* fn, const std::string& msg) {
  throw py::type_error(std::string(fn) + ": " + msg);
}

// Raises Python's MemoryError with "<fn>: <msg>".
[[noreturn]] inline void fail_memory(const char* fn, const std::string& msg) {
  PyErr_SetString(PyExc_MemoryError, (std::string(fn) + ": " + msg).c_str());
  throw py::error_already_set();
}

// `a` converted by numpy (C order and/or another dtype: `flags` as for py::array::ensure).
// py::array::ensure returns a null array AND clears the Python error when numpy cannot make the
// copy; for an array input that only happens when the copy cannot be allocated (a broadcast
// view of a huge logical size, memory pressure), so a null result is a MemoryError naming the
// entry point and the argument, never a null array to dereference. Every conversion of an input
// array at the boundary goes through here.
template <class Ensured>
inline Ensured checked_copy(Ensured converted, const py::array& a, const char* fn,
                            const char* name) {
  if (!converted)
    fail_memory(fn, "could not allocate a C-contiguous copy of " + std::string(name) + " " +
                        shape_str(a) + " of " + dtype_str(a) + " (" +
                        std::to_string(static_cast<long long>(a.size())) +
                        " elements); pass a smaller array, or a contiguous one "
                        "(np.ascontiguousarray) that needs no copy");
  return converted;
}

enum class DType { f32, f64 };

inline bool is_f32(const py::array& a) { return a.dtype().is(py::dtype::of<float>()); }
inline bool is_f64(const py::array& a) { return a.dtype().is(py::dtype::of<double>()); }

// An input array of float32 or float64. Non-contiguous inputs are copied to C order (never
// misread); other dtypes (integers, float16, object) are rejected with a TypeError.
inline py::array float_input(py::handle obj, const char* fn, const char* name) {
  if (!py::isinstance<py::array>(obj))
    fail_type(fn, std::string(name) + " must be a numpy array of float32 or float64, got " +
                      py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!is_f32(a) && !is_f64(a))
    fail_type(fn, std::string(name) + " has dtype " + dtype_str(a) +
                      " but deepgrad kernels take float32 or float64; convert with .astype(np.float32)");
  if (!(a.flags() & py::array::c_style))
    a = checked_copy(py::array::ensure(a, py::array::c_style | py::array::forcecast), a, fn, name);
  return a;
}

// An output array written in place: float32/float64, C-contiguous and writeable.
inline py::array float_output(py::handle obj, const char* fn, const char* name) {
  if (!py::isinstance<py::array>(obj))
    fail_type(fn, std::string(name) + " must be a numpy array (written in place)");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!is_f32(a) && !is_f64(a))
    fail_type(fn, std::string(name) + " has dtype " + dtype_str(a) + " but must be float32 or float64");
  if (!(a.flags() & py::array::c_style))
    fail_value(fn, std::string(name) + " is written in place and must be C-contiguous; "
                                       "pass np.ascontiguousarray(...) and use the result");
  if (!a.writeable()) fail_value(fn, std::string(name) + " is read-only but is written in place");
  return a;
}

// Integer class labels: any integer dtype, converted to a contiguous int64 array.
inline py::array_t<std::int64_t, py::array::c_style> int_labels(py::handle obj, const char* fn,
                                                               const char* name) {
  if (!py::isinstance<py::array>(obj)) fail_type(fn, std::string(name) + " must be a numpy integer array");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u')
    fail_type(fn, std::string(name) + " has dtype " + dtype_str(a) + " but class labels must be integers");
  // forcecast: uint64 (or any other integer dtype) converts too; without it ensure() returns a
  // null array for "unsafe" casts.
  py::array out = checked_copy(
      py::array(py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(a)),
      a, fn, name);
  return py::array_t<std::int64_t, py::array::c_style>(out);
}

inline void same_dtype(const char* fn, const py::array& a, const char* an, const py::array& b,
                       const char* bn) {
  if (!a.dtype().is(b.dtype()))
    fail_type(fn, std::string(an) + " has dtype " + dtype_str(a) + " but " + bn + " has dtype " +
                      dtype_str(b) + "; they must match");
}

inline void ndim_is(const char* fn, const py::array& a, const char* name, py::ssize_t nd) {
  if (a.ndim() != nd)
    fail_value(fn, std::string(name) + " must be " + std::to_string(nd) + "-D, got shape " + shape_str(a));
}

inline void same_shape(const char* fn, const py::array& a, const char* an, const py::array& b,
                       const char* bn) {
  bool ok = a.ndim() == b.ndim();
  for (py::ssize_t i = 0; ok && i < a.ndim(); ++i) ok = a.shape(i) == b.shape(i);
  if (!ok)
    fail_value(fn, std::string(an) + " has shape " + shape_str(a) + " but " + bn + " has shape " +
                       shape_str(b) + "; they must match");
}

// An activation name (the kernels' Act), or a ValueError listing the valid names.
inline Act parse_activation(const char* fn, const std::string& name) {
  Act act;
  if (!parse_act(name.c_str(), &act))
    fail_value(fn, "unknown activation '" + name + "'; valid names: " + act_names());
  return act;
}

// Calls f.template operator()<T>() with T = float or double according to a's dtype.
template <class F>
decltype(auto) dispatch_float(const py::array& a, F&& f) {
  if (is_f32(a)) return f(float{});
  return f(double{});
}

template <class T>
inline T* data_of(py::array& a) { return static_cast<T*>(a.mutable_data()); }
template <class T>
inline const T* cdata_of(const py::array& a) { return static_cast<const T*>(a.data()); }

}  // namespace dg::bind
