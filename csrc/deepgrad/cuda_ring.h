// A device ring buffer of per-step statistics (deepgrad._C.CudaStatRing): K slots of W float64
// values in device memory. Kernels write a step's statistics straight into its slot, and the
// filled slots travel to pinned host memory by asynchronous copies, so recording every step
// never makes the host wait for the device; only read() does, once.
//
//   begin(step)   the next slot (record r goes to slot r % K), filled with NaN; when all K slots
//                 hold records not yet copied out, their copy is enqueued first. No host sync.
//   copy_async()  enqueues the copy of the records not yet copied (at most two cudaMemcpyAsync
//                 into a pinned chunk, then an event); never waits. Chunks whose event has
//                 completed are moved to host storage on the way (cudaEventQuery, no wait).
//   read()        every record since the last read, oldest first: one host synchronisation
//                 (the last chunk's event), counted by dg::cuda::note_host_sync.
//
// Everything runs on dg::cuda::current_stream(), so a slot is copied before a later record
// overwrites it. Free of CUDA headers (the state lives in ring.cu).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "deepgrad/common.h"

namespace dg::cuda {

class StatRing {
 public:
  StatRing(index_t slots, index_t width);
  ~StatRing();
  StatRing(const StatRing&) = delete;
  StatRing& operator=(const StatRing&) = delete;

  index_t slots() const;
  index_t width() const;
  index_t records() const;  // begun since construction
  index_t unread() const;   // begun and not yet returned by read()

  double* begin(std::int64_t step);
  // A value known on the host for the record begun last, at column `col`: kept beside the slot
  // and written into its row when the row reaches the host (no transfer, no wait).
  void put_host(index_t col, double value);
  void copy_async();
  void read(std::vector<std::int64_t>& steps, std::vector<double>& rows);

  // A device copy of `count` int64 host values, uploaded on first use and kept, found again by
  // content (the arena's offsets, a [0, size] table per layer tensor: the same few every step).
  // Never waits while it holds at most 256 tables; beyond that the oldest is freed (cudaFree
  // waits for the device).
  const std::int64_t* device_table(const std::int64_t* host, index_t count);
  // Device scratch of at least `bytes` bytes owned by the ring. Growing it frees the old block
  // (cudaFree waits for the device), so callers ask once per record for the largest size; after
  // the first record of a given arena it never grows, and like the offset tables it allocates
  // nothing more.
  void* workspace(std::size_t bytes);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dg::cuda
