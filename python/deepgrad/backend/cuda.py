"""The CUDA backend: backend/cpu.py's primitive set over ``deepgrad._C.CudaArray``.

Same names, signatures and meaning as backend/cpu.py: the interface is backend/protocol.py
(``Backend``), and tests/backend/test_parity.py and tests/cuda/test_backend_parity.py check both.
Arrays live in device memory and are C-contiguous; views (``reshape``, arena slices) share
storage, everything else (transpose, slicing, broadcast_to) materialises with one strided-copy
kernel. Glue ops (elementwise with broadcasting, reductions, copies, indexing) are deepgrad's own
kernels in csrc/cuda/{elementwise,reduce_ops,copy}.cu; the compute kernels (gemm, dense,
activations, softmax, losses, norms, optimizers) are csrc/cuda's, bound in bind_cuda_kernels.cpp.

Notes:
- Random draws (normal/uniform/bernoulli) come from deepgrad.random on the host and are copied
  to the device, so a seeded run gives the same numbers on both devices.
- Indexing with integer/boolean arrays computes flat element positions on the host (numpy) and
  gathers/scatters them on the device; repeated positions in index_add_ are summed in a fixed
  order (deterministic, no atomics).
- Passing a numpy array where a device array is expected raises ValueError naming both devices.
- act_stats, act_stats_many, l2_norms, tensors_health and tensors_param_norms have no CUDA
  kernels: they copy their inputs to the host and run the CPU kernels (a host synchronisation;
  results identical to the CPU backend's on the same values).
"""
from __future__ import annotations

import builtins
import math
import numbers

import numpy as np

from ..runtime import _C
from .. import random as _random

DEVICE = "cuda"
HOST_MEMORY = False       # arrays live in device memory; to_numpy copies
DLPACK_DEVICE = (2, 0)    # kDLCUDA
CudaArray = _C.CudaArray

_py_sum, _py_max = builtins.sum, builtins.max


# ---------------------------------------------------------------------------------------------
# helpers


def _is_scalar(x) -> bool:
    return isinstance(x, (numbers.Number, np.generic)) and not isinstance(x, (bool, np.bool_))


def _dev(x, fn: str, name: str = "argument"):
    """x itself when it is a device array; a clear error when it lives on the host."""
    if isinstance(x, CudaArray):
        return x
    if isinstance(x, np.ndarray):
        raise ValueError(f"{fn}: arrays are on different devices: {name} is on cpu (a numpy "
                         "array) but this op runs on cuda; move it with .to('cuda')")
    raise TypeError(f"{fn}: {name} must be a cuda array, got {type(x).__name__}")


def _strides(shape) -> list:
    st, s = [0] * len(shape), 1
    for d in range(len(shape) - 1, -1, -1):
        st[d] = s
        s *= int(shape[d])
    return st


def _bcast_strides(shape, to_shape, fn="broadcast_to") -> list:
    """Element strides that read an array of ``shape`` broadcast to ``to_shape``."""
    shape, to_shape = tuple(shape), tuple(to_shape)
    if len(shape) > len(to_shape):
        raise ValueError(f"{fn}: cannot broadcast shape {shape} to {to_shape}")
    lead = len(to_shape) - len(shape)
    st = _strides(shape)
    out = [0] * len(to_shape)
    for d, n in enumerate(shape):
        if n == to_shape[lead + d]:
            out[lead + d] = st[d] if n != 1 else 0
        elif n == 1:
            out[lead + d] = 0
        else:
            raise ValueError(f"{fn}: cannot broadcast shape {shape} to {to_shape}")
    return out


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _dtype_name(dtype) -> str:
    return np.dtype(dtype).name


# ---------------------------------------------------------------------------------------------
# creation and transfer


def from_numpy(a, dtype=None):
    """A new device array holding a copy of ``a`` (cast to ``dtype`` when given). A boolean
    array with no dtype is an index mask: it stays a host numpy array (getitem reads it)."""
    arr = np.asarray(a, dtype=dtype)
    if dtype is None and arr.dtype.kind == "b":
        return arr
    return CudaArray(np.asarray(arr, order="C"))  # (ascontiguousarray makes 0-d 1-d)


def to_numpy(a) -> np.ndarray:
    """The array's values copied to a numpy array on the host."""
    return _dev(a, "to_numpy", "a").numpy()


def empty(shape: tuple, dtype):
    """An uninitialised device array."""
    return CudaArray.empty(tuple(int(d) for d in shape), _dtype_name(dtype))


def zeros(shape: tuple, dtype):
    """A device array of zeros."""
    return CudaArray.zeros(tuple(int(d) for d in shape), _dtype_name(dtype))


def full(shape: tuple, value: float, dtype):
    """A device array filled with ``value``."""
    return empty(shape, dtype).fill_(float(value))


def copy(a):
    """A copy the caller owns."""
    return _dev(a, "copy", "a").copy()


def astype(a, dtype):
    """``a`` converted to ``dtype`` (``a`` itself when it already has that dtype)."""
    _dev(a, "astype", "a")
    return a if a.dtype == np.dtype(dtype) else a.astype(_dtype_name(dtype))


def view(buf, offset: int, shape: tuple):
    """A view of prod(shape) elements of the flat device array ``buf`` from ``offset``."""
    return _dev(buf, "view", "buf").view(int(offset), [int(d) for d in shape])


def copy_from_host_(dst, a) -> None:
    """dst[...] = a for a host value (uploaded in dst's dtype; broadcasts)."""
    copy_(dst, from_numpy(np.asarray(a), dtype=dst.dtype))


def copy_(dst, src) -> None:
    """dst[...] = src in place (src may broadcast, or be a scalar)."""
    _dev(dst, "copy_", "dst")
    if _is_scalar(src):
        dst.fill_(float(src))
        return
    _dev(src, "copy_", "src")
    if tuple(src.shape) == tuple(dst.shape):
        dst.copy_(src)
        return
    if src.dtype != dst.dtype:
        src = src.astype(dst.dtype.name)
    _C.cuda_strided_copy(dst, 0, _strides(dst.shape), src, 0,
                         _bcast_strides(src.shape, dst.shape, "copy_"), list(dst.shape), False)


def add_(dst, src) -> None:
    """dst += src in place (gradient accumulation)."""
    _C.cuda_binary("add", _dev(dst, "add_", "dst"), _dev(src, "add_", "src"), out=dst)


def has_nonfinite(a) -> bool:
    """True if a float array holds any NaN or Inf (anomaly mode)."""
    return bool(_C.cuda_has_nonfinite(_dev(a, "has_nonfinite", "a")))


def item(a) -> float:
    """The single value of a one-element array as a Python float."""
    return float(to_numpy(a).reshape(-1)[0])


# ---------------------------------------------------------------------------------------------
# elementwise


def _binary(op: str, a, b):
    if _is_scalar(b):
        return _C.cuda_binary_scalar(op, _dev(a, op, "a"), float(b), False)
    if _is_scalar(a):
        return _C.cuda_binary_scalar(op, _dev(b, op, "b"), float(a), True)
    return _C.cuda_binary(op, _dev(a, op, "a"), _dev(b, op, "b"))


def add(a, b):
    """a + b."""
    return _binary("add", a, b)


def sub(a, b):
    """a - b."""
    return _binary("sub", a, b)


def mul(a, b):
    """a * b."""
    return _binary("mul", a, b)


def div(a, b):
    """a / b."""
    return _binary("div", a, b)


def pow(a, b):  # noqa: A001
    """a ** b."""
    return _binary("pow", a, b)


def maximum(a, b):
    """Elementwise max(a, b)."""
    return _binary("maximum", a, b)


def minimum(a, b):
    """Elementwise min(a, b)."""
    return _binary("minimum", a, b)


def eq(a, b):
    """(a == b) as a 1/0 mask in the operands' dtype."""
    return _binary("eq", a, b)


def ne(a, b):
    """(a != b) as a mask."""
    return _binary("ne", a, b)


def lt(a, b):
    """(a < b) as a mask."""
    return _binary("lt", a, b)


def le(a, b):
    """(a <= b) as a mask."""
    return _binary("le", a, b)


def gt(a, b):
    """(a > b) as a mask."""
    return _binary("gt", a, b)


def ge(a, b):
    """(a >= b) as a mask."""
    return _binary("ge", a, b)


def where(cond, a, b):
    """cond ? a : b elementwise with broadcasting (cond: nonzero = true)."""
    cond = _dev(cond, "where", "cond")
    like = a if isinstance(a, CudaArray) else b
    dt = like.dtype if isinstance(like, CudaArray) else cond.dtype
    if _is_scalar(a):
        a = full((), a, dt)
    if _is_scalar(b):
        b = full((), b, dt)
    a, b = _dev(a, "where", "a"), _dev(b, "where", "b")
    if cond.dtype != a.dtype:
        cond = cond.astype(a.dtype.name)
    return _C.cuda_where(cond, a, b)


def _unary(op, a, p0=0.0, p1=0.0):
    return _C.cuda_unary(op, _dev(a, op, "a"), p0, p1)


def neg(a):
    """-a."""
    return _unary("neg", a)


def exp(a):
    """e ** a."""
    return _unary("exp", a)


def log(a):
    """Natural logarithm."""
    return _unary("log", a)


def sqrt(a):
    """Square root."""
    return _unary("sqrt", a)


def abs(a):  # noqa: A001
    """|a|."""
    return _unary("abs", a)


def sign(a):
    """-1, 0 or 1 elementwise."""
    return _unary("sign", a)


def clip(a, lo, hi):
    """a clamped to [lo, hi]; either bound may be None."""
    return _unary("clip", a, -math.inf if lo is None else float(lo),
                  math.inf if hi is None else float(hi))


# ---------------------------------------------------------------------------------------------
# activations


def act_forward(x, activation: str, alpha: float = 0.01):
    """y = act(x) elementwise."""
    return _C.cuda_act_forward(_dev(x, "act_forward", "x"), activation, alpha)


def act_backward(dy, z, y, activation: str, alpha: float = 0.01):
    """dz = dy * act'(z)."""
    return _C.cuda_act_backward(dy, z, y, activation, alpha)


# ---------------------------------------------------------------------------------------------
# reductions


def _axis(axis):
    if axis is None or isinstance(axis, int):
        return axis
    return tuple(int(a) for a in axis)


def sum(a, axis=None, keepdims: bool = False):  # noqa: A001
    """Sum over ``axis`` (None = all, int or tuple)."""
    return _C.cuda_reduce("sum", _dev(a, "sum", "a"), _axis(axis), keepdims)


def mean(a, axis=None, keepdims: bool = False):
    """Mean over ``axis``."""
    return _C.cuda_reduce("mean", _dev(a, "mean", "a"), _axis(axis), keepdims)


def max(a, axis=None, keepdims: bool = False):  # noqa: A001
    """Maximum over ``axis``."""
    return _C.cuda_reduce("max", _dev(a, "max", "a"), _axis(axis), keepdims)


def argmax(a, axis=None):
    """Index of the maximum along ``axis`` as int64 (flat index when axis is None)."""
    return _C.cuda_reduce("argmax", _dev(a, "argmax", "a"), _axis(axis), False)


def broadcast_to(a, shape: tuple):
    """``a`` broadcast to ``shape`` (materialised on the device)."""
    _dev(a, "broadcast_to", "a")
    shape = tuple(int(d) for d in shape)
    if tuple(a.shape) == shape:
        return a
    st = _bcast_strides(a.shape, shape)
    out = empty(shape, a.dtype)
    _C.cuda_strided_copy(out, 0, _strides(shape), a, 0, st, list(shape), False)
    return out


def sum_to_shape(g, shape: tuple):
    """Reduce a broadcast gradient back to ``shape`` by summing the broadcast axes."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, n in enumerate(shape) if n == 1 and g.shape[i + lead] != 1)
    s = sum(g, axis=axes, keepdims=True) if axes else g
    return reshape(s, shape)


# ---------------------------------------------------------------------------------------------
# linear algebra and dense layers (csrc/cuda/gemm.cu, dense.cu)


def matmul(a, b, trans_a: bool = False, trans_b: bool = False):
    """op(a) @ op(b) for 2-D arrays."""
    return _C.cuda_gemm(_dev(a, "matmul", "a"), _dev(b, "matmul", "b"),
                        trans_a=trans_a, trans_b=trans_b)


def _no_stats(stats, fn: str) -> None:
    if stats is not None:
        raise NotImplementedError(
            f"{fn}: layer statistics records (stats=) are filled by the CPU kernels only; on "
            "CUDA the GradientMonitor takes the statistics through module hooks (pass stats=None)")


def dense_forward(x, w, b, activation: str = "identity", alpha: float = 0.01,
                  keep_z: bool = False, stats=None):
    """Fused dense layer; returns (y, z or None); z also when keep_z (the epilogue writes it)."""
    _no_stats(stats, "dense_forward")
    return _C.cuda_dense_forward(_dev(x, "dense_forward", "x"), _dev(w, "dense_forward", "w"),
                                 b, activation, alpha, keep_z)


def dense_backward(dy, x, w, z, y, dw, db, activation: str = "identity", alpha: float = 0.01,
                   need_dx: bool = True, stats=None):
    """Accumulates dw, db in place; returns dx or None."""
    _no_stats(stats, "dense_backward")
    return _C.cuda_dense_backward(dy, x, w, z, y, dw, db, activation, alpha, need_dx)


def dense_chain_forward(x, ws, bs, activations, alphas, stats, keep_from: int = 0):
    """dense_forward layer by layer (the CPU backend makes the same calls in one native call):
    (y, z) per layer from keep_from on and for the last layer, None before it."""
    out, h, n = [], x, len(ws)
    for i in range(n):
        yz = dense_forward(h, ws[i], bs[i], activations[i], alphas[i], False, stats[i])
        h = yz[0]
        out.append(yz if i >= keep_from or i == n - 1 else None)
    return out


def dense_chain_backward(g, xs, ws, zs, ys, dws, dbs, activations, alphas, stats, k: int = 0,
                         need_dx: bool = True):
    """dense_backward from the last layer down to layer k; returns layer k's dx or None."""
    for i in range(len(ws) - 1, k - 1, -1):
        g = dense_backward(g, xs[i], ws[i], zs[i], ys[i], dws[i], dbs[i], activations[i],
                           alphas[i], i > k or need_dx, stats[i])
    return g


# ---------------------------------------------------------------------------------------------
# softmax


def softmax(x):
    """Row-wise softmax of a 2-D array."""
    return _C.cuda_softmax(_dev(x, "softmax", "x"))


def log_softmax(x):
    """Row-wise log-softmax of a 2-D array."""
    return _C.cuda_log_softmax(_dev(x, "log_softmax", "x"))


def softmax_backward(dy, y):
    """dx for y = softmax(x)."""
    return _C.cuda_softmax_backward(dy, y)


def log_softmax_backward(dy, y):
    """dx for y = log_softmax(x)."""
    return _C.cuda_log_softmax_backward(dy, y)


# ---------------------------------------------------------------------------------------------
# losses


def loss_forward(kind: str, pred, target, reduction: str):
    """Loss value: a 0-d array for mean/sum, per-element/per-sample array for none. Nothing
    waits for the device: ops/loss.py checked the labels on the host before they came here."""
    return _C.cuda_loss_forward(kind, _dev(pred, "loss_forward", "pred"),
                                _dev(target, "loss_forward", "target"), reduction, False)


def loss_backward(kind: str, pred, target, reduction: str, grad):
    """d loss / d pred scaled by ``grad`` (for mean/sum a number, or a one-element device array
    that the kernel reads on the device: no host round trip)."""
    if _is_scalar(grad):
        grad = float(grad)
    elif reduction != "none" and grad.dtype != np.float32:
        grad = astype(grad, np.float32)
    return _C.cuda_loss_backward(kind, pred, target, reduction, grad)


# ---------------------------------------------------------------------------------------------
# normalisation (csrc/cuda/norm_layers.cu): saved = (x, mean), as on the CPU


def batch_norm_forward(x, gamma, beta, running_mean, running_var, training: bool,
                       momentum: float, eps: float):
    """Batch norm over axis 0 of x (N, C); returns (y, saved = (x, mean (C,)), inv_std (C,))."""
    y, mu, inv_std = _C.cuda_batch_norm_forward(_dev(x, "batch_norm", "x"), gamma, beta,
                                                running_mean, running_var, training,
                                                momentum, eps)
    return y, (x, mu), inv_std


def batch_norm_backward(dy, saved, inv_std, gamma, training: bool):
    """Returns (dx, dgamma, dbeta)."""
    x, mu = saved
    c = x.shape[1]
    dgamma, dbeta = zeros((c,), x.dtype), zeros((c,), x.dtype)
    dx = _C.cuda_batch_norm_backward(dy, x, gamma, mu, inv_std, dgamma, dbeta, training, True)
    return dx, dgamma, dbeta


def layer_norm_forward(x, gamma, beta, eps: float):
    """Layer norm over the last axis of x (..., D); returns (y, saved, inv_std)."""
    _dev(x, "layer_norm", "x")
    shape = tuple(x.shape)
    x2 = x.reshape((_numel(shape[:-1]), shape[-1]))
    y, mu, inv_std = _C.cuda_layer_norm_forward(x2, gamma, beta, eps)
    return y.reshape(shape), (x2, mu), inv_std


def layer_norm_backward(dy, saved, inv_std, gamma):
    """Returns (dx, dgamma (D,), dbeta (D,))."""
    x2, mu = saved
    d = x2.shape[1]
    dgamma, dbeta = zeros((d,), x2.dtype), zeros((d,), x2.dtype)
    shape = tuple(dy.shape)
    dx = _C.cuda_layer_norm_backward(dy.reshape(tuple(x2.shape)), x2, gamma, mu, inv_std,
                                     dgamma, dbeta, True)
    return dx.reshape(shape), dgamma, dbeta


# ---------------------------------------------------------------------------------------------
# fused recurrent cells (csrc/cuda/rnn.cu) with the signatures of deepgrad._C's CPU cells;
# nn/rnn.py calls them for recurrent layers on cuda


def lstm_cell_forward(gates, c_prev):
    """gates (B, 4H) pre-activations (i, f, g, o), c_prev (B, H) -> (h, c, act (B, 4H))."""
    return _C.cuda_lstm_cell_forward(_dev(gates, "lstm_cell_forward", "gates"),
                                     _dev(c_prev, "lstm_cell_forward", "c_prev"))


def lstm_cell_backward(dh, dc, c_prev, c, act):
    """dh, dc (B, H) or None (zero) -> (dgates (B, 4H), dc_prev (B, H))."""
    fn = "lstm_cell_backward"
    return _C.cuda_lstm_cell_backward(None if dh is None else _dev(dh, fn, "dh"),
                                      None if dc is None else _dev(dc, fn, "dc"),
                                      _dev(c_prev, fn, "c_prev"), _dev(c, fn, "c"),
                                      _dev(act, fn, "act"))


def gru_cell_forward(xg, hg, h_prev):
    """xg, hg (B, 3H) in order (r, z, n), h_prev (B, H) -> (h (B, H), act (B, 4H))."""
    fn = "gru_cell_forward"
    return _C.cuda_gru_cell_forward(_dev(xg, fn, "xg"), _dev(hg, fn, "hg"),
                                    _dev(h_prev, fn, "h_prev"))


def gru_cell_backward(dh, h_prev, act):
    """dh (B, H) -> (dxg (B, 3H), dhg (B, 3H), dh_prev (B, H) the direct part z*dh)."""
    fn = "gru_cell_backward"
    return _C.cuda_gru_cell_backward(_dev(dh, fn, "dh"), _dev(h_prev, fn, "h_prev"),
                                     _dev(act, fn, "act"))


def _norms(n):
    """The backward's ||dL/dh_t|| (a float64 device array) as float64 numpy, or None: the CPU
    entries' meaning (one device-to-host read, only when they were asked for)."""
    return None if n is None else n.numpy()


def lstm_sequence_forward(xw, w, h0, c0):
    """A whole LSTM recurrence in one native call (csrc/cuda/rnn.cu): xw (T*B, 4H) time-major
    input projections, w (H, 4H), h0 and c0 (B, H) -> (y (B, T+1, H) = h_1 .. h_T then c_T, what
    the backward needs)."""
    fn = "lstm_sequence_forward"
    y, hs, cs, acts = _C.cuda_lstm_sequence_forward(_dev(xw, fn, "xw"), _dev(w, fn, "w"),
                                                    _dev(h0, fn, "h0"), _dev(c0, fn, "c0"))
    return y, (hs, cs, acts)


def lstm_sequence_backward(gy, saved, w, norms: bool = False):
    """gy = dL/dy (B, T+1, H) -> (dxw (T*B, 4H), dw (H, 4H), dh0, dc0, ||dL/dh_t|| per step
    (float64 numpy) or None), in one native call."""
    hs, cs, acts = saved
    dxw, dw, dh0, dc0, n = _C.cuda_lstm_sequence_backward(
        _dev(gy, "lstm_sequence_backward", "gy"), hs, cs, acts, w, norms)
    return dxw, dw, dh0, dc0, _norms(n)


def rnn_sequence_forward(xw, w, h0, activation: str):
    """A whole Elman recurrence in one native call: xw (T*B, H), w (H, H), h0 (B, H) ->
    (y (B, T, H), what the backward needs)."""
    fn = "rnn_sequence_forward"
    y, hs, zs = _C.cuda_rnn_sequence_forward(_dev(xw, fn, "xw"), _dev(w, fn, "w"),
                                             _dev(h0, fn, "h0"), activation)
    return y, (hs, zs, activation)


def rnn_sequence_backward(gy, saved, w, norms: bool = False):
    """gy (B, T, H) -> (dxw (T*B, H), dw (H, H), dh0, ||dL/dh_t|| per step or None)."""
    hs, zs, activation = saved
    dxw, dw, dh0, n = _C.cuda_rnn_sequence_backward(_dev(gy, "rnn_sequence_backward", "gy"), hs,
                                                    zs, w, activation, norms)
    return dxw, dw, dh0, _norms(n)


def gru_sequence_forward(xw, w, bh, h0):
    """A whole GRU recurrence in one native call: xw (T*B, 3H), w (H, 3H), bh (3H,) or None,
    h0 (B, H) -> (y (B, T, H), what the backward needs)."""
    fn = "gru_sequence_forward"
    y, hs, acts = _C.cuda_gru_sequence_forward(_dev(xw, fn, "xw"), _dev(w, fn, "w"),
                                               None if bh is None else _dev(bh, fn, "bh"),
                                               _dev(h0, fn, "h0"))
    return y, (hs, acts, bh is not None)


def gru_sequence_backward(gy, saved, w, norms: bool = False):
    """gy (B, T, H) -> (dxw (T*B, 3H), dw (H, 3H), dbh or None, dh0, norms or None)."""
    hs, acts, has_bh = saved
    dxw, dw, dbh, dh0, n = _C.cuda_gru_sequence_backward(
        _dev(gy, "gru_sequence_backward", "gy"), hs, acts, w, has_bh, norms)
    return dxw, dw, dbh, dh0, _norms(n)


# ---------------------------------------------------------------------------------------------
# shape and indexing


def reshape(a, shape: tuple):
    """``a`` with a new shape (always a view; -1 infers one dimension)."""
    _dev(a, "reshape", "a")
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    shape = [int(d) for d in shape]
    if shape.count(-1) > 1:
        raise ValueError("reshape: can only specify one unknown dimension")
    if -1 in shape:
        known = _numel([d for d in shape if d != -1])
        if known == 0 or a.size % known:
            raise ValueError(f"reshape: cannot reshape array of size {a.size} into shape "
                             f"{tuple(shape)}")
        shape[shape.index(-1)] = a.size // known
    if _numel(shape) != a.size:
        raise ValueError(f"reshape: cannot reshape array of size {a.size} into shape "
                         f"{tuple(shape)}")
    return a.reshape(tuple(shape))


def transpose(a, axes: tuple | None = None):
    """Axes permuted (reversed when None), as a contiguous array."""
    _dev(a, "transpose", "a")
    nd = a.ndim
    axes = tuple(range(nd - 1, -1, -1)) if axes is None else tuple(int(x) % nd if nd else 0
                                                                       for x in axes)
    if sorted(axes) != list(range(nd)):
        raise ValueError(f"transpose: axes {axes} are not a permutation of {nd} dims")
    st = _strides(a.shape)
    shape = tuple(a.shape[d] for d in axes)
    out = empty(shape, a.dtype)
    _C.cuda_strided_copy(out, 0, _strides(shape), a, 0, [st[d] for d in axes], list(shape),
                         False)
    return out


def _host_items(index) -> tuple:
    items = index if isinstance(index, tuple) else (index,)
    out = []
    for i in items:
        if isinstance(i, CudaArray):
            i = i.numpy()
        out.append(i)
    return tuple(out)


def _is_basic(items) -> bool:
    return all(i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice))
               for i in items)


def _basic_view(shape, items):
    """(offset, out shape, strides) in elements for a basic index into a C-contiguous array."""
    n_real = _py_sum(1 for i in items if i is not None and i is not Ellipsis)
    if n_real > len(shape):
        raise IndexError(f"too many indices for array: array is {len(shape)}-dimensional, but "
                         f"{n_real} were indexed")
    if _py_sum(1 for i in items if i is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    k = next((j for j, i in enumerate(items) if i is Ellipsis), None)
    fill = (slice(None),) * (len(shape) - n_real)
    items = tuple(items) + fill if k is None else tuple(items[:k]) + fill + tuple(items[k + 1:])
    st = _strides(shape)
    off, out_shape, out_st, d = 0, [], [], 0
    for i in items:
        if i is None:
            out_shape.append(1)
            out_st.append(0)
            continue
        n = int(shape[d])
        if isinstance(i, slice):
            start, stop, step = i.indices(n)
            length = len(range(start, stop, step))
            off += start * st[d] if length else 0
            out_shape.append(length)
            out_st.append(st[d] * step)
        else:
            j = int(i)
            if not -n <= j < n:
                raise IndexError(f"index {j} is out of bounds for axis {d} with size {n}")
            off += (j % n) * st[d]
        d += 1
    return off, tuple(out_shape), out_st


def _positions(shape, items) -> np.ndarray:
    """Flat element positions selected by an advanced (array) index, with numpy semantics:
    the index is applied to per-axis coordinate grids that are broadcast views (no copy of the
    array's size is made)."""
    st = _strides(shape)
    pos = None
    for d, n in enumerate(shape):
        grid = np.arange(n, dtype=np.int64).reshape((1,) * d + (n,) + (1,) * (len(shape) - d - 1))
        sel = np.broadcast_to(grid, shape)[items] * st[d]
        pos = sel if pos is None else pos + sel
    if pos is None:  # 0-d array
        pos = np.zeros((), dtype=np.int64)[items]
    return np.asarray(pos, dtype=np.int64)


def getitem(a, index):
    """a[index] with numpy semantics (ints, slices, None, Ellipsis, int64/bool arrays)."""
    _dev(a, "getitem", "a")
    items = _host_items(index)
    if _is_basic(items):
        off, shape, st = _basic_view(tuple(a.shape), items)
        out = empty(shape, a.dtype)
        if _numel(shape):
            _C.cuda_strided_copy(out, 0, _strides(shape), a, off, st, list(shape), False)
        return out
    pos = _positions(tuple(a.shape), items)
    return _C.cuda_gather_flat(a, pos.reshape(-1), list(pos.shape))


def _values_like(values, shape, dtype, fn):
    if _is_scalar(values):
        return full(shape, values, dtype)
    values = _dev(values, fn, "values")
    if values.dtype != np.dtype(dtype):
        values = values.astype(np.dtype(dtype).name)
    return broadcast_to(values, shape)


def index_add_(dst, index, values) -> None:
    """dst[index] += values in place, summing repeated indices (deterministic)."""
    _dev(dst, "index_add_", "dst")
    items = _host_items(index)
    if _is_basic(items):
        off, shape, st = _basic_view(tuple(dst.shape), items)
        if _is_scalar(values):
            values = full((), values, dst.dtype)
        values = _dev(values, "index_add_", "values")
        _C.cuda_strided_copy(dst, off, st, values, 0, _bcast_strides(values.shape, shape,
                                                                      "index_add_"),
                             list(shape), True)
        return
    pos = _positions(tuple(dst.shape), items)
    v = _values_like(values, pos.shape, dst.dtype, "index_add_")
    _C.cuda_scatter_flat(dst, pos.reshape(-1), v.reshape((v.size,)), True)


def setitem_(dst, index, values) -> None:
    """dst[index] = values in place (values: array or scalar, broadcast to the selection)."""
    _dev(dst, "setitem_", "dst")
    items = _host_items(index)
    if _is_basic(items):
        off, shape, st = _basic_view(tuple(dst.shape), items)
        if _is_scalar(values):
            values = full((), values, dst.dtype)
        values = _dev(values, "setitem_", "values")
        if values.dtype != dst.dtype:
            values = values.astype(dst.dtype.name)
        _C.cuda_strided_copy(dst, off, st, values, 0, _bcast_strides(values.shape, shape,
                                                                      "setitem_"),
                             list(shape), False)
        return
    pos = _positions(tuple(dst.shape), items)
    v = _values_like(values, pos.shape, dst.dtype, "setitem_")
    _C.cuda_scatter_flat(dst, pos.reshape(-1), v.reshape((v.size,)), False)


def concat(arrays: list, axis: int = 0):
    """Arrays joined along an existing axis."""
    arrays = [_dev(x, "concat", f"arrays[{i}]") for i, x in enumerate(arrays)]
    if not arrays:
        raise ValueError("concat: need at least one array")
    first = arrays[0]
    nd = first.ndim
    if nd == 0:
        raise ValueError("concat: zero-dimensional arrays cannot be concatenated")
    ax = axis % nd
    for i, x in enumerate(arrays):
        if x.ndim != nd or any(x.shape[d] != first.shape[d] for d in range(nd) if d != ax):
            raise ValueError(f"concat: arrays[{i}] has shape {tuple(x.shape)} but arrays[0] has "
                             f"{tuple(first.shape)}; all but axis {ax} must match")
        if x.dtype != first.dtype:
            raise TypeError(f"concat: arrays[{i}] has dtype {x.dtype} but arrays[0] has "
                            f"{first.dtype}")
    shape = list(first.shape)
    shape[ax] = _py_sum(x.shape[ax] for x in arrays)
    out = empty(tuple(shape), first.dtype)
    ost = _strides(shape)
    start = 0
    for x in arrays:
        if x.size:
            _C.cuda_strided_copy(out, start * ost[ax], ost, x, 0, _strides(x.shape),
                                 list(x.shape), False)
        start += x.shape[ax]
    return out


def stack(arrays: list, axis: int = 0):
    """Arrays of one shape joined along a new axis."""
    arrays = [_dev(x, "stack", f"arrays[{i}]") for i, x in enumerate(arrays)]
    if not arrays:
        raise ValueError("stack: need at least one array")
    shape = tuple(arrays[0].shape)
    for i, x in enumerate(arrays):
        if tuple(x.shape) != shape:
            raise ValueError(f"stack: arrays[{i}] has shape {tuple(x.shape)} but arrays[0] has "
                             f"{shape}; all must match")
    ax = axis % (len(shape) + 1)
    new = shape[:ax] + (1,) + shape[ax:]
    return concat([x.reshape(new) for x in arrays], axis=ax)


def split(a, sizes: list, axis: int = 0) -> list:
    """``a`` cut along ``axis`` into contiguous pieces of the given sizes."""
    _dev(a, "split", "a")
    ax = axis % a.ndim
    if _py_sum(sizes) != a.shape[ax]:
        raise ValueError(f"split: sizes {list(sizes)} do not add up to {a.shape[ax]}")
    st = _strides(a.shape)
    out, start = [], 0
    for s in sizes:
        shape = list(a.shape)
        shape[ax] = int(s)
        piece = empty(tuple(shape), a.dtype)
        if piece.size:
            _C.cuda_strided_copy(piece, 0, _strides(shape), a, start * st[ax], st, shape, False)
        out.append(piece)
        start += int(s)
    return out


# ---------------------------------------------------------------------------------------------
# random: drawn on the host from deepgrad.random, then copied to the device


def normal(shape: tuple, mean: float, std: float, dtype):
    """Samples from N(mean, std^2)."""
    return from_numpy((_random.generator().standard_normal(shape) * std + mean).astype(dtype))


def uniform(shape: tuple, low: float, high: float, dtype):
    """Samples from U[low, high)."""
    return from_numpy(_random.generator().uniform(low, high, shape).astype(dtype))


def bernoulli(shape: tuple, p: float, dtype):
    """A 1.0/0.0 mask with P(1) = p."""
    return from_numpy((_random.generator().random(shape) < p).astype(dtype))


# ---------------------------------------------------------------------------------------------
# arena helpers (csrc/cuda/norms.cu, optim.cu)


def segment_norms(buf, offsets):
    """(per-segment norms float64 numpy (S,), total norm, non-finite count); deterministic."""
    return _C.cuda_segment_norms(_dev(buf, "segment_norms", "buf"), np.asarray(offsets))


def segment_health(buf, offsets):
    """float64 numpy (S, 7) per segment of a flat float32/float64 buffer: L2, L-inf, min, max of
    the finite values, NaN count, Inf count, first non-finite index (-1), in one pass (tensor
    health; csrc/cuda/health.cu, deterministic). Returns to the host: one synchronisation."""
    return _C.cuda_segment_health(_dev(buf, "segment_health", "buf"), np.asarray(offsets))


def monitor_norms(params, grads, prev, offsets, diff: bool = False, snapshot: bool = False,
                  health: bool = False):
    """The CPU entry's meaning on the device (GradientMonitor): (param norms, grad norms,
    ||params - prev|| norms or None, non-finite gradient count[, with health the gradient's
    (L-inf, non-finite count, first non-finite index) per segment]) as host values; prev[:] =
    params afterwards when snapshot. The health kernel over each buffer, one synchronisation."""
    fn = "monitor_norms"
    return _C.cuda_monitor_norms(_dev(params, fn, "params"), _dev(grads, fn, "grads"),
                                 None if prev is None else _dev(prev, fn, "prev"),
                                 np.asarray(offsets), diff, snapshot, health)


# Per-step statistics without a host synchronisation (csrc/cuda/ring.cu): a device ring of
# K slots x W float64 values; each record is written by kernels into the next slot, full rings
# are copied to pinned host memory asynchronously, and only reading waits for the device.


def stat_ring(slots: int, width: int):
    """A device ring of ``slots`` records of ``width`` float64 statistics (_C.CudaStatRing).
    A record that finds every slot holding an uncopied record first enqueues their copy to the
    host, so ``slots`` is also the copy period."""
    return _C.CudaStatRing(int(slots), int(width))


def record_stats(ring, step: int, health=(), values=()) -> None:
    """One per-step record into ``ring``, one native call and no host synchronisation: for each
    ``(col, buf, offsets)`` of ``health`` the segment_health rows (S, 7) of ``buf`` at columns
    [col, col + 7 S), for each ``(col, [arrays])`` one such row per array (e.g. every layer's
    dL/d(output), in one pair of launches per 64 arrays) at [col, col + 7 K); for each ``(col, array)`` of ``values`` the array's values (e.g. the 0-d
    loss) at [col, col + size): a device array is copied on the device, a number or numpy array
    is kept on the host and joins its row when read. Columns the record does not write hold
    NaN."""
    ring.record(int(step), tuple(health), tuple(values))


def read_stats(ring):
    """(steps int64 (m,), rows float64 (m, width)): every record since the last read, oldest
    first; waits for the device once."""
    return ring.read()


def scale_(buf, factor: float) -> None:
    """buf *= factor in place."""
    _C.cuda_scale_(_dev(buf, "scale_", "buf"), float(factor))


def clip_value_(buf, clip: float) -> None:
    """buf clamped to [-clip, clip] in place."""
    _C.cuda_clip_value_(_dev(buf, "clip_value_", "buf"), float(clip))


def fill_(buf, value: float) -> None:
    """buf[...] = value in place."""
    _dev(buf, "fill_", "buf").fill_(float(value))


#: the optimizer steps do not fill step statistics on CUDA (the monitor reads the arena)
STEP_STATS = False


def _no_step_stats(stats, fn: str) -> None:
    if stats is not None:
        raise NotImplementedError(f"{fn}: step statistics (offsets=, stats=) are filled by the "
                                  "CPU kernels only; pass offsets=None, stats=None")


def sgd_step(param, grad, momentum_buf, lr, momentum, dampening, nesterov, weight_decay,
             first_step, offsets=None, stats=None) -> None:
    """One SGD update in place (PyTorch semantics)."""
    _no_step_stats(stats, "sgd_step")
    _C.cuda_sgd_step(param, grad, momentum_buf, lr, momentum, dampening, nesterov, weight_decay,
                     first_step)


def adam_step(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled,
              offsets=None, stats=None) -> None:
    """One Adam / AdamW update in place."""
    _no_step_stats(stats, "adam_step")
    _C.cuda_adam_step(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled)


def rmsprop_step(param, grad, square_avg, lr, alpha, eps, weight_decay, momentum, momentum_buf,
                 centered, grad_avg, offsets=None, stats=None) -> None:
    """One RMSprop update in place (PyTorch semantics)."""
    _no_step_stats(stats, "rmsprop_step")
    _C.cuda_rmsprop_step(param, grad, square_avg, lr, alpha, eps, weight_decay, momentum,
                         momentum_buf, centered, grad_avg)


# ---------------------------------------------------------------------------------------------
# statistics without CUDA kernels (activation statistics, parameter norms of separate arrays):
# the values go through the host and the CPU kernels (the same results as backend/cpu.py on the
# same values; each call synchronises). segment_health, monitor_norms and tensors_health have
# CUDA kernels (csrc/cuda/health.cu).


def _host(a):
    return None if a is None else _dev(a, "statistics", "array").numpy()


def act_stats_array(z, y, saturation: int = 0, center: float = 0.0, bound: float = 0.0,
                     dead: bool = False):
    """act_stats left on the device: a float64 device array (4,) = [sum z, sum z^2, saturated
    count, live columns], two launches and no host synchronisation (the monitor puts it in its
    ring)."""
    fn = "act_stats"
    return _C.cuda_act_stats(_dev(z, fn, "z"), None if y is None else _dev(y, fn, "y"),
                             int(saturation), float(center), float(bound), bool(dead))


def act_stats(z, y, saturation: int = 0, center: float = 0.0, bound: float = 0.0,
              dead: bool = False):
    """(sum z, sum z^2, saturated count, live columns) of a layer: the CUDA kernel, then one
    read of its four values."""
    s, q, sat, alive = act_stats_array(z, y, saturation, center, bound, dead).numpy().tolist()
    return s, q, int(sat), int(alive)


def act_stats_many(items):
    """act_stats over (z, y, saturation, center, bound, dead) tuples."""
    return [act_stats(*it) for it in items]


def l2_norms(arrays):
    """float64 (K,): the L2 norm of each array (computed on the host)."""
    return _C.l2_norms([_host(a) for a in arrays])


def tensors_health(arrays):
    """float64 (K, 7): the health row of each array, from the CUDA health kernel
    (csrc/cuda/health.cu: one pair of launches per 64 arrays of a dtype, one synchronisation
    per dtype present)."""
    arrays = [_dev(a, "tensors_health", f"arrays[{i}]") for i, a in enumerate(arrays)]
    out = np.empty((len(arrays), 7))
    for dt in {a.dtype for a in arrays}:
        idx = [i for i, a in enumerate(arrays) if a.dtype == dt]
        out[idx] = _C.cuda_tensors_health([arrays[i] for i in idx])
    return out


def _tensors_health_at(ptrs, sizes, dtype: str):
    """tensors_health over device addresses of another framework's contiguous tensors of one
    dtype ('float32' or 'float64'), e.g. torch's t.data_ptr() and t.numel(), which the caller
    keeps alive: float64 (K, 7), one synchronisation. Each address is checked to be device
    memory of deepgrad's device (_C.cuda_tensors_health_at); ~0.5 us a tensor in Python where
    a DLPack export and import cost ~8 us."""
    return _C.cuda_tensors_health_at(list(ptrs), list(sizes), dtype)


def _act_stats_at(items):
    """act_stats of layers of another framework given as device addresses: items (z_ptr,
    y_ptr, rows, cols, dtype, saturation, center, bound, dead) of contiguous tensors the caller
    keeps alive; float64 (K, 4), one synchronisation (_C.cuda_act_stats_at)."""
    return _C.cuda_act_stats_at(list(items))


def tensors_param_norms(arrays, prev, diff: bool = False, snapshot: bool = False):
    """(||a|| per array, ||a - prev segment|| or None); computed on the host, prev (a device
    buffer) refreshed from the arrays when snapshot."""
    host = [_host(a) for a in arrays]
    hprev = None if prev is None else np.array(_host(prev))
    pn, dn = _C.tensors_param_norms(host, hprev, diff, snapshot)
    if snapshot and prev is not None:
        copy_from_host_(prev, hprev)
    return pn, dn


# ---------------------------------------------------------------------------------------------
# DLPack (bindings/bind_cuda_dlpack.cpp; the protocol's argument rules in backend/dlpack.py)


def to_dlpack(a, stream=None, max_version=None, dl_device=None, copy=None):
    """A DLPack capsule sharing ``a``'s device memory (a fresh copy's with ``copy=True``); the
    consumer's ``stream`` is made to wait for deepgrad's pending work (an event, no host sync)."""
    from .dlpack import export_args
    kw = export_args(DLPACK_DEVICE, stream, max_version, dl_device, copy)
    if kw.pop("copy"):
        a = a.copy()
    return _C.cuda_to_dlpack(_dev(a, "__dlpack__", "array"), **kw)


def from_dlpack(x):
    """A device array sharing the CUDA memory of DLPack producer ``x`` (zero copy); the
    producer's deleter runs when the last deepgrad view of it is dropped. ``x`` may also be a
    capsule the caller already asked for (then the caller has ordered the streams)."""
    if type(x).__name__ == "PyCapsule":
        return _C.cuda_from_dlpack(x)
    from .dlpack import request_capsule
    return _C.cuda_from_dlpack(request_capsule(x))
