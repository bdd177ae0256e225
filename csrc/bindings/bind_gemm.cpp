// Checked entry points for GEMM and the fused dense layer (csrc/cpu/gemm.cpp, csrc/cpu/dense.cpp).
#include "bindings/check.h"
#include "bindings/registry.h"
#include "deepgrad/gemm.h"
#include "deepgrad/layer_stats.h"

#include <type_traits>

namespace dg::bind {
namespace {

py::array new_matrix(const py::array& like, py::ssize_t rows, py::ssize_t cols) {
  return py::array(like.dtype(), std::vector<py::ssize_t>{rows, cols});
}

std::string dims(py::ssize_t r, py::ssize_t c) {
  return "(" + std::to_string(r) + ", " + std::to_string(c) + ")";
}

// True when the byte ranges of a and b overlap (an output that aliases an input).
bool overlaps(const py::array& a, const py::array& b) {
  if (a.nbytes() == 0 || b.nbytes() == 0) return false;
  const char* a0 = static_cast<const char*>(a.data());
  const char* b0 = static_cast<const char*>(b.data());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

// The optional layer statistics record (deepgrad/layer_stats.h): None, or a writeable C-contiguous
// float64 array of at least layer_stats::kSize elements. Returns its data (null for None).
double* stats_record(const char* fn, py::handle o) {
  if (o.is_none()) return nullptr;
  // Read straight from the array object (this runs on every recorded layer call): a numpy
  // array, float64, 1-D with at least kSize elements, C-contiguous and writeable.
  namespace pd = py::detail;
  if (py::isinstance<py::array>(o)) {
    const pd::PyArray_Proxy* a = pd::array_proxy(o.ptr());
    const int type_num = pd::array_descriptor_proxy(a->descr)->type_num;
    const int need = pd::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | pd::npy_api::NPY_ARRAY_WRITEABLE_;
    if (type_num == pd::npy_api::NPY_DOUBLE_ && a->nd == 1 &&
        a->dimensions[0] >= layer_stats::kSize && (a->flags & need) == need)
      return reinterpret_cast<double*>(a->data);
    py::array arr = py::reinterpret_borrow<py::array>(o);
    fail_value(fn, "stats must be a writeable contiguous float64 array of " +
                       std::to_string(int(layer_stats::kSize)) + " elements (a layer statistics "
                       "record), got dtype " + dtype_str(arr) + " shape " + shape_str(arr));
  }
  fail_type(fn, std::string("stats must be None or a float64 numpy array, got ") +
                    std::string(py::str(py::type::of(o).attr("__name__"))));
}

const char* isa_name(GemmIsa isa) {
  return isa == GemmIsa::avx512 ? "avx512" : isa == GemmIsa::avx2 ? "avx2" : "portable";
}

void need_isa(const char* fn, GemmIsa isa) {
  if (!gemm_isa_available(isa))
    fail_value(fn, std::string("this CPU (or this build) has no ") + isa_name(isa) +
                       " micro-kernel; deepgrad._C._gemm_isas() lists the available ones");
}

template <class T, GemmIsa I>
void gemm_isa_fn(T* c, const T* a, const T* b, index_t m, index_t n, index_t k, index_t lda,
                 index_t ldb, index_t ldc, bool ta, bool tb, T alpha, T beta) {
  gemm_with_isa(I, c, a, b, m, n, k, lda, ldb, ldc, ta, tb, alpha, beta);
}

template <class T>
using GemmFn = void (*)(T*, const T*, const T*, index_t, index_t, index_t, index_t, index_t,
                        index_t, bool, bool, T, T);

// gemm(a, b, out=None, trans_a=False, trans_b=False, alpha=1.0, beta=0.0) -> out
template <GemmFn<float> F32, GemmFn<double> F64>
py::array gemm_entry(const char* fn, py::handle a_o, py::handle b_o, py::handle out_o,
                     bool trans_a, bool trans_b, double alpha, double beta) {
  py::array a = float_input(a_o, fn, "a");
  py::array b = float_input(b_o, fn, "b");
  ndim_is(fn, a, "a", 2);
  ndim_is(fn, b, "b", 2);
  same_dtype(fn, a, "a", b, "b");
  const py::ssize_t m = trans_a ? a.shape(1) : a.shape(0), k = trans_a ? a.shape(0) : a.shape(1);
  const py::ssize_t kb = trans_b ? b.shape(1) : b.shape(0), n = trans_b ? b.shape(0) : b.shape(1);
  if (k != kb)
    fail_value(fn, std::string("op(a) has shape ") + dims(m, k) + " but op(b) has shape " +
                       dims(kb, n) + "; the inner dimensions must match (a " + shape_str(a) +
                       (trans_a ? " transposed" : "") + ", b " + shape_str(b) +
                       (trans_b ? " transposed" : "") + ")");
  py::array out;
  if (out_o.is_none()) {
    out = new_matrix(a, m, n);
    beta = 0.0;  // a fresh output holds nothing to accumulate into
  } else {
    out = float_output(out_o, fn, "out");
    same_dtype(fn, a, "a", out, "out");
    if (out.ndim() != 2 || out.shape(0) != m || out.shape(1) != n)
      fail_value(fn, "out has shape " + shape_str(out) + " but op(a) op(b) has shape " +
                         dims(m, n));
    if (overlaps(out, a) || overlaps(out, b))
      fail_value(fn, "out shares memory with an input; pass a separate output array");
  }
  const index_t lda = a.shape(1), ldb = b.shape(1);
  dispatch_float(a, [&](auto tag) {
    using T = decltype(tag);
    T* c = data_of<T>(out);
    const T* pa = cdata_of<T>(a);
    const T* pb = cdata_of<T>(b);
    py::gil_scoped_release nogil;
    if constexpr (std::is_same_v<T, float>)
      F32(c, pa, pb, m, n, k, lda, ldb, n, trans_a, trans_b, float(alpha), float(beta));
    else
      F64(c, pa, pb, m, n, k, lda, ldb, n, trans_a, trans_b, alpha, beta);
  });
  return out;
}

py::tuple dense_forward_entry(py::handle x_o, py::handle w_o, py::handle b_o,
                              const std::string& activation, double alpha, bool keep_z,
                              py::handle stats_o) {
  const char* fn = "dense_forward";
  double* stats = stats_record(fn, stats_o);
  py::array x = float_input(x_o, fn, "x");
  py::array w = float_input(w_o, fn, "w");
  ndim_is(fn, x, "x", 2);
  ndim_is(fn, w, "w", 2);
  same_dtype(fn, x, "x", w, "w");
  const Act act = parse_activation(fn, activation);
  const py::ssize_t n = x.shape(0), in = w.shape(0), out = w.shape(1);
  if (x.shape(1) != in)
    fail_value(fn, "x has shape " + shape_str(x) + " but w expects " + std::to_string(in) +
                       " input features (w has shape " + shape_str(w) + ")");
  py::array b;
  const bool has_b = !b_o.is_none();
  if (has_b) {
    b = float_input(b_o, fn, "b");
    same_dtype(fn, x, "x", b, "b");
    if (b.ndim() != 1 || b.shape(0) != out)
      fail_value(fn, "b has shape " + shape_str(b) + " but w has " + std::to_string(out) +
                         " output features; b must be (" + std::to_string(out) + ",)");
  }
  keep_z = keep_z || act_needs_pre(act);  // the GEMM then writes z, the epilogue reads it
  py::array y = new_matrix(x, n, out);
  py::array z = keep_z ? new_matrix(x, n, out) : py::array();
  dispatch_float(x, [&](auto tag) {
    using T = decltype(tag);
    T* py_ = data_of<T>(y);
    T* pz = keep_z ? data_of<T>(z) : nullptr;
    const T* pb = has_b ? cdata_of<T>(b) : nullptr;
    const T* px = cdata_of<T>(x);
    const T* pw = cdata_of<T>(w);
    py::gil_scoped_release nogil;
    dense_forward<T>(py_, pz, px, pw, pb, n, in, out, act, T(alpha), stats);
  });
  return py::make_tuple(y, keep_z ? py::object(z) : py::object(py::none()));
}

py::object dense_backward_entry(py::handle dy_o, py::handle x_o, py::handle w_o, py::handle z_o,
                                py::handle y_o, py::handle dw_o, py::handle db_o,
                                const std::string& activation, double alpha, bool need_dx,
                                py::handle stats_o) {
  const char* fn = "dense_backward";
  double* stats = stats_record(fn, stats_o);
  py::array dy = float_input(dy_o, fn, "dy");
  py::array x = float_input(x_o, fn, "x");
  py::array w = float_input(w_o, fn, "w");
  ndim_is(fn, dy, "dy", 2);
  ndim_is(fn, x, "x", 2);
  ndim_is(fn, w, "w", 2);
  same_dtype(fn, x, "x", w, "w");
  same_dtype(fn, x, "x", dy, "dy");
  const Act act = parse_activation(fn, activation);
  const py::ssize_t n = x.shape(0), in = w.shape(0), out = w.shape(1);
  if (x.shape(1) != in)
    fail_value(fn, "x has shape " + shape_str(x) + " but w expects " + std::to_string(in) +
                       " input features (w has shape " + shape_str(w) + ")");
  if (dy.shape(0) != n || dy.shape(1) != out)
    fail_value(fn, "dy has shape " + shape_str(dy) + " but the layer output is " + dims(n, out) +
                       " (x " + shape_str(x) + ", w " + shape_str(w) + ")");
  auto activation_input = [&](py::handle o, const char* name) {
    py::array a = float_input(o, fn, name);
    same_dtype(fn, x, "x", a, name);
    if (a.ndim() != 2 || a.shape(0) != n || a.shape(1) != out)
      fail_value(fn, std::string(name) + " has shape " + shape_str(a) + " but dy has shape " +
                         shape_str(dy) + "; they must match");
    return a;
  };
  py::array z, y;
  const bool has_z = !z_o.is_none(), has_y = !y_o.is_none();
  if (has_z) z = activation_input(z_o, "z");
  if (has_y) y = activation_input(y_o, "y");
  if (act_needs_pre(act) && !has_z)
    fail_value(fn, "activation '" + activation +
                       "' needs z, the pre-activation that dense_forward returned");
  if (act != Act::identity && act != Act::step && !has_z && !has_y)
    fail_value(fn, "activation '" + activation + "' needs y (the layer output) or z");
  py::array dw = float_output(dw_o, fn, "dw");
  same_dtype(fn, x, "x", dw, "dw");
  if (dw.ndim() != 2 || dw.shape(0) != in || dw.shape(1) != out)
    fail_value(fn, "dw has shape " + shape_str(dw) + " but w has shape " + shape_str(w) +
                       "; the gradient is accumulated into dw and must match w");
  py::array db;
  const bool has_db = !db_o.is_none();
  if (has_db) {
    db = float_output(db_o, fn, "db");
    same_dtype(fn, x, "x", db, "db");
    if (db.ndim() != 1 || db.shape(0) != out)
      fail_value(fn, "db has shape " + shape_str(db) + " but the layer has " + std::to_string(out) +
                         " outputs; db must be (" + std::to_string(out) + ",)");
  }
  for (const py::array* in_arr : {&dy, &x, &w, &z, &y}) {  // z, y may be empty arrays
    if (overlaps(dw, *in_arr) || (has_db && overlaps(db, *in_arr)))
      fail_value(fn, "dw/db share memory with an input; pass separate gradient buffers");
  }
  py::array dx = need_dx ? new_matrix(x, n, in) : py::array();
  dispatch_float(x, [&](auto tag) {
    using T = decltype(tag);
    T* pdx = need_dx ? data_of<T>(dx) : nullptr;
    T* pdw = data_of<T>(dw);
    T* pdb = has_db ? data_of<T>(db) : nullptr;
    const T* pz = has_z ? cdata_of<T>(z) : nullptr;
    const T* pyy = has_y ? cdata_of<T>(y) : nullptr;
    const T* pdy = cdata_of<T>(dy);
    const T* px = cdata_of<T>(x);
    const T* pw = cdata_of<T>(w);
    py::gil_scoped_release nogil;
    dense_backward<T>(pdx, pdw, pdb, pdy, px, pw, pz, pyy, n, in, out, act, T(alpha), stats);
  });
  return need_dx ? py::object(dx) : py::object(py::none());
}

// A chain of dense layers in one call each way (nn.Sequential's runs of Dense layers, through
// ops.linalg.dense_stack): each layer through the checked single-layer entry above, so every
// check, kernel call and result is the per-layer call's; what the chain saves is the Python and
// the binding dispatch per layer. Lists of one length: ws, bs (None: no bias), activations,
// alphas, stats (None or a record). Layers before `keep_from` keep nothing (None in the result);
// the others give (y, z). The result is a list of n entries; the last layer's y is the output.
// Entry i of a chain's activations (a str) or alphas (a real number), or a TypeError naming it.
std::string chain_act(const char* fn, const py::sequence& acts, py::ssize_t i) {
  py::object a = acts[i];
  if (!py::isinstance<py::str>(a))
    fail_type(fn, "activations[" + std::to_string(i) + "] must be an activation name (str), got " +
                      std::string(py::str(py::type::of(a).attr("__name__"))));
  return a.cast<std::string>();
}
double chain_alpha(const char* fn, const py::sequence& alphas, py::ssize_t i) {
  py::object a = alphas[i];
  if (!py::isinstance<py::float_>(a) && !py::isinstance<py::int_>(a))
    fail_type(fn, "alphas[" + std::to_string(i) + "] must be a real number, got " +
                      std::string(py::str(py::type::of(a).attr("__name__"))));
  return a.cast<double>();
}

py::list dense_chain_forward_entry(py::handle x, py::sequence ws, py::sequence bs,
                                   py::sequence acts, py::sequence alphas, py::sequence stats,
                                   py::ssize_t keep_from) {
  const char* fn = "dense_chain_forward";
  const py::ssize_t n = static_cast<py::ssize_t>(ws.size());
  if (n == 0) fail_value(fn, "the chain has no layers");
  if (static_cast<py::ssize_t>(bs.size()) != n || static_cast<py::ssize_t>(acts.size()) != n ||
      static_cast<py::ssize_t>(alphas.size()) != n || static_cast<py::ssize_t>(stats.size()) != n)
    fail_value(fn, "ws, bs, activations, alphas and stats must have one entry per layer");
  py::list out(n);
  py::object h = py::reinterpret_borrow<py::object>(x);
  for (py::ssize_t i = 0; i < n; ++i) {
    py::tuple yz = dense_forward_entry(h, ws[i], bs[i], chain_act(fn, acts, i),
                                       chain_alpha(fn, alphas, i), false, stats[i]);
    h = yz[0];
    out[i] = (i >= keep_from || i == n - 1) ? py::object(yz) : py::object(py::none());
  }
  return out;
}

// The chain's backward from the last layer down to layer k: layer i's dense_backward with dy the
// gradient from layer i + 1 (g for the last), its input xs[i], zs[i], ys[i] as the forward gave
// them, accumulating into dws[i], dbs[i]; dx is taken for every layer above k, and for layer k
// when need_dx. Returns layer k's dx (None without need_dx). Lists indexed by layer (entries
// below k are not read).
py::object dense_chain_backward_entry(py::handle g, py::sequence xs, py::sequence ws,
                                      py::sequence zs, py::sequence ys, py::sequence dws,
                                      py::sequence dbs, py::sequence acts, py::sequence alphas,
                                      py::sequence stats, py::ssize_t k, bool need_dx) {
  const char* fn = "dense_chain_backward";
  const py::ssize_t n = static_cast<py::ssize_t>(ws.size());
  for (const py::sequence* l : {&xs, &zs, &ys, &dws, &dbs, &acts, &alphas, &stats})
    if (static_cast<py::ssize_t>(l->size()) != n)
      fail_value(fn, "xs, ws, zs, ys, dws, dbs, activations, alphas and stats must have one "
                     "entry per layer");
  if (k < 0 || k >= n) fail_value(fn, "k must be a layer index in [0, " + std::to_string(n) + ")");
  py::object dy = py::reinterpret_borrow<py::object>(g);
  for (py::ssize_t i = n - 1; i >= k; --i)
    dy = dense_backward_entry(dy, xs[i], ws[i], zs[i], ys[i], dws[i], dbs[i],
                              chain_act(fn, acts, i), chain_alpha(fn, alphas, i),
                              i > k || need_dx, stats[i]);
  return dy;
}

void bind_gemm(py::module_& m) {
  m.def(
      "gemm",
      [](py::handle a, py::handle b, py::handle out, bool ta, bool tb, double alpha, double beta) {
        return gemm_entry<&gemm<float>, &gemm<double>>("gemm", a, b, out, ta, tb, alpha, beta);
      },
      py::arg("a"), py::arg("b"), py::arg("out") = py::none(), py::arg("trans_a") = false,
      py::arg("trans_b") = false, py::arg("alpha") = 1.0, py::arg("beta") = 0.0,
      "out (M,N) = alpha * op(a) @ op(b) + beta * out; op transposes when trans_a/trans_b. "
      "With out=None a new array is returned (beta is then irrelevant).");
  m.def(
      "gemm_naive",
      [](py::handle a, py::handle b, py::handle out, bool ta, bool tb, double alpha, double beta) {
        return gemm_entry<&gemm_naive<float>, &gemm_naive<double>>("gemm_naive", a, b, out, ta,
                                                                    tb, alpha, beta);
      },
      py::arg("a"), py::arg("b"), py::arg("out") = py::none(), py::arg("trans_a") = false,
      py::arg("trans_b") = false, py::arg("alpha") = 1.0, py::arg("beta") = 0.0,
      "The reference triple-loop GEMM (same contract as gemm).");
  m.def(
      "_gemm_portable",
      [](py::handle a, py::handle b, py::handle out, bool ta, bool tb, double alpha, double beta) {
        return gemm_entry<&gemm_portable<float>, &gemm_portable<double>>(
            "_gemm_portable", a, b, out, ta, tb, alpha, beta);
      },
      py::arg("a"), py::arg("b"), py::arg("out") = py::none(), py::arg("trans_a") = false,
      py::arg("trans_b") = false, py::arg("alpha") = 1.0, py::arg("beta") = 0.0,
      "The blocked GEMM with the portable micro-kernel (for tests).");
  m.def(
      "_gemm_avx2",
      [](py::handle a, py::handle b, py::handle out, bool ta, bool tb, double alpha, double beta) {
        need_isa("_gemm_avx2", GemmIsa::avx2);
        return gemm_entry<&gemm_isa_fn<float, GemmIsa::avx2>, &gemm_isa_fn<double, GemmIsa::avx2>>(
            "_gemm_avx2", a, b, out, ta, tb, alpha, beta);
      },
      py::arg("a"), py::arg("b"), py::arg("out") = py::none(), py::arg("trans_a") = false,
      py::arg("trans_b") = false, py::arg("alpha") = 1.0, py::arg("beta") = 0.0,
      "The blocked GEMM with the AVX2/FMA micro-kernel (tests, benchmarks).");
  m.def(
      "_gemm_avx512",
      [](py::handle a, py::handle b, py::handle out, bool ta, bool tb, double alpha, double beta) {
        need_isa("_gemm_avx512", GemmIsa::avx512);
        return gemm_entry<&gemm_isa_fn<float, GemmIsa::avx512>,
                          &gemm_isa_fn<double, GemmIsa::avx512>>("_gemm_avx512", a, b, out, ta,
                                                                  tb, alpha, beta);
      },
      py::arg("a"), py::arg("b"), py::arg("out") = py::none(), py::arg("trans_a") = false,
      py::arg("trans_b") = false, py::arg("alpha") = 1.0, py::arg("beta") = 0.0,
      "The blocked GEMM with the AVX-512F micro-kernel (tests, benchmarks).");
  m.def(
      "_gemm_isas",
      [] {
        py::list names;
        for (GemmIsa isa : {GemmIsa::portable, GemmIsa::avx2, GemmIsa::avx512})
          if (gemm_isa_available(isa)) names.append(isa_name(isa));
        return py::make_tuple(names, isa_name(gemm_best_isa()));
      },
      "(micro-kernel families this CPU runs, the one gemm uses).");
  m.def(
      "_fma_peak_probe",
      [](long long iters, int threads, const std::string& isa_s) {
        const char* fn = "_fma_peak_probe";
        // (a probe of 10^10 iterations already takes seconds: a larger count is a mistake that
        // would hold the caller for hours, not a measurement)
        if (iters < 1 || threads < 1 || iters > 10000000000LL || threads > 1024)
          fail_value(fn, "iters must be in [1, 1e10] and threads in [1, 1024], got iters=" +
                             std::to_string(iters) + ", threads=" + std::to_string(threads));
        GemmIsa isa = gemm_best_isa();
        if (isa_s != "best") {
          if (isa_s == "portable") isa = GemmIsa::portable;
          else if (isa_s == "avx2") isa = GemmIsa::avx2;
          else if (isa_s == "avx512") isa = GemmIsa::avx512;
          else fail_value(fn, "isa must be 'best', 'portable', 'avx2' or 'avx512', got '" + isa_s +
                                  "'");
          need_isa(fn, isa);
        }
        double flops = 0, seconds = 0;
        {
          py::gil_scoped_release nogil;
          fma_peak_probe(isa, iters, threads, &flops, &seconds);
        }
        return py::make_tuple(flops, seconds);
      },
      py::arg("iters"), py::arg("threads") = 1, py::arg("isa") = "best",
      "Benchmark probe: each of `threads` threads runs iters x 12 independent float FMA chains of "
      "the isa's vector width ('best': the one gemm uses); returns (floating-point operations, "
      "wall seconds).");
  m.def("dense_forward", &dense_forward_entry, py::arg("x"), py::arg("w"), py::arg("b"),
        py::arg("activation") = "identity", py::arg("alpha") = 0.01, py::arg("keep_z") = false,
        py::arg("stats") = py::none(),
        "x (N,IN), w (IN,OUT), b (OUT,) or None -> (y, z): y = act(x w + b); z = x w + b, or "
        "None when the activation's derivative needs only y and keep_z is false. stats: None "
        "or a layer statistics record (float64, 16 slots, deepgrad.monitor.layer_record) "
        "whose forward slots this call fills.");
  m.def("dense_chain_forward", &dense_chain_forward_entry, py::arg("x"), py::arg("ws"),
        py::arg("bs"), py::arg("activations"), py::arg("alphas"), py::arg("stats"),
        py::arg("keep_from") = 0,
        "dense_forward through a chain of layers in one call: lists ws, bs (None entries: no "
        "bias), activations, alphas, stats (None or a record) -> a list with (y, z) per layer "
        "from keep_from on (None before it, except the last layer); each layer exactly as "
        "dense_forward.");
  m.def("dense_chain_backward", &dense_chain_backward_entry, py::arg("g"), py::arg("xs"),
        py::arg("ws"), py::arg("zs"), py::arg("ys"), py::arg("dws"), py::arg("dbs"),
        py::arg("activations"), py::arg("alphas"), py::arg("stats"), py::arg("k") = 0,
        py::arg("need_dx") = true,
        "dense_backward from the chain's last layer down to layer k in one call (each layer "
        "exactly as dense_backward, accumulating into dws[i], dbs[i]); returns layer k's dx, or "
        "None when need_dx is False.");
  m.def("dense_backward", &dense_backward_entry, py::arg("dy"), py::arg("x"), py::arg("w"),
        py::arg("z"), py::arg("y"), py::arg("dw"), py::arg("db"),
        py::arg("activation") = "identity", py::arg("alpha") = 0.01, py::arg("need_dx") = true,
        py::arg("stats") = py::none(),
        "stats: None or a layer statistics record that receives ||dy||^2. Accumulates dw += x^T dz and db += colsum(dz) with dz = dy * act'(z); returns "
        "dx = dz w^T (or None when need_dx is False).");
}

DG_REGISTER_BINDINGS(bind_gemm);

}  // namespace
}  // namespace dg::bind
