"""Sequence datasets: shapes, targets recomputed from the inputs, seeding, input checks."""
import numpy as np
import pytest

from deepgrad._seqdata import ADDING_BASELINE_MSE, adding_problem, temporal_order


def test_adding_problem_targets_and_markers():
    x, y = adding_problem(500, 30, seed=3)
    assert x.shape == (500, 30, 2) and y.shape == (500, 1) and x.dtype == np.float32
    assert np.all((x[..., 0] >= 0) & (x[..., 0] <= 1))
    marks = x[..., 1]
    assert np.all(marks.sum(axis=1) == 2)
    pos = np.argwhere(marks == 1)[:, 1].reshape(500, 2)
    assert np.all(pos[:, 0] < 15) and np.all(pos[:, 1] >= 15)
    np.testing.assert_allclose(y[:, 0], (x[..., 0] * marks).sum(axis=1), rtol=1e-6)
    # the constant-1 baseline really is about 1/6 (float64 check, tolerance for n=500 sampling)
    assert abs(float(np.mean((y - 1.0) ** 2)) - ADDING_BASELINE_MSE) < 0.03


def test_adding_problem_is_seeded():
    a = adding_problem(10, 12, seed=7)
    b = adding_problem(10, 12, seed=7)
    c = adding_problem(10, 12, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_temporal_order_classes():
    x, y = temporal_order(400, 40, seed=1)
    assert x.shape == (400, 40, 6) and y.shape == (400,) and y.dtype == np.int64
    np.testing.assert_array_equal(x.sum(axis=-1), 1.0)
    sym = x.argmax(axis=-1)
    for row, label in zip(sym, y):
        rel = np.flatnonzero(row < 2)
        assert len(rel) == 2 and 4 <= rel[0] < 8 and 20 <= rel[1] < 24
        assert 2 * row[rel[0]] + row[rel[1]] == label
    assert set(np.unique(y)) == {0, 1, 2, 3}


@pytest.mark.parametrize("fn,args", [(adding_problem, (0, 10)), (adding_problem, (5, 1)),
                                     (temporal_order, (5, 5)), (temporal_order, (2.5, 20))])
def test_bad_arguments(fn, args):
    with pytest.raises(ValueError):
        fn(*args)
