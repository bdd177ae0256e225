"""Data sets refuse what would fill them with NaN or wrong values silently: a noise or spread that
is negative, NaN or infinite, and user files holding NaN or infinite values (.npz as .csv), named
by array and row."""
import numpy as np
import pytest

from deepgrad import data


@pytest.mark.parametrize("make,arg", [
    (lambda v: data.spirals(20, noise=v), "noise"), (lambda v: data.moons(20, noise=v), "noise"),
    (lambda v: data.circles(20, noise=v), "noise"),
    (lambda v: data.gaussian_mixture(20, std=v), "std"),
    (lambda v: data.gaussian_mixture(20, spread=v), "spread"),
])
@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "0.1", True])
def test_bad_noise_or_spread_is_refused(make, arg, bad):
    with pytest.raises(ValueError, match=f"{arg} must be a finite number >= 0"):
        make(bad)


def test_zero_noise_is_kept_and_gives_finite_points():
    X, y = data.moons(30, noise=0)
    assert np.all(np.isfinite(X)) and X.shape == (30, 2)


@pytest.mark.parametrize("where", ["X", "y"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_npz_with_non_finite_values_is_refused_naming_array_and_row(tmp_path, where, value):
    X, y = np.ones((5, 2)), np.arange(5, dtype=np.float64)
    (X if where == "X" else y)[3] = value
    np.savez(tmp_path / "d.npz", X=X, y=y)
    with pytest.raises(ValueError, match=f"in {where} \\(first at row 3\\)"):
        data.load_arrays(tmp_path / "d.npz")


def test_csv_with_a_non_finite_label_is_refused(tmp_path):
    (tmp_path / "d.csv").write_text("1,2,0\n3,4,nan\n5,6,1\n")
    with pytest.raises(ValueError, match="first in data row 1"):
        data.load_arrays(tmp_path / "d.csv")
