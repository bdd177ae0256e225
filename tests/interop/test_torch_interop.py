"""Interop with PyTorch and numpy (issue 12): torch state dicts in and out (a torch model and
the deepgrad model loaded from it give the same outputs and gradients in float64, the round trip
is exact, a square Dense never loads transposed, errors name the key), from_numpy / DLPack
sharing memory both ways, and numpy 2's __array__ copy protocol."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import nn

torch = pytest.importorskip("torch")
tnn = torch.nn


class TRes(tnn.Module):
    def __init__(self, w):
        super().__init__()
        self.block = tnn.Sequential(tnn.Linear(w, w), tnn.Tanh(), tnn.Linear(w, w))

    def forward(self, x):
        return self.block(x) + x


def pairs():
    """(name, torch model, deepgrad model of the same architecture, input shape)."""
    d64 = np.float64
    yield ("mlp", tnn.Sequential(tnn.Linear(5, 5), tnn.Tanh(), tnn.Linear(5, 3)),
           nn.Sequential(nn.Dense(5, 5, "tanh", dtype=d64), nn.Dense(5, 3, dtype=d64)), (4, 5))
    yield ("batchnorm", tnn.Sequential(tnn.Linear(4, 6), tnn.BatchNorm1d(6), tnn.ReLU(),
                                       tnn.Linear(6, 2)),
           nn.Sequential(nn.Dense(4, 6, dtype=d64), nn.BatchNorm1d(6, dtype=d64),
                         nn.Activation("relu"), nn.Dense(6, 2, dtype=d64)), (8, 4))
    yield ("layernorm", tnn.Sequential(tnn.Linear(4, 6), tnn.LayerNorm(6), tnn.Linear(6, 2)),
           nn.Sequential(nn.Dense(4, 6, dtype=d64), nn.LayerNorm(6, dtype=d64),
                         nn.Dense(6, 2, dtype=d64)), (3, 4))
    yield ("residual", tnn.Sequential(tnn.Linear(3, 4), TRes(4)),
           nn.Sequential(nn.Dense(3, 4, dtype=d64),
                         nn.Residual(nn.Sequential(nn.Dense(4, 4, "tanh", dtype=d64),
                                                   nn.Dense(4, 4, dtype=d64)))), (5, 3))


@pytest.mark.parametrize("case", ["mlp", "batchnorm", "layernorm", "residual"])
def test_feedforward_models_match_torch(case):
    torch.manual_seed(0)
    name, tm, dm, shape = next(p for p in pairs() if p[0] == case)
    tm = tm.double()
    if case == "batchnorm":   # non-trivial running statistics
        tm.train()
        with torch.no_grad():
            for _ in range(3):
                tm(torch.randn(8, 4, dtype=torch.float64))
    dm.load_torch_state_dict(tm.state_dict())
    back = dm.torch_state_dict()          # before any forward updates running statistics
    ref = {k: v.clone() for k, v in tm.state_dict().items()}
    assert list(back) == list(ref)
    for k in ref:
        assert torch.equal(back[k], ref[k]), k   # exact round trip
    x = np.random.default_rng(1).standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    xd = dg.tensor(x, dtype=dg.float64, requires_grad=True)
    for train in (True, False):
        tm.train(train)
        dm.train(train)
        yt = tm(xt)
        yd = dm(xd)
        np.testing.assert_allclose(yd.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    yt = tm(xt)
    yd = dm(xd)
    (yt ** 2).sum().backward()
    (yd ** 2).sum().backward()
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "gru", "lstm"])
def test_recurrent_models_match_torch(kind):
    torch.manual_seed(0)
    if kind.startswith("rnn"):
        act = kind.split("_")[1]
        tm = tnn.RNN(3, 5, nonlinearity=act, batch_first=True).double()
        dm = nn.RNN(3, 5, act, dtype=np.float64)
    elif kind == "gru":
        tm, dm = tnn.GRU(3, 5, batch_first=True).double(), nn.GRU(3, 5, dtype=np.float64)
    else:
        tm, dm = tnn.LSTM(3, 5, batch_first=True).double(), nn.LSTM(3, 5, dtype=np.float64)
    dm.load_torch_state_dict(tm.state_dict())
    x = np.random.default_rng(2).standard_normal((4, 7, 3))
    xt = torch.tensor(x, requires_grad=True)
    xd = dg.tensor(x, dtype=dg.float64, requires_grad=True)
    yt, _ = tm(xt)
    yd, _ = dm(xd)
    np.testing.assert_allclose(yd.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    (yt ** 2).sum().backward()
    (yd ** 2).sum().backward()
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dm.weight_hh.grad.numpy(), tm.weight_hh_l0.grad.numpy().T,
                               rtol=1e-10, atol=1e-12)
    back = dm.torch_state_dict()
    for k, v in tm.state_dict().items():
        assert torch.equal(back[k], v), k


def test_square_dense_is_never_loaded_transposed():
    tm = tnn.Linear(4, 4).double()
    with torch.no_grad():
        tm.weight.copy_(torch.arange(16.0).reshape(4, 4))
    dm = nn.Dense(4, 4, dtype=np.float64)
    dm.load_torch_state_dict(tm.state_dict())
    np.testing.assert_array_equal(dm.weight.numpy(), tm.weight.detach().numpy().T)
    x = np.eye(4)
    np.testing.assert_allclose(dm(dg.tensor(x, dtype=dg.float64)).numpy(),
                               tm(torch.tensor(x)).detach().numpy())


def test_errors_name_the_key_and_change_nothing():
    dm = nn.Sequential(nn.Dense(4, 3, dtype=np.float64), nn.Dense(3, 2, dtype=np.float64))
    before = {k: np.array(v) for k, v in dm.state_dict().items()}
    tm = tnn.Sequential(tnn.Linear(4, 3), tnn.Linear(3, 2)).double()
    sd = tm.state_dict()
    bad = dict(sd)
    bad["1.weight"] = torch.zeros(3, 2, dtype=torch.float64)   # the deepgrad layout: refused
    with pytest.raises(ValueError, match=r"'1.weight' has shape \(3, 2\) but this model needs "
                                         r"\(2, 3\)"):
        dm.load_torch_state_dict(bad)
    missing = {k: v for k, v in sd.items() if k != "0.bias"}
    with pytest.raises(ValueError, match="missing key '0.bias'"):
        dm.load_torch_state_dict(missing)
    with pytest.raises(ValueError, match="unexpected key 'extra'"):
        dm.load_torch_state_dict({**sd, "extra": torch.zeros(1)})
    for k, v in dm.state_dict().items():
        np.testing.assert_array_equal(np.array(v), before[k])
    dm.load_torch_state_dict(missing, strict=False)
    np.testing.assert_array_equal(dm.state_dict()["0.bias"], before["0.bias"])


def test_from_numpy_shares_memory_both_ways():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = dg.from_numpy(a)
    a[0, 0] = 42
    assert t.numpy()[0, 0] == 42
    t.numpy()[1, 2] = -1
    assert a[1, 2] == -1
    for bad, exc, msg in ((a.T, ValueError, "C-contiguous"), (a.astype(np.int8), TypeError, "int8"),
                          ([1.0], TypeError, "numpy array")):
        with pytest.raises(exc, match=msg):
            dg.from_numpy(bad)
    ro = np.ones(3, np.float32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        dg.from_numpy(ro)


def test_dlpack_zero_copy_with_torch_and_numpy():
    t = dg.tensor(np.arange(4, dtype=np.float32))
    tt = torch.from_dlpack(t)
    tt[0] = 7
    assert t.numpy()[0] == 7
    n = np.from_dlpack(t)
    n[1] = 8
    assert t.numpy()[1] == 8
    src = torch.arange(5, dtype=torch.float64)
    d = dg.from_dlpack(src)
    src[2] = 99
    assert d.numpy()[2] == 99 and d.dtype == dg.float64
    assert t.__dlpack_device__() == (1, 0)
    with pytest.raises(ValueError, match="C-contiguous"):
        dg.from_dlpack(torch.arange(6.0).reshape(2, 3).T)


def test_array_protocol_copy_semantics():
    t = dg.tensor(np.arange(3, dtype=np.float32))
    c = np.array(t, copy=True)
    c[0] = 5
    assert t.numpy()[0] == 0
    s = np.asarray(t)
    s[1] = 6
    assert t.numpy()[1] == 6
    assert np.array(t, dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="without a copy"):
        np.array(t, dtype=np.float64, copy=False)
