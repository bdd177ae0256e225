"""deepgrad.Tensor: the data type - an n-d array (float32 by default, or float64) on a device:
storage, dtype, device, creation, conversion, in-place updates and versions, backward and hooks.
The math is in deepgrad.ops (one file per op family), whose operators and methods are bound onto
Tensor there; this module imports no op."""
from __future__ import annotations

import itertools
import numbers

import numpy as np

from . import autograd as _ag
from .autograd import _S
from .backend import cpu as _cpu
from .backend import get_backend, normalize_device

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)

_DTYPES = {"float32": float32, "float": float32, "float64": float64, "double": float64,
           "int64": int64, "long": int64}


def as_dtype(dtype) -> np.dtype | None:
    """A numpy dtype (float32, float64 or int64) for a dtype spec, None for None."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        d = _DTYPES.get(dtype)
    else:
        try:
            d = np.dtype(dtype)
        except TypeError:
            d = None
        if d not in (float32, float64, int64):
            d = None
    if d is None:
        raise TypeError(f"unsupported dtype {dtype!r}; deepgrad tensors are float32, float64 "
                        f"(or int64 for labels and indices)")
    return d


def _check_int64(fn, arr) -> None:
    """ValueError when float or unsigned values cannot be held by int64: NaN, Inf or a value
    outside its range would silently wrap around (numpy's cast gives -2**63 or a negative)."""
    if arr.dtype.kind == "u":
        if int(arr.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"{fn}: the value {int(arr.max())} does not fit in int64")
        return
    bad = ~np.isfinite(arr) | (arr < -2.0 ** 63) | (arr >= 2.0 ** 63)
    if bad.any():
        i = int(np.argmax(bad.reshape(-1)))
        raise ValueError(f"{fn}: the value {arr.reshape(-1)[i]!r} (flat index {i}) cannot be "
                         f"converted to int64 (NaN, Inf or out of range); clean the data first")


def _new(data, be) -> "Tensor":
    """A tensor wrapping ``data`` without copying (internal fast path)."""
    t = Tensor.__new__(Tensor)
    t.data = data
    t._be = be
    t.grad = None
    t.requires_grad = False
    t._node = None
    t._version = 0
    t._hooks = None
    t._retain = False
    t._base = None
    return t


def _alias(view, base) -> None:
    """Mark ``view`` (a tensor just made from ``base`` by reshape, basic indexing, a transpose
    or detach) as sharing base's memory when it does: its ``_base`` is then the tensor that
    owns the memory, whose version counter every in-place update of either side bumps and
    every saved-tensor check reads (PyTorch's shared version counter), so modifying x after
    y = x.reshape(...) was saved, or x.detach() after x was saved, is caught at backward."""
    a, s = view.data, base.data
    if a is s:
        shared = True
    elif base._be.HOST_MEMORY:
        b = a.base
        shared = b is not None and (b is s or b is s.base)
    else:
        shared = a.storage_ptr == s.storage_ptr
    if shared:
        view._base = base if base._base is None else base._base


# the recording rule of every op (kept under its old name for the modules that use it)
_result = _ag.record


def _device_mismatch(op, a, b):
    return ValueError(f"{op}: tensors are on different devices ({a.device} and {b.device}); "
                      f"move one with .to(device)")


def _not_tensor(op: str, x) -> TypeError:
    """The error for a non-Tensor where an op needs a Tensor (numpy arrays included: deepgrad
    never converts them silently, since the result would not be on the tape)."""
    return TypeError(f"{op}: expected a deepgrad Tensor, got {type(x).__name__}; "
                     "wrap arrays and numbers with deepgrad.tensor(...)")


def _dtype_mismatch(op, a, b):
    return TypeError(f"{op}: operands have dtypes {a.data.dtype} and {b.data.dtype}; convert "
                     f"one with .float() or .double()")


def _operand(op, a, b):
    """The other operand of a binary op: a Tensor (same device and dtype) or a Python scalar."""
    if isinstance(b, Tensor):
        if b._be is not a._be:
            raise _device_mismatch(op, a, b)
        if b.data.dtype != a.data.dtype:
            raise _dtype_mismatch(op, a, b)
        return b
    if isinstance(b, numbers.Real) and not isinstance(b, (bool, np.bool_)):
        return float(b)
    if isinstance(b, (np.ndarray, list, tuple)) or (isinstance(b, np.generic) and
                                                     not isinstance(b, np.bool_)):
        if a.data.dtype.kind != "f":   # an int64 tensor: float values would be truncated
            kind = (b.dtype if isinstance(b, (np.ndarray, np.generic)) else
                    np.asarray(b).dtype).kind
            if kind not in "iub":
                raise TypeError(f"{op}: an {a.data.dtype} tensor with a {type(b).__name__} of "
                                f"non-integer values (they would be truncated); convert the "
                                f"tensor with .float() or .double() first")
        try:
            return Tensor(b, dtype=a.data.dtype, device=a.device)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{op}: cannot use the {type(b).__name__} operand: {e}") from None
    raise TypeError(f"{op}: unsupported operand type {type(b).__name__}; use a deepgrad Tensor, "
                    f"a real number or an array of real numbers"
                    + (" (convert a bool with float(b))" if isinstance(b, (bool, np.bool_))
                       else ""))


def _broadcast_error(op, a_shape, b_shape, err):
    """The error for a failed elementwise op: a ValueError naming the op and the shapes when
    they do not broadcast, else ``err`` itself (called only once the op has failed)."""
    try:
        np.broadcast_shapes(tuple(a_shape), tuple(b_shape))
    except ValueError:
        return ValueError(f"{op}: shapes {tuple(a_shape)} and {tuple(b_shape)} do not broadcast "
                          f"(numpy rules: trailing sizes must match or be 1); reshape or "
                          f"unsqueeze one operand")
    return err


class AxisError(IndexError, ValueError):
    """An axis outside [-ndim, ndim). Both an IndexError (PyTorch) and a ValueError (numpy's
    AxisError is both too), so either ``except`` catches it."""


def _axis(op: str, axis, ndim: int) -> int:
    """``axis`` as an index in [0, ndim), for -ndim <= axis < ndim (numpy and PyTorch). A 0-d
    tensor takes 0 and -1, as in PyTorch (it behaves as one element); the result is then 0."""
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{op}: an axis must be an int, got {type(axis).__name__} {axis!r}")
    n = max(ndim, 1)
    if not -n <= axis < n:
        raise AxisError(f"{op}: axis {axis} is out of range for a tensor with {ndim} "
                        f"dimension{'' if ndim == 1 else 's'} (expected {-n} <= axis < {n})")
    return int(axis) % n


def _axes(op: str, axes, ndim: int) -> tuple:
    """Each axis of ``axes`` through _axis; ValueError when one is repeated."""
    out = tuple(_axis(op, a, ndim) for a in axes)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: axes {tuple(axes)} name the same axis twice (tensor with {ndim} "
                         f"dimensions)")
    return out


def _reduce_axes(axis, ndim, op="reduction"):
    """The axes of a reduction as a sorted tuple, or None for all of them (also for any valid
    axis of a 0-d tensor, whose reduction is itself)."""
    if axis is None:
        return None
    axes = _axes(op, axis if isinstance(axis, (tuple, list)) else (axis,), ndim)
    return None if ndim == 0 else tuple(sorted(axes))


def _keep_shape(shape, axes):
    if axes is None:
        return (1,) * len(shape)
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


class Tensor:
    """An n-d array with autodiff. ``Tensor(data, dtype=None, device=None, requires_grad=False)``
    is the same as ``deepgrad.tensor``. ``.data`` is the backend array (numpy on "cpu")."""
    __slots__ = ("data", "grad", "requires_grad", "_node", "_be", "_version", "_hooks",
                 "_retain", "_base", "__weakref__")
    __array_ufunc__ = None  # numpy defers to our reflected operators (ndarray + Tensor)

    def __init__(self, data, dtype=None, device=None, requires_grad: bool = False):
        be = get_backend(device) if device is not None else _cpu
        dt = as_dtype(dtype)
        if isinstance(data, Tensor):
            arr = data._be.to_numpy(data.data)
            keep = True
        else:
            keep = isinstance(data, (np.ndarray, np.generic))
            try:
                arr = np.asarray(data)
            except ValueError as e:   # ragged nested lists
                raise ValueError(f"tensor(): the data is not a rectangular array of numbers "
                                 f"({e}); give every row the same length") from None
        if dt is None:
            # a float array keeps its precision whatever its byte order ('>f8' is float64)
            dt = (float64 if keep and arr.dtype.kind == "f" and arr.dtype.itemsize == 8
                  else arr.dtype if keep and arr.dtype in (float32, float64) else float32)
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"tensor(): cannot make a tensor from data of dtype {arr.dtype}; "
                            f"deepgrad tensors hold real numbers (float32, float64 or int64)")
        if dt == int64 and arr.dtype.kind in "fu" and arr.size:
            _check_int64("tensor()", arr)
        self.data = be.from_numpy(arr, dt)
        self._be = be
        self.grad = None
        self._node = None
        self._version = 0
        self._hooks = None
        self._retain = False
        self._base = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ---- properties ----------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def device(self) -> str:
        return self._be.DEVICE

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self):
        """The node that produced this tensor (None for leaves)."""
        return self._node

    def numel(self) -> int:
        return int(self.data.size)

    def size(self, dim: int | None = None):
        """The shape, or the size of axis ``dim``."""
        if dim is None:
            return self.shape
        if self.data.ndim == 0:
            raise AxisError("size(): a 0-d tensor has no axes; use .shape or .numel()")
        return self.shape[_axis("size", dim, self.data.ndim)]

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        body = np.array2string(self._be.to_numpy(self.data), separator=", ", precision=4,
                               prefix="tensor(")
        extra = ""
        if self.data.dtype != float32:
            extra += f", dtype={self.data.dtype}"
        if self.device != "cpu":
            extra += f", device='{self.device}'"
        if self._node is not None:
            extra += f", grad_fn={self._node.name}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    # ---- conversion ------------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The values as a numpy array (shares memory on the CPU)."""
        return self._be.to_numpy(self.data)

    def __array__(self, dtype=None, copy=None):
        """numpy 2's protocol: ``copy=True`` always copies; ``copy=None`` shares the CPU
        tensor's memory when no dtype change is asked; ``copy=False`` shares or raises
        ValueError (a CUDA tensor or a dtype change needs a copy)."""
        on_host = self._be.HOST_MEMORY
        a = self._be.to_numpy(self.data)
        need = (not on_host) or (dtype is not None and np.dtype(dtype) != a.dtype)
        if copy is False and need:
            raise ValueError(f"np.array(tensor, copy=False): a {self.device} tensor of "
                             f"{a.dtype} cannot be read as {np.dtype(dtype or a.dtype)} without "
                             "a copy; use copy=None or copy=True")
        if copy:
            return np.array(a, dtype=dtype, copy=True)
        return a if dtype is None else a.astype(dtype, copy=False)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """DLPack export, zero copy: torch.from_dlpack(t), np.from_dlpack(t) for CPU tensors,
        torch.from_dlpack(t) or cupy.from_dlpack(t) for CUDA tensors (the capsule keeps the
        device memory alive; ``stream`` is the consumer's, made to wait for deepgrad's pending
        work). Writes through the consumer are seen here and the other way round; they do not
        bump this tensor's version counter (as with torch)."""
        return self._be.to_dlpack(self.data, stream=stream, max_version=max_version,
                                  dl_device=dl_device, copy=copy)

    def __dlpack_device__(self):
        """(device type, index): (1, 0) for the CPU (kDLCPU), (2, 0) for CUDA (kDLCUDA)."""
        return self._be.DLPACK_DEVICE

    def __format__(self, spec: str) -> str:
        if spec and self.data.size == 1:
            return format(self.item(), spec)
        return format(repr(self), spec)

    def tolist(self):
        return self.numpy().tolist()

    def item(self) -> float:
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item(): only one-element tensors can be converted to a Python "
                             f"number, this one has shape {self.shape}")
        v = self._be.to_numpy(self.data).reshape(-1)[0]
        return int(v) if self.data.dtype == int64 else float(v)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __iter__(self):
        """The sub-tensors along the first axis (a 0-d tensor is not iterable: it used to
        iterate as empty, silently)."""
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor; use .item() for its value")
        for i in range(self.data.shape[0]):
            yield self[i]

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor with {self.data.size} elements is "
                             f"ambiguous; use .any() / .all() on .numpy()")
        return bool(self.item())

    def detach(self) -> "Tensor":
        """A tensor sharing this data, cut from the tape (and its version counter: an in-place
        update of the detached tensor is seen by the backward of ops that saved this one)."""
        t = _new(self.data, self._be)
        t._base = self if self._base is None else self._base
        return t

    def requires_grad_(self, mode: bool = True) -> "Tensor":
        if mode and self.data.dtype.kind != "f":
            raise TypeError(f"only float tensors can require grad, this one is {self.data.dtype}")
        if not mode and self._node is not None:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor; use detach()")
        self.requires_grad = bool(mode)
        return self

    def to(self, device=None, dtype=None) -> "Tensor":
        """A copy on another device and/or dtype (``to("cuda")``, ``to(deepgrad.float64)``,
        ``to("cpu", "float64")``); returns self when nothing changes. Differentiable."""
        if dtype is None and device is not None and not _is_device(device):
            if isinstance(device, str) and device not in _DTYPES:
                raise ValueError(f"to(): {device!r} is neither a device ('cpu', 'cuda') nor a "
                                 "dtype ('float32', 'float64')")
            device, dtype = None, device
        be = self._be if device is None else get_backend(normalize_device(device))
        dt = self.data.dtype if dtype is None else as_dtype(dtype)
        if be is self._be and dt == self.data.dtype:
            return self
        src_be, src_dt = self._be, self.data.dtype
        if dt == int64 and src_dt.kind == "f" and src_be.HOST_MEMORY and self.data.size:
            _check_int64("to(int64)", self.data)   # NaN/Inf would become -2**63 silently
        if be is src_be:
            data = be.astype(self.data, dt)
        else:
            data = be.from_numpy(src_be.to_numpy(self.data), dt)
        if dt.kind != "f":   # rounding to integers has no gradient (PyTorch: not recorded)
            return _new(data, be)

        def backward(g):
            if be is src_be:
                return (src_be.astype(g, src_dt),)
            return (src_be.from_numpy(be.to_numpy(g), src_dt),)
        return _result(data, be, (self,), backward, "to")

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self) -> "Tensor":
        return self.to("cuda")

    def float(self) -> "Tensor":
        return self.to(dtype=float32)

    def double(self) -> "Tensor":
        return self.to(dtype=float64)

    def clone(self) -> "Tensor":
        """A differentiable copy with its own memory."""
        return _result(self._be.copy(self.data), self._be, (self,), lambda g: (g,), "clone")

    # ---- autograd --------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into each leaf's ``.grad``. A non-scalar tensor needs
        ``grad`` (its shape). The graph's buffers are freed unless retain_graph=True."""
        _ag.backward(self, grad, retain_graph)

    def register_hook(self, fn):
        """Call ``fn(grad)`` when the gradient w.r.t. this tensor is complete during backward;
        fn may return a replacement gradient. Returns a handle with ``remove()``."""
        if not self.requires_grad:
            raise RuntimeError("register_hook: this tensor does not require grad")
        if self._hooks is None:
            self._hooks = {}
        handle = _HookHandle(self)
        self._hooks[handle.id] = fn
        return handle

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this non-leaf tensor after backward (leaves always keep it)."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad: this tensor does not require grad")
        if self._node is not None:
            self._retain = True

    def zero_grad(self) -> None:
        self.grad = None

    # ---- in-place updates (version-counted; refused on tensors that record grad) ----------
    # Each update checks everything that can fail before it writes, and bumps the version only
    # once the write is done: a refused update leaves the values and the version as they were
    # (a bumped version would make a later backward report a modification that never happened).
    def _inplace(self, op, src=None):
        if _S.grad_enabled:
            if self.requires_grad:
                raise RuntimeError(
                    f"{op}: in-place operation on a tensor that requires grad; do manual "
                    f"updates inside `with deepgrad.no_grad():`, or use the out-of-place op")
            if isinstance(src, Tensor) and src.requires_grad:
                raise RuntimeError(
                    f"{op}: the value requires grad, but in-place updates are not recorded on "
                    f"the tape, so its gradient would be lost silently; compute the result out "
                    f"of place (x + v, deepgrad.where, concat, stack), or detach() the value")

    def _write(self, op, fn, *args):
        """Run the backend write ``fn(*args)``; a read-only array (a gradient handed to a hook,
        a broadcast view) raises an error that says so."""
        try:
            fn(*args)
        except ValueError:
            if self._be.HOST_MEMORY and not self.data.flags.writeable:
                raise ValueError(
                    f"{op}: this tensor's memory is read-only (a gradient passed to a hook, "
                    f"whose array backward may share with other inputs, or a broadcast view); "
                    f"compute a new tensor instead (a hook returns g * 2 rather than calling "
                    f"g.mul_(2))") from None
            raise

    def _bump(self):
        """Count one in-place update: this tensor's version and, for a view, its base's."""
        self._version += 1
        b = self._base
        if b is not None:
            b._version += 1

    def _inplace_arith(self, op, name, other):
        self._inplace(name, other)
        o = _operand(name, self, other)
        o = o.data if isinstance(o, Tensor) else o
        try:
            res = op(self.data, o)
        except ValueError as e:
            raise _broadcast_error(name, self.data.shape, getattr(o, "shape", ()), e) from None
        if tuple(res.shape) != tuple(self.data.shape):
            raise ValueError(f"{name}: result shape {tuple(res.shape)} does not match the "
                             f"tensor's shape {self.shape}")
        if res.dtype != self.data.dtype:
            raise TypeError(f"{name}: the result is {res.dtype} but this tensor is "
                            f"{self.data.dtype} and cannot hold it in place; use the "
                            f"out-of-place op, or convert first with .float() / .double()")
        self._write(name, self._be.copy_, self.data, res)
        self._bump()
        return self

    def add_(self, other) -> "Tensor":
        return self._inplace_arith(self._be.add, "add_", other)

    def sub_(self, other) -> "Tensor":
        return self._inplace_arith(self._be.sub, "sub_", other)

    def mul_(self, other) -> "Tensor":
        return self._inplace_arith(self._be.mul, "mul_", other)

    def div_(self, other) -> "Tensor":
        return self._inplace_arith(self._be.div, "div_", other)

    __iadd__ = add_
    __isub__ = sub_
    __imul__ = mul_
    __itruediv__ = div_

    def fill_(self, value: float) -> "Tensor":
        self._inplace("fill_")
        if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
            raise TypeError(f"fill_: the value must be a real number, got "
                            f"{type(value).__name__} {value!r}")
        self._write("fill_", self._be.copy_, self.data,
                    self._be.full(self.shape, float(value), self.data.dtype))
        self._bump()
        return self

    def zero_(self) -> "Tensor":
        return self.fill_(0.0)

    def copy_(self, src) -> "Tensor":
        """Copy src's values into this tensor in place (src broadcasts to this shape)."""
        self._inplace("copy_", src)
        try:
            s = src if isinstance(src, Tensor) else Tensor(src, dtype=self.data.dtype)
        except (TypeError, ValueError) as e:
            raise type(e)(f"copy_: cannot copy from {type(src).__name__}: {e}") from None
        try:
            ok = np.broadcast_shapes(tuple(s.data.shape), tuple(self.data.shape)) == self.shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"copy_: the source of shape {s.shape} does not broadcast to this "
                             f"tensor's shape {self.shape}")
        if s._be is not self._be:
            s = s.to(self.device)
        self._write("copy_", self._be.copy_, self.data,
                    self._be.astype(s.data, self.data.dtype))
        self._bump()
        return self

    def normal_(self, mean: float = 0.0, std: float = 1.0) -> "Tensor":
        self._inplace("normal_")
        self._write("normal_", self._be.copy_, self.data,
                    self._be.normal(self.shape, mean, std, self.data.dtype))
        self._bump()
        return self

    def uniform_(self, low: float = 0.0, high: float = 1.0) -> "Tensor":
        self._inplace("uniform_")
        self._write("uniform_", self._be.copy_, self.data,
                    self._be.uniform(self.shape, low, high, self.data.dtype))
        self._bump()
        return self

    def __setitem__(self, index, value) -> None:
        self._inplace("__setitem__", value)
        if isinstance(value, Tensor):
            if value._be is not self._be:
                raise _device_mismatch("__setitem__", self, value)
            v = value.data
        elif isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
            v = float(value)
        else:
            a = np.asarray(value)
            if a.dtype.kind not in "fiub":
                raise TypeError(f"__setitem__: cannot assign a value of type "
                                f"{type(value).__name__} (dtype {a.dtype}) to a tensor; assign "
                                f"a real number, an array or a Tensor")
            v = self._be.from_numpy(a, self.data.dtype)
        idx = _index(index, self._be)
        try:
            self._be.setitem_(self.data, idx, v)
        except IndexError as e:
            raise IndexError(f"__setitem__: index {index!r} into a tensor of shape "
                             f"{self.shape}: {e}") from None
        except ValueError as e:
            if self._be.HOST_MEMORY and not self.data.flags.writeable:
                self._write("__setitem__", self._be.setitem_, self.data, idx, v)
            raise ValueError(f"__setitem__: cannot assign a value of shape "
                             f"{tuple(getattr(v, 'shape', ()))} at index {index!r} of a tensor "
                             f"of shape {self.shape}: {e}") from None
        self._bump()


class _Mask(Tensor):
    """The result of a comparison (a > b): a tensor of 1.0 / 0.0 (in the operands' dtype) that
    indexing reads as a boolean mask, so a[a > 0] selects, as in numpy and PyTorch, instead of
    gathering the elements at positions 0 and 1. Arithmetic on it gives plain tensors."""
    __slots__ = ()


def _new_mask(data, be) -> "Tensor":
    t = _new(data, be)
    t.__class__ = _Mask
    return t


_ag._bind_tensor(Tensor, _new)   # autograd works on Tensors without importing this module

class _HookHandle:
    __slots__ = ("tensor", "id")
    _ids = itertools.count(1)  # next() on a count is atomic: unique ids across threads

    def __init__(self, tensor):
        self.tensor = tensor
        self.id = next(_HookHandle._ids)

    def remove(self) -> None:
        hooks = self.tensor._hooks
        if hooks is not None:
            hooks.pop(self.id, None)
            if not hooks:
                self.tensor._hooks = None


def _is_device(x) -> bool:
    if not isinstance(x, str):
        return False
    try:
        normalize_device(x)
        return True
    except ValueError:
        return False


def _index(index, be):
    """A backend index: Tensors and lists become int64 (or bool) numpy arrays (every backend
    reads index arrays on the host)."""
    items = index if isinstance(index, tuple) else (index,)
    out = []
    for i in items:
        if isinstance(i, Tensor):
            a = i._be.to_numpy(i.data)
            i = (a != 0) if i.__class__ is _Mask else _int_index(a)
        elif isinstance(i, (list, np.ndarray)):
            i = _int_index(np.asarray(i))
        elif isinstance(i, (bool, np.bool_)):
            raise IndexError("a boolean scalar is not a valid index")
        elif isinstance(i, numbers.Integral):
            i = int(i)
        out.append(i)   # index arrays stay on the host on every backend (backend.getitem)
    return tuple(out) if isinstance(index, tuple) else out[0]


def _int_index(a):
    if a.dtype.kind in "iub":
        return a.astype(np.int64) if a.dtype.kind in "iu" else a
    if a.dtype.kind == "f" and a.size and np.all(a == np.round(a)):
        return a.astype(np.int64)
    if a.size == 0:
        return a.astype(np.int64)
    raise IndexError(f"tensors used as indices must hold integers or booleans, got {a.dtype}")


# ---------------------------------------------------------------------------------------------
# creation


_SHARABLE = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64))


def from_numpy(a: np.ndarray, requires_grad: bool = False) -> Tensor:
    """A CPU tensor that SHARES ``a``'s memory (like torch.from_numpy): writes on either side are
    seen on the other. ``a`` must be a C-contiguous, writable array of float32, float64 or
    int64; anything else raises with the conversion to use (deepgrad.tensor copies)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy array, got {type(a).__name__}; "
                        "deepgrad.tensor(x) converts (and copies) other data")
    if not a.dtype.isnative and a.dtype.newbyteorder("=") in _SHARABLE:
        # (checked first: the dtype message below suggested float32 for a '>f8' array)
        raise ValueError(f"from_numpy: the array is not in the machine's byte order; use "
                         f"a.astype(a.dtype.newbyteorder('=')) (a copy) or deepgrad.tensor(a)")
    if a.dtype not in _SHARABLE:
        raise TypeError(f"from_numpy: arrays of {a.dtype} cannot be shared; convert with "
                        "a.astype(np.float32) (a copy) or use deepgrad.tensor(a)")
    if not a.flags.c_contiguous:
        raise ValueError("from_numpy: the array is not C-contiguous; pass "
                         "np.ascontiguousarray(a) (a copy) or use deepgrad.tensor(a)")
    if not a.flags.writeable:
        raise ValueError("from_numpy: the array is read-only; deepgrad's in-place updates "
                         "would fail on it: pass a writable array or use deepgrad.tensor(a)")
    if not a.dtype.isnative:
        raise ValueError("from_numpy: the array is not in the machine's byte order; use "
                         "a.astype(a.dtype.newbyteorder('='))")
    t = _new(a, _cpu)
    if requires_grad:
        t.requires_grad_(True)
    return t


def from_dlpack(x, requires_grad: bool = False) -> Tensor:
    """A tensor sharing the memory of any DLPack producer, zero copy: on the CPU (a torch CPU
    tensor, a numpy array, a deepgrad tensor, ...) or on CUDA (a torch CUDA tensor, a CuPy
    array, ...; needs a deepgrad built with CUDA). Writes on either side are seen on the other.
    Non-contiguous, read-only or unsupported-dtype memory is refused, naming the copy to make."""
    if hasattr(x, "__dlpack_device__"):
        dev = tuple(int(v) for v in x.__dlpack_device__())
        if dev[0] == 2:   # kDLCUDA
            try:
                be = get_backend("cuda")
            except RuntimeError as e:
                raise BufferError(f"from_dlpack: the producer's memory is on CUDA (DLPack device "
                                  f"{dev}) but {e}; or copy it to the host first (x.cpu())"
                                  ) from None
            t = _new(be.from_dlpack(x), be)
            if requires_grad:
                t.requires_grad_(True)
            return t
        if dev[0] != 1:
            raise BufferError(f"from_dlpack: the producer's memory is on DLPack device {dev}, "
                              "neither the CPU nor CUDA; copy it to the host first")
    try:
        a = _cpu.from_dlpack(x)
    except (TypeError, BufferError, RuntimeError) as e:
        raise type(e)(f"from_dlpack: {e}") from None
    return from_numpy(a, requires_grad)   # refuses strided or read-only memory, naming why


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (array-like or Tensor). Float numpy arrays and
    Tensors keep their dtype; Python numbers, lists and integer arrays become float32 unless
    ``dtype`` says otherwise (int64 is allowed for labels and indices)."""
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def _shape(shape) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for n in shape:
        if not isinstance(n, (int, np.integer)) or isinstance(n, (bool, np.bool_)) or n < 0:
            raise ValueError(f"invalid shape {shape}: sizes must be non-negative ints")
    return tuple(int(n) for n in shape)


def _make(data_fn, shape, dtype, device, requires_grad) -> Tensor:
    be = get_backend(device) if device is not None else _cpu
    dt = as_dtype(dtype) or float32
    s = _shape(shape)
    try:
        data = data_fn(be, s, dt)
    except (MemoryError, ValueError) as e:
        n = 1
        for k in s:
            n *= k
        raise MemoryError(f"cannot allocate a tensor of shape {s} ({n} elements of {dt}, "
                          f"{n * dt.itemsize / 2 ** 30:.3g} GiB): {e}") from None
    t = _new(data, be)
    if requires_grad:
        t.requires_grad_(True)
    return t


def zeros(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros."""
    return _make(lambda be, s, d: be.zeros(s, d), shape, dtype, device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones."""
    return _make(lambda be, s, d: be.full(s, 1.0, d), shape, dtype, device, requires_grad)


def full(shape, value: float, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor filled with ``value``."""
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"full(): the fill value must be a real number, got "
                        f"{type(value).__name__} {value!r}")
    return _make(lambda be, s, d: be.full(s, float(value), d), (shape,) if not isinstance(
        shape, (tuple, list)) else (tuple(shape),), dtype, device, requires_grad)


def randn(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from deepgrad's seeded generator."""
    return _make(lambda be, s, d: be.normal(s, 0.0, 1.0, d), shape, dtype, device, requires_grad)


def rand(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Uniform [0, 1) samples from deepgrad's seeded generator."""
    return _make(lambda be, s, d: be.uniform(s, 0.0, 1.0, d), shape, dtype, device, requires_grad)


def _like(t, fn, dtype, device, requires_grad):
    return fn(*t.shape, dtype=dtype or t.dtype, device=device or t.device,
              requires_grad=requires_grad)


def zeros_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(t, zeros, dtype, device, requires_grad)


def ones_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(t, ones, dtype, device, requires_grad)


def randn_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(t, randn, dtype, device, requires_grad)


def rand_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(t, rand, dtype, device, requires_grad)


def full_like(t: Tensor, value: float, dtype=None, device=None,
              requires_grad: bool = False) -> Tensor:
    return full(t.shape, value, dtype=dtype or t.dtype, device=device or t.device,
                requires_grad=requires_grad)


def arange(*args, dtype=None, device=None) -> Tensor:
    """Evenly spaced values, like numpy.arange (float32 unless dtype is given)."""
    if len(args) == 3 and args[2] == 0:
        raise ValueError("arange(): step must be nonzero")
    try:
        a = np.arange(*args)
    except (TypeError, ValueError) as e:
        raise type(e)(f"arange{args}: {e}") from None
    return Tensor(a, dtype=dtype, device=device)
