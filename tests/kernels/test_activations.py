"""Activation kernels against float64 numpy references and central finite differences."""
import math

import numpy as np
import pytest

from deepgrad import _C

ALPHA = 0.2
SELU_A = 1.6732632423543772848170429916717
SELU_S = 1.0507009873554804934193349852946
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sig(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def ref_forward(name, z, alpha=ALPHA):
    z = z.astype(np.float64)
    return {
        "identity": lambda: z,
        "step": lambda: (z > 0).astype(np.float64),
        "sigmoid": lambda: _sig(z),
        "tanh": lambda: np.tanh(z),
        "relu": lambda: np.maximum(z, 0),
        "leaky_relu": lambda: np.where(z > 0, z, alpha * z),
        "elu": lambda: np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0))),
        "selu": lambda: SELU_S * np.where(z > 0, z, SELU_A * np.expm1(np.minimum(z, 0))),
        "gelu": lambda: 0.5 * z * (1 + _erf(z / math.sqrt(2))),
        "softplus": lambda: np.logaddexp(0, z),
        "silu": lambda: z * _sig(z),
        "softsign": lambda: z / (1 + np.abs(z)),
    }[name]()


def ref_derivative(name, z, alpha=ALPHA):
    z = z.astype(np.float64)
    s = _sig(z)
    return {
        "identity": lambda: np.ones_like(z),
        "step": lambda: np.zeros_like(z),
        "sigmoid": lambda: s * (1 - s),
        "tanh": lambda: 1 - np.tanh(z) ** 2,
        "relu": lambda: (z > 0).astype(np.float64),
        "leaky_relu": lambda: np.where(z > 0, 1.0, alpha),
        "elu": lambda: np.where(z > 0, 1.0, alpha * np.exp(np.minimum(z, 0))),
        "selu": lambda: SELU_S * np.where(z > 0, 1.0, SELU_A * np.exp(np.minimum(z, 0))),
        "gelu": lambda: 0.5 * (1 + _erf(z / math.sqrt(2))) + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi),
        "softplus": lambda: s,
        "silu": lambda: s * (1 + z * (1 - s)),
        "softsign": lambda: 1 / (1 + np.abs(z)) ** 2,
    }[name]()


ACTS = ["identity", "step", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu",
        "softplus", "silu", "softsign"]
NEEDS_Z = {"relu", "leaky_relu", "elu", "selu", "gelu", "softplus", "silu", "softsign"}
SHAPES = [(1,), (7,), (33,), (257,), (3, 11), (2, 5, 7)]


def _inputs(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=3.0, size=shape)
    z[np.abs(z) < 1e-3] = 0.5  # keep away from the kinks of relu/step/leaky_relu
    return z.astype(dtype)


@pytest.mark.parametrize("name", ACTS)
@pytest.mark.parametrize("dtype,rtol,atol", [(np.float64, 1e-12, 1e-13), (np.float32, 2e-6, 2e-6)])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_numpy(name, dtype, rtol, atol, shape):
    z = _inputs(shape, dtype)
    y = _C.act_forward(z, name, alpha=ALPHA)
    assert y.dtype == dtype and y.shape == z.shape
    np.testing.assert_allclose(y, ref_forward(name, z), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", ACTS)
@pytest.mark.parametrize("dtype,rtol,atol", [(np.float64, 1e-11, 1e-12), (np.float32, 1e-5, 1e-5)])
@pytest.mark.parametrize("shape", [(1,), (7,), (33,), (257,), (4, 9)])
def test_backward_matches_numpy(name, dtype, rtol, atol, shape):
    z = _inputs(shape, dtype, seed=1)
    dy = np.random.default_rng(2).normal(size=shape).astype(dtype)
    y = _C.act_forward(z, name, alpha=ALPHA)
    want = dy.astype(np.float64) * ref_derivative(name, z)
    np.testing.assert_allclose(_C.act_backward(dy, z, y, name, alpha=ALPHA), want, rtol=rtol, atol=atol)
    # y may be omitted: it is recomputed from z.
    np.testing.assert_allclose(_C.act_backward(dy, z, None, name, alpha=ALPHA), want, rtol=rtol, atol=atol)
    if name not in NEEDS_Z:
        np.testing.assert_allclose(_C.act_backward(dy, None, y, name, alpha=ALPHA), want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", ACTS)
def test_backward_vs_finite_differences(name):
    z = _inputs((257,), np.float64, seed=3)
    dy = np.random.default_rng(4).normal(size=z.shape)
    h = 1e-6
    fd = (_C.act_forward(z + h, name, alpha=ALPHA) - _C.act_forward(z - h, name, alpha=ALPHA)) / (2 * h)
    got = _C.act_backward(dy, z, _C.act_forward(z, name, alpha=ALPHA), name, alpha=ALPHA)
    np.testing.assert_allclose(got, dy * fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["sigmoid", "gelu", "relu", "silu"])
def test_threaded_path_matches_serial(name):
    # Large enough to be split over threads; compare with element-by-element small calls' math.
    z = _inputs((300_000,), np.float32, seed=5)
    y = _C.act_forward(z, name)
    np.testing.assert_array_equal(y[:1000], _C.act_forward(z[:1000], name))
    np.testing.assert_array_equal(y[-1000:], _C.act_forward(z[-1000:], name))
    dz = _C.act_backward(np.ones_like(z), z, y, name)
    np.testing.assert_array_equal(dz[-777:], _C.act_backward(np.ones_like(z[-777:]), z[-777:], y[-777:], name))


def test_extremes_are_stable():
    z = np.array([-1e4, -80.0, 0.0, 80.0, 1e4], dtype=np.float32)
    for name in ACTS:
        y = _C.act_forward(z, name)
        assert np.all(np.isfinite(y)), name
    np.testing.assert_allclose(_C.act_forward(z, "sigmoid"), [0, _sig(-80.0), 0.5, 1, 1], rtol=1e-6, atol=0)
    np.testing.assert_allclose(_C.act_forward(z, "softplus"), [0, np.logaddexp(0, -80.0), math.log(2), 80, 1e4],
                               rtol=1e-6, atol=0)


def test_nan_propagates():
    z = np.array([np.nan, 1.0, -np.inf, np.inf])
    y = _C.act_forward(z, "tanh")
    assert np.isnan(y[0]) and y[2] == -1 and y[3] == 1
    assert np.isnan(_C.act_forward(z, "sigmoid")[0]) and np.isnan(_C.act_forward(z, "gelu")[0])


def test_swish_alias_and_empty():
    z = _inputs((7,), np.float64)
    np.testing.assert_array_equal(_C.act_forward(z, "swish"), _C.act_forward(z, "silu"))
    e = _C.act_forward(np.zeros((0, 3)), "gelu")
    assert e.shape == (0, 3)
    assert _C.act_backward(np.zeros((0,)), np.zeros((0,)), None, "relu").shape == (0,)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "silu", "elu", "selu"])
def test_float32_vector_math_accuracy_on_a_dense_grid(name):
    # float32 sigmoid/tanh/silu/elu/selu use the kernels' own vectorized exp/expm1: check a few ulp
    # everywhere, including the switches of tanh at |x| = 0.625 and of expm1 at x = -0.35, and the
    # subnormal tail of sigmoid.
    z = np.concatenate([np.linspace(-110, 110, 400_001), np.linspace(-0.7, 0.7, 100_001),
                        [0.625, -0.625, np.nextafter(0.625, 1), -0.35, np.nextafter(-0.35, 0), 1e-30, -1e-30]]
                       ).astype(np.float32)
    got = _C.act_forward(z, name, alpha=ALPHA)
    want = ref_forward(name, z)
    np.testing.assert_allclose(got, want, rtol=4e-7, atol=2e-43)  # atol: subnormal tail (x 110 for silu)
    dz = _C.act_backward(np.ones_like(z), z, None, name, alpha=ALPHA)
    # sigmoid/tanh derivatives are formed from float32 y (y (1 - y), 1 - y^2): absolute error ~ulp(1).
    np.testing.assert_allclose(dz, ref_derivative(name, z), rtol=2e-6, atol=2e-7)


def test_float32_vector_math_special_values():
    z = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -104.5, 89.0], dtype=np.float32)
    s = _C.act_forward(z, "sigmoid")
    np.testing.assert_array_equal(s[:4], [0.5, 0.5, 1.0, 0.0])
    assert np.isnan(s[4]) and s[5] == 0.0 and s[6] == 1.0
    t = _C.act_forward(z, "tanh")
    np.testing.assert_array_equal(t[:4], [0.0, -0.0, 1.0, -1.0])
    assert np.signbit(t[1]) and np.isnan(t[4])
    assert np.isnan(_C.act_forward(z, "silu")[4])


def test_identity_and_step_backward_need_neither_z_nor_y():
    dy = np.random.default_rng(6).normal(size=(3, 5))
    np.testing.assert_array_equal(_C.act_backward(dy, None, None, "identity"), dy)
    np.testing.assert_array_equal(_C.act_backward(dy, None, None, "step"), np.zeros_like(dy))


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "silu", "elu"])
def test_float32_result_does_not_depend_on_position_or_length(name):
    # The vector loops handle the last n % 8 elements with masked loads: every element must get
    # the same bits whatever the array's length and alignment.
    rng = np.random.default_rng(11)
    z = (rng.standard_normal(41) * 6).astype(np.float32)
    z[5], z[17] = -95.0, -0.3  # a subnormal sigmoid/silu result, a small tanh argument
    full = _C.act_forward(z, name)
    for n in range(1, 42):
        np.testing.assert_array_equal(_C.act_forward(z[:n], name), full[:n])
    for k in range(1, 9):
        np.testing.assert_array_equal(_C.act_forward(z[k:], name), full[k:])


def _act_isas():
    out = []
    for isa in ("avx2", "avx512"):
        try:
            _C._act_f32_isa(np.zeros(1, np.float32), "tanh", isa)
            out.append(isa)
        except ValueError:
            pass
    return out


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "silu"])
def test_float32_intrinsics_loops_agree_bit_for_bit_and_with_float64(name):
    """The AVX2 and AVX-512 loops evaluate the same formulas operation for operation: the same
    bits for every element (ordinary values, tails of every length, the subnormal and the
    saturated ranges, +-0, +-inf, NaN), each within the float32 tolerance of float64 numpy."""
    isas = _act_isas()
    if not isas:
        pytest.skip("this CPU has neither the AVX2 nor the AVX-512 loop")
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(size=997) * 4, np.linspace(-110, 110, 4001),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 0.625, -0.625,
                         -87.3, -103.9, -104.5, 88.0]]).astype(np.float32)
    with np.errstate(invalid="ignore"):  # silu(-inf) = -inf * 0: NaN in both
        ref = ref_forward(name, x)
    for isa in isas:
        for n in (len(x), 1, 7, 15, 16, 17, 33):  # whole vectors and masked tails
            y = _C._act_f32_isa(x[:n], name, isa)
            r = ref[:n]
            fin = np.isfinite(r)
            np.testing.assert_allclose(y[fin], r[fin], rtol=2e-6, atol=1e-7,
                                       err_msg=f"{name} {isa} n={n}")
            assert np.array_equal(np.isnan(y), np.isnan(r))
    if len(isas) == 2:
        a, b = (_C._act_f32_isa(x, name, isa) for isa in isas)
        np.testing.assert_array_equal(a.view(np.int32), b.view(np.int32))
    # and the library's own path is one of them
    np.testing.assert_array_equal(_C.act_forward(x, name).view(np.int32),
                                  _C._act_f32_isa(x, name, isas[-1]).view(np.int32))
