// CUDA runtime calls behind DLPack interop (bindings/bind_cuda_dlpack.cpp): the current device,
// the stream ordering a consumer asks for with __dlpack__(stream=...), and the pointer check of
// cuda_tensors_health_at.
#include <cuda_runtime.h>

#include <cstdint>

#include "deepgrad/cuda_array.h"

namespace dg::cuda {

int current_device() {
  int d = 0;
  check_status(cudaGetDevice(&d), "cudaGetDevice");
  return d;
}

bool is_device_pointer(const void* p, int device) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();  // an address the runtime does not know: not ours to read
    return false;
  }
  return (a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged) && a.device == device;
}

void consumer_stream_wait(std::intptr_t stream) {
  cudaStream_t producer = current_stream();
  cudaStream_t consumer = stream == 2 ? cudaStreamPerThread
                                      : reinterpret_cast<cudaStream_t>(stream);
  // The legacy default stream (1, and deepgrad's own stream) is ordered with every blocking
  // stream already; a consumer on deepgrad's stream needs nothing either.
  if (stream == 1 || consumer == producer) return;
  cudaEvent_t ev = nullptr;
  check_status(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming),
               "__dlpack__: cudaEventCreate");
  int st = cudaEventRecord(ev, producer);
  if (st == cudaSuccess) st = cudaStreamWaitEvent(consumer, ev, 0);
  cudaEventDestroy(ev);  // released once the wait has been satisfied
  check_status(st, "__dlpack__: making the consumer's stream wait (cudaStreamWaitEvent)");
}

}  // namespace dg::cuda
