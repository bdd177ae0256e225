// Checked CUDA entry points for the fused LSTM/GRU cell kernels (csrc/cuda/rnn.cu). They mirror
// the CPU entry points of bind_rnn.cpp with a cuda_ prefix and take/return deepgrad._C.CudaArray
// (float32):
//
//   cuda_lstm_cell_forward(gates, c_prev) -> (h, c, act)
//   cuda_lstm_cell_backward(dh, dc, c_prev, c, act) -> (dgates, dc_prev)    dh / dc may be None
//   cuda_gru_cell_forward(xg, hg, h_prev) -> (h, act)
//   cuda_gru_cell_backward(dh, h_prev, act) -> (dxg, dhg, dh_prev)
//
// and the whole sequences, one call each way (the contracts of bind_rnn.cpp's *_sequence_*):
//
//   cuda_lstm_sequence_forward(xw, w, h0, c0) -> (y (B, T+1, H), hs, cs (T+1, B, H), acts)
//   cuda_lstm_sequence_backward(gy, hs, cs, acts, w, norms=False) -> (dxw, dw, dh0, dc0, norms)
//   cuda_rnn_sequence_forward(xw, w, h0, activation="tanh") -> (y (B, T, H), hs, zs)
//   cuda_rnn_sequence_backward(gy, hs, zs, w, activation="tanh", norms=False)
//       -> (dxw, dw, dh0, norms)
//   cuda_gru_sequence_forward(xw, w, bh, h0) -> (y (B, T, H), hs, acts)
//   cuda_gru_sequence_backward(gy, hs, acts, w, has_bh=True, norms=False)
//       -> (dxw, dw, dbh or None, dh0, norms)
//
// norms: ||dL/dh_t|| per step as a float64 CudaArray (T,) (no host synchronisation), or None.
#ifdef DG_HAVE_CUDA
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bindings/check.h"
#include "bindings/cuda_check.h"
#include "bindings/registry.h"
#include "deepgrad/cuda_array.h"
#include "deepgrad/cuda_kernels.h"
#include "deepgrad/cuda_ops.h"

namespace dg::bind {
namespace {

namespace dc = dg::cuda;

// The hidden size from a (B, gates*H) array.
index_t hidden_of(const char* fn, const CudaArray& a, const char* name, int gates,
                  const char* order) {
  cuda_ndim_is(fn, a, name, 2);
  if (a.shape[1] % gates != 0)
    fail_value(fn, std::string(name) + " has shape " + shape_str(a) +
                       " but its second dimension must be " + std::to_string(gates) +
                       "*hidden_size " + order);
  return a.shape[1] / gates;
}

py::tuple lstm_cell_forward(py::handle gates_o, py::handle c_prev_o) {
  const char* fn = "cuda_lstm_cell_forward";
  CudaArray& gates = cuda_f32(gates_o, fn, "gates");
  CudaArray& c_prev = cuda_f32(c_prev_o, fn, "c_prev");
  const index_t H = hidden_of(fn, gates, "gates", 4, "(i, f, g, o)"), B = gates.shape[0];
  cuda_matrix_is(fn, c_prev, "c_prev", B, H, " (batch, hidden_size)");
  CudaArray h = CudaArray::empty({B, H}), c = CudaArray::empty({B, H});
  CudaArray act = CudaArray::empty({B, 4 * H});
  dc::lstm_cell_forward(h.data<float>(), c.data<float>(), act.data<float>(), gates.data<float>(),
                        c_prev.data<float>(), B, H, dc::current_stream());
  return py::make_tuple(h, c, act);
}

py::tuple lstm_cell_backward(py::handle dh_o, py::handle dc_o, py::handle c_prev_o,
                             py::handle c_o, py::handle act_o) {
  const char* fn = "cuda_lstm_cell_backward";
  CudaArray& act = cuda_f32(act_o, fn, "act");
  const index_t H = hidden_of(fn, act, "act", 4, "(the act that cuda_lstm_cell_forward returned)");
  const index_t B = act.shape[0];
  CudaArray& c_prev = cuda_f32(c_prev_o, fn, "c_prev");
  CudaArray& c = cuda_f32(c_o, fn, "c");
  cuda_matrix_is(fn, c_prev, "c_prev", B, H, " (batch, hidden_size)");
  cuda_matrix_is(fn, c, "c", B, H, " (batch, hidden_size)");
  CudaArray* dh = cuda_opt_arg(dh_o, fn, "dh", CDType::f32);
  CudaArray* dcell = cuda_opt_arg(dc_o, fn, "dc", CDType::f32);
  if (dh) cuda_matrix_is(fn, *dh, "dh", B, H, " (batch, hidden_size)");
  if (dcell) cuda_matrix_is(fn, *dcell, "dc", B, H, " (batch, hidden_size)");
  CudaArray dgates = CudaArray::empty({B, 4 * H}), dc_prev = CudaArray::empty({B, H});
  dc::lstm_cell_backward(dgates.data<float>(), dc_prev.data<float>(),
                         dh ? dh->data<float>() : nullptr, dcell ? dcell->data<float>() : nullptr,
                         c_prev.data<float>(), c.data<float>(), act.data<float>(), B, H,
                         dc::current_stream());
  return py::make_tuple(dgates, dc_prev);
}

py::tuple gru_cell_forward(py::handle xg_o, py::handle hg_o, py::handle h_prev_o) {
  const char* fn = "cuda_gru_cell_forward";
  CudaArray& xg = cuda_f32(xg_o, fn, "xg");
  CudaArray& hg = cuda_f32(hg_o, fn, "hg");
  CudaArray& h_prev = cuda_f32(h_prev_o, fn, "h_prev");
  const index_t H = hidden_of(fn, xg, "xg", 3, "(r, z, n)"), B = xg.shape[0];
  cuda_matrix_is(fn, hg, "hg", B, 3 * H, " (batch, 3*hidden_size), like xg");
  cuda_matrix_is(fn, h_prev, "h_prev", B, H, " (batch, hidden_size)");
  CudaArray h = CudaArray::empty({B, H}), act = CudaArray::empty({B, 4 * H});
  dc::gru_cell_forward(h.data<float>(), act.data<float>(), xg.data<float>(), hg.data<float>(),
                       h_prev.data<float>(), B, H, dc::current_stream());
  return py::make_tuple(h, act);
}

py::tuple gru_cell_backward(py::handle dh_o, py::handle h_prev_o, py::handle act_o) {
  const char* fn = "cuda_gru_cell_backward";
  CudaArray& act = cuda_f32(act_o, fn, "act");
  const index_t H = hidden_of(fn, act, "act", 4, "(the act that cuda_gru_cell_forward returned)");
  const index_t B = act.shape[0];
  CudaArray& dh = cuda_f32(dh_o, fn, "dh");
  CudaArray& h_prev = cuda_f32(h_prev_o, fn, "h_prev");
  cuda_matrix_is(fn, dh, "dh", B, H, " (batch, hidden_size)");
  cuda_matrix_is(fn, h_prev, "h_prev", B, H, " (batch, hidden_size)");
  CudaArray dxg = CudaArray::empty({B, 3 * H}), dhg = CudaArray::empty({B, 3 * H});
  CudaArray dh_prev = CudaArray::empty({B, H});
  dc::gru_cell_backward(dxg.data<float>(), dhg.data<float>(), dh_prev.data<float>(),
                        dh.data<float>(), h_prev.data<float>(), act.data<float>(), B, H,
                        dc::current_stream());
  return py::make_tuple(dxg, dhg, dh_prev);
}

// ---- whole sequences ----------------------------------------------------------------------------

// xw (T*B, gates*H), w (H, gates*H), h0 (B, H), float32; returns T.
index_t sequence_args(const char* fn, const CudaArray& xw, const CudaArray& w,
                      const CudaArray& h0, index_t gates) {
  cuda_ndim_is(fn, h0, "h0", 2);
  const index_t B = h0.shape[0], H = h0.shape[1];
  if (B < 1 || H < 1)
    fail_value(fn, "h0 has shape " + shape_str(h0) + "; batch and hidden size must be >= 1");
  cuda_matrix_is(fn, w, "w", H, gates * H, " (hidden_size, gates*hidden_size)");
  cuda_ndim_is(fn, xw, "xw", 2);
  if (xw.shape[1] != gates * H || xw.shape[0] < B || xw.shape[0] % B != 0)
    fail_value(fn, "xw has shape " + shape_str(xw) + " but must be (steps*batch, " +
                       std::to_string(gates) + "*hidden_size) with batch " + std::to_string(B) +
                       " and hidden_size " + std::to_string(H));
  return xw.shape[0] / B;
}

// The saved (T, B, k*H) array of a forward: returns (T, B, H) and checks every dimension >= 1.
std::vector<index_t> saved_dims(const char* fn, const CudaArray& a, const char* name, index_t k,
                                const char* form) {
  cuda_ndim_is(fn, a, name, 3);
  const index_t T = a.shape[0], B = a.shape[1], H = a.shape[2] / k;
  if (T < 1 || B < 1 || H < 1 || a.shape[2] != k * H)
    fail_value(fn, std::string(name) + " has shape " + shape_str(a) + " but must be " + form);
  return {T, B, H};
}

py::object norms_out(const CudaArray* n) { return n ? py::cast(*n) : py::object(py::none()); }

py::tuple lstm_sequence_forward(py::handle xw_o, py::handle w_o, py::handle h0_o,
                                py::handle c0_o) {
  const char* fn = "cuda_lstm_sequence_forward";
  CudaArray& xw = cuda_f32(xw_o, fn, "xw");
  CudaArray& w = cuda_f32(w_o, fn, "w");
  CudaArray& h0 = cuda_f32(h0_o, fn, "h0");
  CudaArray& c0 = cuda_f32(c0_o, fn, "c0");
  const index_t T = sequence_args(fn, xw, w, h0, 4), B = h0.shape[0], H = h0.shape[1];
  cuda_matrix_is(fn, c0, "c0", B, H, " (batch, hidden_size), like h0");
  CudaArray y = CudaArray::empty({B, T + 1, H}), hs = CudaArray::empty({T + 1, B, H});
  CudaArray cs = CudaArray::empty({T + 1, B, H}), acts = CudaArray::empty({T, B, 4 * H});
  CudaArray work = CudaArray::empty({B * 4 * H});
  dc::memcpy_d2d(hs.raw(), h0.raw(), h0.nbytes());
  dc::memcpy_d2d(cs.raw(), c0.raw(), c0.nbytes());
  dc::lstm_sequence_forward(y.data<float>(), hs.data<float>(), cs.data<float>(),
                            acts.data<float>(), work.data<float>(), xw.data<float>(),
                            w.data<float>(), B, T, H, dc::current_stream());
  return py::make_tuple(y, hs, cs, acts);
}

py::tuple lstm_sequence_backward(py::handle gy_o, py::handle hs_o, py::handle cs_o,
                                 py::handle acts_o, py::handle w_o, bool want_norms) {
  const char* fn = "cuda_lstm_sequence_backward";
  CudaArray& acts = cuda_f32(acts_o, fn, "acts");
  const auto d = saved_dims(fn, acts, "acts", 4, "(steps, batch, 4*hidden_size)");
  const index_t T = d[0], B = d[1], H = d[2];
  CudaArray& hs = cuda_f32(hs_o, fn, "hs");
  CudaArray& cs = cuda_f32(cs_o, fn, "cs");
  CudaArray& w = cuda_f32(w_o, fn, "w");
  CudaArray& gy = cuda_f32(gy_o, fn, "gy");
  cuda_shape_is(fn, hs, "hs", {T + 1, B, H});
  cuda_shape_is(fn, cs, "cs", {T + 1, B, H});
  cuda_shape_is(fn, gy, "gy", {B, T + 1, H});
  cuda_matrix_is(fn, w, "w", H, 4 * H, " (hidden_size, 4*hidden_size)");
  CudaArray dxw = CudaArray::empty({T * B, 4 * H}), dw = CudaArray::empty({H, 4 * H});
  CudaArray dh0 = CudaArray::empty({B, H}), dc0 = CudaArray::empty({B, H});
  CudaArray work = CudaArray::empty({4 * B * H});
  CudaArray norms = want_norms ? CudaArray::empty({T}, CDType::f64) : CudaArray();
  dc::lstm_sequence_backward(dxw.data<float>(), dw.data<float>(), dh0.data<float>(),
                             dc0.data<float>(), want_norms ? norms.data<double>() : nullptr,
                             work.data<float>(), gy.data<float>(), hs.data<float>(),
                             cs.data<float>(), acts.data<float>(), w.data<float>(), B, T, H,
                             dc::current_stream());
  return py::make_tuple(dxw, dw, dh0, dc0, norms_out(want_norms ? &norms : nullptr));
}

py::tuple rnn_sequence_forward(py::handle xw_o, py::handle w_o, py::handle h0_o,
                               const std::string& activation) {
  const char* fn = "cuda_rnn_sequence_forward";
  CudaArray& xw = cuda_f32(xw_o, fn, "xw");
  CudaArray& w = cuda_f32(w_o, fn, "w");
  CudaArray& h0 = cuda_f32(h0_o, fn, "h0");
  const Act act = parse_activation(fn, activation);
  const index_t T = sequence_args(fn, xw, w, h0, 1), B = h0.shape[0], H = h0.shape[1];
  CudaArray y = CudaArray::empty({B, T, H}), hs = CudaArray::empty({T + 1, B, H});
  CudaArray zs = CudaArray::empty({T, B, H});
  dc::memcpy_d2d(hs.raw(), h0.raw(), h0.nbytes());
  dc::rnn_sequence_forward(y.data<float>(), hs.data<float>(), zs.data<float>(), xw.data<float>(),
                           w.data<float>(), B, T, H, act, dc::current_stream());
  return py::make_tuple(y, hs, zs);
}

py::tuple rnn_sequence_backward(py::handle gy_o, py::handle hs_o, py::handle zs_o,
                                py::handle w_o, const std::string& activation, bool want_norms) {
  const char* fn = "cuda_rnn_sequence_backward";
  CudaArray& zs = cuda_f32(zs_o, fn, "zs");
  const Act act = parse_activation(fn, activation);
  const auto d = saved_dims(fn, zs, "zs", 1, "(steps, batch, hidden_size)");
  const index_t T = d[0], B = d[1], H = d[2];
  CudaArray& hs = cuda_f32(hs_o, fn, "hs");
  CudaArray& w = cuda_f32(w_o, fn, "w");
  CudaArray& gy = cuda_f32(gy_o, fn, "gy");
  cuda_shape_is(fn, hs, "hs", {T + 1, B, H});
  cuda_shape_is(fn, gy, "gy", {B, T, H});
  cuda_matrix_is(fn, w, "w", H, H, " (hidden_size, hidden_size)");
  CudaArray dxw = CudaArray::empty({T * B, H}), dw = CudaArray::empty({H, H});
  CudaArray dh0 = CudaArray::empty({B, H}), work = CudaArray::empty({2 * B * H});
  CudaArray norms = want_norms ? CudaArray::empty({T}, CDType::f64) : CudaArray();
  dc::rnn_sequence_backward(dxw.data<float>(), dw.data<float>(), dh0.data<float>(),
                            want_norms ? norms.data<double>() : nullptr, work.data<float>(),
                            gy.data<float>(), hs.data<float>(), zs.data<float>(),
                            w.data<float>(), B, T, H, act, dc::current_stream());
  return py::make_tuple(dxw, dw, dh0, norms_out(want_norms ? &norms : nullptr));
}

py::tuple gru_sequence_forward(py::handle xw_o, py::handle w_o, py::handle bh_o,
                               py::handle h0_o) {
  const char* fn = "cuda_gru_sequence_forward";
  CudaArray& xw = cuda_f32(xw_o, fn, "xw");
  CudaArray& w = cuda_f32(w_o, fn, "w");
  CudaArray& h0 = cuda_f32(h0_o, fn, "h0");
  const index_t T = sequence_args(fn, xw, w, h0, 3), B = h0.shape[0], H = h0.shape[1];
  CudaArray* bh = cuda_opt_f32(bh_o, fn, "bh");
  if (bh) cuda_shape_is(fn, *bh, "bh", {3 * H});
  CudaArray y = CudaArray::empty({B, T, H}), hs = CudaArray::empty({T + 1, B, H});
  CudaArray acts = CudaArray::empty({T, B, 4 * H}), work = CudaArray::empty({B * 3 * H});
  dc::memcpy_d2d(hs.raw(), h0.raw(), h0.nbytes());
  dc::gru_sequence_forward(y.data<float>(), hs.data<float>(), acts.data<float>(),
                           work.data<float>(), xw.data<float>(), w.data<float>(),
                           bh ? bh->data<float>() : nullptr, B, T, H, dc::current_stream());
  return py::make_tuple(y, hs, acts);
}

py::tuple gru_sequence_backward(py::handle gy_o, py::handle hs_o, py::handle acts_o,
                                py::handle w_o, bool has_bh, bool want_norms) {
  const char* fn = "cuda_gru_sequence_backward";
  CudaArray& acts = cuda_f32(acts_o, fn, "acts");
  const auto d = saved_dims(fn, acts, "acts", 4, "(steps, batch, 4*hidden_size)");
  const index_t T = d[0], B = d[1], H = d[2];
  CudaArray& hs = cuda_f32(hs_o, fn, "hs");
  CudaArray& w = cuda_f32(w_o, fn, "w");
  CudaArray& gy = cuda_f32(gy_o, fn, "gy");
  cuda_shape_is(fn, hs, "hs", {T + 1, B, H});
  cuda_shape_is(fn, gy, "gy", {B, T, H});
  cuda_matrix_is(fn, w, "w", H, 3 * H, " (hidden_size, 3*hidden_size)");
  CudaArray dxw = CudaArray::empty({T * B, 3 * H}), dw = CudaArray::empty({H, 3 * H});
  CudaArray dh0 = CudaArray::empty({B, H});
  CudaArray dbh = has_bh ? CudaArray::empty({3 * H}) : CudaArray();
  CudaArray work = CudaArray::empty({2 * B * H + T * B * 3 * H});
  CudaArray norms = want_norms ? CudaArray::empty({T}, CDType::f64) : CudaArray();
  dc::gru_sequence_backward(dxw.data<float>(), dw.data<float>(),
                            has_bh ? dbh.data<float>() : nullptr, dh0.data<float>(),
                            want_norms ? norms.data<double>() : nullptr, work.data<float>(),
                            gy.data<float>(), hs.data<float>(), acts.data<float>(),
                            w.data<float>(), B, T, H, dc::current_stream());
  return py::make_tuple(dxw, dw, has_bh ? py::cast(dbh) : py::object(py::none()), dh0,
                        norms_out(want_norms ? &norms : nullptr));
}

void bind_cuda_rnn(py::module_& m) {
  m.def("cuda_lstm_cell_forward", &lstm_cell_forward, py::arg("gates"), py::arg("c_prev"),
        "lstm_cell_forward on CUDA (float32 CudaArrays): gates (B, 4H) in order (i, f, g, o), "
        "c_prev (B, H) -> (h, c, act (B, 4H)).");
  m.def("cuda_lstm_cell_backward", &lstm_cell_backward, py::arg("dh"), py::arg("dc"),
        py::arg("c_prev"), py::arg("c"), py::arg("act"),
        "lstm_cell_backward on CUDA: dh, dc (B, H) or None -> (dgates (B, 4H), dc_prev (B, H)).");
  m.def("cuda_gru_cell_forward", &gru_cell_forward, py::arg("xg"), py::arg("hg"),
        py::arg("h_prev"),
        "gru_cell_forward on CUDA: xg, hg (B, 3H) in order (r, z, n), h_prev (B, H) "
        "-> (h (B, H), act (B, 4H) = (r, z, n, hg_n)).");
  m.def("cuda_gru_cell_backward", &gru_cell_backward, py::arg("dh"), py::arg("h_prev"),
        py::arg("act"),
        "gru_cell_backward on CUDA: dh (B, H) -> (dxg, dhg (B, 3H), dh_prev (B, H) = z*dh).");
  m.def("cuda_lstm_sequence_forward", &lstm_sequence_forward, py::arg("xw"), py::arg("w"),
        py::arg("h0"), py::arg("c0"),
        "lstm_sequence_forward on CUDA: xw (T*B, 4H), w (H, 4H), h0, c0 (B, H) -> (y (B, T+1, H) "
        "= h_1..h_T then c_T, hs and cs (T+1, B, H), acts (T, B, 4H)); one call, no host sync.");
  m.def("cuda_lstm_sequence_backward", &lstm_sequence_backward, py::arg("gy"), py::arg("hs"),
        py::arg("cs"), py::arg("acts"), py::arg("w"), py::arg("norms") = false,
        "lstm_sequence_backward on CUDA: gy (B, T+1, H) -> (dxw (T*B, 4H), dw (H, 4H), dh0, dc0 "
        "(B, H), ||dL/dh_t|| as a float64 CudaArray (T,) or None).");
  m.def("cuda_rnn_sequence_forward", &rnn_sequence_forward, py::arg("xw"), py::arg("w"),
        py::arg("h0"), py::arg("activation") = "tanh",
        "rnn_sequence_forward on CUDA: xw (T*B, H), w (H, H), h0 (B, H) -> (y (B, T, H), hs "
        "(T+1, B, H), zs (T, B, H)).");
  m.def("cuda_rnn_sequence_backward", &rnn_sequence_backward, py::arg("gy"), py::arg("hs"),
        py::arg("zs"), py::arg("w"), py::arg("activation") = "tanh", py::arg("norms") = false,
        "rnn_sequence_backward on CUDA: gy (B, T, H) -> (dxw (T*B, H), dw (H, H), dh0 (B, H), "
        "||dL/dh_t|| float64 CudaArray (T,) or None).");
  m.def("cuda_gru_sequence_forward", &gru_sequence_forward, py::arg("xw"), py::arg("w"),
        py::arg("bh"), py::arg("h0"),
        "gru_sequence_forward on CUDA: xw (T*B, 3H), w (H, 3H), bh (3H,) or None, h0 (B, H) -> "
        "(y (B, T, H), hs (T+1, B, H), acts (T, B, 4H)).");
  m.def("cuda_gru_sequence_backward", &gru_sequence_backward, py::arg("gy"), py::arg("hs"),
        py::arg("acts"), py::arg("w"), py::arg("has_bh") = true, py::arg("norms") = false,
        "gru_sequence_backward on CUDA: gy (B, T, H) -> (dxw (T*B, 3H), dw (H, 3H), dbh (3H,) or "
        "None, dh0 (B, H), ||dL/dh_t|| float64 CudaArray (T,) or None).");
}

DG_REGISTER_BINDINGS(bind_cuda_rnn);

}  // namespace
}  // namespace dg::bind
#endif  // DG_HAVE_CUDA
