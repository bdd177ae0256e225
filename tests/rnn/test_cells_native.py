"""Fused LSTM/GRU cell kernels (deepgrad._C) against numpy float64 references and central
finite differences."""
import numpy as np
import pytest

from deepgrad import _C


def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_ref(gates, c_prev):
    H = c_prev.shape[1]
    i, f, g, o = (gates[:, k * H:(k + 1) * H] for k in range(4))
    i, f, g, o = sig(i), sig(f), np.tanh(g), sig(o)
    c = f * c_prev + i * g
    return o * np.tanh(c), c


def gru_ref(xg, hg, h_prev):
    H = h_prev.shape[1]
    xr, xz, xn = (xg[:, k * H:(k + 1) * H] for k in range(3))
    hr, hz, hn = (hg[:, k * H:(k + 1) * H] for k in range(3))
    r, z = sig(xr + hr), sig(xz + hz)
    n = np.tanh(xn + r * hn)
    return (1 - z) * n + z * h_prev


def num_grad(f, x, eps=1e-6):
    """Central differences of the scalar f() with respect to every entry of x (modified in place)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        idx = it.multi_index
        old = x[idx]
        x[idx] = old + eps
        fp = f()
        x[idx] = old - eps
        fm = f()
        x[idx] = old
        g[idx] = (fp - fm) / (2 * eps)
    return g


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("H", [7, 8, 19, 64])  # float32 runs 8 units per vector + a masked tail
def test_lstm_forward_matches_numpy(dtype, tol, H):
    rng = np.random.default_rng(0)
    B = 5
    gates = rng.normal(0, 2, (B, 4 * H))
    gates[0, :4] = [95.0, -95.0, 30.0, -30.0]  # saturated gates
    c_prev = rng.normal(0, 1, (B, H))
    h, c, act = _C.lstm_cell_forward(gates.astype(dtype), c_prev.astype(dtype))
    assert h.dtype == dtype and c.dtype == dtype and act.shape == (B, 4 * H)
    h_ref, c_ref = lstm_ref(gates, c_prev)
    np.testing.assert_allclose(h, h_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(c, c_ref, rtol=tol, atol=tol)
    act_ref = np.concatenate([sig(gates[:, :2 * H]), np.tanh(gates[:, 2 * H:3 * H]),
                              sig(gates[:, 3 * H:])], axis=1)
    np.testing.assert_allclose(act, act_ref, rtol=tol, atol=tol)


def test_lstm_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    B, H = 3, 4
    gates = rng.normal(0, 1.5, (B, 4 * H))
    c_prev = rng.normal(0, 1, (B, H))
    wh = rng.normal(size=(B, H))
    wc = rng.normal(size=(B, H))

    def loss():
        h, c = lstm_ref(gates, c_prev)
        return float((wh * h).sum() + (wc * c).sum())

    h, c, act = _C.lstm_cell_forward(gates, c_prev)
    dgates, dc_prev = _C.lstm_cell_backward(wh, wc, c_prev, c, act)
    np.testing.assert_allclose(dgates, num_grad(loss, gates), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(dc_prev, num_grad(loss, c_prev), rtol=1e-7, atol=1e-9)
    # None means a zero gradient for that output
    dg_h, dcp_h = _C.lstm_cell_backward(wh, None, c_prev, c, act)
    dg_0, _ = _C.lstm_cell_backward(wh, np.zeros_like(wh), c_prev, c, act)
    np.testing.assert_array_equal(dg_h, dg_0)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_gru_forward_matches_numpy(dtype, tol):
    rng = np.random.default_rng(2)
    B, H = 4, 6
    xg, hg = rng.normal(0, 2, (B, 3 * H)), rng.normal(0, 2, (B, 3 * H))
    h_prev = rng.normal(0, 1, (B, H))
    h, act = _C.gru_cell_forward(xg.astype(dtype), hg.astype(dtype), h_prev.astype(dtype))
    assert h.dtype == dtype and act.shape == (B, 4 * H)
    np.testing.assert_allclose(h, gru_ref(xg, hg, h_prev), rtol=tol, atol=tol)


def test_gru_backward_matches_finite_differences():
    rng = np.random.default_rng(3)
    B, H = 3, 4
    xg, hg = rng.normal(0, 1.5, (B, 3 * H)), rng.normal(0, 1.5, (B, 3 * H))
    h_prev = rng.normal(0, 1, (B, H))
    w = rng.normal(size=(B, H))

    def loss():
        return float((w * gru_ref(xg, hg, h_prev)).sum())

    h, act = _C.gru_cell_forward(xg, hg, h_prev)
    dxg, dhg, dh_prev = _C.gru_cell_backward(w, h_prev, act)
    np.testing.assert_allclose(dxg, num_grad(loss, xg), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(dhg, num_grad(loss, hg), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(dh_prev, num_grad(loss, h_prev), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cells_are_stable_for_large_pre_activations(dtype):
    gates = np.array([[800.0, -800.0, 50.0, -900.0]], dtype=dtype)
    h, c, act = _C.lstm_cell_forward(gates, np.array([[3.0]], dtype=dtype))
    assert np.all(np.isfinite(h)) and np.all(np.isfinite(act))
    np.testing.assert_allclose(c, [[1.0]], atol=1e-12)
    gates = np.tile(gates, (1, 9)).reshape(1, 4 * 9)  # H = 9: a full vector and a tail
    h, c, act = _C.lstm_cell_forward(gates, np.full((1, 9), 3.0, dtype=dtype))
    assert np.all(np.isfinite(h)) and np.all(np.isfinite(act))
    h, c, act = _C.lstm_cell_forward(np.full((2, 36), np.nan, dtype=dtype),
                                     np.zeros((2, 9), dtype=dtype))
    assert np.all(np.isnan(h)) and np.all(np.isnan(act))  # NaN propagates, never hidden


def test_cell_kernels_reject_bad_input():
    with pytest.raises(ValueError, match="4\\*hidden_size"):
        _C.lstm_cell_forward(np.zeros((2, 6)), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="c_prev has shape"):
        _C.lstm_cell_forward(np.zeros((2, 8)), np.zeros((3, 2)))
    with pytest.raises(TypeError, match="dtype"):
        _C.lstm_cell_forward(np.zeros((2, 8)), np.zeros((2, 2), np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        _C.gru_cell_forward(np.zeros((2, 6), np.int32), np.zeros((2, 6)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="hg has shape"):
        _C.gru_cell_forward(np.zeros((2, 6)), np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="dh has shape"):
        _C.gru_cell_backward(np.zeros((1, 2)), np.zeros((2, 2)), np.zeros((2, 8)))


def test_cells_split_over_threads_give_the_same_bits():
    # B x H large enough for the rows to fork (when more than one thread is allowed)
    import deepgrad
    rng = np.random.default_rng(3)
    B, H = 96, 72
    gates = rng.normal(0, 2, (B, 4 * H)).astype(np.float32)
    c_prev = rng.normal(0, 1, (B, H)).astype(np.float32)
    xg, hg = (rng.normal(0, 1, (B, 3 * H)).astype(np.float32) for _ in range(2))
    dh, dc = (rng.normal(0, 1, (B, H)).astype(np.float32) for _ in range(2))
    saved = deepgrad.get_num_threads()
    runs = []
    try:
        for t in (1, 2, 3):
            deepgrad.set_num_threads(t)
            h, c, act = _C.lstm_cell_forward(gates, c_prev)
            dgates, dcp = _C.lstm_cell_backward(dh, dc, c_prev, c, act)
            hn, gact = _C.gru_cell_forward(xg, hg, c_prev)
            gb = _C.gru_cell_backward(dh, c_prev, gact)
            runs.append([h, c, act, dgates, dcp, hn, gact, *gb])
    finally:
        deepgrad.set_num_threads(saved)
    for r in runs[1:]:
        for a, b in zip(r, runs[0]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_lstm_sequence_matches_the_step_by_step_cells(dtype, tol):
    # the one-call sequence kernels against a loop over the cell kernels, forward and backward
    rng = np.random.default_rng(4)
    B, T, H = 3, 6, 5
    xw = rng.normal(0, 1, (T * B, 4 * H)).astype(dtype)
    w = rng.normal(0, 0.5, (H, 4 * H)).astype(dtype)
    h0, c0 = (rng.normal(0, 1, (B, H)).astype(dtype) for _ in range(2))
    y, hs, cs, acts = _C.lstm_sequence_forward(xw, w, h0, c0)
    assert y.shape == (B, T + 1, H) and hs.shape == (T + 1, B, H) and acts.shape == (T, B, 4 * H)
    h, c, ref_h, ref_c, ref_act = h0, c0, [h0], [c0], []
    for t in range(T):
        h, c, act = _C.lstm_cell_forward(xw[t * B:(t + 1) * B] + h @ w, c)
        ref_h.append(h)
        ref_c.append(c)
        ref_act.append(act)
    np.testing.assert_allclose(hs, np.stack(ref_h), rtol=tol, atol=tol)
    np.testing.assert_allclose(cs, np.stack(ref_c), rtol=tol, atol=tol)
    np.testing.assert_allclose(acts, np.stack(ref_act), rtol=tol, atol=tol)
    np.testing.assert_allclose(y[:, :T], np.stack(ref_h[1:], axis=1), rtol=tol, atol=tol)
    np.testing.assert_allclose(y[:, T], ref_c[-1], rtol=tol, atol=tol)

    gy = rng.normal(0, 1, (B, T + 1, H)).astype(dtype)
    dxw, dw, dh0, dc0, norms = _C.lstm_sequence_backward(gy, hs, cs, acts, w, True)
    dh_next, dc = np.zeros((B, H), dtype), gy[:, T]
    ref_dxw, ref_norms = [None] * T, [0.0] * T
    for t in range(T - 1, -1, -1):
        dh = gy[:, t] + dh_next
        ref_norms[t] = np.linalg.norm(dh.astype(np.float64))
        ref_dxw[t], dc = _C.lstm_cell_backward(dh, dc, cs[t], cs[t + 1], acts[t])
        dh_next = ref_dxw[t] @ w.T
    ref_dxw = np.concatenate(ref_dxw)
    np.testing.assert_allclose(dxw, ref_dxw, rtol=tol, atol=tol)
    np.testing.assert_allclose(dw, hs[:T].reshape(T * B, H).T @ ref_dxw, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(dh0, dh_next, rtol=tol, atol=tol)
    np.testing.assert_allclose(dc0, dc, rtol=tol, atol=tol)
    np.testing.assert_allclose(norms, ref_norms, rtol=tol)
    assert _C.lstm_sequence_backward(gy, hs, cs, acts, w)[4] is None


def test_lstm_sequence_rejects_bad_input():
    B, T, H = 2, 3, 4
    xw = np.zeros((T * B, 4 * H), np.float32)
    w = np.zeros((H, 4 * H), np.float32)
    h0 = np.zeros((B, H), np.float32)
    with pytest.raises(ValueError, match=r"xw has shape \(5, 16\)"):
        _C.lstm_sequence_forward(xw[:5], w, h0, h0)
    with pytest.raises(ValueError, match="w has shape"):
        _C.lstm_sequence_forward(xw, w[:, :8], h0, h0)
    with pytest.raises(ValueError, match="c0 has shape"):
        _C.lstm_sequence_forward(xw, w, h0, h0[:1])
    with pytest.raises(TypeError, match="dtype"):
        _C.lstm_sequence_forward(xw, w.astype(np.float64), h0, h0)
    y, hs, cs, acts = _C.lstm_sequence_forward(xw, w, h0, h0)
    with pytest.raises(ValueError, match="gy has shape"):
        _C.lstm_sequence_backward(y[:, :T], hs, cs, acts, w)
    with pytest.raises(ValueError, match="hs has shape"):
        _C.lstm_sequence_backward(y, hs[:T], cs, acts, w)
    with pytest.raises(TypeError, match="float32 or float64"):
        _C.lstm_sequence_backward(y.astype(np.int64), hs, cs, acts, w)


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_rnn_sequence_matches_a_step_loop(act, dtype, tol):
    rng = np.random.default_rng(5)
    B, T, H = 3, 6, 5
    xw = rng.normal(0, 1, (T * B, H)).astype(dtype)
    w = rng.normal(0, 0.5, (H, H)).astype(dtype)
    h0 = rng.normal(0, 1, (B, H)).astype(dtype)
    y, hs, zs = _C.rnn_sequence_forward(xw, w, h0, act)
    f = np.tanh if act == "tanh" else (lambda z: np.maximum(z, 0))
    h, ref_h, ref_z = h0.astype(np.float64), [h0], []
    for t in range(T):
        z = xw[t * B:(t + 1) * B] + h @ w
        h = f(z)
        ref_z.append(z)
        ref_h.append(h)
    np.testing.assert_allclose(zs, np.stack(ref_z), rtol=tol, atol=tol)
    np.testing.assert_allclose(y, np.stack(ref_h[1:], axis=1), rtol=tol, atol=tol)
    gy = rng.normal(0, 1, (B, T, H)).astype(dtype)
    dxw, dw, dh0, norms = _C.rnn_sequence_backward(gy, hs, zs, w, act, True)
    dh_next, ref_dz, ref_norms = np.zeros((B, H)), [None] * T, [0.0] * T
    for t in range(T - 1, -1, -1):
        dh = gy[:, t] + dh_next
        ref_norms[t] = np.linalg.norm(dh)
        ref_dz[t] = dh * ((1 - ref_h[t + 1] ** 2) if act == "tanh" else (ref_z[t] > 0))
        dh_next = ref_dz[t] @ w.T
    ref_dz = np.concatenate(ref_dz)
    np.testing.assert_allclose(dxw, ref_dz, rtol=tol, atol=tol)
    np.testing.assert_allclose(dw, np.concatenate(ref_h[:T]).T @ ref_dz, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(dh0, dh_next, rtol=tol, atol=tol)
    np.testing.assert_allclose(norms, ref_norms, rtol=tol * 10)


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_gru_sequence_matches_the_step_by_step_cells(with_bias, dtype, tol):
    rng = np.random.default_rng(6)
    B, T, H = 3, 6, 5
    xw = rng.normal(0, 1, (T * B, 3 * H)).astype(dtype)
    w = rng.normal(0, 0.5, (H, 3 * H)).astype(dtype)
    bh = rng.normal(0, 0.5, 3 * H).astype(dtype) if with_bias else None
    h0 = rng.normal(0, 1, (B, H)).astype(dtype)
    y, hs, acts = _C.gru_sequence_forward(xw, w, bh, h0)
    h, ref_h, ref_act = h0, [h0], []
    for t in range(T):
        hg = h @ w + (bh if with_bias else 0)
        h, act = _C.gru_cell_forward(xw[t * B:(t + 1) * B], hg.astype(dtype), h)
        ref_h.append(h)
        ref_act.append(act)
    np.testing.assert_allclose(acts, np.stack(ref_act), rtol=tol, atol=tol)
    np.testing.assert_allclose(y, np.stack(ref_h[1:], axis=1), rtol=tol, atol=tol)
    gy = rng.normal(0, 1, (B, T, H)).astype(dtype)
    dxw, dw, dbh, dh0, norms = _C.gru_sequence_backward(gy, hs, acts, w, with_bias, True)
    dh_next, dxs, dhgs, ref_norms = np.zeros((B, H), dtype), [None] * T, [None] * T, [0.0] * T
    for t in range(T - 1, -1, -1):
        dh = gy[:, t] + dh_next
        ref_norms[t] = np.linalg.norm(dh.astype(np.float64))
        dxs[t], dhgs[t], direct = _C.gru_cell_backward(dh, hs[t], acts[t])
        dh_next = direct + dhgs[t] @ w.T
    dhg = np.concatenate(dhgs)
    np.testing.assert_allclose(dxw, np.concatenate(dxs), rtol=tol, atol=tol)
    np.testing.assert_allclose(dw, hs[:T].reshape(T * B, H).T @ dhg, rtol=tol * 10, atol=tol * 10)
    if with_bias:
        np.testing.assert_allclose(dbh, dhg.sum(0), rtol=tol * 10, atol=tol * 10)
    else:
        assert dbh is None
    np.testing.assert_allclose(dh0, dh_next, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(norms, ref_norms, rtol=tol * 10)


def test_rnn_and_gru_sequences_reject_bad_input():
    B, T, H = 2, 3, 4
    h0 = np.zeros((B, H), np.float32)
    with pytest.raises(ValueError, match="unknown activation 'sigmoidd'"):
        _C.rnn_sequence_forward(np.zeros((T * B, H), np.float32), np.zeros((H, H), np.float32), h0, "sigmoidd")
    with pytest.raises(ValueError, match=r"xw has shape \(6, 5\)"):
        _C.rnn_sequence_forward(np.zeros((T * B, H + 1), np.float32), np.zeros((H, H), np.float32), h0)
    with pytest.raises(ValueError, match=r"bh has shape \(4,\)"):
        _C.gru_sequence_forward(np.zeros((T * B, 3 * H), np.float32), np.zeros((H, 3 * H), np.float32),
                                np.zeros(H, np.float32), h0)
    with pytest.raises(TypeError, match="dtype"):
        _C.gru_sequence_forward(np.zeros((T * B, 3 * H)), np.zeros((H, 3 * H), np.float32), None, h0)
