"""GradientMonitor on torch.nn.Module models (issue 12): the same history as for deepgrad
models, values equal to what torch computes, training unchanged bit for bit, every hook removed
by close(); and the TensorBoard stream read back with TensorBoard's own reader."""
import os
import subprocess
import sys

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import losses, nn
from deepgrad.monitor import GradientMonitor

torch = pytest.importorskip("torch")


def torch_mlp(seed=0, act=torch.nn.Tanh, depth=3, width=16):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(4, width), act()]
    for _ in range(depth - 2):
        layers += [torch.nn.Linear(width, width), act()]
    layers.append(torch.nn.Linear(width, 3))
    return torch.nn.Sequential(*layers)


def train(model, steps, mon=None, seed=0, lr=0.1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 4, generator=g)
    y = torch.randint(0, 3, (32,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if mon is not None:
            mon.step(loss)
    return x, y


def test_monitoring_never_changes_training():
    plain = torch_mlp()
    train(plain, 8)
    watched = torch_mlp()
    mon = GradientMonitor(watched, every=1)
    train(watched, 8, mon)
    for a, b in zip(plain.parameters(), watched.parameters()):
        assert torch.equal(a, b)
    assert mon.num_records == 8


def test_values_equal_what_torch_computes():
    model = torch_mlp(act=torch.nn.Tanh)
    mon = GradientMonitor(model)
    x, y = train(model, 2, mon)
    d = mon.to_dict()
    assert d["layers"] == ["0:Linear", "2:Linear", "4:Linear"]
    assert d["params"] == [n for n, _ in model.named_parameters()]
    # recompute the last step's quantities with torch (the weights before that step's update)
    model2 = torch_mlp(act=torch.nn.Tanh)
    train(model2, 1)
    outs, pre = [], []

    def keep_out(m, a, o):
        o.retain_grad()
        outs.append(o)

    def keep_in(m, a, o):
        pre.append(a[0].detach())
    # a layer's output is the activation after it when there is one (as for deepgrad models)
    hooks = [model2[i].register_forward_hook(keep_out) for i in (1, 3, 4)]
    hooks += [model2[i].register_forward_hook(keep_in) for i in (1, 3)]
    model2.zero_grad()
    loss = torch.nn.functional.cross_entropy(model2(x), y)
    loss.backward()
    for h in hooks:
        h.remove()
    sig = [float(o.grad.double().norm()) for o in outs]
    np.testing.assert_allclose(d["signal_norm"][-1], sig, rtol=1e-6)
    gn = [float(p.grad.double().norm()) for p in model2.parameters()]
    np.testing.assert_allclose(d["param_grad_norm"][-1], gn, rtol=1e-6)
    lg = [float(np.hypot(gn[2 * i], gn[2 * i + 1])) for i in range(3)]
    np.testing.assert_allclose(d["layer_grad_norm"][-1], lg, rtol=1e-6)
    linf = [max(float(model2[i].weight.grad.abs().max()), float(model2[i].bias.grad.abs().max()))
            for i in (0, 2, 4)]
    np.testing.assert_allclose(d["layer_grad_linf"][-1], linf, rtol=1e-6)
    assert d["layer_nonfinite"][-1] == [0, 0, 0]
    z = pre[0].double().numpy()
    assert d["act_mean"][-1][0] == pytest.approx(z.mean(), rel=1e-5)
    assert d["act_std"][-1][0] == pytest.approx(z.std(), rel=1e-5)
    assert d["loss"][-1] == pytest.approx(loss.item(), rel=1e-6)
    assert d["layer_update_ratio"][-1][0] is not None


def test_same_history_keys_as_deepgrad_and_the_sinks(tmp_path):
    tmon = GradientMonitor(torch_mlp(act=torch.nn.ReLU))
    train(tmon.model, 3, tmon)
    dg.manual_seed(0)
    dmodel = nn.Sequential(nn.Dense(4, 16, "relu"), nn.Dense(16, 16, "relu"), nn.Dense(16, 3))
    dmon = GradientMonitor(dmodel)
    X = dg.tensor(np.ones((8, 4), np.float32))
    loss = losses.cross_entropy(dmodel(X), np.zeros(8, np.int64))
    loss.backward()
    dmon.step(loss)
    assert set(tmon.to_dict()) == set(dmon.to_dict())
    tmon.to_json(tmp_path / "h.json")
    tmon.to_csv(tmp_path / "h.csv")
    pytest.importorskip("matplotlib")
    paths = tmon.plot(str(tmp_path / "plots"))
    assert all(os.path.getsize(p) > 1000 for p in paths)


def test_vanishing_is_found_in_a_torch_net():
    torch.manual_seed(0)
    layers = [torch.nn.Linear(4, 32), torch.nn.Sigmoid()]
    for _ in range(14):
        lin = torch.nn.Linear(32, 32)
        torch.nn.init.normal_(lin.weight, std=0.05)
        layers += [lin, torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(32, 3))
    mon = GradientMonitor(model)
    train(model, 2, mon)
    kinds = {f.kind for f in mon.diagnose()}
    assert "vanishing" in kinds
    sat = mon.to_dict()["saturated"][-1]
    assert all(v is not None for v in sat[:15])


def test_every_and_close_remove_everything():
    model = torch_mlp()
    mon = GradientMonitor(model, every=3)
    train(model, 7, mon)
    assert mon.to_dict()["steps"] == [0, 3, 6]
    mon.close()
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
    out = model(torch.randn(2, 4))
    assert out.grad_fn is not None and not getattr(out, "_backward_hooks", None)


def test_recurrent_torch_layers_are_layers():
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(3, 8, batch_first=True)
            self.head = torch.nn.Linear(8, 1)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.head(out[:, -1])

    net = Net()
    mon = GradientMonitor(net)
    x = torch.randn(4, 6, 3)
    loss = net(x).pow(2).mean()
    loss.backward()
    mon.step(loss)
    d = mon.to_dict()
    assert d["layers"] == ["lstm:LSTM", "head:Linear"]
    assert all(v is not None and v > 0 for v in d["signal_norm"][0])
    assert d["time_signal"] == {}   # torch's fused kernels do not expose dL/dh_t (documented)


def test_import_deepgrad_does_not_import_torch():
    code = "import sys, deepgrad, deepgrad.monitor; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "False", r.stderr


def _events(logdir):
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    ea = ea_mod.EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea


@pytest.mark.parametrize("framework", ["deepgrad", "torch"])
def test_tensorboard_stream_reads_back(tmp_path, framework):
    pytest.importorskip("tensorboard")
    logdir = tmp_path / "tb"
    if framework == "torch":
        model = torch_mlp(act=torch.nn.Sigmoid, depth=6)
        mon = GradientMonitor(model, tensorboard=str(logdir))
        train(model, 4, mon)
    else:
        dg.manual_seed(0)
        model = nn.Sequential(*[nn.Dense(4 if i == 0 else 16, 16, "sigmoid") for i in range(5)],
                              nn.Dense(16, 3))
        mon = GradientMonitor(model, tensorboard=str(logdir))
        X = dg.tensor(np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32))
        for _ in range(4):
            model.zero_grad()
            loss = losses.cross_entropy(model(X), np.zeros(16, np.int64))
            loss.backward()
            mon.step(loss)
    mon.close()
    d = mon.to_dict()
    ea = _events(logdir)
    tags = ea.Tags()["scalars"]
    from deepgrad.monitor.sinks import tb_tag
    name = tb_tag(d["layers"][0])
    assert name in ("0_Dense", "0_Linear")
    ev = ea.Scalars(f"backward_signal/{name}")
    assert [e.step for e in ev] == d["steps"]
    np.testing.assert_allclose([e.value for e in ev], [r[0] for r in d["signal_norm"]], rtol=1e-6)
    ev = ea.Scalars("loss")
    np.testing.assert_allclose([e.value for e in ev], d["loss"], rtol=1e-6)
    assert f"grad_norm/{name}" in tags and "global/global_grad_norm" in tags


def test_tensorboard_writer_argument_and_missing_extra(monkeypatch):
    class Fake:
        def __init__(self):
            self.scalars, self.texts = [], []

        def add_scalar(self, tag, v, step):
            self.scalars.append((tag, v, step))

        def add_text(self, tag, text, step):
            self.texts.append((tag, text, step))
    w = Fake()
    model = torch_mlp()
    mon = GradientMonitor(model, writer=w)
    train(model, 2, mon)
    assert {s for _, _, s in w.scalars} == {0, 1}
    with pytest.raises(TypeError, match="add_scalar"):
        GradientMonitor(model, writer=object())
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match=r"deepgrad\[tensorboard\]"):
        GradientMonitor(torch_mlp(), tensorboard="x")


class _Functional(torch.nn.Module):
    """Not a Sequential: the activation finds its layer as the one that ran last."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.a, self.act, self.b = torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.b(self.act(self.a(x)))


def test_sequential_pairs_and_module_models_give_the_same_history():
    seq = torch.nn.Sequential()
    f = _Functional()
    seq.add_module("a", torch.nn.Linear(4, 8))
    seq.add_module("act", torch.nn.Tanh())
    seq.add_module("b", torch.nn.Linear(8, 3))
    seq.load_state_dict(f.state_dict())
    ms, mf = GradientMonitor(seq), GradientMonitor(f)
    train(seq, 3, ms)
    train(f, 3, mf)
    ds, df = ms.to_dict(), mf.to_dict()
    for k in ("signal_norm", "act_mean", "act_std", "saturated", "param_grad_norm",
              "update_norm", "layer_grad_linf"):
        a = [[np.nan if v is None else v for v in row] if row is not None else [] for row in ds[k]]
        b = [[np.nan if v is None else v for v in row] if row is not None else [] for row in df[k]]
        assert len(a) == len(b) == 3, k
        for ra, rb in zip(a, b):
            np.testing.assert_allclose(ra, rb, rtol=1e-12, err_msg=k)
    assert all(v is not None for v in ds["signal_norm"][-1] + ds["act_mean"][-1][:1])


def test_new_parameter_storage_is_seen_and_nonfinite_is_named():
    model = torch_mlp()
    mon = GradientMonitor(model)
    train(model, 1, mon)
    with torch.no_grad():  # new storage for one weight: the monitor must read the new values
        model[2].weight.data = torch.full_like(model[2].weight, 0.5)
    x = torch.randn(8, 4)
    loss = model(x).sum()
    model.zero_grad()
    loss.backward()
    model[2].weight.grad[1, 2] = float("nan")
    mon.step(loss)
    d = mon.to_dict()
    w = model[2].weight.detach().double()
    assert d["param_norm"][-1][2] == pytest.approx(float(w.norm()), rel=1e-12)
    assert d["layer_nonfinite"][-1] == [0, 1, 0]
    assert d["first_nonfinite"][-1] == ["2.weight", 1 * w.shape[1] + 2, 1]
    assert d["param_grad_norm"][-1][2] is None  # NaN, written as None in to_dict()
    found = [f for f in mon.diagnose() if "2.weight" in f.message]
    assert found and f"first at element {w.shape[1] + 2}" in found[0].message


def _activation_hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_hooks_are_on_only_for_recorded_steps_and_rows_match_every_step():
    """every > 1: the forward hooks are attached before each recorded step and removed after
    it (a step that is not recorded runs hook-free); the recorded rows equal those of a monitor
    recording every step at the same steps."""
    m1, m3 = torch_mlp(depth=4), torch_mlp(depth=4)
    mon1, mon3 = GradientMonitor(m1, every=1), GradientMonitor(m3, every=3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in (m1, m3)]
    hooked = []
    for _ in range(8):
        hooked.append(_activation_hooks(m3) > 0)
        for m, opt, mon in zip((m1, m3), opts, (mon1, mon3)):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(m(x), y)
            loss.backward()
            opt.step()
            mon.step(loss)
    assert hooked == [True, False, False, True, False, False, True, False]
    assert _activation_hooks(m1) > 0
    d1, d3 = mon1.to_dict(), mon3.to_dict()
    assert d3["steps"] == [0, 3, 6]
    for k in ("loss", "signal_norm", "param_grad_norm", "param_norm", "act_mean", "act_std",
              "saturated", "layer_grad_linf"):
        assert d3[k] == [d1[k][s] for s in (0, 3, 6)], k
    # updates: w(s) - w(s-1) in both (every=3 snapshots the weights the step before)
    assert d3["update_norm"][0] is None
    assert d3["update_norm"][1:] == [d1["update_norm"][s] for s in (3, 6)]
    mon3.close()
    mon3.step()
    mon3.step()   # after close(): still recording norms, never re-attaching hooks
    assert _activation_hooks(m3) == 0


def _grad_case(case):
    """(model, dtype) trained 3 steps under one of the gradient layouts the fast path must see
    through; returns the monitor's history and torch's own numbers for the last step."""
    dtype = torch.float64 if case == "float64" else torch.float32
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8),
                                torch.nn.Tanh(), torch.nn.Linear(8, 3)).to(dtype)
    unused = torch.nn.Linear(3, 3).to(dtype)   # a parameter whose grad stays None
    model.add_module("unused", unused)
    model.forward = lambda x: torch.nn.Sequential.forward(torch.nn.Sequential(*model[:5]), x)
    mon = GradientMonitor(model)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(16, 4, generator=g).to(dtype)
    y = torch.randint(0, 3, (16,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sig = []
    for _ in range(3):
        opt.zero_grad(set_to_none=case != "kept")
        outs = []
        hs = [model[i].register_forward_hook(lambda m, a, o: (o.retain_grad(), outs.append(o))
                                             and None) for i in (1, 3, 4)]
        loss = torch.nn.functional.cross_entropy(model(x), y)
        for h in hs:
            h.remove()
        loss.backward(create_graph=case == "create_graph")
        if case == "strided":   # same values, column-major layout
            for p in model.parameters():
                if p.grad is not None and p.grad.dim() == 2:
                    p.grad = p.grad.t().contiguous().t()
                    assert not p.grad.is_contiguous()
        if case == "neg_view":
            model[0].weight.grad = torch._neg_view(model[0].weight.grad)
        grads = [None if p.grad is None else float(p.grad.detach().double().norm())
                 for p in model.parameters()]
        sig = [float(o.grad.detach().double().norm()) for o in outs]
        opt.step()
        mon.step(loss)
        if case == "create_graph":
            for p in model.parameters():
                p.grad = None   # break the graph cycle create_graph makes
    return mon.to_dict(), grads, sig


@pytest.mark.filterwarnings("ignore:Using backward.. with create_graph=True")
@pytest.mark.parametrize("case", ["plain", "kept", "strided", "float64", "create_graph",
                                  "neg_view"])
def test_gradient_layouts_give_torchs_numbers(case):
    """Gradients kept across steps (zero_grad(set_to_none=False)), strided, float64, requiring
    grad (create_graph) or negative-bit views, and a parameter without a gradient: the recorded
    norms are torch's."""
    d, grads, sig = _grad_case(case)
    got = d["param_grad_norm"][-1]
    assert got[-2:] == [0.0, 0.0]   # the unused layer: no gradient, norm 0
    np.testing.assert_allclose(got[:-2], grads[:-2], rtol=1e-12)
    np.testing.assert_allclose(d["signal_norm"][-1][:3], sig, rtol=1e-12)
    assert d["signal_norm"][-1][3] is None   # the unused layer ran no forward
    assert all(v is not None for v in d["act_mean"][-1][:2])
    assert d["layer_nonfinite"][-1][:3] == [0, 0, 0]


def test_bfloat16_model_is_monitored():
    """A bfloat16 model (numpy has no bfloat16): the norms come from float64 copies."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(),
                                torch.nn.Linear(8, 3)).to(torch.bfloat16)
    mon = GradientMonitor(model)
    x = torch.randn(16, 4, dtype=torch.bfloat16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        loss = model(x).float().pow(2).mean()
        loss.backward()
        opt.step()
        mon.step(loss)
    d = mon.to_dict()
    np.testing.assert_allclose(d["param_grad_norm"][-1],
                               [float(p.grad.double().norm()) for p in model.parameters()],
                               rtol=1e-12)
    assert d["act_mean"][-1][0] is not None and d["signal_norm"][-1][0] > 0


def test_hook_reattachment_without_handle_fields_and_two_monitors():
    """The hooks go back into the modules' hook dicts under their handles' keys; without those
    handle fields (another torch) they are registered anew each time: same history. A second
    monitor on the same model keeps its own hooks when the first is closed."""
    def run(plain_handles):
        model = torch_mlp(depth=4)
        mon = GradientMonitor(model, every=2)
        if plain_handles:
            mon._slots = None
        other = GradientMonitor(model, every=1)
        train(model, 6, mon)   # ends on step 5, before the recorded step 6: mon's hooks are on
        assert _activation_hooks(model) == len(mon._hook_specs) + len(other._hook_specs)
        mon.close()
        assert _activation_hooks(model) == len(other._hook_specs)
        other.close()
        assert _activation_hooks(model) == 0
        return mon.to_dict()
    a, b = run(False), run(True)
    assert a["steps"] == b["steps"] == [0, 2, 4]
    assert a["signal_norm"][-1][0] is not None
    for k in ("signal_norm", "act_mean", "param_grad_norm", "update_norm"):
        assert a[k] == b[k], k


@pytest.mark.parametrize("act", [lambda: torch.nn.ReLU(inplace=True), torch.nn.Softsign,
                                 torch.nn.GELU, torch.nn.LeakyReLU])
def test_signal_is_the_gradient_of_the_activation_output(act):
    """The layer signal read from the activation's autograd node (in-place ReLU, a composite
    Softsign, GELU, LeakyReLU) is the gradient torch retains for the activation's output."""
    model = torch_mlp(act=act, depth=4)
    mon = GradientMonitor(model)
    outs = []
    hooks = [model[i].register_forward_hook(lambda m, a, o: (o.retain_grad(), outs.append(o))
                                            and None) for i in (1, 3, 5)]
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(7))
    loss = model(x).pow(2).mean()
    loss.backward()
    mon.step(loss)
    for h in hooks:
        h.remove()
    want = [float(o.grad.double().norm()) for o in outs] + [None]
    got = mon.to_dict()["signal_norm"][-1]
    np.testing.assert_allclose(got[:3], want[:3], rtol=1e-12)
    assert got[3] is not None and got[3] > 0   # the last Linear: its own output's gradient


def test_vanishing_gradients_are_measured_below_float32_squares():
    """Gradients and signals of ~1e-26 (a loss scaled by 1e-25), whose float32 squares
    underflow (torch 2.x's own p.grad.norm() returns 0 for them): the monitor gives the float64
    numbers."""
    model = torch_mlp(width=64)
    mon = GradientMonitor(model)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)
    loss = torch.nn.functional.cross_entropy(model(x), y) * 1e-25
    loss.backward()
    mon.step(loss)
    h = mon.to_dict()
    ps = list(model.parameters())
    ref = [float(torch.sqrt(ps[i].grad.double().pow(2).sum() + ps[i + 1].grad.double().pow(2).sum()))
           for i in range(0, len(ps), 2)]
    assert min(ref) > 0
    np.testing.assert_allclose(h["layer_grad_norm"][-1], ref, rtol=1e-6, atol=0)
    assert all(s is not None and 1e-30 < s < 1e-20 for s in h["signal_norm"][-1])
    mon.close()


class _InPlaceFunctional(torch.nn.Module):
    """Linear -> an in-place activation module -> Linear, not a Sequential (the activation is
    found as the module that ran after the layer)."""

    def __init__(self, act):
        super().__init__()
        self.a, self.act, self.b = torch.nn.Linear(4, 8), act, torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.b(self.act(self.a(x)))


@pytest.mark.parametrize("act", ["relu", "leaky", "hardtanh", "functional"])
@pytest.mark.parametrize("every", [1, 2])
def test_in_place_activations_give_the_pre_activation_statistics(act, every):
    # ReLU(inplace=True) overwrites its input, the layer's pre-activation, with its output:
    # the monitor keeps a copy of that input, so the statistics equal the out-of-place model's
    made = {"relu": lambda inplace: torch.nn.ReLU(inplace=inplace),
            "leaky": lambda inplace: torch.nn.LeakyReLU(0.1, inplace=inplace),
            "hardtanh": lambda inplace: torch.nn.Hardtanh(-0.5, 0.5, inplace=inplace),
            "functional": lambda inplace: torch.nn.ReLU(inplace=inplace)}[act]

    def run(inplace):
        torch.manual_seed(3)
        if act == "functional":
            model = _InPlaceFunctional(made(inplace))
        else:
            model = torch.nn.Sequential(torch.nn.Linear(4, 8), made(inplace),
                                        torch.nn.Linear(8, 8), made(inplace),
                                        torch.nn.Linear(8, 3))
        mon = GradientMonitor(model, every=every)
        train(model, 4, mon)
        return mon.to_dict()

    got, want = run(True), run(False)
    for k in ("act_mean", "act_std", "dead", "saturated", "signal_norm", "layer_grad_norm"):
        assert got[k] == want[k], k
    assert any(v is not None and v < 0 for row in got["act_mean"] for v in row or [])


def test_packed_sequence_output_gives_the_layers_signal():
    # an LSTM fed a PackedSequence returns one: its signal is the gradient of the packed values
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 5, batch_first=True)
    x, lens = torch.randn(4, 6, 3), torch.tensor([6, 5, 3, 2])
    mon = GradientMonitor(lstm)
    opt = torch.optim.SGD(lstm.parameters(), lr=0.1)
    want = []
    for _ in range(3):
        out, _ = lstm(torch.nn.utils.rnn.pack_padded_sequence(x, lens, batch_first=True))
        out.data.retain_grad()
        loss = out.data.pow(3).mean()
        opt.zero_grad()
        loss.backward()
        want.append(out.data.grad.double().norm().item())
        opt.step()
        mon.step(loss)
    got = [row[0] for row in mon.to_dict()["signal_norm"]]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_block_layers_take_their_own_signal_and_statistics():
    # layers= naming blocks (Linear + BatchNorm + activation): an activation inside a block
    # belongs to that block; it used to be given to the block that ran before (the block's hook
    # runs after everything inside it), shifting every signal and statistic by one layer
    torch.manual_seed(0)

    def block(i, o):
        return torch.nn.Sequential(torch.nn.Linear(i, o), torch.nn.BatchNorm1d(o),
                                   torch.nn.Tanh())
    model = torch.nn.Sequential(block(4, 8), block(8, 8), block(8, 8), torch.nn.Linear(8, 3))
    mon = GradientMonitor(model, layers=["0", "1", "2", "3"])
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    outs, pres = [], []
    def keep_out(m, a, o):
        o.retain_grad()
        outs.append(o)

    def keep_pre(m, a, o):
        pres.append(a[0].detach())
    hooks = [model[i].register_forward_hook(keep_out) for i in range(3)]
    hooks += [model[i][2].register_forward_hook(keep_pre) for i in range(3)]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    mon.step(loss)
    for h in hooks:
        h.remove()
    h = mon.to_dict()
    np.testing.assert_allclose(h["signal_norm"][0][:3],
                               [o.grad.double().norm().item() for o in outs], rtol=1e-6)
    np.testing.assert_allclose(h["act_mean"][0][:3],
                               [p.double().mean().item() for p in pres], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(h["act_std"][0][:3],
                               [p.double().std(unbiased=False).item() for p in pres], rtol=1e-5)
