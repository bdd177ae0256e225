"""Step statistics (issue 13): the optimizer steps fill, from the same pass that updates the
parameters, per arena segment: ||grad||, the L-inf of its finite values, its non-finite count and
first non-finite index, ||param|| after the step and ||update||. Compared with numpy in float64
(1e-12 relative) and float32 (1e-5), with NaN/Inf planted, empty segments and segments of length
1; the update itself is the same bits with or without statistics."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import losses, nn, optim
from deepgrad.backend import get_backend
from deepgrad.monitor import GradientMonitor

cpu = get_backend("cpu")

OFFSETS = np.array([0, 1, 1, 300, 301, 1337, 1337, 2000], dtype=np.int64)  # empty and 1-long


def _reference(g, p_old, p_new, offsets):
    rows = []
    for a, b in zip(offsets[:-1], offsets[1:]):
        gs = g[a:b].astype(np.float64)
        fin = np.isfinite(gs)
        bad = np.flatnonzero(~fin)
        rows.append((np.nan if bad.size else np.linalg.norm(gs),
                     np.abs(gs[fin]).max() if fin.any() else 0.0,
                     bad.size, bad[0] if bad.size else -1,
                     np.linalg.norm(p_new[a:b].astype(np.float64)),
                     np.linalg.norm((p_new[a:b] - p_old[a:b]).astype(np.float64))))
    return np.array(rows)


def _step(kind, p, g, state, dtype, offsets=None, stats=None):
    if kind == "sgd":
        cpu.sgd_step(p, g, state[0], 0.1, 0.9, 0.0, False, 1e-4, False, offsets, stats)
    elif kind == "sgd-nesterov-first":  # each branch of the SGD update is its own loop
        cpu.sgd_step(p, g, state[0], 0.1, 0.9, 0.0, True, 1e-3, True, offsets, stats)
    elif kind == "sgd-plain":
        cpu.sgd_step(p, g, None, 0.1, 0.0, 0.0, False, 0.0, False, offsets, stats)
    elif kind == "rmsprop-plain":
        cpu.rmsprop_step(p, g, state[0], 1e-2, 0.99, 1e-8, 1e-3, 0.0, None, False, None,
                         offsets, stats)
    elif kind == "adam":  # AdamW (decoupled decay)
        cpu.adam_step(p, g, state[0], state[1], 3, 1e-2, 0.9, 0.999, 1e-8, 1e-4, True, offsets,
                      stats)
    elif kind == "adam-l2":  # Adam with the L2 term added to the gradient (another loop)
        cpu.adam_step(p, g, state[0], state[1], 3, 1e-2, 0.9, 0.999, 1e-8, 1e-2, False, offsets,
                      stats)
    else:
        cpu.rmsprop_step(p, g, state[0], 1e-2, 0.99, 1e-8, 0.0, 0.5, state[1], True, state[2],
                         offsets, stats)


@pytest.mark.parametrize("kind", ["sgd", "sgd-nesterov-first", "sgd-plain", "adam", "adam-l2",
                                  "rmsprop", "rmsprop-plain"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("plant", [False, True])
def test_step_stats_match_numpy_and_leave_the_update_unchanged(kind, dtype, plant):
    rng = np.random.default_rng(hash((kind, plant)) % 2**32)
    n = int(OFFSETS[-1])
    p0 = rng.normal(size=n).astype(dtype)
    g = rng.normal(size=n).astype(dtype)
    if plant:
        g[0] = np.nan        # the 1-long first segment
        g[500] = np.inf      # inside the long segment [301, 1337)
        g[777] = np.nan
        g[1500] = -np.inf
    states = [[rng.random(n).astype(dtype) for _ in range(3)] for _ in range(2)]
    states[1] = [s.copy() for s in states[0]]
    pa, pb = p0.copy(), p0.copy()
    stats = np.full((len(OFFSETS) - 1, 8), 7.0)
    _step(kind, pa, g, states[0], dtype, OFFSETS, stats)
    _step(kind, pb, g, states[1], dtype)
    np.testing.assert_array_equal(pa, pb)  # the same update, bit for bit
    for s0, s1 in zip(*states):
        np.testing.assert_array_equal(s0, s1)
    ref = _reference(g, p0, pa, OFFSETS)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(stats[:, [1, 2, 3]], ref[:, [1, 2, 3]], rtol=tol)
    np.testing.assert_allclose(stats[:, 0], ref[:, 0], rtol=tol)  # NaN where non-finite
    fin = np.isfinite(ref[:, 4])
    np.testing.assert_allclose(stats[fin, 4], ref[fin, 4], rtol=tol)
    np.testing.assert_allclose(stats[fin, 5], ref[fin, 5], rtol=tol)
    np.testing.assert_array_equal(stats[:, 6], 1.0)
    assert stats[1].tolist()[:7] == [0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 1.0]  # the empty segment


def test_step_stats_do_not_depend_on_the_thread_count():
    rng = np.random.default_rng(5)
    n = 300_000
    offsets = np.array([0, 100_000, 100_001, n], dtype=np.int64)
    g = rng.normal(size=n).astype(np.float32)
    out = []
    old = dg.get_num_threads()
    try:
        for t in (1, 2):
            dg.set_num_threads(t)
            p = np.ones(n, np.float32)
            st = np.zeros((3, 8))
            cpu.adam_step(p, g, np.zeros(n, np.float32), np.zeros(n, np.float32), 1, 1e-3, 0.9,
                          0.999, 1e-8, 0.0, False, offsets, st)
            out.append(st)
    finally:
        dg.set_num_threads(old)
    np.testing.assert_array_equal(out[0], out[1])


def test_step_stats_arguments_are_checked():
    p, g = np.zeros(10), np.ones(10)
    st = np.zeros((2, 8))
    off = np.array([0, 4, 10])
    with pytest.raises(ValueError, match="pass both"):
        cpu.sgd_step(p, g, None, 0.1, 0.0, 0.0, False, 0.0, False, off, None)
    with pytest.raises(ValueError, match="from 0 to param's size 10"):
        cpu.sgd_step(p, g, None, 0.1, 0.0, 0.0, False, 0.0, False, np.array([0, 4, 9]), st)
    with pytest.raises(ValueError, match="non-decreasing"):
        cpu.sgd_step(p, g, None, 0.1, 0.0, 0.0, False, 0.0, False, np.array([0, 11, 10]), st)
    with pytest.raises(ValueError, match=r"shape \(2, 8\)"):
        cpu.sgd_step(p, g, None, 0.1, 0.0, 0.0, False, 0.0, False, off, np.zeros((2, 7)))
    with pytest.raises(ValueError, match=r"shape \(2, 8\)"):
        cpu.sgd_step(p, g, None, 0.1, 0.0, 0.0, False, 0.0, False, off, np.zeros((2, 8), np.float32))
    with pytest.raises(TypeError, match="integer"):
        cpu.sgd_step(p, g, None, 0.1, 0.0, 0.0, False, 0.0, False, off.astype(float), st)
    np.testing.assert_array_equal(p, 0.0)  # nothing was applied


def _model_and_data(seed=0):
    dg.manual_seed(seed)
    rng = np.random.default_rng(seed)
    m = nn.Sequential(nn.Dense(4, 8, "tanh"), nn.Dense(8, 3))
    X, y = dg.tensor(rng.normal(size=(16, 4)).astype(np.float32)), rng.integers(0, 3, 16)
    return m, X, y


@pytest.mark.parametrize("make", [lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
                                  lambda p: optim.Adam(p, lr=1e-2),
                                  lambda p: optim.AdamW(p, lr=1e-2),
                                  lambda p: optim.RMSprop(p, lr=1e-2, centered=True)])
def test_optimizers_fill_the_arena_while_asked(make):
    m, X, y = _model_and_data()
    opt = make(m.parameters())
    a = m.arena
    assert a.request_step_stats(True)
    before = a.params.copy()
    opt.zero_grad()
    losses.cross_entropy(m(X), y).backward()
    opt.step()
    ref = _reference(a.grads, before, a.params, a.offsets)
    np.testing.assert_allclose(a.step_stats[:, :6], ref, rtol=1e-5)
    assert a.step_stats_serial == 1 and a.step_stats_backward == dg.autograd.backward_calls()
    a.request_step_stats(False)  # nobody asks: the next step leaves them alone
    opt.zero_grad()
    losses.cross_entropy(m(X), y).backward()
    opt.step()
    assert a.step_stats_serial == 1


def test_a_partial_optimizer_or_custom_update_fills_nothing():
    m, X, y = _model_and_data()
    a = m.arena
    a.request_step_stats(True)
    opt = optim.SGD([m[0].weight], lr=0.1)  # not every segment: no statistics
    losses.cross_entropy(m(X), y).backward()
    opt.step()
    assert a.step_stats_serial == 0

    class Mine(optim.SGD):
        def _update(self, r, group, step):
            r.be.sgd_step(r.p, r.g, None, group["lr"], 0.0, 0.0, False, 0.0, step == 1)
    Mine(m.parameters(), lr=0.1).step()
    assert a.step_stats_serial == 0


def test_monitor_takes_the_step_statistics_only_when_they_describe_this_step():
    """The usual order (backward, opt.step, monitor.step) reads the optimizer's statistics; a
    monitor stepped before opt.step() (or after a further backward) gets its own pass, never the
    previous step's numbers. Both give numpy's norms of the gradients of the step."""
    from deepgrad.monitor import GradientMonitor
    for order in ("after", "before"):
        m, X, y = _model_and_data(3)
        opt = optim.Adam(m.parameters(), lr=1e-2)
        mon = GradientMonitor(m)
        seen = []
        for _ in range(3):
            opt.zero_grad()
            losses.cross_entropy(m(X), y).backward()
            if order == "before":
                seen.append([np.linalg.norm(p.grad.numpy().astype(np.float64))
                             for p in m.parameters()])
                mon.step()
            opt.step()
            if order == "after":
                seen.append([np.linalg.norm(p.grad.numpy().astype(np.float64))
                             for p in m.parameters()])
                mon.step()
        d = mon.to_dict()
        np.testing.assert_allclose(d["param_grad_norm"], seen, rtol=1e-6)
        assert m.arena.step_stats_readers == 1
        mon.close()
        assert m.arena.step_stats_readers == 0


def test_huge_finite_float32_gradients_are_not_called_nonfinite():
    """float32 gradients near 1e20: their squares overflow float32 lanes; the statistics still
    give the exact norm and no non-finite values (the exact pass takes over)."""
    g = np.full(600, 1e20, np.float32)
    p = np.zeros(600, np.float32)
    st = np.zeros((1, 8))
    cpu.sgd_step(p, g, None, 1e-30, 0.0, 0.0, False, 0.0, False, np.array([0, 600]), st)
    assert st[0, 0] == pytest.approx(np.linalg.norm(g.astype(np.float64)), rel=1e-6)
    assert st[0, 2] == 0 and st[0, 3] == -1 and st[0, 1] == pytest.approx(1e20, rel=1e-6)


@pytest.mark.parametrize("kind", ["sgd-plain", "adam"])
@pytest.mark.parametrize("gscale,pscale", [(1e-20, 1.0), (1e-40, 1.0), (1e-25, 1e-25),
                                           (1e-42, 1e-30), (1e25, 1e25), (3e-39, 0.0)])
def test_float32_statistics_hold_over_the_whole_float_range(kind, gscale, pscale):
    """Vanishing gradients are what the monitor exists to measure: float32 squares underflow
    below |x| ~ 1e-19 (and overflow above ~1e19), so a sum of squares taken in float32 lanes
    would report a vanishing gradient as exactly 0. Gradients, parameters and updates from
    subnormal to 1e25 give the float64 numbers (1e-5), in long segments (several chunks), a
    1-long one, and a segment mixing ordinary and tiny values."""
    rng = np.random.default_rng(11)
    offsets = np.array([0, 1, 5000, 7000, 7001], dtype=np.int64)
    n = int(offsets[-1])
    g = (rng.normal(size=n) * gscale).astype(np.float32)
    p0 = (rng.normal(size=n) * pscale).astype(np.float32)
    g[5000:5100] = rng.normal(size=100).astype(np.float32)  # ordinary values next to tiny ones
    state = [np.zeros(n, np.float32), np.zeros(n, np.float32)]
    p = p0.copy()
    st = np.zeros((len(offsets) - 1, 8))
    if kind == "sgd-plain":
        cpu.sgd_step(p, g, None, 1.0, 0.0, 0.0, False, 0.0, False, offsets, st)
    else:
        cpu.adam_step(p, g, state[0], state[1], 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, offsets,
                      st)
    ref = _reference(g, p0, p, offsets)
    assert np.all(st[:, 2] == 0)  # nothing non-finite
    for col, rc in ((0, 0), (1, 1), (4, 4), (5, 5)):
        np.testing.assert_allclose(st[:, col], ref[:, rc], rtol=1e-5, atol=0,
                                   err_msg=f"statistics column {col}")
    assert (st[:, 0] > 0).all() == (np.abs(g.astype(np.float64)) > 0).any()


def test_optimizer_state_is_flushed_instead_of_decaying_into_subnormals():
    """Adam's first moment of a parameter whose gradient stays 0 decays by beta1 each step into
    the subnormal range, where every operation takes the CPU's slow path; results below the
    smallest normal float are flushed to 0 inside the optimizer step (what they would add to an
    update is below the resolution of any normal parameter). The flush does not leak: the
    thread's floating-point mode is as before afterwards."""
    tiny = np.finfo(np.float32).tiny
    n = 4096
    p = np.ones(n, np.float32)
    g = np.zeros(n, np.float32)
    m = np.full(n, 50 * tiny, np.float32)
    v = np.zeros(n, np.float32)
    v[::2] = 1.0
    for t in range(1, 60):
        cpu.adam_step(p, g, m, v, t, 1e-3, 0.9, 0.999, 1e-8, 0.0, False)
        assert not np.any((m != 0) & (np.abs(m) < tiny)), f"subnormal m after step {t}"
        assert not np.any((v != 0) & (np.abs(v) < tiny)), f"subnormal v after step {t}"
    assert np.all(np.abs(m) < 50 * tiny)  # it decayed
    np.testing.assert_array_equal(p, np.float32(1.0))  # nothing a float can show moved
    # numpy, after the steps on this thread, still produces subnormals
    assert np.float32(tiny) * np.float32(0.5) > 0


@pytest.mark.parametrize("every", [1, 3])
def test_update_norm_is_never_taken_from_a_stale_snapshot(every):
    """When the optimizer fills the step statistics the monitor takes no parameter snapshot of
    its own; a later step by an update that fills nothing then has no update norm (None) rather
    than one against old parameters, and the recorded steps after it get numpy's update norms."""
    from deepgrad.monitor import GradientMonitor

    class Mine(optim.SGD):  # a custom update: no step statistics
        def _update(self, r, group, step):
            r.be.sgd_step(r.p, r.g, None, group["lr"], 0.0, 0.0, False, 0.0, step == 1)

    m, X, y = _model_and_data(4)
    fused, mine = optim.Adam(m.parameters(), lr=1e-2), Mine(m.parameters(), lr=0.05)
    mon = GradientMonitor(m, every=every)
    expect = []
    for k in range(8 * every):
        opt = fused if k < 4 * every else mine
        opt.zero_grad()
        losses.cross_entropy(m(X), y).backward()
        before = [p.numpy().astype(np.float64) for p in m.parameters()]
        opt.step()
        if k % every == 0:
            expect.append([np.linalg.norm(p.numpy().astype(np.float64) - b)
                           for p, b in zip(m.parameters(), before)])
        mon.step()
    got = mon.to_dict()["update_norm"]
    assert len(got) == 8
    for k in range(8):
        if k == 4:  # the first custom step after fused ones: no snapshot was taken before it
            assert got[k] is None
        else:
            np.testing.assert_allclose(got[k], expect[k], rtol=1e-5, atol=1e-12)


def test_monitor_history_follows_a_relayout_mid_run():
    """Each recorded step stores its step statistics in one row with the layer records; a model
    laid out anew (a layer appended: more arena segments, wider rows) keeps the rows already
    recorded and records the new layout's, each equal to numpy on that step's gradients."""
    m, X, y = _model_and_data()
    opt = optim.Adam(m.parameters(), lr=1e-2)
    mon = GradientMonitor(m)
    want = []
    for step in range(6):
        if step == 3:
            m.append(nn.Dense(3, 3, init="xavier"))
        opt.zero_grad()
        losses.cross_entropy(m(X), y).backward()
        a = m.arena
        want.append([float(np.linalg.norm(a.grads[o:e].astype(np.float64)))
                     for o, e in zip(a.offsets[:-1], a.offsets[1:])])
        opt.step()
        mon.step()
    got = mon.to_dict()["param_grad_norm"]
    assert [len(r) for r in got] == [len(r) for r in want] and len(want[0]) < len(want[-1])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5)


def test_monitor_keeps_the_loss_in_any_form_in_its_one_call_row():
    """The recorded step's one native call reads the loss from a host tensor's array, a Python
    or numpy number, or anything with .item(); None stays None."""
    class Boxed:
        def __init__(self, v):
            self.v = v

        def item(self):
            return self.v

    m, X, y = _model_and_data()
    opt = optim.SGD(m.parameters(), lr=0.1)
    mon = GradientMonitor(m)
    given = []
    for form in ("tensor", "float", "np64", "np32", "int", "boxed", "none"):
        opt.zero_grad()
        loss = losses.cross_entropy(m(X), y)
        loss.backward()
        opt.step()
        v = float(loss.item())
        arg = {"tensor": loss, "float": v, "np64": np.float64(v), "np32": np.float32(v),
               "int": 3, "boxed": Boxed(v), "none": None}[form]
        mon.step(arg)
        given.append(None if form == "none" else 3.0 if form == "int" else
                     float(np.float32(v)) if form == "np32" else v)
    got = mon.to_dict()["loss"]
    assert got[:-1] == pytest.approx(given[:-1], rel=1e-7) and got[-1] is None


def test_monitor_put_checks_its_row():
    dst = np.zeros((2, 10))
    recs = np.arange(12.0).reshape(3, 4)
    cpu.monitor_put(dst, 1, 7, 2.5, recs, 1, 3, None)
    assert dst[1].tolist() == [7, 2.5, 1, 1, 2, 5, 6, 9, 10, 0]
    with pytest.raises(ValueError, match="do not fit"):
        cpu.monitor_put(dst, 1, 7, None, recs, 0, 4, None)  # 3 + 12 > 10 columns
    with pytest.raises(ValueError, match="row 2"):
        cpu.monitor_put(dst, 2, 7, None, None, 0, 0, None)
    with pytest.raises(ValueError, match="float64"):
        cpu.monitor_put(dst.astype(np.float32), 0, 7, None, None, 0, 0, None)
