"""The parameter arena: a model's parameters live in ONE flat buffer and their gradients in
another, so zero_grad, gradient norms, clipping and optimizer steps are single native passes.

Every Parameter's ``.data`` and ``.grad.data`` are views into ``arena.params`` / ``arena.grads``
at its segment (name, offset, size, shape, module). Both buffers are backend arrays (numpy on
the CPU, CudaArray on the GPU).

Layout rule (re-layout):
- A Module lays its parameters out lazily, on its first top-level call or parameters() access
  (or explicitly with ``module.arena``), in ``named_parameters()`` order; a parameter shared by
  several modules gets one segment, named after its first occurrence.
- A parameter lives in exactly one arena. A module whose parameters all live in one live arena
  uses it as is (a submodule uses its parent's arena). Otherwise (a parameter was added or
  replaced, or two separately laid-out models were combined) a NEW arena is built for the
  module: current values and gradients are copied into it, every parameter's views are rebound,
  and every arena a parameter left is *retired* (``arena.retired`` is True).
- Optimizers notice a retired arena on their next step() and rebuild their flat state for the
  new layout, carrying each parameter's state over (see deepgrad.optim).
"""
from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

from ..backend import backend_of, copy_into, get_backend, normalize_device

__all__ = ["Arena", "Segment"]

# Bumped whenever an arena is created or retired; modules compare it to a cached stamp so that
# the per-call "is my layout still valid" check is O(1).
_EPOCH = [0]
_IDS = itertools.count(1)


class Segment(NamedTuple):
    """One parameter's place in the arena."""
    name: str        # qualified parameter name, e.g. "layers.0.weight"
    offset: int      # first element in the flat buffers
    size: int        # number of elements
    shape: tuple     # the parameter's shape
    module: str      # qualified name of the module that owns it ("" for the root)


def flat_view(buf, offset: int, shape: tuple):
    """A view of ``prod(shape)`` elements of the flat backend array ``buf`` starting at
    ``offset``, with ``shape`` (the owning backend's ``view``)."""
    return backend_of(buf).view(buf, offset, shape)


def _backend(device):
    return get_backend(device)


class Arena:
    """Flat parameter and gradient buffers for a list of named parameters (see module doc)."""

    def __init__(self, named_params, dtype=None, device=None):
        """Lay out ``named_params`` (a list of (qualified name, Parameter), no duplicates):
        allocate the buffers (of ``dtype``/``device``, default: the first parameter's), copy
        every parameter's value and gradient in, rebind its views and retire its old arena."""
        named_params = list(named_params)
        if not named_params:
            raise ValueError("Arena: no parameters to lay out")
        self.version = 0   # bumped by each optimizer step: part of every member's _version
        first = named_params[0][1]
        self.dtype = np.dtype(dtype if dtype is not None else first.data.dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"Arena: parameters must be float32 or float64, got {self.dtype}")
        self.device = normalize_device(device if device is not None else first.device)
        be = self.be = _backend(self.device)   # the backend module of the buffers
        segs, off = [], 0
        for name, p in named_params:
            if device is None and normalize_device(p.device) != self.device:
                raise ValueError(f"Arena: parameter {name!r} is on {p.device} but "
                                 f"{named_params[0][0]!r} is on {self.device}; move the whole "
                                 "model with .to(device)")
            if dtype is None and np.dtype(p.data.dtype) != self.dtype:
                raise TypeError(f"Arena: parameter {name!r} is {np.dtype(p.data.dtype)} but the first "
                                f"parameter is {self.dtype}; convert the model with .to(dtype) "
                                "(or .double()/.float())")
            shape = tuple(p.data.shape)
            size = int(np.prod(shape, dtype=np.int64)) if shape else 1
            mod = name.rpartition(".")[0]
            segs.append(Segment(name, off, size, shape, mod))
            off += size
        self.numel = off
        self.params = be.zeros((off,), self.dtype)
        self.grads = be.zeros((off,), self.dtype)
        self.segments: tuple[Segment, ...] = tuple(segs)
        self.offsets = np.array([s.offset for s in segs] + [off], dtype=np.int64)
        self.names = tuple(s.name for s in segs)
        self.parameters = tuple(p for _, p in named_params)
        self.id = next(_IDS)
        self.retired = False
        # Step statistics: while a reader asks (request_step_stats), the built-in optimizers'
        # native steps over this arena also fill step_stats (S, 8) per segment, from the same
        # pass that updates the parameters: ||grad|| (NaN when non-finite), L-inf of the finite
        # gradient values, non-finite count, index of the first non-finite value (-1: none),
        # ||param|| after the step, ||update||, 1 (filled), 0. step_stats_stamp (int64, read
        # natively by the monitor's rows) holds [step_stats_serial, step_stats_backward]: the
        # count of steps that filled every row, and autograd.backward_calls() at the last one.
        self.step_stats = None
        self.step_stats_stamp = np.array([0, -1], dtype=np.int64)
        self.step_stats_readers = 0
        old = set()
        for i, ((_, p), s) in enumerate(zip(named_params, segs)):
            pv = be.view(self.params, s.offset, s.shape)
            gv = be.view(self.grads, s.offset, s.shape)
            copy_into(pv, p.data)
            g = p.grad
            if g is not None:
                copy_into(gv, g.data)
            prev = getattr(p, "_arena", None)
            if prev is not None and prev is not self:
                old.add(prev)
            if hasattr(p, "_bind"):
                p._bind(self, i, pv, gv, be)
            else:  # a bare Tensor (optimizer's private arena): rebind its attributes
                from ..tensor import _new
                p.data = pv
                p._be = be
                p.grad = _new(gv, be)
        for a in old:
            a.retired = True
        _EPOCH[0] += 1

    def __len__(self) -> int:
        return len(self.segments)

    @property
    def step_stats_serial(self) -> int:
        """How many optimizer steps filled step_stats (every row) so far."""
        return int(self.step_stats_stamp[0])

    @property
    def step_stats_backward(self) -> int:
        """autograd.backward_calls() at the last optimizer step that filled step_stats."""
        return int(self.step_stats_stamp[1])

    def request_step_stats(self, on: bool = True) -> bool:
        """Ask the optimizer steps over this arena to fill ``step_stats`` (on) or stop asking
        (readers are counted). Returns whether this arena's backend can (CPU: yes)."""
        if not getattr(self.be, "STEP_STATS", False):
            return False
        if on:
            if self.step_stats is None:
                st = np.zeros((len(self.segments), 8))
                st[:, 3] = -1.0
                st[:, 6] = 1.0  # empty segments are in no step: their zero row stays valid
                self.step_stats = st
            self.step_stats_readers += 1
        else:
            self.step_stats_readers = max(0, self.step_stats_readers - 1)
        return True

    def __repr__(self) -> str:
        state = ", retired" if self.retired else ""
        return (f"Arena({len(self.segments)} segments, {self.numel} elements, {self.dtype.name}, "
                f"{self.device}{state})")

    def index(self, param) -> int:
        """The segment index of ``param`` in this arena (ValueError when it is not here)."""
        if param._arena is not self:
            raise ValueError("Arena.index: this parameter does not live in this arena")
        return param._slot

    def param_view(self, i: int):
        """The parameter values of segment ``i`` (a view, shaped)."""
        s = self.segments[i]
        return self.be.view(self.params, s.offset, s.shape)

    def grad_view(self, i: int):
        """The gradient of segment ``i`` (a view, shaped)."""
        s = self.segments[i]
        return self.be.view(self.grads, s.offset, s.shape)

    def slice(self, buf, start: int, stop: int):
        """Elements [start, stop) of one of the flat buffers, as a 1-D view."""
        return self.be.view(buf, start, (stop - start,))

    def zero_grad(self) -> None:
        """Every gradient to zero in one native pass."""
        self.be.fill_(self.grads, 0.0)

    def grad_norms(self):
        """(per-segment L2 norms float64 (S,), total norm, number of non-finite values) of the
        gradients, in one native pass."""
        return self.be.segment_norms(self.grads, self.offsets)

    def param_norms(self):
        """As grad_norms, over the parameter values."""
        return self.be.segment_norms(self.params, self.offsets)


def runs(arena: Arena, slots) -> list[tuple[int, int]]:
    """Maximal contiguous [start, stop) element ranges covered by segment indices ``slots``."""
    out: list[list[int]] = []
    for i in sorted(set(slots)):
        s = arena.segments[i]
        if out and out[-1][1] == s.offset:
            out[-1][1] = s.offset + s.size
        else:
            out.append([s.offset, s.offset + s.size])
    return [(a, b) for a, b in out if b > a]
