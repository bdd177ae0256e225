"""nn.RNN / LSTM / GRU: finite-difference gradient checks in float64 (inputs, initial states and
every parameter), the fused cells against a composition of plain tape ops, PyTorch parity, and
input errors."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import nn


def seq(B=2, T=4, F=3, seed=0, requires_grad=True):
    x = np.random.default_rng(seed).normal(size=(B, T, F))
    return dg.tensor(x, dtype=np.float64, requires_grad=requires_grad)


def loss_of(model, x, proj):
    out, last = model(x)
    last_h = last[0] if isinstance(last, tuple) else last
    return (out * proj).sum() + (last_h * last_h).sum()


def param_fd_check(model, x, eps=1e-6, rtol=1e-6, atol=1e-8):
    """Central differences for every parameter element vs the tape's gradients (float64)."""
    proj = dg.tensor(np.random.default_rng(9).normal(size=(x.shape[0], x.shape[1], model.hidden_size)),
                     dtype=np.float64)
    model.zero_grad()
    loss_of(model, x, proj).backward()
    for name, p in model.named_parameters():
        ana = np.array(p.grad.data, copy=True)
        flat = p.data.reshape(-1)
        num = np.zeros(flat.size)
        with dg.no_grad():
            for j in range(flat.size):
                v = flat[j]
                flat[j] = v + eps
                fp = loss_of(model, x, proj).item()
                flat[j] = v - eps
                fm = loss_of(model, x, proj).item()
                flat[j] = v
                num[j] = (fp - fm) / (2 * eps)
        np.testing.assert_allclose(ana.reshape(-1), num, rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("make", [lambda: nn.RNN(3, 4, dtype=np.float64),
                                  lambda: nn.RNN(3, 4, nonlinearity="relu", dtype=np.float64),
                                  lambda: nn.LSTM(3, 4, dtype=np.float64),
                                  lambda: nn.GRU(3, 4, dtype=np.float64)],
                         ids=["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_gradcheck_inputs_and_parameters(make):
    dg.manual_seed(1)
    model = make()
    x = seq()
    dg.gradcheck(lambda x: model(x)[0], [x], atol=1e-8, rtol=1e-6)
    param_fd_check(model, seq(requires_grad=False))


def test_gradcheck_initial_states():
    dg.manual_seed(2)
    rng = np.random.default_rng(3)
    lstm = nn.LSTM(3, 4, dtype=np.float64)
    x = seq()
    h0 = dg.tensor(rng.normal(size=(2, 4)), dtype=np.float64, requires_grad=True)
    c0 = dg.tensor(rng.normal(size=(2, 4)), dtype=np.float64, requires_grad=True)
    dg.gradcheck(lambda x, h, c: lstm(x, (h, c))[0], [x, h0, c0], atol=1e-8, rtol=1e-6)
    dg.gradcheck(lambda x, h, c: lstm(x, (h, c))[1][1], [x, h0, c0], atol=1e-8, rtol=1e-6)
    gru = nn.GRU(3, 4, dtype=np.float64)
    dg.gradcheck(lambda x, h: gru(x, h)[0], [x, h0], atol=1e-8, rtol=1e-6)
    for act in ("tanh", "relu"):
        rnn = nn.RNN(3, 4, nonlinearity=act, dtype=np.float64)
        dg.gradcheck(lambda x, h: rnn(x, h)[0], [x, h0], atol=1e-8, rtol=1e-6)
        dg.gradcheck(lambda x, h: rnn(x, h)[1], [x, h0], atol=1e-8, rtol=1e-6)


def _sig(t):
    return 1.0 / (1.0 + (-t).exp())


def lstm_composed(m, x):
    """The same LSTM from elementwise tape ops (the oracle for the fused cell)."""
    B, T, _ = x.shape
    H = m.hidden_size
    h = dg.zeros(B, H, dtype=np.float64)
    c = dg.zeros(B, H, dtype=np.float64)
    outs = []
    for t in range(T):
        a = x[:, t, :] @ m.weight_ih + m.bias + h @ m.weight_hh
        i, f, g, o = _sig(a[:, :H]), _sig(a[:, H:2 * H]), a[:, 2 * H:3 * H].tanh(), _sig(a[:, 3 * H:])
        c = f * c + i * g
        h = o * c.tanh()
        outs.append(h)
    return dg.stack(outs, axis=1), (h, c)


def rnn_composed(m, x):
    B, T, _ = x.shape
    h = dg.zeros(B, m.hidden_size, dtype=np.float64)
    outs = []
    for t in range(T):
        h = (x[:, t, :] @ m.weight_ih + m.bias + h @ m.weight_hh).tanh()
        outs.append(h)
    return dg.stack(outs, axis=1), h


def gru_composed(m, x):
    B, T, _ = x.shape
    H = m.hidden_size
    h = dg.zeros(B, H, dtype=np.float64)
    outs = []
    for t in range(T):
        xi = x[:, t, :] @ m.weight_ih + m.bias
        hh = h @ m.weight_hh + m.bias_hh
        r = _sig(xi[:, :H] + hh[:, :H])
        z = _sig(xi[:, H:2 * H] + hh[:, H:2 * H])
        n = (xi[:, 2 * H:] + r * hh[:, 2 * H:]).tanh()
        h = (1.0 - z) * n + z * h
        outs.append(h)
    return dg.stack(outs, axis=1), h


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_fused_cells_match_composed_tape_ops(kind):
    dg.manual_seed(4)
    m = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind](3, 5, dtype=np.float64)
    ref = {"lstm": lstm_composed, "gru": gru_composed, "rnn": rnn_composed}[kind]
    x = seq(B=3, T=6, seed=5)
    proj = dg.tensor(np.random.default_rng(6).normal(size=(3, 6, 5)), dtype=np.float64)

    grads = {}
    for which, fn in (("fused", lambda: m(x)), ("composed", lambda: ref(m, x))):
        m.zero_grad()
        x.grad = None
        out, last = fn()
        last_h = last[0] if isinstance(last, tuple) else last
        loss = (out * proj).sum() + last_h.sum()
        if isinstance(last, tuple):  # the LSTM's final cell state is an output too
            loss = loss + 0.5 * (last[1] * last[1]).sum()
        loss.backward()
        grads[which] = ([out.numpy().copy(), x.grad.numpy().copy()] +
                        [p.grad.numpy().copy() for p in m.parameters()])
    for a, b in zip(grads["fused"], grads["composed"]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_lstm_forget_bias_and_shapes():
    m = nn.LSTM(2, 3, forget_bias=2.5)
    b = m.bias.numpy()
    np.testing.assert_array_equal(b[3:6], 2.5)
    assert m.weight_ih.shape == (2, 12) and m.weight_hh.shape == (3, 12)
    out, (h, c) = m(np.zeros((4, 7, 2), np.float32))
    assert out.shape == (4, 7, 3) and h.shape == (4, 3) and c.shape == (4, 3)
    np.testing.assert_array_equal(out.numpy()[:, -1], h.numpy())
    assert out.dtype == np.float32


def test_float32_matches_float64():
    dg.manual_seed(7)
    m64 = nn.GRU(3, 4, dtype=np.float64)
    m32 = nn.GRU(3, 4)
    m32.load_state_dict({k: v.astype(np.float32) for k, v in m64.state_dict().items()})
    x = np.random.default_rng(0).normal(size=(2, 5, 3))
    o64 = m64(dg.tensor(x, dtype=np.float64))[0].numpy()
    o32 = m32(dg.tensor(x, dtype=np.float32))[0].numpy()
    np.testing.assert_allclose(o32, o64, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_matches_pytorch(kind):
    torch = pytest.importorskip("torch")
    dg.manual_seed(8)
    H, Fin = 4, 3
    m = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind](Fin, H, dtype=np.float64)
    tm = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind](
        Fin, H, batch_first=True).double()
    with torch.no_grad():
        tm.weight_ih_l0.copy_(torch.from_numpy(m.weight_ih.numpy().T.copy()))
        tm.weight_hh_l0.copy_(torch.from_numpy(m.weight_hh.numpy().T.copy()))
        tm.bias_ih_l0.copy_(torch.from_numpy(m.bias.numpy().copy()))
        bh = m.bias_hh.numpy() if kind == "gru" else np.zeros_like(m.bias.numpy())
        tm.bias_hh_l0.copy_(torch.from_numpy(bh.copy()))
    x = np.random.default_rng(1).normal(size=(2, 5, Fin))
    ours = m(dg.tensor(x, dtype=np.float64))[0].numpy()
    theirs = tm(torch.from_numpy(x))[0].detach().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_bad_inputs_raise_clear_errors():
    m = nn.LSTM(3, 4)
    with pytest.raises(ValueError, match="batch-first"):
        m(np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match="input_size=3"):
        m(np.zeros((2, 5, 4), np.float32))
    with pytest.raises(ValueError, match="empty"):
        m(np.zeros((0, 5, 3), np.float32))
    with pytest.raises(TypeError, match="float64"):
        m(dg.tensor(np.zeros((2, 5, 3)), dtype=np.float64))
    with pytest.raises(ValueError, match="pair"):
        m(np.zeros((2, 5, 3), np.float32), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="initial state h0"):
        nn.GRU(3, 4)(np.zeros((2, 5, 3), np.float32), np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match="initial state c0 is float64 but the layer's weights"):
        m(np.zeros((2, 5, 3), np.float32),
          (dg.zeros(2, 4), dg.zeros(2, 4, dtype=np.float64)))
    with pytest.raises(TypeError, match="initial state h0 is float64"):
        nn.RNN(3, 4)(np.zeros((2, 5, 3), np.float32), dg.zeros(2, 4, dtype=np.float64))
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size"):
        nn.GRU(3, 0)
