"""Numerics that must not lie: cross_entropy exact at any logit scale (log-softmax then pick),
binary cross-entropy input/target validation, LayerNorm propagating non-finite values."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import functional as F
from deepgrad import losses

SCALES = [1.0, 1e3, 1e7, 1e8, 1e15, 1e20, 1e30]
DTYPES = [np.float32, np.float64]


def _logits(scale, dtype, seed=0, n=24, c=5):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, c)) * scale
    y = rng.integers(0, c, n)
    x[::3, 1] = x[::3, 3] = scale  # tied maxima, with the label on one of them
    y[::3] = 1
    return x.astype(dtype), y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("v", [1.0, 1e7, 1e8, 1e30, -1e30])
def test_two_tied_logits_give_log_2(dtype, v):
    x = dg.tensor(np.array([[v, v]], dtype=dtype), requires_grad=True)
    loss = losses.cross_entropy(x, np.array([0]))
    assert abs(loss.item() - np.log(2)) <= 4 * np.finfo(dtype).eps
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), [[-0.5, 0.5]], atol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_cross_entropy_matches_pytorch_at_every_logit_scale(dtype, scale, reduction):
    torch = pytest.importorskip("torch")
    xv, yv = _logits(scale, dtype)
    x = dg.tensor(xv, requires_grad=True)
    out = losses.cross_entropy(x, yv, reduction)
    tx = torch.tensor(xv, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(tx, torch.tensor(yv), reduction=reduction)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=8 * eps, atol=8 * eps)
    g = np.random.default_rng(1).uniform(0.5, 1.5, out.shape).astype(dtype)
    out.backward(g)
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=8 * eps, atol=8 * eps)
    # and nll(log_softmax) agrees with the fused loss
    np.testing.assert_allclose(losses.nll(F.log_softmax(dg.tensor(xv)), yv, reduction).numpy(),
                               out.numpy(), rtol=8 * eps, atol=8 * eps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", SCALES)
def test_bce_with_logits_matches_pytorch_at_every_logit_scale(dtype, scale):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    xv = (rng.uniform(-1, 1, 40) * scale).astype(dtype)
    tv = rng.choice([0.0, 0.25, 1.0], 40).astype(dtype)
    x = dg.tensor(xv, requires_grad=True)
    out = losses.bce_with_logits(x, tv, "none")
    tx = torch.tensor(xv, requires_grad=True)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(tx, torch.tensor(tv),
                                                               reduction="none")
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=8 * eps, atol=8 * eps)
    out.sum().backward()
    ref.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=8 * eps, atol=8 * eps)


def test_cross_entropy_gradcheck_float64():
    xv, yv = _logits(3.0, np.float64, n=6, c=4)
    dg.gradcheck(lambda x: losses.cross_entropy(x, yv), [dg.tensor(xv, requires_grad=True)],
                 atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("labels,err,msg", [
    ([0, 3, 1], ValueError, "label 3 at index 1 is out of range for 3 classes"),
    ([0, -1, 1], ValueError, "label -1 at index 1"),
    ([0, 1], ValueError, "3 rows but labels have shape \\(2,\\)"),
    ([[0, 1, 2]], ValueError, "3 rows but labels have shape \\(1, 3\\)"),
    ([0.5, 1, 2], TypeError, "integer class indices"),
    ([0, np.inf, 1], TypeError, "integer class indices"),
    ([0, np.nan, 1], TypeError, "integer class indices"),
    ([True, False, True], TypeError, "integer class indices"),
    (["a", "b", "c"], TypeError, "integer class indices"),
])
def test_cross_entropy_labels_are_validated(labels, err, msg):
    x = dg.zeros(3, 3, requires_grad=True)
    with pytest.raises(err, match=msg):
        losses.cross_entropy(x, labels)
    with pytest.raises(err, match=msg):
        losses.nll(x, labels)


@pytest.mark.parametrize("fn", [losses.binary_cross_entropy, losses.bce_with_logits])
@pytest.mark.parametrize("bad", [1.5, -0.1, 2.0, -np.inf])
def test_bce_targets_must_be_in_0_1(fn, bad):
    p = dg.tensor([0.2, 0.7, 0.5])
    with pytest.raises(ValueError, match=r"target must hold values in \[0, 1\], but target\[1\]"):
        fn(p, [1.0, bad, 0.0])


@pytest.mark.parametrize("bad", [1.5, -0.1, np.inf])
def test_bce_probabilities_must_be_in_0_1(bad):
    with pytest.raises(ValueError, match=r"pred must hold probabilities in \[0, 1\].*"
                                         r"bce_with_logits"):
        losses.binary_cross_entropy(dg.tensor([0.5, bad]), [1.0, 0.0])


def test_bce_refuses_what_pytorch_refuses_and_keeps_nan():
    torch = pytest.importorskip("torch")
    for p, t in (([0.5], [1.5]), ([1.5], [1.0]), ([0.5], [-0.5])):
        with pytest.raises(RuntimeError):
            torch.nn.functional.binary_cross_entropy(torch.tensor(p), torch.tensor(t))
        with pytest.raises(ValueError):
            losses.binary_cross_entropy(dg.tensor(p), t)
    # NaN flows on (anomaly mode / the monitor report it) instead of a mid-training exception
    assert np.isnan(losses.binary_cross_entropy(dg.tensor([np.nan]), [1.0]).item())
    # the edges are valid
    v = losses.binary_cross_entropy(dg.tensor([0.0, 1.0, 1.0]), [0.0, 1.0, 0.0], "none")
    np.testing.assert_allclose(v.numpy(), [0.0, 0.0, 100.0])


# ---- LayerNorm -------------------------------------------------------------------------------


def _ln_ref(x, eps=1e-5):
    x = x.astype(np.float64)
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps)


@pytest.mark.parametrize("scale", [1.0, 1e18, 1e20, 1e30, 1e38])
def test_layer_norm_float32_is_exact_where_float32_statistics_would_overflow(scale):
    rng = np.random.default_rng(3)
    x = np.clip(rng.uniform(-1, 1, (16, 7)) * scale, -3e38, 3e38).astype(np.float32)
    x[0] = [3e38, 3e38, -3e38, 1, 2, 3, 4]  # x - mean overflows float32
    t = dg.tensor(x, requires_grad=True)
    y = F.layer_norm(t)
    np.testing.assert_allclose(y.numpy(), _ln_ref(x), rtol=2e-6, atol=2e-6)
    y.backward(np.ones_like(x))
    assert np.isfinite(t.grad.numpy()).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_layer_norm_propagates_non_finite_rows_like_pytorch(dtype, bad):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(4).standard_normal((3, 5)).astype(dtype)
    x[1, 2] = bad
    w = np.linspace(0.5, 1.5, 5).astype(dtype)
    t = dg.tensor(x, requires_grad=True)
    y = F.layer_norm(t, dg.tensor(w), dg.tensor(w))
    ref = torch.nn.functional.layer_norm(torch.tensor(x), (5,), torch.tensor(w), torch.tensor(w))
    np.testing.assert_array_equal(np.isnan(y.numpy()), np.isnan(ref.numpy()))
    assert np.isnan(y.numpy()[1]).all() and np.isfinite(y.numpy()[[0, 2]]).all()
    np.testing.assert_allclose(y.numpy()[[0, 2]], ref.numpy()[[0, 2]], rtol=1e-5, atol=1e-6)
    y.sum().backward()
    assert np.isnan(t.grad.numpy()[1]).all() and np.isfinite(t.grad.numpy()[[0, 2]]).all()


def test_layer_norm_float64_overflowing_variance_is_nan_not_zero():
    x = np.array([[1e160, -1e160, 1.0, 2.0], [1.0, 2.0, 3.0, 4.0]])
    y = F.layer_norm(dg.tensor(x)).numpy()
    assert np.isnan(y[0]).all()
    np.testing.assert_allclose(y[1], _ln_ref(x[1:])[0], rtol=1e-12)


def test_layer_norm_anomaly_mode_catches_the_overflowed_row():
    x = dg.tensor(np.array([[1e160, -1e160, 1.0]]))
    with dg.detect_anomaly(), pytest.raises(dg.autograd.AnomalyError, match="layer_norm"):
        F.layer_norm(x)


@pytest.mark.skipif(not dg.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("scale", [1.0, 1e20, 1e38])
def test_layer_norm_cuda_matches_cpu_at_large_scales_and_on_non_finite_rows(scale):
    rng = np.random.default_rng(5)
    x = np.clip(rng.uniform(-1, 1, (33, 70)) * scale, -3e38, 3e38).astype(np.float32)
    x[0, :3] = [3e38, 3e38, -3e38]
    x[5, 7] = np.nan
    x[9, 1] = np.inf
    w = rng.uniform(0.5, 1.5, 70).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    res = []
    for dev in ("cpu", "cuda"):
        t = dg.tensor(x, device=dev, requires_grad=True)
        wt = dg.tensor(w, device=dev, requires_grad=True)
        y = F.layer_norm(t, wt, None)
        y.backward(dg.tensor(dy, device=dev))
        res.append((y.cpu().numpy(), t.grad.cpu().numpy()))
    (yc, gc), (yg, gg) = res
    np.testing.assert_array_equal(np.isnan(yc), np.isnan(yg))
    assert np.isnan(yc[[5, 9]]).all()
    np.testing.assert_allclose(yg, yc, rtol=1e-5, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(gg, gc, rtol=1e-4, atol=1e-4, equal_nan=True)


@pytest.mark.skipif(not dg.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("scale", SCALES)
def test_cross_entropy_cuda_matches_cpu_at_every_logit_scale(scale):
    xv, yv = _logits(scale, np.float32, seed=7)
    res = []
    for dev in ("cpu", "cuda"):
        x = dg.tensor(xv, device=dev, requires_grad=True)
        out = losses.cross_entropy(x, dg.tensor(yv, dtype="int64", device=dev), "none")
        out.sum().backward()
        res.append((out.cpu().numpy(), x.grad.cpu().numpy()))
    np.testing.assert_allclose(res[1][0], res[0][0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(res[1][1], res[0][1], rtol=1e-6, atol=1e-6)
    if scale >= 1e7:  # the tied rows: the other logits are far below the two maxima
        assert np.abs(res[1][0][::3] - np.log(2)).max() < 1e-6
