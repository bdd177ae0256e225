"""Synthetic sequence tasks with long-range dependencies, generated locally and seeded.

These are the classic benchmarks for vanishing gradients through time (Hochreiter &
Schmidhuber, 1997): the information needed for the answer sits far from the end of the
sequence, so a model only learns if its gradient survives the trip back through T steps.
"""
from __future__ import annotations

import numpy as np

__all__ = ["adding_problem", "temporal_order", "ADDING_BASELINE_MSE"]

#: MSE of always predicting 1 on the adding problem: the variance of a sum of two U(0, 1).
ADDING_BASELINE_MSE = 1.0 / 6.0


def _check(n: int, T: int, min_T: int, name: str) -> None:
    if int(n) != n or n < 1:
        raise ValueError(f"{name}: n must be a positive integer, got {n!r}")
    if int(T) != T or T < min_T:
        raise ValueError(f"{name}: sequence length T must be an integer >= {min_T}, got {T!r}")


def adding_problem(n: int, T: int, seed: int = 0, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem: x (n, T, 2), y (n, 1).

    Channel 0 holds values drawn from U[0, 1]; channel 1 marks two positions with 1, one in the
    first half of the sequence and one in the second. The target is the sum of the two marked
    values. Predicting the constant 1 scores an MSE of 1/6 (``ADDING_BASELINE_MSE``).
    """
    _check(n, T, 2, "adding_problem")
    n, T = int(n), int(T)
    rng = np.random.default_rng(seed)
    values = rng.random((n, T))
    half = T // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, T, size=n)
    marks = np.zeros((n, T))
    rows = np.arange(n)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    x = np.stack([values, marks], axis=-1).astype(dtype)
    y = (values[rows, first] + values[rows, second])[:, None].astype(dtype)
    return x, y


def temporal_order(n: int, T: int, seed: int = 0, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """The temporal-order problem: x (n, T, 6) one-hot symbols, y (n,) int64 class in 0..3.

    Every position holds a distractor symbol (a, b, c, d: one-hot indices 2..5) except two:
    one in [10%, 20%) of the sequence and one in [50%, 60%), which hold X (index 0) or Y
    (index 1). The class is the ordered pair: XX=0, XY=1, YX=2, YY=3 (chance accuracy 25%).
    """
    _check(n, T, 10, "temporal_order")
    n, T = int(n), int(T)
    rng = np.random.default_rng(seed)
    symbols = rng.integers(2, 6, size=(n, T))
    lo1, hi1 = int(0.1 * T), max(int(0.2 * T), int(0.1 * T) + 1)
    lo2, hi2 = int(0.5 * T), max(int(0.6 * T), int(0.5 * T) + 1)
    t1 = rng.integers(lo1, hi1, size=n)
    t2 = rng.integers(lo2, hi2, size=n)
    s1 = rng.integers(0, 2, size=n)
    s2 = rng.integers(0, 2, size=n)
    rows = np.arange(n)
    symbols[rows, t1] = s1
    symbols[rows, t2] = s2
    x = np.eye(6, dtype=dtype)[symbols]
    y = (2 * s1 + s2).astype(np.int64)
    return x, y
