"""Checks shared by the ops: operands of one op on one device with one dtype."""
from __future__ import annotations

from ..tensor import Tensor, _device_mismatch, _dtype_mismatch, _not_tensor


def _same(op, tensors):
    for t in tensors:
        if not isinstance(t, Tensor):
            raise _not_tensor(op, t)
    a = tensors[0]
    for b in tensors[1:]:
        if b._be is not a._be:
            raise _device_mismatch(op, a, b)
        if b.data.dtype != a.data.dtype:
            raise _dtype_mismatch(op, a, b)
    return a._be
