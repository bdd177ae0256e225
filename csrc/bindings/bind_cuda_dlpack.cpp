// DLPack interop of CUDA arrays, zero copy both ways.
//
//   cuda_to_dlpack(a, versioned=True, minor=1, stream=None) -> PyCapsule
//       exports a CudaArray's device memory without copying: a "dltensor_versioned" capsule
//       (DLManagedTensorVersioned, version 1.minor) or, for consumers that do not pass
//       max_version, a "dltensor" one (DLManagedTensor). The capsule (and then the consumer's
//       tensor) keeps the array's storage alive until the deleter runs. stream: the consumer's
//       stream as in the Python DLPack protocol (None: no ordering needed; 1 legacy default,
//       2 per-thread default, else a cudaStream_t): the consumer's stream is made to wait for the
//       work deepgrad has enqueued (an event, no host synchronisation).
//   cuda_from_dlpack(capsule) -> CudaArray
//       imports a producer's CUDA tensor without copying: the CudaArray's storage wraps the
//       producer's pointer and calls the producer's deleter when the last view is dropped. The
//       capsule is renamed "used_dltensor[_versioned]" (ownership taken) only after every check
//       passed, so a refused capsule is still freed by its producer's capsule destructor.
//   cuda_current_device() -> int
//
// The Python side (backend/dlpack.py) negotiates the protocol arguments and calls these.
#ifdef DG_HAVE_CUDA
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bindings/cuda_check.h"
#include "bindings/registry.h"
#include "deepgrad/cuda_array.h"
#include "third_party/dlpack/dlpack.h"

namespace dg::bind {
namespace {

namespace dc = dg::cuda;

[[noreturn]] void buffer_error(const std::string& msg) {
  PyErr_SetString(PyExc_BufferError, msg.c_str());
  throw py::error_already_set();
}

DLDataType dl_dtype(CDType t) {
  switch (t) {
    case CDType::f32: return DLDataType{kDLFloat, 32, 1};
    case CDType::f64: return DLDataType{kDLFloat, 64, 1};
    default: return DLDataType{kDLInt, 64, 1};
  }
}

// ---- export -------------------------------------------------------------------------------------

// Everything a capsule points into; freed by the deleter. `keep` holds the storage alive.
struct ExportCtx {
  CudaArray keep;
  std::vector<std::int64_t> shape, strides;
  DLManagedTensorVersioned versioned{};
  DLManagedTensor legacy{};
};

void delete_versioned(DLManagedTensorVersioned* m) {
  delete static_cast<ExportCtx*>(m->manager_ctx);
}
void delete_legacy(DLManagedTensor* m) { delete static_cast<ExportCtx*>(m->manager_ctx); }

// Capsule destructors: a capsule that still has its original name was never consumed, so its
// tensor is freed here; a consumed one ("used_...") belongs to the consumer.
void capsule_versioned(PyObject* cap) {
  if (!PyCapsule_IsValid(cap, "dltensor_versioned")) return;
  PyObject *t, *v, *tb;
  PyErr_Fetch(&t, &v, &tb);
  auto* m = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(cap, "dltensor_versioned"));
  if (m && m->deleter) m->deleter(m);
  PyErr_Restore(t, v, tb);
}
void capsule_legacy(PyObject* cap) {
  if (!PyCapsule_IsValid(cap, "dltensor")) return;
  PyObject *t, *v, *tb;
  PyErr_Fetch(&t, &v, &tb);
  auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
  if (m && m->deleter) m->deleter(m);
  PyErr_Restore(t, v, tb);
}

py::object to_dlpack(py::handle a_, bool versioned, int minor, py::handle stream) {
  const char* fn = "__dlpack__";
  const CudaArray& a = cuda_arg(a_, fn, "array");
  if (!stream.is_none()) {
    const std::intptr_t s = stream.cast<std::intptr_t>();
    if (s == 0)
      fail_value(fn, "stream=0 is ambiguous for CUDA in the DLPack protocol; pass 1 (legacy "
                     "default stream), 2 (per-thread default stream) or the consumer's stream");
    if (s != -1) dc::consumer_stream_wait(s);
  }
  auto* ctx = new ExportCtx();
  ctx->keep = a;
  ctx->shape.assign(a.shape.begin(), a.shape.end());
  ctx->strides.resize(a.shape.size());
  std::int64_t st = 1;
  for (std::size_t d = a.shape.size(); d-- > 0;) {
    ctx->strides[d] = st;
    st *= a.shape[d];
  }
  DLTensor t{};
  t.data = a.raw();
  t.device = DLDevice{kDLCUDA, static_cast<std::int32_t>(dc::current_device())};
  t.ndim = static_cast<std::int32_t>(a.shape.size());
  t.dtype = dl_dtype(a.dtype);
  t.shape = ctx->shape.empty() ? nullptr : ctx->shape.data();
  t.strides = ctx->strides.empty() ? nullptr : ctx->strides.data();
  t.byte_offset = 0;
  PyObject* cap;
  if (versioned) {
    DLManagedTensorVersioned& m = ctx->versioned;
    m.version = DLPackVersion{1, static_cast<std::uint32_t>(minor)};
    m.manager_ctx = ctx;
    m.deleter = &delete_versioned;
    m.flags = 0;
    m.dl_tensor = t;
    cap = PyCapsule_New(&m, "dltensor_versioned", &capsule_versioned);
  } else {
    DLManagedTensor& m = ctx->legacy;
    m.dl_tensor = t;
    m.manager_ctx = ctx;
    m.deleter = &delete_legacy;
    cap = PyCapsule_New(&m, "dltensor", &capsule_legacy);
  }
  if (!cap) {
    delete ctx;
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::object>(cap);
}

// ---- import -------------------------------------------------------------------------------------

// The producer's managed tensor, released through its own deleter.
struct Imported {
  void* managed;
  bool versioned;
};

void release_imported(void* p) {
  auto* im = static_cast<Imported*>(p);
  if (im->versioned) {
    auto* m = static_cast<DLManagedTensorVersioned*>(im->managed);
    if (m->deleter) m->deleter(m);
  } else {
    auto* m = static_cast<DLManagedTensor*>(im->managed);
    if (m->deleter) m->deleter(m);
  }
  delete im;
}

std::string dl_dtype_str(const DLDataType& d) {
  const char* kinds[] = {"int", "uint", "float", "opaque", "bfloat", "complex", "bool"};
  std::string s = d.code < 7 ? kinds[d.code] : "code " + std::to_string(d.code) + " ";
  s += std::to_string(d.bits);
  if (d.lanes != 1) s += "x" + std::to_string(d.lanes);
  return s;
}

CudaArray from_dlpack(py::handle cap_) {
  const char* fn = "from_dlpack";
  PyObject* cap = cap_.ptr();
  if (!PyCapsule_CheckExact(cap))
    fail_type(fn, "expected a DLPack capsule (the result of x.__dlpack__()), got " +
                      py::str(py::type::of(cap_).attr("__name__")).cast<std::string>());
  bool versioned;
  if (PyCapsule_IsValid(cap, "dltensor_versioned")) versioned = true;
  else if (PyCapsule_IsValid(cap, "dltensor")) versioned = false;
  else {
    const char* name = PyCapsule_GetName(cap);
    PyErr_Clear();
    const std::string nm = name ? name : "";
    if (nm.rfind("used_", 0) == 0)
      fail_value(fn, "this DLPack capsule was already consumed; call x.__dlpack__() again");
    fail_type(fn, "the capsule is named '" + nm + "', not 'dltensor' or 'dltensor_versioned'");
  }
  void* managed = PyCapsule_GetPointer(cap, versioned ? "dltensor_versioned" : "dltensor");
  if (!managed) throw py::error_already_set();
  DLTensor* t;
  std::uint64_t flags = 0;
  if (versioned) {
    auto* m = static_cast<DLManagedTensorVersioned*>(managed);
    if (m->version.major > DLPACK_MAJOR_VERSION)
      buffer_error(std::string(fn) + ": the producer's DLPack version " +
                   std::to_string(m->version.major) + "." + std::to_string(m->version.minor) +
                   " is newer than deepgrad's (1.x); ask the producer for max_version=(1, 1)");
    t = &m->dl_tensor;
    flags = m->flags;
  } else {
    t = &static_cast<DLManagedTensor*>(managed)->dl_tensor;
  }
  // Every check before the capsule is consumed.
  if (t->device.device_type != kDLCUDA)
    buffer_error(std::string(fn) + ": the tensor is on DLPack device type " +
                 std::to_string(t->device.device_type) + ", not CUDA (2)");
  CDType dt;
  const DLDataType& d = t->dtype;
  if (d.lanes == 1 && d.code == kDLFloat && d.bits == 32) dt = CDType::f32;
  else if (d.lanes == 1 && d.code == kDLFloat && d.bits == 64) dt = CDType::f64;
  else if (d.lanes == 1 && d.code == kDLInt && d.bits == 64) dt = CDType::i64;
  else
    fail_type(fn, "tensors of dtype " + dl_dtype_str(d) + " cannot be shared with deepgrad on "
                  "cuda, which holds float32, float64 and int64; convert first (a copy), e.g. "
                  "x.float() or x.to(torch.float32) in torch, x.astype(cupy.float32) in CuPy");
  if (t->ndim < 0) fail_value(fn, "negative ndim in the DLPack tensor");
  std::vector<index_t> shape(t->shape, t->shape + t->ndim);
  bool empty = false;
  for (index_t n : shape) {
    if (n < 0) fail_value(fn, "negative dimension in the DLPack tensor's shape");
    if (n == 0) empty = true;
  }
  if (t->strides && !empty) {
    index_t expect = 1;
    for (int k = t->ndim; k-- > 0;) {
      if (shape[k] != 1 && t->strides[k] != expect) {
        std::string st = "(";
        for (int j = 0; j < t->ndim; ++j) st += (j ? ", " : "") + std::to_string(t->strides[j]);
        st += t->ndim == 1 ? ",)" : ")";
        fail_value(fn, "the tensor of shape " + CudaArray::shape_str(shape) +
                           " is not C-contiguous (strides " + st + " in elements); deepgrad "
                           "shares only C-contiguous memory: pass x.contiguous() (torch) or "
                           "cupy.ascontiguousarray(x) (a copy)");
      }
      expect *= shape[k];
    }
  }
  if (flags & DLPACK_FLAG_BITMASK_READ_ONLY)
    fail_value(fn, "the producer exports read-only memory; deepgrad's in-place updates would "
                   "write into it: pass a writable tensor, or a copy (x.clone() in torch)");
  char* data = static_cast<char*>(t->data) + t->byte_offset;
  const std::size_t item = dc::dtype_size(dt);
  if (reinterpret_cast<std::uintptr_t>(data) % item != 0)
    fail_value(fn, "the tensor's data is not aligned to its " + std::to_string(item) +
                   "-byte elements; pass a copy (x.clone() in torch)");
  // Last (the first check that talks to the CUDA runtime): the device deepgrad launches on.
  const int dev = dc::current_device();
  if (t->device.device_id != dev)
    buffer_error(std::string(fn) + ": the tensor is on cuda:" +
                 std::to_string(t->device.device_id) +
                 " but deepgrad runs on cuda:" + std::to_string(dev) +
                 "; move it with x.to('cuda:" + std::to_string(dev) + "') (a copy)");
  // Ownership moves to the storage: rename the capsule so its destructor leaves it alone.
  if (PyCapsule_SetName(cap, versioned ? "used_dltensor_versioned" : "used_dltensor") != 0)
    throw py::error_already_set();
  auto* im = new Imported{managed, versioned};
  const std::size_t nbytes = static_cast<std::size_t>(CudaArray::numel_of(shape)) * item;
  return CudaArray(dc::Storage::external(data, nbytes, &release_imported, im), 0, shape, dt);
}

void bind_cuda_dlpack(py::module_& m) {
  m.def("cuda_to_dlpack", &to_dlpack, py::arg("array"), py::arg("versioned") = true,
        py::arg("minor") = 1, py::arg("stream") = py::none(),
        "A DLPack capsule sharing the CudaArray's device memory (zero copy; see "
        "bind_cuda_dlpack.cpp).");
  m.def("cuda_from_dlpack", &from_dlpack, py::arg("capsule"),
        "A CudaArray sharing a DLPack producer's CUDA memory (zero copy); the producer's deleter "
        "runs when the last view is dropped.");
  m.def("cuda_current_device", &dc::current_device);
}

DG_REGISTER_BINDINGS(bind_cuda_dlpack);

}  // namespace
}  // namespace dg::bind
#endif  // DG_HAVE_CUDA
