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
