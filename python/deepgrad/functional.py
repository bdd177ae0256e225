"""deepgrad.functional: activations, softmax, the fused dense layer, normalisation and dropout.
Each function is one tape node backed by a native kernel (batch norm: numpy on the CPU)."""
from __future__ import annotations

from functools import partial as _partial

import numpy as np

from .autograd import _S, grad_sink
from .tensor import Tensor, _axis, _result, _device_mismatch, _not_tensor
from .tensor import concat, matmul, maximum, minimum, stack, where  # noqa: F401 (re-exported)

ACTIVATIONS = ("identity", "step", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu",
               "gelu", "softplus", "silu", "softsign")
_ACT_SET = frozenset(ACTIVATIONS)
_ALIASES = {"swish": "silu", "linear": "identity", "none": "identity", None: "identity"}
_DEFAULT_ALPHA = {"leaky_relu": 0.01, "elu": 1.0}


def activation_name(name) -> str:
    """The native name for an activation spec ("relu", "swish" -> "silu", None -> "identity");
    ValueError listing the choices for an unknown one."""
    n = _ALIASES.get(name.lower() if isinstance(name, str) else name,
                     name.lower() if isinstance(name, str) else name)
    if n not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)} "
                         f"(or 'swish', or None for identity)")
    return n


def activation(x: Tensor, name: str, alpha: float | None = None) -> Tensor:
    """act(x) elementwise for any activation name, as one tape node (``alpha``: leaky_relu slope,
    default 0.01; elu scale, default 1.0)."""
    name = activation_name(name)
    return _act(x, name, _DEFAULT_ALPHA.get(name, 0.01) if alpha is None else float(alpha))


def _act(x: Tensor, name: str, alpha: float) -> Tensor:
    try:
        be = x._be
    except AttributeError:
        raise _not_tensor(name, x) from None
    xd = x.data
    y = be.act_forward(xd, name, alpha)
    return _result(y, be, (x,), lambda g: (be.act_backward(g, xd, y, name, alpha),), name, (x,))


def identity(x: Tensor) -> Tensor:
    """x itself (recorded, so hooks on the output see dL/dx)."""
    return _act(x, "identity", 0.01)


def step(x: Tensor) -> Tensor:
    """Heaviside step: 1 where x > 0 else 0 (zero gradient: the perceptron's output)."""
    return _act(x, "step", 0.01)


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x))."""
    return _act(x, "sigmoid", 0.01)


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return _act(x, "tanh", 0.01)


def relu(x: Tensor) -> Tensor:
    """max(x, 0)."""
    return _act(x, "relu", 0.01)


def leaky_relu(x: Tensor, alpha: float = 0.01) -> Tensor:
    """x where x > 0, else alpha * x."""
    return _act(x, "leaky_relu", float(alpha))


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """x where x > 0, else alpha * (exp(x) - 1)."""
    return _act(x, "elu", float(alpha))


def selu(x: Tensor) -> Tensor:
    """Scaled ELU with the self-normalising constants."""
    return _act(x, "selu", 0.01)


def gelu(x: Tensor) -> Tensor:
    """Gaussian error linear unit."""
    return _act(x, "gelu", 0.01)


def softplus(x: Tensor) -> Tensor:
    """log(1 + exp(x)), computed stably."""
    return _act(x, "softplus", 0.01)


def silu(x: Tensor) -> Tensor:
    """x * sigmoid(x) (a.k.a. swish)."""
    return _act(x, "silu", 0.01)


swish = silu


def softsign(x: Tensor) -> Tensor:
    """x / (1 + |x|)."""
    return _act(x, "softsign", 0.01)


# ---------------------------------------------------------------------------------------------
# softmax


def _rowwise(x: Tensor, axis: int, fwd, bwd, name: str) -> Tensor:
    be = x._be
    nd = x.data.ndim
    ax = _axis(name, axis, nd)
    if nd == 0:  # one element (PyTorch): the op over a (1,) row
        return _rowwise(x.reshape(1), 0, fwd, bwd, name).reshape(())
    perm = None if ax == nd - 1 else tuple(i for i in range(nd) if i != ax) + (ax,)
    xd = x.data if perm is None else be.transpose(x.data, perm)
    shape = xd.shape
    y = be.reshape(fwd(be.reshape(xd, (-1, shape[-1]))), shape)
    inv = None if perm is None else tuple(sorted(range(nd), key=lambda i: perm[i]))

    def backward(g):
        gd = g if perm is None else be.transpose(g, perm)
        dx = be.reshape(bwd(be.reshape(gd, (-1, shape[-1])), be.reshape(y, (-1, shape[-1]))),
                        shape)
        return (dx if inv is None else be.transpose(dx, inv),)
    out = y if inv is None else be.transpose(y, inv)
    return _result(out, be, (x,), backward, name)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``axis`` (default: last)."""
    if not isinstance(x, Tensor):
        raise _not_tensor("softmax", x)
    be = x._be
    return _rowwise(x, axis, be.softmax, be.softmax_backward, "softmax")


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x - logsumexp(x) along ``axis``, computed stably."""
    if not isinstance(x, Tensor):
        raise _not_tensor("log_softmax", x)
    be = x._be
    return _rowwise(x, axis, be.log_softmax, be.log_softmax_backward, "log_softmax")


# ---------------------------------------------------------------------------------------------
# the fused dense layer: the hot path of every MLP


def _dense_backward(x, w, b, xd, wd, bd, z, y, activation, alpha, be, stats, g):
    """The dense node's backward, bound to its saved values with functools.partial (no closure
    cells in dense's body, which runs once per layer per step). ``stats``: None or the layer
    statistics record of the forward, which receives ||dL/dy||^2."""
    dw, w_direct = grad_sink(w, wd, be)
    if b is None:
        dx = be.dense_backward(g, xd, wd, z, y, dw, None, activation, alpha, x.requires_grad,
                               stats)
        return dx, None if w_direct else dw
    db, b_direct = grad_sink(b, bd, be)
    dx = be.dense_backward(g, xd, wd, z, y, dw, db, activation, alpha, x.requires_grad, stats)
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
    if not isinstance(x, Tensor):
        x = Tensor(x, dtype=w.dtype, device=w.device)
    be = x._be
    if w._be is not be or (b is not None and b._be is not be):
        raise _device_mismatch("dense", x, w if w._be is not be else b)
    xd, wd = x.data, w.data
    bd = None if b is None else b.data
    record = _S.grad_enabled and (x.requires_grad or w.requires_grad or
                                  (b is not None and b.requires_grad))
    if stats is None or not record:
        y, z = be.dense_forward(xd, wd, bd, activation, alpha)
        stats = None
    else:
        y, z = be.dense_forward(xd, wd, bd, activation, alpha, False, stats)
    if not record:
        return _result(y, be, (), None, "dense")
    return _result(y, be, (x, w) if b is None else (x, w, b),
                   _partial(_dense_backward, x, w, b, xd, wd, bd, z, y, activation, alpha, be,
                            stats), "dense", (x, w))


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """x @ w + b (dense without an activation)."""
    return dense(x, w, b, "identity")


# ---------------------------------------------------------------------------------------------
# normalisation and dropout


def _data(t):
    return None if t is None else (t.data if isinstance(t, Tensor) else t)


def batch_norm(x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None,
               running_mean=None, running_var=None, training: bool = True,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalisation of x (N, C) over the batch axis, one tape node. Training: batch
    statistics, and running_mean/running_var (C,) (Tensors or arrays, may be None) are updated
    in place; eval: the running statistics. weight/bias (C,) are the affine scale and shift."""
    be = x._be
    if x.data.ndim != 2:
        raise ValueError(f"batch_norm: x must be (N, C), got shape {x.shape}")
    n, c = x.data.shape
    for nm, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                  ("running_var", running_var)):
        if t is not None and tuple(_data(t).shape) != (c,):
            raise ValueError(f"batch_norm: {nm} has shape {tuple(_data(t).shape)} but x has "
                             f"{c} features")
    if training and n < 2:
        raise ValueError(f"batch_norm: training needs more than one sample per feature to "
                         f"estimate the batch variance, got x of shape {x.shape}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: eval mode needs running_mean and running_var")
    gd = _data(weight)
    y, saved, inv_std = be.batch_norm_forward(x.data, gd, _data(bias), _data(running_mean),
                                              _data(running_var), training, momentum, eps)
    ins = tuple(t for t in (x, weight, bias) if t is not None)

    def backward(g):
        dx, dgamma, dbeta = be.batch_norm_backward(g, saved, inv_std, gd, training)
        res = [dx if x.requires_grad else None]
        if weight is not None:
            res.append(dgamma)
        if bias is not None:
            res.append(dbeta)
        return tuple(res)
    # the backward reads x and weight (the backends save x and the mean, not x-hat)
    return _result(y, be, ins, backward, "batch_norm", (x, weight) if weight is not None else (x,))


def layer_norm(x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Layer normalisation over the last axis of x (..., D), one tape node; weight/bias (D,)."""
    be = x._be
    d = x.data.shape[-1] if x.data.ndim else 0
    if x.data.ndim == 0 or d == 0:
        raise ValueError(f"layer_norm: x must have a non-empty last axis, got shape {x.shape}")
    for nm, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.data.shape) != (d,):
            raise ValueError(f"layer_norm: {nm} has shape {t.shape} but x's last axis is {d}")
    gd = _data(weight)
    y, saved, inv_std = be.layer_norm_forward(x.data, gd, _data(bias), eps)
    ins = tuple(t for t in (x, weight, bias) if t is not None)

    def backward(g):
        dx, dgamma, dbeta = be.layer_norm_backward(g, saved, inv_std, gd)
        res = [dx if x.requires_grad else None]
        if weight is not None:
            res.append(dgamma)
        if bias is not None:
            res.append(dbeta)
        return tuple(res)
    return _result(y, be, ins, backward, "layer_norm", (x, weight) if weight is not None else (x,))


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Inverted dropout: zero each element with probability p and scale the rest by 1/(1-p)
    in training; the identity in eval. Masks come from deepgrad.random."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    be = x._be
    if p == 1.0:
        mask = be.zeros(x.data.shape, x.data.dtype)
    else:
        mask = be.mul(be.bernoulli(x.data.shape, 1.0 - p, x.data.dtype), 1.0 / (1.0 - p))
    return _result(be.mul(x.data, mask), be, (x,), lambda g: (be.mul(g, mask),), "dropout")


# Tensor methods that are ops of this module, bound here so that tensor.py (the data type) does
# not import the ops: t.sigmoid(), t.tanh(), t.relu().
Tensor.sigmoid = sigmoid
Tensor.tanh = tanh
Tensor.relu = relu
