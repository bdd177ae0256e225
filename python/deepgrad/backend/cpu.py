"""The CPU backend: deepgrad's primitives over numpy arrays.

The interface, with each primitive's meaning, is ``backend/protocol.py`` (``Backend``);
``backend/cuda.py`` has the same names and signatures over ``deepgrad._C.CudaArray``, and
tests/backend/test_parity.py keeps the two in step. Here heavy kernels (gemm, dense layers,
activations, softmax, losses, layer norm, recurrent sequences, arena norms and optimizer steps)
are deepgrad's native C++ kernels (``deepgrad._C``); elementwise glue and batch norm are numpy.
"""
from __future__ import annotations

import numpy as np

from ..runtime import _C
from .. import random as _random

DEVICE = "cpu"
HOST_MEMORY = True        # arrays are numpy arrays: to_numpy returns the array itself
DLPACK_DEVICE = (1, 0)    # kDLCPU

# ---------------------------------------------------------------------------------------------
# creation and transfer


def from_numpy(a: np.ndarray, dtype=None) -> np.ndarray:
    """A new C-contiguous backend array holding a copy of numpy array ``a`` (cast to ``dtype``
    when given). int64 arrays (labels, indices) are kept as int64."""
    return np.array(a, dtype=dtype, order="C", copy=True)


def to_numpy(a: np.ndarray) -> np.ndarray:
    """The array's values as a numpy array on the host (here: the array itself, no copy)."""
    return a


def to_dlpack(a, stream=None, max_version=None, dl_device=None, copy=None):
    """numpy's DLPack capsule of ``a`` (shares memory unless ``copy=True``); ``stream`` is
    meaningless for CPU memory and ignored."""
    kw = {k: v for k, v in (("max_version", max_version), ("dl_device", dl_device),
                            ("copy", copy)) if v is not None}
    return a.__dlpack__(**kw)


def from_dlpack(x):
    """numpy's zero-copy import of CPU producer ``x`` (deepgrad.from_numpy then refuses strided
    or read-only memory, naming the copy to make)."""
    return np.from_dlpack(x)


def empty(shape: tuple, dtype) -> np.ndarray:
    """An uninitialised array of ``shape`` and ``dtype``."""
    return np.empty(shape, dtype=dtype)


def zeros(shape: tuple, dtype) -> np.ndarray:
    """An array of zeros."""
    return np.zeros(shape, dtype=dtype)


def full(shape: tuple, value: float, dtype) -> np.ndarray:
    """An array filled with ``value``."""
    return np.full(shape, value, dtype=dtype)


def copy(a: np.ndarray) -> np.ndarray:
    """A contiguous copy of ``a`` that the caller owns."""
    return np.array(a, order="C", copy=True)


def astype(a: np.ndarray, dtype) -> np.ndarray:
    """``a`` converted to ``dtype`` (a copy, or ``a`` itself when it already has that dtype)."""
    return a if a.dtype == dtype else a.astype(dtype)


def view(buf: np.ndarray, offset: int, shape: tuple) -> np.ndarray:
    """A view of prod(shape) elements of the flat array ``buf`` from ``offset``."""
    n = 1
    for d in shape:
        n *= int(d)
    return buf[offset:offset + n].reshape(shape)


def copy_(dst: np.ndarray, src: np.ndarray) -> None:
    """dst[...] = src in place (same shape; src may broadcast)."""
    np.copyto(dst, src)


def copy_from_host_(dst: np.ndarray, a) -> None:
    """dst[...] = a for a host value, cast to dst's dtype (numpy's unsafe casting)."""
    np.copyto(dst, a, casting="unsafe")


def add_(dst: np.ndarray, src: np.ndarray) -> None:
    """dst += src in place (same shape and dtype): gradient accumulation into leaf grads."""
    np.add(dst, src, out=dst)


def has_nonfinite(a: np.ndarray) -> bool:
    """True if a float array holds any NaN or Inf (anomaly mode)."""
    return bool(_C.has_nonfinite(a))


def item(a: np.ndarray) -> float:
    """The single value of a one-element array as a Python float."""
    return float(a.reshape(-1)[0])


# ---------------------------------------------------------------------------------------------
# elementwise, with numpy broadcasting; either operand of a binary op may be a Python scalar


def _arr(r):
    """Backend arrays are always ndarrays: numpy ufuncs return a numpy scalar when every operand
    is 0-d, which the native kernels (and Tensor.numpy()) must never see."""
    return r if r.__class__ is np.ndarray else np.asarray(r)


def add(a, b):
    """a + b."""
    return _arr(np.add(a, b))


def sub(a, b):
    """a - b."""
    return _arr(np.subtract(a, b))


def mul(a, b):
    """a * b."""
    return _arr(np.multiply(a, b))


def div(a, b):
    """a / b."""
    with np.errstate(all="ignore"):  # IEEE results (inf/nan) like PyTorch; no warnings
        return _arr(np.true_divide(a, b))


def pow(a, b):  # noqa: A001 - mirrors the operator name
    """a ** b."""
    with np.errstate(all="ignore"):  # IEEE results (inf/nan) like PyTorch; no warnings
        return _arr(np.power(a, b))


def maximum(a, b):
    """Elementwise max(a, b)."""
    return _arr(np.maximum(a, b))


def minimum(a, b):
    """Elementwise min(a, b)."""
    return _arr(np.minimum(a, b))


def _mask(m, like):
    dt = like.dtype if isinstance(like, np.ndarray) else np.float32
    return _arr(m.astype(dt))


def eq(a, b):
    """(a == b) as a float mask (1.0/0.0) in the dtype of ``a``."""
    return _mask(np.equal(a, b), a)


def ne(a, b):
    """(a != b) as a float mask."""
    return _mask(np.not_equal(a, b), a)


def lt(a, b):
    """(a < b) as a float mask."""
    return _mask(np.less(a, b), a)


def le(a, b):
    """(a <= b) as a float mask."""
    return _mask(np.less_equal(a, b), a)


def gt(a, b):
    """(a > b) as a float mask."""
    return _mask(np.greater(a, b), a)


def ge(a, b):
    """(a >= b) as a float mask."""
    return _mask(np.greater_equal(a, b), a)


def where(cond, a, b):
    """cond ? a : b elementwise with broadcasting; ``cond`` is a float mask (nonzero = true)."""
    return _arr(np.where(cond != 0, a, b))


def neg(a):
    """-a."""
    return _arr(np.negative(a))


def exp(a):
    """e ** a."""
    with np.errstate(all="ignore"):  # IEEE results (inf/nan) like PyTorch; no warnings
        return _arr(np.exp(a))


def log(a):
    """Natural logarithm."""
    with np.errstate(all="ignore"):  # IEEE results (inf/nan) like PyTorch; no warnings
        return _arr(np.log(a))


def sqrt(a):
    """Square root."""
    with np.errstate(all="ignore"):  # IEEE results (inf/nan) like PyTorch; no warnings
        return _arr(np.sqrt(a))


def abs(a):  # noqa: A001
    """|a|."""
    return _arr(np.abs(a))


def sign(a):
    """-1, 0 or 1 elementwise (the derivative of abs)."""
    return _arr(np.sign(a))


def clip(a, lo, hi):
    """a clamped to [lo, hi]; either bound may be None."""
    return _arr(np.clip(a, lo, hi))


# ---------------------------------------------------------------------------------------------
# activations (native)


def act_forward(x, activation: str, alpha: float = 0.01):
    """y = act(x) elementwise for a native activation name (identity, step, sigmoid, tanh, relu,
    leaky_relu, elu, selu, gelu, softplus, silu, softsign)."""
    return _C.act_forward(x, activation, alpha)


def act_backward(dy, z, y, activation: str, alpha: float = 0.01):
    """dz = dy * act'(z), given the input z and output y of act_forward."""
    return _C.act_backward(dy, z, y, activation, alpha)


# ---------------------------------------------------------------------------------------------
# reductions


def sum(a, axis=None, keepdims: bool = False):  # noqa: A001
    """Sum over ``axis`` (None = all, int or tuple), as an array (0-d for a full reduction)."""
    return np.asarray(np.sum(a, axis=axis, keepdims=keepdims))


def mean(a, axis=None, keepdims: bool = False):
    """Mean over ``axis`` (None = all, int or tuple)."""
    return np.asarray(np.mean(a, axis=axis, keepdims=keepdims))


def max(a, axis=None, keepdims: bool = False):  # noqa: A001
    """Maximum over ``axis`` (None = all, int or tuple)."""
    return np.asarray(np.max(a, axis=axis, keepdims=keepdims))


def argmax(a, axis=None):
    """Index of the maximum along ``axis`` as an int64 array (flat index when axis is None)."""
    return np.asarray(np.argmax(a, axis=axis))


def broadcast_to(a, shape: tuple):
    """``a`` broadcast to ``shape`` with numpy rules (may be a read-only view; the backward of
    sum/mean)."""
    return np.broadcast_to(a, shape)


def sum_to_shape(g, shape: tuple):
    """Reduce a broadcast gradient ``g`` back to ``shape`` by summing the broadcast axes (the
    backward of numpy broadcasting). Returns ``g`` itself when the shapes already match."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, n in enumerate(shape) if n == 1 and g.shape[i + lead] != 1)
    s = np.sum(g, axis=axes, keepdims=True) if axes else g
    return s.reshape(shape)


# ---------------------------------------------------------------------------------------------
# linear algebra and dense layers (native)


def matmul(a, b, trans_a: bool = False, trans_b: bool = False):
    """op(a) @ op(b) for 2-D arrays, op = transpose when the flag is set (native gemm)."""
    return _C.gemm(a, b, trans_a=trans_a, trans_b=trans_b)


def dense_forward(x, w, b, activation: str = "identity", alpha: float = 0.01,
                  keep_z: bool = False, stats=None):
    """Fused dense layer: z = x @ w + b, y = act(z). x (N, IN), w (IN, OUT), b (OUT,) or None.
    Returns (y, z); z is None when the activation's derivative needs only y, unless keep_z (the
    GEMM then writes z and the epilogue reads it: no extra pass). ``stats``: None or a layer
    statistics record (functional.LayerStats) whose forward slots the epilogue fills."""
    return _C.dense_forward(x, w, b, activation, alpha, keep_z, stats)


def dense_backward(dy, x, w, z, y, dw, db, activation: str = "identity", alpha: float = 0.01,
                   need_dx: bool = True, stats=None):
    """Backward of dense_forward: accumulates dw (IN, OUT) += x^T dz and db (OUT,) += sum(dz)
    in place (db may be None) and returns dx (N, IN), or None when need_dx is False. ``stats``:
    None or a layer statistics record that receives ||dy||^2."""
    return _C.dense_backward(dy, x, w, z, y, dw, db, activation, alpha, need_dx, stats)


def dense_chain_forward(x, ws, bs, activations, alphas, stats, keep_from: int = 0):
    """dense_forward through a chain of layers in one native call (lists with one entry per
    layer; bs entries may be None, stats entries None or a record): a list with (y, z) per
    layer from keep_from on, None before it (the last layer's entry is always there)."""
    return _C.dense_chain_forward(x, ws, bs, activations, alphas, stats, keep_from)


def dense_chain_backward(g, xs, ws, zs, ys, dws, dbs, activations, alphas, stats, k: int = 0,
                         need_dx: bool = True):
    """dense_backward from the chain's last layer down to layer k in one native call,
    accumulating into dws[i] and dbs[i]; returns layer k's dx (None when not need_dx)."""
    return _C.dense_chain_backward(g, xs, ws, zs, ys, dws, dbs, activations, alphas, stats, k,
                                   need_dx)


# ---------------------------------------------------------------------------------------------
# softmax (native, row-wise over the last axis of a 2-D array)


def softmax(x):
    """Row-wise softmax of a 2-D array."""
    return _C.softmax(x)


def log_softmax(x):
    """Row-wise log-softmax of a 2-D array."""
    return _C.log_softmax(x)


def softmax_backward(dy, y):
    """dx for y = softmax(x): y * (dy - sum(dy * y, row))."""
    return _C.softmax_backward(dy, y)


def log_softmax_backward(dy, y):
    """dx for y = log_softmax(x): dy - exp(y) * sum(dy, row)."""
    return _C.log_softmax_backward(dy, y)


# ---------------------------------------------------------------------------------------------
# losses (native)


def loss_forward(kind: str, pred, target, reduction: str):
    """Loss value. kind: mse, bce (pred = probabilities), bce_logits, cross_entropy (pred =
    logits (N, C), target = int64 labels (N,)). reduction: mean, sum (0-d array) or none
    (per-element for mse/bce, per-sample (N,) for cross_entropy)."""
    out = _C.loss_forward(kind, pred, target, reduction)
    return out if isinstance(out, np.ndarray) else np.asarray(out, dtype=pred.dtype)


def loss_backward(kind: str, pred, target, reduction: str, grad):
    """d loss / d pred, scaled by ``grad`` (a 0-d array for mean/sum, an array of the
    per-sample losses' shape for none)."""
    g = float(grad) if reduction != "none" else grad
    return _C.loss_backward(kind, pred, target, reduction, g)


# ---------------------------------------------------------------------------------------------
# normalisation (batch norm: numpy; layer norm: native, csrc/cpu/norm_layers.cpp)


def batch_norm_forward(x, gamma, beta, running_mean, running_var, training: bool,
                       momentum: float, eps: float):
    """Batch norm over axis 0 of x (N, C) -> (y, saved = (x, mean (C,)), inv_std (C,)); in
    training the running statistics are updated in place (PyTorch's rule)."""
    if training:
        n = x.shape[0]
        mu = x.mean(axis=0)
        xc = x - mu
        var = np.mean(xc * xc, axis=0)
        if running_mean is not None:
            running_mean *= 1.0 - momentum
            running_mean += momentum * mu
        if running_var is not None:
            running_var *= 1.0 - momentum
            running_var += momentum * var * (n / (n - 1))
    else:
        mu = np.array(running_mean, copy=True)   # the running stats may change before backward
        xc = x - mu
        var = running_var
    inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    xhat = xc * inv_std
    y = xhat * gamma if gamma is not None else xhat
    if beta is not None:
        y += beta
    return y, (x, mu), inv_std


def batch_norm_backward(dy, saved, inv_std, gamma, training: bool):
    """Backward of batch_norm_forward -> (dx, dgamma, dbeta)."""
    x, mu = saved
    xhat = (x - mu) * inv_std        # the forward's xhat, recomputed bit for bit
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    dxhat = dy * gamma if gamma is not None else dy
    if not training:
        return dxhat * inv_std, dgamma, dbeta
    n = dy.shape[0]
    dx = (inv_std / n) * (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    return dx.astype(dy.dtype, copy=False), dgamma, dbeta


def layer_norm_forward(x, gamma, beta, eps: float):
    """Layer norm over the last axis of x (..., D) (native; the CUDA kernels' formulas:
    statistics in float64, so a finite float32 row never overflows, and a row holding NaN/Inf,
    or a float64 row whose variance overflows, is NaN, not silent zeros); gamma/beta (D,) may be
    None. Returns (y, saved, inv_std); ``saved`` and inv_std are for layer_norm_backward."""
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    y, mean, inv_std = _C.layer_norm_forward(x2, gamma, beta, eps)
    return y.reshape(shape), (x2, mean), inv_std


def layer_norm_backward(dy, saved, inv_std, gamma):
    """Backward of layer_norm_forward: returns (dx, dgamma (D,), dbeta (D,))."""
    x2, mean = saved
    d = x2.shape[1]
    dgamma, dbeta = np.zeros(d, x2.dtype), np.zeros(d, x2.dtype)
    dx = _C.layer_norm_backward(dy.reshape(x2.shape), x2, gamma, mean, inv_std, dgamma, dbeta,
                                True)
    return dx.reshape(dy.shape), dgamma, dbeta


# ---------------------------------------------------------------------------------------------
# shape and indexing


def reshape(a, shape: tuple):
    """``a`` with a new shape (a view when possible; -1 infers one dimension)."""
    return np.reshape(a, shape)


def _contiguous(r):
    # np.ascontiguousarray would turn 0-d results into 1-d ones
    r = np.asarray(r)
    return r if r.flags.c_contiguous else np.ascontiguousarray(r)


def transpose(a, axes: tuple | None = None):
    """Axes permuted (reversed when None), as a contiguous array."""
    return _contiguous(np.transpose(a, axes))


def getitem(a, index):
    """a[index] with numpy semantics: basic slicing and integer-array (int64) indexing. ``index``
    holds ints, slices, None, Ellipsis and int64 arrays of this backend."""
    return _contiguous(a[index])


def index_add_(dst, index, values) -> None:
    """dst[index] += values in place, summing repeated indices (the backward of getitem)."""
    if _is_basic(index):
        dst[index] += values
    else:
        np.add.at(dst, index, values)


def setitem_(dst, index, values) -> None:
    """dst[index] = values in place (values: array or scalar, broadcast to the selection)."""
    dst[index] = values


def _is_basic(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    for i in items:
        if not (i is None or i is Ellipsis or isinstance(i, (int, slice))):
            return False
    return True


def concat(arrays: list, axis: int = 0):
    """Arrays joined along an existing axis."""
    return np.concatenate(arrays, axis=axis)


def stack(arrays: list, axis: int = 0):
    """Arrays of one shape joined along a new axis."""
    return np.stack(arrays, axis=axis)


def split(a, sizes: list, axis: int = 0) -> list:
    """``a`` cut along ``axis`` into contiguous pieces of the given sizes (sum(sizes) ==
    a.shape[axis]); the backward of concat."""
    bounds = np.cumsum(sizes)[:-1].tolist()
    return [np.ascontiguousarray(p) for p in np.split(a, bounds, axis=axis)]


# ---------------------------------------------------------------------------------------------
# random (all draws come from deepgrad.random's single seeded generator)


def normal(shape: tuple, mean: float, std: float, dtype):
    """Samples from N(mean, std^2)."""
    return (_random.generator().standard_normal(shape) * std + mean).astype(dtype)


def uniform(shape: tuple, low: float, high: float, dtype):
    """Samples from U[low, high)."""
    return _random.generator().uniform(low, high, shape).astype(dtype)


def bernoulli(shape: tuple, p: float, dtype):
    """A float mask of 1.0 with probability p, else 0.0 (dropout keep masks)."""
    return (_random.generator().random(shape) < p).astype(dtype)


# ---------------------------------------------------------------------------------------------
# arena helpers: one pass over a model's flat parameter/gradient buffers (native)


def segment_norms(buf, offsets):
    """Per-segment L2 norms of a flat buffer: offsets int64 (S+1,) with offsets[0] = 0 and
    offsets[-1] = buf.size. Returns (norms float64 numpy (S,), total norm float, number of
    non-finite values int). Deterministic."""
    return _C.segment_norms(buf, offsets)


def act_stats(z, y, saturation: int = 0, center: float = 0.0, bound: float = 0.0,
              dead: bool = False):
    """One pass over a layer's pre-activation z (N, C) and output y (N, C) (GradientMonitor):
    (sum z, sum z^2 in float64, count of |a - center| > bound with a = y for saturation=1 or z
    for saturation=2, number of columns with some y > 0 when dead)."""
    return _C.act_stats(z, y, saturation, center, bound, dead)


def act_stats_array(z, y, saturation: int = 0, center: float = 0.0, bound: float = 0.0,
                    dead: bool = False) -> np.ndarray:
    """act_stats as a float64 numpy array (4,) (the host's memory)."""
    return np.array(act_stats(z, y, saturation, center, bound, dead), dtype=np.float64)


def act_stats_many(items):
    """act_stats over a sequence of (z, y, saturation, center, bound, dead) tuples in one call
    (GradientMonitor: all layers of a step); a list of their results."""
    return _C.act_stats_many(items)


def _act_stats_rows(items):
    """act_stats over (z, y, saturation, center, bound, dead) tuples whose z and y are numpy
    arrays or borrowed DLPack capsules of C-contiguous CPU tensors (the torch monitor), each read
    as (elements / last dim, last dim): float64 (K, 6) rows [sum z, sum z^2, saturated count,
    live columns, elements, columns], in one native call."""
    return _C.act_stats_rows(items)


def l2_norms(arrays):
    """float64 (K,): the L2 norm of each of K float arrays (NaN where one holds NaN or Inf), in
    one native call (GradientMonitor's per-layer signal norms)."""
    return _C.l2_norms(arrays)


def tensors_param_norms(arrays, prev, diff: bool = False, snapshot: bool = False):
    """Parameters held as separate float arrays of one dtype (a torch model's, viewed through
    numpy): (||a|| per array, ||a - its segment of prev|| per array or None) in one native call;
    prev is one flat buffer of the total size, refreshed with the arrays' values when
    snapshot."""
    return _C.tensors_param_norms(arrays, prev, diff, snapshot)


def monitor_norms(params, grads, prev, offsets, diff: bool = False, snapshot: bool = False,
                  health: bool = False):
    """One pass over flat params/grads (and prev) per segment (GradientMonitor): (param norms,
    grad norms, ||params - prev|| norms or None, non-finite gradient count[, with health the
    gradient's (L-inf, non-finite count, first non-finite index) per segment]); prev[:] = params
    afterwards when snapshot."""
    return _C.monitor_norms(params, grads, prev, offsets, diff, snapshot, health)


# dst[i, at:...] = src[:, c0:c1] row by row (2-D float64), returns the next column: the
# GradientMonitor's history append, one native call instead of numpy slicing and assignment
rows_put = _C.rows_put
# a GradientMonitor step's row (step, loss, records, step statistics) in one native call
monitor_put = _C.monitor_put
# the GradientMonitor's history rows, and its common recorded step in one native call
MonitorRows = _C.MonitorRows


class _HostRing:
    """stat_ring on the host: records are computed when made (nothing to wait for)."""

    def __init__(self, slots: int, width: int):
        if int(slots) < 1 or int(width) < 0:
            raise ValueError(f"stat_ring: slots must be >= 1 and width >= 0, got {slots}, {width}")
        self.width = int(width)
        self.steps: list = []
        self.rows: list = []


def stat_ring(slots: int, width: int):
    """A ring of per-step records of ``width`` float64 statistics (see record_stats); on the
    host the records are kept as they are made."""
    return _HostRing(slots, width)


def record_stats(ring, step: int, health=(), values=()) -> None:
    """One record for ``step``: for each (col, buf, offsets) of ``health`` the segment_health rows
    (S, 7) of buf at columns [col, col + 7 S); for each (col, array) of ``values`` the array's
    values at [col, col + size); NaN elsewhere."""
    row = np.full(ring.width, np.nan)
    for col, buf, offsets in health:
        h = _C.segment_health(buf, offsets).reshape(-1)
        if col < 0 or col + h.size > ring.width:
            raise ValueError(f"record_stats: columns [{col}, {col + h.size}) are outside the "
                             f"ring's {ring.width}")
        row[col:col + h.size] = h
    for col, v in values:
        v = np.asarray(v, dtype=np.float64).reshape(-1)
        if col < 0 or col + v.size > ring.width:
            raise ValueError(f"record_stats: columns [{col}, {col + v.size}) are outside the "
                             f"ring's {ring.width}")
        row[col:col + v.size] = v
    ring.steps.append(int(step))
    ring.rows.append(row)


def read_stats(ring):
    """(steps int64 (m,), rows float64 (m, width)): every record since the last read."""
    steps, rows = ring.steps, ring.rows
    ring.steps, ring.rows = [], []
    return (np.array(steps, dtype=np.int64),
            np.array(rows, dtype=np.float64).reshape(len(rows), ring.width))


def tensors_health(arrays):
    """float64 (K, 7): segment_health's row for each of K float arrays, in one native call."""
    return _C.tensors_health(arrays)


def segment_health(buf, offsets):
    """float64 (S, 7) per segment of a flat buffer: L2, L-inf, min, max of the finite values,
    NaN count, Inf count, first non-finite index (-1), in one pass (tensor health)."""
    return _C.segment_health(buf, offsets)


def scale_(buf, factor: float) -> None:
    """buf *= factor in place (gradient-norm clipping)."""
    _C.scale_(buf, factor)


def clip_value_(buf, clip: float) -> None:
    """buf clamped to [-clip, clip] in place."""
    _C.clip_value_(buf, clip)


def fill_(buf, value: float) -> None:
    """buf[...] = value in place (zero_grad)."""
    _C.fill_(buf, value)


#: the optimizer steps fill step statistics (offsets=, stats=; see adam_step)
STEP_STATS = True


def sgd_step(param, grad, momentum_buf, lr, momentum, dampening, nesterov, weight_decay,
             first_step, offsets=None, stats=None) -> None:
    """One SGD update in place with PyTorch semantics (momentum_buf may be None when
    momentum == 0); offsets/stats: step statistics (see adam_step)."""
    _C.sgd_step(param, grad, momentum_buf, lr, momentum, dampening, nesterov, weight_decay,
                first_step, offsets, stats)


def adam_step(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled,
              offsets=None, stats=None) -> None:
    """One Adam (decoupled=False: L2 weight decay) or AdamW (decoupled=True) update in place;
    ``step`` counts from 1. With ``offsets`` (S+1 segment starts ending with the size) and
    ``stats`` (float64 (S, 8)), the same pass fills per segment: ||grad|| (NaN when it holds NaN
    or Inf), L-inf of its finite values, its non-finite count, the index of the first non-finite
    value (-1: none), ||param|| after the step, ||update||, and 1 (filled)."""
    _C.adam_step(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled,
                 offsets, stats)


def rmsprop_step(param, grad, square_avg, lr, alpha, eps, weight_decay, momentum, momentum_buf,
                 centered, grad_avg, offsets=None, stats=None) -> None:
    """One RMSprop update in place with PyTorch semantics (momentum_buf / grad_avg may be None
    when unused); offsets/stats: step statistics (see adam_step)."""
    _C.rmsprop_step(param, grad, square_avg, lr, alpha, eps, weight_decay, momentum,
                    momentum_buf, centered, grad_avg, offsets, stats)


# ---- fused recurrent cells (csrc/cpu/rnn.cpp) --------------------------------------------------

def lstm_cell_forward(gates: np.ndarray, c_prev: np.ndarray):
    """LSTM gate arithmetic: gates (B, 4H) pre-activations (i, f, g, o), c_prev (B, H) ->
    (h, c, saved gate activations); see deepgrad._C.lstm_cell_forward."""
    return _C.lstm_cell_forward(gates, c_prev)


def lstm_cell_backward(dh, dc, c_prev, c, act):
    """Gradients through one LSTM cell step (dh/dc may be None); see _C.lstm_cell_backward."""
    return _C.lstm_cell_backward(dh, dc, c_prev, c, act)


def lstm_sequence_forward(xw: np.ndarray, w: np.ndarray, h0: np.ndarray, c0: np.ndarray):
    """A whole LSTM recurrence in one native call: xw (T*B, 4H) time-major input projections,
    w (H, 4H), h0 and c0 (B, H) -> (y (B, T+1, H) = h_1 .. h_T then c_T, what the backward
    needs); see deepgrad._C.lstm_sequence_forward."""
    y, hs, cs, acts = _C.lstm_sequence_forward(xw, w, h0, c0)
    return y, (hs, cs, acts)


def lstm_sequence_backward(gy: np.ndarray, saved, w: np.ndarray, norms: bool = False):
    """gy = dL/dy (B, T+1, H) -> (dxw, dw, dh0, dc0, ||dL/dh_t|| per step or None)."""
    hs, cs, acts = saved
    return _C.lstm_sequence_backward(gy, hs, cs, acts, w, norms)


def rnn_sequence_forward(xw: np.ndarray, w: np.ndarray, h0: np.ndarray, activation: str):
    """A whole Elman recurrence in one native call: xw (T*B, H) time-major input projections,
    w (H, H), h0 (B, H) -> (y (B, T, H), what the backward needs)."""
    y, hs, zs = _C.rnn_sequence_forward(xw, w, h0, activation)
    return y, (hs, zs, activation)


def rnn_sequence_backward(gy: np.ndarray, saved, w: np.ndarray, norms: bool = False):
    """gy = dL/dy (B, T, H) -> (dxw, dw, dh0, ||dL/dh_t|| per step or None)."""
    hs, zs, activation = saved
    return _C.rnn_sequence_backward(gy, hs, zs, w, activation, norms)


def gru_sequence_forward(xw: np.ndarray, w: np.ndarray, bh, h0: np.ndarray):
    """A whole GRU recurrence in one native call: xw (T*B, 3H) = x W_ih + b_ih time-major,
    w (H, 3H), bh (3H,) or None, h0 (B, H) -> (y (B, T, H), what the backward needs)."""
    y, hs, acts = _C.gru_sequence_forward(xw, w, bh, h0)
    return y, (hs, acts, bh is not None)


def gru_sequence_backward(gy: np.ndarray, saved, w: np.ndarray, norms: bool = False):
    """gy = dL/dy (B, T, H) -> (dxw, dw, dbh or None, dh0, ||dL/dh_t|| per step or None)."""
    hs, acts, has_bh = saved
    return _C.gru_sequence_backward(gy, hs, acts, w, has_bh, norms)


def gru_cell_forward(xg: np.ndarray, hg: np.ndarray, h_prev: np.ndarray):
    """GRU gate arithmetic from the input (B, 3H) and hidden (B, 3H) projections and h_prev (B, H)."""
    return _C.gru_cell_forward(xg, hg, h_prev)


def gru_cell_backward(dh, h_prev, act):
    """Gradients through one GRU cell step; see _C.gru_cell_backward."""
    return _C.gru_cell_backward(dh, h_prev, act)
