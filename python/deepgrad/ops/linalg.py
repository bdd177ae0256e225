"""Linear algebra: matmul and the @ operators (csrc/cpu/gemm.cpp, csrc/cuda/gemm.cu through the
backend), and the fused dense layer y = act(x W + b), the MLP's hot path (csrc/cpu/dense.cpp,
csrc/cuda/dense.cu), with its layer statistics record."""
from __future__ import annotations

import numbers
from functools import partial as _partial

import numpy as np

from ..autograd import _S, grad_sink
from ..autograd import record as _result
from ..tensor import Tensor, _device_mismatch, _operand
from .activation import _ACT_SET, _DEFAULT_ALPHA, _kernel_dtype, activation_name
from .common import _same


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product of 1-D or 2-D tensors (native gemm); 1-D operands are treated as a row
    (left) or a column (right) vector and that axis is dropped from the result."""
    be = _same("matmul", (a, b))
    if a.data.ndim == 1:
        r = matmul(a.reshape(1, -1), b)
        return r.reshape(-1) if r.data.ndim == 2 else r.reshape(())
    if b.data.ndim == 1:
        return matmul(a, b.reshape(-1, 1)).reshape(-1)
    if a.data.ndim != 2 or b.data.ndim != 2:
        raise ValueError(f"matmul: only 1-D and 2-D tensors are supported, got shapes "
                         f"{a.shape} and {b.shape}")
    if a.data.shape[1] != b.data.shape[0]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned: "
                         f"{a.data.shape[1]} (dim 1) != {b.data.shape[0]} (dim 0)")
    ad, bd = a.data, b.data

    def backward(g):
        return (be.matmul(g, bd, False, True) if a.requires_grad else None,
                be.matmul(ad, g, True, False) if b.requires_grad else None)
    try:
        out = be.matmul(ad, bd)
    except TypeError as e:
        raise _kernel_dtype("matmul", a, e) from None
    return _result(out, be, (a, b), backward, "matmul", (a, b))


def matmul_method(self, other):
    if not isinstance(other, Tensor):
        other = _operand("matmul", self, other)
        if not isinstance(other, Tensor):
            raise TypeError("matmul: the other operand must be a tensor or an array")
    return matmul(self, other)


def rmatmul_method(self, other):
    o = _operand("matmul", self, other)
    if not isinstance(o, Tensor):
        raise TypeError("matmul: the other operand must be a tensor or an array")
    return matmul(o, self)


# ---------------------------------------------------------------------------------------------
# the fused dense layer



def _dense_backward(x, w, b, xd, wd, bd, z, y, activation, alpha, be, stats, g):
    """The dense node's backward, bound to its saved values with functools.partial (no closure
    cells in dense's body, which runs once per layer per step). ``stats``: None or the layer
    statistics record of the forward, which receives ||dL/dy||^2."""
    dw, w_direct = grad_sink(w, wd, be)
    db, b_direct = (None, True) if b is None else grad_sink(b, bd, be)
    if stats is None:
        dx = be.dense_backward(g, xd, wd, z, y, dw, db, activation, alpha, x.requires_grad)
    else:
        dx = be.dense_backward(g, xd, wd, z, y, dw, db, activation, alpha, x.requires_grad,
                               stats)
    if b is None:
        return dx, None if w_direct else dw
    return dx, None if w_direct else dw, None if b_direct else db


class LayerStats:
    """The slots of a layer statistics record: a float64 array of ``SIZE`` elements that the
    fused dense kernels fill while they already hold the data (``F.dense(..., stats=record)``),
    so per-layer gradient monitoring costs no extra pass over the data and no Python per layer.

    Request slots (written by the caller, see ``layer_record``): WANT_FORWARD, SAT_MODE (0: no
    saturation count, 1: count |y - CENTER| > BOUND, 2: count |z - CENTER| > BOUND), CENTER,
    BOUND, DEAD (count the output columns with some y > 0). Each recorded forward overwrites
    ELEMENTS (N*C), COLUMNS, SUM and SUM_SQ of the pre-activation z (float64 sums), SATURATED,
    ALIVE and adds 1 to FWD_COUNT; each backward overwrites SIGNAL_SQ (||dL/dy||^2, NaN when dL/dy
    holds NaN or Inf) and adds 1 to BWD_COUNT. A reader tells fresh values from stale ones by the
    counts. READERS is left to the readers (the GradientMonitors sharing the record count
    themselves there). The same layout is csrc/deepgrad/layer_stats.h."""
    WANT_FORWARD, SAT_MODE, CENTER, BOUND, DEAD = 0, 1, 2, 3, 4
    FWD_COUNT, ELEMENTS, COLUMNS, SUM, SUM_SQ, SATURATED, ALIVE = 5, 6, 7, 8, 9, 10, 11
    BWD_COUNT, SIGNAL_SQ = 12, 13
    READERS = 14
    SIZE = 16


def layer_record(forward: bool = True, saturation: int = 0, center: float = 0.0,
                 bound: float = 0.0, dead: bool = False, out: np.ndarray | None = None):
    """A fresh layer statistics record (see LayerStats), or ``out`` (a float64 array of
    LayerStats.SIZE elements, e.g. a row of a matrix holding one record per layer) set up as
    one. ``forward``: fill the forward slots (else only the backward signal)."""
    rec = np.zeros(LayerStats.SIZE) if out is None else out
    if rec.dtype != np.float64 or rec.shape != (LayerStats.SIZE,):
        raise ValueError(f"layer_record: out must be a float64 array of shape "
                         f"({LayerStats.SIZE},), got {rec.dtype} {rec.shape}")
    if saturation not in (0, 1, 2):
        raise ValueError(f"layer_record: saturation must be 0, 1 or 2, got {saturation!r}")
    rec[:] = 0.0
    rec[:5] = (1.0 if forward else 0.0, saturation, center, bound, 1.0 if dead else 0.0)
    return rec


def dense(x: Tensor, w: Tensor, b: Tensor | None = None, activation: str = "identity",
          alpha: float | None = None, *, stats: np.ndarray | None = None) -> Tensor:
    """y = act(x @ w + b) as ONE tape node on the native fused kernels.
    x (N, IN), w (IN, OUT), b (OUT,) or None; ``activation`` is an activation name, ``alpha``
    the leaky_relu slope (default 0.01) or elu scale (default 1.0). ``stats``: None or a layer
    statistics record (``layer_record()``, see LayerStats) that a forward recording a tape node
    fills with the pre-activation's sums and the saturated and alive counts, and its backward
    with ||dL/dy||^2, inside the same kernel calls (CPU tensors)."""
    if activation not in _ACT_SET:
        activation = activation_name(activation)
    if alpha is None:
        alpha = _DEFAULT_ALPHA.get(activation, 0.01)
    try:   # the checks of w and b's types run only once this fails (the hot path)
        if not isinstance(x, Tensor):
            x = Tensor(x, dtype=w.dtype, device=w.device)
        be = x._be
        if w._be is not be or (b is not None and b._be is not be):
            raise _device_mismatch("dense", x, w if w._be is not be else b)
    except AttributeError:
        bad = w if not isinstance(w, Tensor) else b
        raise TypeError(f"dense: w and b must be deepgrad Tensors (parameters), got "
                        f"{type(bad).__name__}; wrap them with deepgrad.tensor(...)") from None
    xd, wd = x.data, w.data
    bd = None if b is None else b.data
    record = _S.grad_enabled and (x.requires_grad or w.requires_grad or
                                  (b is not None and b.requires_grad))
    try:
        if stats is None or not record:
            y, z = be.dense_forward(xd, wd, bd, activation, alpha)
            stats = None
        else:
            y, z = be.dense_forward(xd, wd, bd, activation, alpha, False, stats)
    except TypeError as e:
        if not isinstance(alpha, numbers.Real) or isinstance(alpha, (bool, np.bool_)):
            raise TypeError(f"dense: alpha must be a real number, got {type(alpha).__name__} "
                            f"{alpha!r}") from None
        raise _kernel_dtype("dense", x if x.data.dtype.kind != "f" else w, e) from None
    if not record:
        return _result(y, be, (), None, "dense")
    return _result(y, be, (x, w) if b is None else (x, w, b),
                   _partial(_dense_backward, x, w, b, xd, wd, bd, z, y, activation, alpha, be,
                            stats), "dense", (x, w), out=True)


def _dense_stack_backward(x, ws, bs, xds, wds, bds, zs, ys, acts, alphas, stats, k, slots, nin,
                          be, g):
    """The backward of dense_stack's node: every layer's gradient sink (grad_sink: the
    parameter's .grad storage, or a fresh buffer returned to the engine), then the backend's
    chain backward from the last layer down to layer k (the first one a gradient is needed
    for), the calls the per-layer nodes would make, in their order. slots[i]: where layer i's
    weight and bias gradients go in the returned tuple (their positions in the node's inputs)."""
    n = len(ws)
    dws, dbs = [None] * n, [None] * n
    out = [None] * nin
    for i in range(k, n):
        dw, w_direct = grad_sink(ws[i], wds[i], be)
        dws[i] = dw
        wpos, bpos = slots[i]
        if not w_direct:
            out[wpos] = dw
        b = bs[i]
        if b is not None:
            db, b_direct = grad_sink(b, bds[i], be)
            dbs[i] = db
            if not b_direct:
                out[bpos] = db
    dx = be.dense_chain_backward(g, xds, wds, zs, ys, dws, dbs, acts, alphas, stats, k,
                                 x.requires_grad)
    if x.requires_grad:
        out[0] = dx
    return tuple(out)


def dense_stack(x: Tensor, ws: list, bs: list, acts: list, alphas: list, stats: list) -> Tensor:
    """A chain of fused dense layers h_{i+1} = act_i(h_i W_i + b_i), h_0 = x, as ONE tape node:
    the same native calls, in the same order, as one dense() per layer (the same values and
    gradients, bit for bit, and each layer's statistics record filled alike), without a node,
    a module call and a Python backward per layer (nn.Sequential runs its runs of Dense layers
    through it; the CPU backend runs the chain in one native call each way). The caller has
    checked what dense() would: Tensors on one device and of one dtype, x (N, IN_0) with N > 0,
    W_i (IN_i, OUT_i) with OUT_i = IN_{i+1}, activation names and alphas normalized;
    ``stats[i]``: None or layer i's record (see dense)."""
    be = x._be
    n = len(ws)
    k = n  # the first layer whose input or parameters require grad (its backward is needed)
    if _S.grad_enabled:
        if x.requires_grad:
            k = 0
        else:
            for i in range(n):
                b = bs[i]
                if ws[i].requires_grad or (b is not None and b.requires_grad):
                    k = i
                    break
    wds = [w.data for w in ws]
    bds = [None if b is None else b.data for b in bs]
    if k:  # layers before k are not recorded: no statistics, as dense() does for them
        stats = [st if i >= k else None for i, st in enumerate(stats)]
    # layer k's input is layer k - 1's output: keep from there
    outs = be.dense_chain_forward(x.data, wds, bds, acts, alphas, stats, max(k - 1, 0))
    h = outs[-1][0]
    if k == n:
        return _result(h, be, (), None, "dense_stack")
    xds = [None] * n
    zs = [None] * n
    ys = [None] * n
    for i in range(k, n):
        xds[i] = x.data if i == 0 else outs[i - 1][0]
        ys[i], zs[i] = outs[i]
    inputs, slots = [x], [None] * k
    for i in range(k, n):
        inputs.append(ws[i])
        wpos = len(inputs) - 1
        bpos = None
        if bs[i] is not None:
            inputs.append(bs[i])
            bpos = len(inputs) - 1
        slots.append((wpos, bpos))
    saved = ([x] if k == 0 else []) + list(ws[k:])
    return _result(h, be, tuple(inputs),
                   _partial(_dense_stack_backward, x, ws, bs, xds, wds, bds, zs, ys, acts,
                            alphas, stats, k, slots, len(inputs), be),
                   "dense_stack", tuple(saved), out=True)


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """x @ w + b (dense without an activation)."""
    return dense(x, w, b, "identity")
