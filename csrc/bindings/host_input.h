// A float input read in place from host memory: a numpy array (float_input's rules) or a DLPack
// capsule of a CPU tensor of another framework (torch.utils.dlpack.to_dlpack(t): ~0.8 us a
// tensor where t.numpy() takes ~2.5 us, which the torch monitor pays for ~100 tensors a step).
//
// A capsule is borrowed, not consumed: it is neither renamed nor its deleter called, so its
// producer frees it when the Python object goes, and the caller holds it for the call. It must
// hold float32/float64 (one lane) in CPU memory, C-contiguous (strides NULL or compact row-major,
// dimensions of extent 1 ignored); anything else is a ValueError/TypeError naming the argument
// (the torch monitor then takes its numpy route for that call).
#pragma once
#include <string>

#include "bindings/check.h"
#include "third_party/dlpack/dlpack.h"

namespace dg::bind {

struct HostIn {
  const void* data = nullptr;
  bool f64 = false;
  index_t n = 0;      // elements
  index_t cols = 1;   // the last dimension's extent (1 for a 0-d input)
  int ndim = 0;
  py::array keep;     // a numpy input (or its C-order copy), held for the call
};

inline const DLTensor* capsule_tensor(py::handle obj, const char* fn, const std::string& name) {
  PyObject* o = obj.ptr();
  if (PyCapsule_IsValid(o, "dltensor_versioned")) {
    auto* m = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(o, "dltensor_versioned"));
    if (m->version.major != 1)
      fail_value(fn, name + " is a DLPack capsule of major version " +
                         std::to_string(m->version.major) + "; deepgrad reads version 1");
    return &m->dl_tensor;
  }
  if (PyCapsule_IsValid(o, "dltensor"))
    return &static_cast<DLManagedTensor*>(PyCapsule_GetPointer(o, "dltensor"))->dl_tensor;
  fail_value(fn, name + " is a capsule that holds no DLPack tensor (a consumed one is named "
                        "'used_dltensor'); pass a fresh capsule or a numpy array");
}

inline HostIn host_input(py::handle obj, const char* fn, const std::string& name) {
  HostIn in;
  if (!PyCapsule_CheckExact(obj.ptr())) {
    in.keep = float_input(obj, fn, name.c_str());
    in.data = in.keep.data();
    in.f64 = is_f64(in.keep);
    in.n = static_cast<index_t>(in.keep.size());
    in.ndim = static_cast<int>(in.keep.ndim());
    in.cols = in.ndim ? static_cast<index_t>(in.keep.shape(in.ndim - 1)) : 1;
    return in;
  }
  const DLTensor* t = capsule_tensor(obj, fn, name);
  if (t->device.device_type != kDLCPU)
    fail_value(fn, name + " is a DLPack tensor in device memory (device type " +
                       std::to_string(static_cast<int>(t->device.device_type)) +
                       "); only CPU tensors are read here");
  if (t->dtype.code != kDLFloat || t->dtype.lanes != 1 ||
      (t->dtype.bits != 32 && t->dtype.bits != 64))
    fail_type(fn, name + " is a DLPack tensor of type code " + std::to_string(t->dtype.code) +
                      ", " + std::to_string(t->dtype.bits) + " bits x " +
                      std::to_string(t->dtype.lanes) + " lanes; deepgrad reads float32 or float64");
  if (t->ndim < 0) fail_value(fn, name + " is a DLPack tensor of negative ndim");
  index_t n = 1, expect = 1;
  bool contiguous = true;
  for (int d = t->ndim - 1; d >= 0; --d) {
    const int64_t e = t->shape[d];
    if (e < 0) fail_value(fn, name + " is a DLPack tensor with a negative extent");
    if (t->strides && e != 1 && t->strides[d] != expect) contiguous = false;
    expect *= e;
    n *= e;
  }
  if (!contiguous && n > 0)
    fail_value(fn, name + " is a strided (not C-contiguous) DLPack tensor; pass a contiguous "
                          "copy (t.contiguous())");
  in.f64 = t->dtype.bits == 64;
  in.data = static_cast<const char*>(t->data) + t->byte_offset;
  in.n = n;
  in.ndim = t->ndim;
  in.cols = t->ndim ? static_cast<index_t>(t->shape[t->ndim - 1]) : 1;
  if (n > 0 && in.data == nullptr) fail_value(fn, name + " is a DLPack tensor with no data");
  return in;
}

// Calls f(T{}) with T = float or double according to the input's dtype.
template <class F>
decltype(auto) dispatch_in(const HostIn& in, F&& f) {
  if (in.f64) return f(double{});
  return f(float{});
}

template <class T>
inline const T* cdata_of(const HostIn& in) { return static_cast<const T*>(in.data); }

}  // namespace dg::bind
