"""nn.utils.clip_grad_norm_ / clip_grad_value_ over the arena, against numpy and PyTorch."""
import math

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import nn
from deepgrad.nn.utils import clip_grad_norm_, clip_grad_value_


def model_with_grads(seed=0, dtype=np.float64):
    dg.manual_seed(seed)
    m = nn.Sequential(nn.Dense(3, 4, "tanh", dtype=dtype), nn.Dense(4, 2, dtype=dtype))
    rng = np.random.default_rng(seed)
    for p in m.parameters():
        p.grad = dg.tensor(rng.normal(size=p.shape), dtype=dtype)
    return m


def test_the_3_4_5_example():
    m = nn.Dense(1, 2, bias=False, dtype=np.float64)
    m.weight.grad = dg.tensor(np.array([[3.0, 4.0]]), dtype=np.float64)
    total = clip_grad_norm_(m, 1.0)
    assert total == pytest.approx(5.0, rel=1e-15)
    np.testing.assert_allclose(m.weight.grad.numpy(), [[0.6, 0.8]], rtol=1e-6)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_matches_numpy(norm_type):
    m = model_with_grads()
    grads = [p.grad.numpy().copy() for p in m.parameters()]
    flat = np.concatenate([g.ravel() for g in grads])
    ref = np.max(np.abs(flat)) if norm_type == math.inf else np.sum(np.abs(flat) ** norm_type) ** (1 / norm_type)
    total = clip_grad_norm_(m.parameters(), 0.5, norm_type=norm_type)
    assert total == pytest.approx(ref, rel=1e-12)
    coef = 0.5 / (ref + 1e-6)
    for p, g in zip(m.parameters(), grads):
        np.testing.assert_allclose(p.grad.numpy(), g * coef, rtol=1e-12)


def test_no_clipping_below_max_and_subset_of_params():
    m = model_with_grads(1)
    before = [p.grad.numpy().copy() for p in m.parameters()]
    total = clip_grad_norm_(m, 1e6)
    for p, g in zip(m.parameters(), before):
        np.testing.assert_array_equal(p.grad.numpy(), g)
    # clipping only the second layer leaves the first untouched
    sub = list(m[1].parameters())
    ref = np.sqrt(sum(np.sum(p.grad.numpy() ** 2) for p in sub))
    assert clip_grad_norm_(sub, 0.1) == pytest.approx(ref, rel=1e-12)
    np.testing.assert_array_equal(m[0].weight.grad.numpy(), before[0])
    got = np.sqrt(sum(np.sum(p.grad.numpy() ** 2) for p in sub))
    assert got == pytest.approx(0.1, rel=1e-5)
    assert total > 0


def test_matches_pytorch():
    torch = pytest.importorskip("torch")
    m = model_with_grads(2)
    tp = [torch.nn.Parameter(torch.from_numpy(p.numpy().copy())) for p in m.parameters()]
    for t, p in zip(tp, m.parameters()):
        t.grad = torch.from_numpy(p.grad.numpy().copy())
    ours = clip_grad_norm_(m, 0.7)
    theirs = float(torch.nn.utils.clip_grad_norm_(tp, 0.7))
    assert ours == pytest.approx(theirs, rel=1e-12)
    for t, p in zip(tp, m.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-12)


def test_nonfinite():
    m = model_with_grads(3)
    g = m[0].weight.grad.numpy().copy()
    g[0, 0] = np.nan
    m[0].weight.grad = dg.tensor(g, dtype=np.float64)
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(m, 1.0, error_if_nonfinite=True)
    assert math.isnan(clip_grad_norm_(m, 1.0))


def test_clip_value():
    m = model_with_grads(4)
    before = [p.grad.numpy().copy() for p in m.parameters()]
    clip_grad_value_(m, 0.3)
    for p, g in zip(m.parameters(), before):
        np.testing.assert_array_equal(p.grad.numpy(), np.clip(g, -0.3, 0.3))
    with pytest.raises(ValueError):
        clip_grad_value_(m, -1.0)
    with pytest.raises(ValueError):
        clip_grad_norm_(m, -1.0)


def test_float32_arena_and_plain_tensors():
    m = model_with_grads(5, dtype=np.float32)
    ref = np.sqrt(sum(np.sum(p.grad.numpy().astype(np.float64) ** 2) for p in m.parameters()))
    assert clip_grad_norm_(m, 1.0) == pytest.approx(ref, rel=1e-6)
    t = dg.tensor(np.array([3.0, 4.0]), dtype=np.float64, requires_grad=True)
    t.grad = dg.tensor(np.array([3.0, 4.0]), dtype=np.float64)
    assert clip_grad_norm_([t], 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(t.grad.numpy(), [0.6, 0.8], rtol=1e-6)


def relaid_out_models(seed=3):
    """a, b, c Dense layers; Sequential(a, b) laid out, then Sequential(b, c) takes b's
    parameters into a new arena and retires the first one (a's parameters stay there)."""
    dg.manual_seed(seed)
    a, b, c = (nn.Dense(3, 4, "tanh", dtype=np.float64), nn.Dense(4, 4, dtype=np.float64),
               nn.Dense(4, 2, dtype=np.float64))
    first = nn.Sequential(a, b)
    old = first.arena
    second = nn.Sequential(b, c)
    new = second.arena
    assert old.retired and not new.retired and a.weight._arena is old and b.weight._arena is new
    rng = np.random.default_rng(seed)
    for m in (a, b, c):
        for p in m.parameters():
            p.grad = dg.tensor(rng.normal(size=p.shape), dtype=np.float64)
    return a, b, c


def count_calls(monkeypatch, names=("segment_norms", "scale_", "clip_value_")):
    from deepgrad.backend import get_backend
    be = get_backend("cpu")
    calls = dict.fromkeys(names, 0)
    for n in names:
        orig = getattr(be, n)

        def wrapped(*args, _orig=orig, _n=n, **kw):
            calls[_n] += 1
            return _orig(*args, **kw)
        monkeypatch.setattr(be, n, wrapped)
    return calls


def test_retired_arena_uses_the_fused_path(monkeypatch):
    a, b, c = relaid_out_models()
    params = list(a.parameters()) + list(c.parameters())  # one retired arena, one live one
    grads = [p.grad.numpy().copy() for p in params]
    ref = np.sqrt(sum(np.sum(g ** 2) for g in grads))
    calls = count_calls(monkeypatch)
    total = clip_grad_norm_(params, 0.1)
    assert total == pytest.approx(ref, rel=1e-12)
    # a's weight+bias are one contiguous range of the retired arena, c's of the new one
    assert calls == {"segment_norms": 2, "scale_": 2, "clip_value_": 0}
    coef = 0.1 / (ref + 1e-6)
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad.numpy(), g * coef, rtol=1e-12)
    # the views are the live gradients: the arena buffers changed, b's gradient did not
    np.testing.assert_allclose(a.weight._arena.grad_view(a.weight._slot), a.weight.grad.numpy(),
                               rtol=0)


def test_retired_arena_clip_value(monkeypatch):
    a, b, c = relaid_out_models(seed=4)
    before_b = [p.grad.numpy().copy() for p in b.parameters()]
    grads = [p.grad.numpy().copy() for p in a.parameters()]
    calls = count_calls(monkeypatch)
    clip_grad_value_(a.parameters(), 0.3)
    assert calls["clip_value_"] == 1
    for p, g in zip(a.parameters(), grads):
        np.testing.assert_array_equal(p.grad.numpy(), np.clip(g, -0.3, 0.3))
    for p, g in zip(b.parameters(), before_b):
        np.testing.assert_array_equal(p.grad.numpy(), g)
