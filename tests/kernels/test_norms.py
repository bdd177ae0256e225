"""segment_norms (per-segment and global L2 norms, deterministic) and the in-place buffer ops."""
import numpy as np
import pytest

from deepgrad import _C


def offsets_for(sizes):
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def ref_norms(buf, off):
    b = buf.astype(np.float64)
    norms = np.array([np.linalg.norm(b[off[i]:off[i + 1]]) for i in range(len(off) - 1)])
    return norms, np.linalg.norm(b)


SIZES = [[1], [7], [33], [257], [1, 7, 33, 257], [0, 5, 0, 3, 0], [100_000, 3, 70_001], [200_000]]


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_numpy_linalg_norm(sizes, dtype):
    off = offsets_for(sizes)
    buf = np.random.default_rng(0).normal(size=off[-1]).astype(dtype)
    norms, total, nonfinite = _C.segment_norms(buf, off)
    want, want_total = ref_norms(buf, off)
    assert norms.dtype == np.float64 and norms.shape == (len(sizes),)
    assert isinstance(total, float) and nonfinite == 0
    np.testing.assert_allclose(norms, want, rtol=1e-12)
    np.testing.assert_allclose(total, want_total, rtol=1e-12)


def test_empty_buffer_and_no_segments():
    norms, total, nonfinite = _C.segment_norms(np.zeros(0, np.float32), np.array([0]))
    assert norms.shape == (0,) and total == 0.0 and nonfinite == 0
    norms, total, _ = _C.segment_norms(np.zeros(0), np.array([0, 0, 0]))
    np.testing.assert_array_equal(norms, [0.0, 0.0])


def test_deterministic_across_threads_and_calls():
    off = offsets_for([1_000_003, 17, 2_500_000, 5])
    buf = np.random.default_rng(1).normal(size=off[-1]).astype(np.float32)
    n0 = _C.get_num_threads()
    results = []
    try:
        for nt in [1, 2, 3, 1, 2]:
            _C.set_num_threads(nt)
            results.append(_C.segment_norms(buf, off))
    finally:
        _C.set_num_threads(n0)
    for norms, total, nf in results[1:]:
        assert norms.tobytes() == results[0][0].tobytes()
        assert total == results[0][1] and nf == 0
    np.testing.assert_allclose(results[0][0], ref_norms(buf, off)[0], rtol=1e-12)


def test_same_bits_regardless_of_alignment():
    # The same values at a different address (a copy) give the same bits.
    buf = np.random.default_rng(2).normal(size=100_001)
    off = offsets_for([50_000, 50_001])
    a = _C.segment_norms(buf, off)
    storage = np.empty(100_002)
    shifted = storage[1:]
    shifted[:] = buf
    b = _C.segment_norms(shifted, off)
    assert a[0].tobytes() == b[0].tobytes() and a[1] == b[1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nonfinite_reported_not_hidden(dtype):
    off = offsets_for([10, 50_000, 10, 70_000])
    buf = np.ones(off[-1], dtype=dtype)
    buf[3] = np.nan
    buf[10 + 40_000] = np.inf
    buf[10 + 40_001] = -np.inf
    norms, total, nonfinite = _C.segment_norms(buf, off)
    assert nonfinite == 3
    assert np.isnan(norms[0]) and np.isinf(norms[1])
    np.testing.assert_allclose(norms[2:], [np.sqrt(10), np.sqrt(70_000)], rtol=1e-12)
    assert np.isnan(total)


def test_large_values_do_not_overflow_float32():
    buf = np.full(1000, 1e30, dtype=np.float32)  # squares overflow float32 but not double
    norms, total, nonfinite = _C.segment_norms(buf, np.array([0, 1000]))
    np.testing.assert_allclose(total, np.sqrt(1000) * float(np.float32(1e30)), rtol=1e-12)
    assert nonfinite == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 33, 257, 100_003])
def test_scale_clip_fill(dtype, n):
    rng = np.random.default_rng(3)
    x = rng.normal(size=n).astype(dtype)
    y = x.copy()
    assert _C.scale_(y, 0.25) is None
    np.testing.assert_array_equal(y, x * dtype(0.25))
    y = x.copy()
    _C.clip_value_(y, 0.5)
    np.testing.assert_array_equal(y, np.clip(x, -0.5, 0.5))
    _C.fill_(y, 3.5)
    assert np.all(y == 3.5)


def test_clip_keeps_nan_and_clamps_inf():
    y = np.array([np.nan, np.inf, -np.inf, 0.1])
    _C.clip_value_(y, 1.0)
    assert np.isnan(y[0])
    np.testing.assert_array_equal(y[1:], [1.0, -1.0, 0.1])


def test_inplace_ops_write_through_views():
    # The arena hands out views; in-place ops on a contiguous slice must touch only that slice.
    buf = np.zeros(10, np.float32)
    _C.fill_(buf[2:5], 1.0)
    np.testing.assert_array_equal(buf, [0, 0, 1, 1, 1, 0, 0, 0, 0, 0])


# ---- layer norm (csrc/cpu/norm_layers.cpp) ----------------------------------------------------


def ln_ref(x, gamma, beta, dy, eps=1e-5):
    """float64 reference: y, and the gradients dx, dgamma, dbeta for upstream dy."""
    x = x.astype(np.float64)
    mu = x.mean(1, keepdims=True)
    var = ((x - mu) ** 2).mean(1, keepdims=True)
    inv = 1 / np.sqrt(var + eps)
    xh = (x - mu) * inv
    g = np.ones(x.shape[1]) if gamma is None else gamma.astype(np.float64)
    y = xh * g + (0 if beta is None else beta.astype(np.float64))
    dxh = dy * g
    d = x.shape[1]
    dx = inv / d * (d * dxh - dxh.sum(1, keepdims=True) - xh * (dxh * xh).sum(1, keepdims=True))
    return y, dx, (dy * xh).sum(0), dy.sum(0)


LN_SHAPES = [(1, 1), (1, 7), (7, 3), (33, 70), (257, 5), (3, 600), (1000, 64)]


@pytest.mark.parametrize("shape", LN_SHAPES)
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 3e-5)])
def test_layer_norm_matches_float64_reference(shape, affine, dtype, tol):
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, shape[1]).astype(dtype) if affine else None
    beta = rng.standard_normal(shape[1]).astype(dtype) if affine else None
    dy = rng.standard_normal(shape).astype(dtype)
    y, mean, inv = _C.layer_norm_forward(x, gamma, beta, 1e-5)
    assert y.dtype == mean.dtype == inv.dtype == dtype and mean.shape == inv.shape == (shape[0],)
    ry, rdx, rdg, rdb = ln_ref(x, gamma, beta, dy.astype(np.float64))
    np.testing.assert_allclose(y, ry, rtol=tol, atol=tol)
    dg_, db_ = np.full(shape[1], 0.5, dtype), np.full(shape[1], -0.25, dtype)  # accumulated into
    dx = _C.layer_norm_backward(dy, x, gamma, mean, inv, dg_, db_, True)
    np.testing.assert_allclose(dx, rdx, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(dg_, rdg + 0.5, rtol=tol * 10, atol=tol * 10 * np.sqrt(shape[0]))
    np.testing.assert_allclose(db_, rdb - 0.25, rtol=tol * 10, atol=tol * 10 * np.sqrt(shape[0]))
    assert _C.layer_norm_backward(dy, x, gamma, mean, inv, None, None, False) is None


def test_layer_norm_same_bits_for_any_thread_count():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4099, 130)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    g = rng.uniform(0.5, 1.5, 130).astype(np.float32)
    n0 = _C.get_num_threads()
    out = []
    try:
        for nt in (1, 2, 3):
            _C.set_num_threads(nt)
            y, m, s = _C.layer_norm_forward(x, g, None, 1e-5)
            dgm, dbt = np.zeros(130, np.float32), np.zeros(130, np.float32)
            dx = _C.layer_norm_backward(dy, x, g, m, s, dgm, dbt, True)
            out.append((y, dx, dgm, dbt))
    finally:
        _C.set_num_threads(n0)
    for other in out[1:]:
        for a, b in zip(out[0], other):
            np.testing.assert_array_equal(a, b)


def test_layer_norm_non_finite_rows_are_nan_and_huge_float32_rows_exact():
    x = np.array([[3e38, 3e38, -3e38, 1.0], [1e20, -1e20, 3.0, 4.0], [np.inf, 1, 2, 3],
                  [np.nan, 1, 2, 3], [1, 2, 3, 4]], dtype=np.float32)
    y, m, s = _C.layer_norm_forward(x, None, None, 1e-5)
    assert np.isnan(y[2:4]).all() and np.isfinite(y[[0, 1, 4]]).all()
    np.testing.assert_allclose(y[[0, 1, 4]], ln_ref(x[[0, 1, 4]], None, None,
                                                    np.zeros((3, 4)))[0], rtol=1e-6, atol=1e-6)
    dx = _C.layer_norm_backward(np.ones_like(x), x, None, m, s, None, None, True)
    assert np.isnan(dx[2:4]).all() and np.isfinite(dx[[0, 1, 4]]).all()
    y64, _, _ = _C.layer_norm_forward(np.array([[1e160, -1e160, 1.0]]), None, None, 1e-5)
    assert np.isnan(y64).all()  # the float64 variance overflows: NaN, not zeros


def test_layer_norm_reads_non_contiguous_inputs_correctly():
    rng = np.random.default_rng(4)
    base = rng.standard_normal((10, 16)).astype(np.float32)
    x = base[:, ::2]  # strided view
    y, _, _ = _C.layer_norm_forward(x, None, None, 1e-5)
    np.testing.assert_array_equal(y, _C.layer_norm_forward(np.ascontiguousarray(x), None, None,
                                                           1e-5)[0])


@pytest.mark.parametrize("call,err,msg", [
    (lambda x, v: _C.layer_norm_forward(x.astype(np.int32), None, None, 1e-5), TypeError,
     "x has dtype int32"),
    (lambda x, v: _C.layer_norm_forward(x[0], None, None, 1e-5), ValueError, "x must be 2-D"),
    (lambda x, v: _C.layer_norm_forward(np.zeros((3, 0), np.float32), None, None, 1e-5),
     ValueError, "no features"),
    (lambda x, v: _C.layer_norm_forward(x, v[:3], None, 1e-5), ValueError,
     r"gamma has shape \(3,\) but x has 4 features"),
    (lambda x, v: _C.layer_norm_forward(x, v.astype(np.float64), None, 1e-5), TypeError,
     "gamma has dtype float64"),
    (lambda x, v: _C.layer_norm_forward(x, None, None, 0.0), ValueError, "eps must be"),
    (lambda x, v: _C.layer_norm_forward(x, None, None, float("nan")), ValueError, "eps must be"),
    (lambda x, v: _C.layer_norm_backward(x, x, None, v[:3], v[:2], None, None, True), ValueError,
     r"save_mean has shape \(3,\) but x has 2 rows"),
    (lambda x, v: _C.layer_norm_backward(x[:1], x, None, v[:2], v[:2], None, None, True),
     ValueError, "dy has shape"),
    (lambda x, v: _C.layer_norm_backward(x, x, None, v[:2], v[:2], v[:4].copy()[::-1], None,
                                         True), ValueError, "C-contiguous"),
])
def test_layer_norm_bad_input_is_a_clear_error(call, err, msg):
    x = np.ones((2, 4), np.float32)
    v = np.ones(4, np.float32)
    with pytest.raises(err, match=msg):
        call(x, v)
