"""The parameter arena: views, lazy layout, re-layout, zero_grad, shared weights, state dicts."""
import copy

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import losses, nn, optim


def _mlp():
    dg.manual_seed(0)
    return nn.Sequential(nn.Dense(3, 4, "tanh"), nn.Dense(4, 2))


def test_parameters_are_views_into_one_buffer():
    m = _mlp()
    a = m.arena
    assert a.numel == 3 * 4 + 4 + 4 * 2 + 2 == m.num_parameters()
    assert a.names == ("0.weight", "0.bias", "1.weight", "1.bias")
    assert a.offsets.dtype == np.int64 and a.offsets.tolist() == [0, 12, 16, 24, 26]
    assert [s.module for s in a.segments] == ["0", "0", "1", "1"]
    for i, p in enumerate(m.parameters()):
        assert np.shares_memory(p.data, a.params) and np.shares_memory(p.grad.data, a.grads)
        assert p.segment == a.segments[i]
        np.testing.assert_array_equal(a.params[a.offsets[i]:a.offsets[i + 1]], p.numpy().ravel())
    a.params[0] = 42.0
    assert m[0].weight.numpy()[0, 0] == 42.0


def test_layout_is_lazy_and_values_are_kept():
    m = _mlp()
    w = m[0].weight.numpy().copy()
    assert m[0].weight._arena is None          # nothing laid out at construction
    m(np.zeros((2, 3)))
    assert m[0].weight._arena is m.arena
    np.testing.assert_array_equal(m[0].weight.numpy(), w)


def test_backward_accumulates_into_the_grad_arena_and_zero_grad_clears_it():
    m = _mlp()
    x = np.random.default_rng(0).normal(size=(5, 3))
    for _ in range(2):
        losses.mse(m(x), np.zeros((5, 2))).backward()
    g2 = m.arena.grads.copy()
    m.zero_grad()
    assert not m.arena.grads.any()
    losses.mse(m(x), np.zeros((5, 2))).backward()
    np.testing.assert_allclose(g2, 2 * m.arena.grads, rtol=1e-6)
    # the segment norms of the grad arena are the per-parameter norms
    norms, total, bad = m.arena.grad_norms()
    np.testing.assert_allclose(norms, [np.linalg.norm(p.grad.numpy()) for p in m.parameters()],
                               rtol=1e-5)
    assert bad == 0 and np.isclose(total, np.linalg.norm(m.arena.grads), rtol=1e-5)


def test_assigning_data_or_grad_copies_into_the_arena():
    m = _mlp()
    m.arena                                    # explicit layout
    p = m[1].bias
    before = p.data
    p.data = np.array([1.0, 2.0], dtype=np.float32)
    assert p.data is before and m.arena.params[-2:].tolist() == [1.0, 2.0]
    p.grad = dg.tensor([3.0, 4.0])
    assert m.arena.grads[-2:].tolist() == [3.0, 4.0]
    p.grad = None
    assert m.arena.grads[-2:].tolist() == [0.0, 0.0] and p.grad is not None
    with pytest.raises(ValueError, match="shape"):
        p.data = np.zeros(3, dtype=np.float32)


def test_relayout_when_a_layer_is_added_and_optimizer_follows():
    m = _mlp()
    x = np.random.default_rng(1).normal(size=(4, 3))
    opt = optim.SGD(m, lr=0.1, momentum=0.9)
    ref = copy.deepcopy(m)
    ref_opt = optim.SGD(ref, lr=0.1, momentum=0.9)
    for model, o in ((m, opt), (ref, ref_opt)):
        o.zero_grad()
        losses.mse(model(x), np.ones((4, 2))).backward()
        o.step()
    old = m.arena
    m.append(nn.Identity())
    m.append(nn.Dense(2, 2))                  # new parameters: the next call re-lays out
    m.append(nn.Dense(2, 2))
    m(x)
    assert m.arena is not old and old.retired and m.arena.numel == old.numel + 12
    np.testing.assert_array_equal(m.arena.params[:old.numel], old.params)
    # the optimizer notices the new layout and carries its momentum over: the first two layers
    # keep following the same trajectory as an untouched copy trained on the same gradients
    for _ in range(2):
        g = None
        for model, o in ((ref, ref_opt), (m, opt)):
            o.zero_grad()
            losses.mse(model[:2](x), np.ones((4, 2))).backward()
            o.step()
        np.testing.assert_allclose(m.arena.params[:old.numel], ref.arena.params, rtol=1e-6)


def test_composing_laid_out_models_and_calling_a_submodule():
    a, b = _mlp(), nn.Sequential(nn.Dense(2, 2))
    a(np.zeros((1, 3)))
    b(np.zeros((1, 2)))
    both = nn.Sequential(a, b)
    arena = both.arena
    assert arena.names[-2:] == ("1.0.weight", "1.0.bias")
    assert all(p._arena is arena for p in both.parameters())
    a(np.zeros((1, 3)))                        # a submodule uses the parent's arena
    assert a.arena is arena and both.arena is arena
    a.zero_grad()                              # zeroes only a's range
    arena.grads[:] = 1.0
    a.zero_grad()
    assert not arena.grads[:a.num_parameters()].any() and arena.grads[-6:].all()


def test_shared_weights_get_one_segment_and_both_gradients():
    shared = nn.Dense(2, 2, bias=False)
    net = nn.Sequential(shared, nn.Tanh(), shared)
    assert net.num_parameters() == 4 and len(net.arena) == 1
    x = np.random.default_rng(2).normal(size=(3, 2))
    net.double()
    w = shared.weight.numpy()
    xt = dg.tensor(x, dtype="float64")
    net(xt).sum().backward()
    h = np.tanh(x @ w)
    dw = x.T @ ((1 - h ** 2) * (np.ones((3, 2)) @ w.T)) + h.T @ np.ones((3, 2))
    np.testing.assert_allclose(shared.weight.grad.numpy(), dw, rtol=1e-10)


def test_dag_weight_reuse_chain_rule():
    # yhat = w1·(z1 + z2), z2 = w2·(z1 + x): w1 is used twice
    w1 = nn.Parameter(np.array([0.5]), dtype="float64")
    w2 = nn.Parameter(np.array([-1.5]), dtype="float64")
    x, z1 = 2.0, 0.7
    z2 = w2 * (z1 + x)
    yhat = w1 * (z1 + z2)
    yhat.sum().backward()
    assert np.isclose(w1.grad.item(), z1 + (-1.5) * (z1 + x))
    assert np.isclose(w2.grad.item(), 0.5 * (z1 + x))


def test_double_and_float_relayout_with_dtype():
    m = _mlp()
    vals = m.arena.params.copy()
    m.double()
    assert m.arena.dtype == np.float64 and m[0].weight.dtype == np.float64
    np.testing.assert_array_equal(m.arena.params, vals.astype(np.float64))
    assert m(np.zeros((1, 3))).dtype == np.float64
    m.float()
    assert m.arena.dtype == np.float32


def test_state_dict_round_trip_and_mismatch_messages(tmp_path):
    m = _mlp()
    bn = nn.Sequential(nn.Dense(3, 2), nn.BatchNorm1d(2))
    sd = bn.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                        "1.running_var"]
    state = m.state_dict()
    m2 = _mlp()
    for p in m2.parameters():
        p.data = np.zeros(p.shape, dtype=np.float32)
    m2.load_state_dict(state)
    np.testing.assert_array_equal(m2.arena.params, m.arena.params)
    bad = dict(state)
    del bad["0.bias"]
    bad["extra"] = np.zeros(1)
    bad["1.weight"] = np.zeros((5, 2))
    with pytest.raises(ValueError) as e:
        m2.load_state_dict(bad)
    msg = str(e.value)
    assert "missing keys: 0.bias" in msg and "unexpected keys: extra" in msg
    assert "1.weight: checkpoint (5, 2) vs model (4, 2)" in msg
    del bad["1.weight"]
    res = m2.load_state_dict(bad, strict=False)
    assert res.missing_keys == ["0.bias", "1.weight"] and res.unexpected_keys == ["extra"]
    path = tmp_path / "model.dg"
    dg.save(m.state_dict(), path)
    m3 = _mlp()
    m3.load_state_dict(dg.load(path))
    np.testing.assert_array_equal(m3.arena.params, m.arena.params)


def test_module_api_traversal_modes_and_repr():
    m = nn.Sequential(nn.Dense(2, 3, "relu"), nn.Dropout(0.2), nn.Residual(nn.Dense(3, 3, "tanh")))
    assert [n for n, _ in m.named_modules()] == ["", "0", "1", "2", "2.block"]
    assert len(list(m.children())) == 3 and len(list(m.modules())) == 5
    assert [n for n, _ in m.named_parameters()] == ["0.weight", "0.bias", "2.block.weight",
                                                    "2.block.bias"]
    m.eval()
    assert not any(mod.training for mod in m.modules())
    m.train()
    assert all(mod.training for mod in m.modules())
    assert "(2): Residual(\n    (block): Dense(3 -> 3, activation=tanh)\n  )" in repr(m)
    assert m.num_parameters() == 9 + 12


def test_anomaly_mode_names_the_module():
    m = nn.Sequential(nn.Dense(2, 2), nn.Dense(2, 1, "sigmoid"))
    m[1].weight.data = np.array([[np.nan], [1.0]], dtype=np.float32)
    with pytest.raises(dg.autograd.AnomalyError, match="'1'"):
        with dg.detect_anomaly():
            m(np.ones((1, 2)))


def test_deepcopy_gets_its_own_arena():
    m = _mlp()
    m(np.zeros((1, 3)))
    c = copy.deepcopy(m)
    assert c.arena is not m.arena
    np.testing.assert_array_equal(c.arena.params, m.arena.params)
    c.arena.params[:] = 0.0
    assert m.arena.params.any() and not c[0].weight.numpy().any()
    assert all(p._arena is c.arena for p in c.parameters())


def test_to_accepts_dtype_spellings_and_rejects_nonsense():
    m = nn.Sequential(nn.Dense(2, 3), nn.BatchNorm1d(3))
    opt = optim.Adam(m, lr=0.1)
    m.to("float64")
    assert m.arena.dtype == np.float64 and m[1].running_var.dtype == np.float64
    losses.mse(m(np.ones((4, 2))), np.zeros((4, 3))).backward()
    opt.step()                                 # the optimizer follows the converted arena
    assert opt._group_runs[0][0].arena is m.arena
    m.to(dg.float32)
    assert m.arena.dtype == np.float32
    with pytest.raises(ValueError, match="neither a device"):
        m.to("tpu")
    with pytest.raises(TypeError, match="float32 or float64"):
        m.to("int64")


class _Affine(nn.Module):
    """A user-written module: its own Parameters, a numpy buffer and a Tensor expression."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(np.array([2.0], dtype=np.float32))
        self.shift = nn.Parameter(np.array([0.5], dtype=np.float32))
        self.register_buffer("calls", np.zeros(1))

    def forward(self, x):
        self.calls += 1
        return x * self.scale + self.shift


def test_user_defined_module_buffers_and_gradients():
    m = _Affine()
    x = dg.tensor([[1.0], [3.0]])
    (m(x) ** 2).sum().backward()
    # d/dscale sum((s x + b)^2) = sum(2 (s x + b) x), d/dshift = sum(2 (s x + b))
    assert np.allclose(m.arena.grads, [2 * (2.5 * 1 + 6.5 * 3), 2 * (2.5 + 6.5)])
    sd = m.state_dict()
    assert list(sd) == ["scale", "shift", "calls"] and sd["calls"].tolist() == [1.0]
    m2 = _Affine()
    m2.load_state_dict(sd)
    assert m2.calls.tolist() == [1.0] and m2.scale.item() == 2.0
    with pytest.raises(TypeError, match="is a Parameter"):
        m.scale = np.ones(1)
    with pytest.raises(AttributeError, match="super"):
        class Broken(nn.Module):
            def __init__(self):
                self.w = nn.Parameter(np.ones(1))
        Broken()


def test_anomaly_mode_names_nested_modules_by_qualified_name():
    m = nn.Sequential(nn.Dense(2, 2), nn.Residual(nn.Dense(2, 2)))
    m(np.ones((1, 2)))                          # laid out before, outside anomaly mode
    m[1].block.bias.data = np.array([np.nan, 0.0], dtype=np.float32)
    with pytest.raises(dg.autograd.AnomalyError, match="'1.block'"):
        with dg.detect_anomaly():
            m(np.ones((1, 2)))
    assert dg.autograd.current_module() is None  # the stack is balanced after the error
