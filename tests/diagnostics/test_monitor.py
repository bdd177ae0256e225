"""GradientMonitor on real models: signal ratios at init, norms against numpy, planted problems
found by diagnose(), update ratios, every=, warnings, export and plots."""
import csv
import json
import warnings

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import losses, nn, optim
from deepgrad.data import spirals
from deepgrad.monitor import GradientMonitor, GradientWarning, Thresholds


def mlp(act, init, depth=20, width=64, dtype=np.float32, classes=3):
    layers = [nn.Dense(2, width, act, init=init, dtype=dtype)]
    layers += [nn.Dense(width, width, act, init=init, dtype=dtype) for _ in range(depth - 2)]
    layers += [nn.Dense(width, classes, init=init, dtype=dtype)]
    return nn.Sequential(*layers)


def one_step(model, mon, X, y, opt=None):
    out = model(dg.tensor(X, dtype=model[0].weight.dtype))
    loss = losses.cross_entropy(out, dg.tensor(y))
    model.zero_grad()
    loss.backward()
    if opt is not None:
        opt.step()
    mon.step(loss)
    return loss


@pytest.fixture(scope="module")
def data():
    return spirals(128, seed=0)


def signal_ratio(act, init, data):
    dg.manual_seed(0)
    m = mlp(act, init)
    mon = GradientMonitor(m)
    one_step(m, mon, *data)
    s = mon.to_dict()["signal_norm"][0]
    assert len(s) == 20 and all(v is not None and v > 0 for v in s)
    return s[0] / s[-1], mon


def test_deep_sigmoid_signal_vanishes_at_init(data):
    ratio, mon = signal_ratio("sigmoid", "xavier_normal", data)
    assert ratio < 1e-4
    f = mon.diagnose()
    assert [x.kind for x in f if x.where == "depth"] == ["vanishing"]
    assert "layer 1 (0:Dense)" in f[0].message and "of layer 20 (19:Dense)" in f[0].message


@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_relu_he_keeps_signal(act, data):
    ratio, mon = signal_ratio(act, "he", data)
    assert 0.1 <= ratio <= 10
    assert [x for x in mon.diagnose() if x.kind in ("vanishing", "exploding")] == []


def test_norms_equal_numpy(data):
    X, y = data
    dg.manual_seed(1)
    m = mlp("tanh", "xavier", depth=4, width=8, dtype=np.float64)
    mon = GradientMonitor(m)
    # reference signals: our own hooks on the same layer outputs
    seen = {}
    for i, layer in enumerate(m):
        orig = layer.forward

        def fwd(x, i=i, orig=orig):
            out = orig(x)
            out.register_hook(lambda g, i=i: seen.__setitem__(i, np.linalg.norm(g.numpy())))
            return out
        object.__setattr__(layer, "forward", fwd)
    opt = optim.SGD(m.parameters(), lr=0.1)
    one_step(m, mon, X, y, opt)
    d = mon.to_dict()
    grads = [p.grad.numpy() for p in m.parameters()]
    params = [p.numpy() for p in m.parameters()]
    np.testing.assert_allclose(d["param_grad_norm"][0], [np.linalg.norm(g) for g in grads], rtol=1e-12)
    np.testing.assert_allclose(d["param_norm"][0], [np.linalg.norm(p) for p in params], rtol=1e-12)
    np.testing.assert_allclose(d["global_grad_norm"][0],
                               np.sqrt(sum(np.sum(g ** 2) for g in grads)), rtol=1e-12)
    np.testing.assert_allclose(d["signal_norm"][0], [seen[i] for i in range(4)], rtol=1e-12)
    for l in range(4):  # layer l owns params 2l (weight) and 2l+1 (bias)
        lg = np.sqrt(np.sum(grads[2 * l] ** 2) + np.sum(grads[2 * l + 1] ** 2))
        lw = np.sqrt(np.sum(params[2 * l] ** 2) + np.sum(params[2 * l + 1] ** 2))
        np.testing.assert_allclose(d["layer_grad_norm"][0][l], lg, rtol=1e-12)
        np.testing.assert_allclose(d["layer_grad_ratio"][0][l], lg / lw, rtol=1e-12)
    # the optimizer's step statistics give the first record's update too: -lr * grad
    np.testing.assert_allclose(d["update_norm"][0], [0.1 * np.linalg.norm(g) for g in grads],
                               rtol=1e-9)
    one_step(m, mon, X, y, opt)  # second step: the update is -lr * grad of that step
    d = mon.to_dict()
    grads = [p.grad.numpy() for p in m.parameters()]
    np.testing.assert_allclose(d["update_norm"][1], [0.1 * np.linalg.norm(g) for g in grads], rtol=1e-9)


def test_activation_stats_match_numpy(data):
    X, y = data
    dg.manual_seed(2)
    m = mlp("tanh", "xavier", depth=3, width=16, dtype=np.float64)
    mon = GradientMonitor(m)
    W, b = m[0].weight.numpy().copy(), m[0].bias.numpy().copy()
    one_step(m, mon, X, y)
    d = mon.to_dict()
    z = X.astype(np.float64) @ W + b
    assert d["act_mean"][0][0] == pytest.approx(z.mean(), rel=1e-12)
    assert d["act_std"][0][0] == pytest.approx(z.std(), rel=1e-12)
    assert d["saturated"][0][0] == pytest.approx(np.mean(1 - np.tanh(z) ** 2 < 1e-3))
    assert d["dead"][0][0] is None and d["act_mean"][0][2] is None  # output layer: identity


def test_diagnose_finds_dead_relus(data):
    dg.manual_seed(3)
    m = mlp("relu", "he", depth=6, width=32)
    b = m[3].bias
    b.data = np.full(b.shape, -10.0, dtype=np.float32)
    mon = GradientMonitor(m)
    one_step(m, mon, *data)
    d = mon.to_dict()
    assert d["dead"][0][3] == 1.0 and d["dead"][0][0] < 0.5
    msgs = [f.message for f in mon.diagnose() if f.kind == "dead"]
    # layer 5 only ever sees zeros from layer 4, so it is dead too
    assert msgs == ["dead ReLUs: 100% in layer 4 (3:Dense)", "dead ReLUs: 100% in layer 5 (4:Dense)"]


def test_diagnose_finds_saturation(data):
    dg.manual_seed(4)
    m = mlp("sigmoid", "xavier", depth=4, width=32)
    m[1].weight.data = m[1].weight.numpy() * 1000.0
    mon = GradientMonitor(m)
    one_step(m, mon, *data)
    f = [x for x in mon.diagnose() if x.kind == "saturation"]
    assert [x.layer for x in f] == [2] and f[0].value > 0.9


def test_diagnose_finds_exploding_deep_linear(data):
    dg.manual_seed(5)
    m = mlp(None, lambda t: dg.init.normal_(t, 0.0, 3.0 / np.sqrt(t.shape[0])), depth=12, width=32)
    mon = GradientMonitor(m)
    one_step(m, mon, *data)
    f = [x for x in mon.diagnose() if x.where == "depth"]
    assert [x.kind for x in f] == ["exploding"] and f[0].value > 1e3


def test_diagnose_finds_exploding_global_norm_growth(data):
    X, y = data
    dg.manual_seed(6)
    m = mlp(None, "xavier", depth=6, width=16)
    mon = GradientMonitor(m)
    for _ in range(6):
        one_step(m, mon, X, y)
        m.arena.params[...] *= 2.0  # planted: every weight doubles each step
    f = [x for x in mon.diagnose() if x.where == "growth"]
    assert [x.kind for x in f] == ["exploding"] and f[0].value > 1e3
    assert "exploding: global norm grew" in f[0].message


def test_rnn_time_signal_and_planted_explosion():
    dg.manual_seed(7)
    x = dg.tensor(np.random.default_rng(0).normal(size=(8, 30, 3)).astype(np.float32))
    for scale, kind in ((0.3, "vanishing"), (None, None)):
        rnn = nn.RNN(3, 16, recurrent_init=(lambda t: dg.init.normal_(t, 0.0, scale / 4)) if scale else None)
        mon = GradientMonitor(rnn)
        out, h = rnn(x)
        (h * h).sum().backward()
        mon.step()
        d = mon.to_dict()
        ts = d["time_signal"][d["layers"][0]][0]
        assert len(ts) == 30 and all(v is not None for v in ts)
        if kind:
            assert ts[0] / ts[-1] < 1e-3
            assert [f.kind for f in mon.diagnose() if f.where != "depth"] == ["vanishing"]
    # large recurrent weights (1.5 I) with every ReLU active: dL/dh_t grows 1.5x per step back
    rnn = nn.RNN(3, 16, nonlinearity="relu", bias=False)
    rnn.weight_hh.data = 1.5 * np.eye(16, dtype=np.float32)
    rnn.weight_ih.data = np.abs(rnn.weight_ih.numpy())
    mon = GradientMonitor(rnn)
    out, h = rnn(dg.tensor(np.abs(x.numpy()) * 0.01))
    h.sum().backward()
    mon.step()
    f = [x for x in mon.diagnose() if x.where != "depth"]
    assert [x.kind for x in f] == ["exploding"] and f[0].value > 1e3


def test_lstm_time_signal_uses_hidden_state():
    dg.manual_seed(8)
    lstm = nn.LSTM(2, 4, dtype=np.float64)
    x = dg.tensor(np.random.default_rng(1).normal(size=(3, 5, 2)), dtype=np.float64)
    mon = GradientMonitor(lstm)
    out, (h, c) = lstm(x)
    h.sum().backward()
    mon.step()
    ts = mon.to_dict()["time_signal"][mon.layer_names[0]][0]
    # at the last step, dL/dh_T = ones (only h_T is used), norm sqrt(B*H)
    assert ts[-1] == pytest.approx(np.sqrt(12.0), rel=1e-12)


def _composed_states(m, x, kind):
    """The layer written with elementwise tape ops; returns the list of h_t (gradients kept)."""
    B, T, _ = x.shape
    H = m.hidden_size

    def sig(t):
        return 1.0 / (1.0 + (-t).exp())
    h = dg.zeros(B, H, dtype=np.float64)
    c = dg.zeros(B, H, dtype=np.float64)
    hs = []
    for t in range(T):
        xi = x[:, t, :] @ m.weight_ih + m.bias
        if kind == "rnn":
            h = (xi + h @ m.weight_hh).tanh()
        elif kind == "gru":
            hh = h @ m.weight_hh + m.bias_hh
            r, z = sig(xi[:, :H] + hh[:, :H]), sig(xi[:, H:2 * H] + hh[:, H:2 * H])
            n = (xi[:, 2 * H:] + r * hh[:, 2 * H:]).tanh()
            h = (1.0 - z) * n + z * h
        else:
            a = xi + h @ m.weight_hh
            i, f, g, o = sig(a[:, :H]), sig(a[:, H:2 * H]), a[:, 2 * H:3 * H].tanh(), sig(a[:, 3 * H:])
            c = f * c + i * g
            h = o * c.tanh()
        h.retain_grad()
        hs.append(h)
    return hs, c


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_time_signal_equals_the_composed_gradients(kind):
    # every step's ||dL/dh_t|| (through the output at t and through step t + 1) against the same
    # layer written with elementwise tape ops, whose h_t keep their gradients
    dg.manual_seed(8)
    B, T, H = 3, 7, 4
    m = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[kind](2, H, dtype=np.float64)
    rng = np.random.default_rng(2)
    x = dg.tensor(rng.normal(size=(B, T, 2)), dtype=np.float64)
    proj = dg.tensor(rng.normal(size=(B, T, H)), dtype=np.float64)
    mon = GradientMonitor(m)
    out, last = m(x)
    loss = (out * proj).sum()
    if kind == "lstm":
        loss = loss + (last[1] * last[1]).sum()  # through the final cell state too
    loss.backward()
    mon.step()
    ts = mon.to_dict()["time_signal"][mon.layer_names[0]][0]
    mon.close()
    hs, c = _composed_states(m, x, kind)
    loss = (dg.stack(hs, axis=1) * proj).sum()
    if kind == "lstm":
        loss = loss + (c * c).sum()
    loss.backward()
    want = [float(np.linalg.norm(t.grad.numpy())) for t in hs]
    np.testing.assert_allclose(ts, want, rtol=1e-10)


def test_every_and_no_grad_forwards(data):
    X, y = data
    dg.manual_seed(9)
    m = mlp("tanh", "xavier", depth=3, width=8)
    mon = GradientMonitor(m, every=3)
    for _ in range(7):
        with dg.no_grad():
            m(dg.tensor(X))  # evaluation forwards are ignored
        one_step(m, mon, X, y)
    d = mon.to_dict()
    assert d["steps"] == [0, 3, 6]
    assert all(v is not None for row in d["signal_norm"] for v in row)
    assert d["layer_update_ratio"][1] != [None] * 3  # snapshot taken the call before


def test_warn_once(data):
    dg.manual_seed(10)
    m = mlp("sigmoid", "xavier_normal", depth=12, width=16)
    mon = GradientMonitor(m, warn=True)
    with pytest.warns(GradientWarning, match="vanishing"):
        one_step(m, mon, *data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one_step(m, mon, *data)  # same finding: not warned again


def test_export_and_plots(tmp_path, data):
    dg.manual_seed(11)
    m = mlp("relu", "he", depth=4, width=8)
    mon = GradientMonitor(m)
    for _ in range(3):
        one_step(m, mon, *data)
    with open(mon.to_json(str(tmp_path / "h.json"))) as fh:
        j = json.load(fh)
    assert j["steps"] == [0, 1, 2] and len(j["signal_norm"][0]) == 4 and "findings" in j
    with open(mon.to_csv(str(tmp_path / "h.csv")), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and rows[0]["layer"] == "0:Dense"
    assert float(rows[5]["signal_norm"]) == pytest.approx(j["signal_norm"][1][1])
    pytest.importorskip("matplotlib")
    paths = mon.plot(str(tmp_path / "plots"))
    assert len(paths) == 3
    for p in paths:
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments():
    m = mlp("relu", "he", depth=3, width=4)
    with pytest.raises(ValueError, match="every"):
        GradientMonitor(m, every=0)
    with pytest.raises(TypeError, match="nn.Module"):
        GradientMonitor([1, 2])
    with pytest.raises(ValueError, match="no submodule named 'nope'"):
        GradientMonitor(m, layers=["nope"])
    mon = GradientMonitor(m, layers=["0", "2"])
    assert mon.layer_names == ["0:Dense", "2:Dense"]
    mon.close()
    assert "forward" not in m[0].__dict__


def test_separate_activation_modules_belong_to_their_layer(data):
    X, y = data
    dg.manual_seed(12)
    m = nn.Sequential(nn.Dense(2, 16, dtype=np.float64), nn.Tanh(), nn.Dense(16, 16, dtype=np.float64),
                      nn.ReLU(), nn.Dropout(0.0), nn.Dense(16, 3, dtype=np.float64))
    mon = GradientMonitor(m)
    assert mon.layer_names == ["0:Dense", "2:Dense", "5:Dense"]
    seen = {}
    for k in (1, 4):  # the outputs of Tanh and of the Dropout after ReLU are the layer outputs
        orig = m[k].forward

        def fwd(x, k=k, orig=orig):
            out = orig(x)
            out.register_hook(lambda g, k=k: seen.__setitem__(k, np.linalg.norm(g.numpy())))
            return out
        object.__setattr__(m[k], "forward", fwd)
    W, b = m[0].weight.numpy().copy(), m[0].bias.numpy().copy()
    one_step(m, mon, X, y)
    d = mon.to_dict()
    np.testing.assert_allclose(d["signal_norm"][0][:2], [seen[1], seen[4]], rtol=1e-12)
    z = X.astype(np.float64) @ W + b
    assert d["act_mean"][0][0] == pytest.approx(z.mean(), rel=1e-12)
    assert d["saturated"][0][0] == pytest.approx(np.mean(1 - np.tanh(z) ** 2 < 1e-3))
    assert d["dead"][0][1] is not None and d["dead"][0][2] is None
