"""nn.Parameter: a Tensor that a Module trains, living in the module's arena once laid out."""
from __future__ import annotations

import copy as _copy

import numpy as np

from ..backend import copy_into
from ..tensor import Tensor, _new

__all__ = ["Parameter"]


class Parameter(Tensor):
    """A trainable tensor (requires_grad=True by default).

    Once laid out in an arena (see nn/arena.py) ``.data`` and ``.grad.data`` are views into the
    arena's flat buffers, and stay so: assigning ``p.data = array`` or ``p.grad = tensor`` copies
    the values into the views (same shape required), ``p.grad = None`` zero-fills the gradient,
    and ``p.grad`` is never None."""
    __slots__ = ("_pd", "_pg", "_arena", "_slot", "_own_version")

    def __init__(self, data, requires_grad: bool = True, dtype=None, device=None):
        self._arena = None
        self._own_version = 0
        self._slot = -1
        self._pg = None
        Tensor.__init__(self, data, dtype=dtype, device=device)
        if requires_grad:
            self.requires_grad_(True)

    @property
    def _version(self) -> int:
        """In-place updates of this tensor plus the optimizer steps taken on its arena."""
        a = self._arena
        return self._own_version + (a.version if a is not None else 0)

    @_version.setter
    def _version(self, value: int) -> None:
        a = self._arena
        self._own_version = value - (a.version if a is not None else 0)

    @property
    def data(self):
        return self._pd

    @data.setter
    def data(self, value) -> None:
        if self._arena is None:
            self._pd = value
            return
        cur = self._pd
        if value is cur:
            return
        if isinstance(value, Tensor):
            value = value.data
        if tuple(value.shape) != tuple(cur.shape):
            raise ValueError(f"Parameter lives in an arena with shape {tuple(cur.shape)}; cannot "
                             f"assign data of shape {tuple(value.shape)} (assign a new Parameter "
                             "to the module attribute instead)")
        copy_into(cur, value)

    @property
    def grad(self):
        return self._pg

    @grad.setter
    def grad(self, value) -> None:
        if self._arena is None:
            self._pg = value
            return
        cur = self._pg
        if value is cur:
            return
        if value is None:
            self._be.fill_(cur.data, 0.0)
            return
        v = value.data if isinstance(value, Tensor) else value
        if tuple(v.shape) != tuple(cur.data.shape):
            raise ValueError(f"Parameter.grad: got a gradient of shape {tuple(v.shape)} for a "
                             f"parameter of shape {tuple(cur.data.shape)}")
        copy_into(cur.data, v)

    # -- arena hooks ---------------------------------------------------------------------------

    def _bind(self, arena, slot: int, pview, gview, be) -> None:
        """Make this parameter's data/grad the given arena views (values already copied)."""
        self._pd = pview
        self._be = be
        self._pg = _new(gview, be)
        self._arena = arena
        self._slot = slot

    @property
    def segment(self):
        """This parameter's arena Segment (name, offset, size, shape, module), or None."""
        return None if self._arena is None else self._arena.segments[self._slot]

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo):
        # A copy is a fresh parameter outside any arena (the copied module lays out its own).
        p = Parameter(np.array(self._be.to_numpy(self._pd), copy=True),
                      requires_grad=self.requires_grad, device=self.device)
        if self._pg is not None:
            p._pg = _new(self._be.copy(self._pg.data), self._be)
        memo[id(self)] = p
        return p

    def __reduce_ex__(self, protocol):
        raise TypeError("Parameters are not picklable; save model.state_dict() with "
                        "deepgrad.save instead")
