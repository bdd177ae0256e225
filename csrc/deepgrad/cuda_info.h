// Device query, implemented in csrc/cuda/device.cu when CUDA kernels are built.
#pragma once
#include <string>

namespace dg::cuda {
// Number of CUDA devices visible; 0 when there is no driver or no GPU (never throws).
int device_count();
// Name of device `index`; empty string if it cannot be queried.
std::string device_name(int index);
}  // namespace dg::cuda
