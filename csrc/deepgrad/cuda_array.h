// The device array shared by every CUDA entry point (deepgrad._C.CudaArray) and the conventions
// of the CUDA launchers. Free of CUDA headers so binding files compile with the host compiler.
//
// A CudaArray is a C-contiguous, row-major view into a refcounted device Storage: (storage,
// offset in elements, shape, dtype). Several arrays may share one storage (the parameter and
// gradient arenas hand out views of their flat buffer); the storage goes back to the caching
// allocator when the last view is dropped. Non-contiguous layouts (transpose, slices with a step)
// are never views: csrc/cuda/copy.cu materialises them.
//
// Launchers (csrc/cuda/*.cu, declared in deepgrad/cuda_kernels.h and friends) follow one shape:
//   void launch_xxx(float* out, const float* in, ..., index_t n, cudaStream_t stream);
// they enqueue on `stream` (use dg::cuda::current_stream()), then call
// dg::cuda::check_launch("xxx"), which throws std::runtime_error("xxx: CUDA error ...") if the
// launch failed. Entry points never synchronise unless they return a host value.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "deepgrad/common.h"

// cudaStream_t without <cuda_runtime.h> (the same typedef the runtime makes).
struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;

namespace dg::cuda {

enum class DType : int { f32 = 0, f64 = 1, i64 = 2 };

inline std::size_t dtype_size(DType t) { return t == DType::f32 ? 4 : 8; }
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    default: return "int64";
  }
}

// Raised when the device has no room for an allocation even after the cache was emptied;
// the bindings translate it to Python's MemoryError (deepgrad._C.CudaOutOfMemoryError).
struct OutOfMemory : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- runtime helpers (csrc/cuda/memory.cu) --------------------------------------------------
// Throws std::runtime_error naming `what` unless a usable CUDA device is present.
void require_device(const char* what);
// The stream every deepgrad launch uses (the legacy default stream: ordered with cudaMemcpy).
cudaStream_t current_stream();
// After a kernel launch: throws std::runtime_error("<what>: CUDA error <name>: <text>").
void check_launch(const char* what);
// Turns a cudaError_t (passed as int) into std::runtime_error naming `what`; no-op on success.
void check_status(int status, const char* what);
void synchronize();
// The device deepgrad's launches run on (cudaGetDevice; csrc/cuda/interop.cu).
int current_device();
// True when `p` points into device memory (or managed memory) of `device`, as the runtime's
// pointer attributes say; false for host memory, another device or an address the runtime does
// not know (csrc/cuda/interop.cu). It cannot say how many bytes follow `p`.
bool is_device_pointer(const void* p, int device);
// DLPack export (csrc/cuda/interop.cu): makes the consumer's stream wait for the work enqueued
// so far on current_stream(), without a host synchronisation. `stream` is the consumer's value
// from the Python protocol: 1 the legacy default stream (deepgrad's own: nothing to do), 2 the
// per-thread default stream, anything else a cudaStream_t; -1 and 0 are handled by the caller.
void consumer_stream_wait(std::intptr_t stream);
// Host synchronisations so far (device-to-host copies, stream/device synchronize calls made by
// deepgrad): a training step is meant to make none; tests and tools/gpu-check count them.
std::int64_t host_syncs();
void note_host_sync();

// ---- the caching allocator (csrc/cuda/memory.cu) --------------------------------------------
// Blocks are rounded up to size buckets and kept on per-bucket free lists when freed, so a
// training step after warm-up never calls cudaMalloc. On cudaMalloc failure the cache is
// emptied and the call retried once; then OutOfMemory is thrown saying how much was asked.
void* device_alloc(std::size_t bytes, std::size_t* granted);
void device_free(void* ptr, std::size_t granted);
std::size_t memory_allocated();  // bytes in blocks handed out (rounded sizes)
std::size_t memory_reserved();   // bytes held from cudaMalloc (handed out + cached)
void empty_cache();              // cudaFree every cached (unused) block
std::int64_t malloc_calls();     // cudaMalloc calls so far (tests check steady state makes none)

// Async memory operations on current_stream().
void memcpy_h2d(void* dst, const void* src, std::size_t bytes);
void memcpy_d2h(void* dst, const void* src, std::size_t bytes);  // synchronises
void memcpy_d2d(void* dst, const void* src, std::size_t bytes);
void memset_zero(void* dst, std::size_t bytes);

struct Storage {
  void* ptr = nullptr;
  std::size_t bytes = 0;    // bytes asked for
  std::size_t granted = 0;  // bucket size actually reserved
  // Memory owned by someone else (a DLPack producer's tensor, bindings/bind_cuda_dlpack.cpp):
  // release(release_ctx) runs when the last view is dropped, instead of returning the block to
  // the caching allocator.
  void (*release)(void*) = nullptr;
  void* release_ctx = nullptr;
  Storage() = default;
  explicit Storage(std::size_t nbytes) : bytes(nbytes) {
    if (nbytes) ptr = device_alloc(nbytes, &granted);
  }
  // Wraps `nbytes` of device memory at `p` without copying; `rel(ctx)` frees it.
  static std::shared_ptr<Storage> external(void* p, std::size_t nbytes, void (*rel)(void*),
                                           void* ctx) {
    auto s = std::make_shared<Storage>();
    s->ptr = p;
    s->bytes = nbytes;
    s->release = rel;
    s->release_ctx = ctx;
    return s;
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (release) release(release_ctx);
    else if (ptr) device_free(ptr, granted);
  }
};

class CudaArray {
 public:
  std::shared_ptr<Storage> storage;
  index_t offset = 0;  // in elements of dtype
  std::vector<index_t> shape;
  DType dtype = DType::f32;

  CudaArray() = default;
  CudaArray(std::shared_ptr<Storage> s, index_t off, std::vector<index_t> shp, DType t)
      : storage(std::move(s)), offset(off), shape(std::move(shp)), dtype(t) {}

  // A fresh array (uninitialised memory from the caching allocator).
  static CudaArray empty(std::vector<index_t> shp, DType t = DType::f32) {
    for (index_t d : shp)
      if (d < 0) throw std::invalid_argument("CudaArray: negative dimension in shape " + shape_str(shp));
    index_t n = numel_of(shp);
    require_device("CudaArray.empty");
    auto s = std::make_shared<Storage>(static_cast<std::size_t>(n) * dtype_size(t));
    return CudaArray(std::move(s), 0, std::move(shp), t);
  }
  static CudaArray zeros(std::vector<index_t> shp, DType t = DType::f32) {
    CudaArray a = empty(std::move(shp), t);
    if (a.numel()) memset_zero(a.raw(), a.nbytes());
    return a;
  }
  // An array of the same shape and dtype as `like`.
  static CudaArray empty_like(const CudaArray& like) { return empty(like.shape, like.dtype); }
  static CudaArray zeros_like(const CudaArray& like) { return zeros(like.shape, like.dtype); }

  index_t ndim() const { return static_cast<index_t>(shape.size()); }
  index_t numel() const { return numel_of(shape); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype); }
  index_t dim(index_t i) const { return shape.at(static_cast<std::size_t>(i < 0 ? i + ndim() : i)); }

  void* raw() const {
    return storage && storage->ptr ? static_cast<char*>(storage->ptr) + offset * dtype_size(dtype)
                                   : nullptr;
  }
  // Typed device pointer; the caller has checked the dtype (see bindings/cuda_check.h).
  template <class T>
  T* data() const { return static_cast<T*>(raw()); }

  // A view of `count`=numel(shp) elements starting `off` elements into this array.
  CudaArray view(index_t off, std::vector<index_t> shp) const {
    index_t n = numel_of(shp);
    if (off < 0 || off + n > numel())
      throw std::out_of_range("CudaArray.view: elements [" + std::to_string(off) + ", " +
                              std::to_string(off + n) + ") fall outside an array of " +
                              std::to_string(numel()) + " elements");
    return CudaArray(storage, offset + off, std::move(shp), dtype);
  }
  CudaArray reshape(std::vector<index_t> shp) const {
    if (numel_of(shp) != numel())
      throw std::invalid_argument("CudaArray.reshape: cannot reshape " + shape_str(shape) + " to " +
                                  shape_str(shp));
    return CudaArray(storage, offset, std::move(shp), dtype);
  }

  static index_t numel_of(const std::vector<index_t>& shp) {
    index_t n = 1;
    for (index_t d : shp) n *= d;
    return n;
  }
  static std::string shape_str(const std::vector<index_t>& shp) {
    std::string s = "(";
    for (std::size_t i = 0; i < shp.size(); ++i) s += (i ? ", " : "") + std::to_string(shp[i]);
    return s + (shp.size() == 1 ? ",)" : ")");
  }
};

}  // namespace dg::cuda
