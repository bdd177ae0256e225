"""data.batches, the built-in datasets and load_arrays."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import data


def test_full_stochastic_and_minibatch():
    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10)
    full = list(data.batches(X, y, batch_size=None, shuffle=False))
    assert len(full) == 1 and np.array_equal(full[0][0], X)
    sgd = list(data.batches(X, y, batch_size=1, seed=0))
    assert len(sgd) == 10 and sorted(int(b[1][0]) for b in sgd) == list(range(10))
    mb = data.batches(X, y, batch_size=4, seed=0)
    sizes = [len(b[1]) for b in mb]
    assert sizes == [4, 4, 2] and len(mb) == 3
    assert [len(b[1]) for b in data.batches(X, y, batch_size=4, drop_last=True)] == [4, 4]
    for xb, yb in data.batches(X, y, batch_size=3, seed=1):
        np.testing.assert_array_equal(xb, X[yb])       # pairs stay aligned after shuffling


def test_shuffling_is_seeded_and_fresh_each_epoch():
    X, y = np.arange(50).reshape(50, 1), np.arange(50)
    a = [b[1].tolist() for b in data.batches(X, y, 10, seed=3)]
    b = [b[1].tolist() for b in data.batches(X, y, 10, seed=3)]
    assert a == b
    it = data.batches(X, y, 10, seed=3)
    assert [b[1].tolist() for b in it] != [b[1].tolist() for b in it]
    dg.manual_seed(7)
    c = [b[1].tolist() for b in data.batches(X, y, 10)]
    dg.manual_seed(7)
    assert c == [b[1].tolist() for b in data.batches(X, y, 10)]


def test_tensors_in_tensors_out():
    X = dg.randn(6, 2)
    y = dg.tensor(np.arange(6.0))
    xb, yb = next(iter(data.batches(X, y, 4, shuffle=False)))
    assert isinstance(xb, dg.Tensor) and xb.shape == (4, 2) and yb.shape == (4,)


def test_batches_errors():
    X = np.zeros((5, 2))
    with pytest.raises(ValueError, match="empty"):
        data.batches(np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(ValueError, match="first axes must match"):
        data.batches(X, np.zeros(4))
    with pytest.raises(ValueError, match=">= 1"):
        data.batches(X, np.zeros(5), batch_size=0)
    with pytest.raises(TypeError, match="int"):
        data.batches(X, np.zeros(5), batch_size=2.5)
    with pytest.raises(ValueError, match="drop_last"):
        data.batches(X, np.zeros(5), batch_size=6, drop_last=True)


@pytest.mark.parametrize("make,classes", [
    (lambda s: data.spirals(301, classes=3, noise=0.2, seed=s), 3),
    (lambda s: data.moons(100, seed=s), 2),
    (lambda s: data.circles(100, seed=s), 2),
    (lambda s: data.gaussian_mixture(120, classes=4, dim=5, seed=s), 4),
])
def test_datasets_shapes_balance_and_seeds(make, classes):
    X, y = make(0)
    assert X.dtype == np.float32 and y.dtype == np.int64 and X.shape[0] == y.shape[0]
    counts = np.bincount(y, minlength=classes)
    assert counts.max() - counts.min() <= 1
    X2, y2 = make(0)
    X3, _ = make(1)
    assert np.array_equal(X, X2) and np.array_equal(y, y2) and not np.array_equal(X, X3)


def test_dataset_geometry():
    X, y = data.xor()
    assert X.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]] and y.ravel().tolist() == [0, 1, 1, 0]
    X, y = data.circles(400, noise=0.0, factor=0.3)
    r = np.linalg.norm(X, axis=1)
    assert np.allclose(r[y == 0], 1.0, atol=1e-6) and np.allclose(r[y == 1], 0.3, atol=1e-6)
    X, y = data.spirals(300, 3, noise=0.0)
    assert np.linalg.norm(X, axis=1).max() <= 1.0 + 1e-6
    X, y = data.gaussian_mixture(3000, classes=2, dim=3, spread=10.0, std=0.1, seed=0)
    for c in range(2):
        assert X[y == c].std(axis=0).max() < 0.15


def test_load_arrays_npz_and_csv(tmp_path):
    X = np.random.default_rng(0).normal(size=(6, 3))
    y = np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "d.npz", X=X, y=y)
    Xl, yl = data.load_arrays(tmp_path / "d.npz")
    np.testing.assert_allclose(Xl, X.astype(np.float32)) and np.testing.assert_array_equal(yl, y)
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,label\n" + "\n".join(f"{r[0]},{r[1]},{t}" for r, t in zip(X, y)) + "\n")
    Xc, yc = data.load_arrays(csv)
    assert Xc.shape == (6, 2) and yc.dtype == np.int64 and yc.tolist() == y.tolist()
    csv.write_text("1.0,2.0,0.5\n3.0,4.0,1.5\n")
    assert data.load_arrays(csv)[1].dtype == np.float32


def test_load_arrays_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        data.load_arrays(tmp_path / "missing.csv")
    (tmp_path / "x.txt").write_text("1,2")
    with pytest.raises(ValueError, match="neither"):
        data.load_arrays(tmp_path / "x.txt")
    np.savez(tmp_path / "bad.npz", features=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="'X' and 'y'"):
        data.load_arrays(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable"):
        data.load_arrays(tmp_path / "junk.npz")
    (tmp_path / "ragged.csv").write_text("1,2,0\n1,2\n")
    with pytest.raises(ValueError, match="columns"):
        data.load_arrays(tmp_path / "ragged.csv")
    (tmp_path / "text.csv").write_text("1,2,0\n1,x,1\n")
    with pytest.raises(ValueError, match="line 2"):
        data.load_arrays(tmp_path / "text.csv")
    (tmp_path / "empty.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="no data rows"):
        data.load_arrays(tmp_path / "empty.csv")


def test_dataset_size_errors_name_the_argument():
    with pytest.raises(ValueError, match="spirals: classes must be an int >= 1, got 0"):
        data.spirals(100, classes=0)
    with pytest.raises(ValueError, match="gaussian_mixture: dim must be an int >= 1"):
        data.gaussian_mixture(10, classes=2, dim=0)
    with pytest.raises(ValueError, match="moons: n must be an int >= 1"):
        data.moons(0)
