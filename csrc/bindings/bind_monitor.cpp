// The GradientMonitor's history rows (python/deepgrad/monitor/capture_deepgrad.py): one float64
// row per recorded step, [step, loss (NaN: none), 1 when a loss was given, the layer records'
// step slots, the optimizer's step statistics], kept in preallocated blocks; and the monitor's
// common recorded step (host arena, step statistics from the optimizer's own pass, records all
// in one matrix) in ONE native call with no Python work (and monitor_put / rows_put, the same
// row written by the general path): after a training step's GEMMs every
// Python bytecode and pybind argument conversion runs cold, and that step() spent ~7 us of a
// 0.32 ms step in them (benchmarks/RESULTS.md, issue 13).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "bindings/check.h"
#include "bindings/registry.h"

namespace dg::bind {
namespace {

// The value of a loss the fast path can read without calling into Python code: None, a Python
// number, a one-element float32/float64 numpy array, or an object whose `data` is one (a host
// Tensor). false: anything else (the caller takes the general path).
bool plain_loss(py::handle loss, double* v, double* given) {
  *v = std::numeric_limits<double>::quiet_NaN();
  *given = 0.0;
  if (loss.is_none()) return true;
  *given = 1.0;
  if (PyFloat_Check(loss.ptr())) {
    *v = PyFloat_AS_DOUBLE(loss.ptr());
    return true;
  }
  py::object arr = py::reinterpret_borrow<py::object>(loss);
  if (!py::isinstance<py::array>(arr)) {
    if (PyLong_Check(loss.ptr())) {
      if (PyBool_Check(loss.ptr())) return false;  // not a loss: the general path refuses it
      *v = PyLong_AsDouble(loss.ptr());
      if (*v == -1.0 && PyErr_Occurred()) {  // beyond a double: the general path says so
        PyErr_Clear();
        return false;
      }
      return true;
    }
    if (!PyObject_HasAttrString(loss.ptr(), "data")) return false;
    PyObject* d = PyObject_GetAttrString(loss.ptr(), "data");
    if (d == nullptr) {
      PyErr_Clear();
      return false;
    }
    arr = py::reinterpret_steal<py::object>(d);
    if (!py::isinstance<py::array>(arr)) return false;
  }
  py::array a = py::reinterpret_borrow<py::array>(arr);
  if (a.size() != 1) return false;
  if (is_f64(a)) *v = *static_cast<const double*>(a.data());
  else if (is_f32(a)) *v = double(*static_cast<const float*>(a.data()));
  else return false;
  return true;
}

// dst[i, at : at + r * (c1 - c0)] = src[:, c0:c1] (row by row): one step of the monitor's history,
// its layer records and the optimizer's step statistics, copied in one call each (numpy slicing
// and assignment cost ~1 us a step). Returns the column after the copied values.
index_t rows_put(py::handle dst_o, index_t i, py::handle src_o, index_t c0, index_t c1,
                 index_t at) {
  const char* fn = "rows_put";
  if (!py::isinstance<py::array>(dst_o) || !py::isinstance<py::array>(src_o))
    fail_type(fn, "dst and src must be numpy arrays");
  py::array dst = py::reinterpret_borrow<py::array>(dst_o);
  py::array src = py::reinterpret_borrow<py::array>(src_o);
  if (!is_f64(dst) || !is_f64(src) || dst.ndim() != 2 || src.ndim() != 2)
    fail_type(fn, "dst and src must be 2-D float64 arrays, got " + shape_str(dst) + " and " +
                      shape_str(src));
  if (!(dst.flags() & py::array::c_style) || !(src.flags() & py::array::c_style) ||
      !dst.writeable())
    fail_value(fn, "dst must be C-contiguous and writeable and src C-contiguous");
  const index_t rows = src.shape(0), cols = src.shape(1), w = c1 - c0;
  if (c0 < 0 || c1 > cols || w < 0 || i < 0 || i >= dst.shape(0) || at < 0 ||
      at + rows * w > dst.shape(1))
    fail_value(fn, "columns [" + std::to_string(c0) + ", " + std::to_string(c1) + ") of src " +
                       shape_str(src) + " do not fit row " + std::to_string(i) + " of dst " +
                       shape_str(dst) + " at column " + std::to_string(at));
  const double* s = static_cast<const double*>(src.data());
  double* d = static_cast<double*>(dst.mutable_data()) + i * dst.shape(1) + at;
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < w; ++c) d[r * w + c] = s[r * cols + c0 + c];
  return at + rows * w;
}

// A recorded step of the GradientMonitor in one call (its common case: host arena, step
// statistics from the optimizer's pass): row i of dst gets [step, loss (NaN: none), 1 when a loss
// was given, recs[:, lo:hi] row by row, stats[:, :6] row by row]. The loss is a Python number or a
// one-element float array (a host tensor's data); anything else: float(loss.item()).
void monitor_put(py::handle dst_o, index_t i, index_t step, py::handle loss, py::handle recs_o,
                 index_t lo, index_t hi, py::handle stats_o) {
  const char* fn = "monitor_put";
  double lv, given;  // a loss plain_loss cannot read: float(loss.item())
  if (!plain_loss(loss, &lv, &given))
    lv = py::float_(py::hasattr(loss, "item") ? loss.attr("item")()
                                              : py::reinterpret_borrow<py::object>(loss))
             .cast<double>();
  py::array dst = py::reinterpret_borrow<py::array>(dst_o);
  if (!py::isinstance<py::array>(dst_o) || !is_f64(dst) || dst.ndim() != 2 ||
      !(dst.flags() & py::array::c_style) || !dst.writeable() || i < 0 || i >= dst.shape(0) ||
      dst.shape(1) < 3)
    fail_value(fn, "dst must be a writeable C-contiguous 2-D float64 array with row " +
                       std::to_string(i) + " and 3 head columns, got " +
                       (py::isinstance<py::array>(dst_o) ? shape_str(dst) : std::string("?")));
  double* row = static_cast<double*>(dst.mutable_data()) + i * dst.shape(1);
  row[0] = double(step);
  row[1] = lv;
  row[2] = given;
  index_t at = 3;
  if (!recs_o.is_none()) at = rows_put(dst_o, i, recs_o, lo, hi, at);
  if (!stats_o.is_none()) rows_put(dst_o, i, stats_o, 0, 6, at);
}

py::array c_array(py::handle o, const char* fn, const char* name, bool f64, int ndim) {
  if (!py::isinstance<py::array>(o))
    fail_type(fn, std::string(name) + " must be a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(o);
  const bool dt = f64 ? is_f64(a) : a.dtype().is(py::dtype::of<std::int64_t>());
  if (!dt || a.ndim() != ndim || !(a.flags() & py::array::c_style))
    fail_type(fn, std::string(name) + " must be a C-contiguous " + std::to_string(ndim) + "-D " +
                      (f64 ? "float64" : "int64") + " array, got " + dtype_str(a) + " " +
                      shape_str(a));
  return a;
}

class MonitorRows {
 public:
  MonitorRows(index_t width, index_t block_bytes) : width_(width) {
    const char* fn = "MonitorRows";
    if (width < 3) fail_value(fn, "a row needs at least 3 columns, got " + std::to_string(width));
    if (block_bytes < 1) fail_value(fn, "block_bytes must be positive");
    block_ = std::max<index_t>(8, block_bytes / std::max<index_t>(8, 8 * width));
    cur_ = fresh_block();
  }

  index_t size() const { return n_ + block_ * static_cast<index_t>(full_.size()); }
  index_t width() const { return width_; }

  // (block, row index) of a new row, for the caller to fill.
  py::tuple slot() {
    next_row();
    return py::make_tuple(cur_, n_ - 1);
  }

  // All rows so far as one (rows, width) array; starts again.
  py::array take() {
    py::array_t<double> out({size(), width_});
    double* o = out.mutable_data();
    const std::size_t blk = static_cast<std::size_t>(block_ * width_);
    for (const py::array_t<double>& b : full_) {
      std::memcpy(o, b.data(), blk * sizeof(double));
      o += blk;
    }
    std::memcpy(o, cur_.data(), static_cast<std::size_t>(n_ * width_) * sizeof(double));
    full_.clear();
    n_ = 0;
    return std::move(out);
  }

  // Arms record(): recs (R, C) float64 whose columns [lo, hi) a step writes (None: no records),
  // stats (S, >=6) float64 and stamp int64 (2,) [serial, backward count] of the arena whose step
  // statistics fill the rows, valid while the layout epoch stays `epoch`; record() appends
  // `marker` to `raw` for each step it records and asks for a flush once raw holds flush_at
  // (-1: never).
  void arm(py::handle recs, index_t lo, index_t hi, py::handle stats, py::handle stamp,
           std::int64_t epoch, py::list raw, py::object marker, index_t flush_at) {
    const char* fn = "MonitorRows.arm";
    disarm();
    index_t cols = 3;
    if (!recs.is_none()) {
      py::array r = c_array(recs, fn, "recs", true, 2);
      if (lo < 0 || hi < lo || hi > r.shape(1))
        fail_value(fn, "columns [" + std::to_string(lo) + ", " + std::to_string(hi) +
                           ") do not fit recs " + shape_str(r));
      recs_ = r;
      recs_p_ = static_cast<const double*>(r.data());
      rec_rows_ = r.shape(0);
      rec_cols_ = r.shape(1);
      lo_ = lo;
      hi_ = hi;
      cols += rec_rows_ * (hi - lo);
    }
    py::array s = c_array(stats, fn, "stats", true, 2);
    if (s.shape(1) < 6) fail_value(fn, "stats must have at least 6 columns, got " + shape_str(s));
    py::array st = c_array(stamp, fn, "stamp", false, 1);
    if (st.shape(0) != 2) fail_value(fn, "stamp must hold 2 values, got " + shape_str(st));
    cols += s.shape(0) * 6;
    if (cols != width_)
      fail_value(fn, "the records and statistics fill " + std::to_string(cols) +
                         " columns but a row has " + std::to_string(width_));
    stats_ = s;
    stats_p_ = static_cast<const double*>(s.data());
    nseg_ = s.shape(0);
    stats_cols_ = s.shape(1);
    stamp_ = st;
    stamp_p_ = static_cast<const std::int64_t*>(st.data());
    epoch_ = epoch;
    raw_ = std::move(raw);
    marker_ = std::move(marker);
    flush_at_ = flush_at;
    armed_ = true;
  }

  // With every > 1 the monitor hands its layer records to their layers (and asks the arena for
  // step statistics) on the step before a recorded one and takes them away after it. Armed here
  // (`pairs` [(layer __dict__, record)], `arena`, the readers epoch of the monitors' shared
  // records; `on`: whether the records are on now), switch_on() and record() do it natively from
  // then on.
  void arm_switch(py::list pairs, py::object arena, std::int64_t readers_epoch, bool on) {
    disarm_switch();
    for (py::handle t : pairs) {
      py::tuple pr = py::reinterpret_borrow<py::tuple>(t);
      if (pr.size() != 2 || !PyDict_Check(pr[0].ptr()))
        fail_type("MonitorRows.arm_switch", "pairs must be (dict, record) tuples");
      switch_.emplace_back(py::reinterpret_borrow<py::object>(pr[0]),
                           py::reinterpret_borrow<py::object>(pr[1]));
    }
    switch_arena_ = std::move(arena);
    readers_epoch_ = readers_epoch;
    switch_armed_ = true;
    switched_on_ = on;
  }

  void disarm_switch() {
    switch_armed_ = false;
    switch_.clear();
    switch_arena_ = py::object();
  }

  // The step before a recorded one: records on, statistics asked for; false (nothing done)
  // unless armed, off, and the layout and readers epochs are the armed ones.
  bool switch_on(std::int64_t epoch, std::int64_t readers_epoch) {
    if (!switch_armed_ || switched_on_ || !armed_ || epoch != epoch_ ||
        readers_epoch != readers_epoch_)
      return false;
    const auto t0 = std::chrono::steady_clock::now();
    set_switch(true);
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return true;
  }

  void disarm() {
    disarm_switch();
    armed_ = false;
    recs_ = py::object();
    stats_ = py::object();
    stamp_ = py::object();
    raw_ = py::object();
    marker_ = py::object();
    rec_rows_ = 0;
  }

  bool armed() const { return armed_; }

  // The recorded step `step` when the armed case holds: the layout epoch unchanged, the arena's
  // step statistics filled by an optimizer step after this step's backward (`backwards`: the
  // backward count now) and not yet taken, a loss plain_loss() reads. Returns 0 (not this case:
  // nothing written), 1 (recorded) or 2 (recorded, raw is due for a flush).
  int record(index_t step, py::handle loss, std::int64_t epoch, std::int64_t backwards,
             std::int64_t readers_epoch) {
    if (!armed_ || epoch != epoch_) return 0;
    const auto t0 = std::chrono::steady_clock::now();
    const std::int64_t* st = stamp_p_;
    if (st[0] == last_serial_ || st[1] != backwards) return 0;
    double lv, given;
    if (!plain_loss(loss, &lv, &given)) return 0;
    double* row = next_row();
    row[0] = double(step);
    row[1] = lv;
    row[2] = given;
    double* d = row + 3;
    if (rec_rows_) {
      const double* r = recs_p_;
      const index_t w = hi_ - lo_;
      for (index_t i = 0; i < rec_rows_; ++i, d += w)
        std::memcpy(d, r + i * rec_cols_ + lo_, static_cast<std::size_t>(w) * sizeof(double));
    }
    for (index_t i = 0; i < nseg_; ++i, d += 6)
      std::memcpy(d, stats_p_ + i * stats_cols_, 6 * sizeof(double));
    last_serial_ = st[0];
    if (PyList_Append(raw_.ptr(), marker_.ptr()) != 0) throw py::error_already_set();
    int out = 1;
    if (flush_at_ >= 0 && PyList_GET_SIZE(raw_.ptr()) >= flush_at_) out |= 2;
    if (switch_armed_ && switched_on_ && readers_epoch == readers_epoch_) {
      set_switch(false);
      out |= 4;
    }
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out;
  }

  std::int64_t last_serial_ = -1;  // the arena's step-statistics serial last taken
  double seconds_ = 0.0;           // time spent in record()'s recorded steps

 private:
  // A new block, its pages touched now, together: on a VM a first touch of fresh memory costs
  // ~2 us a 4 KB page (the host maps it), and one such fault inside a training step costs ~2x
  // that again in the cold caches around it; a block faulted at once costs only the first.
  py::array_t<double> fresh_block() {
    py::array_t<double> b({block_, width_});
    std::memset(b.mutable_data(), 0, static_cast<std::size_t>(block_ * width_) * sizeof(double));
    return b;
  }

  // layer.__dict__["stats"] = record (on) or None, for each pair; the arena's step-statistics
  // readers + 1 (on) or - 1 (not below 0), as Arena.request_step_stats
  void set_switch(bool on) {
    static PyObject* key = PyUnicode_InternFromString("stats");
    for (auto& [d, rec] : switch_)
      if (PyDict_SetItem(d.ptr(), key, on ? rec.ptr() : Py_None) != 0)
        throw py::error_already_set();
    if (!switch_arena_.is_none() && switch_arena_) {
      const long r = py::cast<long>(switch_arena_.attr("step_stats_readers"));
      switch_arena_.attr("step_stats_readers") = on ? r + 1 : std::max(0L, r - 1);
    }
    switched_on_ = on;
  }

  double* next_row() {
    if (n_ == block_) {
      full_.push_back(cur_);
      cur_ = fresh_block();
      n_ = 0;
    }
    return cur_.mutable_data() + (n_++) * width_;
  }

  index_t width_, block_ = 8, n_ = 0;
  py::array_t<double> cur_;
  std::vector<py::array_t<double>> full_;
  bool armed_ = false;
  // the armed arrays (held: their data stay valid) and their data pointers and shapes
  py::object recs_, stats_, stamp_;
  const double* recs_p_ = nullptr;
  const double* stats_p_ = nullptr;
  const std::int64_t* stamp_p_ = nullptr;
  index_t rec_rows_ = 0, rec_cols_ = 0, lo_ = 0, hi_ = 0, nseg_ = 0, stats_cols_ = 0;
  std::int64_t epoch_ = -1;
  py::object raw_, marker_;
  index_t flush_at_ = -1;
  // the every > 1 switch (arm_switch)
  std::vector<std::pair<py::object, py::object>> switch_;
  py::object switch_arena_;
  std::int64_t readers_epoch_ = -1;
  bool switch_armed_ = false, switched_on_ = false;
};

void bind_monitor(py::module_& m) {
  m.def("rows_put", &rows_put, py::arg("dst"), py::arg("i"), py::arg("src"), py::arg("c0"),
        py::arg("c1"), py::arg("at"),
        "dst[i, at : at + rows * (c1 - c0)] = src[:, c0:c1] (2-D float64, row by row); returns "
        "the column after them. The monitor's per-step history append.");
  m.def("monitor_put", &monitor_put, py::arg("dst"), py::arg("i"), py::arg("step"),
        py::arg("loss"), py::arg("recs"), py::arg("lo"), py::arg("hi"), py::arg("stats"),
        "A GradientMonitor step in one call: dst[i] = [step, loss (NaN: None), loss given, "
        "recs[:, lo:hi] row by row (recs may be None), stats[:, :6] row by row (may be None)].");
  py::class_<MonitorRows>(m, "MonitorRows",
                          "The GradientMonitor's history rows: one float64 row of `width` "
                          "columns per recorded step, in preallocated blocks of about "
                          "`block_bytes`, and its common recorded step in one call (record).")
      .def(py::init<index_t, index_t>(), py::arg("width"), py::arg("block_bytes") = 1 << 19)
      .def("__len__", &MonitorRows::size)
      .def_property_readonly("width", &MonitorRows::width)
      .def("slot", &MonitorRows::slot, "(block, row index) of a new row for the caller to fill.")
      .def("take", &MonitorRows::take, "All rows so far as one (rows, width) array; starts again.")
      .def("arm", &MonitorRows::arm, py::arg("recs"), py::arg("lo"), py::arg("hi"),
           py::arg("stats"), py::arg("stamp"), py::arg("epoch"), py::arg("raw"),
           py::arg("marker"), py::arg("flush_at"),
           "Arm record(): recs (R, C) float64 or None (columns [lo, hi) per step), the arena's "
           "step statistics (S, >=6) float64 and its stamp int64 [serial, backward count], valid "
           "while the layout epoch is `epoch`; each recorded step appends `marker` to the list "
           "`raw`, and record() returns 2 once raw holds flush_at entries (-1: never).")
      .def("disarm", &MonitorRows::disarm)
      .def_property_readonly("armed", &MonitorRows::armed)
      .def("record", &MonitorRows::record, py::arg("step"), py::arg("loss"), py::arg("epoch"),
           py::arg("backwards"), py::arg("readers_epoch"),
           "Write the row of recorded step `step` when the armed case holds (same layout epoch, "
           "step statistics filled after this step's backward and not yet taken, a loss that is "
           "None, a number or a host tensor): 0 when it does not (nothing written), else 1 | 2 "
           "when raw is due for a flush | 4 when the armed switch took the records away and "
           "stopped asking for statistics (switch_on() had put them on).")
      .def("arm_switch", &MonitorRows::arm_switch, py::arg("pairs"), py::arg("arena"),
           py::arg("readers_epoch"), py::arg("on") = false,
           "Arm switch_on() and record()'s switch off: pairs [(layer __dict__, record)] whose "
           "'stats' they set, the arena whose step_stats_readers they count (None: none), valid "
           "while the records' readers epoch is readers_epoch; `on`: whether they are on now.")
      .def("disarm_switch", &MonitorRows::disarm_switch)
      .def("switch_on", &MonitorRows::switch_on, py::arg("epoch"), py::arg("readers_epoch"),
           "The step before a recorded one: the records on and one more statistics reader; "
           "False (nothing done) unless armed (both), off, and the epochs are the armed ones.")
      .def_readwrite("last_serial", &MonitorRows::last_serial_,
                     "The arena step-statistics serial last taken into a row (-1: none).")
      .def_readonly("seconds", &MonitorRows::seconds_,
                    "Seconds spent in record() on the steps it recorded.");
}

}  // namespace

DG_REGISTER_BINDINGS(bind_monitor);

}  // namespace dg::bind
