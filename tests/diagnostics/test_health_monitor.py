"""Tensor health in the monitor (issue 13): every recorded step keeps the per-layer L-infinity
norm and non-finite count of the gradients (from the same native pass as the L2 norms), a
planted NaN is reported naming the step, the layer, the parameter (its state_dict name) and
the element, and clip_grad_norm_(error_if_nonfinite=True) names the parameter too."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import losses, nn
from deepgrad.monitor import GradientMonitor
from deepgrad.nn.utils import clip_grad_norm_


def _model():
    dg.manual_seed(0)
    return nn.Sequential(nn.Dense(3, 8, "tanh"), nn.Dense(8, 8, "relu"), nn.Dense(8, 2))


def _step(model, mon, plant=None):
    x = dg.tensor(np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32))
    model.zero_grad()
    loss = losses.cross_entropy(model(x), np.zeros(6, np.int64))
    loss.backward()
    if plant is not None:
        name, index, value = plant
        dict(model.named_parameters())[name].grad.numpy()[index] = value
    mon.step(loss)


def test_linf_and_counts_per_layer():
    model = _model()
    mon = GradientMonitor(model)
    _step(model, mon)
    d = mon.to_dict()
    grads = {n: np.abs(p.grad.numpy()).max() for n, p in model.named_parameters()}
    expect = [max(grads[f"{i}.weight"], grads[f"{i}.bias"]) for i in range(3)]
    np.testing.assert_allclose(d["layer_grad_linf"][0], expect, rtol=1e-6)
    assert d["layer_nonfinite"][0] == [0, 0, 0] and d["first_nonfinite"][0] is None


def test_planted_nan_is_named():
    model = _model()
    mon = GradientMonitor(model)
    _step(model, mon)
    _step(model, mon, plant=("1.weight", (2, 5), np.nan))
    d = mon.to_dict()
    assert d["layer_nonfinite"][1] == [0, 1, 0]
    assert d["first_nonfinite"][1] == ["1.weight", 2 * 8 + 5, 1]
    f = next(f for f in mon.diagnose() if f.kind == "nonfinite")
    assert "1.weight" in f.message and "layer 2 (1:Dense)" in f.message
    assert "step 1" in f.message and "element 21" in f.message


def test_clip_names_the_parameter():
    model = _model()
    mon = GradientMonitor(model)
    _step(model, mon, plant=("2.bias", (1,), np.inf))
    with pytest.raises(RuntimeError, match=r"first in 2\.bias, element 1: inf"):
        clip_grad_norm_(model, 1.0, error_if_nonfinite=True)
