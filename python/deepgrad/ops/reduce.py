"""Reductions: sum, mean, max, argmax over axes (csrc/cpu/reduce.cpp, csrc/cuda/reduce_ops.cu
through the backend). Bound onto Tensor in ops/__init__.py."""
from __future__ import annotations

import numpy as np

from ..autograd import record as _result
from ..tensor import Tensor, _axis, _keep_shape, _new, _reduce_axes  # noqa: F401


def _keepdims(keepdims, op: str) -> bool:
    """keepdims as a bool: a string or another object would be taken for its truth value
    ('no' keeps the dimensions) or fail deep in the backend."""
    if isinstance(keepdims, (bool, np.bool_)):
        return bool(keepdims)
    raise TypeError(f"{op}(): keepdims must be True or False, got {type(keepdims).__name__} "
                    f"{keepdims!r}")


def tensor_sum(self, axis=None, keepdims: bool = False):
    """Sum over all elements or ``axis`` (int or tuple)."""
    be = self._be
    shape = self.data.shape
    axes = _reduce_axes(axis, len(shape), "sum")
    keepdims = _keepdims(keepdims, "sum")
    kshape = _keep_shape(shape, axes)

    def backward(g):
        return (be.broadcast_to(be.reshape(g, kshape), shape),)
    return _result(be.sum(self.data, axes, keepdims), be, (self,), backward, "sum")


def mean(self, axis=None, keepdims: bool = False):
    """Mean over all elements or ``axis`` (int or tuple)."""
    be = self._be
    shape = self.data.shape
    axes = _reduce_axes(axis, len(shape), "mean")
    keepdims = _keepdims(keepdims, "mean")
    kshape = _keep_shape(shape, axes)
    n = self.data.size if axes is None else int(np.prod([shape[a] for a in axes]))
    if n == 0:
        raise ValueError(f"mean(): reduction over zero elements (shape {tuple(shape)})")
    inv = 1.0 / n

    def backward(g):
        return (be.broadcast_to(be.reshape(be.mul(g, inv), kshape), shape),)
    return _result(be.mean(self.data, axes, keepdims), be, (self,), backward, "mean")


def tensor_max(self, axis=None, keepdims: bool = False):
    """Maximum over all elements or ``axis``; ties share the gradient equally."""
    be = self._be
    ad = self.data
    if ad.size == 0:
        raise ValueError("max(): empty tensor")
    axes = _reduce_axes(axis, ad.ndim, "max")
    keepdims = _keepdims(keepdims, "max")
    kshape = _keep_shape(ad.shape, axes)
    out = be.max(ad, axes, keepdims)

    def backward(g):
        o = be.reshape(out, kshape)
        # NaN != NaN: where the max is NaN the gradient goes to the NaN elements (PyTorch),
        # not 0/0 = NaN spread over the whole slice
        mask = be.maximum(be.eq(ad, o), be.mul(be.ne(ad, ad), be.ne(o, o)))
        cnt = be.sum(mask, axes, True)
        return (be.mul(mask, be.div(be.reshape(g, kshape), cnt)),)
    return _result(out, be, (self,), backward, "max", (self,), out=True)


def argmax(self, axis=None) -> "Tensor":
    """Indices of the maxima (int64, not differentiable); the flat index when axis is None."""
    if self.data.size == 0:
        raise ValueError("argmax(): empty tensor")
    ax = None if axis is None else _axis("argmax", axis, self.data.ndim)
    return _new(self._be.argmax(self.data, ax if self.data.ndim else None), self._be)
