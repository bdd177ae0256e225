"""Shape ops: reshape, flatten, squeeze, unsqueeze, transpose, permute, T, indexing, concat,
stack (views and copies through the backend). Bound onto Tensor in ops/__init__.py."""
from __future__ import annotations

import numpy as np

from ..autograd import record as _result
from ..tensor import Tensor, _alias, _axes, _axis, _index
from .common import _same


def concat(tensors, axis: int = 0) -> Tensor:
    """Tensors joined along an existing axis."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concat: needs at least one tensor")
    be = _same("concat", tensors)
    nd = tensors[0].data.ndim
    if nd == 0:
        raise ValueError("concat: 0-d tensors cannot be concatenated; use stack, or reshape "
                         "them to (1,) first")
    ax = _axis("concat", axis, nd)
    for t in tensors[1:]:
        if t.data.ndim != nd or any(t.shape[i] != tensors[0].shape[i] for i in range(nd) if i != ax):
            raise ValueError(f"concat: shapes {tensors[0].shape} and {t.shape} differ outside "
                             f"axis {axis}")
    sizes = [t.data.shape[ax] for t in tensors]
    out = be.concat([t.data for t in tensors], ax)
    return _result(out, be, tuple(tensors), lambda g: tuple(be.split(g, sizes, ax)), "concat")


def stack(tensors, axis: int = 0) -> Tensor:
    """Tensors of one shape joined along a new axis."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    be = _same("stack", tensors)
    shape = tensors[0].shape
    for t in tensors[1:]:
        if t.shape != shape:
            raise ValueError(f"stack: all tensors need one shape, got {shape} and {t.shape}")
    ax = _axis("stack", axis, len(shape) + 1)
    out = be.stack([t.data for t in tensors], ax)

    def backward(g):
        return tuple(be.reshape(p, shape) for p in be.split(g, [1] * len(tensors), ax))
    return _result(out, be, tuple(tensors), backward, "stack")


def reshape(self, *shape):
    """The same values in a new shape (-1 infers one dimension)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    be = self._be
    old = self.data.shape
    try:
        out = be.reshape(self.data, shape)
    except ValueError:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {tuple(old)} "
                         f"({self.data.size} elements) into shape {shape}") from None
    except TypeError:
        raise TypeError(f"reshape: the shape must be ints (one may be -1), got {shape!r}"
                        ) from None
    r = _result(out, be, (self,), lambda g: (be.reshape(g, old),), "reshape")
    _alias(r, self)   # a view shares the version counter
    return r


def flatten(self, start_dim: int = 0, end_dim: int = -1):
    """Axes start_dim..end_dim (inclusive) merged into one; a 0-d tensor becomes (1,)."""
    s = self.shape
    i, j = _axis("flatten", start_dim, len(s)), _axis("flatten", end_dim, len(s))
    if i > j:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} "
                         f"for a tensor with {len(s)} dimensions")
    return self.reshape(*s[:i], -1, *s[j + 1:])


def squeeze(self, axis=None):
    """Axes of size 1 removed: all of them, or those of ``axis`` (int or tuple) that have
    size 1 (an axis of another size is kept, as in PyTorch)."""
    s = self.shape
    if axis is None:
        drop = {i for i, n in enumerate(s) if n == 1}
    else:
        drop = {i for i in _axes("squeeze", axis if isinstance(axis, (tuple, list))
                                 else (axis,), len(s)) if s and s[i] == 1}
    return self.reshape(*(n for i, n in enumerate(s) if i not in drop))


def unsqueeze(self, axis: int):
    """A new axis of size 1 at ``axis`` (-ndim-1 <= axis <= ndim)."""
    s = self.shape
    i = _axis("unsqueeze", axis, len(s) + 1)
    return self.reshape(*s[:i], 1, *s[i:])


def transpose(self, *axes):
    """Axes permuted: no argument reverses them; two ints swap those two axes (PyTorch's
    transpose(dim0, dim1)); a tuple, or more than two ints, is a full permutation."""
    nd = self.data.ndim
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        return self.permute(axes[0])
    if len(axes) != 2:
        return self.permute(*(axes or tuple(range(nd))[::-1]))
    i, j = _axis("transpose", axes[0], nd), _axis("transpose", axes[1], nd)
    p = list(range(nd))
    if nd:
        p[i], p[j] = p[j], p[i]
    return self._permuted(tuple(p))


def permute(self, *dims):
    """Axes reordered by ``dims``, a permutation of the axes (negative ones count from the
    end): permute(1, 0) or permute((1, 0))."""
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    nd = self.data.ndim
    perm = tuple(_axis("permute", a, nd) for a in dims) if len(dims) == nd else ()
    if len(dims) != nd or sorted(perm) != list(range(nd)):
        raise ValueError(f"permute: {dims} is not a permutation of the {nd} axes of a tensor "
                         f"of shape {self.shape}: name each of 0..{nd - 1} once")
    return self._permuted(perm)


def _permuted(self, perm):
    inv = tuple(np.argsort(perm).tolist())
    be = self._be
    r = _result(be.transpose(self.data, perm), be, (self,),
                lambda g: (be.transpose(g, inv),), "transpose")
    _alias(r, self)   # a transpose that needed no copy is a view
    return r


def T(self):
    return self.transpose()


def getitem(self, index):
    be = self._be
    idx = _index(index, be)
    shape, dt = self.data.shape, self.data.dtype
    try:
        out = be.getitem(self.data, idx)
    except IndexError as e:
        raise IndexError(f"index {index!r} into a tensor of shape {tuple(shape)}: {e}") from None

    def backward(g):
        z = be.zeros(shape, dt)
        be.index_add_(z, idx, g)
        return (z,)
    r = _result(out, be, (self,), backward, "getitem")
    _alias(r, self)   # basic indexing may give a view
    return r
