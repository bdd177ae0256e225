"""Gradient clipping over the parameter arena (PyTorch's ``torch.nn.utils`` semantics).

Both functions work on the flat gradient buffer: the norm is one native ``segment_norms`` pass
and the rescale one native ``scale_`` pass per contiguous range (one for a whole model). A
parameter's gradient is always a view into the arena it lives in (``p._arena``), retired or not
(a retired arena still holds the parameters that did not move), so only parameters that were
never laid out take one call each.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _groups(params_or_model) -> list:
    """[(arena or None, slots, [params])]: the parameters with a gradient, grouped by arena."""
    if hasattr(params_or_model, "parameters") and callable(params_or_model.parameters):
        params = list(params_or_model.parameters())
    else:
        from ..tensor import Tensor
        params = [params_or_model] if isinstance(params_or_model, Tensor) else list(params_or_model)
    groups: dict = {}
    order = []
    for p in params:
        if p is None or getattr(p, "grad", None) is None:
            continue
        arena = getattr(p, "_arena", None)
        key = id(arena) if arena is not None else ("solo", id(p))
        if key not in groups:
            groups[key] = (arena, [], [])
            order.append(key)
        groups[key][1].append(getattr(p, "_slot", None))
        groups[key][2].append(p)
    return [groups[k] for k in order]


def _ranges(arena, slots) -> list[tuple[int, int]]:
    from .arena import runs
    return runs(arena, slots)


def _range_views(arena, slots) -> list:
    if len(set(slots)) == len(arena.segments):
        return [arena.grads]
    return [arena.slice(arena.grads, a, b) for a, b in _ranges(arena, slots)]


def _be(p):
    """The backend module of a parameter's device."""
    be = getattr(p, "_be", None)
    if be is None:
        from ..backend import get_backend
        be = get_backend(p.device)
    return be


def clip_grad_norm_(params_or_model, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> float:
    """Rescale gradients in place so their total norm is at most ``max_norm``; returns the total
    norm before clipping. ``params_or_model``: a Module, a Parameter or an iterable of them.
    norm_type: 2 (one native pass) or ``inf``/any p > 0 (numpy over the same flat ranges).
    Gradients are scaled by max_norm / (total + 1e-6) when total > max_norm, as PyTorch does.
    """
    max_norm = float(max_norm)
    norm_type = float(norm_type)
    if not max_norm >= 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be >= 0, got {max_norm}")
    if not norm_type > 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be > 0 or inf, got {norm_type}")
    groups = _groups(params_or_model)
    if not groups:
        return 0.0
    parts: list[float] = []  # per group: sum |g|^p (or max |g| for inf)
    for arena, slots, params in groups:
        if arena is not None:
            views = _range_views(arena, slots)
            be = _be(params[0])
        else:
            views = [params[0].grad.data]
            be = _be(params[0])
        for v in views:
            if norm_type == 2.0:
                flat = be.reshape(v, (-1,))
                _, total, _ = be.segment_norms(flat, np.array([0, _size(v)], dtype=np.int64))
                parts.append(float(total) ** 2)
            else:
                a = np.abs(np.asarray(be.to_numpy(v), dtype=np.float64))
                parts.append(float(a.max()) if norm_type == math.inf and a.size else
                             float(np.sum(a ** norm_type)) if a.size else 0.0)
    if norm_type == math.inf:
        total = max(parts)
    else:
        total = float(sum(parts)) ** (1.0 / norm_type)
    if not math.isfinite(total):
        if error_if_nonfinite:
            where = _first_nonfinite(params_or_model, groups)
            raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the "
                               f"gradients is non-finite{where}, so it cannot be clipped; pass "
                               "error_if_nonfinite=False to scale anyway, or find the NaN with "
                               "deepgrad.detect_anomaly()")
    coef = max_norm / (total + 1e-6)
    if coef < 1.0 or not math.isfinite(total):
        for arena, slots, params in groups:
            views = _range_views(arena, slots) if arena is not None else [params[0].grad.data]
            be = _be(params[0])
            for v in views:
                be.scale_(v, coef)
    return total


def _first_nonfinite(params_or_model, groups) -> str:
    """' (first in <name>, element <index>: nan)' for the first parameter whose gradient holds
    NaN or Inf (its state_dict name when a Module was given), from the health kernel."""
    from ..runtime import _C
    names = {}
    if hasattr(params_or_model, "named_parameters"):
        names = {id(p): n for n, p in params_or_model.named_parameters()}
    for _, _, params in groups:
        for i, p in enumerate(params):
            g = np.ascontiguousarray(np.asarray(_be(p).to_numpy(p.grad.data)))
            h = _C.tensors_health([g.reshape(-1)])[0]
            if h[4] + h[5] > 0:
                name = names.get(id(p), f"parameter {i}")
                idx = np.unravel_index(int(h[6]), g.shape) if g.ndim > 1 else int(h[6])
                kind = "nan" if np.isnan(g.reshape(-1)[int(h[6])]) else "inf"
                return f" (first in {name}, element {idx}: {kind})"
    return ""


def clip_grad_value_(params_or_model, clip_value: float) -> None:
    """Clamp every gradient element into [-clip_value, clip_value] in place (native pass)."""
    clip_value = float(clip_value)
    if not clip_value >= 0:
        raise ValueError(f"clip_grad_value_: clip_value must be >= 0, got {clip_value}")
    for arena, slots, params in _groups(params_or_model):
        views = _range_views(arena, slots) if arena is not None else [params[0].grad.data]
        be = _be(params[0])
        for v in views:
            be.clip_value_(v, clip_value)


def _size(v) -> int:
    return int(v.size)
