"""GradientMonitor.pause() / resume() / paused(): while paused the model runs as without a
monitor (no layer records, no statistics in the optimizer's pass, no recurrent time signal) and
step() only counts; after resume() the recorded steps hold exactly what an unpaused monitor
records for the same steps of the same run (update norms included)."""
import json

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import losses, nn, optim
from deepgrad.monitor import GradientMonitor

STEPS = 15


def _same(a, b):
    """Exactly equal histories (json's float text round-trips every double; NaN == NaN)."""
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _run(every: int, pause_at=None, resume_at=None, use_context=False):
    dg.manual_seed(1)
    model = nn.Sequential(nn.Dense(3, 12, "tanh"), nn.Dense(12, 12, "relu"), nn.Dense(12, 2))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    mon = GradientMonitor(model, every=every)
    rng = np.random.default_rng(4)
    seen = {}
    ctx = None
    for n in range(STEPS):
        if n == pause_at:
            if use_context:
                ctx = mon.paused()
                ctx.__enter__()
            else:
                mon.pause()
        if n == resume_at:
            if use_context:
                ctx.__exit__(None, None, None)
            else:
                mon.resume()
        x = dg.tensor(rng.standard_normal((8, 3)).astype(np.float32))
        loss = losses.cross_entropy(model(x), rng.integers(0, 2, 8))
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen[n] = ([m.__dict__.get("stats") is not None for m in model],
                   model.arena.step_stats_readers)
        mon.step(loss)
    return mon, mon.to_dict(), seen


def _steps_of(h, keep):
    """The history dict restricted to the recorded steps in keep (per-step lists only)."""
    idx = [i for i, s in enumerate(h["steps"]) if s in keep]
    return {k: [v[i] for i in idx] for k, v in h.items()
            if k not in ("every", "layers", "params", "thresholds", "time_signal")}


@pytest.mark.parametrize("every,pause_at,resume_at", [(1, 5, 9), (3, 4, 6), (3, 5, 10),
                                                      (3, 2, 3)])
@pytest.mark.parametrize("use_context", [False, True])
def test_paused_steps_are_plain_and_the_rest_as_unpaused(every, pause_at, resume_at,
                                                         use_context):
    mon, h, seen = _run(every, pause_at, resume_at, use_context)
    _, ref, _ = _run(every)
    want = [n for n in range(STEPS) if n % every == 0 and not pause_at <= n < resume_at]
    assert h["steps"] == want
    _same(_steps_of(h, set(want)), _steps_of(ref, set(want)))
    for n in range(pause_at, resume_at):
        assert seen[n] == ([False] * 3, 0), n  # plain kernels, no statistics asked
    n = resume_at + (-resume_at) % every  # the first recorded step after resume
    if n < STEPS:
        assert all(seen[n][0]) and seen[n][1] == 1
    assert not mon._paused


def test_pause_is_idempotent_and_close_while_paused_releases_everything():
    mon, _, _ = _run(1, 3, None)
    mon.pause()  # already paused: nothing changes
    model = mon.model
    mon.close()
    assert all(m.__dict__.get("stats") is None for m in model)
    assert model.arena.step_stats_readers == 0
    mon.resume()  # closed: nothing to put back
    assert all(m.__dict__.get("stats") is None for m in model)


def test_paused_context_resumes_after_an_exception():
    dg.manual_seed(0)
    model = nn.Sequential(nn.Dense(2, 4, "tanh"), nn.Dense(4, 1))
    mon = GradientMonitor(model)
    with pytest.raises(RuntimeError):
        with mon.paused():
            assert mon._paused
            raise RuntimeError("evaluation failed")
    assert not mon._paused and model[0].stats is not None


def test_recurrent_time_signal_readers_follow_pause():
    dg.manual_seed(0)
    rnn = nn.RNN(3, 5)
    model = nn.Sequential(rnn)
    mon = GradientMonitor(model)
    before = int(rnn.time_signal_readers)
    assert before >= 1
    mon.pause()
    assert int(rnn.time_signal_readers) == before - 1
    mon.resume()
    assert int(rnn.time_signal_readers) == before
    mon.close()


def test_torch_monitor_pause_keeps_update_norms_right():
    torch = pytest.importorskip("torch")
    from deepgrad.monitor import TorchGradientMonitor

    def run(pause):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        mon = TorchGradientMonitor(model)
        g = torch.Generator().manual_seed(1)
        for n in range(10):
            if pause and n == 3:
                mon.pause()
            if pause and n == 6:
                mon.resume()
            x, y = torch.randn(5, 3, generator=g), torch.randint(0, 2, (5,), generator=g)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.step(loss)
        return mon.to_dict()

    h, ref = run(True), run(False)
    keep = {0, 1, 2, 6, 7, 8, 9}
    assert h["steps"] == sorted(keep)
    a, b = _steps_of(h, keep), _steps_of(ref, keep)
    for k in ("update_norm", "layer_update_ratio", "layer_grad_norm", "signal_norm"):
        for u, v in zip(a[k], b[k]):  # per step (None: no update norm, the first step)
            assert (u is None) == (v is None), k
            if u is None:
                continue
            assert [x is None for x in u] == [x is None for x in v], k
            np.testing.assert_allclose([x for x in u if x is not None],
                                       [x for x in v if x is not None], rtol=1e-6, err_msg=k)
