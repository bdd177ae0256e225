"""The one-pass tensor health kernel (issue 13): per segment, L2 and L-infinity norms, min and
max of the finite elements, NaN and Inf counts and the first non-finite index, against float64
numpy references; NaN/Inf planted at known positions, empty and length-1 segments, both dtypes,
bad offsets refused; the same bits for any thread count."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import _C


def reference(x, offsets):
    rows = []
    for a, b in zip(offsets[:-1], offsets[1:]):
        s = x[a:b].astype(np.float64)
        fin = np.isfinite(s)
        f = s[fin]
        bad = np.flatnonzero(~fin)
        rows.append([np.sqrt(np.sum(f * f)), np.max(np.abs(f)) if f.size else 0.0,
                     f.min() if f.size else np.nan, f.max() if f.size else np.nan,
                     np.isnan(s).sum(), np.isinf(s).sum(), bad[0] if bad.size else -1])
    return np.array(rows, dtype=np.float64).reshape(-1, 7)


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_against_numpy_with_planted_nonfinite(dtype, rtol):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(5000) * 3).astype(dtype)
    offsets = np.array([0, 0, 1, 17, 33, 1000, 1001, 4999, 5000], dtype=np.int64)
    x[20] = np.nan            # segment 3 (17..33): first bad at 3
    x[25] = np.inf
    x[1500] = -np.inf         # segment 6
    x[1001:1500] = np.nan     # segment 6 starts with NaN: first bad at 0
    x[4999] = np.nan          # the last, length-1 segment: no finite element
    got = _C.segment_health(x, offsets)
    ref = reference(x, offsets)
    assert got.shape == (8, 7)
    np.testing.assert_allclose(got[:, :4], ref[:, :4], rtol=rtol, equal_nan=True)
    np.testing.assert_array_equal(got[:, 4:], ref[:, 4:])
    assert list(got[3, 4:]) == [1, 1, 3] and list(got[6, 4:]) == [499, 1, 0]
    assert got[0, 0] == 0 and np.isnan(got[0, 2])          # empty segment
    assert np.isnan(got[7, 2]) and got[7, 4] == 1           # length 1, NaN


def test_large_segments_any_thread_count():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(3_000_000).astype(np.float32)
    offsets = np.array([0, 1_000_003, 1_000_004, 3_000_000], dtype=np.int64)
    n0 = dg.get_num_threads()
    try:
        dg.set_num_threads(1)
        one = _C.segment_health(x, offsets)
        dg.set_num_threads(2)
        two = _C.segment_health(x, offsets)
    finally:
        dg.set_num_threads(n0)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(one[:, :4], reference(x, offsets)[:, :4], rtol=1e-6)


def test_tensors_health_matches_segment_health():
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal((3, 4)).astype(np.float32), np.array([np.inf, 1.0]),
              np.zeros(0, np.float32)]
    got = _C.tensors_health(arrays)
    for a, row in zip(arrays, got):
        flat = np.ravel(a)
        np.testing.assert_allclose(row, reference(flat, np.array([0, flat.size]))[0],
                                   rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("offsets, msg", [([1, 5], "start at 0"), ([0, 3, 2, 5], "not decrease"),
                                          ([0, 4], "end at"), ([[0, 5]], "1-D")])
def test_bad_offsets_are_refused(offsets, msg):
    with pytest.raises(ValueError, match=msg):
        _C.segment_health(np.ones(5, np.float32), np.array(offsets, dtype=np.int64))
    with pytest.raises(TypeError):
        _C.segment_health(np.ones(5, np.int32), np.array([0, 5]))


@pytest.mark.parametrize("n", [1, 15, 16, 17, 47, 300])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_one_non_finite_anywhere_takes_the_exact_path(n, bad):
    """The float32 fast path has no per-element finiteness check: a single NaN or +-Inf at any
    position (a vector's lanes, the tail after the last whole vector) must still show in the
    sum of squares and send the segment to the exact path: counts and first index exact, the
    norms of the finite values."""
    rng = np.random.default_rng(n)
    base = rng.standard_normal(n).astype(np.float32) * 1e20   # squares overflow float32
    offsets = np.array([0, n], dtype=np.int64)
    for pos in sorted({0, n // 2, n - 1}):
        x = base.copy()
        x[pos] = bad
        got = _C.segment_health(x, offsets)
        ref = reference(x, offsets)
        np.testing.assert_array_equal(got[:, 4:], ref[:, 4:])
        np.testing.assert_allclose(got[:, :4], ref[:, :4], rtol=1e-6, equal_nan=True)
