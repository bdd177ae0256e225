"""Initialisers: gains vs torch, distribution moments, orthogonality, seeding, init names."""
import math

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import init, nn


def _w(shape, dtype=np.float64):
    return nn.Parameter(np.zeros(shape, dtype=dtype))


def test_calculate_gain_matches_torch():
    torch = pytest.importorskip("torch")
    for nl, param in [("linear", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                      ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)]:
        assert math.isclose(init.calculate_gain(nl, param),
                            torch.nn.init.calculate_gain(nl, param), rel_tol=1e-12)
    with pytest.raises(ValueError, match="unknown nonlinearity"):
        init.calculate_gain("relu6")


@pytest.mark.parametrize("fn,expected_std", [
    (lambda w: init.xavier_normal_(w), math.sqrt(2.0 / (400 + 300))),
    (lambda w: init.xavier_uniform_(w, gain=2.0), 2.0 * math.sqrt(6.0 / 700) / math.sqrt(3)),
    (lambda w: init.kaiming_normal_(w), math.sqrt(2.0 / 400)),
    (lambda w: init.kaiming_normal_(w, mode="fan_out"), math.sqrt(2.0 / 300)),
    (lambda w: init.kaiming_uniform_(w, a=0.2, nonlinearity="leaky_relu"),
     math.sqrt(2.0 / 1.04) * math.sqrt(3.0 / 400) / math.sqrt(3)),
    (lambda w: init.lecun_normal_(w), math.sqrt(1.0 / 400)),
    (lambda w: init.normal_(w, 1.0, 0.5), 0.5),
    (lambda w: init.uniform_(w, -2.0, 2.0), 4.0 / math.sqrt(12)),
])
def test_initialiser_moments(fn, expected_std):
    dg.manual_seed(0)
    w = fn(_w((400, 300))).numpy()          # weights are (fan_in, fan_out)
    assert abs(w.std() - expected_std) < 0.01 * expected_std
    assert np.unique(w).size > 1000


def test_uniform_bounds_constant_and_orthogonal():
    dg.manual_seed(1)
    w = init.xavier_uniform_(_w((50, 30))).numpy()
    assert np.abs(w).max() <= math.sqrt(6.0 / 80)
    assert np.all(init.constant_(_w((3, 3)), 0.25).numpy() == 0.25)
    assert np.all(init.ones_(_w((2,))).numpy() == 1) and not init.zeros_(_w((2,))).numpy().any()
    tall = init.orthogonal_(_w((40, 10)), gain=2.0).numpy()
    np.testing.assert_allclose(tall.T @ tall, 4.0 * np.eye(10), atol=1e-10)
    wide = init.orthogonal_(_w((10, 40))).numpy()
    np.testing.assert_allclose(wide @ wide.T, np.eye(10), atol=1e-10)
    with pytest.raises(ValueError, match="at least 2"):
        init.orthogonal_(_w((4,)))


def test_seeded_and_in_place_on_arena_views():
    dg.manual_seed(5)
    a = nn.Dense(8, 8, init="he_uniform").weight.numpy().copy()
    dg.manual_seed(5)
    b = nn.Dense(8, 8, init="he_uniform").weight.numpy()
    np.testing.assert_array_equal(a, b)
    m = nn.Sequential(nn.Dense(4, 4), nn.Dense(4, 4))
    arena = m.arena
    w = m[1].weight
    view = w.data
    init.normal_(w, 0.0, 1.0)                  # fills the arena view in place
    assert w.data is view and np.shares_memory(view, arena.params)


def test_init_names_and_defaults():
    assert init.default_for("relu") == "he" and init.default_for("gelu") == "he"
    assert init.default_for("tanh") == "xavier" and init.default_for(None) == "xavier"
    assert init.default_for("selu") == "lecun"
    for name in init.INITIALIZERS:
        nn.Dense(6, 5, "relu", init=name)
    calls = []
    nn.Dense(3, 2, init=lambda t: calls.append(t.shape) or init.zeros_(t))
    assert calls == [(3, 2)]


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", None])
def test_xavier_by_name_uses_glorot_gain_one(activation):
    # Glorot & Bengio's normalized init (and torch.nn.init.xavier_*_'s default) has gain 1;
    # with tanh that keeps a deep net's backward signal level (gain 5/3 grows it ~100x at depth 20).
    dg.manual_seed(3)
    layer = dg.nn.Dense(400, 600, activation, init="xavier_normal")
    std = layer.weight.numpy().std()
    assert abs(std - np.sqrt(2.0 / (400 + 600))) < 0.02 * np.sqrt(2.0 / (400 + 600))
