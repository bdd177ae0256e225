"""The monitor on a device arena (issue 13): every recorded step goes into the backend's stat
ring with one enqueue-only call and no synchronising read; the host reads the ring once, when the
history is read, and the history equals the host path's. Checked on the CPU: the arena's backend
is replaced by a stand-in that logs every call by name and keeps the ring in numpy (the CUDA
ring itself is tested in tests/cuda)."""
import types

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import losses, nn, optim
from deepgrad.backend import get_backend
from deepgrad.monitor import GradientMonitor

cpu = get_backend("cpu")

# calls a device step may make: they only enqueue work on the device (the stand-in's ring is the
# CPU backend's host ring, whose record is computed at once)
ENQUEUE_ONLY = {"stat_ring", "record_stats", "sub", "copy", "copy_", "reshape"}


def _stand_in(calls):
    be = types.SimpleNamespace()

    def logged(name, fn):
        def call(*a, **k):
            calls.append(name)
            return fn(*a, **k)
        return call

    for name in dir(cpu):
        if not name.startswith("_") and callable(getattr(cpu, name)):
            setattr(be, name, logged(name, getattr(cpu, name)))
    be.STEP_STATS = False
    be.HOST_MEMORY = False  # a device arena, as far as the monitor can tell

    return be


def _run(ring: bool, steps=5, stats=False, monkeypatch=None, act="tanh"):
    dg.manual_seed(7)
    rng = np.random.default_rng(7)
    # Dense then an activation module: the signal is taken by a tensor hook (the hook path that
    # a CUDA model takes). With stats, the layers' activation statistics take the device path
    # (_stat_item_device: act_stats_array left in the backend's memory, then a ring value)
    m = nn.Sequential(nn.Dense(3, 8, dtype=np.float64), nn.Activation(act),
                      nn.Dense(8, 2, dtype=np.float64))
    opt = optim.SGD(m.parameters(), lr=0.1)
    if stats and ring:
        monkeypatch.setattr(GradientMonitor, "_stat_item", GradientMonitor._stat_item_device)
    mon = GradientMonitor(m, activation_stats=stats)
    calls = []
    if ring:
        m.arena.be = _stand_in(calls)
    X, y = dg.tensor(rng.normal(size=(16, 3))), rng.integers(0, 2, 16)
    per_step = []
    for _ in range(steps):
        opt.zero_grad()
        loss = losses.cross_entropy(m(X), y)
        loss.backward()
        opt.step()
        del calls[:]
        mon.step(loss)
        per_step.append(list(calls))
    del calls[:]
    d = mon.to_dict()
    return d, per_step, list(calls)


def test_device_arena_steps_only_enqueue_and_the_history_is_the_same():
    d, per_step, at_read = _run(True)
    ref, _, _ = _run(False)
    for calls in per_step:
        assert set(calls) <= ENQUEUE_ONLY, calls
        assert calls.count("record_stats") == 1
    assert at_read.count("read_stats") == 1
    for k in ("param_grad_norm", "param_norm", "signal_norm", "loss", "layer_grad_norm",
              "layer_grad_linf", "layer_nonfinite", "global_grad_norm"):
        np.testing.assert_allclose(np.array(d[k], dtype=float), np.array(ref[k], dtype=float),
                                   rtol=1e-12, err_msg=k)
    # the update norms: from the second record (the ring keeps a device snapshot)
    np.testing.assert_allclose(np.array(d["update_norm"][1:], dtype=float),
                               np.array(ref["update_norm"][1:], dtype=float), rtol=1e-9)
    assert d["update_norm"][0] is None


@pytest.mark.parametrize("act,frac", [("tanh", "saturated"), ("relu", "dead")])
def test_device_activation_statistics_go_through_the_ring(monkeypatch, act, frac):
    """On a device the layers' statistics (pre-activation mean and std, saturated and dead
    fractions) are computed where the data is and read with the ring: the history equals the
    host path's, and a step still makes only enqueue-only calls on the arena's backend."""
    d, per_step, at_read = _run(True, stats=True, monkeypatch=monkeypatch, act=act)
    monkeypatch.undo()
    ref, _, _ = _run(False, stats=True, act=act)
    for calls in per_step:
        assert set(calls) <= ENQUEUE_ONLY, calls
        assert calls.count("record_stats") == 1
    assert at_read.count("read_stats") == 1
    for k in ("act_mean", "act_std", frac):
        got = np.array([[np.nan if v is None else v for v in row] for row in d[k]])
        want = np.array([[np.nan if v is None else v for v in row] for row in ref[k]])
        assert np.isfinite(want).any(), k
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15, err_msg=k)
    other = "dead" if frac == "saturated" else "saturated"   # None where the activation has none
    assert d[other] == ref[other]
