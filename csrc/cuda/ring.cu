// The device ring of per-step statistics (deepgrad/cuda_ring.h). Device and pinned memory come
// straight from the runtime (not the caching allocator: the ring is small, lives as long as its
// monitor, and must not show up in memory_allocated()).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <stdexcept>
#include <string>
#include <utility>

#include "deepgrad/cuda_array.h"
#include "deepgrad/cuda_ring.h"

namespace dg::cuda {

namespace {

// A pinned host chunk that receives one copy_async: up to `slots` records.
using HostValues = std::vector<std::pair<index_t, double>>;  // (column, value)

struct Chunk {
  double* host = nullptr;
  cudaEvent_t done = nullptr;
  std::vector<std::int64_t> steps;  // of the records in it, oldest first
  std::vector<HostValues> values;   // host-side values of each record, written on harvest
};

struct Table {
  std::vector<std::int64_t> host;
  std::int64_t* dev = nullptr;
  std::int64_t* pinned = nullptr;  // the upload's source, kept until the ring goes
};

}  // namespace

struct StatRing::Impl {
  index_t slots = 0, width = 0;
  double* dev = nullptr;                  // (slots, width)
  std::vector<std::int64_t> slot_steps;   // the step held by each slot
  std::vector<HostValues> slot_values;    // values given on the host for each slot's record
  index_t written = 0;                    // records begun
  index_t copied = 0;                     // records whose copy is enqueued
  std::deque<Chunk> inflight, spare;      // copies enqueued, oldest first; free chunks
  std::vector<std::int64_t> out_steps;    // harvested and not yet read
  std::vector<double> out_rows;
  std::vector<Table> tables;
  void* ws = nullptr;
  std::size_t ws_bytes = 0;

  std::size_t row_bytes() const { return sizeof(double) * (std::size_t)width; }

  void harvest(Chunk& c) {
    const std::size_t m = c.steps.size(), first = out_rows.size();
    out_steps.insert(out_steps.end(), c.steps.begin(), c.steps.end());
    out_rows.insert(out_rows.end(), c.host, c.host + m * (std::size_t)width);
    for (std::size_t k = 0; k < m; ++k)
      for (const auto& [col, v] : c.values[k]) out_rows[first + k * width + col] = v;
    c.steps.clear();
    c.values.clear();
  }
  // Moves every completed copy (in order) to host storage; never waits.
  void harvest_ready() {
    while (!inflight.empty()) {
      const cudaError_t e = cudaEventQuery(inflight.front().done);
      if (e == cudaErrorNotReady) {
        cudaGetLastError();  // not an error: clear it so the next check_launch does not see it
        return;
      }
      check_status(e, "cudaEventQuery (CudaStatRing)");
      harvest(inflight.front());
      spare.push_back(std::move(inflight.front()));
      inflight.pop_front();
    }
  }
  Chunk take_chunk() {
    if (!spare.empty()) {
      Chunk c = std::move(spare.front());
      spare.pop_front();
      return c;
    }
    Chunk c;
    check_status(cudaMallocHost(reinterpret_cast<void**>(&c.host), row_bytes() * slots),
                 "cudaMallocHost (CudaStatRing)");
    const cudaError_t e = cudaEventCreateWithFlags(&c.done, cudaEventDisableTiming);
    if (e != cudaSuccess) {
      cudaFreeHost(c.host);
      check_status(e, "cudaEventCreate (CudaStatRing)");
    }
    return c;
  }
  void release(Chunk& c) {
    if (c.host) cudaFreeHost(c.host);
    if (c.done) cudaEventDestroy(c.done);
    c.host = nullptr;
    c.done = nullptr;
  }
};

StatRing::StatRing(index_t slots, index_t width) : impl_(new Impl) {
  if (slots < 1 || width < 1)
    throw std::invalid_argument("CudaStatRing: slots and width must be >= 1");
  require_device("CudaStatRing");
  Impl& r = *impl_;
  r.slots = slots;
  r.width = width;
  r.slot_steps.assign((std::size_t)slots, -1);
  r.slot_values.assign((std::size_t)slots, {});
  check_status(cudaMalloc(reinterpret_cast<void**>(&r.dev), r.row_bytes() * slots),
               "cudaMalloc (CudaStatRing)");
}

StatRing::~StatRing() {
  // Errors here are ignored: at interpreter exit the context may already be gone.
  Impl& r = *impl_;
  if (!r.inflight.empty()) cudaEventSynchronize(r.inflight.back().done);  // no copy in flight
  for (auto& c : r.inflight) r.release(c);
  for (auto& c : r.spare) r.release(c);
  for (auto& t : r.tables) {
    if (t.dev) cudaFree(t.dev);
    if (t.pinned) cudaFreeHost(t.pinned);
  }
  if (r.ws) cudaFree(r.ws);
  if (r.dev) cudaFree(r.dev);
  cudaGetLastError();
}

index_t StatRing::slots() const { return impl_->slots; }
index_t StatRing::width() const { return impl_->width; }
index_t StatRing::records() const { return impl_->written; }
index_t StatRing::unread() const {
  return impl_->written - impl_->copied + (index_t)impl_->out_steps.size() +
         [&] {
           index_t m = 0;
           for (auto& c : impl_->inflight) m += (index_t)c.steps.size();
           return m;
         }();
}

double* StatRing::begin(std::int64_t step) {
  Impl& r = *impl_;
  if (r.written - r.copied == r.slots) copy_async();  // every slot holds an uncopied record
  const index_t slot = r.written % r.slots;
  double* p = r.dev + slot * r.width;
  // 0xff bytes: every value a NaN until a kernel writes it
  check_status(cudaMemsetAsync(p, 0xff, r.row_bytes(), current_stream()),
               "cudaMemsetAsync (CudaStatRing.begin)");
  r.slot_steps[(std::size_t)slot] = step;
  r.slot_values[(std::size_t)slot].clear();
  ++r.written;
  return p;
}

void StatRing::copy_async() {
  Impl& r = *impl_;
  r.harvest_ready();
  const index_t count = r.written - r.copied;
  if (count == 0) return;
  Chunk c = r.take_chunk();
  const index_t first = r.copied % r.slots;
  const index_t head = std::min(count, r.slots - first);
  cudaStream_t s = current_stream();
  check_status(cudaMemcpyAsync(c.host, r.dev + first * r.width, r.row_bytes() * head,
                               cudaMemcpyDeviceToHost, s),
               "cudaMemcpyAsync (CudaStatRing)");
  if (count > head)  // wrapped: the rest starts at slot 0
    check_status(cudaMemcpyAsync(c.host + head * r.width, r.dev, r.row_bytes() * (count - head),
                                 cudaMemcpyDeviceToHost, s),
                 "cudaMemcpyAsync (CudaStatRing)");
  check_status(cudaEventRecord(c.done, s), "cudaEventRecord (CudaStatRing)");
  c.steps.resize((std::size_t)count);
  c.values.resize((std::size_t)count);
  for (index_t k = 0; k < count; ++k) {
    const std::size_t slot = (std::size_t)((first + k) % r.slots);
    c.steps[(std::size_t)k] = r.slot_steps[slot];
    c.values[(std::size_t)k].swap(r.slot_values[slot]);
  }
  r.inflight.push_back(std::move(c));
  r.copied += count;
}

void StatRing::read(std::vector<std::int64_t>& steps, std::vector<double>& rows) {
  Impl& r = *impl_;
  copy_async();
  if (!r.inflight.empty()) {
    note_host_sync();
    check_status(cudaEventSynchronize(r.inflight.back().done),
                 "cudaEventSynchronize (CudaStatRing.read)");
    r.harvest_ready();
  }
  steps.swap(r.out_steps);
  rows.swap(r.out_rows);
  r.out_steps.clear();
  r.out_rows.clear();
}

void StatRing::put_host(index_t col, double value) {
  Impl& r = *impl_;
  if (r.written == 0) throw std::logic_error("CudaStatRing.put_host before begin");
  r.slot_values[(std::size_t)((r.written - 1) % r.slots)].emplace_back(col, value);
}

const std::int64_t* StatRing::device_table(const std::int64_t* host, index_t count) {
  Impl& r = *impl_;
  const std::size_t nb = sizeof(std::int64_t) * (std::size_t)count;
  for (auto& t : r.tables)
    if (t.host.size() == (std::size_t)count && std::memcmp(t.host.data(), host, nb) == 0)
      return t.dev;
  if (r.tables.size() >= 256) {  // a new table every step would be a caller bug: keep 256
    cudaFree(r.tables.front().dev);  // implicitly waits for the kernels that read it
    cudaFreeHost(r.tables.front().pinned);
    r.tables.erase(r.tables.begin());
  }
  Table t;
  check_status(cudaMalloc(reinterpret_cast<void**>(&t.dev), nb ? nb : 8),
               "cudaMalloc (CudaStatRing table)");
  const cudaError_t e = cudaMallocHost(reinterpret_cast<void**>(&t.pinned), nb ? nb : 8);
  if (e != cudaSuccess) {
    cudaFree(t.dev);
    check_status(e, "cudaMallocHost (CudaStatRing table)");
  }
  std::memcpy(t.pinned, host, nb);
  t.host.assign(host, host + count);
  r.tables.push_back(std::move(t));
  check_status(cudaMemcpyAsync(r.tables.back().dev, r.tables.back().pinned, nb,
                               cudaMemcpyHostToDevice, current_stream()),
               "cudaMemcpyAsync (CudaStatRing table)");
  return r.tables.back().dev;
}

void* StatRing::workspace(std::size_t bytes) {
  Impl& r = *impl_;
  if (r.ws_bytes < bytes) {
    if (r.ws) check_status(cudaFree(r.ws), "cudaFree (CudaStatRing workspace)");
    r.ws = nullptr;
    r.ws_bytes = 0;
    check_status(cudaMalloc(&r.ws, bytes), "cudaMalloc (CudaStatRing workspace)");
    r.ws_bytes = bytes;
  }
  return r.ws;
}

}  // namespace dg::cuda
