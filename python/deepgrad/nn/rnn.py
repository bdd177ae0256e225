"""Recurrent layers: RNN (tanh or relu), LSTM and GRU over batch-first sequences, trained by
backpropagation through time on the tape.

x (B, T, input_size) -> (outputs (B, T, hidden_size), last state). The input projection of the
whole sequence is one fused dense op (x @ W_ih + b, time-major), and the whole recurrence is ONE
tape node (_rnn_sequence, _gru_sequence, _lstm_sequence): per step h_prev @ W_hh (native gemm)
and the gate arithmetic (native activation or fused LSTM/GRU cell kernel); the backward walks
the steps in reverse and forms dW_hh with one gemm over all of them. No per-step Tensors or tape
nodes, so the loop costs about what its kernels cost. Gate order follows PyTorch: LSTM (i, f, g, o), GRU (r, z, n), so weights
transpose to and from ``torch.nn.LSTM``/``GRU`` (which store W as (4H, in); ours is (in, 4H)).

``time_signal_readers`` / ``last_time_signal``: while a reader asks (a GradientMonitor watching the
layer does), the backward fills a list with ||dL/dh_t|| for every time step t, so decay through
time is visible exactly like decay through depth.
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from .. import init as _init
from ..ops.recurrent import _gru_sequence, _lstm_sequence, _rnn_sequence
from ..tensor import Tensor
from .layers import _check_float, _check_positive_int, _dtype, _numbers
from .module import Module
from .parameter import Parameter

__all__ = ["RNN", "LSTM", "GRU"]

_GATES = {"rnn": 1, "lstm": 4, "gru": 3}


class _RecurrentBase(Module):
    _kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, init=None,
                 recurrent_init=None, dtype=None):
        super().__init__()
        for n, v in (("input_size", input_size), ("hidden_size", hidden_size)):
            _check_positive_int(type(self).__name__, n, v)
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        dt = _dtype(dtype, type(self).__name__)
        G = _GATES[self._kind] * self.hidden_size
        k = 1.0 / math.sqrt(self.hidden_size)
        self.weight_ih = Parameter(np.zeros((self.input_size, G), dtype=dt))
        self.weight_hh = Parameter(np.zeros((self.hidden_size, G), dtype=dt))
        for w, how in ((self.weight_ih, init), (self.weight_hh, recurrent_init)):
            if how is None:  # PyTorch's default: U(-1/sqrt(H), 1/sqrt(H))
                _init.uniform_(w, -k, k)
            else:
                _init.get(how, self._init_activation())(w)
        self.bias = Parameter(np.zeros(G, dtype=dt)) if bias else None
        if self.bias is not None:
            _init.uniform_(self.bias, -k, k)
        # The time signal, a documented option of the recurrent layers: while
        # time_signal_readers > 0 (each GradientMonitor watching the layer adds one), every
        # training forward leaves in last_time_signal the list that its backward fills with
        # ||dL/dh_t|| for t = 1..T (one array out of the native backward loop).
        self.time_signal_readers = 0
        self.last_time_signal: list | None = None

    def _init_activation(self) -> str:
        return "tanh"

    def extra_repr(self) -> str:
        s = f"{self.input_size} -> {self.hidden_size}"
        return s + (", bias=False" if self.bias is None else "")

    # -- shared driver -------------------------------------------------------------------------
    def _check_input(self, x) -> Tensor:
        name = type(self).__name__
        if not isinstance(x, Tensor):
            x = self._as_tensor(x, "input")
        if x.ndim != 3:
            raise ValueError(f"{name}: expected a batch-first input (batch, time, {self.input_size}), "
                             f"got shape {tuple(x.shape)}")
        B, T, Fin = x.shape
        if B == 0 or T == 0:
            raise ValueError(f"{name}: empty input of shape {tuple(x.shape)}; need at least one "
                             "sample and one time step")
        if Fin != self.input_size:
            raise ValueError(f"{name}: input has {Fin} features (shape {tuple(x.shape)}) but the "
                             f"layer expects input_size={self.input_size}")
        self._like_weights(x, "input")
        return x

    def _as_tensor(self, a, what: str) -> Tensor:
        """An array-like as a Tensor of the weights' dtype (ValueError naming the layer when it
        holds no numbers: strings, ragged lists, None)."""
        arr = _numbers(a, type(self).__name__, what)
        return Tensor(arr.astype(self.weight_ih.dtype, copy=False))

    def _like_weights(self, t: Tensor, what: str) -> None:
        """t must have the weights' dtype and device (TypeError / ValueError naming both)."""
        name, w = type(self).__name__, self.weight_ih
        if t.dtype != w.dtype:
            raise TypeError(f"{name}: {what} is {t.dtype} but the layer's weights are {w.dtype}; "
                            f"convert with .to(dtype) on one of them")
        if t.device != w.device:
            raise ValueError(f"{name}: {what} is on {t.device} but the layer is on {w.device}")

    def _state(self, h0, B: int, width: int, what: str) -> Tensor:
        if h0 is None:
            return Tensor(np.zeros((B, width), dtype=self.weight_ih.dtype), device=self.weight_ih.device)
        if not isinstance(h0, Tensor):
            h0 = self._as_tensor(h0, f"initial {what}")
        name = type(self).__name__
        if tuple(h0.shape) != (B, width):
            raise ValueError(f"{name}: initial {what} has shape {tuple(h0.shape)} "
                             f"but must be (batch, {width}) = ({B}, {width})")
        self._like_weights(h0, f"initial {what}")
        return h0

    def _project(self, x: Tensor) -> Tensor:
        """x (B, T, in) -> x_t W_ih + b for every step, time-major (T*B, G): step t reads the
        contiguous rows [t*B, (t+1)*B). One fused dense op for the whole sequence."""
        B, T, Fin = x.shape
        return F.dense(x.transpose(1, 0, 2).reshape(T * B, Fin), self.weight_ih, self.bias)

    def _time_signal_row(self, T: int) -> list | None:
        """While a GradientMonitor watches this layer: a list the sequence node's backward
        fills with ||dL/dh_t|| per step (left in self.last_time_signal)."""
        return [None] * T if self.time_signal_readers else None


class RNN(_RecurrentBase):
    """Elman RNN: h_t = act(x_t W_ih + b + h_{t-1} W_hh), act = tanh or relu.
    forward(x (B, T, in), h0 (B, H) or None) -> (outputs (B, T, H), h_T (B, H))."""
    _kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh",
                 bias: bool = True, init=None, recurrent_init=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.__dict__["nonlinearity"] = nonlinearity
        super().__init__(input_size, hidden_size, bias, init, recurrent_init, dtype)
        self.nonlinearity = nonlinearity

    def _init_activation(self) -> str:
        return self.__dict__.get("nonlinearity", "tanh")

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity}"

    def forward(self, x, h0=None):
        if self.nonlinearity not in ("tanh", "relu"):   # an attribute set after construction
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got "
                             f"{self.nonlinearity!r}")
        x = self._check_input(x)
        B, T, H = x.shape[0], x.shape[1], self.hidden_size
        h0 = self._state(h0, B, H, "state h0")
        row = self._time_signal_row(T)
        y = _rnn_sequence(self._project(x), self.weight_hh, h0, self.nonlinearity, row)
        self.last_time_signal = row if y.requires_grad else None
        return y, y[:, T - 1]


class LSTM(_RecurrentBase):
    """LSTM (Hochreiter & Schmidhuber 1997, with forget gate): gates (i, f, g, o) from
    x_t W_ih + b + h_{t-1} W_hh; the gate arithmetic is one fused native kernel.
    ``forget_bias`` (default 1) initialises the forget gate's bias so early training remembers.
    forward(x (B, T, in), state0=(h0, c0) or None) -> (outputs (B, T, H), (h_T, c_T))."""
    _kind = "lstm"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 forget_bias: float = 1.0, init=None, recurrent_init=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, init, recurrent_init, dtype)
        self.forget_bias = _check_float("LSTM", "forget_bias", forget_bias)
        if self.bias is not None:
            H = self.hidden_size
            self.bias._be.setitem_(self.bias.data, slice(H, 2 * H), self.forget_bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", forget_bias={self.forget_bias}"

    def forward(self, x, state0=None):
        x = self._check_input(x)
        B, T, H = x.shape[0], x.shape[1], self.hidden_size
        if state0 is None:
            h0 = self._state(None, B, H, "state h0")
            c0 = self._state(None, B, H, "state c0")
        else:
            if not (isinstance(state0, (tuple, list)) and len(state0) == 2):
                raise ValueError("LSTM: state0 must be a pair (h0, c0) of (batch, hidden_size) tensors")
            h0 = self._state(state0[0], B, H, "state h0")
            c0 = self._state(state0[1], B, H, "state c0")
        row = self._time_signal_row(T)
        y = _lstm_sequence(self._project(x), self.weight_hh, h0, c0, row)
        self.last_time_signal = row if y.requires_grad else None
        return y[:, :T], (y[:, T - 1], y[:, T])


class GRU(_RecurrentBase):
    """GRU (Cho et al. 2014) as in PyTorch: r, z from x_t W_ih + b + h W_hh + b_hh,
    n = tanh(x_t W_in + b_in + r·(h W_hn + b_hn)), h_t = (1 − z)·n + z·h_{t−1}; the gate
    arithmetic is one fused native kernel.
    forward(x (B, T, in), h0 (B, H) or None) -> (outputs (B, T, H), h_T (B, H))."""
    _kind = "gru"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, init=None,
                 recurrent_init=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, init, recurrent_init, dtype)
        if bias:
            k = 1.0 / math.sqrt(self.hidden_size)
            self.bias_hh = Parameter(np.zeros(3 * self.hidden_size, dtype=self.weight_hh.dtype))
            _init.uniform_(self.bias_hh, -k, k)
        else:
            self.bias_hh = None

    def forward(self, x, h0=None):
        x = self._check_input(x)
        B, T, H = x.shape[0], x.shape[1], self.hidden_size
        h0 = self._state(h0, B, H, "state h0")
        row = self._time_signal_row(T)
        y = _gru_sequence(self._project(x), self.weight_hh, self.bias_hh, h0, row)
        self.last_time_signal = row if y.requires_grad else None
        return y, y[:, T - 1]
