"""Row-wise softmax / log_softmax and their backward passes vs float64 numpy and finite differences."""
import numpy as np
import pytest

from deepgrad import _C


def ref_log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


SHAPES = [(1, 1), (1, 7), (7, 1), (33, 7), (5, 257), (257, 33), (3, 600), (2, 3, 5)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,rtol,atol", [(np.float64, 1e-12, 1e-14), (np.float32, 1e-5, 1e-6)])
def test_forward_matches_numpy(shape, dtype, rtol, atol):
    x = np.random.default_rng(0).normal(scale=4.0, size=shape).astype(dtype)
    ls = ref_log_softmax(x)
    y = _C.softmax(x)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, np.exp(ls), rtol=rtol, atol=atol)
    np.testing.assert_allclose(_C.log_softmax(x), ls, rtol=rtol, atol=atol * 10)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,rtol,atol", [(np.float64, 1e-11, 1e-13), (np.float32, 1e-4, 1e-5)])
def test_backward_matches_numpy(shape, dtype, rtol, atol):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape).astype(dtype)
    dy = rng.normal(size=shape).astype(dtype)
    s = np.exp(ref_log_softmax(x))
    dy64 = dy.astype(np.float64)
    want = s * (dy64 - (dy64 * s).sum(axis=-1, keepdims=True))
    np.testing.assert_allclose(_C.softmax_backward(dy, _C.softmax(x)), want, rtol=rtol, atol=atol)
    want_log = dy64 - s * dy64.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(_C.log_softmax_backward(dy, _C.log_softmax(x)), want_log, rtol=rtol, atol=atol)


@pytest.mark.parametrize("log", [False, True])
def test_backward_vs_finite_differences(log):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 7))
    dy = rng.normal(size=x.shape)
    f = _C.log_softmax if log else _C.softmax
    bwd = _C.log_softmax_backward if log else _C.softmax_backward
    got = bwd(dy, f(x))
    h = 1e-6
    fd = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        fd[idx] = (np.sum(dy * f(xp)) - np.sum(dy * f(xm))) / (2 * h)
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)


def test_stable_for_large_logits():
    x = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1000.0, -1000.0]], dtype=np.float32)
    y = _C.softmax(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(_C.log_softmax(x), ref_log_softmax(x), rtol=1e-6, atol=1e-5)


def test_threaded_rows_match_serial():
    x = np.random.default_rng(3).normal(size=(4000, 50)).astype(np.float32)
    y = _C.softmax(x)
    np.testing.assert_array_equal(y[-3:], _C.softmax(x[-3:]))


def test_nan_row_stays_nan_and_others_unaffected():
    x = np.array([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0]])
    y = _C.softmax(x)
    assert np.all(np.isnan(y[0]))
    np.testing.assert_allclose(y[1], np.exp(ref_log_softmax(x[1:]))[0], rtol=1e-12)


def test_empty():
    assert _C.softmax(np.zeros((0, 5))).shape == (0, 5)
    assert _C.log_softmax(np.zeros((3, 0), np.float32)).shape == (3, 0)
