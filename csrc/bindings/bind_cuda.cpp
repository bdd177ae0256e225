// deepgrad._C.CudaArray, the CUDA runtime queries and the allocator statistics, and the
// elementwise / reduction / copy entry points of the Python CUDA backend.
#ifdef DG_HAVE_CUDA
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "bindings/cuda_check.h"
#include "bindings/registry.h"
#include "deepgrad/cuda_array.h"
#include "deepgrad/cuda_info.h"
#include "deepgrad/cuda_ops.h"

namespace dg::bind {
namespace {

using dg::cuda::BinOp;
using dg::cuda::DType;
using dg::cuda::Indexer;
using dg::cuda::RedOp;
using dg::cuda::UnOp;

DType dtype_from_name(const std::string& s, const char* fn) {
  if (s == "float32" || s == "f4" || s == "<f4") return DType::f32;
  if (s == "float64" || s == "f8" || s == "<f8") return DType::f64;
  if (s == "int64" || s == "i8" || s == "<i8") return DType::i64;
  fail_type(fn, "dtype " + s + " is not supported on cuda; use float32, float64 or int64");
}
DType dtype_arg(py::handle d, const char* fn) {
  return dtype_from_name(py::str(py::dtype::from_args(py::reinterpret_borrow<py::object>(d))).cast<std::string>(), fn);
}
py::dtype np_dtype(DType t) { return py::dtype(dg::cuda::dtype_name(t)); }

std::vector<index_t> shape_arg(py::handle obj, const char* fn) {
  std::vector<index_t> shp;
  if (py::isinstance<py::int_>(obj)) {
    shp.push_back(obj.cast<index_t>());
  } else {
    for (py::handle d : obj) shp.push_back(d.cast<index_t>());
  }
  for (index_t d : shp)
    if (d < 0) fail_value(fn, "negative dimension in shape " + CudaArray::shape_str(shp));
  return shp;
}

py::tuple shape_tuple(const std::vector<index_t>& s) {
  py::tuple t(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) t[i] = py::int_(s[i]);
  return t;
}

// Host -> device. float32/float64/int64 arrays keep their dtype (other integer types become
// int64); anything else is a TypeError.
CudaArray from_numpy(py::handle obj) {
  const char* fn = "CudaArray.from_numpy";
  py::array a = py::isinstance<py::array>(obj) ? py::reinterpret_borrow<py::array>(obj)
                                                : py::array::ensure(obj);
  if (!a) {
    PyErr_Clear();
    fail_type(fn, "expected a numpy array, got " + py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  }
  const char kind = a.dtype().kind();
  DType t;
  if (kind == 'f' && a.itemsize() == 4) t = DType::f32;
  else if (kind == 'f' && a.itemsize() == 8) t = DType::f64;
  else if (kind == 'i' || kind == 'u') t = DType::i64;
  else
    fail_type(fn, "arrays of dtype " + dtype_str(a) +
                      " cannot go to cuda; use float32, float64 or an integer type (.astype(np.float32))");
  py::array c = checked_copy(
      t == DType::i64
          ? py::array(py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(a))
          : py::array::ensure(a, py::array::c_style),
      a, fn, "the array");
  std::vector<index_t> shp(c.shape(), c.shape() + c.ndim());
  CudaArray d = CudaArray::empty(shp, t);
  dg::cuda::memcpy_h2d(d.raw(), c.data(), d.nbytes());
  return d;
}

py::array to_numpy(const CudaArray& a) {
  std::vector<py::ssize_t> shp(a.shape.begin(), a.shape.end());
  py::array out(np_dtype(a.dtype), shp);
  dg::cuda::memcpy_d2h(out.mutable_data(), a.raw(), a.nbytes());
  return out;
}

CudaArray copy_of(const CudaArray& a) {
  CudaArray out = CudaArray::empty_like(a);
  dg::cuda::memcpy_d2d(out.raw(), a.raw(), a.nbytes());
  return out;
}

void copy_into(CudaArray& dst, py::handle src) {
  const char* fn = "CudaArray.copy_";
  if (py::isinstance<CudaArray>(src)) {
    const CudaArray& s = src.cast<const CudaArray&>();
    if (s.shape != dst.shape && s.numel() != dst.numel())
      fail_value(fn, "source has shape " + shape_str(s) + " but destination has shape " + shape_str(dst));
    if (s.dtype != dst.dtype) {
      dg::cuda::launch_cast(dst.raw(), dst.dtype, s.raw(), s.dtype, s.numel(), dg::cuda::current_stream());
      return;
    }
    dg::cuda::memcpy_d2d(dst.raw(), s.raw(), s.nbytes());
    return;
  }
  py::array a = py::array::ensure(src);
  if (!a) fail_type(fn, "source must be a CudaArray or a numpy array");
  if (static_cast<index_t>(a.size()) != dst.numel())
    fail_value(fn, "source has shape " + shape_str(a) + " but destination has shape " + shape_str(dst));
  py::array c = checked_copy(py::array::ensure(a.attr("astype")(np_dtype(dst.dtype)), py::array::c_style),
                             a, fn, "source");
  dg::cuda::memcpy_h2d(dst.raw(), c.data(), dst.nbytes());
}

std::string repr(const CudaArray& a) {
  std::ostringstream s;
  s << "CudaArray(shape=" << shape_str(a) << ", dtype=" << dg::cuda::dtype_name(a.dtype)
    << ", offset=" << a.offset << ")";
  return s.str();
}

void bind_cuda(py::module_& m) {
  py::register_exception<dg::cuda::OutOfMemory>(m, "CudaOutOfMemoryError", PyExc_MemoryError);

  py::class_<CudaArray>(m, "CudaArray",
                        "A C-contiguous float32/float64/int64 array in CUDA device memory.")
      .def(py::init(&from_numpy), py::arg("array"), "Copy a numpy array to the device.")
      .def_static("from_numpy", &from_numpy, py::arg("array"))
      .def_static("empty", [](py::handle shape, py::handle dtype) {
        return CudaArray::empty(shape_arg(shape, "CudaArray.empty"), dtype_arg(dtype, "CudaArray.empty"));
      }, py::arg("shape"), py::arg("dtype") = "float32")
      .def_static("zeros", [](py::handle shape, py::handle dtype) {
        return CudaArray::zeros(shape_arg(shape, "CudaArray.zeros"), dtype_arg(dtype, "CudaArray.zeros"));
      }, py::arg("shape"), py::arg("dtype") = "float32")
      .def("numpy", &to_numpy, "Copy to a new numpy array (synchronises).")
      .def_property_readonly("shape", [](const CudaArray& a) { return shape_tuple(a.shape); })
      .def_property_readonly("dtype", [](const CudaArray& a) { return np_dtype(a.dtype); })
      .def_property_readonly("size", &CudaArray::numel)
      .def_property_readonly("ndim", &CudaArray::ndim)
      .def_property_readonly("nbytes", &CudaArray::nbytes)
      .def_property_readonly("offset", [](const CudaArray& a) { return a.offset; })
      .def_property_readonly("device", [](const CudaArray&) { return std::string("cuda"); })
      .def_property_readonly("data_ptr", [](const CudaArray& a) { return reinterpret_cast<std::uintptr_t>(a.raw()); })
      .def_property_readonly("storage_ptr", [](const CudaArray& a) {
        return reinterpret_cast<std::uintptr_t>(a.storage ? a.storage->ptr : nullptr);
      }, "Address of the underlying storage (equal for views of one buffer).")
      .def("__len__", [](const CudaArray& a) {
        if (a.ndim() == 0) throw py::type_error("len() of a 0-d CudaArray");
        return a.shape[0];
      })
      .def("view", [](const CudaArray& a, index_t off, py::handle shape) {
        return a.view(off, shape_arg(shape, "CudaArray.view"));
      }, py::arg("offset"), py::arg("shape"),
         "A view of prod(shape) elements starting `offset` elements in (shares storage).")
      .def("reshape", [](const CudaArray& a, py::handle shape) {
        return a.reshape(shape_arg(shape, "CudaArray.reshape"));
      }, py::arg("shape"), "The same elements with a new shape (a view; no -1 inference).")
      .def("copy", &copy_of, "A new device array with the same contents.")
      .def("copy_", [](CudaArray& a, py::handle src) { copy_into(a, src); return a; }, py::arg("src"),
           "Copy src (CudaArray or numpy array of the same size) into this array in place.")
      .def("fill_", [](CudaArray& a, double v) {
        dg::cuda::launch_fill(a.raw(), a.dtype, v, a.numel(), dg::cuda::current_stream());
        return a;
      }, py::arg("value"))
      .def("astype", [](const CudaArray& a, py::handle dtype) {
        DType t = dtype_arg(dtype, "CudaArray.astype");
        if (t == a.dtype) return copy_of(a);
        CudaArray out = CudaArray::empty(a.shape, t);
        dg::cuda::launch_cast(out.raw(), t, a.raw(), a.dtype, a.numel(), dg::cuda::current_stream());
        return out;
      }, py::arg("dtype"))
      .def("__repr__", &repr);

  m.def("cuda_device_count", &dg::cuda::device_count);
  m.def("cuda_device_name", [](int i) {
    const int n = dg::cuda::device_count();
    if (i < 0 || i >= n)
      throw py::index_error("get_device_name: device " + std::to_string(i) + " does not exist (" +
                            std::to_string(n) + " CUDA devices)");
    return dg::cuda::device_name(i);
  }, py::arg("index") = 0);
  m.def("cuda_synchronize", &dg::cuda::synchronize);
  m.def("cuda_memory_allocated", &dg::cuda::memory_allocated);
  m.def("cuda_memory_reserved", &dg::cuda::memory_reserved);
  m.def("cuda_empty_cache", &dg::cuda::empty_cache);
  m.def("cuda_malloc_calls", &dg::cuda::malloc_calls);
  m.def("cuda_host_syncs", &dg::cuda::host_syncs,
        "Host synchronisations deepgrad has made so far (device-to-host copies, synchronize).");
}

DG_REGISTER_BINDINGS(bind_cuda);

// ---- elementwise / reduction / copy entry points ---------------------------------------------

BinOp bin_op(const std::string& s) {
  static const std::pair<const char*, BinOp> names[] = {
      {"add", BinOp::add}, {"sub", BinOp::sub}, {"mul", BinOp::mul}, {"div", BinOp::div},
      {"pow", BinOp::pow}, {"maximum", BinOp::maximum}, {"minimum", BinOp::minimum},
      {"eq", BinOp::eq}, {"ne", BinOp::ne}, {"lt", BinOp::lt}, {"le", BinOp::le},
      {"gt", BinOp::gt}, {"ge", BinOp::ge}};
  for (auto& [n, op] : names)
    if (s == n) return op;
  fail_value("cuda_binary", "unknown op '" + s + "'");
}

UnOp un_op(const std::string& s) {
  static const std::pair<const char*, UnOp> names[] = {
      {"neg", UnOp::neg}, {"exp", UnOp::exp}, {"log", UnOp::log}, {"sqrt", UnOp::sqrt},
      {"abs", UnOp::abs}, {"sign", UnOp::sign}, {"square", UnOp::square},
      {"reciprocal", UnOp::reciprocal}, {"clip", UnOp::clip}};
  for (auto& [n, op] : names)
    if (s == n) return op;
  fail_value("cuda_unary", "unknown op '" + s + "'");
}

RedOp red_op(const std::string& s) {
  if (s == "sum") return RedOp::sum;
  if (s == "mean") return RedOp::mean;
  if (s == "max") return RedOp::max;
  if (s == "min") return RedOp::min;
  if (s == "argmax") return RedOp::argmax;
  fail_value("cuda_reduce", "unknown op '" + s + "'");
}

std::vector<index_t> contiguous_strides(const std::vector<index_t>& shape) {
  std::vector<index_t> st(shape.size());
  index_t s = 1;
  for (std::size_t d = shape.size(); d-- > 0;) {
    st[d] = s;
    s *= shape[d];
  }
  return st;
}

// numpy broadcasting of the operands' shapes; fills ix and returns the output shape. With
// with_out the output's strides are operand 0 and the inputs follow (at most 2 inputs then).
std::vector<index_t> broadcast(const char* fn, const std::vector<const CudaArray*>& ops, Indexer& ix,
                               bool with_out) {
  std::size_t nd = 0;
  for (auto* a : ops) nd = std::max(nd, a->shape.size());
  if (nd > static_cast<std::size_t>(dg::cuda::kMaxDims))
    fail_value(fn, "arrays of more than " + std::to_string(dg::cuda::kMaxDims) + " dims are not supported on cuda");
  std::vector<index_t> out(nd, 1);
  for (auto* a : ops) {
    const std::size_t lead = nd - a->shape.size();
    for (std::size_t d = 0; d < a->shape.size(); ++d) {
      const index_t n = a->shape[d];
      index_t& o = out[lead + d];
      if (n == o || n == 1) continue;
      if (o == 1) { o = n; continue; }
      std::string msg = "operands could not be broadcast together with shapes";
      for (auto* b : ops) msg += " " + shape_str(*b);
      fail_value(fn, msg);
    }
  }
  ix = Indexer();
  ix.ndim = static_cast<int>(nd);
  const auto ost = contiguous_strides(out);
  const std::size_t first = with_out ? 1 : 0;
  for (std::size_t d = 0; d < nd; ++d) {
    ix.shape[d] = out[d];
    if (with_out) ix.stride[0][d] = ost[d];
  }
  for (std::size_t k = 0; k < ops.size() && k + first < 3; ++k) {
    const auto& sh = ops[k]->shape;
    const auto st = contiguous_strides(sh);
    const std::size_t lead = nd - sh.size();
    for (std::size_t d = 0; d < sh.size(); ++d) ix.stride[k + first][lead + d] = sh[d] == 1 ? 0 : st[d];
  }
  return out;
}

// The output array: a fresh one, or `out` after checking its shape and dtype.
CudaArray make_out(const char* fn, py::handle out, const std::vector<index_t>& shape, DType t) {
  if (out.is_none()) return CudaArray::empty(shape, t);
  CudaArray& o = cuda_arg(out, fn, "out", t);
  if (o.shape != shape)
    fail_value(fn, "out has shape " + shape_str(o) + " but the result has shape " + CudaArray::shape_str(shape));
  return o;
}

void float_only(const char* fn, const CudaArray& a, const std::string& op) {
  if (a.dtype == DType::i64) fail_type(fn, "'" + op + "' needs float32 or float64 arrays, got int64");
}

CudaArray binary(const std::string& op_name, py::handle a_, py::handle b_, py::handle out) {
  const char* fn = "cuda_binary";
  const CudaArray& a = cuda_arg(a_, fn, "a");
  const CudaArray& b = cuda_arg(b_, fn, "b");
  cuda_same_dtype(fn, a, "a", b, "b");
  const BinOp op = bin_op(op_name);
  if (op == BinOp::div || op == BinOp::pow) float_only(fn, a, op_name);
  Indexer ix;
  const auto shape = broadcast(fn, {&a, &b}, ix, true);
  CudaArray o = make_out(fn, out, shape, a.dtype);
  dg::cuda::launch_binary(o.raw(), a.raw(), b.raw(), a.dtype, op, ix, o.numel(), dg::cuda::current_stream());
  return o;
}

CudaArray binary_scalar(const std::string& op_name, py::handle a_, double s, bool left, py::handle out) {
  const char* fn = "cuda_binary_scalar";
  const CudaArray& a = cuda_arg(a_, fn, "a");
  const BinOp op = bin_op(op_name);
  if (op == BinOp::div || op == BinOp::pow) float_only(fn, a, op_name);
  CudaArray o = make_out(fn, out, a.shape, a.dtype);
  dg::cuda::launch_binary_scalar(o.raw(), a.raw(), s, a.dtype, op, left, a.numel(), dg::cuda::current_stream());
  return o;
}

CudaArray unary(const std::string& op_name, py::handle a_, double p0, double p1, py::handle out) {
  const char* fn = "cuda_unary";
  const CudaArray& a = cuda_arg(a_, fn, "a");
  const UnOp op = un_op(op_name);
  if (op == UnOp::exp || op == UnOp::log || op == UnOp::sqrt || op == UnOp::reciprocal) float_only(fn, a, op_name);
  CudaArray o = make_out(fn, out, a.shape, a.dtype);
  dg::cuda::launch_unary(o.raw(), a.raw(), a.dtype, op, p0, p1, a.numel(), dg::cuda::current_stream());
  return o;
}

CudaArray where(py::handle c_, py::handle a_, py::handle b_) {
  const char* fn = "cuda_where";
  const CudaArray& c = cuda_arg(c_, fn, "cond");
  const CudaArray& a = cuda_arg(a_, fn, "a");
  const CudaArray& b = cuda_arg(b_, fn, "b");
  cuda_same_dtype(fn, a, "a", b, "b");
  cuda_same_dtype(fn, c, "cond", a, "a");
  Indexer ix;  // launch_where takes cond/a/b as operands 0/1/2
  const auto shape = broadcast(fn, {&c, &a, &b}, ix, false);
  CudaArray o = CudaArray::empty(shape, a.dtype);
  dg::cuda::launch_where(o.raw(), c.raw(), a.raw(), b.raw(), a.dtype, ix, o.numel(), dg::cuda::current_stream());
  return o;
}

// Sum/mean/max/min/argmax over `axis` (None = all, int, or tuple of ints), numpy semantics.
CudaArray reduce(const std::string& op_name, py::handle a_, py::handle axis, bool keepdims) {
  const char* fn = "cuda_reduce";
  const CudaArray& a = cuda_arg(a_, fn, "a");
  const RedOp op = red_op(op_name);
  const index_t nd = a.ndim();
  std::vector<bool> red(nd, false);
  if (axis.is_none()) {
    std::fill(red.begin(), red.end(), true);
  } else {
    std::vector<index_t> axes;
    if (py::isinstance<py::int_>(axis)) axes.push_back(axis.cast<index_t>());
    else for (py::handle h : axis) axes.push_back(h.cast<index_t>());
    if (op == RedOp::argmax && axes.size() != 1) fail_value(fn, "argmax takes one axis or None");
    for (index_t ax : axes) {
      const index_t d = ax < 0 ? ax + nd : ax;
      if (d < 0 || d >= nd)
        throw py::index_error(std::string(fn) + ": axis " + std::to_string(ax) + " is out of bounds for an array of dimension " + std::to_string(nd));
      if (red[d]) fail_value(fn, "duplicate value in axis");
      red[d] = true;
    }
  }
  if (op == RedOp::mean) float_only(fn, a, op_name);
  std::vector<index_t> kept_shape;  // keepdims shape
  index_t count = 1;
  for (index_t d = 0; d < nd; ++d) {
    kept_shape.push_back(red[d] ? 1 : a.shape[d]);
    if (red[d]) count *= a.shape[d];
  }
  if (count == 0 && op != RedOp::sum && op != RedOp::mean)
    fail_value(fn, "zero-size array to reduction operation " + op_name + " which has no identity");
  // argmax over all axes: the flat index.
  CudaArray cur = a;
  if (op == RedOp::argmax && axis.is_none()) {
    cur = a.reshape({a.numel()});
    red.assign(1, true);
    kept_shape.assign(1, 1);
  }
  // Reduce runs of adjacent reduced axes, innermost run first; mean divides once at the end.
  const RedOp step_op = op == RedOp::mean ? RedOp::sum : op;
  std::vector<index_t> shape = cur.shape;
  const index_t cnd = static_cast<index_t>(shape.size());
  bool any = false;
  for (index_t hi = cnd; hi > 0;) {
    if (!red[hi - 1]) { --hi; continue; }
    index_t lo = hi - 1;
    while (lo > 0 && red[lo - 1]) --lo;
    index_t outer = 1, len = 1, inner = 1;
    for (index_t d = 0; d < lo; ++d) outer *= shape[d];
    for (index_t d = lo; d < hi; ++d) len *= shape[d];
    for (index_t d = hi; d < cnd; ++d) inner *= shape[d];
    std::vector<index_t> nshape = shape;
    for (index_t d = lo; d < hi; ++d) nshape[d] = 1;
    CudaArray nxt = CudaArray::empty(nshape, op == RedOp::argmax ? DType::i64 : cur.dtype);
    dg::cuda::launch_reduce(nxt.raw(), cur.raw(), cur.dtype, step_op, outer, len, inner, dg::cuda::current_stream());
    cur = nxt;
    shape = nshape;
    any = true;
    hi = lo;
  }
  if (!any) cur = copy_of(a);
  if (op == RedOp::mean) {
    CudaArray m = CudaArray::empty(cur.shape, cur.dtype);
    dg::cuda::launch_binary_scalar(m.raw(), cur.raw(), count ? 1.0 / static_cast<double>(count) : NAN,
                                   cur.dtype, BinOp::mul, false, cur.numel(), dg::cuda::current_stream());
    cur = m;
  }
  std::vector<index_t> final_shape;
  if (keepdims) {
    final_shape = kept_shape;
  } else if (!(op == RedOp::argmax && axis.is_none())) {
    for (index_t d = 0; d < nd; ++d)
      if (!red[d]) final_shape.push_back(a.shape[d]);
  }
  return cur.reshape(final_shape);
}

// Elements reachable from a strided view: [lowest, highest] offsets relative to its start.
void check_view(const char* fn, const char* name, const CudaArray& a, index_t offset,
                const std::vector<index_t>& strides, const std::vector<index_t>& shape) {
  index_t lo = offset, hi = offset;
  bool empty = false;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) empty = true;
    const index_t ext = strides[d] * (shape[d] - 1);
    (ext < 0 ? lo : hi) += ext;
  }
  if (!empty && (lo < 0 || hi >= a.numel()))
    throw py::index_error(std::string(fn) + ": the strided view of " + name + " reaches elements [" +
                          std::to_string(lo) + ", " + std::to_string(hi) + "] outside its " +
                          std::to_string(a.numel()) + " elements");
}

// dst.flat[dst_offset + sum_d i_d*dst_strides[d]] (+)= src.flat[src_offset + sum_d i_d*src_strides[d]]
// for every index i of `shape`. Strides are in elements and may be 0 (broadcast) or negative.
void strided_copy(py::handle dst_, index_t dst_offset, std::vector<index_t> dst_strides, py::handle src_,
                  index_t src_offset, std::vector<index_t> src_strides, std::vector<index_t> shape,
                  bool accumulate) {
  const char* fn = "cuda_strided_copy";
  CudaArray& dst = cuda_arg(dst_, fn, "dst");
  const CudaArray& src = cuda_arg(src_, fn, "src");
  cuda_same_dtype(fn, dst, "dst", src, "src");
  if (dst_strides.size() != shape.size() || src_strides.size() != shape.size())
    fail_value(fn, "strides and shape must have the same length");
  if (shape.size() > static_cast<std::size_t>(dg::cuda::kMaxDims))
    fail_value(fn, "more than " + std::to_string(dg::cuda::kMaxDims) + " dims are not supported on cuda");
  check_view(fn, "dst", dst, dst_offset, dst_strides, shape);
  check_view(fn, "src", src, src_offset, src_strides, shape);
  Indexer ix;
  ix.ndim = static_cast<int>(shape.size());
  index_t n = 1;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] < 0) fail_value(fn, "negative dimension");
    ix.shape[d] = shape[d];
    ix.stride[0][d] = dst_strides[d];
    ix.stride[1][d] = src_strides[d];
    n *= shape[d];
  }
  const std::size_t es = dg::cuda::dtype_size(dst.dtype);
  dg::cuda::launch_strided_copy(static_cast<char*>(dst.raw()) + dst_offset * es,
                                static_cast<const char*>(src.raw()) + src_offset * es, dst.dtype, ix, n,
                                accumulate, dg::cuda::current_stream());
}

// Flat element positions from the host, range-checked, on the device.
CudaArray upload_positions(const char* fn, py::handle flat_, index_t limit) {
  auto flat = py::array_t<index_t, py::array::c_style | py::array::forcecast>::ensure(flat_);
  if (!flat) fail_type(fn, "flat positions must be an integer numpy array");
  const index_t* p = flat.data();
  for (py::ssize_t i = 0; i < flat.size(); ++i)
    if (p[i] < 0 || p[i] >= limit)
      throw py::index_error(std::string(fn) + ": index " + std::to_string(p[i]) + " is out of bounds for " +
                            std::to_string(limit) + " elements");
  CudaArray d = CudaArray::empty({static_cast<index_t>(flat.size())}, DType::i64);
  dg::cuda::memcpy_h2d(d.raw(), p, d.nbytes());
  return d;
}

// out (shape) = src.flat[flat] with flat a host int64 array of prod(shape) positions.
CudaArray gather_flat(py::handle src_, py::handle flat_, std::vector<index_t> shape) {
  const char* fn = "cuda_gather_flat";
  const CudaArray& src = cuda_arg(src_, fn, "src");
  CudaArray pos = upload_positions(fn, flat_, src.numel());
  if (pos.numel() != CudaArray::numel_of(shape)) fail_value(fn, "flat has the wrong number of positions for shape");
  CudaArray out = CudaArray::empty(shape, src.dtype);
  dg::cuda::launch_gather_flat(out.raw(), src.raw(), src.dtype, pos.data<index_t>(), pos.numel(), dg::cuda::current_stream());
  return out;
}

// dst.flat[flat[k]] += values.flat[k] (accumulate; repeated positions sum, deterministically), or
// dst.flat[flat[k]] = values.flat[k] (the last occurrence wins, as in numpy).
void scatter_flat(py::handle dst_, py::handle flat_, py::handle values_, bool accumulate) {
  const char* fn = "cuda_scatter_flat";
  CudaArray& dst = cuda_arg(dst_, fn, "dst");
  const CudaArray& values = cuda_arg(values_, fn, "values");
  cuda_same_dtype(fn, dst, "dst", values, "values");
  auto flat = py::array_t<index_t, py::array::c_style | py::array::forcecast>::ensure(flat_);
  if (!flat) fail_type(fn, "flat positions must be an integer numpy array");
  const index_t m = static_cast<index_t>(flat.size());
  if (m != values.numel())
    fail_value(fn, std::to_string(m) + " positions but values has " + std::to_string(values.numel()) + " elements");
  const index_t* p = flat.data();
  for (index_t i = 0; i < m; ++i)
    if (p[i] < 0 || p[i] >= dst.numel())
      throw py::index_error(std::string(fn) + ": index " + std::to_string(p[i]) + " is out of bounds for " +
                            std::to_string(dst.numel()) + " elements");
  // Counting layout on the host: positions grouped by target, in their original order.
  std::vector<index_t> order(m);
  for (index_t i = 0; i < m; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](index_t x, index_t y) { return p[x] < p[y]; });
  std::vector<index_t> target, seg;
  for (index_t j = 0; j < m; ++j) {
    if (j == 0 || p[order[j]] != p[order[j - 1]]) {
      target.push_back(p[order[j]]);
      seg.push_back(j);
    }
  }
  seg.push_back(m);
  const index_t nu = static_cast<index_t>(target.size());
  if (nu == 0) return;
  CudaArray dt = CudaArray::empty({nu}, DType::i64), ds = CudaArray::empty({nu + 1}, DType::i64),
            dord = CudaArray::empty({m}, DType::i64);
  dg::cuda::memcpy_h2d(dt.raw(), target.data(), dt.nbytes());
  dg::cuda::memcpy_h2d(ds.raw(), seg.data(), ds.nbytes());
  dg::cuda::memcpy_h2d(dord.raw(), order.data(), dord.nbytes());
  dg::cuda::launch_scatter_flat(dst.raw(), values.raw(), dst.dtype, dt.data<index_t>(), ds.data<index_t>(),
                                dord.data<index_t>(), nu, accumulate, dg::cuda::current_stream());
}

void bind_cuda_ops(py::module_& m) {
  m.def("cuda_binary", &binary, py::arg("op"), py::arg("a"), py::arg("b"), py::arg("out") = py::none(),
        "a op b with numpy broadcasting (op: add sub mul div pow maximum minimum eq ne lt le gt ge).");
  m.def("cuda_binary_scalar", &binary_scalar, py::arg("op"), py::arg("a"), py::arg("s"),
        py::arg("scalar_left") = false, py::arg("out") = py::none(), "a op s (or s op a).");
  m.def("cuda_unary", &unary, py::arg("op"), py::arg("a"), py::arg("p0") = 0.0, py::arg("p1") = 0.0,
        py::arg("out") = py::none(), "f(a) (op: neg exp log sqrt abs sign square reciprocal clip[p0, p1]).");
  m.def("cuda_where", &where, py::arg("cond"), py::arg("a"), py::arg("b"), "cond != 0 ? a : b, broadcast.");
  m.def("cuda_reduce", &reduce, py::arg("op"), py::arg("a"), py::arg("axis") = py::none(),
        py::arg("keepdims") = false, "sum/mean/max/min/argmax over axis (None, int or tuple).");
  m.def("cuda_strided_copy", &strided_copy, py::arg("dst"), py::arg("dst_offset"), py::arg("dst_strides"),
        py::arg("src"), py::arg("src_offset"), py::arg("src_strides"), py::arg("shape"),
        py::arg("accumulate") = false);
  m.def("cuda_gather_flat", &gather_flat, py::arg("src"), py::arg("flat"), py::arg("shape"));
  m.def("cuda_scatter_flat", &scatter_flat, py::arg("dst"), py::arg("flat"), py::arg("values"),
        py::arg("accumulate") = true);
  m.def("cuda_has_nonfinite", [](py::handle a_) {
    const CudaArray& a = cuda_arg(a_, "cuda_has_nonfinite", "a");
    return dg::cuda::has_nonfinite(a.raw(), a.dtype, a.numel());
  }, py::arg("a"));
}

DG_REGISTER_BINDINGS(bind_cuda_ops);

}  // namespace
}  // namespace dg::bind
#endif  // DG_HAVE_CUDA
