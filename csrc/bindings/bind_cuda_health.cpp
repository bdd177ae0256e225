// One-pass tensor health on CUDA (csrc/cuda/health.cu) and the device ring of per-step
// statistics (csrc/cuda/ring.cu):
//
//   health_replay(buf, offsets) -> float64 (S, 7)        every build: the CUDA kernel's tiling
//       and merge order replayed on the host with deepgrad/health.h (the code the kernel runs),
//       so CPU-only test runs check the device math against numpy
//   cuda_segment_health(buf, offsets) -> float64 numpy (S, 7)      segment_health on CUDA
//   cuda_tensors_health(arrays) -> float64 numpy (K, 7)             tensors_health on CUDA
//   cuda_tensors_health_at(ptrs, sizes, dtype) -> float64 numpy (K, 7)   the same over device
//       addresses (another framework's tensors), each checked to be device memory
//   cuda_act_stats(z, y, saturation, center, bound, dead) -> float64 CudaArray (4,)
//   cuda_act_stats_at(items) -> float64 numpy (K, 4)   the same for K layers given as device
//       addresses (another framework's tensors), each checked; one synchronisation
//       act_stats on the device, nothing waits: [sum z, sum z^2, saturated, live columns]
//   cuda_monitor_norms(params, grads, prev, offsets, diff=False, snapshot=False, health=False)
//       the CPU's monitor_norms on the device (same results), one host synchronisation
//   CudaStatRing(slots, width)                            K slots x W float64 on the device
//       .record(step, health=(), values=())  one per-step record, no host synchronisation:
//           health: (col, buf, offsets) -> buf's (S, 7) rows at columns [col, col + 7 S)
//                   (col, [arrays])     -> one row per array (K, 7) at [col, col + 7 K), in
//                                          one pair of launches per 64 arrays
//           values: (col, array)        -> the array's values as float64 at [col, col + size)
//                   (a CudaArray is copied on the device; a number or numpy array known on the
//                   host is kept beside the slot and written into the row when it arrives)
//           columns a record does not write hold NaN
//       .copy_async()                        enqueue the copy of the filled slots to pinned memory
//       .read() -> (steps int64 (m,), rows float64 (m, W))   since the last read; one sync
//
// buf: a 1-D float32/float64 array (numpy for health_replay, CudaArray otherwise); offsets: a
// numpy integer array (S + 1,) from 0 to buf.size, non-decreasing (the CPU entry's contract).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "bindings/check.h"
#include "bindings/registry.h"
#include "deepgrad/health.h"

#ifdef DG_HAVE_CUDA
#include "bindings/cuda_check.h"
#include "deepgrad/cuda_array.h"
#include "deepgrad/cuda_kernels.h"
#include "deepgrad/cuda_ops.h"
#include "deepgrad/cuda_ring.h"
#endif

namespace dg::bind {
namespace {

// The offsets (S+1,) of a flat buffer of n elements, checked: start at 0, never decrease, end
// at n. A CudaArray is refused (the table lives on the host).
py::array_t<std::int64_t, py::array::c_style> offsets_arg(const char* fn, py::handle offsets_o,
                                                          index_t n) {
  if (!py::isinstance<py::array>(offsets_o))
    fail_type(fn, "offsets must be a numpy integer array (S+1,) on the host, got " +
                      py::str(py::type::of(offsets_o).attr("__name__")).cast<std::string>());
  auto off = int_labels(offsets_o, fn, "offsets");
  if (off.ndim() != 1 || off.shape(0) < 1)
    fail_value(fn, "offsets must be 1-D with S+1 >= 1 entries (segment starts, then buf.size), "
                   "got shape " + shape_str(off));
  const index_t S = off.shape(0) - 1;
  const std::int64_t* o = off.data();
  if (o[0] != 0) fail_value(fn, "offsets[0] must be 0, got " + std::to_string(o[0]));
  for (index_t s = 0; s < S; ++s)
    if (o[s + 1] < o[s])
      fail_value(fn, "offsets must be non-decreasing, but offsets[" + std::to_string(s + 1) +
                         "] = " + std::to_string(o[s + 1]) + " < offsets[" + std::to_string(s) +
                         "] = " + std::to_string(o[s]));
  if (o[S] != n)
    fail_value(fn, "offsets[-1] = " + std::to_string(o[S]) + " but buf has " + std::to_string(n) +
                       " elements; the last offset must equal buf.size");
  return off;
}

// The CUDA kernel's schedule on the host: tiles of health_tile_size(n) elements, each tile's
// part of each segment folded into slot t + s, then each segment's slots merged in tile order.
// Within a block the kernel folds by thread and merges by a shuffle tree; here the fold is in
// element order, so the sum of squares may differ in the last bits, nothing else.
template <class T>
void replay(double* out, const T* buf, const std::int64_t* off, index_t n, index_t S,
            index_t tile) {
  const index_t tiles = n > 0 ? (n + tile - 1) / tile : 1;
  std::vector<HealthAcc<T>> part(static_cast<std::size_t>(tiles + S), health_empty<T>());
  for (index_t t = 0; n > 0 && t < tiles; ++t) {
    const index_t lo = t * tile, hi = std::min<index_t>(n, lo + tile);
    index_t l = 0, r = S;
    while (l < r) {
      const index_t mid = (l + r) / 2;
      if (off[mid + 1] > lo) r = mid; else l = mid + 1;
    }
    for (index_t s = l; s < S && off[s] < hi; ++s) {
      const index_t a = std::max<index_t>(off[s], lo), b = std::min<index_t>(off[s + 1], hi);
      if (a >= b) continue;
      HealthAcc<T> acc = health_empty<T>();
      for (index_t i = a; i < b; ++i) health_add(acc, buf[i], i);
      part[static_cast<std::size_t>(t + s)] = acc;
    }
  }
  for (index_t s = 0; s < S; ++s) {
    HealthAcc<T> acc = health_empty<T>();
    if (off[s + 1] > off[s])
      for (index_t t = off[s] / tile; t <= (off[s + 1] - 1) / tile; ++t)
        health_merge(acc, part[static_cast<std::size_t>(t + s)]);
    health_finish(out + kHealthStats * s, acc, off[s]);
  }
}

py::array_t<double> health_replay(py::handle buf_o, py::handle offsets_o, index_t tile) {
  const char* fn = "health_replay";
  py::array buf = float_input(buf_o, fn, "buf");
  ndim_is(fn, buf, "buf", 1);
  const index_t n = buf.size();
  auto off = offsets_arg(fn, offsets_o, n);
  const index_t S = off.shape(0) - 1;
  if (tile < 0) fail_value(fn, "tile must be >= 1, or 0 for the kernel's own tiling");
  py::array_t<double> out({py::ssize_t(S), py::ssize_t(kHealthStats)});
  const index_t tl = tile > 0 ? tile : health_tile_size(n);
  if (is_f32(buf))
    replay<float>(out.mutable_data(), static_cast<const float*>(buf.data()), off.data(), n, S, tl);
  else
    replay<double>(out.mutable_data(), static_cast<const double*>(buf.data()), off.data(), n, S,
                   tl);
  return out;
}

#ifdef DG_HAVE_CUDA

namespace dc = dg::cuda;

const CudaArray& float_buf(const char* fn, py::handle o, const char* name) {
  const CudaArray& b = cuda_arg(o, fn, name);
  if (b.dtype == CDType::i64)
    fail_type(fn, std::string(name) + " has dtype int64 but the health kernel takes float32 or "
                                      "float64");
  cuda_ndim_is(fn, b, name, 1);
  return b;
}

py::array_t<double> segment_health(py::handle buf_o, py::handle offsets_o) {
  const char* fn = "cuda_segment_health";
  const CudaArray& buf = float_buf(fn, buf_o, "buf");
  auto off = offsets_arg(fn, offsets_o, buf.numel());
  const index_t S = off.shape(0) - 1;
  py::array_t<double> out({py::ssize_t(S), py::ssize_t(kHealthStats)});
  dc::segment_health_host(out.mutable_data(), buf.raw(), buf.dtype, off.data(), buf.numel(), S,
                          dc::current_stream());
  return out;
}

// sqrt of the sum of squares over a whole segment, NaN and Inf included, from its health row:
// what the CPU's monitor_norms reports (NaN wins, then Inf, else the L2 of the finite values).
double plain_norm(const double* h) {
  if (h[4] > 0) return std::numeric_limits<double>::quiet_NaN();
  if (h[5] > 0) return std::numeric_limits<double>::infinity();
  return h[0];
}

py::tuple monitor_norms(py::handle params_o, py::handle grads_o, py::handle prev_o,
                        py::handle offsets_o, bool diff, bool snapshot, bool health) {
  const char* fn = "cuda_monitor_norms";
  const CudaArray& params = float_buf(fn, params_o, "params");
  const CudaArray& grads = float_buf(fn, grads_o, "grads");
  cuda_same_dtype(fn, params, "params", grads, "grads");
  cuda_same_shape(fn, params, "params", grads, "grads");
  CudaArray* prev = nullptr;
  if (diff || snapshot) {
    if (prev_o.is_none()) fail_value(fn, "prev is needed for diff=True or snapshot=True but is None");
    prev = &cuda_arg(prev_o, fn, "prev", params.dtype);
    cuda_same_shape(fn, params, "params", *prev, "prev");
  }
  const index_t n = params.numel();
  auto off = offsets_arg(fn, offsets_o, n);
  const index_t S = off.shape(0) - 1;
  const int sets = diff ? 3 : 2;
  CudaArray work = diff ? CudaArray::empty({n}, params.dtype) : CudaArray();
  std::vector<double> rows(static_cast<std::size_t>(sets * S * kHealthStats));
  dc::health_rows_host(rows.data(), params.raw(), grads.raw(), prev ? prev->raw() : nullptr,
                       diff ? work.raw() : nullptr, params.dtype, off.data(), n, S, diff,
                       snapshot, dc::current_stream());
  py::array_t<double> pn(S), gn(S), dn(diff ? S : 0);
  py::array_t<double> gh({health ? S : index_t(0), index_t(3)});
  double *ppn = pn.mutable_data(), *pgn = gn.mutable_data();
  std::int64_t bad = 0;
  for (index_t s = 0; s < S; ++s) {
    const double* g = rows.data() + kHealthStats * s;
    const double* p = g + kHealthStats * S;
    const auto nb = static_cast<std::int64_t>(g[4] + g[5]);
    bad += nb;
    ppn[s] = plain_norm(p);
    pgn[s] = health ? (nb ? std::numeric_limits<double>::quiet_NaN() : g[0]) : plain_norm(g);
    if (diff) dn.mutable_data()[s] = plain_norm(p + kHealthStats * S);
    if (health) {
      double* h = gh.mutable_data() + 3 * s;
      h[0] = g[1], h[1] = double(nb), h[2] = g[6];
    }
  }
  py::object d = diff ? py::object(dn) : py::object(py::none());
  if (health) return py::make_tuple(pn, gn, d, bad, gh);
  return py::make_tuple(pn, gn, d, bad);
}

// A sequence of float CudaArrays of one dtype (any shapes, read flat): their pointers and sizes.
void tensor_list(const char* fn, py::handle seq, std::vector<const void*>& ptrs,
                 std::vector<index_t>& sizes, CDType& t) {
  if (!py::isinstance<py::sequence>(seq) || py::isinstance<CudaArray>(seq))
    fail_type(fn, "arrays must be a list or tuple of CudaArrays");
  t = CDType::f32;
  bool first = true;
  for (py::handle o : py::reinterpret_borrow<py::sequence>(seq)) {
    const CudaArray& a = cuda_arg(o, fn, "arrays[k]");
    if (a.dtype == CDType::i64)
      fail_type(fn, "arrays[k] has dtype int64 but the health kernel takes float32 or float64");
    if (!first && a.dtype != t)
      fail_type(fn, "arrays mix float32 and float64; pass one dtype per list");
    t = a.dtype;
    first = false;
    ptrs.push_back(a.raw());
    sizes.push_back(a.numel());
  }
}

// The health rows (K, 7) of K device arrays of one dtype: one pair of launches per 64 arrays,
// then one copy to the host (the one synchronisation).
py::array_t<double> health_rows_of(const std::vector<const void*>& ptrs,
                                   const std::vector<index_t>& sizes, CDType t) {
  const index_t K = (index_t)ptrs.size();
  py::array_t<double> out({K, index_t(kHealthStats)});
  if (K == 0) return out;
  const std::size_t ws = dc::tensors_health_workspace(sizes.data(), K, t);
  CudaArray work = CudaArray::empty({(index_t)((ws + 7) / 8)}, CDType::f64);
  CudaArray rows = CudaArray::empty({K, index_t(kHealthStats)}, CDType::f64);
  dc::tensors_health(rows.data<double>(), work.raw(), ptrs.data(), sizes.data(), K, t,
                     dc::current_stream());
  dc::memcpy_d2h(out.mutable_data(), rows.raw(), rows.nbytes());
  return out;
}

py::array_t<double> tensors_health(py::handle arrays) {
  const char* fn = "cuda_tensors_health";
  std::vector<const void*> ptrs;
  std::vector<index_t> sizes;
  CDType t;
  tensor_list(fn, arrays, ptrs, sizes, t);
  return health_rows_of(ptrs, sizes, t);
}

// tensors_health over raw device addresses of another framework's tensors (the torch monitor:
// t.data_ptr() and t.numel() cost ~0.5 us a tensor in Python where a DLPack export and import
// cost ~8 us). Each address is checked with the runtime's pointer attributes (device memory of
// deepgrad's device) before anything is launched; the caller keeps the tensors alive and
// contiguous for the call, which synchronises before it returns.
py::array_t<double> tensors_health_at(py::handle ptrs_o, py::handle sizes_o,
                                      const std::string& dtype) {
  const char* fn = "cuda_tensors_health_at";
  CDType t;
  if (dtype == "float32") t = CDType::f32;
  else if (dtype == "float64") t = CDType::f64;
  else fail_value(fn, "dtype must be 'float32' or 'float64', got '" + dtype + "'");
  if (!py::isinstance<py::list>(ptrs_o) || !py::isinstance<py::list>(sizes_o))
    fail_type(fn, "ptrs and sizes must be lists of ints");
  const py::list ptr_list = py::reinterpret_borrow<py::list>(ptrs_o);
  const py::list size_list = py::reinterpret_borrow<py::list>(sizes_o);
  if (ptr_list.size() != size_list.size())
    fail_value(fn, "ptrs has " + std::to_string(ptr_list.size()) + " entries but sizes has " +
                       std::to_string(size_list.size()));
  const index_t K = (index_t)ptr_list.size();
  auto int_at = [&](const py::list& l, index_t k, const char* name) -> std::int64_t {
    try {
      return py::cast<std::int64_t>(l[(std::size_t)k]);
    } catch (const py::cast_error&) {
      fail_type(fn, std::string(name) + "[" + std::to_string(k) + "] is not an int");
    }
  };
  std::vector<const void*> ptrs((std::size_t)K);
  std::vector<index_t> sizes((std::size_t)K);
  for (index_t k = 0; k < K; ++k) {
    const std::int64_t n = int_at(size_list, k, "sizes");
    const std::uintptr_t a = static_cast<std::uintptr_t>(int_at(ptr_list, k, "ptrs"));
    if (n < 0) fail_value(fn, "sizes[" + std::to_string(k) + "] is negative");
    ptrs[(std::size_t)k] = reinterpret_cast<const void*>(a);
    sizes[(std::size_t)k] = n;
  }
  if (K == 0) return health_rows_of(ptrs, sizes, t);
  dc::require_device(fn);
  const int dev = dc::current_device();
  for (index_t k = 0; k < K; ++k)
    if (sizes[(std::size_t)k] > 0 && !dc::is_device_pointer(ptrs[(std::size_t)k], dev))
      fail_value(fn, "ptrs[" + std::to_string(k) + "] is not an address in the device memory of "
                     "CUDA device " + std::to_string(dev) + " (pass t.data_ptr() of a CUDA "
                     "tensor on that device)");
  return health_rows_of(ptrs, sizes, t);
}

index_t col_arg(const char* fn, py::handle o, index_t need, index_t width, const char* what) {
  const index_t col = o.cast<index_t>();
  if (col < 0 || col + need > width)
    fail_value(fn, std::string(what) + " at column " + std::to_string(col) + " needs columns [" +
                       std::to_string(col) + ", " + std::to_string(col + need) +
                       ") but the ring has width " + std::to_string(width));
  return col;
}

py::tuple item_tuple(const char* fn, py::handle it, std::size_t len, const char* form) {
  if (!py::isinstance<py::tuple>(it) || py::len(it) != len)
    fail_type(fn, std::string("each item must be a tuple ") + form);
  return py::reinterpret_borrow<py::tuple>(it);
}

void ring_record(dc::StatRing& ring, std::int64_t step, const py::sequence& health,
                 const py::sequence& values) {
  const char* fn = "CudaStatRing.record";
  const index_t W = ring.width();
  struct HealthJob { const CudaArray* buf; const std::int64_t* off; index_t S, col; };
  struct TensorsJob {
    std::vector<const void*> ptrs;
    std::vector<index_t> sizes;
    CDType t;
    index_t col;
  };
  struct ValueJob { const CudaArray* a; index_t col; };
  struct HostJob { std::vector<double> v; index_t col; };
  // Every argument is checked before anything is enqueued: a bad item leaves the ring unchanged.
  std::vector<HealthJob> hjobs;
  std::vector<py::array_t<std::int64_t, py::array::c_style>> keep;  // the offsets' host arrays
  std::vector<TensorsJob> tjobs;
  for (py::handle it : health) {
    if (py::isinstance<py::tuple>(it) && py::len(it) == 2) {  // (col, [arrays]): one row each
      py::tuple t = py::reinterpret_borrow<py::tuple>(it);
      TensorsJob j;
      tensor_list(fn, t[1], j.ptrs, j.sizes, j.t);
      j.col = col_arg(fn, t[0], kHealthStats * (index_t)j.ptrs.size(), W,
                      "a health record of K arrays");
      tjobs.push_back(std::move(j));
      continue;
    }
    py::tuple t = item_tuple(fn, it, 3, "(col, buf, offsets) or (col, [arrays]) in health");
    const CudaArray& buf = float_buf(fn, t[1], "health buf");
    keep.push_back(offsets_arg(fn, t[2], buf.numel()));
    const index_t S = keep.back().shape(0) - 1;
    hjobs.push_back({&buf, keep.back().data(), S,
                     col_arg(fn, t[0], kHealthStats * S, W, "a health record of S segments")});
  }
  std::vector<ValueJob> vjobs;
  std::vector<HostJob> host_jobs;
  for (py::handle it : values) {
    py::tuple t = item_tuple(fn, it, 2, "(col, array) in values");
    if (py::isinstance<CudaArray>(t[1])) {
      const CudaArray& a = cuda_arg(t[1], fn, "values array");
      vjobs.push_back({&a, col_arg(fn, t[0], a.numel(), W, "a values array")});
      continue;
    }
    // values known on the host (a float, a numpy array): kept beside the slot, no transfer
    py::array a = py::array::ensure(t[1]);
    if (!a || (a.dtype().kind() != 'f' && a.dtype().kind() != 'i' && a.dtype().kind() != 'u'
               && a.dtype().kind() != 'b')) {
      PyErr_Clear();
      fail_type(fn, "a values item must hold a CudaArray, a number or a numeric numpy array");
    }
    auto d = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(a);
    host_jobs.push_back({std::vector<double>(d.data(), d.data() + d.size()),
                         col_arg(fn, t[0], d.size(), W, "a values array")});
  }
  cudaStream_t s = dc::current_stream();
  // The workspace is sized once for every item (growing it frees the old one, which waits).
  std::size_t ws_bytes = 0;
  for (const HealthJob& j : hjobs)
    ws_bytes = std::max(ws_bytes,
                        dc::segment_health_workspace(j.buf->numel(), j.S, j.buf->dtype));
  for (const TensorsJob& j : tjobs)
    ws_bytes = std::max(ws_bytes, dc::tensors_health_workspace(j.sizes.data(),
                                                               (index_t)j.sizes.size(), j.t));
  void* ws = ws_bytes ? ring.workspace(ws_bytes) : nullptr;
  double* slot = ring.begin(step);
  for (const HealthJob& j : hjobs) {
    const std::int64_t* doff = ring.device_table(j.off, j.S + 1);
    dc::segment_health(slot + j.col, ws, j.buf->raw(), j.buf->dtype, doff, j.buf->numel(), j.S,
                       s);
  }
  for (const TensorsJob& j : tjobs)
    dc::tensors_health(slot + j.col, ws, j.ptrs.data(), j.sizes.data(), (index_t)j.sizes.size(),
                       j.t, s);
  for (const ValueJob& j : vjobs)
    dc::launch_cast(slot + j.col, CDType::f64, j.a->raw(), j.a->dtype, j.a->numel(), s);
  for (const HostJob& j : host_jobs)
    for (std::size_t k = 0; k < j.v.size(); ++k) ring.put_host(j.col + (index_t)k, j.v[k]);
}

py::tuple ring_read(dc::StatRing& ring) {
  std::vector<std::int64_t> steps;
  std::vector<double> rows;
  ring.read(steps, rows);
  const py::ssize_t m = static_cast<py::ssize_t>(steps.size());
  py::array_t<std::int64_t> st(m);
  py::array_t<double> out({m, py::ssize_t(ring.width())});
  if (m) {
    std::memcpy(st.mutable_data(), steps.data(), sizeof(std::int64_t) * steps.size());
    std::memcpy(out.mutable_data(), rows.data(), sizeof(double) * rows.size());
  }
  return py::make_tuple(st, out);
}

CudaArray act_stats(py::handle z_o, py::handle y_o, int saturation, double center, double bound,
                    bool dead) {
  const char* fn = "cuda_act_stats";
  const CudaArray& z = cuda_arg(z_o, fn, "z");
  if (z.dtype == CDType::i64)
    fail_type(fn, "z has dtype int64 but the statistics take float32 or float64");
  cuda_ndim_is(fn, z, "z", 2);
  if (saturation < 0 || saturation > 2)
    fail_value(fn, "saturation must be 0 (none), 1 (on y) or 2 (on z), got " +
                       std::to_string(saturation));
  const bool need_y = saturation == 1 || dead;
  const CudaArray* y = nullptr;
  if (need_y) {
    if (y_o.is_none()) fail_value(fn, "y is needed for saturation=1 or dead=True but is None");
    y = &cuda_arg(y_o, fn, "y", z.dtype);
    if (y->shape != z.shape)
      fail_value(fn, "y has shape " + shape_str(*y) + " but z has shape " + shape_str(z) +
                         "; they must match");
  }
  const index_t rows = z.shape[0], cols = z.shape[1];
  CudaArray out = CudaArray::empty({4}, CDType::f64);
  CudaArray part = CudaArray::empty({4 * (index_t)dc::act_stats_blocks(rows, cols, dead)},
                                    CDType::f64);
  cudaStream_t s = dc::current_stream();
  if (z.dtype == CDType::f32)
    dc::act_stats<float>(out.data<double>(), part.data<double>(), z.data<float>(),
                         y ? y->data<float>() : nullptr, rows, cols, saturation, float(center),
                         float(bound), dead, s);
  else
    dc::act_stats<double>(out.data<double>(), part.data<double>(), z.data<double>(),
                          y ? y->data<double>() : nullptr, rows, cols, saturation, center, bound,
                          dead, s);
  return out;
}

// act_stats of K layers of another framework (the torch monitor on CUDA), given as device
// addresses: items (z_ptr, y_ptr, rows, cols, dtype, saturation, center, bound, dead), z and y
// contiguous (rows, cols) of dtype 'float32' or 'float64' (y_ptr may be 0 when saturation != 1
// and not dead). Every address is checked to be device memory before anything is launched;
// the caller keeps the tensors alive for the call. float64 numpy (K, 4), one synchronisation.
py::array_t<double> act_stats_at(py::handle items_o) {
  const char* fn = "cuda_act_stats_at";
  if (!py::isinstance<py::list>(items_o)) fail_type(fn, "items must be a list of tuples");
  const py::list items = py::reinterpret_borrow<py::list>(items_o);
  struct Item { const void *z, *y; index_t rows, cols; CDType t; int sat; double center, bound;
                bool dead; };
  std::vector<Item> its;
  for (std::size_t k = 0; k < items.size(); ++k) {
    const std::string at = "items[" + std::to_string(k) + "]";
    if (!py::isinstance<py::tuple>(items[k]) || py::len(items[k]) != 9)
      fail_type(fn, at + " must be a tuple (z_ptr, y_ptr, rows, cols, dtype, saturation, "
                         "center, bound, dead)");
    const py::tuple it = py::reinterpret_borrow<py::tuple>(items[k]);
    Item m{};
    try {
      m.z = reinterpret_cast<const void*>(static_cast<std::uintptr_t>(it[0].cast<std::int64_t>()));
      m.y = reinterpret_cast<const void*>(static_cast<std::uintptr_t>(it[1].cast<std::int64_t>()));
      m.rows = it[2].cast<index_t>();
      m.cols = it[3].cast<index_t>();
      const std::string dt = it[4].cast<std::string>();
      if (dt == "float32") m.t = CDType::f32;
      else if (dt == "float64") m.t = CDType::f64;
      else fail_value(fn, at + ": dtype must be 'float32' or 'float64', got '" + dt + "'");
      m.sat = it[5].cast<int>();
      m.center = it[6].cast<double>();
      m.bound = it[7].cast<double>();
      m.dead = it[8].cast<bool>();
    } catch (const py::cast_error&) {
      fail_type(fn, at + " holds a value of the wrong type (ints, a dtype string, floats, bool)");
    }
    if (m.rows < 0 || m.cols < 0) fail_value(fn, at + ": rows and cols must be >= 0");
    if (m.sat < 0 || m.sat > 2)
      fail_value(fn, at + ": saturation must be 0 (none), 1 (on y) or 2 (on z), got " +
                         std::to_string(m.sat));
    its.push_back(m);
  }
  const index_t K = (index_t)its.size();
  py::array_t<double> out({K, index_t(4)});
  if (K == 0) return out;
  dc::require_device(fn);
  const int dev = dc::current_device();
  int blocks = 1;
  for (index_t k = 0; k < K; ++k) {
    const Item& m = its[(std::size_t)k];
    if (m.rows * m.cols == 0) continue;
    const bool need_y = m.sat == 1 || m.dead;
    if (!dc::is_device_pointer(m.z, dev) || (need_y && !dc::is_device_pointer(m.y, dev)))
      fail_value(fn, "items[" + std::to_string(k) + "]: z_ptr or y_ptr is not an address in the "
                     "device memory of CUDA device " + std::to_string(dev));
    blocks = std::max(blocks, dc::act_stats_blocks(m.rows, m.cols, m.dead));
  }
  CudaArray rows = CudaArray::empty({K, index_t(4)}, CDType::f64);
  // one workspace for all: the launches of one item run before the next item's on the stream
  CudaArray part = CudaArray::empty({4 * (index_t)blocks}, CDType::f64);
  cudaStream_t s = dc::current_stream();
  for (index_t k = 0; k < K; ++k) {
    const Item& m = its[(std::size_t)k];
    double* o = rows.data<double>() + 4 * k;
    if (m.t == CDType::f32)
      dc::act_stats<float>(o, part.data<double>(), static_cast<const float*>(m.z),
                           static_cast<const float*>(m.y), m.rows, m.cols, m.sat,
                           float(m.center), float(m.bound), m.dead, s);
    else
      dc::act_stats<double>(o, part.data<double>(), static_cast<const double*>(m.z),
                            static_cast<const double*>(m.y), m.rows, m.cols, m.sat, m.center,
                            m.bound, m.dead, s);
  }
  dc::memcpy_d2h(out.mutable_data(), rows.raw(), rows.nbytes());  // the one synchronisation
  return out;
}

#endif  // DG_HAVE_CUDA

void bind_cuda_health(py::module_& m) {
  m.def("health_replay", &health_replay, py::arg("buf"), py::arg("offsets"), py::arg("tile") = 0,
        "The CUDA health kernel's schedule (tiles, slots, merge order) replayed on the host with "
        "deepgrad/health.h: float64 (S, 7) rows as cuda_segment_health. tile=0: the kernel's "
        "tiling; tile > 0 overrides it (tests).");
#ifdef DG_HAVE_CUDA
  m.def("cuda_segment_health", &segment_health, py::arg("buf"), py::arg("offsets"),
        "segment_health on CUDA: float64 numpy (S, 7) per segment of a 1-D float32/float64 "
        "CudaArray: [L2, L-inf, min, max] of the finite elements, NaN count, Inf count, first "
        "non-finite index (-1); two launches, deterministic; returns to the host (synchronises).");
  m.def("cuda_act_stats", &act_stats, py::arg("z"), py::arg("y"), py::arg("saturation") = 0,
        py::arg("center") = 0.0, py::arg("bound") = 0.0, py::arg("dead") = false,
        "act_stats on CUDA: a float64 CudaArray (4,) = [sum z, sum z^2, saturated count, live "
        "columns] of z, y (N, C) float32/float64 CudaArrays; two launches, no host "
        "synchronisation, deterministic.");
  m.def("cuda_tensors_health_at", &tensors_health_at, py::arg("ptrs"), py::arg("sizes"),
        py::arg("dtype"),
        "cuda_tensors_health over K contiguous tensors given as device addresses and element "
        "counts (one dtype, 'float32' or 'float64'), e.g. torch's t.data_ptr() and t.numel(): "
        "each address is checked to be device memory of deepgrad's device; the caller keeps "
        "the tensors alive for the call. float64 numpy (K, 7); synchronises.");
  m.def("cuda_act_stats_at", &act_stats_at, py::arg("items"),
        "act_stats of K layers given as device addresses: items (z_ptr, y_ptr, rows, cols, "
        "dtype, saturation, center, bound, dead) of contiguous (rows, cols) tensors; each "
        "address checked to be device memory; float64 numpy (K, 4) = [sum z, sum z^2, "
        "saturated, live columns]; synchronises once.");
  m.def("cuda_tensors_health", &tensors_health, py::arg("arrays"),
        "tensors_health on CUDA: float64 numpy (K, 7), segment_health's row for each of K float "
        "CudaArrays of one dtype (read flat), one pair of launches per 64 arrays; synchronises.");
  m.def("cuda_monitor_norms", &monitor_norms, py::arg("params"), py::arg("grads"),
        py::arg("prev"), py::arg("offsets"), py::arg("diff") = false, py::arg("snapshot") = false,
        py::arg("health") = false,
        "monitor_norms on CUDA, the CPU entry's results and meaning: (||params||, ||grads||, "
        "||params - prev|| or None, non-finite gradient count[, health (S, 3): the gradient's "
        "L-inf, non-finite count, first non-finite index]) per segment; prev = params afterwards "
        "when snapshot. Health kernel launches, one copy back and one synchronisation.");
  py::class_<dc::StatRing>(m, "CudaStatRing",
                           "A device ring of per-step statistics: slots x width float64. record() "
                           "writes a step without a host synchronisation; read() returns the "
                           "records since the last read (one synchronisation).")
      .def(py::init([](index_t slots, index_t width) {
             if (slots < 1 || width < 1)
               fail_value("CudaStatRing", "slots and width must be >= 1, got slots=" +
                                              std::to_string(slots) + ", width=" +
                                              std::to_string(width));
             if (slots > (index_t(1) << 20) || width > (index_t(1) << 24) / slots)
               fail_value("CudaStatRing", "slots x width must stay below 2**24 values, got " +
                                              std::to_string(slots) + " x " + std::to_string(width));
             return new dc::StatRing(slots, width);
           }),
           py::arg("slots"), py::arg("width"))
      .def_property_readonly("slots", &dc::StatRing::slots)
      .def_property_readonly("width", &dc::StatRing::width)
      .def_property_readonly("records", &dc::StatRing::records, "Records begun so far.")
      .def_property_readonly("unread", &dc::StatRing::unread,
                             "Records not yet returned by read().")
      .def("record", &ring_record, py::arg("step"), py::arg("health") = py::tuple(),
           py::arg("values") = py::tuple(),
           "One per-step record into the next slot, no host synchronisation: health items "
           "(col, buf, offsets) write buf's (S, 7) health rows at columns [col, col + 7 S), "
           "(col, [arrays]) one row per array at [col, col + 7 K); values items (col, array) "
           "the values as float64 at [col, col + size) (a CudaArray copied on the device, a "
           "number or numpy array joined on the host when read); the other columns hold NaN. "
           "A full ring enqueues its copy to the host first.")
      .def("copy_async", &dc::StatRing::copy_async,
           "Enqueue the copy of the records not yet copied to pinned host memory (never waits).")
      .def("read", &ring_read,
           "(steps int64 (m,), rows float64 (m, width)): every record since the last read, "
           "oldest first (one host synchronisation).");
#endif
}

DG_REGISTER_BINDINGS(bind_cuda_health);

}  // namespace
}  // namespace dg::bind
