// Checked entry points for the fused LSTM/GRU cell kernels (csrc/cpu/rnn.cpp).
#include "bindings/check.h"
#include "bindings/registry.h"
#include "deepgrad/rnn.h"

#include <cstring>

namespace dg::bind {
namespace {

// a must be (rows, cols) with the given dtype.
void shape_is(const char* fn, const py::array& a, const char* name, py::ssize_t rows,
              py::ssize_t cols, const char* hint) {
  ndim_is(fn, a, name, 2);
  if (a.shape(0) != rows || a.shape(1) != cols)
    fail_value(fn, std::string(name) + " has shape " + shape_str(a) + " but must be (" +
                       std::to_string(rows) + ", " + std::to_string(cols) + ") " + hint);
}

py::array empty_like_dtype(const py::array& ref, py::ssize_t rows, py::ssize_t cols) {
  return py::array(ref.dtype(), std::vector<py::ssize_t>{rows, cols});
}

py::tuple lstm_cell_forward(py::handle gates_o, py::handle c_prev_o) {
  const char* fn = "lstm_cell_forward";
  py::array gates = float_input(gates_o, fn, "gates");
  py::array c_prev = float_input(c_prev_o, fn, "c_prev");
  ndim_is(fn, gates, "gates", 2);
  same_dtype(fn, gates, "gates", c_prev, "c_prev");
  if (gates.shape(1) % 4 != 0)
    fail_value(fn, "gates has shape " + shape_str(gates) +
                       " but its second dimension must be 4*hidden_size (i, f, g, o)");
  const py::ssize_t B = gates.shape(0), H = gates.shape(1) / 4;
  shape_is(fn, c_prev, "c_prev", B, H, "(batch, hidden_size)");
  py::array h = empty_like_dtype(gates, B, H), c = empty_like_dtype(gates, B, H);
  py::array act = empty_like_dtype(gates, B, 4 * H);
  dispatch_float(gates, [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    cpu::lstm_cell_forward<T>(data_of<T>(h), data_of<T>(c), data_of<T>(act), cdata_of<T>(gates),
                              cdata_of<T>(c_prev), B, H);
  });
  return py::make_tuple(h, c, act);
}

py::tuple lstm_cell_backward(py::handle dh_o, py::handle dc_o, py::handle c_prev_o,
                             py::handle c_o, py::handle act_o) {
  const char* fn = "lstm_cell_backward";
  py::array act = float_input(act_o, fn, "act");
  py::array c_prev = float_input(c_prev_o, fn, "c_prev");
  py::array c = float_input(c_o, fn, "c");
  ndim_is(fn, act, "act", 2);
  if (act.shape(1) % 4 != 0) fail_value(fn, "act must be (batch, 4*hidden_size), got " + shape_str(act));
  const py::ssize_t B = act.shape(0), H = act.shape(1) / 4;
  same_dtype(fn, act, "act", c_prev, "c_prev");
  same_dtype(fn, act, "act", c, "c");
  shape_is(fn, c_prev, "c_prev", B, H, "(batch, hidden_size)");
  shape_is(fn, c, "c", B, H, "(batch, hidden_size)");
  py::array dh, dc;
  const bool has_dh = !dh_o.is_none(), has_dc = !dc_o.is_none();
  if (has_dh) {
    dh = float_input(dh_o, fn, "dh");
    same_dtype(fn, act, "act", dh, "dh");
    shape_is(fn, dh, "dh", B, H, "(batch, hidden_size)");
  }
  if (has_dc) {
    dc = float_input(dc_o, fn, "dc");
    same_dtype(fn, act, "act", dc, "dc");
    shape_is(fn, dc, "dc", B, H, "(batch, hidden_size)");
  }
  py::array dgates = empty_like_dtype(act, B, 4 * H), dc_prev = empty_like_dtype(act, B, H);
  dispatch_float(act, [&](auto tag) {
    using T = decltype(tag);
    const T* pdh = has_dh ? cdata_of<T>(dh) : nullptr;
    const T* pdc = has_dc ? cdata_of<T>(dc) : nullptr;
    py::gil_scoped_release nogil;
    cpu::lstm_cell_backward<T>(data_of<T>(dgates), data_of<T>(dc_prev), pdh, pdc,
                               cdata_of<T>(c_prev), cdata_of<T>(c), cdata_of<T>(act), B, H);
  });
  return py::make_tuple(dgates, dc_prev);
}

py::tuple gru_cell_forward(py::handle xg_o, py::handle hg_o, py::handle h_prev_o) {
  const char* fn = "gru_cell_forward";
  py::array xg = float_input(xg_o, fn, "xg");
  py::array hg = float_input(hg_o, fn, "hg");
  py::array h_prev = float_input(h_prev_o, fn, "h_prev");
  ndim_is(fn, xg, "xg", 2);
  if (xg.shape(1) % 3 != 0)
    fail_value(fn, "xg has shape " + shape_str(xg) +
                       " but its second dimension must be 3*hidden_size (r, z, n)");
  const py::ssize_t B = xg.shape(0), H = xg.shape(1) / 3;
  same_dtype(fn, xg, "xg", hg, "hg");
  same_dtype(fn, xg, "xg", h_prev, "h_prev");
  shape_is(fn, hg, "hg", B, 3 * H, "(batch, 3*hidden_size), like xg");
  shape_is(fn, h_prev, "h_prev", B, H, "(batch, hidden_size)");
  py::array h = empty_like_dtype(xg, B, H), act = empty_like_dtype(xg, B, 4 * H);
  dispatch_float(xg, [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    cpu::gru_cell_forward<T>(data_of<T>(h), data_of<T>(act), cdata_of<T>(xg), cdata_of<T>(hg),
                             cdata_of<T>(h_prev), B, H);
  });
  return py::make_tuple(h, act);
}

py::tuple gru_cell_backward(py::handle dh_o, py::handle h_prev_o, py::handle act_o) {
  const char* fn = "gru_cell_backward";
  py::array dh = float_input(dh_o, fn, "dh");
  py::array h_prev = float_input(h_prev_o, fn, "h_prev");
  py::array act = float_input(act_o, fn, "act");
  ndim_is(fn, act, "act", 2);
  if (act.shape(1) % 4 != 0) fail_value(fn, "act must be (batch, 4*hidden_size), got " + shape_str(act));
  const py::ssize_t B = act.shape(0), H = act.shape(1) / 4;
  same_dtype(fn, act, "act", dh, "dh");
  same_dtype(fn, act, "act", h_prev, "h_prev");
  shape_is(fn, dh, "dh", B, H, "(batch, hidden_size)");
  shape_is(fn, h_prev, "h_prev", B, H, "(batch, hidden_size)");
  py::array dxg = empty_like_dtype(act, B, 3 * H), dhg = empty_like_dtype(act, B, 3 * H);
  py::array dh_prev = empty_like_dtype(act, B, H);
  dispatch_float(act, [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    cpu::gru_cell_backward<T>(data_of<T>(dxg), data_of<T>(dhg), data_of<T>(dh_prev),
                              cdata_of<T>(dh), cdata_of<T>(h_prev), cdata_of<T>(act), B, H);
  });
  return py::make_tuple(dxg, dhg, dh_prev);
}

// a must be 3-D with these dimensions.
void shape3_is(const char* fn, const py::array& a, const char* name, py::ssize_t d0,
               py::ssize_t d1, py::ssize_t d2, const char* hint) {
  ndim_is(fn, a, name, 3);
  if (a.shape(0) != d0 || a.shape(1) != d1 || a.shape(2) != d2)
    fail_value(fn, std::string(name) + " has shape " + shape_str(a) + " but must be (" +
                       std::to_string(d0) + ", " + std::to_string(d1) + ", " +
                       std::to_string(d2) + ") " + hint);
}

py::tuple lstm_sequence_forward(py::handle xw_o, py::handle w_o, py::handle h0_o,
                                py::handle c0_o, bool reference) {
  const char* fn = "lstm_sequence_forward";
  py::array xw = float_input(xw_o, fn, "xw"), w = float_input(w_o, fn, "w");
  py::array h0 = float_input(h0_o, fn, "h0"), c0 = float_input(c0_o, fn, "c0");
  ndim_is(fn, w, "w", 2);
  ndim_is(fn, h0, "h0", 2);
  const py::ssize_t B = h0.shape(0), H = h0.shape(1);
  if (B < 1 || H < 1) fail_value(fn, "h0 has shape " + shape_str(h0) + "; batch and hidden size must be >= 1");
  shape_is(fn, w, "w", H, 4 * H, "(hidden_size, 4*hidden_size)");
  shape_is(fn, c0, "c0", B, H, "(batch, hidden_size)");
  ndim_is(fn, xw, "xw", 2);
  if (xw.shape(1) != 4 * H || xw.shape(0) < B || xw.shape(0) % B != 0)
    fail_value(fn, "xw has shape " + shape_str(xw) + " but must be (steps*batch, 4*hidden_size) "
                   "with batch " + std::to_string(B) + " and hidden_size " + std::to_string(H));
  for (auto* a : {&w, &h0, &c0}) same_dtype(fn, xw, "xw", *a, "w/h0/c0");
  const py::ssize_t steps = xw.shape(0) / B;
  const auto dt = xw.dtype();
  py::array y(dt, std::vector<py::ssize_t>{B, steps + 1, H});
  py::array hs(dt, std::vector<py::ssize_t>{steps + 1, B, H});
  py::array cs(dt, std::vector<py::ssize_t>{steps + 1, B, H});
  py::array acts(dt, std::vector<py::ssize_t>{steps, B, 4 * H});
  dispatch_float(xw, [&](auto tag) {
    using T = decltype(tag);
    T* phs = data_of<T>(hs);
    T* pcs = data_of<T>(cs);
    std::memcpy(phs, cdata_of<T>(h0), sizeof(T) * B * H);
    std::memcpy(pcs, cdata_of<T>(c0), sizeof(T) * B * H);
    py::gil_scoped_release nogil;
    (reference ? cpu::lstm_sequence_forward_stepwise<T> : cpu::lstm_sequence_forward<T>)(
        data_of<T>(y), phs, pcs, data_of<T>(acts), cdata_of<T>(xw), cdata_of<T>(w), B, steps, H);
  });
  return py::make_tuple(y, hs, cs, acts);
}

py::tuple lstm_sequence_backward(py::handle gy_o, py::handle hs_o, py::handle cs_o,
                                 py::handle acts_o, py::handle w_o, bool want_norms,
                                 bool reference) {
  const char* fn = "lstm_sequence_backward";
  py::array hs = float_input(hs_o, fn, "hs"), cs = float_input(cs_o, fn, "cs");
  py::array acts = float_input(acts_o, fn, "acts"), w = float_input(w_o, fn, "w");
  py::array gy = float_input(gy_o, fn, "gy");
  ndim_is(fn, acts, "acts", 3);
  const py::ssize_t steps = acts.shape(0), B = acts.shape(1), H = acts.shape(2) / 4;
  if (steps < 1 || B < 1 || H < 1 || acts.shape(2) != 4 * H)
    fail_value(fn, "acts has shape " + shape_str(acts) + " but must be (steps, batch, 4*hidden_size)");
  shape3_is(fn, hs, "hs", steps + 1, B, H, "(steps+1, batch, hidden_size)");
  shape3_is(fn, cs, "cs", steps + 1, B, H, "(steps+1, batch, hidden_size)");
  shape3_is(fn, gy, "gy", B, steps + 1, H, "(batch, steps+1, hidden_size)");
  shape_is(fn, w, "w", H, 4 * H, "(hidden_size, 4*hidden_size)");
  for (auto* a : {&hs, &cs, &w, &gy}) same_dtype(fn, acts, "acts", *a, "hs/cs/w/gy");
  const auto dt = acts.dtype();
  py::array dxw(dt, std::vector<py::ssize_t>{steps * B, 4 * H});
  py::array dw(dt, std::vector<py::ssize_t>{H, 4 * H});
  py::array dh0(dt, std::vector<py::ssize_t>{B, H}), dc0(dt, std::vector<py::ssize_t>{B, H});
  py::array_t<double> norms(want_norms ? steps : 0);
  dispatch_float(acts, [&](auto tag) {
    using T = decltype(tag);
    double* pn = want_norms ? norms.mutable_data() : nullptr;
    py::gil_scoped_release nogil;
    (reference ? cpu::lstm_sequence_backward_stepwise<T> : cpu::lstm_sequence_backward<T>)(
        data_of<T>(dxw), data_of<T>(dw), data_of<T>(dh0), data_of<T>(dc0), pn, cdata_of<T>(gy),
        cdata_of<T>(hs), cdata_of<T>(cs), cdata_of<T>(acts), cdata_of<T>(w), B, steps, H);
  });
  return py::make_tuple(dxw, dw, dh0, dc0, want_norms ? py::object(norms) : py::object(py::none()));
}

// The checks shared by the RNN/GRU sequence entry points: xw (T*B, G*H), w (H, G*H) and h0 (B, H)
// of one dtype; returns T.
py::ssize_t sequence_args(const char* fn, const py::array& xw, const py::array& w,
                          const py::array& h0, py::ssize_t gates) {
  ndim_is(fn, h0, "h0", 2);
  const py::ssize_t B = h0.shape(0), H = h0.shape(1);
  if (B < 1 || H < 1) fail_value(fn, "h0 has shape " + shape_str(h0) + "; batch and hidden size must be >= 1");
  shape_is(fn, w, "w", H, gates * H, "(hidden_size, gates*hidden_size)");
  ndim_is(fn, xw, "xw", 2);
  if (xw.shape(1) != gates * H || xw.shape(0) < B || xw.shape(0) % B != 0)
    fail_value(fn, "xw has shape " + shape_str(xw) + " but must be (steps*batch, " +
                       std::to_string(gates) + "*hidden_size) with batch " + std::to_string(B) +
                       " and hidden_size " + std::to_string(H));
  same_dtype(fn, xw, "xw", w, "w");
  same_dtype(fn, xw, "xw", h0, "h0");
  return xw.shape(0) / B;
}

py::tuple rnn_sequence_forward(py::handle xw_o, py::handle w_o, py::handle h0_o,
                               const std::string& activation, bool reference) {
  const char* fn = "rnn_sequence_forward";
  py::array xw = float_input(xw_o, fn, "xw"), w = float_input(w_o, fn, "w");
  py::array h0 = float_input(h0_o, fn, "h0");
  const Act act = parse_activation(fn, activation);
  const py::ssize_t steps = sequence_args(fn, xw, w, h0, 1), B = h0.shape(0), H = h0.shape(1);
  const auto dt = xw.dtype();
  py::array y(dt, std::vector<py::ssize_t>{B, steps, H});
  py::array hs(dt, std::vector<py::ssize_t>{steps + 1, B, H});
  py::array zs(dt, std::vector<py::ssize_t>{steps, B, H});
  dispatch_float(xw, [&](auto tag) {
    using T = decltype(tag);
    std::memcpy(data_of<T>(hs), cdata_of<T>(h0), sizeof(T) * B * H);
    py::gil_scoped_release nogil;
    (reference ? cpu::rnn_sequence_forward_stepwise<T> : cpu::rnn_sequence_forward<T>)(
        data_of<T>(y), data_of<T>(hs), data_of<T>(zs), cdata_of<T>(xw), cdata_of<T>(w), B, steps,
        H, act);
  });
  return py::make_tuple(y, hs, zs);
}

py::tuple rnn_sequence_backward(py::handle gy_o, py::handle hs_o, py::handle zs_o,
                                py::handle w_o, const std::string& activation, bool want_norms,
                                bool reference) {
  const char* fn = "rnn_sequence_backward";
  py::array gy = float_input(gy_o, fn, "gy"), hs = float_input(hs_o, fn, "hs");
  py::array zs = float_input(zs_o, fn, "zs"), w = float_input(w_o, fn, "w");
  const Act act = parse_activation(fn, activation);
  ndim_is(fn, zs, "zs", 3);
  const py::ssize_t steps = zs.shape(0), B = zs.shape(1), H = zs.shape(2);
  if (steps < 1 || B < 1 || H < 1) fail_value(fn, "zs has shape " + shape_str(zs) + "; every dimension must be >= 1");
  shape3_is(fn, hs, "hs", steps + 1, B, H, "(steps+1, batch, hidden_size)");
  shape3_is(fn, gy, "gy", B, steps, H, "(batch, steps, hidden_size)");
  shape_is(fn, w, "w", H, H, "(hidden_size, hidden_size)");
  for (auto* a : {&hs, &w, &gy}) same_dtype(fn, zs, "zs", *a, "hs/w/gy");
  const auto dt = zs.dtype();
  py::array dxw(dt, std::vector<py::ssize_t>{steps * B, H}), dw(dt, std::vector<py::ssize_t>{H, H});
  py::array dh0(dt, std::vector<py::ssize_t>{B, H});
  py::array_t<double> norms(want_norms ? steps : 0);
  dispatch_float(zs, [&](auto tag) {
    using T = decltype(tag);
    double* pn = want_norms ? norms.mutable_data() : nullptr;
    py::gil_scoped_release nogil;
    (reference ? cpu::rnn_sequence_backward_stepwise<T> : cpu::rnn_sequence_backward<T>)(
        data_of<T>(dxw), data_of<T>(dw), data_of<T>(dh0), pn, cdata_of<T>(gy), cdata_of<T>(hs),
        cdata_of<T>(zs), cdata_of<T>(w), B, steps, H, act);
  });
  return py::make_tuple(dxw, dw, dh0, want_norms ? py::object(norms) : py::object(py::none()));
}

py::tuple gru_sequence_forward(py::handle xw_o, py::handle w_o, py::handle bh_o,
                               py::handle h0_o, bool reference) {
  const char* fn = "gru_sequence_forward";
  py::array xw = float_input(xw_o, fn, "xw"), w = float_input(w_o, fn, "w");
  py::array h0 = float_input(h0_o, fn, "h0");
  const py::ssize_t steps = sequence_args(fn, xw, w, h0, 3), B = h0.shape(0), H = h0.shape(1);
  py::array bh;
  const bool has_bh = !bh_o.is_none();
  if (has_bh) {
    bh = float_input(bh_o, fn, "bh");
    same_dtype(fn, xw, "xw", bh, "bh");
    if (bh.ndim() != 1 || bh.shape(0) != 3 * H)
      fail_value(fn, "bh has shape " + shape_str(bh) + " but must be (" + std::to_string(3 * H) + ",)");
  }
  const auto dt = xw.dtype();
  py::array y(dt, std::vector<py::ssize_t>{B, steps, H});
  py::array hs(dt, std::vector<py::ssize_t>{steps + 1, B, H});
  py::array acts(dt, std::vector<py::ssize_t>{steps, B, 4 * H});
  dispatch_float(xw, [&](auto tag) {
    using T = decltype(tag);
    std::memcpy(data_of<T>(hs), cdata_of<T>(h0), sizeof(T) * B * H);
    const T* pb = has_bh ? cdata_of<T>(bh) : nullptr;
    py::gil_scoped_release nogil;
    (reference ? cpu::gru_sequence_forward_stepwise<T> : cpu::gru_sequence_forward<T>)(
        data_of<T>(y), data_of<T>(hs), data_of<T>(acts), cdata_of<T>(xw), cdata_of<T>(w), pb, B,
        steps, H);
  });
  return py::make_tuple(y, hs, acts);
}

py::tuple gru_sequence_backward(py::handle gy_o, py::handle hs_o, py::handle acts_o,
                                py::handle w_o, bool has_bh, bool want_norms, bool reference) {
  const char* fn = "gru_sequence_backward";
  py::array gy = float_input(gy_o, fn, "gy"), hs = float_input(hs_o, fn, "hs");
  py::array acts = float_input(acts_o, fn, "acts"), w = float_input(w_o, fn, "w");
  ndim_is(fn, acts, "acts", 3);
  const py::ssize_t steps = acts.shape(0), B = acts.shape(1), H = acts.shape(2) / 4;
  if (steps < 1 || B < 1 || H < 1 || acts.shape(2) != 4 * H)
    fail_value(fn, "acts has shape " + shape_str(acts) + " but must be (steps, batch, 4*hidden_size)");
  shape3_is(fn, hs, "hs", steps + 1, B, H, "(steps+1, batch, hidden_size)");
  shape3_is(fn, gy, "gy", B, steps, H, "(batch, steps, hidden_size)");
  shape_is(fn, w, "w", H, 3 * H, "(hidden_size, 3*hidden_size)");
  for (auto* a : {&hs, &w, &gy}) same_dtype(fn, acts, "acts", *a, "hs/w/gy");
  const auto dt = acts.dtype();
  py::array dxw(dt, std::vector<py::ssize_t>{steps * B, 3 * H});
  py::array dw(dt, std::vector<py::ssize_t>{H, 3 * H}), dh0(dt, std::vector<py::ssize_t>{B, H});
  py::array dbh = has_bh ? py::array(dt, std::vector<py::ssize_t>{3 * H}) : py::array();
  py::array_t<double> norms(want_norms ? steps : 0);
  dispatch_float(acts, [&](auto tag) {
    using T = decltype(tag);
    double* pn = want_norms ? norms.mutable_data() : nullptr;
    T* pdb = has_bh ? data_of<T>(dbh) : nullptr;
    py::gil_scoped_release nogil;
    (reference ? cpu::gru_sequence_backward_stepwise<T> : cpu::gru_sequence_backward<T>)(
        data_of<T>(dxw), data_of<T>(dw), pdb, data_of<T>(dh0), pn, cdata_of<T>(gy),
        cdata_of<T>(hs), cdata_of<T>(acts), cdata_of<T>(w), B, steps, H);
  });
  return py::make_tuple(dxw, dw, has_bh ? py::object(dbh) : py::object(py::none()), dh0,
                        want_norms ? py::object(norms) : py::object(py::none()));
}

// The six sequence entry points take reference=True to run the stepwise reference kernels (one
// gemm() call per step; see rnn.h) instead of the fast ones: for tests and bench_rnn.py.
void bind_rnn(py::module_& m) {
  m.def("lstm_cell_forward", &lstm_cell_forward, py::arg("gates"), py::arg("c_prev"),
        "LSTM gate arithmetic. gates (B, 4H) pre-activations in order (i, f, g, o), c_prev (B, H)"
        " -> (h (B, H), c (B, H), act (B, 4H) activated gates saved for backward).");
  m.def("lstm_cell_backward", &lstm_cell_backward, py::arg("dh"), py::arg("dc"), py::arg("c_prev"),
        py::arg("c"), py::arg("act"),
        "dh, dc (B, H) or None -> (dgates (B, 4H), dc_prev (B, H)).");
  m.def("gru_cell_forward", &gru_cell_forward, py::arg("xg"), py::arg("hg"), py::arg("h_prev"),
        "GRU gate arithmetic. xg = x W_ih + b_ih and hg = h_prev W_hh + b_hh, both (B, 3H) in "
        "order (r, z, n); h_prev (B, H) -> (h (B, H), act (B, 4H) = (r, z, n, hg_n)).");
  m.def("gru_cell_backward", &gru_cell_backward, py::arg("dh"), py::arg("h_prev"), py::arg("act"),
        "dh (B, H) -> (dxg (B, 3H), dhg (B, 3H), dh_prev (B, H) the direct part z*dh).");
  m.def(
      "_rnn_set_kernel",
      [](const std::string& name) {
        if (name != "auto" && name != "avx2")
          throw py::value_error("_rnn_set_kernel: name must be 'auto' or 'avx2', got '" + name +
                                "'");
        cpu::rnn_set_kernel_limit(name == "avx2" ? 1 : 0);
        return std::string(cpu::rnn_fast_kernel_name());
      },
      py::arg("name"),
      "Which micro-kernel the fast recurrent sequence kernels use: 'auto' (AVX-512 where the CPU "
      "has it) or 'avx2' (at most AVX2). Returns the kernel now in use (for tests and benchmarks).");
  m.def("lstm_sequence_forward", &lstm_sequence_forward, py::arg("xw"), py::arg("w"),
        py::arg("h0"), py::arg("c0"), py::arg("reference") = false,
        "A whole LSTM sequence: xw (T*B, 4H) time-major input projections, w (H, 4H), h0 and c0 "
        "(B, H) -> (y (B, T+1, H) = h_1..h_T then c_T, hs and cs (T+1, B, H), acts (T, B, 4H)).");
  m.def("lstm_sequence_backward", &lstm_sequence_backward, py::arg("gy"), py::arg("hs"),
        py::arg("cs"), py::arg("acts"), py::arg("w"), py::arg("norms") = false,
        py::arg("reference") = false,
        "gy = dL/dy (B, T+1, H) with the saved hs, cs, acts of lstm_sequence_forward -> (dxw "
        "(T*B, 4H), dw (H, 4H), dh0, dc0 (B, H), ||dL/dh_t|| per step (T,) or None).");
  m.def("rnn_sequence_forward", &rnn_sequence_forward, py::arg("xw"), py::arg("w"),
        py::arg("h0"), py::arg("activation") = "tanh", py::arg("reference") = false,
        "A whole Elman RNN sequence: xw (T*B, H), w (H, H), h0 (B, H) -> (y (B, T, H), hs "
        "(T+1, B, H), zs (T, B, H) pre-activations).");
  m.def("rnn_sequence_backward", &rnn_sequence_backward, py::arg("gy"), py::arg("hs"),
        py::arg("zs"), py::arg("w"), py::arg("activation") = "tanh", py::arg("norms") = false,
        py::arg("reference") = false,
        "gy (B, T, H) -> (dxw (T*B, H), dw (H, H), dh0 (B, H), ||dL/dh_t|| (T,) or None).");
  m.def("gru_sequence_forward", &gru_sequence_forward, py::arg("xw"), py::arg("w"),
        py::arg("bh"), py::arg("h0"), py::arg("reference") = false,
        "A whole GRU sequence: xw (T*B, 3H) = x W_ih + b_ih, w (H, 3H), bh (3H,) or None, h0 "
        "(B, H) -> (y (B, T, H), hs (T+1, B, H), acts (T, B, 4H)).");
  m.def("gru_sequence_backward", &gru_sequence_backward, py::arg("gy"), py::arg("hs"),
        py::arg("acts"), py::arg("w"), py::arg("has_bh") = true, py::arg("norms") = false,
        py::arg("reference") = false,
        "gy (B, T, H) -> (dxw (T*B, 3H), dw (H, 3H), dbh (3H,) or None, dh0 (B, H), "
        "||dL/dh_t|| (T,) or None).");
}

DG_REGISTER_BINDINGS(bind_rnn);

}  // namespace
}  // namespace dg::bind
