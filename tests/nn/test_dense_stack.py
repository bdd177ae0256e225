"""nn.Sequential runs consecutive plain Dense layers as one tape node (F.dense_stack): the same
values, gradients, optimizer steps and monitor records as calling the layers one by one, bit for
bit; hooks, frozen layers, shared layers, bad inputs and anomaly mode keep their per-layer
behaviour."""
import copy

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import losses, nn, optim
from deepgrad.monitor import GradientMonitor

ACTS = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "identity", "gelu", "softplus"]


def _model(dtype=np.float32, bias=True, seed=0):
    dg.manual_seed(seed)
    widths = [5, 7, 6, 6, 4, 3, 8, 2, 3]
    return nn.Sequential(*[nn.Dense(a, b, ACTS[i % len(ACTS)], bias=bias or i % 2 == 0,
                                    alpha=0.2 if ACTS[i % len(ACTS)] in ("leaky_relu", "elu")
                                    else None, dtype=dtype)
                           for i, (a, b) in enumerate(zip(widths, widths[1:]))])


def _one_by_one(model, x):
    for m in model:
        x = m(x)
    return x


def _grads(model):
    return [None if p.grad is None else p.grad.numpy().copy() for p in model.parameters()]


def _run(model, x, fused, target):
    model.zero_grad()
    if x.grad is not None:
        x.grad = None
    out = model(x) if fused else _one_by_one(model, x)
    loss = losses.mse(out, target)
    loss.backward()
    return out.numpy().copy(), None if x.grad is None else x.grad.numpy().copy(), _grads(model)


def _same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        if u is None or v is None:
            assert u is None and v is None
        else:
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("x_grad", [True, False])
def test_sequential_of_dense_gives_the_per_layer_bits(dtype, bias, x_grad):
    model = _model(dtype, bias)
    rng = np.random.default_rng(1)
    x = dg.tensor(rng.standard_normal((11, 5)), dtype=dtype, requires_grad=x_grad)
    t = dg.tensor(rng.standard_normal((11, 3)), dtype=dtype)
    assert model(x)._node.name == "dense_stack"  # one node for the whole chain
    out_f, dx_f, g_f = _run(model, x, True, t)
    out_l, dx_l, g_l = _run(model, x, False, t)
    np.testing.assert_array_equal(out_f, out_l)
    _same([dx_f], [dx_l])
    assert (dx_f is not None) == x_grad
    _same(g_f, g_l)
    assert all(g is not None and np.any(g != 0) for g in g_f)


def test_the_fused_model_trains_as_the_per_layer_one():
    a = _model()
    b = copy.deepcopy(a)
    rng = np.random.default_rng(2)
    x = dg.tensor(rng.standard_normal((16, 5)).astype(np.float32))
    t = dg.tensor(rng.standard_normal((16, 3)).astype(np.float32))
    oa, ob = optim.Adam(a, lr=1e-2), optim.Adam(b, lr=1e-2)
    for _ in range(5):
        for model, opt, fused in ((a, oa, True), (b, ob, False)):
            opt.zero_grad()
            losses.mse(model(x) if fused else _one_by_one(model, x), t).backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_gradcheck_float64(module_gradcheck):
    model = _model(np.float64)
    x = np.random.default_rng(3).standard_normal((4, 5))
    module_gradcheck(model, x + np.sign(x) * 0.05, atol=1e-6, rtol=1e-5)


def test_frozen_leading_layers_and_a_frozen_middle_layer():
    model = _model()
    for p in list(model[0].parameters()) + list(model[1].parameters()) + \
            list(model[4].parameters()):
        p.requires_grad = False
    rng = np.random.default_rng(4)
    x = dg.tensor(rng.standard_normal((9, 5)).astype(np.float32))
    t = dg.tensor(rng.standard_normal((9, 3)).astype(np.float32))
    out_f, _, g_f = _run(model, x, True, t)
    out_l, _, g_l = _run(model, x, False, t)
    np.testing.assert_array_equal(out_f, out_l)
    _same(g_f, g_l)
    for m in (model[0], model[1], model[4]):
        assert all(p.grad is None or not np.any(p.grad.numpy()) for p in m.parameters())
    assert np.any(model[2].weight.grad.numpy())


def test_all_frozen_records_nothing():
    model = _model()
    model.requires_grad_(False)
    x = dg.tensor(np.ones((2, 5), np.float32))
    y = model(x)
    assert not y.requires_grad
    np.testing.assert_array_equal(y.numpy(), _one_by_one(model, x).numpy())


def test_shared_layer_accumulates_both_uses():
    dg.manual_seed(5)
    d = nn.Dense(4, 4, "tanh")
    e = nn.Dense(4, 2, "sigmoid")
    model = nn.Sequential(d, d, e, )
    rng = np.random.default_rng(5)
    x = dg.tensor(rng.standard_normal((6, 4)).astype(np.float32), requires_grad=True)
    t = dg.tensor(rng.standard_normal((6, 2)).astype(np.float32))
    out_f, dx_f, g_f = _run(model, x, True, t)
    out_l, dx_l, g_l = _run(model, x, False, t)
    np.testing.assert_array_equal(out_f, out_l)
    _same([dx_f], [dx_l])
    _same(g_f, g_l)


def test_parameter_hook_sees_the_summed_gradient_once():
    dg.manual_seed(6)
    d = nn.Dense(3, 3, "tanh")
    model = nn.Sequential(d, nn.Dense(3, 3, "relu"), d)
    seen = []
    d.weight.register_hook(lambda g: seen.append(g.numpy().copy()))
    rng = np.random.default_rng(6)
    x = dg.tensor(rng.standard_normal((5, 3)).astype(np.float32))
    t = dg.tensor(rng.standard_normal((5, 3)).astype(np.float32))
    _, _, g_f = _run(model, x, True, t)
    _, _, g_l = _run(model, x, False, t)
    assert len(seen) == 2
    np.testing.assert_array_equal(seen[0], seen[1])
    _same(g_f, g_l)


def test_forward_and_backward_hooks_still_fire_on_their_layer():
    model = _model()
    calls, grads = [], []
    model[3].register_forward_hook(lambda m, args, out: calls.append(out.numpy().copy()))
    model[5].register_full_backward_hook(lambda m, g: grads.append(g.numpy().copy()))
    rng = np.random.default_rng(7)
    x = dg.tensor(rng.standard_normal((4, 5)).astype(np.float32))
    t = dg.tensor(rng.standard_normal((4, 3)).astype(np.float32))
    out_f, _, g_f = _run(model, x, True, t)
    out_l, _, g_l = _run(model, x, False, t)
    assert len(calls) == 2 and len(grads) == 2
    np.testing.assert_array_equal(calls[0], calls[1])
    np.testing.assert_array_equal(grads[0], grads[1])
    np.testing.assert_array_equal(out_f, out_l)
    _same(g_f, g_l)

    # a forward hook that replaces the output is obeyed
    model[2].register_forward_hook(lambda m, args, out: out * 0.0)
    y = model(x).numpy()
    np.testing.assert_array_equal(y, _one_by_one(model, x).numpy())


def test_no_grad_and_backward_twice():
    model = _model()
    x = dg.tensor(np.random.default_rng(8).standard_normal((3, 5)).astype(np.float32))
    with dg.no_grad():
        y = model(x)
    assert not y.requires_grad
    np.testing.assert_array_equal(y.numpy(), _one_by_one(model, x).numpy())
    loss = model(x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()
    model.zero_grad()
    loss = model(x).sum()
    loss.backward(retain_graph=True)
    g1 = _grads(model)
    model.zero_grad()
    loss.backward()
    _same(g1, _grads(model))


def test_weight_changed_between_forward_and_backward_is_an_error():
    model = _model()
    x = dg.tensor(np.ones((2, 5), np.float32))
    loss = model(x).sum()
    with dg.no_grad():
        model[3].weight.data[...] += 1.0
        model[3].weight._version += 1  # as an in-place op on the parameter would
    with pytest.raises(RuntimeError):
        loss.backward()


def test_bad_inputs_raise_as_the_layer_would():
    model = _model()
    with pytest.raises((ValueError, TypeError)) as fused:
        model(dg.tensor(np.ones((2, 4), np.float32)))
    with pytest.raises((ValueError, TypeError)) as direct:
        model[0](dg.tensor(np.ones((2, 4), np.float32)))
    assert str(fused.value) == str(direct.value)
    broken = nn.Sequential(nn.Dense(4, 5), nn.Dense(6, 2))
    with pytest.raises((ValueError, TypeError), match="6"):
        broken(dg.tensor(np.ones((2, 4), np.float32)))
    with pytest.raises(TypeError):
        model(dg.tensor(np.ones((2, 5), np.float64)))
    # arrays, 1-D samples and empty batches take the per-layer path
    np.testing.assert_array_equal(model(np.ones((2, 5))).numpy(),
                                  _one_by_one(model, np.ones((2, 5))).numpy())
    assert model(np.ones(5, np.float32)).shape == (3,)


def test_anomaly_mode_names_the_layer():
    model = _model()
    model[2].weight.data[0, 0] = np.nan
    with dg.detect_anomaly():
        with pytest.raises(RuntimeError, match="2"):
            model(dg.tensor(np.ones((2, 5), np.float32)))


class _Loop(nn.Module):
    """The same layers called one by one (no Sequential)."""

    def __init__(self, layers):
        super().__init__()
        for i, m in enumerate(layers):
            setattr(self, f"l{i}", m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


def test_monitor_records_are_those_of_the_per_layer_path():
    from deepgrad.data import spirals
    X, y = spirals(64, seed=0)
    dg.manual_seed(9)
    a = nn.Sequential(nn.Dense(2, 16, "tanh"), *[nn.Dense(16, 16, "sigmoid") for _ in range(4)],
                      nn.Dense(16, 3))
    b = _Loop(copy.deepcopy(list(a)))
    hist = []
    for model in (a, b):
        mon = GradientMonitor(model)
        if model is a:  # the monitor hooks no Dense layer: the chain still runs as one node
            assert model(dg.tensor(X))._node.name == "dense_stack"
        opt = optim.SGD(model, lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            loss = losses.cross_entropy(model(dg.tensor(X)), dg.tensor(y))
            loss.backward()
            opt.step()
            mon.step(loss)
        hist.append(mon.to_dict())
        mon.close()
    ha, hb = hist
    keys = [k for k in ha if k not in ("layers", "layer_names", "params") and k in hb]
    assert "signal_norm" in keys
    for k in keys:
        assert repr(ha[k]) == repr(hb[k]), k


def test_native_chain_calls_reject_bad_lists():
    from deepgrad import _C
    x = np.ones((2, 3), np.float32)
    w1, w2 = np.ones((3, 4), np.float32), np.ones((5, 2), np.float32)
    with pytest.raises(ValueError, match="one entry per layer"):
        _C.dense_chain_forward(x, [w1], [None, None], ["tanh"], [0.01], [None])
    with pytest.raises(ValueError, match="no layers"):
        _C.dense_chain_forward(x, [], [], [], [], [])
    with pytest.raises(ValueError, match="w expects 5 input features"):  # layer 2 of the chain
        _C.dense_chain_forward(x, [w1, w2], [None, None], ["tanh", "relu"], [0.01, 0.01],
                               [None, None])
    outs = _C.dense_chain_forward(x, [w1, np.ones((4, 2), np.float32)], [None, None],
                                  ["tanh", "relu"], [0.01, 0.01], [None, None], 1)
    assert outs[0] is None and outs[1][0].shape == (2, 2)
    g = np.ones((2, 2), np.float32)
    with pytest.raises(ValueError, match="k must be"):
        _C.dense_chain_backward(g, [x, None], [w1, w1], [None, None], [None, None],
                                [None, None], [None, None], ["tanh", "tanh"], [0.01, 0.01],
                                [None, None], 2)
    with pytest.raises(ValueError, match="one entry per layer"):
        _C.dense_chain_backward(g, [x], [w1, w1], [None, None], [None, None], [None, None],
                                [None, None], ["tanh", "tanh"], [0.01, 0.01], [None, None], 0)


def test_native_chain_calls_name_a_bad_activation_or_alpha():
    from deepgrad import _C
    x = np.ones((2, 3), np.float32)
    w = np.ones((3, 3), np.float32)
    with pytest.raises(TypeError, match=r"activations\[1\] must be an activation name"):
        _C.dense_chain_forward(x, [w, w], [None, None], ["tanh", 3], [0.01, 0.01], [None, None])
    with pytest.raises(TypeError, match=r"alphas\[0\] must be a real number"):
        _C.dense_chain_forward(x, [w, w], [None, None], ["tanh", "relu"], ["a", 0.01],
                               [None, None])
