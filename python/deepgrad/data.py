"""Batching and small built-in datasets, generated locally from a seed (no downloads).

`batches(X, y, batch_size)` gives the three flavours of gradient descent of an introductory course:
``batch_size=None`` is full-batch gradient descent, ``1`` is stochastic gradient descent and any
other size is mini-batch gradient descent. Datasets return ``X`` as float32 ``(n, features)`` and
class labels ``y`` as int64 ``(n,)`` (``xor`` returns float targets ``(4, 1)`` for a sigmoid unit).
"""
from __future__ import annotations

import csv
import os
from typing import Iterator

import numpy as np

__all__ = ["batches", "Batches", "xor", "spirals", "moons", "circles", "gaussian_mixture",
           "load_arrays"]


def _rng(seed: int | None) -> np.random.Generator:
    """A numpy generator: from `seed` when given, else drawn from deepgrad's seeded generator."""
    if seed is not None:
        return np.random.default_rng(int(seed))
    from . import random as _random
    return np.random.default_rng(_random.generator().integers(0, 2**63 - 1))


def _as_array(a, name: str):
    from .tensor import Tensor
    if isinstance(a, Tensor):
        return a.data, True
    if isinstance(a, np.ndarray):
        return a, False
    try:
        return np.asarray(a), False
    except Exception as e:  # ragged lists and the like
        raise TypeError(f"batches: {name} must be an array or a Tensor, got {type(a).__name__}") from e


class Batches:
    """An iterable over (X_batch, y_batch) pairs; each iteration is one epoch (reshuffled).

    Inputs given as numpy arrays come back as numpy arrays, Tensors as Tensors (no grad).
    ``len()`` is the number of batches per epoch.
    """

    def __init__(self, X, y=None, batch_size: int | None = None, shuffle: bool = True,
                 seed: int | None = None, drop_last: bool = False, rank: int | None = None,
                 world_size: int | None = None):
        self._X, self._x_tensor = _as_array(X, "X")
        if self._X.ndim == 0:
            raise ValueError("batches: X must have a leading sample axis, got a scalar")
        n = self._X.shape[0]
        if n == 0:
            raise ValueError("batches: X is empty (0 samples); nothing to train on")
        if y is not None:
            self._y, self._y_tensor = _as_array(y, "y")
            if self._y.ndim == 0 or self._y.shape[0] != n:
                raise ValueError(f"batches: X has {n} samples but y has shape {self._y.shape}; "
                                 "their first axes must match")
        else:
            self._y, self._y_tensor = None, False
        if batch_size is None:
            bs = n
        else:
            if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
                raise TypeError(f"batches: batch_size must be None or an int, got {batch_size!r}")
            bs = int(batch_size)
            if bs < 1:
                raise ValueError(f"batches: batch_size must be >= 1 (or None for full batch), got {bs}")
        if drop_last and bs > n:
            raise ValueError(f"batches: batch_size={bs} > {n} samples with drop_last=True "
                             "would give no batch at all")
        self.n, self.batch_size, self.shuffle, self.drop_last = n, bs, bool(shuffle), bool(drop_last)
        if (rank is None) != (world_size is None):
            raise ValueError("batches: give both rank and world_size (or neither)")
        if world_size is not None:
            for name, v, lo in (("world_size", world_size, 1), ("rank", rank, 0)):
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                    raise ValueError(f"batches: {name} must be an int >= {lo}, got {v!r}")
            if rank >= world_size:
                raise ValueError(f"batches: rank {rank} is not below world_size {world_size}")
            if shuffle and world_size > 1 and seed is None:
                raise ValueError("batches: with world_size > 1 every rank must shuffle the same "
                                 "way: pass the same seed= on every rank")
        self.rank, self.world_size = (0, 1) if world_size is None else (int(rank), int(world_size))
        self._gen = _rng(seed) if shuffle else None

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def _wrap(self, a, as_tensor: bool):
        if as_tensor:
            from .tensor import Tensor
            return Tensor(a)
        return a

    def __iter__(self) -> Iterator[tuple]:
        n, bs = self.n, self.batch_size
        order = self._gen.permutation(n) if self.shuffle else None
        stop = (n // bs) * bs if self.drop_last else n
        for start in range(0, stop, bs):
            if order is None and self.world_size > 1:
                order = np.arange(n)
            if order is None:
                sl = slice(start, min(start + bs, n))
                xb = self._X[sl]
                yb = None if self._y is None else self._y[sl]
            else:
                idx = order[start:start + bs]
                if self.world_size > 1:   # this rank's contiguous share of the global batch
                    m, w, r = len(idx), self.world_size, self.rank
                    idx = idx[r * m // w:(r + 1) * m // w]
                xb = self._X[idx]
                yb = None if self._y is None else self._y[idx]
            xb = self._wrap(np.ascontiguousarray(xb), self._x_tensor)
            if self._y is None:
                yield (xb,)
            else:
                yield xb, self._wrap(np.ascontiguousarray(yb), self._y_tensor)


def batches(X, y=None, batch_size: int | None = None, shuffle: bool = True,
            seed: int | None = None, drop_last: bool = False, rank: int | None = None,
            world_size: int | None = None) -> Batches:
    """Iterate over (X_batch, y_batch): None = full batch, 1 = stochastic, n = mini-batches of n.

    The last partial batch is kept unless ``drop_last``. With ``shuffle`` every epoch (every new
    iteration over the result) uses a fresh permutation from ``seed`` (or deepgrad's generator).

    Data parallel: with ``rank`` and ``world_size`` (and the same ``seed`` on every rank),
    ``batch_size`` is the GLOBAL batch: every rank walks the same shuffled order and takes its
    contiguous share of each global batch (sizes differ by at most one), so each sample is seen
    once per epoch across ranks. Pass ``count=len(xb)`` to
    ``deepgrad.distributed.allreduce_gradients`` so uneven shares still give exactly the
    global batch's mean gradient; a rank may get an empty share when a batch has fewer samples
    than ranks.
    """
    return Batches(X, y, batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
                   rank=rank, world_size=world_size)


# ---------------------------------------------------------------------------------------------
# Built-in datasets

def _check_n(n, minimum: int, name: str, arg: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{name}: {arg} must be an int >= {minimum}, got {n!r}")
    return int(n)


def _check_scale(v, name: str, arg: str) -> float:
    """A noise or spread: a finite real number >= 0 (NaN would fill X with NaN silently)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or \
            not np.isfinite(v) or v < 0:
        raise ValueError(f"{name}: {arg} must be a finite number >= 0, got {v!r}")
    return float(v)


def _split(n: int, parts: int) -> list[int]:
    """n samples split as evenly as possible over `parts` classes."""
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def _finish(X, y, rng, dtype):
    order = rng.permutation(len(y))
    return np.ascontiguousarray(X[order], dtype=dtype), np.ascontiguousarray(y[order], dtype=np.int64)


def xor(dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """The four XOR points in the order (0,0), (0,1), (1,0), (1,1): X (4, 2), targets y (4, 1)."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=dtype)
    y = np.array([[0], [1], [1], [0]], dtype=dtype)
    return X, y


def spirals(n: int = 300, classes: int = 3, noise: float = 0.2, seed: int | None = 0,
            dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved 2-D spiral arms, one per class (CS231n style): X (n, 2), y (n,) int64.

    Points run from the centre outwards over 4 radians of angle; `noise` is the standard
    deviation of the angle jitter."""
    n = _check_n(n, 1, "spirals")
    classes = _check_n(classes, 1, "spirals", "classes")
    noise = _check_scale(noise, "spirals", "noise")
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c, m in enumerate(_split(n, classes)):
        r = np.linspace(0.0, 1.0, m)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, m) + rng.standard_normal(m) * noise
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        ys.append(np.full(m, c))
    return _finish(np.concatenate(xs), np.concatenate(ys), rng, dtype)


def moons(n: int = 200, noise: float = 0.1, seed: int | None = 0,
          dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (as sklearn's make_moons): X (n, 2), y (n,) in {0, 1}."""
    n = _check_n(n, 1, "moons")
    noise = _check_scale(noise, "moons", "noise")
    rng = np.random.default_rng(seed)
    n0, n1 = _split(n, 2)
    t0, t1 = np.linspace(0, np.pi, n0), np.linspace(0, np.pi, n1)
    X = np.concatenate([np.stack([np.cos(t0), np.sin(t0)], 1),
                        np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], 1)])
    X = X + rng.standard_normal(X.shape) * noise
    y = np.concatenate([np.zeros(n0), np.ones(n1)])
    return _finish(X, y, rng, dtype)


def circles(n: int = 200, noise: float = 0.05, factor: float = 0.5, seed: int | None = 0,
            dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """An outer circle (class 0) around an inner one of radius `factor` (class 1): X (n, 2)."""
    n = _check_n(n, 1, "circles")
    noise = _check_scale(noise, "circles", "noise")
    if not 0.0 < factor < 1.0:
        raise ValueError(f"circles: factor must be in (0, 1), got {factor}")
    rng = np.random.default_rng(seed)
    n0, n1 = _split(n, 2)
    t0 = np.linspace(0, 2 * np.pi, n0, endpoint=False)
    t1 = np.linspace(0, 2 * np.pi, n1, endpoint=False)
    X = np.concatenate([np.stack([np.cos(t0), np.sin(t0)], 1),
                        factor * np.stack([np.cos(t1), np.sin(t1)], 1)])
    X = X + rng.standard_normal(X.shape) * noise
    y = np.concatenate([np.zeros(n0), np.ones(n1)])
    return _finish(X, y, rng, dtype)


def gaussian_mixture(n: int = 300, classes: int = 3, dim: int = 2, spread: float = 3.0,
                     std: float = 1.0, seed: int | None = 0,
                     dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """One isotropic Gaussian blob per class: centres drawn N(0, spread²) in `dim` dimensions,
    points N(centre, std²). X (n, dim), y (n,) int64."""
    n = _check_n(n, 1, "gaussian_mixture")
    classes = _check_n(classes, 1, "gaussian_mixture", "classes")
    dim = _check_n(dim, 1, "gaussian_mixture", "dim")
    spread = _check_scale(spread, "gaussian_mixture", "spread")
    std = _check_scale(std, "gaussian_mixture", "std")
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim)) * spread
    sizes = _split(n, classes)
    X = np.concatenate([centres[c] + rng.standard_normal((m, dim)) * std for c, m in enumerate(sizes)])
    y = np.concatenate([np.full(m, c) for c, m in enumerate(sizes)])
    return _finish(X, y, rng, dtype)


# ---------------------------------------------------------------------------------------------
# User files

def _labels(col: np.ndarray) -> np.ndarray:
    """Integral label columns become int64 class labels; anything else stays float32."""
    if col.size and np.all(np.isfinite(col)) and np.all(col == np.round(col)):
        return col.astype(np.int64)
    return col.astype(np.float32)


def load_arrays(path: str | os.PathLike, label_column: int = -1,
                dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Load (X, y) from a user's .npz (arrays named X/x and y/Y) or .csv (numbers; an optional
    header row; the label is column `label_column`, default the last). Integral labels come back
    as int64 class labels, others as float32 targets."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".npz", ".csv"):
        raise ValueError(f"load_arrays: {path!r} is neither .npz nor .csv")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_arrays: no such file {path!r}")
    if ext == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except Exception as e:
            raise ValueError(f"load_arrays: {path!r} is not a readable .npz file ({e})") from e
        xk = next((k for k in ("X", "x") if k in arrays), None)
        yk = next((k for k in ("y", "Y") if k in arrays), None)
        if xk is None or yk is None:
            raise ValueError(f"load_arrays: {path!r} must hold arrays named 'X' and 'y'; "
                             f"it holds {sorted(arrays)}")
        X, y = arrays[xk], arrays[yk]
        if X.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
            raise ValueError(f"load_arrays: X and y must be numeric, got {X.dtype} and {y.dtype}")
        if X.ndim < 1 or y.ndim < 1 or X.shape[0] != y.shape[0]:
            raise ValueError(f"load_arrays: X {X.shape} and y {y.shape} must have the same "
                             "number of rows")
        if X.ndim == 1:
            X = X[:, None]
        for name, a in (("X", X), ("y", y)):
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                row = int(np.argwhere(~np.isfinite(a))[0][0])
                raise ValueError(f"load_arrays: {path!r} has NaN or infinite values in {name} "
                                 f"(first at row {row}); clean or drop those rows first")
        y = _labels(y.astype(np.float64)) if y.dtype.kind == "f" else y.astype(np.int64)
        return np.ascontiguousarray(X, dtype=dtype), y
    rows = []
    with open(path, newline="") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            try:
                rows.append([float(c) for c in row])
            except ValueError:
                if not rows and lineno == 1:
                    continue  # a header row
                raise ValueError(f"load_arrays: {path!r} line {lineno} has a non-numeric "
                                 f"value: {row}") from None
            if len(rows[-1]) != len(rows[0]):
                raise ValueError(f"load_arrays: {path!r} line {lineno} has {len(rows[-1])} "
                                 f"columns, the first data row has {len(rows[0])}")
    if not rows:
        raise ValueError(f"load_arrays: {path!r} has no data rows")
    data = np.array(rows, dtype=np.float64)
    if data.shape[1] < 2:
        raise ValueError(f"load_arrays: {path!r} needs at least two columns (features and label)")
    lc = label_column if label_column >= 0 else data.shape[1] + label_column
    if not 0 <= lc < data.shape[1]:
        raise ValueError(f"load_arrays: label_column {label_column} out of range for "
                         f"{data.shape[1]} columns")
    y = _labels(data[:, lc])
    X = np.delete(data, lc, axis=1)
    if not np.all(np.isfinite(data)):
        row = int(np.argwhere(~np.isfinite(data))[0][0])
        raise ValueError(f"load_arrays: {path!r} has NaN or infinite values (first in data row "
                         f"{row}); clean or drop those rows first")
    return np.ascontiguousarray(X, dtype=dtype), y
from ._seqdata import ADDING_BASELINE_MSE, adding_problem, temporal_order  # noqa: E402,F401  (sequence tasks)
