"""The one gradient sink (issue 11): fused ops ask autograd.grad_sink where an input's gradient
goes; a plain leaf's is accumulated in place, a hooked or anomaly-checked one goes through the
engine. Both paths give the same gradient, bit for bit."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import functional as F
from deepgrad import nn


def _grads(hook: bool, anomaly: bool = False, shared: bool = False):
    dg.manual_seed(0)
    rng = np.random.default_rng(0)
    m = nn.Sequential(nn.Dense(5, 7, "tanh", dtype=np.float64), nn.Dense(7, 3, dtype=np.float64))
    seen = []
    if hook:
        m[0].weight.register_hook(lambda g: seen.append(g.numpy().copy()))
    x = dg.tensor(rng.normal(size=(6, 5)))
    out = m(x)
    if shared:  # the first layer's weight used a second time
        out = out.sum() + F.dense(x, m[0].weight, None, "relu").sum()
    with dg.autograd.detect_anomaly() if anomaly else _null():
        out.sum().backward()
    return [p.grad.numpy().copy() for p in m.parameters()], seen


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


@pytest.mark.parametrize("shared", [False, True])
def test_a_hooked_weight_gets_the_same_gradient(shared):
    plain, _ = _grads(False, shared=shared)
    hooked, seen = _grads(True, shared=shared)
    checked, _ = _grads(False, anomaly=True, shared=shared)
    for a, b, c in zip(plain, hooked, checked):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert len(seen) == 1  # the hook saw the whole gradient once, shared or not
    np.testing.assert_array_equal(seen[0], plain[0])


def test_grad_sink_paths():
    from deepgrad.autograd import grad_sink
    from deepgrad.backend import get_backend
    be = get_backend("cpu")
    p = dg.tensor(np.ones((2, 3)), requires_grad=True)
    buf, direct = grad_sink(p, p.data, be)
    assert direct and p.grad is not None and np.shares_memory(buf, p.grad.data)
    p.register_hook(lambda g: g)
    buf2, direct2 = grad_sink(p, p.data, be)
    assert not direct2 and not np.shares_memory(buf2, p.grad.data) and not buf2.any()
