"""The stat ring primitives (stat_ring, record_stats, read_stats): the CPU backend's host ring
against numpy, and on a GPU the CUDA ring against the CPU ring on the same fresh random inputs."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad.backend import cpu


def _health64(buf, off):
    rows = []
    for a, b in zip(off[:-1], off[1:]):
        x = buf[a:b].astype(np.float64)
        fin = np.isfinite(x)
        bad = np.flatnonzero(~fin)
        f = x[fin]
        rows.append([np.linalg.norm(f), np.abs(f).max() if f.size else 0.0,
                     f.min() if f.size else np.nan, f.max() if f.size else np.nan,
                     np.isnan(x).sum(), np.isinf(x).sum(), bad[0] if bad.size else -1])
    return np.array(rows).reshape(-1)


def _records(be, put, rng):
    ring = be.stat_ring(3, 40)
    bufs = []
    for step in range(5):  # more records than slots: the ring keeps them all until read
        g = rng.standard_normal(20).astype(np.float32)
        g[step] = np.nan if step % 2 else np.inf
        off = np.array([0, 7, 7, 20], dtype=np.int64)
        loss = np.float32(rng.random())
        be.record_stats(ring, 10 + step, ((0, put(g), off),), ((30, put(np.array(loss))),))
        bufs.append((g, off, loss))
    return be.read_stats(ring), bufs, ring


def test_host_ring_against_numpy():
    rng = np.random.default_rng(0)
    (steps, rows), bufs, ring = _records(cpu, lambda a: a, rng)
    assert steps.tolist() == [10, 11, 12, 13, 14] and rows.shape == (5, 40)
    for row, (g, off, loss) in zip(rows, bufs):
        np.testing.assert_allclose(row[:21], _health64(g, off), rtol=1e-6, equal_nan=True)
        assert np.isnan(row[21:30]).all() and row[30] == pytest.approx(loss)
    s2, r2 = cpu.read_stats(ring)
    assert s2.shape == (0,) and r2.shape == (0, 40)  # read empties the ring
    with pytest.raises(ValueError, match="outside"):
        cpu.record_stats(ring, 0, ((35, np.ones(3, np.float32), np.array([0, 3])),))
    with pytest.raises(ValueError, match="slots"):
        cpu.stat_ring(0, 4)


def test_cuda_ring_matches_the_host_ring():
    if not dg.build_info()["cuda"] or not dg.cuda.is_available():
        pytest.skip("no CUDA device")
    from deepgrad.backend import cuda
    (s_h, r_h), _, _ = _records(cpu, lambda a: a, np.random.default_rng(1))
    (s_d, r_d), _, _ = _records(cuda, cuda.from_numpy, np.random.default_rng(1))
    np.testing.assert_array_equal(s_h, s_d)
    np.testing.assert_allclose(r_d, r_h, rtol=1e-6, equal_nan=True)
