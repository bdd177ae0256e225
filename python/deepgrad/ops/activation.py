"""Activations (elementwise, csrc/cpu/activations.cpp and csrc/cuda/activations.cu through the
backend: the formulas of csrc/deepgrad/math.h) and the row-wise softmax / log-softmax
(csrc/cpu/softmax.cpp, csrc/cuda/softmax_loss.cu). Each is one tape node."""
from __future__ import annotations

from ..autograd import record as _result
from ..tensor import Tensor, _axis, _not_tensor

ACTIVATIONS = ("identity", "step", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu",
               "gelu", "softplus", "silu", "softsign")
_ACT_SET = frozenset(ACTIVATIONS)
_ALIASES = {"swish": "silu", "linear": "identity", "none": "identity", None: "identity"}
_DEFAULT_ALPHA = {"leaky_relu": 0.01, "elu": 1.0}


def _kernel_dtype(op, x, err):
    """A native kernel refused x: for a tensor of a non-float dtype, name the op and the
    Tensor conversion (the kernel's own message names numpy's); else ``err`` itself."""
    if isinstance(x, Tensor) and x.data.dtype.kind != "f":
        return TypeError(f"{op}: the input is a {x.data.dtype} tensor but {op} needs float32 or "
                         f"float64; convert it with .float() or .double()")
    return err


def activation_name(name) -> str:
    """The native name for an activation spec ("relu", "swish" -> "silu", None -> "identity");
    ValueError listing the choices for an unknown one."""
    n = _ALIASES.get(name.lower() if isinstance(name, str) else name,
                     name.lower() if isinstance(name, str) else name)
    if n not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)} "
                         f"(or 'swish', or None for identity)")
    return n


def activation(x: Tensor, name: str, alpha: float | None = None) -> Tensor:
    """act(x) elementwise for any activation name, as one tape node (``alpha``: leaky_relu slope,
    default 0.01; elu scale, default 1.0)."""
    name = activation_name(name)
    if alpha is None:
        alpha = _DEFAULT_ALPHA.get(name, 0.01)
    elif alpha.__class__ is not float:
        alpha = _alpha(name, alpha)
    return _act(x, name, alpha)


def _act(x: Tensor, name: str, alpha: float) -> Tensor:
    try:
        be = x._be
    except AttributeError:
        raise _not_tensor(name, x) from None
    xd = x.data
    try:
        y = be.act_forward(xd, name, alpha)
    except TypeError as e:
        raise _kernel_dtype(name, x, e) from None
    return _result(y, be, (x,), lambda g: (be.act_backward(g, xd, y, name, alpha),), name, (x,),
                   out=True)


def _alpha(op, alpha) -> float:
    if isinstance(alpha, (str, bytes)) or not hasattr(alpha, "__float__"):
        raise TypeError(f"{op}: alpha must be a number, got {type(alpha).__name__} {alpha!r}")
    return float(alpha)


def identity(x: Tensor) -> Tensor:
    """x itself (recorded, so hooks on the output see dL/dx)."""
    return _act(x, "identity", 0.01)


def step(x: Tensor) -> Tensor:
    """Heaviside step: 1 where x > 0 else 0 (zero gradient: the perceptron's output)."""
    return _act(x, "step", 0.01)


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x))."""
    return _act(x, "sigmoid", 0.01)


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return _act(x, "tanh", 0.01)


def relu(x: Tensor) -> Tensor:
    """max(x, 0)."""
    return _act(x, "relu", 0.01)


def leaky_relu(x: Tensor, alpha: float = 0.01) -> Tensor:
    """x where x > 0, else alpha * x."""
    return _act(x, "leaky_relu", _alpha("leaky_relu", alpha))


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """x where x > 0, else alpha * (exp(x) - 1)."""
    return _act(x, "elu", _alpha("elu", alpha))


def selu(x: Tensor) -> Tensor:
    """Scaled ELU with the self-normalising constants."""
    return _act(x, "selu", 0.01)


def gelu(x: Tensor) -> Tensor:
    """Gaussian error linear unit."""
    return _act(x, "gelu", 0.01)


def softplus(x: Tensor) -> Tensor:
    """log(1 + exp(x)), computed stably."""
    return _act(x, "softplus", 0.01)


def silu(x: Tensor) -> Tensor:
    """x * sigmoid(x) (a.k.a. swish)."""
    return _act(x, "silu", 0.01)


swish = silu


def softsign(x: Tensor) -> Tensor:
    """x / (1 + |x|)."""
    return _act(x, "softsign", 0.01)


# ---------------------------------------------------------------------------------------------
# softmax


def _rowwise(x: Tensor, axis: int, fwd, bwd, name: str) -> Tensor:
    be = x._be
    nd = x.data.ndim
    ax = _axis(name, axis, nd)
    if nd == 0:  # one element (PyTorch): the op over a (1,) row
        return _rowwise(x.reshape(1), 0, fwd, bwd, name).reshape(())
    perm = None if ax == nd - 1 else tuple(i for i in range(nd) if i != ax) + (ax,)
    xd = x.data if perm is None else be.transpose(x.data, perm)
    shape = xd.shape
    if x.data.size == 0:   # no rows, or rows of no element: nothing to normalise
        return _result(be.zeros(x.data.shape, x.data.dtype), be, (x,),
                       lambda g: (be.zeros(g.shape, g.dtype),), name)
    try:
        y = be.reshape(fwd(be.reshape(xd, (-1, shape[-1]))), shape)
    except TypeError as e:
        raise _kernel_dtype(name, x, e) from None
    inv = None if perm is None else tuple(sorted(range(nd), key=lambda i: perm[i]))

    def backward(g):
        gd = g if perm is None else be.transpose(g, perm)
        dx = be.reshape(bwd(be.reshape(gd, (-1, shape[-1])), be.reshape(y, (-1, shape[-1]))),
                        shape)
        return (dx if inv is None else be.transpose(dx, inv),)
    out = y if inv is None else be.transpose(y, inv)
    return _result(out, be, (x,), backward, name, out=inv is None)   # y is the output itself


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``axis`` (default: last)."""
    if not isinstance(x, Tensor):
        raise _not_tensor("softmax", x)
    be = x._be
    return _rowwise(x, axis, be.softmax, be.softmax_backward, "softmax")


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x - logsumexp(x) along ``axis``, computed stably."""
    if not isinstance(x, Tensor):
        raise _not_tensor("log_softmax", x)
    be = x._be
    return _rowwise(x, axis, be.log_softmax, be.log_softmax_backward, "log_softmax")
