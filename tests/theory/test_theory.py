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
    # Schoenholz et al. 2017 give the edge of chaos of tanh at sigma_b^2 = 0.05 as
    # sigma_w^2 ~ 1.76, three significant figures: the value must round to it (|err| <= 0.005),
    # and at that value chi_1 must be 1 under the independent Simpson reference below
    crit = T.critical_sigma_w2("tanh", 0.05)
    assert round(crit, 2) == 1.76
    q = T.fixed_point_q("tanh", crit, 0.05)
    assert crit * _slow(lambda z: (1 - np.tanh(math.sqrt(q) * z) ** 2) ** 2) == pytest.approx(
        1.0, abs=1e-9)
    assert T.chi1("tanh", crit, 0.05) == pytest.approx(1.0, abs=1e-12)
    # at sigma_b^2 = 0 chi_1 - 1 is only second order in sigma_w^2 - 1 on the chaotic side
    # (q* ~ (sigma_w^2 - 1) / 2 sigma_w^2 cancels the first order), so the root is located to
    # about sqrt(machine epsilon)
    assert T.critical_sigma_w2("tanh", 0.0) == pytest.approx(1.0, abs=1e-7)
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


_CASES = [("tanh", 1.2, 0.05), ("tanh", 3.0, 0.05), ("tanh", 2.5, 0.0), ("sigmoid", 4.0, 0.1),
          ("relu", 1.5, 0.2), ("leaky_relu", 1.9, 0.01), ("elu", 1.5, 0.1), ("selu", 1.0, 0.0),
          ("gelu", 3.0, 0.1), ("silu", 3.5, 0.05), ("softplus", 0.5, 0.3),
          ("softsign", 3.0, 0.1)]


@pytest.mark.parametrize("act,sw,sb", _CASES)
def test_quadrature_converges_when_the_order_doubles(act, sw, sb, monkeypatch):
    """Every quantity moves by less than 1e-10 (relative) when the number of nodes doubles
    (100 -> 200 per half line and per side of the 2-D kink), in both phases."""
    def everything():
        c_star, slope = T.chi_c(act, sw, sb)
        return np.array([T.fixed_point_q(act, sw, sb), T.chi1(act, sw, sb), c_star, slope,
                         T.xi_q(act, sw, sb), T.c_map(0.3, act, sw, sb)])
    base = everything()
    monkeypatch.setattr(T, "_N1", 2 * T._N1)
    np.testing.assert_allclose(everything(), base, rtol=1e-10, atol=1e-13)


def test_c_map_matches_the_relu_arc_cosine_kernel():
    """E[relu(u1) relu(u2)] = q (sqrt(1 - c^2) + (pi - arccos c) c) / (2 pi) (Cho & Saul
    2009): the 2-D rule with its kink-aware split is exact to rounding for a kinked phi."""
    sw, sb = 1.5, 0.2
    q = T.fixed_point_q("relu", sw, sb)
    for c in (-0.9, -0.3, 0.0, 0.5, 0.9, 0.99, 1.0):
        k = q * (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / (2 * math.pi)
        assert T.c_map(c, "relu", sw, sb) == pytest.approx((sw * k + sb) / q, abs=1e-13)
    # ordered phase: c* = 1 and the slope there is chi_1
    assert T.chi_c("relu", sw, sb) == (1.0, pytest.approx(sw / 2, rel=1e-12))
    # beyond chi_1 = 1 q* diverges, the normalised c map tends to the sigma_b = 0 one whose
    # slope at c = 1 is 1: no chaotic phase of correlations, xi_c = inf
    assert math.isinf(T.fixed_point_q("relu", 3.0, 0.1))
    assert T.chi_c("relu", 3.0, 0.1) == (1.0, pytest.approx(1.0, abs=1e-9))
    assert math.isinf(T.xi_c("relu", 3.0, 0.1))
    assert T.predict("relu", 3.0, 0.1, 4)["ratio_per_layer"] == pytest.approx(math.sqrt(1.5))


def _trapezoid_expect2(f, g, q, c, n=1201):
    """E[f(u1) g(u2)] by the trapezoid rule on a dense n x n grid over [-10, 10]^2: an
    independent, slow reference, exponentially accurate for smooth activations (the integrand
    is smooth and decays like a Gaussian; Gauss-Hermite at 200 nodes misses the sharp sigmoid
    of variance 190 by 2e-4)."""
    z = np.linspace(-10.0, 10.0, n)
    w = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * (z[1] - z[0])
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    s = math.sqrt(q)
    u2 = s * (c * z1 + math.sqrt(1 - c * c) * z2)
    return float(np.sum(np.outer(w, w) * f(s * z1) * g(u2)))


@pytest.mark.parametrize("act,sw,sb", [("tanh", 2.5, 0.05), ("tanh", 1.9, 0.05),
                                       ("sigmoid", 400.0, 0.1), ("gelu", 1.99, 0.5)])
def test_chaotic_fixed_point_against_a_dense_reference(act, sw, sb):
    """In the chaotic phase c* < 1 is a fixed point of an independently computed c map and
    chi_c is its slope there (sigmoid's edge of chaos is near sigma_w^2 = 103; GELU's at
    sigma_b^2 = 0.5 is 1.96, and beyond 2 its q* diverges)."""
    phi, dphi, _ = T.ACTIVATIONS[act]
    assert T.chi1(act, sw, sb) > 1
    q = T.fixed_point_q(act, sw, sb)
    c_star, slope = T.chi_c(act, sw, sb)
    assert 0 < c_star < 1 and 0 < slope < 1
    ref_c = (sw * _trapezoid_expect2(phi, phi, q, c_star) + sb) / q
    assert ref_c == pytest.approx(c_star, abs=1e-10)
    assert sw * _trapezoid_expect2(dphi, dphi, q, c_star) == pytest.approx(slope, rel=1e-9)
    assert T.xi_c(act, sw, sb) == pytest.approx(-1 / math.log(slope), rel=1e-12)


def test_fixed_point_is_reached_from_any_start():
    """q* is a fixed point of the map, the same from small and large input variances, and the
    map iterated layer by layer (what a net does) converges to it."""
    for act, sw, sb in _CASES:
        q = T.fixed_point_q(act, sw, sb)
        if not math.isfinite(q) or q == 0:
            continue
        assert T.q_map(q, act, sw, sb) == pytest.approx(q, rel=1e-12)
        for q0 in (1e-3, 30.0):
            assert T.fixed_point_q(act, sw, sb, q0=q0) == pytest.approx(q, rel=1e-12)
    q = 7.0
    for _ in range(300):
        q = T.q_map(q, "tanh", 1.2, 0.05)
    assert q == pytest.approx(T.fixed_point_q("tanh", 1.2, 0.05), rel=1e-12)
    # the variance dies out in the ordered phase without biases; diverges for chaotic ReLU
    assert T.fixed_point_q("tanh", 0.8, 0.0) == 0.0
    assert T.chi1("tanh", 0.8, 0.0) == pytest.approx(0.8, rel=1e-12)   # the sigma_b -> 0 limit


def test_slopes_follow_the_layers_alpha():
    """leaky_relu's slope and elu's alpha (the layers' ``alpha``) enter the formulas."""
    assert T.chi1("leaky_relu", 1.0, 0.0, alpha=0.2) == pytest.approx((1 + 0.04) / 2, rel=1e-12)
    assert T.critical_sigma_w2("leaky_relu", 0.0, alpha=0.2) == pytest.approx(2 / 1.04,
                                                                                rel=1e-12)
    f, d, _ = T._elu_family(1.0, 0.5)
    sw, sb = 1.3, 0.07
    q = T.fixed_point_q("elu", sw, sb, alpha=0.5)
    assert sw * _slow(lambda z: f(math.sqrt(q) * z) ** 2) + sb == pytest.approx(q, rel=1e-9)
    assert T.chi1("elu", sw, sb, alpha=0.5) == pytest.approx(
        sw * _slow(lambda z: d(math.sqrt(q) * z) ** 2), rel=1e-9)
    assert T.chi1("elu", sw, sb, alpha=0.5) != pytest.approx(T.chi1("elu", sw, sb), rel=1e-3)


def test_predict_is_one_consistent_record():
    p = T.predict("tanh", 3.0, 0.05, 10)
    assert p["ratio_per_layer"] == pytest.approx(math.sqrt(p["chi1"]), rel=1e-15)
    assert p["signal"].shape == (10,) and p["signal"][-1] == 1.0
    np.testing.assert_allclose(p["signal"][:-1] / p["signal"][1:], p["ratio_per_layer"],
                               rtol=1e-12)
    assert (p["c_star"], p["chi_c"]) == T.chi_c("tanh", 3.0, 0.05)
    assert p["xi_c"] == T.xi_c("tanh", 3.0, 0.05) and p["xi_q"] == T.xi_q("tanh", 3.0, 0.05)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="depth"):
            T.predict("tanh", 1.0, 0.0, bad)
    with pytest.raises(ValueError, match="sigma_b2"):
        T.chi1("tanh", 1.0, float("nan"))
    with pytest.raises(ValueError, match="q0"):
        T.fixed_point_q("tanh", 1.0, 0.1, q0=float("nan"))


@pytest.mark.parametrize("init,act,fan_in,fan_out,alpha", [
    ("he", "relu", 400, 400, None), ("he_uniform", "leaky_relu", 400, 300, 0.2),
    ("kaiming", "tanh", 300, 400, None), ("he", "sigmoid", 400, 400, None),
    ("xavier_uniform", "tanh", 500, 200, None), ("glorot_normal", "sigmoid", 200, 500, None),
    ("auto", "selu", 400, 400, None), (None, "elu", 400, 400, None),
    ("auto", "tanh", 300, 300, None),
    ("lecun", "identity", 400, 300, None), ("orthogonal", "tanh", 400, 400, None),
    ("normal", "sigmoid", 400, 400, None), ("uniform", "relu", 400, 100, None)])
def test_sigma_w2_of_init_is_what_the_layer_draws(init, act, fan_in, fan_out, alpha):
    """fan_in * Var(W) of a freshly initialised nn.Dense equals sigma_w2_of_init within 3%
    (the sample variance of >= 40k weights has a relative sd under 0.7%)."""
    expected = T.sigma_w2_of_init(init, act, fan_in, fan_out,
                                  **({} if alpha is None else {"alpha": alpha}))
    dg.manual_seed(1)
    kw = {} if alpha is None else {"alpha": alpha}
    layer_init = None if init == "auto" else init   # the study's "auto" is the layer's None
    w = nn.Dense(fan_in, fan_out, act, init=layer_init, dtype=np.float64, **kw).weight.numpy()
    assert w.shape == (fan_in, fan_out)
    assert fan_in * float(np.mean(w * w)) == pytest.approx(expected, rel=0.03)


def test_sigma_w2_of_init_without_a_value():
    assert T.sigma_w2_of_init("zeros", "relu") is None
    assert T.sigma_w2_of_init("ones", "tanh", 64) is None
    assert T.sigma_w2_of_init("normal", "tanh") is None          # needs fan_in
    assert T.sigma_w2_of_init(lambda t: t, "tanh", 64) is None   # a callable
    assert T.sigma_w2_of_init("bogus", "tanh", 64) is None
    assert T.sigma_w2_of_init("xavier", "tanh", 64) == 1.0       # fan_out defaults to fan_in


@pytest.mark.parametrize("sw", [1.0, 3.0], ids=["ordered", "chaotic"])
def test_wide_tanh_net_follows_the_prediction(sw):
    """Width 512, depth 20, sigma_b^2 = 0.05, at initialisation: the geometric mean of the
    measured per-layer ratio ||dL/dy_l|| / ||dL/dy_{l+1}|| over layers 4-19 (retained
    gradients of the layer outputs, what the monitor records) agrees with sqrt(chi_1) within
    2%. Why 2%: over 12 seeds this geometric mean deviated from sqrt(chi_1) with a standard
    deviation of 0.3% (ordered) and 0.1% (chaotic), at most 0.7% (single layers scatter by
    ~0.9%), so 2% is over 6 standard deviations; chi_1 in place of its square root would be
    13% (ordered) and 10% (chaotic) off."""
    sb, width, depth = 0.05, 512, 20
    rng = np.random.default_rng(0)
    layers = [nn.Dense(width, width, "tanh", dtype=np.float64) for _ in range(depth)]
    for m in layers:
        m.weight.numpy()[...] = rng.standard_normal((width, width)) * math.sqrt(sw / width)
        m.bias.numpy()[...] = rng.standard_normal(width) * math.sqrt(sb)
    q = T.fixed_point_q("tanh", sw, sb)   # inputs like a layer output at the fixed point
    x = dg.tensor(rng.standard_normal((64, width)) * math.sqrt((q - sb) / sw), dtype=dg.float64)
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
    assert measured == pytest.approx(predicted, rel=0.02)
