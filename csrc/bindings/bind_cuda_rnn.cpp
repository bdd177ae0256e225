// Checked CUDA entry points for the fused LSTM/GRU cell kernels (csrc/cuda/rnn.cu). They mirror
// the CPU entry points of bind_rnn.cpp with a cuda_ prefix and take/return deepgrad._C.CudaArray
// (float32):
//
//   cuda_lstm_cell_forward(gates, c_prev) -> (h, c, act)
//   cuda_lstm_cell_backward(dh, dc, c_prev, c, act) -> (dgates, dc_prev)    dh / dc may be None
//   cuda_gru_cell_forward(xg, hg, h_prev) -> (h, act)
//   cuda_gru_cell_backward(dh, h_prev, act) -> (dxg, dhg, dh_prev)
#ifdef DG_HAVE_CUDA
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/check.h"
#include "bindings/cuda_check.h"
#include "bindings/registry.h"
#include "deepgrad/cuda_array.h"
#include "deepgrad/cuda_kernels.h"

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
}

DG_REGISTER_BINDINGS(bind_cuda_rnn);

}  // namespace
}  // namespace dg::bind
#endif  // DG_HAVE_CUDA
