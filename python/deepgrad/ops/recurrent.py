"""Recurrent sequences: the whole RNN / GRU / LSTM recurrence of a layer as ONE tape node, on the
backend's sequence kernels (csrc/cpu/rnn_seq.cpp, csrc/cuda/rnn.cu: one native call each way).
``row``: None, or a list that the backward fills with ||dL/dh_t|| for every step t (the
GradientMonitor hands one over through the layer's documented time-signal row)."""
from __future__ import annotations

from ..autograd import record as _result
from ..tensor import Tensor


def _fill(row: list | None, norms) -> None:
    """Hand the backward's per-step ||dL/dh_t|| to the monitor's list."""
    if row is not None:
        row[:] = [float(v) for v in norms]


def _rnn_sequence(xw: Tensor, W: Tensor, h0: Tensor, act: str, row: list | None) -> Tensor:
    """The Elman recurrence as ONE tape node: xw (T*B, H) time-major input projections, W (H, H),
    h0 (B, H) -> Y (B, T, H) = h_1 .. h_T, with h_t = act(xw_t + h_{t-1} W). Backward: reverse
    walk (dz_t = dh_t act'(z_t), dh_{t-1} = dz_t W^T), then dW as one gemm over all steps. The
    loops are the backend's (one native call each way on the CPU)."""
    be = xw._be
    w = W.data
    y, saved = be.rnn_sequence_forward(xw.data, w, h0.data, act)

    def backward(g):
        dxw, dw, dh0, norms = be.rnn_sequence_backward(g, saved, w, row is not None)
        _fill(row, norms)
        return dxw, dw, dh0
    return _result(y, be, (xw, W, h0), backward, "rnn_sequence", saved=(W,))


def _gru_sequence(xw: Tensor, W: Tensor, bh: Tensor | None, h0: Tensor,
                  row: list | None) -> Tensor:
    """The GRU recurrence as ONE tape node: xw (T*B, 3H) time-major input projections (with
    b_ih), W (H, 3H), b_hh (3H) or None, h0 (B, H) -> Y (B, T, H) = h_1 .. h_T. Per step:
    hg = h_{t-1} W + b_hh (gemm), the fused cell. Backward: reverse walk, then dW_hh as one gemm
    over all steps and db_hh as one column sum. The loops are the backend's (one native call
    each way on the CPU)."""
    be = xw._be
    w = W.data
    y, saved = be.gru_sequence_forward(xw.data, w, None if bh is None else bh.data, h0.data)

    def backward(g):
        dxw, dw, dbh, dh0, norms = be.gru_sequence_backward(g, saved, w, row is not None)
        _fill(row, norms)
        return (dxw, dw, dh0) if bh is None else (dxw, dw, dbh, dh0)
    inputs = (xw, W, h0) if bh is None else (xw, W, bh, h0)
    return _result(y, be, inputs, backward, "gru_sequence", saved=(W,))


def _lstm_sequence(xw: Tensor, W: Tensor, h0: Tensor, c0: Tensor, row: list | None) -> Tensor:
    """The whole LSTM recurrence as ONE tape node: xw (T*B, 4H) time-major input projections,
    W (H, 4H), h0 and c0 (B, H) -> Y (B, T + 1, H) holding h_1 .. h_T, then c_T. Per step:
    gates = xw_t + h_{t-1} W (gemm), the fused cell. The backward walks the steps in reverse
    (cell backward, dh_{t-1} = dgates W^T) and then forms dW_hh with ONE gemm over all steps;
    d xw is the time-major stack of the gate gradients. The loop is the backend's
    (lstm_sequence_forward/backward: one native call each way on the CPU). ``row``: when a
    list, row[t] receives ||dL/dh_t|| (GradientMonitor)."""
    be = xw._be
    w = W.data
    y, saved = be.lstm_sequence_forward(xw.data, w, h0.data, c0.data)

    def backward(g):
        dxw, dw, dh0, dc0, norms = be.lstm_sequence_backward(g, saved, w, row is not None)
        _fill(row, norms)
        return dxw, dw, dh0, dc0
    return _result(y, be, (xw, W, h0, c0), backward, "lstm_sequence", saved=(W,))
