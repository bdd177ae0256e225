"""The fused LSTM/GRU cells on CUDA (csrc/cuda/rnn.cu) against the CPU cells (deepgrad._C) and a
float64 numpy reference on fresh random inputs; nn.RNN/LSTM/GRU forward and backward on CUDA
against the same model on the CPU; the gradient monitor's per-time-step norms on CUDA.
Skipped only without a GPU."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import _C, nn
from deepgrad.monitor import GradientMonitor

pytestmark = pytest.mark.cuda
if not (_C.build_info()["cuda"] and _C.cuda_device_count() > 0):
    pytest.skip("no CUDA GPU present", allow_module_level=True)

from deepgrad.backend import cuda as cb  # noqa: E402  (imports only in a CUDA build)

# (B, H): one unit, a partial block, several blocks with H not a multiple of 32
SHAPES = [(1, 1), (3, 5), (37, 53), (256, 129)]


def dev(a):
    return _C.CudaArray(np.ascontiguousarray(a, dtype=np.float32))


def dev_offset(a):
    """A device view one element into its storage (the kernels must honour the view offset)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    return _C.CudaArray(np.concatenate([np.float32([np.nan]), a.ravel()])).view(1, a.shape)


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def close(gpu, cpu, rtol=1e-5, atol=1e-6, msg=""):
    """The CUDA result equals the CPU one up to float32 rounding of exp/tanh (a few ulp)."""
    np.testing.assert_allclose(gpu.numpy(), cpu, rtol=rtol, atol=atol, err_msg=msg)


# ---- the cells ---------------------------------------------------------------------------------

@pytest.mark.parametrize("B,H", SHAPES)
def test_lstm_cell_forward_matches_cpu_and_float64(rng, B, H):
    gates = rng.normal(0, 2, (B, 4 * H))
    c_prev = rng.normal(0, 1, (B, H))
    h, c, act = cb.lstm_cell_forward(dev(gates), dev_offset(c_prev))
    assert h.shape == (B, H) and c.shape == (B, H) and act.shape == (B, 4 * H)
    h_cpu, c_cpu, act_cpu = _C.lstm_cell_forward(f32(gates), f32(c_prev))
    for name, g, r in (("h", h, h_cpu), ("c", c, c_cpu), ("act", act, act_cpu)):
        close(g, r, msg=name)
    i, f, gg, o = (gates[:, k * H:(k + 1) * H] for k in range(4))
    c_ref = sig(f) * c_prev + sig(i) * np.tanh(gg)
    np.testing.assert_allclose(c.numpy(), c_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h.numpy(), sig(o) * np.tanh(c_ref), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("B,H", SHAPES)
@pytest.mark.parametrize("has_dh,has_dc", [(True, True), (True, False), (False, True)])
def test_lstm_cell_backward_matches_cpu(rng, B, H, has_dh, has_dc):
    gates = f32(rng.normal(0, 2, (B, 4 * H)))
    c_prev = f32(rng.normal(0, 1, (B, H)))
    _, c, act = _C.lstm_cell_forward(gates, c_prev)
    dh = f32(rng.normal(size=(B, H))) if has_dh else None
    dc = f32(rng.normal(size=(B, H))) if has_dc else None
    dg_cpu, dcp_cpu = _C.lstm_cell_backward(dh, dc, c_prev, c, act)
    dg_gpu, dcp_gpu = cb.lstm_cell_backward(None if dh is None else dev(dh),
                                            None if dc is None else dev_offset(dc),
                                            dev(c_prev), dev(c), dev(act))
    assert dg_gpu.shape == (B, 4 * H) and dcp_gpu.shape == (B, H)
    close(dg_gpu, dg_cpu, msg="dgates")
    close(dcp_gpu, dcp_cpu, msg="dc_prev")
    if not has_dh:  # only the cell path: the output gate gets nothing
        assert not np.any(dg_gpu.numpy()[:, 3 * H:])


@pytest.mark.parametrize("B,H", SHAPES)
def test_gru_cell_forward_matches_cpu_and_float64(rng, B, H):
    xg = rng.normal(0, 2, (B, 3 * H))
    hg = rng.normal(0, 2, (B, 3 * H))
    h_prev = rng.normal(0, 1, (B, H))
    h, act = cb.gru_cell_forward(dev(xg), dev_offset(hg), dev(h_prev))
    assert h.shape == (B, H) and act.shape == (B, 4 * H)
    h_cpu, act_cpu = _C.gru_cell_forward(f32(xg), f32(hg), f32(h_prev))
    close(h, h_cpu, msg="h")
    close(act, act_cpu, msg="act")
    r = sig(xg[:, :H] + hg[:, :H])
    z = sig(xg[:, H:2 * H] + hg[:, H:2 * H])
    n = np.tanh(xg[:, 2 * H:] + r * hg[:, 2 * H:])
    np.testing.assert_allclose(h.numpy(), (1 - z) * n + z * h_prev, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(act.numpy()[:, 3 * H:], f32(hg[:, 2 * H:]))  # hg_n kept


@pytest.mark.parametrize("B,H", SHAPES)
def test_gru_cell_backward_matches_cpu(rng, B, H):
    xg = f32(rng.normal(0, 2, (B, 3 * H)))
    hg = f32(rng.normal(0, 2, (B, 3 * H)))
    h_prev = f32(rng.normal(0, 1, (B, H)))
    _, act = _C.gru_cell_forward(xg, hg, h_prev)
    dh = f32(rng.normal(size=(B, H)))
    cpu = _C.gru_cell_backward(dh, h_prev, act)
    gpu = cb.gru_cell_backward(dev(dh), dev_offset(h_prev), dev(act))
    for name, g, r in zip(("dxg", "dhg", "dh_prev"), gpu, cpu):
        assert g.shape == r.shape
        close(g, r, msg=name)


def test_lstm_cell_more_units_than_one_grid(rng):
    """B*H above 65536 blocks x 256 threads: the grid-stride loop covers the rest."""
    B, H = 3, 5_600_000
    gates = rng.standard_normal((B, 4 * H), dtype=np.float32)
    c_prev = rng.standard_normal((B, H), dtype=np.float32)
    h, c, _ = cb.lstm_cell_forward(dev(gates), dev(c_prev))
    h_cpu, c_cpu, _ = _C.lstm_cell_forward(gates, c_prev)
    close(h, h_cpu, msg="h")
    close(c, c_cpu, msg="c")


def test_cell_argument_errors():
    g = dev(np.zeros((2, 8)))
    with pytest.raises(ValueError, match="different devices"):
        cb.lstm_cell_forward(g, np.zeros((2, 2), np.float32))
    with pytest.raises(TypeError, match="float64.*float32"):
        _C.cuda_lstm_cell_forward(_C.CudaArray(np.zeros((2, 8))), dev(np.zeros((2, 2))))
    with pytest.raises(ValueError, match="4\\*hidden_size"):
        cb.lstm_cell_forward(dev(np.zeros((2, 6))), dev(np.zeros((2, 2))))
    with pytest.raises(ValueError, match="c_prev has shape \\(2, 3\\)"):
        cb.lstm_cell_forward(g, dev(np.zeros((2, 3))))
    with pytest.raises(ValueError, match="dc has shape"):
        cb.lstm_cell_backward(None, dev(np.zeros((3, 2))), dev(np.zeros((2, 2))),
                              dev(np.zeros((2, 2))), g)
    with pytest.raises(ValueError, match="hg has shape"):
        cb.gru_cell_forward(dev(np.zeros((2, 6))), dev(np.zeros((2, 3))), dev(np.zeros((2, 2))))
    with pytest.raises(ValueError, match="3\\*hidden_size"):
        cb.gru_cell_forward(dev(np.zeros((2, 7))), dev(np.zeros((2, 7))), dev(np.zeros((2, 2))))
    with pytest.raises(ValueError, match="h_prev has shape"):
        cb.gru_cell_backward(dev(np.zeros((2, 2))), dev(np.zeros((2, 5))), g)


# ---- the layers --------------------------------------------------------------------------------

MAKERS = {
    "rnn_tanh": lambda: nn.RNN(5, 24),
    "rnn_relu": lambda: nn.RNN(5, 24, nonlinearity="relu"),
    "lstm": lambda: nn.LSTM(5, 24),
    "lstm_nobias": lambda: nn.LSTM(5, 24, bias=False),
    "gru": lambda: nn.GRU(5, 24),
    "gru_nobias": lambda: nn.GRU(5, 24, bias=False),
}


def run(model, x, proj, state0=None):
    """Forward, a loss using every output and the last state (h and, for an LSTM, c), backward.
    Returns (outputs, last state parts, input gradient, state0 gradients)."""
    out, last = model(x) if state0 is None else model(x, state0)
    parts = list(last) if isinstance(last, tuple) else [last]
    loss = (out * proj).sum()
    for p in parts:
        loss = loss + (p * p).sum()
    model.zero_grad()
    loss.backward()
    s_grads = [] if state0 is None else [s.grad for s in (state0 if isinstance(state0, tuple) else [state0])]
    return out, parts, x.grad, s_grads


@pytest.mark.parametrize("kind", list(MAKERS))
@pytest.mark.parametrize("with_state", [False, True])
def test_layers_forward_backward_match_cpu(rng, kind, with_state):
    B, T, H = 6, 9, 24
    dg.manual_seed(int(rng.integers(1 << 30)))
    cpu = MAKERS[kind]()
    gpu = MAKERS[kind]()
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.to("cuda")
    xs = rng.normal(size=(B, T, 5)).astype(np.float32)
    proj = rng.normal(size=(B, T, H)).astype(np.float32)
    n_state = 2 if kind.startswith("lstm") else 1
    s0 = [rng.normal(0, 0.5, (B, H)).astype(np.float32) for _ in range(n_state)]
    res = []
    for model, device in ((cpu, "cpu"), (gpu, "cuda")):
        x = dg.tensor(xs, device=device, requires_grad=True)
        state0 = None
        if with_state:
            st = tuple(dg.tensor(s, device=device, requires_grad=True) for s in s0)
            state0 = st if n_state == 2 else st[0]
        res.append((run(model, x, dg.tensor(proj, device=device), state0),
                    {n: p.grad for n, p in model.named_parameters()}))
    (out_c, last_c, dx_c, ds_c), pg_c = res[0]
    (out_g, last_g, dx_g, ds_g), pg_g = res[1]
    assert out_g.device == "cuda" and dx_g.device == "cuda"
    # float32 on both sides; gemm summation orders differ
    np.testing.assert_allclose(out_g.to("cpu").numpy(), out_c.numpy(), rtol=1e-4, atol=1e-5)
    for a, b in zip(last_g, last_c):
        np.testing.assert_allclose(a.to("cpu").numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx_g.to("cpu").numpy(), dx_c.numpy(), rtol=1e-3, atol=1e-5)
    for a, b in zip(ds_g, ds_c):
        np.testing.assert_allclose(a.to("cpu").numpy(), b.numpy(), rtol=1e-3, atol=1e-5)
    assert set(pg_g) == set(pg_c)
    for name in pg_c:
        np.testing.assert_allclose(pg_g[name].to("cpu").numpy(), pg_c[name].numpy(), rtol=1e-3,
                                   atol=1e-5, err_msg=name)


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_monitor_time_signal_on_cuda_matches_cpu(rng, kind):
    """||dL/dh_t|| per time step (the first H columns of an LSTM's (h, c) state) on CUDA."""
    B, T = 4, 12
    dg.manual_seed(int(rng.integers(1 << 30)))
    cpu = MAKERS[kind]()
    gpu = MAKERS[kind]()
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.to("cuda")
    xs = rng.normal(size=(B, T, 5)).astype(np.float32)
    hist = []
    for model, device in ((cpu, "cpu"), (gpu, "cuda")):
        mon = GradientMonitor(model)
        for _ in range(2):
            out, _ = model(dg.tensor(xs, device=device))
            model.zero_grad()
            (out * out).sum().backward()
            mon.step()
        mon.close()
        hist.append(mon.to_dict())
    ts_c = np.array(next(iter(hist[0]["time_signal"].values())), dtype=np.float64)
    ts_g = np.array(next(iter(hist[1]["time_signal"].values())), dtype=np.float64)
    assert ts_g.shape == (2, T) and np.all(np.isfinite(ts_g)) and np.all(ts_g > 0)
    np.testing.assert_allclose(ts_g, ts_c, rtol=1e-3)
    np.testing.assert_allclose(np.array(hist[1]["layer_grad_norm"], dtype=np.float64),
                               np.array(hist[0]["layer_grad_norm"], dtype=np.float64), rtol=1e-3)


# ---- whole sequences: one native call each way (csrc/cuda/rnn.cu) ------------------------------

from deepgrad.backend import cpu as cpub  # noqa: E402

SEQ_SHAPES = [(1, 1, 1), (3, 1, 5), (4, 7, 24), (5, 13, 37), (64, 20, 129)]  # (B, T, H)
GATES = {"lstm": 4, "rnn_tanh": 1, "rnn_relu": 1, "gru": 3, "gru_nobias": 3}


def seq_inputs(rng, kind, B, T, H):
    G = GATES[kind]
    xw = rng.normal(0, 1, (T * B, G * H))
    w = rng.normal(0, 1 / np.sqrt(H), (H, G * H))
    h0 = rng.normal(0, 0.5, (B, H))
    c0 = rng.normal(0, 0.5, (B, H))
    bh = rng.normal(0, 0.3, 3 * H) if kind == "gru" else None
    gy = rng.normal(0, 1, (B, T + 1 if kind == "lstm" else T, H))
    return xw, w, h0, c0, bh, gy


def seq_run(be, kind, xw, w, h0, c0, bh, gy, to):
    """forward + backward with per-step norms on backend `be`; every array through `to`."""
    if kind == "lstm":
        y, saved = be.lstm_sequence_forward(to(xw), to(w), to(h0), to(c0))
        back = be.lstm_sequence_backward(to(gy), saved, to(w), True)
    elif kind.startswith("rnn"):
        act = kind.split("_")[1]
        y, saved = be.rnn_sequence_forward(to(xw), to(w), to(h0), act)
        back = be.rnn_sequence_backward(to(gy), saved, to(w), True)
    else:
        y, saved = be.gru_sequence_forward(to(xw), to(w), None if bh is None else to(bh), to(h0))
        back = be.gru_sequence_backward(to(gy), saved, to(w), True)
    return (y,) + tuple(back)


def host(a):
    return None if a is None else (np.asarray(a) if isinstance(a, np.ndarray) else a.numpy())


@pytest.mark.parametrize("kind", list(GATES))
@pytest.mark.parametrize("B,T,H", SEQ_SHAPES)
def test_sequence_matches_cpu_backend_and_float64(rng, kind, B, T, H):
    """y, dxw, dw, (dbh), dh0, (dc0) and ||dL/dh_t|| of the CUDA sequence against the CPU
    backend's native sequence on the same float32 inputs, and the CPU float64 run."""
    args = seq_inputs(rng, kind, B, T, H)
    gpu = [host(a) for a in seq_run(cb, kind, *args, to=dev)]
    cpu32 = [host(a) for a in seq_run(cpub, kind, *args, to=f32)]
    cpu64 = [host(a) for a in seq_run(cpub, kind, *args, to=np.float64)]
    assert len(gpu) == len(cpu32)
    for i, (g, c, r) in enumerate(zip(gpu, cpu32, cpu64)):
        if c is None:
            assert g is None, i
            continue
        assert g.shape == c.shape, (i, g.shape, c.shape)
        scale = max(1.0, float(np.max(np.abs(r))))
        # float32 on both devices, gemm summation orders differ; T steps compound rounding
        np.testing.assert_allclose(g, c, rtol=1e-4, atol=2e-5 * scale * T, err_msg=f"output {i}")
        np.testing.assert_allclose(g, r, rtol=1e-3, atol=1e-4 * scale * T, err_msg=f"f64 {i}")
    norms = gpu[-1]
    assert norms.dtype == np.float64 and norms.shape == (T,) and np.all(norms > 0)


@pytest.mark.parametrize("kind", list(GATES))
def test_sequence_is_deterministic_and_makes_no_host_sync(rng, kind):
    B, T, H = 8, 16, 48
    xw, w, h0, c0, bh, gy = seq_inputs(rng, kind, B, T, H)
    runs = []
    for _ in range(2):
        _C.cuda_synchronize()
        before = _C.cuda_host_syncs()
        if kind == "lstm":
            y, saved = cb.lstm_sequence_forward(dev(xw), dev(w), dev(h0), dev(c0))
            back = cb.lstm_sequence_backward(dev(gy), saved, dev(w), False)
        elif kind.startswith("rnn"):
            y, saved = cb.rnn_sequence_forward(dev(xw), dev(w), dev(h0), kind.split("_")[1])
            back = cb.rnn_sequence_backward(dev(gy), saved, dev(w), False)
        else:
            y, saved = cb.gru_sequence_forward(dev(xw), dev(w), None if bh is None else dev(bh),
                                               dev(h0))
            back = cb.gru_sequence_backward(dev(gy), saved, dev(w), False)
        assert _C.cuda_host_syncs() == before, "a sequence call synchronised with the host"
        assert back[-1] is None
        runs.append([host(a) for a in (y,) + tuple(back[:-1])])
    for a, b in zip(*runs):
        if a is not None:
            np.testing.assert_array_equal(a, b)


def test_sequence_planted_nan_gives_nan_norms_from_that_step_back(rng):
    B, T, H = 3, 6, 8
    xw, w, h0, c0, _, gy = seq_inputs(rng, "rnn_tanh", B, T, H)
    gy[1, 3, 2] = np.nan  # dL/dh_3 is NaN, and so is every earlier step through the recurrence
    y, saved = cb.rnn_sequence_forward(dev(xw), dev(w), dev(h0), "tanh")
    norms = cb.rnn_sequence_backward(dev(gy), saved, dev(w), True)[-1]
    ref = cpub.rnn_sequence_backward(f32(gy), cpub.rnn_sequence_forward(
        f32(xw), f32(w), f32(h0), "tanh")[1], f32(w), True)[-1]
    np.testing.assert_array_equal(np.isnan(norms), np.isnan(ref))
    assert np.all(np.isnan(norms[:4])) and np.all(np.isfinite(norms[4:]))


def test_sequence_argument_errors():
    z = lambda *s: dev(np.zeros(s))  # noqa: E731
    with pytest.raises(ValueError, match="xw has shape \\(5, 8\\)"):
        cb.lstm_sequence_forward(z(5, 8), z(2, 8), z(2, 2), z(2, 2))  # 5 rows, batch 2
    with pytest.raises(ValueError, match="c0 has shape"):
        cb.lstm_sequence_forward(z(4, 8), z(2, 8), z(2, 2), z(3, 2))
    with pytest.raises(ValueError, match="w has shape"):
        cb.rnn_sequence_forward(z(4, 2), z(2, 3), z(2, 2), "tanh")
    with pytest.raises(ValueError, match="unknown activation|activation"):
        cb.rnn_sequence_forward(z(4, 2), z(2, 2), z(2, 2), "swishy")
    with pytest.raises(ValueError, match="bh has shape"):
        cb.gru_sequence_forward(z(4, 6), z(2, 6), z(5), z(2, 2))
    with pytest.raises(ValueError, match="different devices"):
        cb.gru_sequence_forward(np.zeros((4, 6), np.float32), z(2, 6), None, z(2, 2))
    with pytest.raises(TypeError, match="float64.*float32"):
        _C.cuda_rnn_sequence_forward(_C.CudaArray(np.zeros((4, 2))), z(2, 2), z(2, 2), "tanh")
    _, saved = cb.rnn_sequence_forward(z(4, 2), z(2, 2), z(2, 2), "tanh")
    with pytest.raises(ValueError, match="gy has shape"):
        cb.rnn_sequence_backward(z(2, 3, 2), saved, z(2, 2))
