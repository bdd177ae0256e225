// Checked CUDA entry points for the compute kernels of csrc/cuda/{gemm,dense,activations,
// softmax_loss,norms,optim,norm_layers}.cu. They mirror the CPU entry points of docs/design.md
// with a cuda_ prefix and take/return deepgrad._C.CudaArray (float32) instead of numpy arrays:
//
//   cuda_gemm(a, b, out=None, trans_a=False, trans_b=False, alpha=1.0, beta=0.0) -> out
//   cuda_gemm_naive(...)                                      same contract, reference kernel
//   cuda_dense_forward(x, w, b, activation="identity", alpha=0.01, keep_z=False) -> (y, z or None)
//   cuda_dense_backward(dy, x, w, z, y, dw, db, activation="identity", alpha=0.01,
//                       need_dx=True) -> dx or None           (dw, db accumulated in place)
//   cuda_act_forward(x, activation, alpha=0.01) -> y
//   cuda_act_backward(dy, z, y, activation, alpha=0.01) -> dz
//   cuda_softmax(x), cuda_log_softmax(x), cuda_softmax_backward(dy, y),
//   cuda_log_softmax_backward(dy, y)                           row-wise over a 2-D array
//   cuda_loss_forward(kind, pred, target, reduction="mean", sync=True) -> float (mean/sum) or
//                       CudaArray (none); sync=True checks the labels (a bad one raises).
//                       sync=False waits for nothing: the reduced loss comes back as a 0-d
//                       float32 CudaArray and the labels are the caller's to have checked
//   cuda_loss_backward(kind, pred, target, reduction, grad) -> dpred; for mean/sum, grad is a
//                       float or a one-element float32 CudaArray (read on the device)
//                       cross_entropy targets: int64 CudaArray (N,) of class labels
//   cuda_segment_norms(buf, offsets) -> (norms numpy float64 (S,), total float, nonfinite int)
//                       offsets: numpy integer array (S+1,), as for the CPU entry point
//   cuda_scale_(buf, factor), cuda_clip_value_(buf, clip), cuda_fill_(buf, value)
//   cuda_sgd_step(param, grad, momentum_buf, lr, momentum=0, dampening=0, nesterov=False,
//                 weight_decay=0, first_step=False)
//   cuda_adam_step(param, grad, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
//                  weight_decay=0, decoupled=False)
//   cuda_rmsprop_step(param, grad, square_avg, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0,
//                     momentum=0, momentum_buf=None, centered=False, grad_avg=None)
//   cuda_batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1,
//                           eps=1e-5) -> (y, save_mean, save_invstd)
//   cuda_batch_norm_backward(dy, x, gamma, save_mean, save_invstd, dgamma, dbeta,
//                            training=True, need_dx=True) -> dx or None
//   cuda_layer_norm_forward(x, gamma, beta, eps=1e-5) -> (y, save_mean, save_invstd)
//   cuda_layer_norm_backward(dy, x, gamma, save_mean, save_invstd, dgamma, dbeta,
//                            need_dx=True) -> dx or None
//
// gamma / beta / dgamma / dbeta / running stats / b / db may be None. Every check happens here;
// the launchers (deepgrad/cuda_kernels.h) trust their arguments.
#ifdef DG_HAVE_CUDA
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "bindings/check.h"
#include "bindings/cuda_check.h"
#include "bindings/optim_check.h"
#include "bindings/registry.h"
#include "deepgrad/cuda_array.h"
#include "deepgrad/cuda_kernels.h"
#include "deepgrad/cuda_ops.h"

namespace dg::bind {
namespace {

namespace dc = dg::cuda;

float* ptr(CudaArray* a) { return a ? a->data<float>() : nullptr; }
std::string dims(index_t r, index_t c) {
  return "(" + std::to_string(r) + ", " + std::to_string(c) + ")";
}
bool overlaps(const CudaArray& a, const CudaArray& b) {
  if (a.nbytes() == 0 || b.nbytes() == 0) return false;
  const char* a0 = static_cast<const char*>(a.raw());
  const char* b0 = static_cast<const char*>(b.raw());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}
void vector_of(const char* fn, const CudaArray& a, const char* name, index_t len) {
  if (a.ndim() != 1 || a.shape[0] != len)
    fail_value(fn, std::string(name) + " has shape " + shape_str(a) + " but must be (" +
                       std::to_string(len) + ",)");
}
void nonempty_2d(const char* fn, const CudaArray& a, const char* name) {
  cuda_ndim_is(fn, a, name, 2);
  if (a.shape[0] == 0) fail_value(fn, std::string(name) + " has shape " + shape_str(a) + ": the batch is empty");
}

// ---- GEMM and dense ----------------------------------------------------------------------------

template <bool NAIVE>
CudaArray gemm_entry(py::handle a_o, py::handle b_o, py::handle out_o, bool trans_a, bool trans_b,
                     double alpha, double beta) {
  const char* fn = NAIVE ? "cuda_gemm_naive" : "cuda_gemm";
  CudaArray& a = cuda_f32(a_o, fn, "a");
  CudaArray& b = cuda_f32(b_o, fn, "b");
  cuda_ndim_is(fn, a, "a", 2);
  cuda_ndim_is(fn, b, "b", 2);
  const index_t m = trans_a ? a.shape[1] : a.shape[0], k = trans_a ? a.shape[0] : a.shape[1];
  const index_t kb = trans_b ? b.shape[1] : b.shape[0], n = trans_b ? b.shape[0] : b.shape[1];
  if (k != kb)
    fail_value(fn, "op(a) has shape " + dims(m, k) + " but op(b) has shape " + dims(kb, n) +
                       "; the inner dimensions must match (a " + shape_str(a) +
                       (trans_a ? " transposed" : "") + ", b " + shape_str(b) +
                       (trans_b ? " transposed" : "") + ")");
  CudaArray out;
  if (out_o.is_none()) {
    out = CudaArray::empty({m, n});
    beta = 0.0;  // a fresh output holds nothing to accumulate into
  } else {
    out = cuda_f32(out_o, fn, "out");
    cuda_matrix_is(fn, out, "out", m, n, " (the shape of op(a) op(b))");
    if (overlaps(out, a) || overlaps(out, b))
      fail_value(fn, "out shares memory with an input; pass a separate output array");
  }
  auto f = NAIVE ? &dc::gemm_naive : &dc::gemm;
  f(out.data<float>(), a.data<float>(), b.data<float>(), m, n, k, trans_a, trans_b, float(alpha),
    float(beta), dc::current_stream());
  return out;
}

py::tuple dense_forward(py::handle x_o, py::handle w_o, py::handle b_o,
                        const std::string& activation, double alpha, bool keep_z) {
  const char* fn = "cuda_dense_forward";
  CudaArray& x = cuda_f32(x_o, fn, "x");
  CudaArray& w = cuda_f32(w_o, fn, "w");
  cuda_ndim_is(fn, x, "x", 2);
  cuda_ndim_is(fn, w, "w", 2);
  const Act act = parse_activation(fn, activation);
  const index_t n = x.shape[0], in = w.shape[0], out = w.shape[1];
  if (x.shape[1] != in)
    fail_value(fn, "x has shape " + shape_str(x) + " but w expects " + std::to_string(in) +
                       " input features (w has shape " + shape_str(w) + ")");
  CudaArray* b = cuda_opt_f32(b_o, fn, "b");
  if (b && (b->ndim() != 1 || b->shape[0] != out))
    fail_value(fn, "b has shape " + shape_str(*b) + " but w has " + std::to_string(out) +
                       " output features; b must be (" + std::to_string(out) + ",)");
  keep_z = keep_z || act_needs_pre(act);  // the epilogue then writes z beside y
  CudaArray y = CudaArray::empty({n, out});
  CudaArray z = keep_z ? CudaArray::empty({n, out}) : CudaArray();
  dc::dense_forward(y.data<float>(), keep_z ? z.data<float>() : nullptr, x.data<float>(),
                    w.data<float>(), ptr(b), n, in, out, act, float(alpha), dc::current_stream());
  return py::make_tuple(y, keep_z ? py::cast(z) : py::object(py::none()));
}

py::object dense_backward(py::handle dy_o, py::handle x_o, py::handle w_o, py::handle z_o,
                          py::handle y_o, py::handle dw_o, py::handle db_o,
                          const std::string& activation, double alpha, bool need_dx) {
  const char* fn = "cuda_dense_backward";
  CudaArray& dy = cuda_f32(dy_o, fn, "dy");
  CudaArray& x = cuda_f32(x_o, fn, "x");
  CudaArray& w = cuda_f32(w_o, fn, "w");
  cuda_ndim_is(fn, dy, "dy", 2);
  cuda_ndim_is(fn, x, "x", 2);
  cuda_ndim_is(fn, w, "w", 2);
  const Act act = parse_activation(fn, activation);
  const index_t n = x.shape[0], in = w.shape[0], out = w.shape[1];
  if (x.shape[1] != in)
    fail_value(fn, "x has shape " + shape_str(x) + " but w expects " + std::to_string(in) +
                       " input features (w has shape " + shape_str(w) + ")");
  cuda_matrix_is(fn, dy, "dy", n, out, " (the layer output)");
  CudaArray* z = cuda_opt_f32(z_o, fn, "z");
  CudaArray* y = cuda_opt_f32(y_o, fn, "y");
  if (z) cuda_matrix_is(fn, *z, "z", n, out, " (the shape of dy)");
  if (y) cuda_matrix_is(fn, *y, "y", n, out, " (the shape of dy)");
  if (act_needs_pre(act) && !z)
    fail_value(fn, "activation '" + activation + "' needs z, the pre-activation that dense_forward returned");
  if (act != Act::identity && act != Act::step && !z && !y)
    fail_value(fn, "activation '" + activation + "' needs y (the layer output) or z");
  CudaArray& dw = cuda_f32(dw_o, fn, "dw");
  cuda_matrix_is(fn, dw, "dw", in, out, "; the gradient is accumulated into dw and must match w");
  CudaArray* db = cuda_opt_f32(db_o, fn, "db");
  if (db) vector_of(fn, *db, "db", out);
  for (const CudaArray* a : {&dy, &x, &w, z, y}) {
    if (a && (overlaps(dw, *a) || (db && overlaps(*db, *a))))
      fail_value(fn, "dw/db share memory with an input; pass separate gradient buffers");
  }
  CudaArray dx = need_dx ? CudaArray::empty({n, in}) : CudaArray();
  CudaArray work = act != Act::identity ? CudaArray::empty({n, out}) : CudaArray();
  dc::dense_backward(need_dx ? dx.data<float>() : nullptr, dw.data<float>(), ptr(db),
                     act != Act::identity ? work.data<float>() : nullptr, dy.data<float>(),
                     x.data<float>(), w.data<float>(), ptr(z), ptr(y), n, in, out, act,
                     float(alpha), dc::current_stream());
  return need_dx ? py::cast(dx) : py::object(py::none());
}

// ---- activations and softmax ---------------------------------------------------------------------

CudaArray act_forward(py::handle x_o, const std::string& activation, double alpha) {
  const char* fn = "cuda_act_forward";
  CudaArray& x = cuda_f32(x_o, fn, "x");
  const Act act = parse_activation(fn, activation);
  CudaArray y = CudaArray::empty_like(x);
  dc::act_forward(y.data<float>(), x.data<float>(), x.numel(), act, float(alpha), dc::current_stream());
  return y;
}

CudaArray act_backward(py::handle dy_o, py::handle z_o, py::handle y_o,
                       const std::string& activation, double alpha) {
  const char* fn = "cuda_act_backward";
  CudaArray& dy = cuda_f32(dy_o, fn, "dy");
  const Act act = parse_activation(fn, activation);
  CudaArray* z = cuda_opt_f32(z_o, fn, "z");
  CudaArray* y = cuda_opt_f32(y_o, fn, "y");
  if (z) cuda_same_shape(fn, dy, "dy", *z, "z");
  if (y) cuda_same_shape(fn, dy, "dy", *y, "y");
  if (act_needs_pre(act) && !z)
    fail_value(fn, "activation '" + activation + "' needs z (the pre-activation)");
  if (act != Act::identity && act != Act::step && !z && !y)
    fail_value(fn, "activation '" + activation + "' needs y (the output) or z");
  CudaArray dz = CudaArray::empty_like(dy);
  dc::act_backward(dz.data<float>(), dy.data<float>(), ptr(z), ptr(y), dy.numel(), act,
                   float(alpha), dc::current_stream());
  return dz;
}

CudaArray softmax_fwd(const char* fn, py::handle x_o, bool log) {
  CudaArray& x = cuda_f32(x_o, fn, "x");
  cuda_ndim_is(fn, x, "x", 2);
  CudaArray y = CudaArray::empty_like(x);
  dc::softmax(y.data<float>(), x.data<float>(), x.shape[0], x.shape[1], log, dc::current_stream());
  return y;
}

CudaArray softmax_bwd(const char* fn, py::handle dy_o, py::handle y_o, bool log) {
  CudaArray& dy = cuda_f32(dy_o, fn, "dy");
  CudaArray& y = cuda_f32(y_o, fn, "y");
  cuda_ndim_is(fn, y, "y", 2);
  cuda_same_shape(fn, dy, "dy", y, "y");
  CudaArray dx = CudaArray::empty_like(y);
  dc::softmax_backward(dx.data<float>(), dy.data<float>(), y.data<float>(), y.shape[0], y.shape[1],
                       log, dc::current_stream());
  return dx;
}

// ---- losses ------------------------------------------------------------------------------------

struct LossArgs {
  Loss kind;
  Reduction red;
  CudaArray* pred = nullptr;
  CudaArray* target = nullptr;  // float target, or int64 labels for cross_entropy
  index_t rows = 0, cols = 0;   // cross_entropy: logits (rows, cols); else rows * cols = numel
  index_t terms = 0;            // count of per-sample losses (the divisor of "mean")
  std::vector<index_t> terms_shape;
};

LossArgs loss_args(const char* fn, const std::string& kind, py::handle pred_o, py::handle target_o,
                   const std::string& reduction) {
  LossArgs L;
  if (!parse_loss(kind.c_str(), &L.kind))
    fail_value(fn, "unknown loss '" + kind + "'; valid kinds: " + loss_names());
  if (!parse_reduction(reduction.c_str(), &L.red))
    fail_value(fn, "unknown reduction '" + reduction + "'; valid reductions: " + reduction_names());
  L.pred = &cuda_f32(pred_o, fn, "pred");
  if (L.kind == Loss::cross_entropy) {
    cuda_ndim_is(fn, *L.pred, "pred", 2);
    L.rows = L.pred->shape[0];
    L.cols = L.pred->shape[1];
    if (L.rows == 0) fail_value(fn, "pred has shape " + shape_str(*L.pred) + ": the batch is empty");
    if (L.cols == 0) fail_value(fn, "pred has shape " + shape_str(*L.pred) + ": there are no classes");
    L.target = &cuda_arg(target_o, fn, "target");
    if (L.target->dtype != CDType::i64)
      fail_type(fn, std::string("target has dtype ") + dc::dtype_name(L.target->dtype) +
                        " but class labels must be int64");
    if (L.target->ndim() != 1 || L.target->shape[0] != L.rows)
      fail_value(fn, "target has shape " + shape_str(*L.target) + " but pred has shape " +
                         shape_str(*L.pred) + "; target must be (" + std::to_string(L.rows) +
                         ",) integer class labels");
    L.terms = L.rows;
    L.terms_shape = {L.rows};
  } else {
    L.target = &cuda_f32(target_o, fn, "target");
    cuda_same_shape(fn, *L.pred, "pred", *L.target, "target");
    if (L.pred->numel() == 0) fail_value(fn, "pred has shape " + shape_str(*L.pred) + ": the batch is empty");
    L.rows = L.pred->numel();
    L.cols = 1;
    L.terms = L.rows;
    L.terms_shape = L.pred->shape;
  }
  return L;
}

const std::int64_t* labels_of(const LossArgs& L) {
  return L.kind == Loss::cross_entropy ? L.target->data<std::int64_t>() : nullptr;
}
const float* ftarget_of(const LossArgs& L) {
  return L.kind == Loss::cross_entropy ? nullptr : L.target->data<float>();
}

py::object loss_forward(const std::string& kind, py::handle pred_o, py::handle target_o,
                        const std::string& reduction, bool sync) {
  const char* fn = "cuda_loss_forward";
  LossArgs L = loss_args(fn, kind, pred_o, target_o, reduction);
  cudaStream_t s = dc::current_stream();
  CudaArray terms = CudaArray::empty(L.terms_shape);
  // scratch: [0] the reduced loss (as double bits), [1] the first row with a bad label
  CudaArray scratch = CudaArray::empty({2}, CDType::i64);
  std::int64_t host[2] = {0, L.rows};
  const bool ce = L.kind == Loss::cross_entropy;
  if (ce) dc::memcpy_h2d(scratch.data<std::int64_t>() + 1, &host[1], sizeof(std::int64_t));
  dc::loss_terms(terms.data<float>(), scratch.data<std::int64_t>() + 1, L.kind, L.pred->data<float>(),
                 ftarget_of(L), labels_of(L), L.rows, L.cols, s);
  if (L.red != Reduction::none)
    dc::sum_to_double(reinterpret_cast<double*>(scratch.data<std::int64_t>()), terms.data<float>(),
                      L.terms, L.red == Reduction::mean ? 1.0 / double(L.terms) : 1.0, s);
  if (!sync) {
    // No host round trip: the reduced loss stays on the device as a 0-d float32 array, and the
    // labels are not checked here (the caller checked them; a bad label gives a NaN term,
    // never a read outside the logits).
    if (L.red == Reduction::none) return py::cast(terms);
    CudaArray out = CudaArray::empty({});
    dc::launch_cast(out.raw(), CDType::f32, scratch.raw(), CDType::f64, 1, s);
    return py::cast(out);
  }
  if (ce || L.red != Reduction::none) {
    dc::memcpy_d2h(host, scratch.raw(), sizeof(host));
    if (ce && host[1] < L.rows) {
      std::int64_t label = 0;
      dc::memcpy_d2h(&label, L.target->data<std::int64_t>() + host[1], sizeof(label));
      fail_value(fn, "target[" + std::to_string(host[1]) + "] = " + std::to_string(label) +
                         " is not a class index in [0, " + std::to_string(L.cols) + ")");
    }
  }
  if (L.red == Reduction::none) return py::cast(terms);
  double v;
  std::memcpy(&v, &host[0], sizeof(v));
  return py::float_(v);
}

CudaArray loss_backward(const std::string& kind, py::handle pred_o, py::handle target_o,
                        const std::string& reduction, py::handle grad_o) {
  const char* fn = "cuda_loss_backward";
  LossArgs L = loss_args(fn, kind, pred_o, target_o, reduction);
  CudaArray* g = nullptr;
  const float* gscalar = nullptr;
  double scale = 1.0;
  if (L.red == Reduction::none) {
    g = &cuda_f32(grad_o, fn, "grad");
    if (g->shape != L.terms_shape)
      fail_value(fn, "grad has shape " + shape_str(*g) + " but the per-sample losses have shape " +
                         CudaArray::shape_str(L.terms_shape));
  } else {
    if (py::isinstance<CudaArray>(grad_o)) {
      const CudaArray& ga = cuda_f32(grad_o, fn, "grad");
      if (ga.numel() != 1)
        fail_value(fn, "with reduction '" + reduction + "', grad must be a float or a "
                       "one-element float32 CudaArray (the loss's gradient), got shape " +
                       shape_str(ga));
      gscalar = ga.data<float>();
    } else {
      try {
        scale = py::cast<double>(grad_o);
      } catch (const py::cast_error&) {
        fail_type(fn, "with reduction '" + reduction + "', grad must be a float or a "
                      "one-element float32 CudaArray");
      }
    }
    if (L.red == Reduction::mean) scale /= double(L.terms);
  }
  CudaArray d = CudaArray::empty_like(*L.pred);
  // Labels were checked by cuda_loss_forward; a bad label here yields a NaN row, never a read
  // outside the logits.
  dc::loss_backward(d.data<float>(), L.kind, L.pred->data<float>(), ftarget_of(L), labels_of(L),
                    ptr(g), gscalar, float(scale), L.rows, L.cols, dc::current_stream());
  return d;
}

// ---- norms and in-place buffer ops ------------------------------------------------------------

py::tuple segment_norms(py::handle buf_o, py::handle offsets_o) {
  const char* fn = "cuda_segment_norms";
  CudaArray& buf = cuda_f32(buf_o, fn, "buf");
  if (py::isinstance<CudaArray>(offsets_o))
    fail_type(fn, "offsets must be a numpy integer array (host), not a CudaArray");
  auto off = int_labels(offsets_o, fn, "offsets");
  if (off.ndim() != 1 || off.shape(0) < 1)
    fail_value(fn, "offsets must be 1-D with S+1 >= 1 entries (segment starts, then buf.size), got shape " +
                       dg::bind::shape_str(off));
  const index_t S = off.shape(0) - 1;
  const std::int64_t* o = off.data();
  if (o[0] != 0) fail_value(fn, "offsets[0] must be 0, got " + std::to_string(o[0]));
  for (index_t s = 0; s < S; ++s)
    if (o[s + 1] < o[s])
      fail_value(fn, "offsets must be non-decreasing, but offsets[" + std::to_string(s + 1) + "] = " +
                         std::to_string(o[s + 1]) + " < offsets[" + std::to_string(s) + "] = " +
                         std::to_string(o[s]));
  const index_t n = buf.numel();
  if (o[S] != n)
    fail_value(fn, "offsets[-1] = " + std::to_string(o[S]) + " but buf has " + std::to_string(n) +
                       " elements; the last offset must equal buf.size");
  py::array_t<double> norms(S);
  double total = 0.0;
  std::int64_t nonfinite = 0;
  dc::segment_norms_host(norms.mutable_data(), &total, &nonfinite, buf.data<float>(), o, n, S,
                         dc::current_stream());
  return py::make_tuple(norms, total, nonfinite);
}

// ---- optimizers -------------------------------------------------------------------------------

CudaArray& state_arg(const char* fn, py::handle o, const char* name, const CudaArray& param) {
  if (o.is_none()) fail_value(fn, std::string(name) + " is None but this configuration needs it");
  CudaArray& a = cuda_f32(o, fn, name);
  cuda_same_shape(fn, param, "param", a, name);
  return a;
}

void sgd_step(py::handle param_o, py::handle grad_o, py::handle buf_o, double lr, double momentum,
              double dampening, bool nesterov, double weight_decay, bool first_step) {
  const char* fn = "cuda_sgd_step";
  check_sgd_hyper(fn, lr, momentum, dampening, nesterov, weight_decay);
  CudaArray& param = cuda_f32(param_o, fn, "param");
  CudaArray& grad = state_arg(fn, grad_o, "grad", param);
  CudaArray* buf = momentum != 0 ? &state_arg(fn, buf_o, "momentum_buf", param) : nullptr;
  const SgdHyper<float> h{float(lr), float(momentum), float(dampening), float(weight_decay),
                          nesterov, first_step};
  dc::sgd_step(param.data<float>(), ptr(buf), grad.data<float>(), param.numel(), h, dc::current_stream());
}

void adam_step(py::handle param_o, py::handle grad_o, py::handle m_o, py::handle v_o,
               long long step, double lr, double beta1, double beta2, double eps,
               double weight_decay, bool decoupled) {
  const char* fn = "cuda_adam_step";
  check_adam_hyper(fn, step, lr, beta1, beta2, eps, weight_decay);
  CudaArray& param = cuda_f32(param_o, fn, "param");
  CudaArray& grad = state_arg(fn, grad_o, "grad", param);
  CudaArray& m = state_arg(fn, m_o, "m", param);
  CudaArray& v = state_arg(fn, v_o, "v", param);
  const AdamHyper<float> h = make_adam_hyper<float>(lr, beta1, beta2, eps, weight_decay, step, decoupled);
  dc::adam_step(param.data<float>(), m.data<float>(), v.data<float>(), grad.data<float>(),
                param.numel(), h, dc::current_stream());
}

void rmsprop_step(py::handle param_o, py::handle grad_o, py::handle sq_o, double lr, double alpha,
                  double eps, double weight_decay, double momentum, py::handle buf_o, bool centered,
                  py::handle ga_o) {
  const char* fn = "cuda_rmsprop_step";
  check_rmsprop_hyper(fn, lr, alpha, eps, weight_decay, momentum);
  CudaArray& param = cuda_f32(param_o, fn, "param");
  CudaArray& grad = state_arg(fn, grad_o, "grad", param);
  CudaArray& sq = state_arg(fn, sq_o, "square_avg", param);
  CudaArray* buf = momentum > 0 ? &state_arg(fn, buf_o, "momentum_buf", param) : nullptr;
  CudaArray* ga = centered ? &state_arg(fn, ga_o, "grad_avg", param) : nullptr;
  const RmspropHyper<float> h{float(lr), float(alpha), float(eps), float(weight_decay),
                              float(momentum), centered};
  dc::rmsprop_step(param.data<float>(), sq.data<float>(), ptr(buf), ptr(ga), grad.data<float>(),
                   param.numel(), h, dc::current_stream());
}

// ---- batch norm and layer norm ----------------------------------------------------------------

CudaArray* opt_vec(py::handle o, const char* fn, const char* name, index_t len) {
  CudaArray* a = cuda_opt_f32(o, fn, name);
  if (a) vector_of(fn, *a, name, len);
  return a;
}

py::tuple batch_norm_forward(py::handle x_o, py::handle gamma_o, py::handle beta_o,
                             py::handle rm_o, py::handle rv_o, bool training, double momentum,
                             double eps) {
  const char* fn = "cuda_batch_norm_forward";
  CudaArray& x = cuda_f32(x_o, fn, "x");
  nonempty_2d(fn, x, "x");
  const index_t n = x.shape[0], c = x.shape[1];
  CudaArray* gamma = opt_vec(gamma_o, fn, "gamma", c);
  CudaArray* beta = opt_vec(beta_o, fn, "beta", c);
  CudaArray* rm = opt_vec(rm_o, fn, "running_mean", c);
  CudaArray* rv = opt_vec(rv_o, fn, "running_var", c);
  if (!(eps > 0)) fail_value(fn, "eps must be > 0, got " + std::to_string(eps));
  if (!training && (!rm || !rv))
    fail_value(fn, "evaluation mode (training=False) needs running_mean and running_var");
  if (training && n < 2)
    fail_value(fn, "x has shape " + shape_str(x) + ": batch statistics need more than 1 row per channel in training");
  CudaArray y = CudaArray::empty_like(x);
  CudaArray mean = CudaArray::empty({c}), invstd = CudaArray::empty({c});
  dc::batch_norm_forward(y.data<float>(), mean.data<float>(), invstd.data<float>(), ptr(rm), ptr(rv),
                         x.data<float>(), ptr(gamma), ptr(beta), n, c, float(eps), float(momentum),
                         training, dc::current_stream());
  return py::make_tuple(y, mean, invstd);
}

py::object batch_norm_backward(py::handle dy_o, py::handle x_o, py::handle gamma_o,
                               py::handle mean_o, py::handle invstd_o, py::handle dgamma_o,
                               py::handle dbeta_o, bool training, bool need_dx) {
  const char* fn = "cuda_batch_norm_backward";
  CudaArray& x = cuda_f32(x_o, fn, "x");
  nonempty_2d(fn, x, "x");
  CudaArray& dy = cuda_f32(dy_o, fn, "dy");
  cuda_same_shape(fn, x, "x", dy, "dy");
  const index_t n = x.shape[0], c = x.shape[1];
  CudaArray* gamma = opt_vec(gamma_o, fn, "gamma", c);
  CudaArray& mean = cuda_f32(mean_o, fn, "save_mean");
  CudaArray& invstd = cuda_f32(invstd_o, fn, "save_invstd");
  vector_of(fn, mean, "save_mean", c);
  vector_of(fn, invstd, "save_invstd", c);
  CudaArray* dgamma = opt_vec(dgamma_o, fn, "dgamma", c);
  CudaArray* dbeta = opt_vec(dbeta_o, fn, "dbeta", c);
  CudaArray dx = need_dx ? CudaArray::empty_like(x) : CudaArray();
  dc::batch_norm_backward(need_dx ? dx.data<float>() : nullptr, ptr(dgamma), ptr(dbeta),
                          dy.data<float>(), x.data<float>(), ptr(gamma), mean.data<float>(),
                          invstd.data<float>(), n, c, training, dc::current_stream());
  return need_dx ? py::cast(dx) : py::object(py::none());
}

py::tuple layer_norm_forward(py::handle x_o, py::handle gamma_o, py::handle beta_o, double eps) {
  const char* fn = "cuda_layer_norm_forward";
  CudaArray& x = cuda_f32(x_o, fn, "x");
  nonempty_2d(fn, x, "x");
  const index_t n = x.shape[0], d = x.shape[1];
  if (d == 0) fail_value(fn, "x has shape " + shape_str(x) + ": there are no features to normalize");
  if (!(eps > 0)) fail_value(fn, "eps must be > 0, got " + std::to_string(eps));
  CudaArray* gamma = opt_vec(gamma_o, fn, "gamma", d);
  CudaArray* beta = opt_vec(beta_o, fn, "beta", d);
  CudaArray y = CudaArray::empty_like(x);
  CudaArray mean = CudaArray::empty({n}), invstd = CudaArray::empty({n});
  dc::layer_norm_forward(y.data<float>(), mean.data<float>(), invstd.data<float>(), x.data<float>(),
                         ptr(gamma), ptr(beta), n, d, float(eps), dc::current_stream());
  return py::make_tuple(y, mean, invstd);
}

py::object layer_norm_backward(py::handle dy_o, py::handle x_o, py::handle gamma_o,
                               py::handle mean_o, py::handle invstd_o, py::handle dgamma_o,
                               py::handle dbeta_o, bool need_dx) {
  const char* fn = "cuda_layer_norm_backward";
  CudaArray& x = cuda_f32(x_o, fn, "x");
  nonempty_2d(fn, x, "x");
  CudaArray& dy = cuda_f32(dy_o, fn, "dy");
  cuda_same_shape(fn, x, "x", dy, "dy");
  const index_t n = x.shape[0], d = x.shape[1];
  CudaArray* gamma = opt_vec(gamma_o, fn, "gamma", d);
  CudaArray& mean = cuda_f32(mean_o, fn, "save_mean");
  CudaArray& invstd = cuda_f32(invstd_o, fn, "save_invstd");
  vector_of(fn, mean, "save_mean", n);
  vector_of(fn, invstd, "save_invstd", n);
  CudaArray* dgamma = opt_vec(dgamma_o, fn, "dgamma", d);
  CudaArray* dbeta = opt_vec(dbeta_o, fn, "dbeta", d);
  CudaArray dx = need_dx ? CudaArray::empty_like(x) : CudaArray();
  dc::layer_norm_backward(need_dx ? dx.data<float>() : nullptr, ptr(dgamma), ptr(dbeta),
                          dy.data<float>(), x.data<float>(), ptr(gamma), mean.data<float>(),
                          invstd.data<float>(), n, d, dc::current_stream());
  return need_dx ? py::cast(dx) : py::object(py::none());
}

void bind_cuda_kernels(py::module_& m) {
  m.def("cuda_gemm", &gemm_entry<false>, py::arg("a"), py::arg("b"), py::arg("out") = py::none(),
        py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("alpha") = 1.0,
        py::arg("beta") = 0.0, "out = alpha op(a) op(b) + beta out on CUDA (float32).");
  m.def("cuda_gemm_naive", &gemm_entry<true>, py::arg("a"), py::arg("b"), py::arg("out") = py::none(),
        py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("alpha") = 1.0,
        py::arg("beta") = 0.0, "The reference CUDA GEMM (one thread per output).");
  m.def("cuda_dense_forward", &dense_forward, py::arg("x"), py::arg("w"), py::arg("b"),
        py::arg("activation") = "identity", py::arg("alpha") = 0.01, py::arg("keep_z") = false,
        "(y, z) with y = act(x w + b); z (the pre-activation) is None when the activation's "
        "derivative needs only y and keep_z is false.");
  m.def("cuda_dense_backward", &dense_backward, py::arg("dy"), py::arg("x"), py::arg("w"),
        py::arg("z"), py::arg("y"), py::arg("dw"), py::arg("db"),
        py::arg("activation") = "identity", py::arg("alpha") = 0.01, py::arg("need_dx") = true,
        "Accumulates into dw and db; returns dx (or None when need_dx is False).");
  m.def("cuda_act_forward", &act_forward, py::arg("x"), py::arg("activation"), py::arg("alpha") = 0.01);
  m.def("cuda_act_backward", &act_backward, py::arg("dy"), py::arg("z"), py::arg("y"),
        py::arg("activation"), py::arg("alpha") = 0.01);
  m.def("cuda_softmax", [](py::handle x) { return softmax_fwd("cuda_softmax", x, false); }, py::arg("x"));
  m.def("cuda_log_softmax", [](py::handle x) { return softmax_fwd("cuda_log_softmax", x, true); },
        py::arg("x"));
  m.def("cuda_softmax_backward",
        [](py::handle dy, py::handle y) { return softmax_bwd("cuda_softmax_backward", dy, y, false); },
        py::arg("dy"), py::arg("y"));
  m.def("cuda_log_softmax_backward",
        [](py::handle dy, py::handle y) { return softmax_bwd("cuda_log_softmax_backward", dy, y, true); },
        py::arg("dy"), py::arg("y"));
  m.def("cuda_loss_forward", &loss_forward, py::arg("kind"), py::arg("pred"), py::arg("target"),
        py::arg("reduction") = "mean", py::arg("sync") = true);
  m.def("cuda_loss_backward", &loss_backward, py::arg("kind"), py::arg("pred"), py::arg("target"),
        py::arg("reduction"), py::arg("grad"));
  m.def("cuda_segment_norms", &segment_norms, py::arg("buf"), py::arg("offsets"),
        "(per-segment L2 norms float64, global norm, non-finite count); deterministic.");
  m.def("cuda_scale_", [](py::handle b, double f) {
    CudaArray& buf = cuda_f32(b, "cuda_scale_", "buf");
    dc::scale_(buf.data<float>(), buf.numel(), float(f), dc::current_stream());
  }, py::arg("buf"), py::arg("factor"));
  m.def("cuda_clip_value_", [](py::handle b, double clip) {
    if (!(clip >= 0)) fail_value("cuda_clip_value_", "clip must be >= 0, got " + std::to_string(clip));
    CudaArray& buf = cuda_f32(b, "cuda_clip_value_", "buf");
    dc::clip_value_(buf.data<float>(), buf.numel(), float(clip), dc::current_stream());
  }, py::arg("buf"), py::arg("clip"));
  m.def("cuda_fill_", [](py::handle b, double v) {
    CudaArray& buf = cuda_f32(b, "cuda_fill_", "buf");
    dc::fill_(buf.data<float>(), buf.numel(), float(v), dc::current_stream());
  }, py::arg("buf"), py::arg("value"));
  m.def("cuda_sgd_step", &sgd_step, py::arg("param"), py::arg("grad"), py::arg("momentum_buf"),
        py::arg("lr"), py::arg("momentum") = 0.0, py::arg("dampening") = 0.0,
        py::arg("nesterov") = false, py::arg("weight_decay") = 0.0, py::arg("first_step") = false);
  m.def("cuda_adam_step", &adam_step, py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"),
        py::arg("step"), py::arg("lr") = 1e-3, py::arg("beta1") = 0.9, py::arg("beta2") = 0.999,
        py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0, py::arg("decoupled") = false);
  m.def("cuda_rmsprop_step", &rmsprop_step, py::arg("param"), py::arg("grad"), py::arg("square_avg"),
        py::arg("lr") = 1e-2, py::arg("alpha") = 0.99, py::arg("eps") = 1e-8,
        py::arg("weight_decay") = 0.0, py::arg("momentum") = 0.0,
        py::arg("momentum_buf") = py::none(), py::arg("centered") = false,
        py::arg("grad_avg") = py::none());
  m.def("cuda_batch_norm_forward", &batch_norm_forward, py::arg("x"), py::arg("gamma"),
        py::arg("beta"), py::arg("running_mean"), py::arg("running_var"), py::arg("training"),
        py::arg("momentum") = 0.1, py::arg("eps") = 1e-5);
  m.def("cuda_batch_norm_backward", &batch_norm_backward, py::arg("dy"), py::arg("x"),
        py::arg("gamma"), py::arg("save_mean"), py::arg("save_invstd"), py::arg("dgamma"),
        py::arg("dbeta"), py::arg("training") = true, py::arg("need_dx") = true);
  m.def("cuda_layer_norm_forward", &layer_norm_forward, py::arg("x"), py::arg("gamma"),
        py::arg("beta"), py::arg("eps") = 1e-5);
  m.def("cuda_layer_norm_backward", &layer_norm_backward, py::arg("dy"), py::arg("x"),
        py::arg("gamma"), py::arg("save_mean"), py::arg("save_invstd"), py::arg("dgamma"),
        py::arg("dbeta"), py::arg("need_dx") = true);
}

DG_REGISTER_BINDINGS(bind_cuda_kernels);

}  // namespace
}  // namespace dg::bind
#endif  // DG_HAVE_CUDA
