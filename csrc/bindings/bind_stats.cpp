// Checked entry point for the GradientMonitor's per-layer activation statistics
// (csrc/cpu/act_stats.cpp).
#include <algorithm>
#include <limits>
#include <string>

#include <vector>

#include "bindings/check.h"
#include "bindings/host_input.h"
#include "bindings/registry.h"
#include "cpu/layer_stats.h"
#include "deepgrad/kernels.h"

namespace dg::bind {
namespace {

py::tuple record_sums(py::handle x_o, const std::string& isa, py::object center_o,
                      py::object bound_o) {
  const char* fn = "_record_sums";
  py::array x = float_input(x_o, fn, "x");
  if (!is_f32(x)) fail_type(fn, "x must be float32");
  const int k = isa == "double" ? 0 : isa == "avx2" ? 1 : isa == "avx512" ? 2 : -1;
  if (k < 0) fail_value(fn, "isa must be 'double', 'avx2' or 'avx512', got '" + isa + "'");
  const bool counted = !bound_o.is_none();
  const float center = center_o.is_none() ? 0.0f : center_o.cast<float>();
  const float bound = counted ? bound_o.cast<float>() : 0.0f;
  double s = 0, q = 0;
  index_t count = 0;
  if (!cpu::add_sums_isa(k, &s, &q, counted ? &count : nullptr, cdata_of<float>(x),
                         static_cast<index_t>(x.size()), center, bound))
    fail_value(fn, "this build or CPU has no " + isa + " loop");
  if (counted) return py::make_tuple(s, q, count);
  return py::make_tuple(s, q);
}

// Test hook: (sum z, sum z^2, column maxima starting from -inf) of a 2-D float32 array through
// one loop of the ReLU record's fused sums ('double', 'avx2' or 'avx512').
py::tuple record_sums_colmax(py::handle z_o, const std::string& isa) {
  const char* fn = "_record_sums_colmax";
  py::array z = float_input(z_o, fn, "z");
  if (!is_f32(z)) fail_type(fn, "z must be float32");
  ndim_is(fn, z, "z", 2);
  const int k = isa == "double" ? 0 : isa == "avx2" ? 1 : isa == "avx512" ? 2 : -1;
  if (k < 0) fail_value(fn, "isa must be 'double', 'avx2' or 'avx512', got '" + isa + "'");
  const index_t R = z.shape(0), C = z.shape(1);
  py::array_t<float> cm(C);
  std::fill(cm.mutable_data(), cm.mutable_data() + C, -std::numeric_limits<float>::infinity());
  double s = 0, q = 0;
  if (!cpu::add_sums_colmax_isa(k, &s, &q, cm.mutable_data(), cdata_of<float>(z), R, C))
    fail_value(fn, "this build or CPU has no " + isa + " loop");
  return py::make_tuple(s, q, cm);
}

py::tuple act_stats(py::handle z_o, py::handle y_o, int saturation, double center, double bound,
                    bool dead) {
  const char* fn = "act_stats";
  py::array z = float_input(z_o, fn, "z");
  ndim_is(fn, z, "z", 2);
  if (saturation < 0 || saturation > 2)
    fail_value(fn, "saturation must be 0 (none), 1 (on y) or 2 (on z), got " + std::to_string(saturation));
  const bool need_y = saturation == 1 || dead;
  py::array y;
  if (need_y) {
    if (y_o.is_none()) fail_value(fn, "y is needed for saturation=1 or dead=True but is None");
    y = float_input(y_o, fn, "y");
    same_dtype(fn, z, "z", y, "y");
    if (y.ndim() != 2 || y.shape(0) != z.shape(0) || y.shape(1) != z.shape(1))
      fail_value(fn, "y has shape " + shape_str(y) + " but z has shape " + shape_str(z) +
                         "; they must match");
  }
  const index_t n = z.shape(0), c = z.shape(1);
  double sums[2];
  index_t counts[2];
  dispatch_float(z, [&](auto tag) {
    using T = decltype(tag);
    const T* pz = cdata_of<T>(z);
    const T* py_ = need_y ? cdata_of<T>(y) : nullptr;
    py::gil_scoped_release nogil;
    cpu::act_stats<T>(sums, counts, pz, py_, n, c, saturation, T(center), T(bound), dead);
  });
  return py::make_tuple(sums[0], sums[1], counts[0], counts[1]);
}

py::list act_stats_many(const py::sequence& items) {
  // items: (z, y, saturation, center, bound, dead) tuples, as act_stats' arguments
  py::list out;
  for (py::handle it : items) {
    if (!py::isinstance<py::tuple>(it) || py::len(it) != 6)
      fail_value("act_stats_many", "each item must be a (z, y, saturation, center, bound, dead) tuple");
    py::tuple t = py::reinterpret_borrow<py::tuple>(it);
    out.append(act_stats(t[0], t[1], t[2].cast<int>(), t[3].cast<double>(), t[4].cast<double>(),
                         t[5].cast<bool>()));
  }
  return out;
}

// act_stats over K layers whose z and y are numpy arrays or DLPack capsules of CPU tensors
// (host_input.h), each read as (elements / last dim, last dim) as the torch monitor reshapes
// them: float64 (K, 6) rows [sum z, sum z^2, saturated count, live columns, elements, columns].
// A layer with no elements gets a row of zeros (the caller skips it).
py::array_t<double> act_stats_rows(const py::sequence& items) {
  const char* fn = "act_stats_rows";
  const py::ssize_t K = static_cast<py::ssize_t>(items.size());
  py::array_t<double> out({K, py::ssize_t(6)});
  double* po = out.mutable_data();
  for (py::ssize_t k = 0; k < K; ++k) {
    py::handle it = items[k];
    const std::string at = "items[" + std::to_string(k) + "]";
    if (!py::isinstance<py::tuple>(it) || py::len(it) != 6)
      fail_value(fn, at + " must be a (z, y, saturation, center, bound, dead) tuple");
    py::tuple t = py::reinterpret_borrow<py::tuple>(it);
    const int saturation = t[2].cast<int>();
    if (saturation < 0 || saturation > 2)
      fail_value(fn, at + ": saturation must be 0 (none), 1 (on y) or 2 (on z), got " +
                         std::to_string(saturation));
    const double center = t[3].cast<double>(), bound = t[4].cast<double>();
    const bool dead = t[5].cast<bool>();
    const HostIn z = host_input(t[0], fn, at + " z");
    if (z.ndim < 1) fail_value(fn, at + " z must have at least one dimension, got a 0-d input");
    const bool need_y = saturation == 1 || dead;
    HostIn y;
    if (need_y) {
      y = host_input(t[1], fn, at + " y");
      if (y.f64 != z.f64) fail_type(fn, at + ": z and y must have the same dtype");
      if (y.n != z.n || y.cols != z.cols)
        fail_value(fn, at + ": y has " + std::to_string(y.n) + " elements in rows of " +
                           std::to_string(y.cols) + " but z " + std::to_string(z.n) + " in rows of " +
                           std::to_string(z.cols) + "; they must match");
    }
    double* row = po + 6 * k;
    if (z.n == 0) {
      for (int j = 0; j < 6; ++j) row[j] = 0.0;
      continue;
    }
    const index_t c = z.cols, n = z.n / c;
    double sums[2];
    index_t counts[2];
    dispatch_in(z, [&](auto tag) {
      using T = decltype(tag);
      py::gil_scoped_release nogil;
      cpu::act_stats<T>(sums, counts, cdata_of<T>(z), need_y ? cdata_of<T>(y) : nullptr, n, c,
                        saturation, T(center), T(bound), dead);
      return 0;
    });
    row[0] = sums[0];
    row[1] = sums[1];
    row[2] = static_cast<double>(counts[0]);
    row[3] = static_cast<double>(counts[1]);
    row[4] = static_cast<double>(z.n);
    row[5] = static_cast<double>(c);
  }
  return out;
}

py::tuple monitor_norms(py::handle params_o, py::handle grads_o, py::handle prev_o,
                        py::handle offsets_o, bool diff, bool snapshot, bool health) {
  const char* fn = "monitor_norms";
  py::array params = float_input(params_o, fn, "params");
  py::array grads = float_input(grads_o, fn, "grads");
  ndim_is(fn, params, "params", 1);
  same_dtype(fn, params, "params", grads, "grads");
  same_shape(fn, params, "params", grads, "grads");
  py::array prev;
  if (diff || snapshot) {
    if (prev_o.is_none()) fail_value(fn, "prev is needed for diff=True or snapshot=True but is None");
    prev = float_output(prev_o, fn, "prev");
    same_dtype(fn, params, "params", prev, "prev");
    same_shape(fn, params, "params", prev, "prev");
  }
  auto off = int_labels(offsets_o, fn, "offsets");
  if (off.ndim() != 1 || off.shape(0) < 1)
    fail_value(fn, "offsets must be 1-D with S+1 >= 1 entries, got shape " + shape_str(off));
  const py::ssize_t S = off.shape(0) - 1;
  const std::int64_t* o = off.data();
  bool ok = o[0] == 0 && o[S] == params.size();
  for (py::ssize_t s = 0; ok && s < S; ++s) ok = o[s + 1] >= o[s];
  if (!ok)
    fail_value(fn, "offsets must start at 0, not decrease and end at params.size (" +
                       std::to_string(params.size()) + ")");
  py::array_t<double> pn(S), gn(S), dn(diff ? S : 0);
  py::array_t<double> gh({health ? S : py::ssize_t(0), py::ssize_t(3)});
  const index_t bad = dispatch_float(params, [&](auto tag) {
    using T = decltype(tag);
    double* pp = pn.mutable_data();
    double* pg = gn.mutable_data();
    double* pd = diff ? dn.mutable_data() : nullptr;
    T* pv = (diff || snapshot) ? data_of<T>(prev) : nullptr;
    const T* pa = cdata_of<T>(params);
    const T* pgr = cdata_of<T>(grads);
    double* ph = health ? gh.mutable_data() : nullptr;
    py::gil_scoped_release nogil;
    return cpu::monitor_norms<T>(pp, pg, pd, pv, pa, pgr, o, S, snapshot, ph);
  });
  if (health)
    return py::make_tuple(pn, gn, diff ? py::object(dn) : py::object(py::none()), bad, gh);
  return py::make_tuple(pn, gn, diff ? py::object(dn) : py::object(py::none()), bad);
}

py::array_t<double> l2_norms(const py::sequence& arrays) {
  const char* fn = "l2_norms";
  const py::ssize_t K = static_cast<py::ssize_t>(arrays.size());
  py::array_t<double> out(K);
  double* po = out.mutable_data();
  for (py::ssize_t k = 0; k < K; ++k) {
    const HostIn a = host_input(arrays[k], fn, "arrays[" + std::to_string(k) + "]");
    po[k] = dispatch_in(a, [&](auto tag) {
      using T = decltype(tag);
      return cpu::l2_norm<T>(cdata_of<T>(a), a.n);
    });
  }
  return out;
}

// Offsets (S+1,) of a flat buffer of n elements: start at 0, never decrease, end at n.
static py::array_t<std::int64_t, py::array::c_style> checked_offsets(const char* fn,
                                                                    py::handle offsets_o,
                                                                    py::ssize_t n) {
  auto off = int_labels(offsets_o, fn, "offsets");
  if (off.ndim() != 1 || off.shape(0) < 1)
    fail_value(fn, "offsets must be 1-D with S+1 >= 1 entries, got shape " + shape_str(off));
  const py::ssize_t S = off.shape(0) - 1;
  const std::int64_t* o = off.data();
  bool ok = o[0] == 0 && o[S] == n;
  for (py::ssize_t s = 0; ok && s < S; ++s) ok = o[s + 1] >= o[s];
  if (!ok)
    fail_value(fn, "offsets must start at 0, not decrease and end at the buffer's size (" +
                       std::to_string(n) + ")");
  return off;
}

py::array_t<double> segment_health(py::handle buf_o, py::handle offsets_o) {
  const char* fn = "segment_health";
  py::array buf = float_input(buf_o, fn, "buf");
  ndim_is(fn, buf, "buf", 1);
  auto off = checked_offsets(fn, offsets_o, buf.size());
  const py::ssize_t S = off.shape(0) - 1;
  py::array_t<double> out({S, py::ssize_t(7)});
  dispatch_float(buf, [&](auto tag) {
    using T = decltype(tag);
    double* po = out.mutable_data();
    const T* pb = cdata_of<T>(buf);
    const std::int64_t* o = off.data();
    py::gil_scoped_release nogil;
    cpu::segment_health<T>(po, pb, o, S);
    return 0;
  });
  return out;
}

py::array_t<double> tensors_health(const py::sequence& arrays) {
  const char* fn = "tensors_health";
  const py::ssize_t K = static_cast<py::ssize_t>(arrays.size());
  py::array_t<double> out({K, py::ssize_t(7)});
  double* po = out.mutable_data();
  for (py::ssize_t k = 0; k < K; ++k) {
    const HostIn a = host_input(arrays[k], fn, "arrays[" + std::to_string(k) + "]");
    dispatch_in(a, [&](auto tag) {
      using T = decltype(tag);
      cpu::health<T>(po + 7 * k, cdata_of<T>(a), a.n);
      return 0;
    });
  }
  return out;
}

// The parameters of a model held as separate arrays (a torch model's, viewed through numpy):
// ||p|| of each and, with diff, ||p - its snapshot|| where the snapshot of array k is
// prev[offsets k] (prev: one flat buffer of the total size, the arrays' common dtype); with
// snapshot, prev gets the current values. One call, no copy of the arrays.
py::tuple tensors_param_norms(const py::sequence& arrays, py::handle prev_o, bool diff,
                              bool snapshot) {
  const char* fn = "tensors_param_norms";
  const py::ssize_t K = static_cast<py::ssize_t>(arrays.size());
  std::vector<py::array> as;
  as.reserve(K);
  py::ssize_t total = 0;
  for (py::ssize_t k = 0; k < K; ++k) {
    as.push_back(float_input(arrays[k], fn, "arrays[k]"));
    if (k) same_dtype(fn, as[0], "arrays[0]", as[k], "arrays[k]");
    total += as[k].size();
  }
  py::array prev;
  if ((diff || snapshot) && prev_o.is_none())
    fail_value(fn, "prev is needed for diff or snapshot");
  if (!prev_o.is_none()) {
    prev = float_output(prev_o, fn, "prev");
    if (K) same_dtype(fn, as[0], "arrays[0]", prev, "prev");
    if (prev.ndim() != 1 || prev.shape(0) != total)
      fail_value(fn, "prev must be a flat buffer of the arrays' total size " +
                         std::to_string(total) + ", got shape " + shape_str(prev));
  }
  py::array_t<double> pn(K), dn(diff ? K : 0);
  double* ppn = pn.mutable_data();
  double* pdn = diff ? dn.mutable_data() : nullptr;
  py::ssize_t off = 0;
  for (py::ssize_t k = 0; k < K; ++k) {
    dispatch_float(as[k], [&](auto tag) {
      using T = decltype(tag);
      T* q = prev ? data_of<T>(prev) + off : nullptr;
      cpu::param_norms<T>(ppn + k, pdn ? pdn + k : nullptr, q, cdata_of<T>(as[k]),
                          static_cast<index_t>(as[k].size()), snapshot);
      return 0;
    });
    off += as[k].size();
  }
  return py::make_tuple(pn, diff ? py::object(dn) : py::object(py::none()));
}

void bind_stats(py::module_& m) {
  m.def("tensors_param_norms", &tensors_param_norms, py::arg("arrays"), py::arg("prev"),
        py::arg("diff") = false, py::arg("snapshot") = false,
        "arrays (float32/float64, one dtype) -> (||a|| per array, ||a - prev segment|| per "
        "array or None); prev: flat buffer of the total size; snapshot copies the arrays into "
        "prev.");
  m.def("segment_health", &segment_health, py::arg("buf"), py::arg("offsets"),
        "float64 (S, 7) per segment of a flat float buffer: [L2, L-inf, min, max] of the finite "
        "elements, NaN count, Inf count, index of the first non-finite (-1: none); one pass.");
  m.def("tensors_health", &tensors_health, py::arg("arrays"),
        "float64 (K, 7): segment_health's row for each of K float arrays (numpy arrays or DLPack "
        "capsules of C-contiguous CPU tensors, borrowed), in one call.");
  m.def("l2_norms", &l2_norms, py::arg("arrays"),
        "float64 (K,): the L2 norm of each of K float arrays (numpy arrays or DLPack capsules of "
        "C-contiguous CPU tensors, borrowed; double sums; NaN for an array holding NaN or Inf), "
        "in one call.");
  m.def("act_stats_many", &act_stats_many, py::arg("items"),
        "act_stats over a sequence of (z, y, saturation, center, bound, dead) tuples, in one call; "
        "a list of their results.");
  m.def("act_stats_rows", &act_stats_rows, py::arg("items"),
        "act_stats over (z, y, saturation, center, bound, dead) tuples whose z and y are numpy "
        "arrays or DLPack capsules of C-contiguous CPU tensors (read as (elements / last dim, last "
        "dim), borrowed, not consumed): float64 (K, 6) rows [sum z, sum z^2, saturated, live "
        "columns, elements, columns], in one call.");
  m.def("monitor_norms", &monitor_norms, py::arg("params"), py::arg("grads"), py::arg("prev"),
        py::arg("offsets"), py::arg("diff") = false, py::arg("snapshot") = false,
        py::arg("health") = false,
        "Per segment (offsets (S+1,)) of flat params/grads: (||params||, ||grads||, "
        "||params - prev|| when diff else None, non-finite gradient count) in one pass; "
        "prev[:] = params afterwards when snapshot. health=True adds a fifth item, float64 (S, 3): "
        "per segment the gradient's L-inf, NaN+Inf count and first non-finite index (-1), from "
        "the same pass.");
  m.def("_record_sums_colmax", &record_sums_colmax, py::arg("z"), py::arg("isa"),
        "Test hook: (sum z, sum z^2, column maxima from -inf) of a 2-D float32 array through one "
        "loop of the ReLU layer record's fused pass ('double', 'avx2' or 'avx512'); ValueError when "
        "this build or CPU lacks it.");
  m.def("_record_sums", &record_sums, py::arg("x"), py::arg("isa"), py::arg("center") = py::none(),
        py::arg("bound") = py::none(),
        "Test hook: (sum x, sum x^2) of a float32 array through one loop of the layer record's "
        "sums ('double', 'avx2' or 'avx512'), plus the count of |x - center| > bound when bound "
        "is given; ValueError when this build or CPU lacks it.");
  m.def("act_stats", &act_stats, py::arg("z"), py::arg("y"), py::arg("saturation") = 0,
        py::arg("center") = 0.0, py::arg("bound") = 0.0, py::arg("dead") = false,
        "z (N, C) pre-activation, y (N, C) output -> (sum z, sum z^2 in float64, count of "
        "|a - center| > bound with a = y (saturation=1) or z (saturation=2), columns with some "
        "y > 0 when dead), in one pass.");
}

DG_REGISTER_BINDINGS(bind_stats);

}  // namespace
}  // namespace dg::bind
