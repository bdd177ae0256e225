// Argument checking for CUDA entry points (the device twin of bindings/check.h). Each checked
// entry point validates its CudaArray arguments here, once; messages name the function, the
// argument, what it got and what it expected. Use inside #ifdef DG_HAVE_CUDA only.
//
//   m.def("foo", [](py::handle x_, py::handle y_) {
//     const auto& x = cuda_arg(x_, "foo", "x", DType::f32);
//     auto& y = cuda_arg(y_, "foo", "y", DType::f32);
//     cuda_same_shape("foo", x, "x", y, "y");
//     launch_foo(y.data<float>(), x.data<float>(), x.numel(), dg::cuda::current_stream());
//   });
#pragma once
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bindings/check.h"
#include "deepgrad/cuda_array.h"

namespace dg::bind {

using dg::cuda::CudaArray;
using CDType = dg::cuda::DType;

inline std::string shape_str(const CudaArray& a) { return CudaArray::shape_str(a.shape); }

// The CudaArray behind a Python argument. A numpy array (or anything else) raises TypeError
// saying the op runs on CUDA; an array of the wrong dtype raises TypeError naming both dtypes.
inline CudaArray& cuda_arg(py::handle obj, const char* fn, const char* name) {
  if (!py::isinstance<CudaArray>(obj)) {
    if (py::isinstance<py::array>(obj))
      fail_type(fn, std::string(name) + " is a numpy array on the cpu but " + fn +
                        " runs on cuda; move it first (tensor.to('cuda'))");
    fail_type(fn, std::string(name) + " must be a deepgrad._C.CudaArray, got " +
                      py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  }
  return obj.cast<CudaArray&>();
}
inline CudaArray& cuda_arg(py::handle obj, const char* fn, const char* name, CDType dtype) {
  CudaArray& a = cuda_arg(obj, fn, name);
  if (a.dtype != dtype)
    fail_type(fn, std::string(name) + " has dtype " + dg::cuda::dtype_name(a.dtype) + " but " +
                      fn + " takes " + dg::cuda::dtype_name(dtype));
  return a;
}
// None -> nullptr, else as cuda_arg.
inline CudaArray* cuda_opt_arg(py::handle obj, const char* fn, const char* name, CDType dtype) {
  if (obj.is_none()) return nullptr;
  return &cuda_arg(obj, fn, name, dtype);
}

// A float32 CudaArray argument, and the same or nullptr for None.
inline CudaArray& cuda_f32(py::handle obj, const char* fn, const char* name) {
  return cuda_arg(obj, fn, name, CDType::f32);
}
inline CudaArray* cuda_opt_f32(py::handle obj, const char* fn, const char* name) {
  return cuda_opt_arg(obj, fn, name, CDType::f32);
}

// a must be (rows, cols); `why` follows the expected shape in the message.
inline void cuda_matrix_is(const char* fn, const CudaArray& a, const char* name, index_t rows,
                           index_t cols, const char* why) {
  if (a.ndim() != 2 || a.shape[0] != rows || a.shape[1] != cols)
    fail_value(fn, std::string(name) + " has shape " + shape_str(a) + " but must be (" +
                       std::to_string(rows) + ", " + std::to_string(cols) + ")" + why);
}

inline void cuda_ndim_is(const char* fn, const CudaArray& a, const char* name, index_t nd) {
  if (a.ndim() != nd)
    fail_value(fn, std::string(name) + " must be " + std::to_string(nd) + "-D, got shape " + shape_str(a));
}

inline void cuda_shape_is(const char* fn, const CudaArray& a, const char* name,
                          const std::vector<index_t>& shape) {
  if (a.shape != shape)
    fail_value(fn, std::string(name) + " has shape " + shape_str(a) + " but must have shape " +
                       CudaArray::shape_str(shape));
}

inline void cuda_same_shape(const char* fn, const CudaArray& a, const char* an, const CudaArray& b,
                            const char* bn) {
  if (a.shape != b.shape)
    fail_value(fn, std::string(an) + " has shape " + shape_str(a) + " but " + bn + " has shape " +
                       shape_str(b) + "; they must match");
}

inline void cuda_same_dtype(const char* fn, const CudaArray& a, const char* an, const CudaArray& b,
                            const char* bn) {
  if (a.dtype != b.dtype)
    fail_type(fn, std::string(an) + " has dtype " + dg::cuda::dtype_name(a.dtype) + " but " + bn +
                      " has dtype " + dg::cuda::dtype_name(b.dtype) + "; they must match");
}

}  // namespace dg::bind
