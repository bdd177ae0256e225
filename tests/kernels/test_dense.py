"""Fused dense layer kernels (deepgrad._C.dense_forward / dense_backward): numpy float64
references, central finite differences in float64, accumulation semantics and bad input."""
import math

import numpy as np
import pytest

import deepgrad
from deepgrad import _C

ALPHA = 0.2  # leaky_relu slope / elu scale used throughout
SELU_A, SELU_S = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
_erf = np.vectorize(math.erf)


def sig(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


ACTS = {
    "identity": lambda z: z,
    "step": lambda z: (z > 0).astype(z.dtype),
    "sigmoid": sig,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "leaky_relu": lambda z: np.where(z > 0, z, ALPHA * z),
    "elu": lambda z: np.where(z > 0, z, ALPHA * np.expm1(np.minimum(z, 0))),
    "selu": lambda z: SELU_S * np.where(z > 0, z, SELU_A * np.expm1(np.minimum(z, 0))),
    "gelu": lambda z: 0.5 * z * (1.0 + _erf(z / np.sqrt(2.0))),
    "softplus": lambda z: np.logaddexp(0.0, z),
    "silu": lambda z: z * sig(z),
    "softsign": lambda z: z / (1.0 + np.abs(z)),
}
NEEDS_Z = {"relu", "leaky_relu", "elu", "selu", "gelu", "softplus", "silu", "softsign"}
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def layer(rng, n, i, o, dtype):
    x = rng.standard_normal((n, i)).astype(dtype)
    w = (rng.standard_normal((i, o)) / np.sqrt(max(i, 1))).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 33, 5), (33, 257, 17), (200, 64, 130)])
def test_forward_matches_numpy(act, dtype, shape):
    rng = np.random.default_rng(sum(shape))
    x, w, b = layer(rng, *shape, dtype)
    y, z = _C.dense_forward(x, w, b, act, ALPHA)
    z_ref = x.astype(np.float64) @ w.astype(np.float64) + b
    y_ref = ACTS[act](z_ref)
    assert y.dtype == dtype and y.shape == z_ref.shape
    tol = TOL[dtype] * np.sqrt(shape[1]) * 4
    if act == "step":  # a float32 z within rounding of 0 may land on either side
        y_ref = np.where(np.abs(z_ref) < 1e-4, y, y_ref)
    np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol)
    if act in NEEDS_Z:
        np.testing.assert_allclose(z, z_ref, rtol=tol, atol=tol)
    else:
        assert z is None


def test_forward_without_bias():
    rng = np.random.default_rng(1)
    x, w, _ = layer(rng, 9, 10, 11, np.float64)
    y, z = _C.dense_forward(x, w, None, "relu")
    np.testing.assert_allclose(z, x @ w, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(y, np.maximum(x @ w, 0), rtol=1e-13, atol=1e-13)


def numeric_grad(f, arr, eps=1e-6):
    g = np.zeros_like(arr)
    flat, gf = arr.reshape(-1), g.reshape(-1)
    for idx in range(flat.size):
        old = flat[idx]
        flat[idx] = old + eps
        fp = f()
        flat[idx] = old - eps
        fm = f()
        flat[idx] = old
        gf[idx] = (fp - fm) / (2 * eps)
    return g


@pytest.mark.parametrize("act", [a for a in ACTS if a != "step"])
def test_backward_finite_differences(act):
    # loss = sum(G * act(x w + b)); its gradients are dense_backward with dy = G.
    rng = np.random.default_rng(11)
    n, i, o = 5, 4, 3
    x, w, b = layer(rng, n, i, o, np.float64)
    g = rng.standard_normal((n, o))

    def loss():
        return float(np.sum(g * _C.dense_forward(x, w, b, act, ALPHA)[0]))

    y, z = _C.dense_forward(x, w, b, act, ALPHA)
    if act in ("relu", "leaky_relu"):  # keep finite differences away from the kink
        assert np.abs(z).min() > 1e-4
    dw, db = np.zeros_like(w), np.zeros_like(b)
    dx = _C.dense_backward(g, x, w, z, y, dw, db, act, ALPHA)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, numeric_grad(loss, w), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, numeric_grad(loss, b), rtol=1e-6, atol=1e-8)


def act_grad_ref(act, z):
    """d act / dz in float64, by the textbook formulas."""
    s = sig(z)
    return {
        "identity": np.ones_like(z),
        "step": np.zeros_like(z),
        "sigmoid": s * (1 - s),
        "tanh": 1 - np.tanh(z) ** 2,
        "relu": (z > 0).astype(float),
        "leaky_relu": np.where(z > 0, 1.0, ALPHA),
        "elu": np.where(z > 0, 1.0, ALPHA * np.exp(np.minimum(z, 0))),
        "selu": SELU_S * np.where(z > 0, 1.0, SELU_A * np.exp(np.minimum(z, 0))),
        "gelu": 0.5 * (1 + _erf(z / np.sqrt(2))) + z * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi),
        "softplus": s,
        "silu": s * (1 + z * (1 - s)),
        "softsign": 1 / (1 + np.abs(z)) ** 2,
    }[act]


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1), (33, 7, 257), (130, 70, 40)])
def test_backward_matches_numpy(act, dtype, shape):
    rng = np.random.default_rng(sum(shape) + 1)
    x, w, b = layer(rng, *shape, dtype)
    y, z = _C.dense_forward(x, w, b, act, ALPHA)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dw0 = rng.standard_normal(w.shape).astype(dtype)
    db0 = rng.standard_normal(b.shape).astype(dtype)
    dw, db = dw0.copy(), db0.copy()
    dx = _C.dense_backward(dy, x, w, z, y, dw, db, act, ALPHA)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    dz = dy.astype(np.float64) * act_grad_ref(act, x64 @ w64 + b.astype(np.float64))
    tol = TOL[dtype] * np.sqrt(max(shape)) * 20
    np.testing.assert_allclose(dx, dz @ w64.T, rtol=tol, atol=tol)
    np.testing.assert_allclose(dw, dw0 + x64.T @ dz, rtol=tol, atol=tol)
    np.testing.assert_allclose(db, db0 + dz.sum(axis=0), rtol=tol, atol=tol)


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "elu", "selu"])
def test_backward_from_z_or_y_alone(act):
    # sigmoid/tanh need only y; elu/selu recompute y from z when y is not passed.
    rng = np.random.default_rng(2)
    x, w, b = layer(rng, 6, 5, 4, np.float64)
    y, z = _C.dense_forward(x, w, b, act, ALPHA)
    z_full = x @ w + b
    dy = rng.standard_normal(y.shape)
    dw_ref, db_ref = np.zeros_like(w), np.zeros_like(b)
    dx_ref = _C.dense_backward(dy, x, w, z_full, y, dw_ref, db_ref, act, ALPHA)
    dw, db = np.zeros_like(w), np.zeros_like(b)
    if act in NEEDS_Z:
        dx = _C.dense_backward(dy, x, w, z_full, None, dw, db, act, ALPHA)
    else:
        dx = _C.dense_backward(dy, x, w, None, y, dw, db, act, ALPHA)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(db, db_ref, rtol=1e-13, atol=1e-13)


def test_step_passes_no_gradient():
    rng = np.random.default_rng(8)
    x, w, b = layer(rng, 5, 4, 3, np.float32)
    dw, db = np.ones_like(w), np.ones_like(b)
    dx = _C.dense_backward(np.ones((5, 3), np.float32), x, w, None, None, dw, db, "step")
    assert (dx == 0).all() and (dw == 1).all() and (db == 1).all()


def test_backward_accumulates():
    # A weight used twice receives both contributions; db=None and need_dx=False are honoured.
    rng = np.random.default_rng(3)
    x1, w, b = layer(rng, 8, 6, 5, np.float64)
    x2 = rng.standard_normal(x1.shape)
    dy1, dy2 = rng.standard_normal((8, 5)), rng.standard_normal((8, 5))
    dw, db = np.ones_like(w), np.ones_like(b)
    y1, z1 = _C.dense_forward(x1, w, b, "silu")
    y2, z2 = _C.dense_forward(x2, w, b, "silu")
    assert _C.dense_backward(dy1, x1, w, z1, y1, dw, db, "silu", need_dx=False) is None
    _C.dense_backward(dy2, x2, w, z2, y2, dw, db, "silu")
    dz1 = dy1 * act_grad_ref("silu", x1 @ w + b)
    dz2 = dy2 * act_grad_ref("silu", x2 @ w + b)
    np.testing.assert_allclose(dw, 1 + x1.T @ dz1 + x2.T @ dz2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, 1 + dz1.sum(0) + dz2.sum(0), rtol=1e-12, atol=1e-12)
    dw3 = np.zeros_like(w)
    _C.dense_backward(dy1, x1, w, z1, y1, dw3, None, "silu")
    np.testing.assert_allclose(dw3, x1.T @ dz1, rtol=1e-12, atol=1e-12)


def test_threads_one_and_two_agree():
    rng = np.random.default_rng(4)
    x, w, b = layer(rng, 512, 256, 200, np.float32)
    dy = rng.standard_normal((512, 200)).astype(np.float32)
    saved = deepgrad.get_num_threads()
    results = []
    try:
        for t in (1, 2):
            deepgrad.set_num_threads(t)
            y, z = _C.dense_forward(x, w, b, "gelu")
            dw, db = np.zeros_like(w), np.zeros_like(b)
            dx = _C.dense_backward(dy, x, w, z, y, dw, db, "gelu")
            results.append((y, dx, dw, db))
    finally:
        deepgrad.set_num_threads(saved)
    for r1, r2 in zip(*results):
        np.testing.assert_allclose(r1, r2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(131, 67, 75), (257, 64, 64), (40, 100, 250)])
def test_mid_size_layer_split_is_bitwise_thread_independent(act, dtype, shape):
    # 0.5M-4M multiply-adds: the layer forks once (rows of Y and dX, columns of dW and db per
    # thread); 3 threads give uneven blocks and a tile edge inside a block.
    n, i, o = shape
    rng = np.random.default_rng(7)
    x, w, b = layer(rng, n, i, o, dtype)
    dy = rng.standard_normal((n, o)).astype(dtype)
    saved = deepgrad.get_num_threads()
    results = []
    try:
        for t in (1, 2, 3):
            deepgrad.set_num_threads(t)
            y, z = _C.dense_forward(x, w, b, act, ALPHA, keep_z=True)
            dw, db = np.full_like(w, 0.5), np.full_like(b, -0.25)
            dx = _C.dense_backward(dy, x, w, z, y, dw, db, act, ALPHA)
            results.append((y, z, dx, dw, db))
    finally:
        deepgrad.set_num_threads(saved)
    for r in results[1:]:
        for a, ref in zip(r, results[0]):
            np.testing.assert_array_equal(a, ref)
    y, z, dx, dw, db = results[0]
    z_ref = x.astype(np.float64) @ w + b
    np.testing.assert_allclose(y, ACTS[act](z_ref), rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
    dz = dy * act_grad_ref(act, z_ref)
    scale = TOL[dtype] * 10 * max(1.0, np.abs(dz).max())
    np.testing.assert_allclose(dx, dz @ w.T, rtol=TOL[dtype] * 10, atol=scale * np.sqrt(o))
    np.testing.assert_allclose(dw, 0.5 + x.T @ dz, rtol=TOL[dtype] * 10, atol=scale * np.sqrt(n))
    np.testing.assert_allclose(db, -0.25 + dz.sum(0), rtol=TOL[dtype] * 10, atol=scale * np.sqrt(n))


def test_empty_batch_works_like_pytorch():
    w = np.ones((4, 3), np.float32)
    b = np.ones(3, np.float32)
    x = np.zeros((0, 4), np.float32)
    y, z = _C.dense_forward(x, w, b, "relu")
    assert y.shape == (0, 3) and z.shape == (0, 3)
    dw, db = np.full_like(w, 2.0), np.full_like(b, 2.0)
    dx = _C.dense_backward(np.zeros((0, 3), np.float32), x, w, z, y, dw, db, "relu")
    assert dx.shape == (0, 4)
    assert (dw == 2.0).all() and (db == 2.0).all()


def test_nan_and_inf_propagate():
    rng = np.random.default_rng(5)
    x, w, b = layer(rng, 4, 3, 2, np.float64)
    x[1, 0] = np.nan
    x[2, 1] = np.inf
    y, _ = _C.dense_forward(x, w, b, "identity")
    assert np.isnan(y[1]).all() and not np.isfinite(y[2]).any() and np.isfinite(y[[0, 3]]).all()
    dw, db = np.zeros_like(w), np.zeros_like(b)
    _C.dense_backward(np.ones((4, 2)), x, w, None, y, dw, db, "tanh")
    assert np.isnan(dw).any()


def test_bad_inputs():
    x = np.ones((32, 10), np.float32)
    w = np.ones((12, 5), np.float32)
    b = np.ones(5, np.float32)
    with pytest.raises(ValueError, match=r"x has shape \(32, 10\) but w expects 12 input features"):
        _C.dense_forward(x, w, b)
    w = np.ones((10, 5), np.float32)
    with pytest.raises(ValueError, match="unknown activation 'rleu'; valid names: identity"):
        _C.dense_forward(x, w, b, "rleu")
    with pytest.raises(ValueError, match=r"b has shape \(4,\)"):
        _C.dense_forward(x, w, np.ones(4, np.float32))
    with pytest.raises(TypeError, match="x has dtype int32"):
        _C.dense_forward(x.astype(np.int32), w, b)
    with pytest.raises(TypeError, match="w has dtype float16"):
        _C.dense_forward(x, w.astype(np.float16), b)
    with pytest.raises(TypeError, match="must match"):
        _C.dense_forward(x, w.astype(np.float64), b)
    with pytest.raises(ValueError, match="w must be 2-D"):
        _C.dense_forward(x, np.ones(10, np.float32), b)

    y, z = _C.dense_forward(x, w, b, "relu")
    dy = np.ones_like(y)
    dw, db = np.zeros_like(w), np.zeros_like(b)
    with pytest.raises(ValueError, match="needs z"):
        _C.dense_backward(dy, x, w, None, y, dw, db, "relu")
    with pytest.raises(ValueError, match="needs y"):
        _C.dense_backward(dy, x, w, None, None, dw, db, "tanh")
    with pytest.raises(ValueError, match=r"dy has shape \(32, 4\)"):
        _C.dense_backward(np.ones((32, 4), np.float32), x, w, z, y, dw, db, "relu")
    with pytest.raises(ValueError, match=r"dw has shape \(5, 10\)"):
        _C.dense_backward(dy, x, w, z, y, np.zeros((5, 10), np.float32), db, "relu")
    with pytest.raises(ValueError, match=r"db has shape \(4,\)"):
        _C.dense_backward(dy, x, w, z, y, dw, np.zeros(4, np.float32), "relu")
    with pytest.raises(TypeError, match="dw has dtype float64"):
        _C.dense_backward(dy, x, w, z, y, np.zeros((10, 5)), db, "relu")
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.dense_backward(dy, x, w, z, y, np.zeros((5, 10), np.float32).T, db, "relu")
    with pytest.raises(ValueError, match=r"z has shape \(32, 4\)"):
        _C.dense_backward(dy, x, w, np.ones((32, 4), np.float32), y, dw, db, "relu")
    with pytest.raises(ValueError, match="unknown activation"):
        _C.dense_backward(dy, x, w, z, y, dw, db, "nope")
    with pytest.raises(TypeError, match="dy has dtype int64"):
        _C.dense_backward(dy.astype(np.int64), x, w, z, y, dw, db, "relu")
    with pytest.raises(ValueError, match="share memory"):
        _C.dense_backward(dy, x, dw, z, y, dw, db, "relu")
    assert (dw == 0).all() and (db == 0).all()  # nothing was written by the failed calls


def test_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x, w, b = layer(rng, 17, 9, 6, np.float64)
    dy = rng.standard_normal((17, 6))
    fns = {"gelu": torch.nn.functional.gelu, "silu": torch.nn.functional.silu,
           "softplus": torch.nn.functional.softplus, "selu": torch.nn.functional.selu,
           "elu": lambda t: torch.nn.functional.elu(t, ALPHA)}
    for act, fn in fns.items():
        tx, tw, tb = (torch.tensor(v, requires_grad=True) for v in (x, w, b))
        ty = fn(tx @ tw + tb)
        ty.backward(torch.tensor(dy))
        y, z = _C.dense_forward(x, w, b, act, ALPHA)
        dw, db = np.zeros_like(w), np.zeros_like(b)
        dx = _C.dense_backward(dy, x, w, z, y, dw, db, act, ALPHA)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("n,o", [(3, 5), (64, 64), (70, 33)])  # 15, 4096 and 2310 elements
def test_backward_signal_of_the_record_changes_no_gradient_bit(act, dtype, n, o):
    # A layer statistics record changes no bit of dx, dw or db (with z and y, or with only the
    # one the activation needs), and its signal ||dy||^2 is the float64 sum.
    rng = np.random.default_rng(11)
    x, w, b = layer(rng, n, 7, o, dtype)
    y, z = _C.dense_forward(x, w, b, act, ALPHA, True)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dw0, db0 = np.zeros_like(w), np.zeros_like(b)
    dx0 = _C.dense_backward(dy, x, w, z, y, dw0, db0, act, ALPHA)
    zz, yy = (z, None) if act in NEEDS_Z else (None, y)  # one of them: the other recomputed
    for zi, yi in ((z, y), (zz, yy)):
        rec = deepgrad.functional.layer_record(False)
        dw, db = np.zeros_like(w), np.zeros_like(b)
        dx = _C.dense_backward(dy, x, w, zi, yi, dw, db, act, ALPHA, True, rec)
        dxr = _C.dense_backward(dy, x, w, zi, yi, np.zeros_like(w), np.zeros_like(b), act, ALPHA)
        np.testing.assert_array_equal(dx, dxr)
        if zi is z and yi is y:
            np.testing.assert_array_equal(dx, dx0)
            np.testing.assert_array_equal(dw, dw0)
            np.testing.assert_array_equal(db, db0)
        ref = (dy.astype(np.float64) ** 2).sum()
        assert rec[deepgrad.functional.LayerStats.SIGNAL_SQ] == pytest.approx(
            ref, rel=1e-6 if dtype == np.float32 else 1e-13, abs=0)


@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid", "gelu"])
@pytest.mark.parametrize("scale", [1e-30, 1e-21, 1e21, 1e30])
def test_backward_signal_over_the_float32_range_and_nonfinite(act, scale):
    # the float32 squares of a vanishing (or exploding) dL/dy under- (over-) flow: the record's
    # signal is still the float64 sum; a NaN or an Inf anywhere in dy (here in the last element,
    # a tail) gives NaN
    S = deepgrad.functional.LayerStats
    rng = np.random.default_rng(5)
    x, w, b = layer(rng, 70, 6, 33, np.float32)
    y, z = _C.dense_forward(x, w, b, act, ALPHA, True)
    dy = (rng.standard_normal(y.shape) * scale).astype(np.float32)
    rec = deepgrad.functional.layer_record(False)
    _C.dense_backward(dy, x, w, z, y, np.zeros_like(w), np.zeros_like(b), act, ALPHA, True, rec)
    ref = (dy.astype(np.float64) ** 2).sum()
    assert ref > 0 and rec[S.SIGNAL_SQ] == pytest.approx(ref, rel=1e-6, abs=0)
    for bad in (np.nan, np.inf):
        d2 = dy.copy()
        d2[69, 32] = bad  # the last element: the tail chunk
        _C.dense_backward(d2, x, w, z, y, np.zeros_like(w), np.zeros_like(b), act, ALPHA, True,
                          rec)
        assert math.isnan(rec[S.SIGNAL_SQ])
