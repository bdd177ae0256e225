"""The monitor's cheap paths: the native act_stats pass, the layer statistics record the fused
dense kernels fill, and the monitor's statistics from them against numpy in float64."""
import math

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import losses, nn
from deepgrad import functional as F
from deepgrad.backend import get_backend
from deepgrad.monitor import GradientMonitor

cpu = get_backend("cpu")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (64, 64), (7, 129)])
def test_act_stats_matches_numpy(dtype, shape):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    z = (rng.normal(size=shape) * 3 + 0.5).astype(dtype)
    y = np.tanh(z).astype(dtype)
    y[:, 0] = 0  # a column that is never positive
    bound = math.sqrt(1 - 1e-3)
    s1, s2, n_sat, n_alive = cpu.act_stats(z, y, 1, 0.0, bound, True)
    z64 = z.astype(np.float64)
    assert s1 == pytest.approx(z64.sum(), rel=1e-12, abs=1e-12)
    assert s2 == pytest.approx(np.sum(z64 ** 2), rel=1e-12)
    assert n_sat == np.count_nonzero(np.abs(y) > dtype(bound))  # compared in the array's dtype
    assert n_alive == np.count_nonzero((y > 0).any(axis=0))
    # saturation measured on z around a centre, no dead count
    s1b, s2b, n_sat_z, zero = cpu.act_stats(z, None, 2, 0.5, 2.0, False)
    assert (s1b, s2b, zero) == (s1, s2, 0)
    assert n_sat_z == np.count_nonzero(np.abs(z - dtype(0.5)) > dtype(2.0))


def test_act_stats_nan_and_checks():
    z = np.array([[np.nan, 1.0], [2.0, -1.0]], dtype=np.float32)
    y = np.array([[np.nan, 0.0], [0.0, 0.0]], dtype=np.float32)
    s1, s2, n_sat, n_alive = cpu.act_stats(z, y, 1, 0.0, 0.5, True)
    assert math.isnan(s1) and math.isnan(s2) and n_sat == 0 and n_alive == 0
    with pytest.raises(ValueError, match="y has shape"):
        cpu.act_stats(z, y[:1], 1, 0.0, 0.5, False)
    with pytest.raises(ValueError, match="y is needed"):
        cpu.act_stats(z, None, 0, 0.0, 0.0, True)
    with pytest.raises(TypeError, match="same dtype|dtype"):
        cpu.act_stats(z, y.astype(np.float64), 1, 0.0, 0.5, False)


def _record_reference(z, y, sat, center, bound, dead):
    """(sum z, sum z^2, saturated count, alive columns) in float64 numpy."""
    z64 = z.astype(np.float64)
    a = y if sat == 1 else z
    n_sat = np.count_nonzero(np.abs(a - a.dtype.type(center)) > a.dtype.type(bound)) if sat else 0
    alive = np.count_nonzero((y > 0).any(axis=0)) if dead else 0
    return z64.sum(), (z64 ** 2).sum(), n_sat, alive


_REQUESTS = {"identity": (0, 0.0, 0.0, False), "relu": (0, 0.0, 0.0, True),
             "tanh": (1, 0.0, 0.99, False), "sigmoid": (1, 0.5, 0.45, False),
             "gelu": (0, 0.0, 0.0, True), "softsign": (2, 0.0, 2.0, False)}


@pytest.mark.parametrize("act", sorted(_REQUESTS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(9, 5, 7), (1, 3, 1), (130, 40, 67), (20, 8, 150)])
def test_dense_record_matches_numpy(act, dtype, shape):
    """The forward slots of a layer statistics record filled by the fused kernel equal numpy
    on z = x w + b and y (float64 to 1e-12 relative, float32 to 1e-5), the output and the
    gradients are the same bits with or without a record, and the backward adds ||dL/dy||^2."""
    n, k, c = shape
    rng = np.random.default_rng(n * 7 + c)
    x = dg.tensor(rng.normal(size=(n, k)) * 2, dtype=dtype)
    w = dg.tensor(rng.normal(size=(k, c)), dtype=dtype, requires_grad=True)
    b = dg.tensor(rng.normal(size=c), dtype=dtype, requires_grad=True)
    sat, center, bound, dead = _REQUESTS[act]
    rec = F.layer_record(True, sat, center, bound, dead)
    y = F.dense(x, w, b, act, stats=rec)
    y0 = F.dense(x, w, b, act)
    np.testing.assert_array_equal(y.numpy(), y0.numpy())
    S = F.LayerStats
    assert rec[S.FWD_COUNT] == 1 and rec[S.BWD_COUNT] == 0
    assert rec[S.ELEMENTS] == n * c and rec[S.COLUMNS] == c
    z = (x.numpy().astype(np.float64) @ w.numpy().astype(np.float64) + b.numpy())
    s1, s2, n_sat, alive = _record_reference(z, y.numpy(), sat, center, bound, dead)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    scale = np.abs(z).sum()
    assert abs(rec[S.SUM] - s1) <= tol * scale
    assert rec[S.SUM_SQ] == pytest.approx(s2, rel=tol)
    if dtype == np.float64:
        assert (rec[S.SATURATED], rec[S.ALIVE]) == (n_sat, alive)
    else:  # the kernel counts on its own float32 z and y: a value on the bound may differ
        zf = x.numpy() @ w.numpy() + b.numpy()
        _, _, n_sat32, alive32 = _record_reference(zf, y.numpy(), sat, center, bound, dead)
        assert abs(rec[S.SATURATED] - n_sat32) <= max(2, 1e-3 * n * c)
        assert abs(rec[S.ALIVE] - alive32) <= 1
    C = rng.normal(size=(n, c))
    (y * dg.tensor(C, dtype=dtype)).sum().backward()
    gw = w.grad.numpy().copy()
    w.grad, b.grad = None, None
    (y0 * dg.tensor(C, dtype=dtype)).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), gw)
    assert rec[S.BWD_COUNT] == 1
    assert rec[S.SIGNAL_SQ] == pytest.approx((C.astype(dtype).astype(np.float64) ** 2).sum(),
                                             rel=tol)


@pytest.mark.parametrize("scale", [1e-25, 1e-40, 1e25, 3e19])
def test_dense_record_holds_over_the_whole_float32_range(scale):
    """A vanishing signal squares below the smallest float32 (|x| < 1e-19), an exploding one
    above the largest (|x| > 1.8e19): the record's sums still equal the float64 numbers, so the
    monitor shows a signal of 1e-25 as 1e-25, not 0, and one of 1e25 as 1e25, not inf."""
    rng = np.random.default_rng(3)
    n, k, c = 64, 16, 96  # several 512-element chunks of the sums
    x = dg.tensor(rng.normal(size=(n, k)) * scale, dtype=np.float32)
    w = dg.tensor(rng.normal(size=(k, c)) * 0.25, dtype=np.float32, requires_grad=True)
    rec = F.layer_record(True, 0, 0.0, 0.0, False)
    y = F.dense(x, w, None, "identity", stats=rec)
    z = x.numpy().astype(np.float64) @ w.numpy().astype(np.float64)
    S = F.LayerStats
    assert rec[S.SUM_SQ] == pytest.approx((z ** 2).sum(), rel=1e-5, abs=0)
    G = (rng.normal(size=(n, c)) * scale).astype(np.float32)
    G[:2] = rng.normal(size=(2, c))  # ordinary rows before tiny ones: a chunk mixes them
    y.backward(dg.tensor(G))
    assert rec[S.SIGNAL_SQ] == pytest.approx((G.astype(np.float64) ** 2).sum(), rel=1e-5, abs=0)


def _record_isas():
    from deepgrad import _C
    out = []
    for isa in ("double", "avx2", "avx512"):
        try:
            _C._record_sums(np.ones(1, np.float32), isa)
            out.append(isa)
        except ValueError:
            pass
    return out


@pytest.mark.parametrize("isa", _record_isas())
@pytest.mark.parametrize("n", [0, 1, 63, 64, 511, 512, 2047, 2048, 2049, 9000])
@pytest.mark.parametrize("scale", [1.0, 1e-25, 1e-42, 3e19, 1e30])
def test_record_sums_of_every_loop_over_the_whole_float32_range(isa, n, scale):
    """Each loop behind the record's sums (the one this CPU uses and the others it can run)
    equals float64 numpy, for lengths around its vector, unroll and chunk sizes, values from
    subnormal to 1e30, and chunks mixing ordinary and tiny values."""
    from deepgrad import _C
    rng = np.random.default_rng(n)
    x = (rng.normal(size=n) * scale).astype(np.float32)
    if n > 600:
        x[100:600] = rng.normal(size=500).astype(np.float32)
    s, q = _C._record_sums(x, isa)
    x64 = x.astype(np.float64)
    assert abs(s - x64.sum()) <= 1e-5 * np.abs(x64).sum()
    assert q == pytest.approx((x64 ** 2).sum(), rel=1e-5, abs=0)
    # with the saturation count from the same loads (NaN never counts)
    if n > 3:
        x[3] = np.nan
    center, bound = np.float32(0.1 * scale), np.float32(scale)
    s2, q2, c = _C._record_sums(x, isa, float(center), float(bound))
    assert c == np.count_nonzero(np.abs(x - center) > bound)
    if n <= 3:
        assert (s2, q2) == (s, q)
    else:
        assert np.isnan(s2) and np.isnan(q2)


def _colmax_isas() -> list:
    from deepgrad import _C
    out = []
    for isa in ("double", "avx2", "avx512"):
        try:
            _C._record_sums_colmax(np.ones((1, 1), np.float32), isa)
            out.append(isa)
        except ValueError:
            pass
    return out


@pytest.mark.parametrize("isa", _colmax_isas())
@pytest.mark.parametrize("rows,cols", [(0, 5), (1, 1), (3, 15), (64, 64), (33, 65), (70, 200),
                                       (5, 257), (100, 17), (17, 32), (40, 96)])
@pytest.mark.parametrize("scale", [1.0, 1e-25, 1e30])
def test_relu_record_pass_sums_and_column_maxima(isa, rows, cols, scale):
    """The ReLU layer record's fused pass (sums of z and column maxima of z from the same loads)
    equals float64 numpy and np.max for column tails, chunks of rows, tiny and huge values, and
    a NaN (it never enters a maximum); column maxima start from what colmax held."""
    from deepgrad import _C
    rng = np.random.default_rng(rows * 1000 + cols)
    z = (rng.normal(size=(rows, cols)) * scale).astype(np.float32)
    if rows > 4:
        z[:, 0] = -np.abs(z[:, 0])       # a dead column
        z[2, min(2, cols - 1)] = np.nan
        z[:, -1] = rng.normal(size=rows).astype(np.float32)  # ordinary values among tiny ones
    s, q, cm = _C._record_sums_colmax(z, isa)
    fin = np.nan_to_num(z.astype(np.float64), nan=0.0)
    if np.isnan(z).any():
        assert np.isnan(s) and np.isnan(q)
    else:
        assert abs(s - fin.sum()) <= 1e-5 * np.abs(fin).sum()
        assert q == pytest.approx((fin ** 2).sum(), rel=1e-5, abs=0)
    want = np.where(np.isnan(z), -np.inf, z).max(axis=0) if rows else np.full(cols, -np.inf)
    np.testing.assert_array_equal(cm, want.astype(np.float32))


@pytest.mark.parametrize("act,alpha", [("relu", 0.01), ("leaky_relu", 0.2), ("identity", 0.01),
                                       ("leaky_relu", -0.5), ("elu", 1.0)])
@pytest.mark.parametrize("n,c", [(64, 64), (7, 33), (300, 200)])
def test_dense_record_alive_columns(act, alpha, n, c):
    """The record's alive count (columns with some y > 0) equals numpy on y, whether the kernel
    takes it on z with the sums (ReLU, leaky ReLU with a slope >= 0, identity) or on y."""
    S = F.LayerStats
    rng = np.random.default_rng(c)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    w = rng.normal(size=(5, c)).astype(np.float32)
    b = rng.normal(size=c).astype(np.float32) - 1.5  # some columns never positive
    b[: c // 4] = -100.0
    rec = F.layer_record(True, 0, 0.0, 0.0, True)
    y = F.dense(dg.tensor(x), dg.tensor(w, requires_grad=True), dg.tensor(b), act, alpha,
                stats=rec)
    yv = y.numpy()
    z64 = x.astype(np.float64) @ w + b
    assert rec[S.ALIVE] == np.count_nonzero((yv > 0).any(axis=0))
    if alpha >= 0:  # (a negative slope makes every column with a negative z alive)
        assert 0 < rec[S.ALIVE] < c
    assert rec[S.SUM] == pytest.approx(z64.sum(), rel=1e-4, abs=1e-3 * np.abs(z64).sum() / z64.size)
    assert rec[S.SUM_SQ] == pytest.approx((z64 ** 2).sum(), rel=1e-4)


def test_record_sums_hook_checks_its_arguments():
    from deepgrad import _C
    with pytest.raises(TypeError, match="float32"):
        _C._record_sums(np.ones(3), "double")
    with pytest.raises(ValueError, match="isa must be"):
        _C._record_sums(np.ones(3, np.float32), "sse9")
    with pytest.raises(ValueError, match="isa must be"):
        _C._record_sums_colmax(np.ones((2, 3), np.float32), "sse9")
    with pytest.raises(TypeError, match="float32"):
        _C._record_sums_colmax(np.ones((2, 3)), "double")


def test_dense_record_nan_empty_no_grad_and_bad_records():
    S = F.LayerStats
    x = dg.tensor(np.array([[1.0, np.nan], [0.5, 2.0]]))
    w = dg.tensor(np.eye(2), requires_grad=True)
    rec = F.layer_record(True, 1, 0.0, 0.9, True)
    y = F.dense(x, w, None, "tanh", stats=rec)
    assert math.isnan(rec[S.SUM]) and rec[S.SATURATED] == 1 and rec[S.ALIVE] == 2
    g = np.array([[1.0, 2.0], [np.inf, 0.0]])
    y.backward(dg.tensor(g))
    assert math.isnan(rec[S.SIGNAL_SQ]) and rec[S.BWD_COUNT] == 1
    # an empty batch: zero elements, the counts still move
    e = F.dense(dg.tensor(np.zeros((0, 2))), w, None, "relu", stats=rec)
    assert rec[S.ELEMENTS] == 0 and rec[S.SUM] == 0 and rec[S.FWD_COUNT] == 2
    e.sum().backward()
    assert rec[S.SIGNAL_SQ] == 0 and rec[S.BWD_COUNT] == 2
    # forwards that record no tape node leave the record alone
    with dg.no_grad():
        F.dense(x, w, None, "tanh", stats=rec)
    F.dense(x, w.detach(), None, "tanh", stats=rec)
    assert rec[S.FWD_COUNT] == 2
    # a record that asks only for the signal
    sig = F.layer_record(False)
    F.dense(dg.tensor(np.ones((3, 2))), w, None, "tanh", stats=sig).sum().backward()
    assert sig[S.FWD_COUNT] == 0 and sig[S.BWD_COUNT] == 1 and sig[S.SIGNAL_SQ] == 6.0
    with pytest.raises(ValueError, match="float64 array of 16"):
        F.dense(x, w, None, "tanh", stats=np.zeros(16, dtype=np.float32))
    with pytest.raises(ValueError, match="float64 array of 16"):
        F.dense(x, w, None, "tanh", stats=np.zeros(8))
    with pytest.raises(ValueError, match="float64 array of 16"):
        F.dense(x, w, None, "tanh", stats=np.zeros((16, 2))[:, 0])
    with pytest.raises(TypeError, match="stats must be None or a float64"):
        F.dense(x, w, None, "tanh", stats=[0.0] * 16)
    with pytest.raises(ValueError, match="saturation"):
        F.layer_record(saturation=3)


def test_dense_record_does_not_depend_on_the_thread_count():
    """The mid-size layer forks inside the kernel; the per-row sums are combined in row order,
    so the record is the same bits on 1 and 2 threads."""
    rng = np.random.default_rng(31)
    x = dg.tensor(rng.normal(size=(256, 128)).astype(np.float32))
    w = dg.tensor(rng.normal(size=(128, 128)).astype(np.float32), requires_grad=True)
    recs = []
    old = dg.get_num_threads()
    try:
        for t in (1, 2):
            dg.set_num_threads(t)
            rec = F.layer_record(True, 1, 0.0, 0.99, True)
            F.dense(x, w, None, "tanh", stats=rec)
            recs.append(rec)
    finally:
        dg.set_num_threads(old)
    np.testing.assert_array_equal(recs[0], recs[1])


def test_relu_stats_from_the_kernel_match_numpy():
    dg.manual_seed(5)
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 6))
    m = nn.Sequential(nn.Dense(6, 16, "relu", dtype=np.float64), nn.Dense(16, 16, "relu", dtype=np.float64),
                      nn.Dense(16, 3, dtype=np.float64))
    m[1].bias.data = np.linspace(-4, 1, 16)  # some units dead for the whole batch
    mon = GradientMonitor(m)
    W = [(l.weight.numpy().copy(), l.bias.numpy().copy()) for l in m]
    out = m(dg.tensor(X))
    losses.cross_entropy(out, dg.tensor(rng.integers(0, 3, size=40))).backward()
    mon.step()
    d = mon.to_dict()
    h = X
    for l in range(2):
        z = h @ W[l][0] + W[l][1]
        h = np.maximum(z, 0)
        assert d["act_mean"][0][l] == pytest.approx(z.mean(), rel=1e-12)
        assert d["act_std"][0][l] == pytest.approx(z.std(), rel=1e-12)
        assert d["dead"][0][l] == pytest.approx(np.mean(~(h > 0).any(axis=0)), abs=0)
        assert d["saturated"][0][l] is None
    assert d["dead"][0][1] > 0.3
    mon.close()
    assert all(l.stats is None for l in m)  # close() takes the records away


def test_float32_sigmoid_stats_and_skipped_steps_keep_nothing():
    dg.manual_seed(6)
    rng = np.random.default_rng(6)
    X = rng.normal(size=(32, 4)).astype(np.float32) * 4
    m = nn.Sequential(nn.Dense(4, 8, "sigmoid"), nn.Dense(8, 2))
    mon = GradientMonitor(m, every=2)
    kept = []
    for step in range(3):
        W, b = m[0].weight.numpy().copy(), m[0].bias.numpy().copy()
        out = m(dg.tensor(X))
        kept.append(m[0].stats is not None)  # a record only for recorded forwards
        losses.cross_entropy(out, dg.tensor(rng.integers(0, 2, size=32))).backward()
        mon.step()
        if step == 0:
            z = X.astype(np.float64) @ W.astype(np.float64) + b
            d = mon.to_dict()
            assert d["act_mean"][0][0] == pytest.approx(z.mean(), rel=1e-5)
            assert d["act_std"][0][0] == pytest.approx(z.std(), rel=1e-5)
            y = 1 / (1 + np.exp(-z))
            assert d["saturated"][0][0] == pytest.approx(np.mean(y * (1 - y) < 1e-3 / 4), abs=1.5 / z.size)
    assert kept == [True, False, True]  # step 1 skipped: the plain kernels ran
    assert mon.num_records == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_monitor_norms_matches_numpy(dtype):
    rng = np.random.default_rng(11)
    offsets = np.array([0, 3, 3, 40, 1000, 1037], dtype=np.int64)  # an empty segment, tails
    p, g, q = (rng.normal(size=1037).astype(dtype) for _ in range(3))
    q0 = q.copy()
    pn, gn, dn, bad = cpu.monitor_norms(p, g, q, offsets, True, True)
    seg = [slice(a, b) for a, b in zip(offsets[:-1], offsets[1:])]
    f = lambda a: [np.linalg.norm(a[s].astype(np.float64)) for s in seg]  # noqa: E731
    np.testing.assert_allclose(pn, f(p), rtol=1e-12)
    np.testing.assert_allclose(gn, f(g), rtol=1e-12)
    np.testing.assert_allclose(dn, f(p - q0), rtol=1e-12)  # the difference taken in dtype
    assert bad == 0
    np.testing.assert_array_equal(q, p)  # snapshot taken
    g[5] = np.nan
    g[7] = np.inf
    pn2, gn2, none, bad = cpu.monitor_norms(p, g, None, offsets)
    assert none is None and bad == 2 and not np.isfinite(gn2[2]) and np.isfinite(gn2[3])
    np.testing.assert_array_equal(pn2, pn)
    with pytest.raises(ValueError, match="prev is needed"):
        cpu.monitor_norms(p, g, None, offsets, True, False)
    with pytest.raises(ValueError, match="offsets"):
        cpu.monitor_norms(p, g, q, offsets[:-1], True, False)


def test_l2_norms_matches_numpy():
    rng = np.random.default_rng(12)
    arrays = [rng.normal(size=(5, 7)).astype(np.float32), rng.normal(size=37),
              np.zeros((0, 3), dtype=np.float32), rng.normal(size=(4, 9))[:, ::2]]
    bad = rng.normal(size=20)
    bad[3] = np.inf
    huge = np.full(4, 1e200)  # the squares overflow: Inf, not NaN (no Inf or NaN inside)
    got = cpu.l2_norms(arrays + [bad, huge])
    ref = [np.linalg.norm(a.astype(np.float64)) for a in arrays]
    np.testing.assert_allclose(got[:4], ref, rtol=1e-12)
    assert np.isnan(got[4]) and got[5] == np.inf
    with pytest.raises(TypeError, match="float32 or float64"):
        cpu.l2_norms([np.arange(3)])


def test_act_stats_many_is_act_stats_per_item():
    rng = np.random.default_rng(13)
    z1, z2 = rng.normal(size=(6, 5)), rng.normal(size=(3, 9)).astype(np.float32)
    items = [(z1, np.tanh(z1), 1, 0.0, 0.9, False), (z2, np.maximum(z2, 0), 0, 0.0, 0.0, True)]
    assert cpu.act_stats_many(items) == [cpu.act_stats(*it) for it in items]
    assert cpu.act_stats_many([]) == []
    with pytest.raises(ValueError, match="tuple"):
        cpu.act_stats_many([(z1, z1)])


def test_monitor_records_are_removed_on_close_and_signal_matches_numpy():
    dg.manual_seed(22)
    rng = np.random.default_rng(22)
    X, C = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    m = nn.Sequential(nn.Dense(3, 5, "tanh", dtype=np.float64), nn.Dense(5, 2, dtype=np.float64))
    mon = GradientMonitor(m)
    out = m(dg.tensor(X))
    (out * dg.tensor(C)).sum().backward()
    mon.step()
    W1 = m[1].weight.numpy()
    d = mon.to_dict()
    assert d["signal_norm"][0][1] == pytest.approx(np.linalg.norm(C), rel=1e-12)
    assert d["signal_norm"][0][0] == pytest.approx(np.linalg.norm(C @ W1.T), rel=1e-12)
    assert d["act_mean"][0][1] is None  # identity layer: no statistics
    mon.close()
    assert "stats" not in m[0].__dict__ and "stats" not in m[1].__dict__


def test_reading_between_steps_gives_the_same_history_as_reading_at_the_end():
    rng = np.random.default_rng(23)
    X, y = rng.normal(size=(16, 3)), rng.integers(0, 2, size=16)

    def run(read_between):
        dg.manual_seed(23)
        m = nn.Sequential(nn.Dense(3, 6, "relu", dtype=np.float64), nn.Dense(6, 2, dtype=np.float64))
        opt = dg.optim.SGD(m.parameters(), lr=0.1)
        mon = GradientMonitor(m, every=2)
        for k in range(5):
            opt.zero_grad()
            losses.cross_entropy(m(dg.tensor(X)), dg.tensor(y)).backward()
            opt.step()
            mon.step()
            if read_between:
                assert mon.num_records == k // 2 + 1
                mon.to_dict()
        return mon.to_dict()

    a, b = run(True), run(False)
    assert a == b and a["steps"] == [0, 2, 4]
    assert a["update_norm"][1] is not None and a["layer_update_ratio"][1][0] > 0
