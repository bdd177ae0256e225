"""The ops: one file per family, forward and backward side by side, named as the kernel families
in csrc/cpu and csrc/cuda (elementwise, reduce, shape, linalg with the fused dense layer,
activation, norm, loss, recurrent). Every op records its tape node
with autograd.record, the only code that creates one. The operators and methods of Tensor that
are ops are bound onto it here, in one table, so that tensor.py (the data type) imports no op.
The public namespaces stay deepgrad (matmul, concat, ...), deepgrad.functional and
deepgrad.losses."""
from __future__ import annotations

from ..tensor import Tensor
from . import activation, elementwise, linalg, loss, norm, recurrent, reduce, shape  # noqa: F401
from .elementwise import maximum, minimum, where
from .linalg import matmul
from .shape import concat, stack

cat = concat

#: Tensor attribute -> the op (a method's first argument is the tensor)
METHODS = {
    "__add__": elementwise.add, "__radd__": elementwise.add,
    "__sub__": elementwise.sub, "__rsub__": elementwise.rsub,
    "__mul__": elementwise.mul, "__rmul__": elementwise.mul,
    "__truediv__": elementwise.truediv, "__rtruediv__": elementwise.rtruediv,
    "__pow__": elementwise.tensor_pow, "__rpow__": elementwise.rpow,
    "__neg__": elementwise.neg, "__pos__": elementwise.pos,
    "_cmp": elementwise._cmp,
    "__lt__": elementwise.lt, "__le__": elementwise.le, "__gt__": elementwise.gt,
    "__ge__": elementwise.ge, "__eq__": elementwise.eq, "__ne__": elementwise.ne,
    "exp": elementwise.exp, "log": elementwise.log, "sqrt": elementwise.sqrt,
    "abs": elementwise.tensor_abs, "__abs__": elementwise.tensor_abs,
    "clamp": elementwise.clamp,
    "sum": reduce.tensor_sum, "mean": reduce.mean, "max": reduce.tensor_max,
    "argmax": reduce.argmax,
    "reshape": shape.reshape, "view": shape.reshape, "flatten": shape.flatten,
    "squeeze": shape.squeeze, "unsqueeze": shape.unsqueeze, "transpose": shape.transpose,
    "permute": shape.permute, "_permuted": shape._permuted, "T": property(shape.T),
    "__getitem__": shape.getitem,
    "__matmul__": linalg.matmul_method, "__rmatmul__": linalg.rmatmul_method,
    "sigmoid": activation.sigmoid, "tanh": activation.tanh, "relu": activation.relu,
}
for _name, _op in METHODS.items():
    setattr(Tensor, _name, _op)

__all__ = ["METHODS", "cat", "concat", "matmul", "maximum", "minimum", "stack", "where"]
