"""Normalisation (batch norm, layer norm: csrc/cpu/norm_layers.cpp, csrc/cuda/norm_layers.cu
through the backend) and dropout. Each is one tape node."""
from __future__ import annotations

import numbers

import numpy as np

from ..autograd import record as _result
from ..tensor import Tensor, _device_mismatch, _dtype_mismatch, _not_tensor


def _params(op, x, **named):
    """x must be a Tensor; the Tensors among ``named`` (weight, bias) on x's device with x's
    dtype (a float64 weight would silently turn a float32 layer's output into float64)."""
    if not isinstance(x, Tensor):
        raise _not_tensor(op, x)
    for t in named.values():
        if isinstance(t, Tensor):
            if t._be is not x._be:
                raise _device_mismatch(op, x, t)
            if t.data.dtype != x.data.dtype:
                raise _dtype_mismatch(op, x, t)


def _number(op, name, v, lo, hi=None) -> None:
    """v must be a real number in [lo, hi] (a string or a negative eps gave numpy's errors,
    or NaN outputs, silently)."""
    if not isinstance(v, numbers.Real) or isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be a number, got {type(v).__name__} {v!r}")
    if not (v >= lo and (hi is None or v <= hi)) or v != v or v == float("inf"):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{op}: {name} must be a finite number {rng}, got {v!r}")


def _running(op, name, t, x, training) -> None:
    """A running statistic: a Tensor on x's device or (CPU) a numpy array, of x's dtype (a
    float64 one made the eval output float64), writable when training updates it (a read-only
    running_var failed after running_mean had been updated)."""
    if isinstance(t, Tensor):
        if t._be is not x._be:
            raise _device_mismatch(op, x, t)
        a = t.data
    elif isinstance(t, np.ndarray):
        a = t
    else:
        raise TypeError(f"{op}: {name} must be a Tensor (or a numpy array) that can be updated "
                        f"in place, got {type(t).__name__}")
    if a.dtype != x.data.dtype:
        raise TypeError(f"{op}: {name} has dtype {a.dtype} but x has {x.data.dtype}; convert "
                        f"one of them (.float() / .double(), or astype) so they match")
    if training and isinstance(a, np.ndarray) and not a.flags.writeable:
        raise ValueError(f"{op}: {name} is read-only, but training updates it in place; pass "
                         f"a writable copy, or training=False")


def _data(t):
    return None if t is None else (t.data if isinstance(t, Tensor) else t)


def batch_norm(x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None,
               running_mean=None, running_var=None, training: bool = True,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalisation of x (N, C) over the batch axis, one tape node. Training: batch
    statistics, and running_mean/running_var (C,) (Tensors or arrays, may be None) are updated
    in place; eval: the running statistics. weight/bias (C,) are the affine scale and shift."""
    _params("batch_norm", x, weight=weight, bias=bias)
    be = x._be
    if x.data.ndim != 2:
        raise ValueError(f"batch_norm: x must be (N, C), got shape {x.shape}")
    _number("batch_norm", "eps", eps, 0.0)
    _number("batch_norm", "momentum", momentum, 0.0, 1.0)
    for nm, t in (("running_mean", running_mean), ("running_var", running_var)):
        if t is not None:
            _running("batch_norm", nm, t, x, training)
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
    if training:   # the running statistics were updated in place: count it
        for t in (running_mean, running_var):
            if isinstance(t, Tensor):
                t._bump()
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
    _params("layer_norm", x, weight=weight, bias=bias)
    _number("layer_norm", "eps", eps, 0.0)
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
    if not isinstance(x, Tensor):
        raise _not_tensor("dropout", x)
    if not isinstance(p, numbers.Real) or isinstance(p, (bool, np.bool_)):
        raise TypeError(f"dropout: p must be a number in [0, 1], got {type(p).__name__} {p!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if x.data.dtype.kind != "f":
        raise TypeError(f"dropout: x is a {x.data.dtype} tensor; dropout scales values, so it "
                        f"needs float32 or float64 (convert with .float())")
    if not training or p == 0.0:
        return x
    be = x._be
    if p == 1.0:
        mask = be.zeros(x.data.shape, x.data.dtype)
    else:
        mask = be.mul(be.bernoulli(x.data.shape, 1.0 - p, x.data.dtype), 1.0 / (1.0 - p))
    return _result(be.mul(x.data, mask), be, (x,), lambda g: (be.mul(g, mask),), "dropout")
