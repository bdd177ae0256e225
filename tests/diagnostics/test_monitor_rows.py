"""The monitor's native history rows (deepgrad.backend.cpu.MonitorRows): a recorded step of the
common case (host arena, step statistics from the optimizer's pass) is one native call,
MonitorRows.record. Its history must equal the general Python path's on the same run, and it
must decline (write nothing) whenever that case does not hold."""
import math

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import losses, nn, optim
from deepgrad.backend import cpu
from deepgrad.monitor import GradientMonitor


def _run(python_path: bool, every: int, max_records=None, steps: int = 23):
    dg.manual_seed(3)
    model = nn.Sequential(nn.Dense(4, 16, "tanh"), nn.Dense(16, 16, "relu"),
                          nn.Dense(16, 16, "sigmoid"), nn.Dense(16, 3))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    mon = GradientMonitor(model, every=every, max_records=max_records)
    rng = np.random.default_rng(0)
    native = 0
    for _ in range(steps):
        x = dg.tensor(rng.standard_normal((9, 4)).astype(np.float32))
        y = rng.integers(0, 3, 9)
        if python_path:
            mon._rec_rows.disarm()  # every step through the general path (which re-arms)
        loss = losses.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        before = mon._rec_rows.seconds
        recorded = mon.step(loss)
        native += recorded and mon._rec_rows.seconds != before  # (its clock: native work)
        if every > 1 and not python_path:  # the layers' records: on for the recorded steps only
            on = (mon._n % every) == 0
            assert [m.__dict__.get("stats") is not None for m in model] == [on] * 4
            assert model.arena.step_stats_readers == int(on)
    return mon.to_dict(), native


def _same(a, b, path="h"):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b)):
            _same(u, v, f"{path}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), (path, a, b)
    else:
        assert a == b, (path, a, b)


@pytest.mark.parametrize("every,max_records", [(1, None), (3, None), (1, 16)])
def test_native_record_gives_the_python_paths_history(every, max_records):
    fast, native = _run(False, every, max_records)
    slow, none = _run(True, every, max_records)
    recorded = len(range(0, 23, every))
    assert none == 0 and native == recorded - 1  # the first recorded step arms record()
    assert fast["steps"] == slow["steps"] and len(fast["steps"]) == \
        (recorded if max_records is None else len(fast["steps"]))
    if max_records is not None:
        assert len(fast["steps"]) <= max_records and fast["steps"][-1] == 22
    _same(fast, slow)
    # the records were read: the tanh, relu and sigmoid layers' statistics and every signal
    assert all(v is not None for v in fast["act_std"][-1][:3])
    assert all(v is not None and v > 0 for v in fast["signal_norm"][-1])


def _armed(width_recs=2, nseg=3, flush_at=-1, block_bytes=1 << 19):
    recs = np.arange(width_recs * 16, dtype=np.float64).reshape(width_recs, 16)
    stats = np.arange(nseg * 8, dtype=np.float64).reshape(nseg, 8) + 0.5
    stamp = np.array([0, 7], dtype=np.int64)
    raw = []
    rows = cpu.MonitorRows(3 + width_recs * 9 + nseg * 6, block_bytes)
    rows.arm(recs, 5, 14, stats, stamp, 11, raw, "marker", flush_at)
    return rows, recs, stats, stamp, raw


def test_record_rows_and_refusals():
    rows, recs, stats, stamp, raw = _armed()
    stamp[0] = 1
    assert rows.record(4, 2.5, 11, 7, 0) == 1
    row = rows.take()[0]
    assert row[0] == 4 and row[1] == 2.5 and row[2] == 1
    np.testing.assert_array_equal(row[3:21], recs[:, 5:14].ravel())
    np.testing.assert_array_equal(row[21:], stats[:, :6].ravel())
    assert raw == ["marker"] and rows.last_serial == 1
    # the same statistics again (no optimizer step since): declined, nothing written
    assert rows.record(5, 2.5, 11, 7, 0) == 0
    stamp[0] = 2
    assert rows.record(5, 2.5, 11, 8, 0) == 0   # a backward ran after the optimizer step
    assert rows.record(5, 2.5, 12, 7, 0) == 0   # the layout changed
    assert rows.record(5, "loss", 11, 7, 0) == 0  # a loss it cannot read without Python
    assert rows.record(5, np.zeros(2, np.float32), 11, 7, 0) == 0
    assert len(rows) == 0 and len(raw) == 1
    # None, an int, a float32 one-element array and an object with such .data are read
    for loss, want, given in ((None, float("nan"), 0), (3, 3.0, 1),
                              (np.array([0.25], np.float32), 0.25, 1),
                              (dg.tensor(np.float64(-1.5)), -1.5, 1)):
        stamp[0] += 1
        assert rows.record(6, loss, 11, 7, 0) == 1
        r = rows.take()[0]
        assert (math.isnan(r[1]) if math.isnan(want) else r[1] == want) and r[2] == given
    rows.disarm()
    stamp[0] += 1
    assert rows.record(7, 1.0, 11, 7, 0) == 0 and not rows.armed


def test_rows_grow_over_blocks_and_ask_for_flushes():
    rows, recs, stats, stamp, raw = _armed(flush_at=5, block_bytes=1)  # 8 rows a block
    codes = []
    for n in range(21):
        stamp[0] += 1
        recs[0, 5] = n
        codes.append(rows.record(n, float(n), 11, 7, 0))
    assert codes == [1] * 4 + [1 | 2] * 17  # recorded, and from the 5th on a flush is due
    assert len(rows) == 21
    out = rows.take()
    assert out.shape == (21, rows.width)
    np.testing.assert_array_equal(out[:, 0], np.arange(21))
    np.testing.assert_array_equal(out[:, 3], np.arange(21))  # recs[0, 5] of each step
    assert len(rows) == 0 and rows.take().shape == (0, rows.width)
    block, i = rows.slot()  # the general path's row
    assert i == 0 and block.shape[1] == rows.width and len(rows) == 1


def test_arm_checks_its_arrays():
    rows = cpu.MonitorRows(3 + 2 * 9 + 3 * 6)
    recs, stats = np.zeros((2, 16)), np.zeros((3, 8))
    stamp = np.zeros(2, np.int64)
    with pytest.raises(ValueError, match="columns"):
        rows.arm(recs, 5, 15, stats, stamp, 0, [], "m", -1)  # 2 x 10 record columns
    with pytest.raises(TypeError, match="stats must be a C-contiguous 2-D float64"):
        rows.arm(recs, 5, 14, stats.astype(np.float32), stamp, 0, [], "m", -1)
    with pytest.raises(TypeError, match="stamp must be a C-contiguous 1-D int64"):
        rows.arm(recs, 5, 14, stats, stamp.astype(np.float64), 0, [], "m", -1)
    with pytest.raises(ValueError, match="at least 6 columns"):
        rows.arm(recs, 5, 14, np.zeros((3, 5)), stamp, 0, [], "m", -1)
    with pytest.raises(ValueError, match="fill 33 columns but a row has 39"):
        rows.arm(recs, 5, 14, stats[:2], stamp, 0, [], "m", -1)
    with pytest.raises(ValueError, match="at least 3 columns"):
        cpu.MonitorRows(2)
    assert not rows.armed


def test_switch_puts_records_on_and_takes_them_away():
    class Arena:
        step_stats_readers = 0
    rows, recs, stats, stamp, raw = _armed()
    layers = [{"stats": None}, {"stats": None}]
    arena = Arena()
    own = [recs[0], recs[1]]  # the records (views kept: identity is checked)
    rows.arm_switch(list(zip(layers, own)), arena, 5)
    assert not rows.switch_on(11, 6)        # another readers epoch: declined
    assert not rows.switch_on(12, 5)        # another layout epoch: declined
    assert layers[0]["stats"] is None and arena.step_stats_readers == 0
    assert rows.switch_on(11, 5)
    assert layers[1]["stats"] is own[1] and arena.step_stats_readers == 1
    assert not rows.switch_on(11, 5)        # already on
    stamp[0] += 1
    assert rows.record(3, 1.0, 11, 7, 5) == 1 | 4  # recorded, and switched off
    assert layers[0]["stats"] is None and arena.step_stats_readers == 0
    stamp[0] += 1
    assert rows.record(4, 1.0, 11, 7, 5) == 1  # (off already: nothing to switch)
    assert rows.switch_on(11, 5)
    stamp[0] += 1
    assert rows.record(5, 1.0, 11, 7, 6) == 1  # another readers epoch: not switched off here
    assert layers[0]["stats"] is own[0] and arena.step_stats_readers == 1
    rows.disarm_switch()
    assert not rows.switch_on(11, 5)
    rows.arm_switch(list(zip(layers, own)), arena, 5, True)  # armed with the records on
    stamp[0] += 1
    assert rows.record(6, 1.0, 11, 7, 5) == 1 | 4
    assert layers[1]["stats"] is None and arena.step_stats_readers == 0
    with pytest.raises(TypeError, match="pairs"):
        rows.arm_switch([(1, 2)], None, 0)


def test_a_step_without_an_optimizer_step_then_the_native_path_again():
    # every=2: one recorded step comes without an optimizer step (the general path takes it,
    # norms from its own pass); the next recorded steps go native again, switch included
    dg.manual_seed(3)
    model = nn.Sequential(nn.Dense(4, 8, "tanh"), nn.Dense(8, 3))
    opt = optim.SGD(model.parameters(), lr=0.1)
    mon = GradientMonitor(model, every=2)
    rng = np.random.default_rng(1)
    for n in range(14):
        x = dg.tensor(rng.standard_normal((5, 4)).astype(np.float32))
        loss = losses.cross_entropy(model(x), rng.integers(0, 3, 5))
        opt.zero_grad()
        loss.backward()
        if n != 6:
            opt.step()
        mon.step(loss)
        on = mon._n % 2 == 0
        assert [m.__dict__.get("stats") is not None for m in model] == [on, on], n
        assert model.arena.step_stats_readers == int(on), n
    h = mon.to_dict()
    assert h["steps"] == list(range(0, 14, 2))
    assert h["update_norm"][3] is None or all(v == 0 for v in h["update_norm"][3])  # step 6
    assert all(v > 0 for v in h["update_norm"][-1])
    assert mon._rec_rows.armed
