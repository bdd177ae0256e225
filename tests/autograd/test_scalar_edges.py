"""Every public op on 0-d inputs and at the edges of its domain, against PyTorch in float64
(values and gradients, NaN/Inf positions included), plus finite-difference gradchecks where the
op is differentiable. 0-d in gives 0-d ndarrays out on the CPU backend, never numpy scalars."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import functional as F
from deepgrad import losses

INF, NAN = np.inf, np.nan


def _tf():
    torch = pytest.importorskip("torch")
    return torch, torch.nn.functional


# name -> (deepgrad fn, torch fn (given torch and torch.nn.functional), argument tuples)
UNARY = {
    "neg": (lambda x: -x, lambda t, tf: lambda x: -x, [0.0, -0.0, 2.5]),
    "abs": (abs, lambda t, tf: abs, [0.0, -3.0, 2.0, -INF]),
    "exp": (lambda x: x.exp(), lambda t, tf: t.exp, [0.0, -800.0, 800.0, 1.5, -INF]),
    "log": (lambda x: x.log(), lambda t, tf: t.log, [0.0, -1.0, 1e-300, 1.0, INF]),
    "sqrt": (lambda x: x.sqrt(), lambda t, tf: t.sqrt, [0.0, -1.0, 1e-300, 4.0, INF]),
    "square": (lambda x: x ** 2, lambda t, tf: lambda x: x ** 2, [0.0, -3.0, 1e200]),
    "pow0": (lambda x: x ** 0, lambda t, tf: lambda x: x ** 0, [0.0, 2.0, -2.0, INF]),
    "pow_half": (lambda x: x ** 0.5, lambda t, tf: lambda x: x ** 0.5, [0.0, 4.0, -1.0]),
    "pow_neg": (lambda x: x ** -1, lambda t, tf: lambda x: x ** -1, [0.0, -0.0, 2.0]),
    "pow_cube": (lambda x: x ** 3, lambda t, tf: lambda x: x ** 3, [0.0, -2.0]),
    "rpow2": (lambda x: 2 ** x, lambda t, tf: lambda x: 2 ** x, [0.0, -1.0, 1100.0]),
    "rpow0": (lambda x: 0 ** x, lambda t, tf: lambda x: 0 ** x, [0.0, 2.0, -1.0]),
    "rpow_neg": (lambda x: (-2) ** x, lambda t, tf: lambda x: (-2) ** x, [0.5, 2.0]),
    "sqrt_relu": (lambda x: F.relu(x) ** 0.5, lambda t, tf: lambda x: tf.relu(x) ** 0.5,
                  [0.0, -1.0, 4.0]),
    "log_relu": (lambda x: F.relu(x).log(), lambda t, tf: lambda x: tf.relu(x).log(),
                 [0.0, -1.0, 2.0]),
    "rdiv": (lambda x: 1.0 / x, lambda t, tf: lambda x: 1.0 / x, [0.0, -0.0, 4.0]),
    "relu": (F.relu, lambda t, tf: tf.relu, [0.0, -1.0, 1.0, NAN, INF, -INF]),
    "sigmoid": (F.sigmoid, lambda t, tf: t.sigmoid, [0.0, -800.0, 800.0, 3.0]),
    "tanh": (F.tanh, lambda t, tf: t.tanh, [0.0, -30.0, 30.0, 0.5]),
    "leaky_relu": (F.leaky_relu, lambda t, tf: tf.leaky_relu, [0.0, -1.0, 2.0]),
    "elu": (F.elu, lambda t, tf: tf.elu, [0.0, -1.0, 2.0, -800.0]),
    "selu": (F.selu, lambda t, tf: tf.selu, [0.0, -1.0, 2.0]),
    "gelu": (F.gelu, lambda t, tf: tf.gelu, [0.0, -1.0, 3.0, -40.0]),
    "softplus": (F.softplus, lambda t, tf: tf.softplus, [0.0, -50.0, 50.0, 1.0]),
    "silu": (F.silu, lambda t, tf: tf.silu, [0.0, -1.0, 2.0, -800.0]),
    "softsign": (F.softsign, lambda t, tf: tf.softsign, [0.0, -3.0, 1e300]),
    "step": (F.step, lambda t, tf: lambda x: t.heaviside(x, t.zeros_like(x)).detach(),
             [0.0, -1.0, 1.0]),
    "identity": (F.identity, lambda t, tf: lambda x: x * 1, [0.0, 2.0]),
    "clamp": (lambda x: x.clamp(0.0, 1.0), lambda t, tf: lambda x: x.clamp(0.0, 1.0),
              [0.0, 1.0, 0.5, -1.0, 2.0]),
    "softmax": (lambda x: F.softmax(x, 0), lambda t, tf: lambda x: tf.softmax(x, 0),
                [0.0, 800.0]),
    "log_softmax": (lambda x: F.log_softmax(x, -1), lambda t, tf: lambda x: tf.log_softmax(x, -1),
                    [0.0, -800.0]),
    "sum": (lambda x: x.sum(), lambda t, tf: t.sum, [0.0, 3.0]),
    "sum_axis": (lambda x: x.sum(0), lambda t, tf: lambda x: x.sum(0), [2.0]),
    "mean": (lambda x: x.mean(), lambda t, tf: t.mean, [0.0, 3.0]),
    "max": (lambda x: x.max(), lambda t, tf: t.amax, [0.0, -2.0]),
    "reshape": (lambda x: x.reshape(1, 1).reshape(()), lambda t, tf: lambda x: x.reshape(1, 1)
                .reshape(()), [1.5]),
    "flatten_sum": (lambda x: x.flatten().sum(), lambda t, tf: lambda x: x.flatten().sum(),
                    [1.5]),
    "transpose": (lambda x: x.T * 2, lambda t, tf: lambda x: x.t() * 2, [1.5]),
    "getitem": (lambda x: x[()] * x[...], lambda t, tf: lambda x: x[()] * x[...], [1.5]),
    "clone": (lambda x: x.clone(), lambda t, tf: lambda x: x.clone(), [1.5]),
    "mse": (lambda x: losses.mse(x, 1.0), lambda t, tf: lambda x: tf.mse_loss(
        x, t.tensor(1.0, dtype=t.float64)), [0.0, 1.0, 1e200]),
    "bce": (lambda x: losses.binary_cross_entropy(x, 1.0), lambda t, tf: lambda x:
            tf.binary_cross_entropy(x, t.tensor(1.0, dtype=t.float64)), [0.0, 1.0, 0.5]),
    "bce_sigmoid": (lambda x: losses.binary_cross_entropy(F.sigmoid(x), 0.0),
                    lambda t, tf: lambda x: tf.binary_cross_entropy(
                        t.sigmoid(x), t.tensor(0.0, dtype=t.float64)), [0.0, 3.0, -3.0]),
    "bce_logits": (lambda x: losses.bce_with_logits(x, 0.25), lambda t, tf: lambda x:
                   tf.binary_cross_entropy_with_logits(x, t.tensor(0.25, dtype=t.float64)),
                   [0.0, 800.0, -800.0, 1e30]),
}

BINARY = {
    "add": (lambda a, b: a + b, lambda t, tf: lambda a, b: a + b,
            [(0.0, 0.0), (INF, -INF), (1.0, 2.0)]),
    "sub": (lambda a, b: a - b, lambda t, tf: lambda a, b: a - b, [(0.0, 0.0), (INF, INF)]),
    "mul": (lambda a, b: a * b, lambda t, tf: lambda a, b: a * b,
            [(0.0, 0.0), (0.0, 3.0), (2.0, -3.0)]),
    "div": (lambda a, b: a / b, lambda t, tf: lambda a, b: a / b,
            [(1.0, 0.0), (0.0, 0.0), (2.0, 4.0), (-1.0, -0.0)]),
    "pow": (lambda a, b: a ** b, lambda t, tf: lambda a, b: a ** b,
            [(0.0, 0.0), (0.0, 2.0), (0.0, 0.5), (0.0, -1.0), (2.0, 0.0), (-2.0, 2.0),
             (3.0, 1.5), (-2.0, 0.5), (1.0, INF)]),
    "maximum": (dg.maximum, lambda t, tf: t.maximum, [(1.0, 2.0), (3.0, -1.0)]),
    "minimum": (dg.minimum, lambda t, tf: t.minimum, [(1.0, 2.0), (3.0, -1.0)]),
    "where": (lambda a, b: dg.where(a > 0, a, b), lambda t, tf: lambda a, b: t.where(a > 0, a, b),
              [(1.0, 2.0), (-1.0, 2.0), (0.0, 5.0)]),
    "matmul_1d": (lambda a, b: dg.matmul(a.reshape(1), b.reshape(1)),
                  lambda t, tf: lambda a, b: t.matmul(a.reshape(1), b.reshape(1)),
                  [(2.0, 3.0), (0.0, INF)]),
    "stack_sum": (lambda a, b: (dg.stack([a, b]) * dg.tensor([1.0, 2.0], dtype="float64")).sum(),
                  lambda t, tf: lambda a, b: (t.stack([a, b]) * t.tensor([1.0, 2.0],
                                                                     dtype=t.float64)).sum(),
                  [(2.0, 3.0)]),
}

# numpy warns on inf - inf and 0 * inf in add/sub/mul (the CPU backend keeps numpy's default
# there: silencing it costs ~1 us per call on the hot path); the values are still IEEE's.
_NUMPY_WARNS = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
CASES = ([pytest.param(n, f, tf, (v,), id=f"{n}{[v]}") for n, (f, tf, vs) in UNARY.items()
          for v in vs]
         + [pytest.param(n, f, tf, v, id=f"{n}{list(v)}",
                         marks=[_NUMPY_WARNS] if n in ("add", "sub", "div") else [])
            for n, (f, tf, vs) in BINARY.items() for v in vs])


def _close(ours, ref, what):
    # rtol 1e-8: PyTorch's BCE clamps p (1 - p) at the float constant 1e-12 (relative 4e-9 off)
    np.testing.assert_allclose(ours, ref, rtol=1e-8, atol=1e-300, equal_nan=True, err_msg=what)
    np.testing.assert_array_equal(np.signbit(ours[np.isinf(ours)]), np.signbit(ref[np.isinf(ref)]))


@pytest.mark.parametrize("name,fn,tfn,vals", CASES)
def test_zero_d_op_matches_pytorch_float64(name, fn, tfn, vals):
    torch, tf = _tf()
    xs = [dg.tensor(np.float64(v), dtype="float64", requires_grad=True) for v in vals]
    out = fn(*xs)
    data = out.numpy()
    assert type(data) is np.ndarray and data.shape == () and data.dtype == np.float64, \
        f"{name}: got {type(data).__name__} of shape {np.shape(data)}"
    ts = [torch.tensor(float(v), dtype=torch.float64, requires_grad=True) for v in vals]
    ref = tfn(torch, tf)(*ts)
    _close(data, ref.detach().numpy(), f"{name}{vals}: value")
    if not out.requires_grad:  # step: no gradient, as torch.heaviside
        return
    out.backward()
    if ref.requires_grad:
        ref.backward()
    for i, (x, t) in enumerate(zip(xs, ts)):
        ours = np.zeros(()) if x.grad is None else x.grad.numpy()
        theirs = np.zeros(()) if t.grad is None else t.grad.numpy()
        assert ours.shape == ()
        _close(ours, theirs, f"{name}{vals}: gradient of input {i}")


# Points where each op is differentiable, in float64, checked on 0-d inputs.
GRADCHECK = [(n, f, (v,)) for n, (f, _, vs) in UNARY.items() if n not in ("step", "clamp", "max",
             "relu", "sqrt_relu", "log_relu", "rpow0", "rpow_neg")
             for v in vs if np.isfinite(v) and v != 0.0 and abs(v) < 100
             and not (n == "bce" and v == 1.0)]  # p = 1 is the edge of bce's domain
GRADCHECK += [("relu", F.relu, (1.0,)), ("relu", F.relu, (-1.0,)),
              ("clamp", UNARY["clamp"][0], (0.5,)), ("sqrt_relu", UNARY["sqrt_relu"][0], (4.0,)),
              ("max", UNARY["max"][0], (2.0,))]
GRADCHECK += [(n, f, v) for n, (f, _, vs) in BINARY.items() for v in vs
              if all(np.isfinite(v)) and all(x != 0.0 for x in v) and n != "where"
              and not (n == "pow" and v[0] < 0) and not (n in ("maximum", "minimum")
                                                        and v[0] == v[1])]


@pytest.mark.parametrize("name,fn,vals", GRADCHECK, ids=[f"{g[0]}{list(g[2])}" for g in GRADCHECK])
def test_zero_d_gradcheck_float64(name, fn, vals):
    xs = [dg.tensor(np.float64(v), dtype="float64", requires_grad=True) for v in vals]
    dg.gradcheck(fn, xs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_zero_d_arithmetic_returns_0d_arrays_and_feeds_native_ops():
    a = dg.tensor(2.0, requires_grad=True)
    for r in (a * 3, a + a, a - 1, a / 2, -a, a ** 2, 2 ** a, a.exp(), abs(a), a > 1,
              dg.maximum(a, 1.0), a.clamp(0, 1), a.sqrt(), a.log()):
        assert type(r.data) is np.ndarray and r.data.shape == ()
        assert type(r.numpy()) is np.ndarray and r.numpy().shape == ()
    y = F.tanh(a * 3) + F.relu(a - 1) + losses.mse(a * 2, 1.0)
    y.backward()
    assert a.grad.shape == () and np.isfinite(a.grad.item())
    assert type(dg.tensor(1.5).numpy()) is np.ndarray


def test_one_nan_gradient_does_not_spread_from_a_zero_base():
    """The issue's case: a root after a ReLU in a batch; the zero rows must not poison the sum."""
    x = dg.tensor([-1.0, 0.0, 4.0], dtype="float64", requires_grad=True)
    (F.relu(x) ** 0.5).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 0.25])
    w = dg.tensor([0.0, 2.0], dtype="float64", requires_grad=True)
    p = dg.tensor([0.0, 3.0], dtype="float64", requires_grad=True)
    (w ** p).sum().backward()
    assert np.isfinite(w.grad.numpy()).all() and np.isfinite(p.grad.numpy()).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_selects_like_pytorch_threshold_backward(dtype):
    """dz = 0 where z <= 0 even for an Inf/NaN dy (0 * inf would be NaN); a NaN z passes dy on."""
    torch, tf = _tf()
    z = np.array([0.0, -1.0, -0.0, 2.0, NAN, 3.0], dtype=dtype)
    dy = np.array([INF, NAN, -INF, INF, 1.5, 2.0], dtype=dtype)
    ours = dg._C.act_backward(dy, z, F.relu(dg.tensor(z)).numpy(), "relu", 0.01)
    tz = torch.tensor(z, requires_grad=True)
    tf.relu(tz).backward(torch.tensor(dy))
    np.testing.assert_array_equal(ours, tz.grad.numpy())
    # the fused dense layer takes the same path
    x = dg.tensor(np.array([[1.0, 2.0]], dtype=dtype))
    w = dg.tensor(np.array([[0.0, 1.0], [-1.0, 2.0]], dtype=dtype), requires_grad=True)
    y = F.dense(x, w, None, "relu")  # z = (-2, 5)
    y.backward(np.full((1, 2), INF, dtype=dtype))
    np.testing.assert_array_equal(w.grad.numpy(), [[0.0, INF], [0.0, INF]])


@pytest.mark.parametrize("call,err,msg", [
    (lambda s: F.layer_norm(s), ValueError, "layer_norm: x must have a non-empty last axis"),
    (lambda s: F.batch_norm(s), ValueError, r"batch_norm: x must be \(N, C\)"),
    (lambda s: losses.cross_entropy(s, 0), ValueError, r"cross_entropy: input must be \(N, C\)"),
    (lambda s: losses.nll(s, 0), ValueError, r"nll: input must be \(N, C\)"),
    (lambda s: F.dense(s, s), ValueError, "dense_forward: x must be 2-D"),
    (lambda s: s @ s, ValueError, "matmul: only 1-D and 2-D tensors"),
    (lambda s: len(s), TypeError, "len\\(\\) of a 0-d tensor"),
    (lambda s: s[0], IndexError, "index 0 into a tensor of shape \\(\\)"),
])
def test_ops_that_need_axes_refuse_0d_inputs_with_a_clear_error(call, err, msg):
    with pytest.raises(err, match=msg):
        call(dg.tensor(1.5, requires_grad=True))


def test_0d_ops_without_a_torch_twin():
    s = dg.tensor(1.5, dtype="float64", requires_grad=True)
    for r in (F.dropout(s, 0.5), F.dropout(s, 1.0), F.activation(s, "gelu"), s.double().float(),
              s.mean(keepdims=True), dg.where(dg.tensor(1.0, dtype="float64"), s, 0.0)):
        assert type(r.numpy()) is np.ndarray and r.shape == ()
    assert s.argmax().shape == () and s.tolist() == 1.5 and f"{s:.2f}" == "1.50"
