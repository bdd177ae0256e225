"""Mean-field theory (issue 17): known values in float64, quadrature convergence, cross-checks
against slow high-order references, and one measurement: a wide deepgrad tanh MLP at
initialisation back-propagates with the predicted per-layer ratio in both phases."""
import math

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import nn, theory as T


def test_relu_critical_at_two():
    assert T.critical_sigma_w2("relu", 0.0) == pytest.approx(2.0, abs=1e-9)
    assert T.chi1("relu", 2.0, 0.0) == pytest.approx(1.0, abs=1e-12)
    for s in (0.5, 1.0, 3.0):
        assert T.chi1("relu", s, 0.0) == pytest.approx(s / 2, rel=1e-12)


def test_tanh_critical_line():
    # Schoenholz et al. 2017 (fig. 1/6): at sigma_b^2 = 0.05 the edge of chaos is at ~1.76
    assert T.critical_sigma_w2("tanh", 0.05) == pytest.approx(1.76, abs=0.01)
    assert T.critical_sigma_w2("tanh", 0.0) == pytest.approx(1.0, abs=1e-6)
    # the critical line rises with sigma_b^2
    assert T.critical_sigma_w2("tanh", 0.2) > T.critical_sigma_w2("tanh", 0.05)


@pytest.mark.parametrize("s", [0.3, 1.0, 2.7])
def test_linear_chi1_is_sigma_w2(s):
    assert T.chi1("identity", s, 0.1) == pytest.approx(s, rel=1e-12)
    assert T.chi1("linear", s, 0.0) == pytest.approx(s, rel=1e-12)


def test_relu_fixed_point_closed_form():
    for sw, sb in ((1.0, 0.1), (1.5, 0.3), (1.9, 0.01)):
        assert T.fixed_point_q("relu", sw, sb) == pytest.approx(sb / (1 - sw / 2), rel=1e-9)
    assert math.isinf(T.fixed_point_q("relu", 2.5, 0.1))


def _slow(f, n=200001):
    """E[f(z)], z ~ N(0, 1), by composite Simpson on [-12, 0] and [0, 12] (one-sided values
    at 0, where the ReLU family's derivative jumps): an independent, slow reference."""
    total = 0.0
    for a, b, edge in ((-12.0, 0.0, -1), (0.0, 12.0, 0)):
        z = np.linspace(a, b, n)
        z[edge] = -1e-300 if edge == -1 else 1e-300   # scaled by sqrt(q) it stays nonzero
        y = f(z) * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        h = (b - a) / (n - 1)
        total += h / 3 * (y[0] + y[-1] + 4 * y[1:-1:2].sum() + 2 * y[2:-1:2].sum())
    return float(total)


@pytest.mark.parametrize("act", ["sigmoid", "gelu", "tanh", "silu", "softplus", "elu", "relu",
                                 "leaky_relu", "selu", "softsign"])
def test_against_a_slow_reference(act):
    """q map and chi_1 against a fine Simpson rule written out here, and the composite check
    that q* is a fixed point of the independent reference map (kinked activations included)."""
    rel = 1e-9
    phi, dphi, _ = T.ACTIVATIONS[act]
    sw, sb = 1.3, 0.07

    q = T.fixed_point_q(act, sw, sb)
    ref_q = sw * _slow(lambda z: phi(math.sqrt(q) * z) ** 2) + sb
    assert ref_q == pytest.approx(q, rel=rel)
    ref_chi = sw * _slow(lambda z: dphi(math.sqrt(q) * z) ** 2)
    assert T.chi1(act, sw, sb) == pytest.approx(ref_chi, rel=rel)


def test_gelu_derivative_matches_finite_differences():
    for act in ("gelu", "silu", "softsign", "elu", "sigmoid", "tanh"):
        f, d, dd = T.ACTIVATIONS[act]
        x = np.linspace(-3, 3, 13) + 0.01
        h = 1e-6
        np.testing.assert_allclose(d(x), (f(x + h) - f(x - h)) / (2 * h), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(dd(x), (d(x + h) - d(x - h)) / (2 * h), rtol=1e-5, atol=1e-7)


def test_depth_scales_and_phases():
    p = T.predict("tanh", 1.0, 0.05, 20)
    assert p["chi1"] < 1 and p["c_star"] == 1.0
    assert p["xi_c"] == pytest.approx(-1 / math.log(p["chi1"]), rel=1e-12)
    np.testing.assert_allclose(p["signal"], p["chi1"] ** ((20 - np.arange(1, 21)) / 2))
    crit = T.critical_sigma_w2("tanh", 0.05)
    assert T.xi_c("tanh", crit, 0.05) > 1e3   # diverges at the edge of chaos
    c_star, slope = T.chi_c("tanh", 3.0, 0.05)
    assert 0 < c_star < 1 and slope < 1       # chaotic: a stable c* < 1
    assert T.xi_c("tanh", 3.0, 0.05) == pytest.approx(-1 / math.log(slope), rel=1e-12)
    with pytest.raises(ValueError, match="sigma_w2"):
        T.predict("tanh", -1.0, 0.0, 3)
    with pytest.raises(ValueError, match="no mean-field formulas"):
        T.chi1("step", 1.0, 0.0)
    assert T.supports("relu") and not T.supports("step")


def test_sigma_w2_of_deepgrad_inits():
    assert T.sigma_w2_of_init("he", "relu") == pytest.approx(2.0)
    assert T.sigma_w2_of_init("he", "tanh") == pytest.approx(25 / 9)
    assert T.sigma_w2_of_init("xavier", "tanh", 64, 64) == pytest.approx(1.0)
    assert T.sigma_w2_of_init("normal", "sigmoid", 64, 64) == pytest.approx(64e-4)
    assert T.sigma_w2_of_init("zeros", "relu") is None
    # and the scheme really gives that variance
    dg.manual_seed(0)
    w = nn.Dense(400, 400, "relu", init="he").weight.numpy()
    assert 400 * w.var() == pytest.approx(2.0, rel=0.02)


@pytest.mark.parametrize("sw", [1.0, 3.0], ids=["ordered", "chaotic"])
def test_wide_tanh_net_follows_the_prediction(sw):
    """Width 512, depth 20, sigma_b^2 = 0.05, at initialisation: the geometric mean of the
    measured per-layer ratio ||dL/dy_l|| / ||dL/dy_{l+1}|| over layers 4-19 agrees with
    sqrt(chi_1) within 5% (finite-width fluctuations are ~1/sqrt(512) per layer and average
    out over 15 layers and a batch of 64)."""
    sb, width, depth = 0.05, 512, 20
    rng = np.random.default_rng(0)
    layers = [nn.Dense(width, width, "tanh", dtype=np.float64) for _ in range(depth)]
    for m in layers:
        m.weight.numpy()[...] = rng.standard_normal((width, width)) * math.sqrt(sw / width)
        m.bias.numpy()[...] = rng.standard_normal(width) * math.sqrt(sb)
    model = nn.Sequential(*layers)
    q = T.fixed_point_q("tanh", sw, sb)
    x = dg.tensor(rng.standard_normal((64, width)) * math.sqrt(q), dtype=dg.float64)
    outs = []
    h = x
    for m in layers:
        h = m(h)
        h.retain_grad()
        outs.append(h)
    g = dg.tensor(rng.standard_normal((64, width)), dtype=dg.float64)
    (h * g).sum().backward()
    norms = np.array([np.linalg.norm(o.grad.numpy()) for o in outs])
    ratios = norms[3:-1] / norms[4:]
    measured = float(np.exp(np.mean(np.log(ratios))))
    predicted = T.predict("tanh", sw, sb, depth)["ratio_per_layer"]
    assert measured == pytest.approx(predicted, rel=0.05)
