"""Mean-field signal propagation at initialisation (Poole et al. 2016, Schoenholz et al. 2017).

For a deep fully-connected net with weights W_ij ~ N(0, sigma_w^2 / fan_in), biases
b_i ~ N(0, sigma_b^2) and activation phi, in the limit of infinite width:

- the pre-activation variance follows the *q map*  q_{l+1} = sigma_w^2 E[phi(sqrt(q_l) z)^2]
  + sigma_b^2 (z ~ N(0, 1)), with fixed point q*;
- the correlation of two inputs follows the *c map*, whose slope at c = 1 is
  chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2];
- back-propagated gradients obey E||dL/dy_l||^2 = chi_1 E||dL/dy_{l+1}||^2, so the gradient norm
  changes by sqrt(chi_1) per layer: chi_1 < 1 is the ordered phase (vanishing gradients),
  chi_1 > 1 the chaotic phase (exploding), chi_1 = 1 the edge of chaos;
- depth scales: xi_q = -1/log(chi_1 + sigma_w^2 E[phi''(u) phi(u)]) (u = sqrt(q*) z) for q to
  reach q*, and xi_c = -1/log(chi_c) for correlations, chi_c the c map's slope at its stable
  fixed point c* (c* = 1 and chi_c = chi_1 in the ordered phase); networks deeper than about
  6 xi_c do not train (Schoenholz et al., fig. 6).

Every expectation is a deterministic quadrature, no sampling. 1-D expectations E[g(sqrt(q) z)]
use Gauss-Legendre on [-12, 0] and [0, 12] times the normal density, not plain Gauss-Hermite:
the ReLU family's and SELU's derivatives jump at 0, where Gauss-Hermite converges only like
1/n (2e-3 relative error at 200 nodes for ELU); with the split the convergence is spectral
for every activation here. 2-D expectations of the c map split the inner integral where the
second pre-activation changes sign, so the arc-cosine kernel of ReLU comes out exact to
rounding. For q > 1 both rules use geometric panels around the kink (widths 1/sqrt(q),
4/sqrt(q), ...), so that a saturating activation's narrow derivative at large q* (tanh at
sigma_w^2 = 1e4 and beyond) is resolved too. Results move by less than 1e-10 when the number
of nodes doubles.

What the monitor measures, the gradient norm of a layer's output ||dL/dy_l||, obeys the
third bullet, so ``predict(...)["ratio_per_layer"]`` is sqrt(chi_1) (not chi_1, which is the
factor of the squared norm) and ``predict(...)["signal"][l - 1]`` = chi_1 ** ((depth - l) / 2),
the norm at layer l relative to the last layer.

Edge cases, stated rather than hidden: q* is the fixed point reached from inputs of variance 1
(``q0``). Where the variance dies out (q* = 0: no biases, ordered phase) the slopes are the
sigma_b^2 -> 0+ limit (chi_1 = sigma_w^2 phi'(0)^2, both sides of a kink averaged); where it
grows without bound (q* = inf: ReLU-like tails with sigma_w^2 E[relu(z)^2] > 1) they are the
q -> inf limit, and the correlation map of such a net has slope 1 at c = 1: c* = 1, chi_c = 1,
xi_c = inf (ReLU nets have no chaotic phase of correlations, Poole et al.), while gradients
still grow by sqrt(chi_1) per layer.

Where it stops applying: finite width (fluctuations of order 1/sqrt(width) per layer, so the
measured ratio scatters around the prediction, more at small widths and large depths), any time
after initialisation (training changes the weights' statistics), batch norm and residual
connections (other recursions), and recurrent nets (weights shared over time).
"""
from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["supports", "q_map", "fixed_point_q", "c_map", "chi1", "chi_c", "xi_q", "xi_c",
           "predict", "critical_sigma_w2", "sigma_w2_of_init", "ACTIVATIONS"]

_N1 = 100   # Gauss-Legendre nodes per half line (1-D) and per side of the kink (2-D inner)
_L = 12.0   # the normal mass beyond 12 is below 1e-32
_Q_INF = 1e24   # the variances at which the q -> inf and q -> 0+ limits are evaluated
_Q_ZERO = 1e-30


def _npdf(x):
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


@functools.lru_cache(maxsize=8)
def _legendre(n: int):
    return np.polynomial.legendre.leggauss(n)


def _normal_rule(n: int, a, b):
    """Nodes z and weights w with sum w g(z) ~ E[g(z); a < z < b], z ~ N(0, 1), by n-point
    Gauss-Legendre on [a, b] times the density; a, b may be arrays (one interval per row)."""
    x, w = _legendre(n)
    a, b = np.asarray(a, dtype=np.float64)[..., None], np.asarray(b, dtype=np.float64)[..., None]
    z = a + 0.5 * (b - a) * (x + 1.0)
    return z, 0.5 * (b - a) * w * _npdf(z)


@functools.lru_cache(maxsize=8)
def _rule1(n: int):
    """E[g(z)] = sum w g(z), z ~ N(0, 1): Gauss-Legendre on [-12, 0] and [0, 12]. Splitting at
    0 keeps the convergence spectral for the activations whose derivative jumps there (ReLU
    family, SELU, softsign's second derivative), where Gauss-Hermite converges only like 1/n."""
    z, w = _normal_rule(n, [-_L, 0.0], [0.0, _L])
    return z.ravel(), w.ravel()


_NP = 32      # Gauss-Legendre nodes per panel of the scaled rules (q > 1)


def _panels(s: float):
    """Breakpoints 0, 1/s, 4/s, 16/s, ... below _L, then _L: the panels of the positive half
    line for E[g(s z)] with s > 1. g's features sit at |s z| ~ 1, i.e. |z| ~ 1/s, far inside
    the first node of the plain rule when s is large (tanh's chi_1 at q* = 1e4 came out 1%
    low, at 1e6 ten times too low), while the density's sit at |z| ~ 1: geometric panels
    resolve both."""
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"theory: no quadrature for sqrt(q) = {s!r}; q must be finite")
    ks = [0.0]
    k = 1.0 / s
    while k < _L:
        ks.append(k)
        k *= 4.0
    ks.append(_L)
    return np.asarray(ks)


@functools.lru_cache(maxsize=64)
def _rule_scaled(s: float):
    """Nodes z and weights w with sum w g(s z) ~ E[g(s z)], z ~ N(0, 1): the plain rule for
    s <= 1 (g varies on the density's scale or slower), geometric panels (_panels) on each half
    line for s > 1."""
    if s <= 1.0:
        return _rule1(_N1)
    b = _panels(s)
    z, w = _normal_rule(_NP, b[:-1], b[1:])
    z, w = z.ravel(), w.ravel()
    return np.concatenate([-z[::-1], z]), np.concatenate([w[::-1], w])


def _expect(g, q: float) -> float:
    """E[g(sqrt(q) z)], z ~ N(0, 1)."""
    z, w = _rule_scaled(math.sqrt(q))
    return float(np.dot(w, g(math.sqrt(q) * z)))


def _expect2(g1, g2, q: float, c: float) -> float:
    """E[g1(u1) g2(u2)] for (u1, u2) centred Gaussian with variances q and correlation c:
    u1 = sqrt(q) z1, u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2). The outer rule splits z1 at 0 and
    the inner rule splits z2 where u2 = 0, so both kinks sit on interval ends; for large q both
    use geometric panels around their kink (see _panels), the inner ones on the scale
    1 / (sqrt(q) sqrt(1 - c^2)) on which g2 varies in z2."""
    s, r = math.sqrt(q), math.sqrt(max(0.0, 1.0 - c * c))
    z1, w1 = _rule_scaled(s)
    if r == 0.0:
        return float(np.dot(w1, g1(s * z1) * g2(s * c * z1)))
    t = np.clip(-c * z1 / r, -_L, _L)
    if s * r <= 1.0:
        ends = [(np.full(t.shape, -_L), t), (t, np.full(t.shape, _L))]
        n = _N1
    else:
        off = _panels(s * r)[1:-1]          # 1, 4, 16, ... / (s r), below _L
        off = np.concatenate([off, [2.0 * _L]])
        right = np.clip(t[:, None] + off[None, :], -_L, _L)
        left = np.clip(t[:, None] - off[None, :], -_L, _L)
        bps = np.concatenate([left[:, ::-1], t[:, None], right], axis=1)
        ends = [(bps[:, i], bps[:, i + 1]) for i in range(bps.shape[1] - 1)]
        ends.insert(0, (np.full(t.shape, -_L), bps[:, 0]))
        ends.append((bps[:, -1], np.full(t.shape, _L)))
        n = _NP
    inner = 0.0
    for a, b in ends:
        z2, w2 = _normal_rule(n, a, b)
        inner = inner + np.sum(w2 * g2(s * (c * z1[:, None] + r * z2)), axis=1)
    return float(np.dot(w1, g1(s * z1) * inner))


def _sig(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


_erf = np.frompyfunc(math.erf, 1, 1)


def _ncdf(x):
    return 0.5 * (1.0 + _erf(np.asarray(x) / math.sqrt(2.0)).astype(np.float64))


_SELU_L, _SELU_A = 1.0507009873554805, 1.6732632423543772


def _elu_family(scale, alpha):
    def f(x):
        return scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))

    def d(x):
        return scale * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0)))

    def dd(x):
        return scale * np.where(x > 0, 0.0, alpha * np.exp(np.minimum(x, 0.0)))
    return f, d, dd


def _leaky(a):
    return (lambda x: np.where(x > 0, x, a * x), lambda x: np.where(x > 0, 1.0, a),
            lambda x: np.zeros_like(x))


#: activation -> (phi, phi', phi''), deepgrad's dense activations (deepgrad.functional) except
#: "step", whose derivative is 0 almost everywhere; leaky_relu at slope 0.01 and elu at
#: alpha 1, other values through the functions' ``alpha`` argument
ACTIVATIONS = {
    "identity": (lambda x: x, lambda x: np.ones_like(x), lambda x: np.zeros_like(x)),
    "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2,
             lambda x: -2.0 * np.tanh(x) * (1.0 - np.tanh(x) ** 2)),
    "sigmoid": (_sig, lambda x: _sig(x) * (1.0 - _sig(x)),
                lambda x: _sig(x) * (1.0 - _sig(x)) * (1.0 - 2.0 * _sig(x))),
    "relu": _leaky(0.0),
    "leaky_relu": _leaky(0.01),
    "elu": _elu_family(1.0, 1.0),
    "selu": _elu_family(_SELU_L, _SELU_A),
    "gelu": (lambda x: x * _ncdf(x), lambda x: _ncdf(x) + x * _npdf(x),
             lambda x: (2.0 - x * x) * _npdf(x)),
    "silu": (lambda x: x * _sig(x), lambda x: _sig(x) * (1.0 + x * (1.0 - _sig(x))),
             lambda x: _sig(x) * (1.0 - _sig(x)) * (2.0 + x * (1.0 - 2.0 * _sig(x)))),
    "softplus": (lambda x: np.logaddexp(0.0, x), _sig, lambda x: _sig(x) * (1.0 - _sig(x))),
    "softsign": (lambda x: x / (1.0 + np.abs(x)), lambda x: 1.0 / (1.0 + np.abs(x)) ** 2,
                 lambda x: -2.0 * np.sign(x) / (1.0 + np.abs(x)) ** 3),
}
_ALIASES = {"linear": "identity", "swish": "silu", "none": "identity", None: "identity"}
_HOMOGENEOUS = {"identity", "relu", "leaky_relu"}   # phi(a x) = a phi(x) for a > 0


def _name(activation) -> str:
    if activation is not None and not isinstance(activation, str):
        raise TypeError(f"theory: the activation must be a name (a str such as 'tanh'), got "
                        f"{type(activation).__name__} {activation!r}")
    a = activation.lower() if isinstance(activation, str) else activation
    a = _ALIASES.get(a, a)
    if a not in ACTIVATIONS:
        raise ValueError(f"theory: no mean-field formulas for activation {activation!r}; "
                         f"supported: {', '.join(sorted(ACTIVATIONS))} (and 'linear', 'swish')")
    return a


def _real(x) -> bool:
    """A real scalar (Python or numpy), not a bool."""
    return (isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, (bool, np.bool_)))


def _fns(activation, alpha=None):
    a = _name(activation)
    if alpha is not None:
        if a not in ("leaky_relu", "elu"):
            raise ValueError(f"theory: alpha={alpha!r} applies only to leaky_relu (the negative "
                             f"slope) and elu; {a} has no alpha, so drop it")
        if not (_real(alpha) and math.isfinite(alpha)):
            raise ValueError(f"theory: alpha (the {a} parameter) must be a finite number such "
                             f"as 0.01, got {alpha!r}")
        if a == "elu" and abs(alpha) > 100:
            raise ValueError(f"theory: elu's alpha must lie in [-100, 100] (the q -> inf limits "
                             f"are evaluated at q = {_Q_INF:g}, where an alpha of size a adds "
                             f"about a^2 / 2.5e12 to chi_1), got {alpha!r}")
    if alpha is not None and a == "leaky_relu":
        return _leaky(float(alpha))
    if alpha is not None and a == "elu":
        return _elu_family(1.0, float(alpha))
    return ACTIVATIONS[a]


def supports(activation: str) -> bool:
    """True when the mean-field formulas cover this activation name."""
    try:
        _name(activation)
        return True
    except (ValueError, TypeError):
        return False


_MAX_VAR = 1e12   # beyond it the fixed-point search cannot tell a large q* from a diverging one


def _check(sigma_w2, sigma_b2):
    if not (_real(sigma_w2) and math.isfinite(sigma_w2) and sigma_w2 > 0):
        raise ValueError(f"theory: sigma_w2 must be a positive number, got {sigma_w2!r}")
    if not (_real(sigma_b2) and math.isfinite(sigma_b2) and sigma_b2 >= 0):
        raise ValueError(f"theory: sigma_b2 must be a non-negative number, got {sigma_b2!r}")
    if sigma_w2 > _MAX_VAR or sigma_b2 > _MAX_VAR:
        raise ValueError(f"theory: sigma_w2 = {sigma_w2!r}, sigma_b2 = {sigma_b2!r}: the formulas "
                         f"are evaluated up to {_MAX_VAR:g} (beyond it a large fixed point q* "
                         "cannot be told from a diverging one); use smaller variances")


def q_map(q: float, activation: str, sigma_w2: float, sigma_b2: float, alpha=None) -> float:
    """sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2: the variance of the next layer's
    pre-activations when this layer's have variance q (z ~ N(0, 1))."""
    _check(sigma_w2, sigma_b2)
    _check_q(q, "q_map")
    f = _fns(activation, alpha)[0]
    return float(sigma_w2 * _expect(lambda u: f(u) ** 2, float(q)) + sigma_b2)


def _check_q(q, who: str) -> None:
    if not (_real(q) and math.isfinite(q) and 0 <= q <= _Q_INF):
        raise ValueError(f"theory.{who}: q (a pre-activation variance) must be a finite "
                         f"number in [0, {_Q_INF:g}], got {q!r}")


def fixed_point_q(activation: str, sigma_w2: float, sigma_b2: float, alpha=None,
                  q0: float = 1.0) -> float:
    """q*: the fixed point of the variance map that a net fed inputs of variance q0 settles
    at. The map is iterated from q0 (at most 100 layers, or until the step is below 1e-13 q)
    to find the basin, then the root of q_map(q) - q is bracketed from the last iterate and
    bisected to 1e-15 relative (iteration alone crawls near the edge of chaos, where the map's
    slope at q* tends to 1). Returns 0.0 when the variance decays to 0 (sigma_b^2 = 0 with
    phi(0) = 0 in the ordered phase) and inf when it grows without bound (ReLU-like
    activations with sigma_w^2 E[phi(z)^2] >= 1 in the linear regime). Positively homogeneous
    activations (identity, ReLU, leaky ReLU) in closed form: q* = sigma_b^2 / (1 - a),
    a = sigma_w^2 E[phi(z)^2]."""
    _check(sigma_w2, sigma_b2)
    if not (_real(q0) and math.isfinite(q0) and q0 > 0):
        raise ValueError(f"theory: q0 (the input variance) must be a positive number, got {q0!r}")
    if _name(activation) in _HOMOGENEOUS:
        a = q_map(1.0, activation, sigma_w2, 0.0, alpha)
        if abs(a - 1.0) <= 1e-12:       # critical: every q is a fixed point (b = 0) or none is
            return 0.0 if sigma_b2 == 0 else math.inf
        if a < 1.0:
            return sigma_b2 / (1.0 - a)
        return math.inf

    def h(q):
        return q_map(q, activation, sigma_w2, sigma_b2, alpha) - q
    q = float(q0)
    for _ in range(100):
        nq = q + h(q)
        if abs(nq - q) <= 1e-13 * max(q, 1e-300) or nq > 1e12:
            q = nq
            break
        q = nq
    if h(q) > 0:                        # q* lies above q: widen upwards
        lo, hi = q, max(2.0 * q, 1.0)
        while h(hi) > 0:
            lo, hi = hi, 2.0 * hi
            if hi > 1e15:
                return math.inf
    else:                               # q* lies at or below q: widen downwards
        lo, hi = q / 2.0, q
        while lo > 1e-300 and h(lo) < 0:
            lo, hi = lo / 16.0, lo
        if lo <= 1e-300:
            return 0.0
    for _ in range(200):
        m = 0.5 * (lo + hi)
        if h(m) > 0:
            lo = m
        else:
            hi = m
        if hi - lo <= 1e-15 * hi:
            break
    return 0.5 * (lo + hi)


def _q_eff(activation, sigma_w2, sigma_b2, alpha) -> float:
    """The variance at which the slopes are evaluated: q* when it is finite and positive; its
    limits (q -> inf where q* diverges, q -> 0+ where it is 0, so a kink at 0 counts both
    sides); 1 for homogeneous activations, whose slopes do not depend on q."""
    q = fixed_point_q(activation, sigma_w2, sigma_b2, alpha)
    if math.isinf(q):
        return _Q_INF
    if q == 0.0:
        return 1.0 if _name(activation) in _HOMOGENEOUS else _Q_ZERO
    return q


def chi1(activation: str, sigma_w2: float, sigma_b2: float, alpha=None) -> float:
    """sigma_w^2 E[phi'(sqrt(q*) z)^2]: the per-layer factor of the squared gradient norm
    (chi_1 < 1 ordered, > 1 chaotic, = 1 the edge of chaos). Where q* diverges, its q -> inf
    limit (sigma_w^2 / 2 for ReLU-like activations)."""
    _check(sigma_w2, sigma_b2)
    d = _fns(activation, alpha)[1]
    return float(sigma_w2 * _expect(lambda u: d(u) ** 2, _q_eff(activation, sigma_w2, sigma_b2,
                                                                   alpha)))


def c_map(c: float, activation: str, sigma_w2: float, sigma_b2: float, q: float | None = None,
          alpha=None) -> float:
    """The correlation of two inputs one layer deeper, both of pre-activation variance q
    (default q*): (sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2) / q_map(q), (u1, u2) with
    variance q and correlation c. c_map(1) = 1."""
    _check(sigma_w2, sigma_b2)
    if not (_real(c) and -1.0 - 1e-9 <= c <= 1.0 + 1e-9):
        raise ValueError(f"theory.c_map: c (a correlation) must be a number in [-1, 1], got "
                         f"{c!r}")
    if q is not None:
        _check_q(q, "c_map")
    f = _fns(activation, alpha)[0]
    q = _q_eff(activation, sigma_w2, sigma_b2, alpha) if q is None else float(q)
    c = min(max(float(c), -1.0), 1.0)
    den = q_map(q, activation, sigma_w2, sigma_b2, alpha)
    if den == 0.0:      # q = 0 with phi(0) = 0 and no bias: the map linearises to c -> c
        return c
    return (sigma_w2 * _expect2(f, f, q, c) + sigma_b2) / den


def _c_slope(c, activation, sigma_w2, sigma_b2, q, alpha) -> float:
    d = _fns(activation, alpha)[1]
    return sigma_w2 * q * _expect2(d, d, q, c) / q_map(q, activation, sigma_w2, sigma_b2, alpha)


def chi_c(activation: str, sigma_w2: float, sigma_b2: float, alpha=None) -> tuple[float, float]:
    """(c*, chi_c): the c map's stable fixed point in [0, 1] and its slope there. Ordered phase
    (chi_1 <= 1): c* = 1 and chi_c = chi_1. Chaotic phase: c* < 1, found by Newton's method
    from c = 0 (c_map is convex on [0, 1], so the iterates rise monotonically to c*), with a
    bisection bracket as a guard. Where q* diverges the map is taken in its q -> inf limit; for
    positively homogeneous activations its slope at c = 1 is then exactly 1, so c* = 1 and
    chi_c = 1 (correlations converge only polynomially: ReLU nets have no chaotic phase)."""
    x1 = chi1(activation, sigma_w2, sigma_b2, alpha)
    q = _q_eff(activation, sigma_w2, sigma_b2, alpha)
    qs = fixed_point_q(activation, sigma_w2, sigma_b2, alpha)
    if math.isinf(qs):
        s1 = _c_slope(1.0, activation, sigma_w2, sigma_b2, q, alpha)
        if s1 <= 1.0 + 1e-9:
            return 1.0, min(s1, 1.0)
    elif qs == 0.0 or x1 <= 1.0:
        return 1.0, x1

    def h(c):
        return c_map(c, activation, sigma_w2, sigma_b2, q, alpha) - c
    lo, hi, c = 0.0, 1.0, 0.0
    hc = h(c)
    if hc <= 0.0:
        return 0.0, _c_slope(0.0, activation, sigma_w2, sigma_b2, q, alpha)
    for _ in range(100):
        if hc > 0:
            lo = c
        else:
            hi = c
        slope = _c_slope(c, activation, sigma_w2, sigma_b2, q, alpha) - 1.0
        nc = c - hc / slope if slope < 0 else hi
        if not (lo < nc < hi):
            nc = 0.5 * (lo + hi)
        if abs(nc - c) <= 1e-15:
            c = nc
            break
        c, hc = nc, h(nc)
        if abs(hc) <= 1e-15:
            break
    return c, _c_slope(c, activation, sigma_w2, sigma_b2, q, alpha)


def xi_q(activation: str, sigma_w2: float, sigma_b2: float, alpha=None) -> float:
    """Depth scale of the variance's approach to q*: -1/log(chi_1 + sigma_w^2 E[phi'' phi])
    (the bracket is the q map's slope at q*); inf where that slope is >= 1 (the variance does
    not settle exponentially), 0 where it is <= 0."""
    _check(sigma_w2, sigma_b2)
    f, _, dd = _fns(activation, alpha)
    extra = _expect(lambda u: dd(u) * f(u), _q_eff(activation, sigma_w2, sigma_b2, alpha))
    r = chi1(activation, sigma_w2, sigma_b2, alpha) + sigma_w2 * extra
    if r <= 0:
        return 0.0
    return math.inf if r >= 1.0 - 1e-12 else -1.0 / math.log(r)


def xi_c(activation: str, sigma_w2: float, sigma_b2: float, alpha=None) -> float:
    """Depth scale of correlations, -1/log(chi_c): how many layers two inputs stay
    distinguishable (trainable depth ~ 6 xi_c). inf at the edge of chaos (chi_c within 1e-12
    of 1, and for ReLU-like nets beyond it, see chi_c); 0 when chi_c = 0."""
    return _xi_of_slope(chi_c(activation, sigma_w2, sigma_b2, alpha)[1])


def _xi_of_slope(slope: float) -> float:
    if slope <= 0:
        return 0.0
    return math.inf if slope >= 1.0 - 1e-12 else -1.0 / math.log(slope)


def predict(activation: str, sigma_w2: float, sigma_b2: float, depth: int, alpha=None) -> dict:
    """Everything at once for a net of ``depth`` layers: q_star, chi1, c_star, chi_c, xi_q,
    xi_c, ``ratio_per_layer`` = sqrt(chi1) (the predicted ||dL/dy_l|| / ||dL/dy_{l+1}|| of the
    gradient norms the monitor records; chi1 itself multiplies the squared norm) and
    ``signal`` (depth,): the predicted ||dL/dy_l|| / ||dL/dy_depth|| for l = 1..depth, i.e.
    chi1 ** ((depth - l) / 2)."""
    if not (_real(depth) and math.isfinite(depth) and int(depth) == depth and depth >= 1):
        raise ValueError(f"theory.predict: depth must be a positive int, got {depth!r}")
    _check(sigma_w2, sigma_b2)
    x1 = chi1(activation, sigma_w2, sigma_b2, alpha)
    c_star, slope = chi_c(activation, sigma_w2, sigma_b2, alpha)
    r = math.sqrt(x1)
    ls = np.arange(1, int(depth) + 1)
    return {"activation": _name(activation), "sigma_w2": float(sigma_w2),
            "sigma_b2": float(sigma_b2), "depth": int(depth),
            "q_star": fixed_point_q(activation, sigma_w2, sigma_b2, alpha), "chi1": x1,
            "c_star": c_star, "xi_q": xi_q(activation, sigma_w2, sigma_b2, alpha),
            "chi_c": slope, "xi_c": _xi_of_slope(slope), "ratio_per_layer": r,
            "signal": r ** (int(depth) - ls).astype(np.float64)}


def critical_sigma_w2(activation: str, sigma_b2: float, alpha=None, lo: float = 1e-3,
                      hi: float = 1e3) -> float:
    """The sigma_w^2 where chi_1 = 1 (the edge of chaos) at this sigma_b^2: the first sign
    change of chi_1 - 1 on a log grid over [lo, hi], then bisection to 1e-14 relative. NaN
    when chi_1 stays on one side of 1 on [lo, hi] (sigmoid's edge lies near 100), or when it
    jumps over 1 (GELU and SiLU at small sigma_b^2, where q* leaves its branch for 0 or inf:
    no critical point, the phases meet discontinuously)."""
    _check(1.0, sigma_b2)
    if not (_real(lo) and _real(hi) and math.isfinite(lo) and math.isfinite(hi)
            and 0 < lo < hi):
        raise ValueError(f"theory.critical_sigma_w2: the search range needs finite "
                         f"0 < lo < hi, got lo={lo!r}, hi={hi!r}")
    _fns(activation, alpha)

    def g(s):
        return chi1(activation, s, sigma_b2, alpha) - 1.0
    grid = np.geomspace(lo, hi, 91)
    a, ga = grid[0], g(grid[0])
    for b in grid[1:]:
        gb = g(b)
        if ga * gb <= 0:
            break
        a, ga = b, gb
    else:
        return math.nan
    m = b
    for _ in range(200):
        m = 0.5 * (a + b)
        gm = g(m)
        if gm == 0 or (b - a) < 1e-14 * b:
            break
        if ga * gm < 0:
            b, gb = m, gm
        else:
            a, ga = m, gm
    return m if abs(g(m)) <= 1e-6 else math.nan


def sigma_w2_of_init(init: str | None, activation: str | None = None, fan_in: int | None = None,
                     fan_out: int | None = None, alpha: float = 0.01) -> float | None:
    """deepgrad's init schemes (deepgrad.init, the names layers take; None or "auto" for the
    layer's default) as sigma_w^2 = fan_in * Var(W): he = gain^2 (the activation's gain as
    init.get picks it: ReLU's for sigmoid and linear layers, ``alpha`` the leaky_relu slope),
    xavier = 2 fan_in / (fan_in + fan_out) (fan_out defaults to fan_in: 1 for square layers),
    lecun = 1, orthogonal = 1 (unit-norm rows), normal = fan_in * 1e-4 and uniform =
    fan_in * 0.05^2 / 3 (None without fan_in). None for zeros, ones, a callable or an unknown
    name: they have no sigma_w^2."""
    from .init import _gain_name, calculate_gain, default_for
    for what, n in (("fan_in", fan_in), ("fan_out", fan_out)):
        if n is not None and not (_real(n) and int(n) == n and n >= 1):
            raise ValueError(f"theory.sigma_w2_of_init: {what} must be a positive int (the "
                             f"layer's input/output size) or None, got {n!r}")
    if callable(init):
        return None
    name = default_for(activation) if init in (None, "auto") else str(init).lower()
    if name in ("he", "he_normal", "kaiming", "kaiming_normal", "he_uniform", "kaiming_uniform"):
        gname = _gain_name(activation)
        gn = "relu" if gname in ("linear", "sigmoid") else gname
        return calculate_gain(gn, alpha) ** 2
    if name in ("xavier", "xavier_uniform", "glorot", "glorot_uniform", "xavier_normal",
                "glorot_normal"):
        if fan_in is None:
            return 1.0
        fan_out = fan_in if fan_out is None else fan_out
        return 2.0 * fan_in / (fan_in + fan_out)
    if name in ("lecun", "lecun_normal", "orthogonal"):
        return 1.0
    if name == "normal":
        return None if fan_in is None else fan_in * 1e-4
    if name == "uniform":
        return None if fan_in is None else fan_in * 0.05 ** 2 / 3.0
    return None
