"""The one-pass tensor health kernel on CUDA (csrc/cuda/health.cu) and the device ring of
per-step statistics (csrc/cuda/ring.cu).

Every build: _C.health_replay runs the kernel's schedule (tiles, slots t + s, merge in tile order)
with the DG_HOST_DEVICE code of deepgrad/health.h that the kernel runs, against a float64 numpy
reference and the CPU kernel (_C.segment_health), on fresh random inputs with NaN/Inf planted at
known positions, empty segments and segments of length 1.

With a GPU (tests marked cuda, skipped only without one): the kernel against the CPU kernel,
numpy and the replay, misaligned views, determinism; the ring's records equal the CPU health of
each step, recording never synchronises with the host, reading synchronises once."""
import numpy as np
import pytest

from deepgrad import _C

if _C.build_info()["cuda"] and _C.cuda_device_count() > 0:
    from deepgrad.backend import cuda as cb
else:
    cb = None


def reference(buf, offsets):
    """float64 (S, 7) rows, plain numpy: [L2, L-inf, min, max] of the finite values, NaN count,
    Inf count, first non-finite index (-1)."""
    rows = []
    for a, b in zip(offsets[:-1], offsets[1:]):
        seg = np.asarray(buf[a:b], dtype=np.float64)
        fin = seg[np.isfinite(seg)]
        bad = np.flatnonzero(~np.isfinite(seg))
        rows.append([np.sqrt(np.sum(fin * fin)), np.max(np.abs(fin)) if fin.size else 0.0,
                     fin.min() if fin.size else np.nan, fin.max() if fin.size else np.nan,
                     np.isnan(seg).sum(), np.isinf(seg).sum(), bad[0] if bad.size else -1])
    return np.array(rows, dtype=np.float64).reshape(-1, 7)


def check(got, ref, rtol):
    """Exact for everything but the L2 norm (summation order), NaN where the reference has NaN."""
    assert got.shape == ref.shape
    np.testing.assert_allclose(got[:, 0], ref[:, 0], rtol=rtol, atol=0)
    np.testing.assert_array_equal(got[:, 1:], ref[:, 1:])


def planted(rng, n, dtype, k_nan=3, k_inf=3):
    buf = (rng.standard_normal(n) * rng.uniform(0.1, 10)).astype(dtype)
    pos = rng.choice(n, size=min(n, k_nan + k_inf), replace=False)
    buf[pos[:k_nan]] = np.nan
    buf[pos[k_nan:]] = np.where(rng.random(len(pos[k_nan:])) < 0.5, np.inf, -np.inf)
    return buf


def random_offsets(rng, n, s):
    """s segments with boundaries at arbitrary elements, including empty and length-1 ones."""
    cuts = np.sort(rng.integers(0, n + 1, s - 1)) if s > 1 else np.array([], np.int64)
    off = np.concatenate([[0], cuts, [n]]).astype(np.int64)
    if n >= 3 and s >= 4:  # force one empty and one length-1 segment
        off[1] = off[2] = min(off[2], n - 1)
        off[3] = max(off[3], off[2] + 1)
        off[3:] = np.maximum.accumulate(off[3:])
    return off


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 1e-12)])
@pytest.mark.parametrize("n,s,tile", [(1, 1, 0), (17, 5, 0), (5000, 9, 0), (5000, 40, 7),
                                      (100_003, 13, 0), (3_000_001, 3, 0)])
def test_replay_matches_numpy_and_cpu_kernel(rng, dtype, rtol, n, s, tile):
    buf = planted(rng, n, dtype, k_nan=min(3, n), k_inf=min(3, max(0, n - 3)))
    off = random_offsets(rng, n, s)
    got = _C.health_replay(buf, off, tile)
    # float32 elements are exact in float64, so the float64 sum of squares matches to 1e-12 too
    check(got, reference(buf, off), rtol)
    check(got, _C.segment_health(buf, off), rtol)


def test_replay_all_finite_and_all_bad_segments(rng):
    buf = np.concatenate([rng.standard_normal(4), [np.nan, np.inf, -np.inf], [2.5]])
    off = np.array([0, 4, 7, 7, 8], np.int64)
    got = _C.health_replay(buf, off, 2)
    check(got, reference(buf, off), 1e-12)
    assert got[1, 0] == 0 and got[1, 1] == 0 and np.isnan(got[1, 2]) and got[1, 6] == 0
    assert got[1, 4] == 1 and got[1, 5] == 2
    np.testing.assert_array_equal(got[3], [2.5, 2.5, 2.5, 2.5, 0, 0, -1])  # length 1
    assert got[2, 0] == 0 and np.isnan(got[2, 3]) and got[2, 6] == -1        # empty


def test_replay_overflowing_squares_is_inf_like_cpu():
    buf = np.array([1e200, -1e200, 3.0])
    got = _C.health_replay(buf, np.array([0, 3]))
    assert got[0, 0] == np.inf and got[0, 1] == 1e200 and got[0, 4] == 0
    np.testing.assert_array_equal(got, _C.segment_health(buf, np.array([0, 3])))


def test_replay_no_segments_and_bad_offsets(rng):
    assert _C.health_replay(np.zeros(0), np.array([0])).shape == (0, 7)
    buf = rng.standard_normal(10)
    with pytest.raises(ValueError, match="non-decreasing"):
        _C.health_replay(buf, np.array([0, 6, 4, 10]))
    with pytest.raises(ValueError, match="last offset must equal buf.size"):
        _C.health_replay(buf, np.array([0, 9]))
    with pytest.raises(TypeError, match="numpy integer array"):
        _C.health_replay(buf, [0, 10])
    with pytest.raises(TypeError, match="float32 or float64"):
        _C.health_replay(np.arange(10), np.array([0, 10]))


# ---- on the GPU ------------------------------------------------------------------------------

def dev_view(a, shift):
    """A device view `shift` elements into its storage (misaligned for float4/double2 loads)."""
    pad = np.full(shift, np.nan, a.dtype)
    return _C.CudaArray(np.concatenate([pad, a])).view(shift, (a.size,))


SIZES = [(1, 1), (17, 5), (5000, 9), (100_003, 13), (3_000_001, 40), (40_000_000, 200)]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,s", SIZES)
@pytest.mark.parametrize("shift", [0, 1])
def test_segment_health_matches_cpu_numpy_and_replay(rng, dtype, n, s, shift):
    buf = planted(rng, n, dtype, k_nan=min(3, n), k_inf=min(3, max(0, n - 3)))
    off = random_offsets(rng, n, s)
    got = cb.segment_health(dev_view(buf, shift) if shift else _C.CudaArray(buf), off)
    assert got.dtype == np.float64 and got.shape == (len(off) - 1, 7)
    check(got, _C.segment_health(buf, off), 1e-12)  # the CPU backend's entry, same meaning
    check(got, reference(buf, off), 1e-12)
    check(got, _C.health_replay(buf, off), 1e-12)


@pytest.mark.cuda
def test_segment_health_is_deterministic(rng):
    buf = _C.CudaArray(rng.standard_normal(10_000_019).astype(np.float32))
    off = random_offsets(rng, 10_000_019, 77)
    a, b = cb.segment_health(buf, off), cb.segment_health(buf, off)
    np.testing.assert_array_equal(a, b)


@pytest.mark.cuda
def test_segment_health_edge_segments():
    buf = np.array([1.0, -2.0, np.nan, np.inf, -np.inf, 4.0], np.float32)
    off = np.array([0, 0, 1, 2, 5, 6], np.int64)
    got = cb.segment_health(_C.CudaArray(buf), off)
    check(got, reference(buf, off), 1e-12)
    np.testing.assert_array_equal(got[3, 4:], [1, 2, 0])  # NaN first, at index 0 of the segment
    assert cb.segment_health(_C.CudaArray(np.zeros(0, np.float32)), np.array([0])).shape == (0, 7)


@pytest.mark.cuda
def test_segment_health_errors():
    a = _C.CudaArray(np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="different devices"):
        cb.segment_health(np.zeros(10, np.float32), np.array([0, 10]))
    with pytest.raises(ValueError, match="last offset must equal buf.size"):
        cb.segment_health(a, np.array([0, 9]))
    with pytest.raises(TypeError, match="int64"):
        cb.segment_health(_C.CudaArray(np.zeros(4, np.int64)), np.array([0, 4]))
    with pytest.raises(ValueError, match="1-D"):
        cb.segment_health(_C.CudaArray(np.zeros((2, 5), np.float32)), np.array([0, 10]))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tensors_health_one_row_per_array(rng, dtype):
    """70 arrays (two launch groups of at most 64), sizes 0 to 5000, some misaligned views, NaN
    and Inf planted: each row equals the CPU kernel's row of that array."""
    host, devs = [], []
    for k in range(70):
        n = int(rng.choice([0, 1, 3, 17, 300, 5000]))
        a = planted(rng, n, dtype, k_nan=min(1, n), k_inf=min(1, max(0, n - 1)))
        host.append(a)
        devs.append(dev_view(a, 1) if k % 3 == 0 else _C.CudaArray(a))
    got = _C.cuda_tensors_health(devs)
    ref = np.concatenate([_C.segment_health(a, np.array([0, a.size])) for a in host])
    check(got, ref, 1e-12)
    assert _C.cuda_tensors_health([]).shape == (0, 7)
    # the backend entry, the CPU entry's meaning, float32 and float64 mixed in one call
    mixed = [_C.CudaArray(host[0]), _C.CudaArray(host[1].astype(np.float64)), devs[2]]
    check(cb.tensors_health(mixed), np.concatenate(
        [_C.segment_health(a, np.array([0, a.size]))
         for a in (host[0], host[1].astype(np.float64), host[2])]), 1e-12)
    with pytest.raises(TypeError, match="mix float32 and float64"):
        _C.cuda_tensors_health([_C.CudaArray(np.zeros(2, np.float32)), _C.CudaArray(np.zeros(2))])


# ---- the ring ----------------------------------------------------------------------------------

@pytest.mark.cuda
def test_ring_records_equal_cpu_health_without_host_syncs(rng):
    """Each step: fresh gradients and parameters, a device loss; one record per step writes the
    loss, both buffers' health rows and a row per array of a list. No record synchronises; the read returns every step in
    order and synchronises once."""
    n, S, steps = 50_000, 6, 7
    off = random_offsets(rng, n, S)
    width = 1 + 14 * S + 14
    ring = cb.stat_ring(100, width)
    host = []
    for step in range(steps):
        g = planted(rng, n, np.float32, k_nan=step % 2, k_inf=step % 3)
        p = rng.standard_normal(n).astype(np.float32)
        loss = rng.standard_normal(()).astype(np.float32)
        dg_, dp, dl = _C.CudaArray(g), _C.CudaArray(p), _C.CudaArray(loss)
        host.append((10 * step, loss, g, p))
        _C.cuda_synchronize()
        before = _C.cuda_host_syncs()
        cb.record_stats(ring, 10 * step, health=[(1, dg_, off), (1 + 7 * S, dp, off),
                                                 (1 + 14 * S, [dl, dg_])],
                        values=[(0, dl)])
        assert _C.cuda_host_syncs() == before, "a record synchronised with the host"
    assert ring.records == steps and ring.unread == steps
    before = _C.cuda_host_syncs()
    got_steps, rows = cb.read_stats(ring)
    assert _C.cuda_host_syncs() - before == 1
    assert ring.unread == 0
    np.testing.assert_array_equal(got_steps, [10 * k for k in range(steps)])
    assert rows.shape == (steps, width)
    for (step, loss, g, p), row in zip(host, rows):
        assert row[0] == np.float64(loss)
        check(row[1:1 + 7 * S].reshape(S, 7), _C.segment_health(g, off), 1e-12)
        check(row[1 + 7 * S:1 + 14 * S].reshape(S, 7), _C.segment_health(p, off), 1e-12)
        check(row[1 + 14 * S:].reshape(2, 7), np.concatenate(  # a (col, [arrays]) item
            [_C.segment_health(np.atleast_1d(a), np.array([0, a.size])) for a in (loss, g)]),
            1e-12)
    assert cb.read_stats(ring)[1].shape == (0, width)  # nothing new


@pytest.mark.cuda
def test_ring_wraps_and_copies_when_full(rng):
    """3 slots, 11 records: every 3rd record enqueues the copy of a full ring first; nothing is
    lost or reordered and no record synchronises. Unwritten columns hold NaN."""
    ring = cb.stat_ring(3, 4)
    vals = rng.standard_normal((11, 2))
    before = _C.cuda_host_syncs()
    for k in range(11):
        cb.record_stats(ring, k, values=[(1, _C.CudaArray(vals[k]))])
        if k == 4:
            ring.copy_async()  # an extra copy mid-ring: the next one starts after it
    assert _C.cuda_host_syncs() == before
    steps, rows = cb.read_stats(ring)
    np.testing.assert_array_equal(steps, np.arange(11))
    np.testing.assert_array_equal(rows[:, 1:3], vals)
    assert np.all(np.isnan(rows[:, 0])) and np.all(np.isnan(rows[:, 3]))


@pytest.mark.cuda
def test_ring_host_values_join_their_rows(rng):
    """Values known on the host (a float, a numpy array) are kept beside the slot and written
    into the row when it reaches the host: no transfer, no wait, right row after a wrap."""
    ring = cb.stat_ring(2, 5)
    dev_vals = rng.standard_normal((5, 2))
    before = _C.cuda_host_syncs()
    for k in range(5):
        cb.record_stats(ring, k, values=[(0, float(k) + 0.5), (1, _C.CudaArray(dev_vals[k])),
                                         (3, np.array([k, -k], np.int64))])
    assert _C.cuda_host_syncs() == before
    steps, rows = cb.read_stats(ring)
    np.testing.assert_array_equal(steps, np.arange(5))
    np.testing.assert_array_equal(rows[:, 0], np.arange(5) + 0.5)
    np.testing.assert_array_equal(rows[:, 1:3], dev_vals)
    np.testing.assert_array_equal(rows[:, 3:], np.stack([np.arange(5), -np.arange(5)], 1))


@pytest.mark.cuda
def test_ring_errors(rng):
    ring = cb.stat_ring(4, 8)
    a = _C.CudaArray(np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="width 8"):
        cb.record_stats(ring, 0, health=[(2, a, np.array([0, 10]))])  # needs 7 columns at 2
    with pytest.raises(ValueError, match="width 8"):
        cb.record_stats(ring, 0, values=[(0, a)])
    with pytest.raises(ValueError, match="last offset"):
        cb.record_stats(ring, 0, health=[(0, a, np.array([0, 5]))])
    with pytest.raises(TypeError, match="tuple"):
        cb.record_stats(ring, 0, values=[[0, a]])
    with pytest.raises(TypeError, match="numeric numpy array"):
        cb.record_stats(ring, 0, values=[(0, "loss")])
    with pytest.raises(ValueError, match="width 8"):
        cb.record_stats(ring, 0, values=[(7, np.zeros(2))])
    assert ring.records == 0  # a refused record leaves the ring unchanged
    with pytest.raises(ValueError, match="slots and width"):
        cb.stat_ring(0, 3)


# ---- monitor_norms: the CPU entry's results from the device ------------------------------------

def same_norms(got, ref, rtol=1e-12):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=rtol, atol=0)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("diff,snapshot,health", [(False, False, False), (True, True, True),
                                                  (True, False, False), (False, True, True)])
def test_monitor_norms_matches_cpu_entry(rng, dtype, diff, snapshot, health):
    n, S = 30_011, 9
    off = random_offsets(rng, n, S)
    params = planted(rng, n, dtype, k_nan=1, k_inf=1)
    grads = planted(rng, n, dtype, k_nan=2, k_inf=2)
    prev = (params + rng.standard_normal(n) * 0.01).astype(dtype)
    prev_cpu = prev.copy()
    prev_dev = _C.CudaArray(prev)
    before = _C.cuda_host_syncs()
    got = cb.monitor_norms(_C.CudaArray(params), _C.CudaArray(grads), prev_dev, off, diff,
                           snapshot, health)
    assert _C.cuda_host_syncs() - before == 1  # one copy back for everything
    ref = _C.monitor_norms(params, grads, prev_cpu, off, diff, snapshot, health)
    assert len(got) == len(ref)
    same_norms(got[0], ref[0])
    same_norms(got[1], ref[1])
    if diff:
        same_norms(got[2], ref[2])
    else:
        assert got[2] is None
    assert got[3] == ref[3] == 4
    if health:
        np.testing.assert_array_equal(got[4], ref[4])
    np.testing.assert_array_equal(prev_dev.numpy(), prev_cpu)  # snapshot (or untouched) alike


@pytest.mark.cuda
def test_monitor_norms_errors():
    a = _C.CudaArray(np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="prev is needed"):
        cb.monitor_norms(a, a, None, np.array([0, 10]), diff=True)
    with pytest.raises(TypeError, match="prev has dtype float64"):
        cb.monitor_norms(a, a, _C.CudaArray(np.zeros(10)), np.array([0, 10]), snapshot=True)
    with pytest.raises(ValueError, match="grads has shape"):
        cb.monitor_norms(a, _C.CudaArray(np.zeros(9, np.float32)), None, np.array([0, 10]))
