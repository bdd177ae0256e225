// The CUDA runtime helpers and the caching device allocator behind dg::cuda::Storage.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <sstream>
#include <vector>

#include "deepgrad/cuda_array.h"
#include "deepgrad/cuda_info.h"

namespace dg::cuda {

namespace {

std::string error_text(cudaError_t e) {
  return std::string("CUDA error ") + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
}

std::string human_bytes(std::size_t b) {
  char buf[64];
  const double x = static_cast<double>(b);
  if (x >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", x / (1ull << 30));
  else if (x >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.2f MiB", x / (1ull << 20));
  else std::snprintf(buf, sizeof buf, "%zu bytes", b);
  return buf;
}

// Small blocks are rounded to 512 B, large ones to 2 MiB; a cached block is reused for a request
// of the same rounded size or one up to 1/8 smaller (bounded waste). Training repeats the same
// sizes every step, so after the first step every request is served from the cache.
constexpr std::size_t kSmall = 1 << 20;
std::size_t round_size(std::size_t bytes) {
  if (bytes <= kSmall) return (bytes + 511) / 512 * 512;
  const std::size_t big = 2 << 20;
  return (bytes + big - 1) / big * big;
}

struct Allocator {
  std::mutex mu;
  std::multimap<std::size_t, void*> free_blocks;  // rounded size -> block
  std::size_t allocated = 0, reserved = 0;
  std::int64_t mallocs = 0;

  void release_cache_locked() {
    for (auto& kv : free_blocks) {
      cudaFree(kv.second);  // errors at teardown are ignored: the memory goes with the context
      reserved -= kv.first;
    }
    free_blocks.clear();
    cudaGetLastError();
  }
};

// Leaked on purpose: Storage objects owned by Python may be destroyed after static destructors.
Allocator& allocator() {
  static Allocator* a = new Allocator();
  return *a;
}

}  // namespace

void check_status(int status, const char* what) {
  if (status == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  throw std::runtime_error(std::string(what) + ": " + error_text(static_cast<cudaError_t>(status)));
}

void check_launch(const char* what) { check_status(cudaGetLastError(), what); }

void require_device(const char* what) {
  static int cached = -1;  // device count once known to be > 0
  if (cached > 0) return;
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    cudaGetLastError();
    throw std::runtime_error(std::string(what) +
                             ": CUDA is not available: no NVIDIA GPU or driver was found (" +
                             (e != cudaSuccess ? error_text(e) : std::string("0 devices")) +
                             "); deepgrad.cuda.is_available() is False");
  }
  cached = n;
}

cudaStream_t current_stream() { return nullptr; }

namespace {
std::atomic<std::int64_t> g_host_syncs{0};
}
std::int64_t host_syncs() { return g_host_syncs.load(std::memory_order_relaxed); }
void note_host_sync() { g_host_syncs.fetch_add(1, std::memory_order_relaxed); }

void synchronize() {
  require_device("deepgrad.cuda.synchronize");
  note_host_sync();
  check_status(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

void* device_alloc(std::size_t bytes, std::size_t* granted) {
  Allocator& A = allocator();
  const std::size_t want = round_size(bytes);
  std::lock_guard<std::mutex> lock(A.mu);
  auto it = A.free_blocks.lower_bound(want);
  if (it != A.free_blocks.end() && it->first <= want + want / 8) {
    void* p = it->second;
    *granted = it->first;
    A.free_blocks.erase(it);
    A.allocated += *granted;
    return p;
  }
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, want);
  ++A.mallocs;
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    A.release_cache_locked();
    e = cudaMalloc(&p, want);
    ++A.mallocs;
  }
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    std::size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    cudaGetLastError();
    std::ostringstream msg;
    msg << "CUDA out of memory: tried to allocate " << human_bytes(bytes) << " (" << bytes
        << " bytes); the device has " << human_bytes(total_b) << " in total, " << human_bytes(free_b)
        << " free, and deepgrad holds " << human_bytes(A.allocated) << " in use";
    throw OutOfMemory(msg.str());
  }
  check_status(e, "cudaMalloc");
  *granted = want;
  A.allocated += want;
  A.reserved += want;
  return p;
}

void device_free(void* ptr, std::size_t granted) {
  if (!ptr) return;
  Allocator& A = allocator();
  std::lock_guard<std::mutex> lock(A.mu);
  A.allocated -= granted;
  A.free_blocks.emplace(granted, ptr);
}

std::size_t memory_allocated() {
  std::lock_guard<std::mutex> lock(allocator().mu);
  return allocator().allocated;
}
std::size_t memory_reserved() {
  std::lock_guard<std::mutex> lock(allocator().mu);
  return allocator().reserved;
}
std::int64_t malloc_calls() {
  std::lock_guard<std::mutex> lock(allocator().mu);
  return allocator().mallocs;
}
void empty_cache() {
  Allocator& A = allocator();
  std::lock_guard<std::mutex> lock(A.mu);
  if (A.free_blocks.empty()) return;
  // Kernels queued on the stream may still read freed-and-cached blocks' former owners' data;
  // wait for them before handing memory back to the driver.
  cudaDeviceSynchronize();
  A.release_cache_locked();
}

void memcpy_h2d(void* dst, const void* src, std::size_t bytes) {
  if (bytes) check_status(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy (host to device)");
}
void memcpy_d2h(void* dst, const void* src, std::size_t bytes) {
  note_host_sync();
  if (bytes) check_status(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy (device to host)");
}
void memcpy_d2d(void* dst, const void* src, std::size_t bytes) {
  if (bytes)
    check_status(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, current_stream()),
                 "cudaMemcpyAsync (device to device)");
}
void memset_zero(void* dst, std::size_t bytes) {
  if (bytes) check_status(cudaMemsetAsync(dst, 0, bytes, current_stream()), "cudaMemsetAsync");
}

}  // namespace dg::cuda
