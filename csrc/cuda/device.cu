#include <cuda_runtime.h>
#include "deepgrad/cuda_info.h"

namespace dg::cuda {

int device_count() {
  int n = 0;
  // No driver or no GPU: cudaGetDeviceCount returns an error; that simply means zero devices.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later queries start clean
    return 0;
  }
  return n;
}

std::string device_name(int index) {
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
    cudaGetLastError();
    return std::string();
  }
  return std::string(prop.name);
}

}  // namespace dg::cuda
