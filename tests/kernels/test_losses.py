"""Loss kernels vs float64 numpy references (PyTorch's definitions), finite differences, and torch."""
import numpy as np
import pytest

from deepgrad import _C

REDUCTIONS = ["mean", "sum", "none"]


def ref_terms(kind, p, t):
    p = p.astype(np.float64)
    if kind == "mse":
        return (p - t) ** 2
    if kind == "bce":
        with np.errstate(divide="ignore"):
            return -(t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log1p(-p), -100))
    if kind == "bce_logits":
        return np.maximum(p, 0) - p * t + np.log1p(np.exp(-np.abs(p)))
    # cross_entropy: p = logits (N, C), t = labels (N,)
    # -log_softmax(p)[label] = (m - p_label) + log(sum exp(p - m)), exact at any logit scale
    m = p.max(axis=1, keepdims=True)
    lse = np.log(np.exp(p - m).sum(axis=1))
    return (m[:, 0] - p[np.arange(len(t)), t]) + lse


def reduce(v, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": lambda a: a}[reduction](v)


def make(kind, shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "cross_entropy":
        n, c = shape
        return rng.normal(scale=3, size=shape).astype(dtype), rng.integers(0, c, size=n)
    if kind == "mse":
        return rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype)
    if kind == "bce":
        return rng.uniform(0.01, 0.99, size=shape).astype(dtype), rng.uniform(0, 1, size=shape).astype(dtype)
    return rng.normal(scale=4, size=shape).astype(dtype), rng.uniform(0, 1, size=shape).astype(dtype)


ELEM_SHAPES = [(1,), (7,), (33,), (257,), (5, 7)]
CE_SHAPES = [(1, 1), (1, 7), (7, 3), (33, 10), (257, 5), (3, 600)]
CASES = [(k, s) for k in ["mse", "bce", "bce_logits"] for s in ELEM_SHAPES] + [("cross_entropy", s) for s in CE_SHAPES]


@pytest.mark.parametrize("kind,shape", CASES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_forward_matches_numpy(kind, shape, reduction, dtype, rtol):
    p, t = make(kind, shape, dtype)
    want = reduce(ref_terms(kind, p, t), reduction)
    got = _C.loss_forward(kind, p, t, reduction)
    if reduction == "none":
        assert got.dtype == dtype and got.shape == np.shape(want)
    else:
        assert isinstance(got, float)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


def ref_grad(kind, p, t):
    p = p.astype(np.float64)
    if kind == "mse":
        return 2 * (p - t)
    if kind == "bce":
        return (p - t) / np.maximum(p * (1 - p), 1e-12)
    if kind == "bce_logits":
        return 1 / (1 + np.exp(-p)) - t
    s = np.exp(p - p.max(axis=1, keepdims=True))
    s /= s.sum(axis=1, keepdims=True)
    s[np.arange(len(t)), t] -= 1
    return s


@pytest.mark.parametrize("kind,shape", CASES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-11), (np.float32, 1e-4)])
def test_backward_matches_numpy(kind, shape, reduction, dtype, rtol):
    p, t = make(kind, shape, dtype, seed=1)
    g = ref_grad(kind, p, t)
    nterms = ref_terms(kind, p, t).size
    if reduction == "none":
        up = np.random.default_rng(2).normal(size=ref_terms(kind, p, t).shape).astype(dtype)
        want = g * (up[:, None] if kind == "cross_entropy" else up)
    else:
        up = 0.7
        want = g * up / (nterms if reduction == "mean" else 1)
    got = _C.loss_backward(kind, p, t, reduction, up)
    assert got.dtype == dtype and got.shape == p.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("kind", ["mse", "bce", "bce_logits", "cross_entropy"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_backward_vs_finite_differences(kind, reduction):
    p, t = make(kind, (4, 5) if kind == "cross_entropy" else (13,), np.float64, seed=3)
    got = _C.loss_backward(kind, p, t, reduction, 1.0)
    h = 1e-6
    fd = np.zeros_like(p)
    for idx in np.ndindex(p.shape):
        pp, pm = p.copy(), p.copy()
        pp[idx] += h
        pm[idx] -= h
        fd[idx] = (_C.loss_forward(kind, pp, t, reduction) - _C.loss_forward(kind, pm, t, reduction)) / (2 * h)
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)


def test_bce_clamps_log_at_minus_100():
    p = np.array([0.0, 1.0, 0.0, 1.0])
    t = np.array([1.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(_C.loss_forward("bce", p, t, "none"), [100, 100, 0, 0])
    assert np.all(np.isfinite(_C.loss_backward("bce", p, t, "sum", 1.0)))


def test_bce_logits_stable_for_large_logits():
    x = np.array([-1e4, -100.0, 100.0, 1e4], dtype=np.float32)
    t = np.array([1.0, 0.0, 1.0, 0.0], dtype=np.float32)
    np.testing.assert_allclose(_C.loss_forward("bce_logits", x, t, "none"), [1e4, 0, 0, 1e4], rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(_C.loss_backward("bce_logits", x, t, "sum", 1.0), [-1, 0, 0, 1], atol=1e-30)


@pytest.mark.parametrize("label_dtype", [np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64])
def test_cross_entropy_accepts_any_integer_labels(label_dtype):
    x, t = make("cross_entropy", (6, 4), np.float64, seed=4)
    want = _C.loss_forward("cross_entropy", x, t.astype(np.int64), "mean")
    assert _C.loss_forward("cross_entropy", x, t.astype(label_dtype), "mean") == want


def test_cross_entropy_large_logits_stable():
    x = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    got = _C.loss_forward("cross_entropy", x, np.array([2, 1]), "none")
    np.testing.assert_allclose(got, [2000.0, np.log(3)], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("v", [1e7, 1e8, 1e30, -1e30, 3e38])
def test_cross_entropy_tied_huge_logits_give_log_2(dtype, v):
    # m + log(s) - x_label rounded log 2 away at this scale (1.0 from 1e7, 0 from 1e8 in float32)
    x = np.array([[v, v], [v, v]], dtype=dtype)
    got = _C.loss_forward("cross_entropy", x, np.array([0, 1]), "none")
    np.testing.assert_allclose(got, [np.log(2)] * 2, rtol=4 * np.finfo(dtype).eps)
    d = _C.loss_backward("cross_entropy", x, np.array([0, 1]), "sum", 1.0)
    np.testing.assert_allclose(d, [[-0.5, 0.5], [0.5, -0.5]], atol=4 * np.finfo(dtype).eps)


def test_sum_is_deterministic_across_threads():
    p, t = make("bce_logits", (500_000,), np.float32, seed=5)
    n0 = _C.get_num_threads()
    try:
        _C.set_num_threads(1)
        a = _C.loss_forward("bce_logits", p, t, "mean")
        _C.set_num_threads(2)
        b = _C.loss_forward("bce_logits", p, t, "mean")
    finally:
        _C.set_num_threads(n0)
    assert a == b
    np.testing.assert_allclose(a, ref_terms("bce_logits", p, t).mean(), rtol=1e-6)


def test_nan_propagates():
    p = np.array([np.nan, 0.5])
    assert np.isnan(_C.loss_forward("mse", p, np.zeros(2), "mean"))
    assert np.isnan(_C.loss_forward("bce", p, np.zeros(2), "sum"))


@pytest.mark.parametrize("kind", ["mse", "bce", "bce_logits", "cross_entropy"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_torch(kind, reduction):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    p, t = make(kind, (6, 5) if kind == "cross_entropy" else (6, 5), np.float64, seed=6)
    if kind == "cross_entropy":
        tt = torch.from_numpy(t)
    else:
        tt = torch.from_numpy(t)
    pt = torch.from_numpy(p.copy()).requires_grad_(True)
    fn = {"mse": F.mse_loss, "bce": F.binary_cross_entropy, "bce_logits": F.binary_cross_entropy_with_logits,
          "cross_entropy": F.cross_entropy}[kind]
    out = fn(pt, tt, reduction=reduction)
    up = torch.from_numpy(np.random.default_rng(7).normal(size=tuple(out.shape))) if reduction == "none" else torch.tensor(1.3, dtype=torch.float64)
    out.backward(up)
    got = _C.loss_forward(kind, p, t, reduction)
    np.testing.assert_allclose(got, out.detach().numpy(), rtol=1e-12, atol=1e-14)
    gup = up.numpy() if reduction == "none" else 1.3
    np.testing.assert_allclose(_C.loss_backward(kind, p, t, reduction, gup), pt.grad.numpy(), rtol=1e-12, atol=1e-14)
