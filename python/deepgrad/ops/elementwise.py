"""Elementwise ops: arithmetic with broadcasting, powers, comparisons, exp/log/sqrt/abs/clamp,
where, maximum, minimum (csrc/cpu/elementwise, csrc/cuda/elementwise.cu through the backend).
Forward and backward side by side; the operators are bound onto Tensor in ops/__init__.py."""
from __future__ import annotations

import numbers

import numpy as np

from ..autograd import record as _result
from ..tensor import Tensor, _broadcast_error, _new_mask, _operand


def where(cond, a, b) -> Tensor:
    """Elementwise ``a`` where cond is true (nonzero), else ``b``; a/b may be scalars."""
    ref = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    if ref is None:
        raise TypeError("where: a or b must be a tensor")
    be = ref._be
    a = _operand("where", ref, a)
    b = _operand("where", ref, b)
    if isinstance(cond, Tensor) and cond._be is not be:
        raise ValueError(f"where: cond is on {cond.device} but the values are on {ref.device}; "
                         f"move it with .to(device)")
    c = cond.data if isinstance(cond, Tensor) else be.from_numpy(np.asarray(cond), ref.data.dtype)
    if isinstance(cond, Tensor) and cond.data.dtype != ref.data.dtype:
        c = be.astype(c, ref.data.dtype)
    ad = a.data if isinstance(a, Tensor) else a
    bd = b.data if isinstance(b, Tensor) else b
    try:
        out = be.where(c, ad, bd)
    except ValueError as e:
        shapes = [tuple(x.shape) for x in (c, ad, bd) if hasattr(x, "shape")]
        try:
            np.broadcast_shapes(*shapes)
        except ValueError:
            raise ValueError(f"where: the shapes of cond, a and b {tuple(shapes)} do not "
                             f"broadcast together; reshape one of them") from None
        raise e
    ins = tuple(t for t in (a, b) if isinstance(t, Tensor))

    def backward(g):
        res = []
        for t, keep in ((a, True), (b, False)):
            if isinstance(t, Tensor):
                if not t.requires_grad:
                    res.append(None)
                    continue
                gg = be.where(c, g, 0.0) if keep else be.where(c, 0.0, g)
                res.append(be.sum_to_shape(be.astype(gg, g.dtype), t.data.shape))
        return tuple(res)
    return _result(out, be, ins, backward, "where")


def _minmax(a, b, name, is_max):
    ref = a if isinstance(a, Tensor) else b
    if not isinstance(ref, Tensor):
        raise TypeError(f"{name}: a or b must be a deepgrad Tensor, got {type(a).__name__} and "
                        f"{type(b).__name__}; wrap one with deepgrad.tensor(...)")
    be = ref._be
    a = _operand(name, ref, a)
    b = _operand(name, ref, b)
    ad = a.data if isinstance(a, Tensor) else a
    bd = b.data if isinstance(b, Tensor) else b
    try:
        out = be.maximum(ad, bd) if is_max else be.minimum(ad, bd)
    except ValueError as e:
        raise _broadcast_error(name, getattr(ad, "shape", ()), getattr(bd, "shape", ()),
                               e) from None
    ins = tuple(t for t in (a, b) if isinstance(t, Tensor))

    def backward(g):
        m = be.astype(be.ge(ad, bd) if is_max else be.le(ad, bd), g.dtype)  # ties: to a
        res = []
        if isinstance(a, Tensor):
            res.append(be.sum_to_shape(be.mul(g, m), ad.shape) if a.requires_grad else None)
        if isinstance(b, Tensor):
            res.append(be.sum_to_shape(be.mul(g, be.sub(1.0, m)), bd.shape)
                       if b.requires_grad else None)
        return tuple(res)
    return _result(out, be, ins, backward, name, ins)


def maximum(a, b) -> Tensor:
    """Elementwise maximum; at ties the gradient goes to ``a``."""
    return _minmax(a, b, "maximum", True)


def minimum(a, b) -> Tensor:
    """Elementwise minimum; at ties the gradient goes to ``a``."""
    return _minmax(a, b, "minimum", False)


def add(self, other):
    be = self._be
    o = _operand("add", self, other)
    if o.__class__ is float:
        return _result(be.add(self.data, o), be, (self,), lambda g: (g,), "add")
    a_shape, b_shape = self.data.shape, o.data.shape
    a, b = self, o

    def backward(g):
        return (be.sum_to_shape(g, a_shape) if a.requires_grad else None,
                be.sum_to_shape(g, b_shape) if b.requires_grad else None)
    try:
        out = be.add(self.data, o.data)
    except ValueError as e:
        raise _broadcast_error("add", a_shape, b_shape, e) from None
    return _result(out, be, (self, o), backward, "add")


def sub(self, other):
    be = self._be
    o = _operand("sub", self, other)
    if o.__class__ is float:
        return _result(be.sub(self.data, o), be, (self,), lambda g: (g,), "sub")
    a_shape, b_shape = self.data.shape, o.data.shape
    a, b = self, o

    def backward(g):
        return (be.sum_to_shape(g, a_shape) if a.requires_grad else None,
                be.neg(be.sum_to_shape(g, b_shape)) if b.requires_grad else None)
    try:
        out = be.sub(self.data, o.data)
    except ValueError as e:
        raise _broadcast_error("sub", a_shape, b_shape, e) from None
    return _result(out, be, (self, o), backward, "sub")


def rsub(self, other):
    return (-self).__add__(other)


def mul(self, other):
    be = self._be
    o = _operand("mul", self, other)
    if o.__class__ is float:
        return _result(be.mul(self.data, o), be, (self,), lambda g: (be.mul(g, o),), "mul")
    a, b = self, o
    ad, bd = self.data, o.data

    def backward(g):
        return (be.sum_to_shape(be.mul(g, bd), ad.shape) if a.requires_grad else None,
                be.sum_to_shape(be.mul(g, ad), bd.shape) if b.requires_grad else None)
    try:
        out = be.mul(ad, bd)
    except ValueError as e:
        raise _broadcast_error("mul", ad.shape, bd.shape, e) from None
    return _result(out, be, (self, o), backward, "mul", (self, o))


def truediv(self, other):
    be = self._be
    o = _operand("div", self, other)
    if o.__class__ is float:
        return _result(be.div(self.data, o), be, (self,), lambda g: (be.div(g, o),), "div")
    a, b = self, o
    ad, bd = self.data, o.data

    def backward(g):
        ga = be.div(g, bd)
        gb = None
        if b.requires_grad:
            gb = be.sum_to_shape(be.neg(be.div(be.mul(ga, ad), bd)), bd.shape)
        return (be.sum_to_shape(ga, ad.shape) if a.requires_grad else None, gb)
    try:
        out = be.div(ad, bd)
    except ValueError as e:
        raise _broadcast_error("div", ad.shape, bd.shape, e) from None
    return _result(out, be, (self, o), backward, "div", (self, o))


def rtruediv(self, other):
    be = self._be
    o = _operand("div", self, other)
    if isinstance(o, Tensor):
        return o.__truediv__(self)
    ad = self.data
    out = be.div(o, ad)
    return _result(out, be, (self,), lambda g: (be.neg(be.div(be.mul(g, out), ad)),),
                   "rdiv", (self,), out=True)


# d/da a**b = b a**(b-1), taken as 0 where b == 0 (a**0 is constant; 0 * 0**-1 is NaN);
# d/db a**b = a**b log(a), taken as 0 where a == 0 and b >= 0 (0**b is constant there;
# 0 * log 0 is NaN). PyTorch's pow_backward uses the same two masks.
def tensor_pow(self, other):
    be = self._be
    o = _operand("pow", self, other)
    ad = self.data
    if o.__class__ is float:
        if o == 0.0:
            return _result(be.full(ad.shape, 1.0, ad.dtype), be, (self,),
                           lambda g: (be.zeros(ad.shape, ad.dtype),), "pow")

        def backward_s(g):
            with np.errstate(all="ignore"):  # IEEE inf/nan at a zero base, silently
                return (be.mul(g, be.mul(be.pow(ad, o - 1.0), o)),)
        return _result(be.pow(ad, o), be, (self,), backward_s, "pow", (self,))
    a, b = self, o
    bd = o.data
    try:
        out = be.pow(ad, bd)
    except ValueError as e:
        raise _broadcast_error("pow", ad.shape, bd.shape, e) from None

    def backward(g):
        ga = gb = None
        with np.errstate(all="ignore"):  # IEEE inf/nan at a zero base, silently
            if a.requires_grad:
                d = be.where(be.eq(bd, 0.0), 0.0, be.mul(bd, be.pow(ad, be.sub(bd, 1.0))))
                ga = be.sum_to_shape(be.mul(g, d), ad.shape)
            if b.requires_grad:
                const = be.mul(be.eq(ad, 0.0), be.ge(bd, 0.0))
                gb = be.sum_to_shape(
                    be.mul(g, be.where(const, 0.0, be.mul(out, be.log(ad)))), bd.shape)
        return ga, gb
    return _result(out, be, (self, o), backward, "pow", (self, o), out=True)


def rpow(self, other):
    be = self._be
    o = _operand("pow", self, other)
    if isinstance(o, Tensor):
        return o.__pow__(self)
    xd = self.data
    out = be.pow(o, xd)
    with np.errstate(all="ignore"):
        lo = float(np.log(o))  # -inf for a zero base, NaN for a negative one

    def backward(g):
        with np.errstate(all="ignore"):  # IEEE inf/nan, silently
            d = be.mul(be.mul(g, out), lo)
            if o == 0.0:  # 0**x is constant where x >= 0 (PyTorch's mask)
                d = be.where(be.ge(xd, 0.0), 0.0, d)
            return (d,)
    return _result(out, be, (self,), backward, "rpow", (self,), out=True)


def neg(self):
    be = self._be
    return _result(be.neg(self.data), be, (self,), lambda g: (be.neg(g),), "neg")


def pos(self):
    return self


def _cmp(self, other, fn):
    o = _operand("compare", self, other)
    od = o.data if isinstance(o, Tensor) else o
    try:
        out = fn(self.data, od)
    except ValueError as e:
        raise _broadcast_error("compare", self.data.shape, getattr(od, "shape", ()), e) from None
    return _new_mask(out, self._be)   # indexing reads it as a boolean mask


def lt(self, other):
    return self._cmp(other, self._be.lt)


def le(self, other):
    return self._cmp(other, self._be.le)


def gt(self, other):
    return self._cmp(other, self._be.gt)


def ge(self, other):
    return self._cmp(other, self._be.ge)


def eq(self, other):  # elementwise, like numpy and PyTorch
    if other is None:    # t == None is False (Python's identity fallback), as in PyTorch
        return NotImplemented
    return self._cmp(other, self._be.eq)


def ne(self, other):
    if other is None:
        return NotImplemented
    return self._cmp(other, self._be.ne)


def exp(self):
    be = self._be
    out = be.exp(self.data)
    return _result(out, be, (self,), lambda g: (be.mul(g, out),), "exp", out=True)


def log(self):
    be = self._be
    ad = self.data
    return _result(be.log(ad), be, (self,), lambda g: (be.div(g, ad),), "log", (self,))


def sqrt(self):
    be = self._be
    out = be.sqrt(self.data)
    return _result(out, be, (self,), lambda g: (be.div(be.mul(g, 0.5), out),), "sqrt",
                   out=True)


def tensor_abs(self):
    be = self._be
    ad = self.data
    return _result(be.abs(ad), be, (self,), lambda g: (be.mul(g, be.sign(ad)),), "abs",
                   (self,))


def clamp(self, min: float | None = None, max: float | None = None):  # noqa: A002
    """Values limited to [min, max]; the gradient passes where the value was inside."""
    for nm, v in (("min", min), ("max", max)):
        if v is not None and (not isinstance(v, numbers.Real) or isinstance(v, (bool, np.bool_))):
            raise TypeError(f"clamp: {nm} must be a real number or None, got "
                            f"{type(v).__name__}; for tensor bounds use deepgrad.maximum / "
                            f"deepgrad.minimum")
    be = self._be
    ad = self.data
    out = be.clip(ad, min, max)

    def backward(g):
        m = be.eq(out, ad)
        return (be.mul(g, m),)
    return _result(out, be, (self,), backward, "clamp", (self,), out=True)
