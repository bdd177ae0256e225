"""Issue 10, items 10 and 12: monitors on one model are independent (each attaches through
module hooks and removes only its own), warn=True diagnoses a bounded window (its cost does not
grow with the history), max_records caps the history, and to_dict() copies without JSON."""
import json

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import losses, monitor as M, nn, optim
from deepgrad.monitor import GradientMonitor, Thresholds


def _mlp(seed=0):
    dg.manual_seed(seed)
    return nn.Sequential(nn.Dense(4, 16, "tanh"), nn.Dense(16, 16, "relu"), nn.Dense(16, 3))


def _train(model, steps, monitors=(), seed=0):
    rng = np.random.default_rng(seed)
    opt = optim.SGD(model, lr=0.05)
    X = dg.tensor(rng.standard_normal((32, 4)).astype(np.float32))
    y = rng.integers(0, 3, 32)
    for _ in range(steps):
        opt.zero_grad()
        loss = losses.cross_entropy(model(X), y)
        loss.backward()
        opt.step()
        for mon in monitors:
            mon.step(loss)


KEYS = ("signal_norm", "layer_grad_norm", "act_mean", "act_std", "saturated", "dead", "loss")


def test_two_monitors_record_the_same_and_closing_one_leaves_the_other():
    alone = GradientMonitor(_mlp(), every=1)
    _train(alone.model, 6, [alone])
    ref = alone.to_dict()

    model = _mlp()
    a, b = GradientMonitor(model), GradientMonitor(model)
    _train(model, 3, [a, b])
    a.close()
    _train(model, 3, [b], seed=0)
    da, db = a.to_dict(), b.to_dict()
    assert len(da["steps"]) == 3 and len(db["steps"]) == 6
    for k in KEYS:  # b, shared with a for 3 steps, recorded exactly what a lone monitor did
        assert db[k][:3] == ref[k][:3], k
        assert da[k] == ref[k][:3], k
    assert all(v is not None for row in db["signal_norm"] for v in row)
    assert all(v is not None for row in db["act_mean"][3:] for v in row[:2])  # tanh, relu
    b.close()
    for m in model.modules():  # nothing of either monitor is left on the model
        assert not m._forward_hooks and not m._forward_pre_hooks
        assert "stats" not in m.__dict__
        assert "forward" not in m.__dict__


def test_two_monitors_on_a_recurrent_layer():
    dg.manual_seed(1)
    rnn = nn.LSTM(3, 8)
    head = nn.Dense(8, 1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.head = rnn, head

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[:, -1, :])

    net = Net()
    a, b = GradientMonitor(net), GradientMonitor(net)
    x = dg.tensor(np.random.default_rng(0).standard_normal((4, 5, 3)).astype(np.float32))
    for mons in ([a, b], [b]):
        loss = (net(x) ** 2).mean()
        loss.backward()
        for mon in mons:
            mon.step(loss)
        if mons == [a, b]:
            a.close()
    ts = b.to_dict()["time_signal"]
    (name, rows), = ts.items()
    assert len(rows) == 2 and all(len(r) == 5 and all(v is not None for v in r) for r in rows)
    assert a.to_dict()["time_signal"][name][0] == rows[0]
    b.close()
    assert rnn.time_signal_readers == 0


def test_warn_diagnoses_a_bounded_window(monkeypatch):
    seen = []
    real = M.diagnose

    def counting(history, thresholds=None):
        seen.append(len(history["steps"]))
        return real(history, thresholds)
    monkeypatch.setattr(M.capture_deepgrad, "diagnose", counting)
    model = _mlp()
    th = Thresholds(growth_window=5)
    mon = GradientMonitor(model, warn=True, thresholds=th)
    _train(model, 40, [mon])
    assert len(seen) == 40
    assert max(seen) == th.growth_window + 1  # the work per step stops growing
    assert mon.num_records == 40


def test_warn_still_finds_what_full_diagnosis_finds():
    dg.manual_seed(0)
    layers = [nn.Dense(4, 16, "sigmoid")] + [nn.Dense(16, 16, "sigmoid") for _ in range(15)]
    model = nn.Sequential(*layers, nn.Dense(16, 3))
    for m in model.modules():   # small weights: the classic vanishing signal
        if isinstance(m, nn.Dense):
            m.weight.data[...] *= 0.1
    mon = GradientMonitor(model, warn=True)
    with pytest.warns(M.GradientWarning, match="vanishing"):
        _train(model, 3, [mon])
    assert any(f.kind == "vanishing" for f in mon.diagnose())


def test_max_records_caps_and_spans_the_run():
    model = _mlp()
    mon = GradientMonitor(model, max_records=32)
    _train(model, 300, [mon])
    d = mon.to_dict()
    steps = d["steps"]
    assert len(steps) <= 32 and steps[0] == 0 and steps[-1] == 299
    assert all(x < y for x, y in zip(steps, steps[1:]))
    assert steps[-8:] == list(range(292, 300))  # the most recent quarter at full resolution
    for k in ("loss", "global_grad_norm", "signal_norm", "act_mean", "layer_update_ratio"):
        assert len(d[k]) == len(steps), k
    with pytest.raises(ValueError, match="max_records"):
        GradientMonitor(model, max_records=3)


def test_to_dict_is_a_fresh_copy_equal_to_the_json():
    model = _mlp()
    mon = GradientMonitor(model)
    _train(model, 3, [mon])
    d = mon.to_dict()
    d["signal_norm"][0][0] = "changed"
    d["loss"].append(1)
    again = mon.to_dict()
    assert again["signal_norm"][0][0] != "changed" and len(again["loss"]) == 3
    assert json.loads(json.dumps(again)) == again
