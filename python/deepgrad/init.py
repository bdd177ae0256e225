"""Weight initialisers (also reachable as ``deepgrad.nn.init``).

Every function fills a Tensor/Parameter in place, returns it, and draws from deepgrad's single
seeded generator (``deepgrad.manual_seed``). Weights are stored ``(fan_in, fan_out)`` as in
``y = x @ W``; for tensors with more than two axes the last axis is fan_out and the product of
the others fan_in. Layers also take the names listed in ``INITIALIZERS`` (``init="he"``).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from . import random as _random
from .backend import copy_into

__all__ = ["calculate_gain", "constant_", "zeros_", "ones_", "normal_", "uniform_",
           "xavier_uniform_", "xavier_normal_", "glorot_uniform_", "glorot_normal_",
           "kaiming_uniform_", "kaiming_normal_", "he_uniform_", "he_normal_", "lecun_normal_",
           "orthogonal_", "get", "default_for", "INITIALIZERS",
           "constant", "zeros", "ones", "normal", "uniform", "xavier_uniform", "xavier_normal",
           "glorot_uniform", "glorot_normal", "kaiming_uniform", "kaiming_normal", "he_uniform",
           "he_normal", "lecun_normal", "orthogonal"]


def calculate_gain(nonlinearity: str | None, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity, as torch.nn.init.calculate_gain: 1 for linear,
    identity and sigmoid, 5/3 for tanh, sqrt(2) for relu, sqrt(2 / (1 + a²)) for leaky_relu
    (a = `param`, default 0.01), 3/4 for selu; other activations get 1."""
    nl = (nonlinearity or "linear").lower()
    if nl in ("linear", "identity", "sigmoid", "conv1d", "conv2d", "conv3d"):
        return 1.0
    if nl == "tanh":
        return 5.0 / 3.0
    if nl == "relu":
        return math.sqrt(2.0)
    if nl == "leaky_relu":
        a = 0.01 if param is None else param
        _finite("calculate_gain", param=a)
        return math.sqrt(2.0 / (1.0 + a * a))
    if nl == "selu":
        return 0.75
    if nl in ("elu", "gelu", "silu", "swish", "softplus", "softsign", "step"):
        return 1.0
    raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}")


def _fans(shape: tuple) -> tuple[int, int]:
    if len(shape) == 0:
        raise ValueError("init: cannot compute fans of a scalar tensor")
    if len(shape) == 1:
        return int(shape[0]), int(shape[0])
    fan_out = int(shape[-1])
    fan_in = int(np.prod(shape[:-1]))
    return fan_in, fan_out


def _fill(t, values: np.ndarray):
    copy_into(t.data, values)
    return t


def _shape(t) -> tuple:
    from .tensor import Tensor
    if not isinstance(t, Tensor):
        raise TypeError(f"init: expected a Tensor or Parameter to fill in place, got "
                        f"{type(t).__name__}; wrap an array with deepgrad.Tensor(a)")
    return tuple(t.data.shape)


def _finite(fn: str, **values) -> None:
    """Each value a finite real number (ValueError naming the function and the argument: a NaN
    std filled the weights with NaN silently, a NaN bound raised numpy's OverflowError)."""
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not math.isfinite(v):
            raise ValueError(f"{fn}: {k} must be a finite number, got {v!r}")


def _empty(t) -> bool:
    """A zero-element tensor: nothing to fill (fans of 0 divided by zero), as torch."""
    return math.prod(_shape(t)) == 0


def constant_(t, value: float):
    """Fill with `value`."""
    return _fill(t, np.full(_shape(t), float(value)))


def zeros_(t):
    """Fill with 0."""
    return constant_(t, 0.0)


def ones_(t):
    """Fill with 1."""
    return constant_(t, 1.0)


def normal_(t, mean: float = 0.0, std: float = 1.0):
    """Samples from N(mean, std²)."""
    _finite("normal_", mean=mean, std=std)
    if std < 0:
        raise ValueError(f"normal_: std must be >= 0, got {std}")
    return _fill(t, _random.generator().standard_normal(_shape(t)) * std + mean)


def uniform_(t, a: float = 0.0, b: float = 1.0):
    """Samples from U[a, b)."""
    _finite("uniform_", a=a, b=b)
    if b < a:
        raise ValueError(f"uniform_: need a <= b, got a={a}, b={b}")
    return _fill(t, _random.generator().uniform(a, b, _shape(t)))


def xavier_uniform_(t, gain: float = 1.0):
    """Glorot & Bengio (2010): U[-g·sqrt(6/(fan_in+fan_out)), +...]."""
    _finite("xavier_uniform_", gain=gain)
    if _empty(t):
        return t
    fi, fo = _fans(_shape(t))
    bound = gain * math.sqrt(6.0 / (fi + fo))
    return uniform_(t, -bound, bound)


def xavier_normal_(t, gain: float = 1.0):
    """Glorot & Bengio (2010): N(0, g²·2/(fan_in+fan_out))."""
    _finite("xavier_normal_", gain=gain)
    if _empty(t):
        return t
    fi, fo = _fans(_shape(t))
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fi + fo)))


def _fan(t, mode: str) -> int:
    fi, fo = _fans(_shape(t))
    if mode == "fan_in":
        return fi
    if mode == "fan_out":
        return fo
    raise ValueError(f"init: mode must be 'fan_in' or 'fan_out', got {mode!r}")


def kaiming_uniform_(t, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "relu"):
    """He et al. (2015): U[-b, b] with b = gain·sqrt(3/fan); `a` is the leaky_relu slope."""
    if _empty(t):
        return t
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(t, mode))
    return uniform_(t, -bound, bound)


def kaiming_normal_(t, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "relu"):
    """He et al. (2015): N(0, gain²/fan); `a` is the leaky_relu slope."""
    if _empty(t):
        return t
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(t, mode))
    return normal_(t, 0.0, std)


def lecun_normal_(t):
    """LeCun: N(0, 1/fan_in) (the initialiser SELU networks need; not truncated)."""
    if _empty(t):
        return t
    return normal_(t, 0.0, 1.0 / math.sqrt(_fan(t, "fan_in")))


def orthogonal_(t, gain: float = 1.0):
    """A (semi-)orthogonal matrix times `gain` (Saxe et al. 2013), from the QR decomposition of a
    Gaussian matrix with the sign of diag(R) folded in, as torch.nn.init.orthogonal_. Tensors
    with more than two axes are flattened to (prod(shape[:-1]), shape[-1])."""
    shape = _shape(t)
    if len(shape) < 2:
        raise ValueError(f"orthogonal_: needs at least 2 dimensions, got shape {shape}")
    rows, cols = int(np.prod(shape[:-1])), int(shape[-1])
    a = _random.generator().standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _fill(t, (gain * q).reshape(shape))


glorot_uniform_ = xavier_uniform_
glorot_normal_ = xavier_normal_
he_uniform_ = kaiming_uniform_
he_normal_ = kaiming_normal_

# The same functions without the in-place underscore (Keras/JAX-style spelling).
constant, zeros, ones, normal, uniform = constant_, zeros_, ones_, normal_, uniform_
xavier_uniform, xavier_normal, glorot_uniform, glorot_normal = (
    xavier_uniform_, xavier_normal_, xavier_uniform_, xavier_normal_)
kaiming_uniform, kaiming_normal, he_uniform, he_normal = (
    kaiming_uniform_, kaiming_normal_, kaiming_uniform_, kaiming_normal_)
lecun_normal, orthogonal = lecun_normal_, orthogonal_

#: names accepted by layers' ``init=`` (gain chosen from the layer's activation where it applies)
INITIALIZERS = ("he", "he_normal", "he_uniform", "kaiming", "kaiming_normal", "kaiming_uniform",
                "xavier", "xavier_uniform", "xavier_normal", "glorot", "glorot_uniform",
                "glorot_normal", "lecun", "lecun_normal", "orthogonal", "normal", "uniform",
                "zeros", "ones")

_RELU_FAMILY = ("relu", "leaky_relu", "elu", "gelu", "silu", "swish", "softplus")


def _gain_name(activation: str | None) -> str:
    act = (activation or "identity").lower()
    if act in ("relu", "tanh", "leaky_relu", "selu", "sigmoid"):
        return act
    return "relu" if act in _RELU_FAMILY else "linear"


def default_for(activation: str | None) -> str:
    """The default init name for a layer followed by `activation`: "he" for the ReLU family
    (relu, leaky_relu, elu, gelu, silu, softplus), "lecun" for selu, "xavier" otherwise."""
    act = (activation or "identity").lower()
    if act == "selu":
        return "lecun"
    return "he" if act in _RELU_FAMILY else "xavier"


def get(init, activation: str | None = None, alpha: float = 0.01) -> Callable:
    """Resolve an ``init=`` argument into a function ``f(tensor) -> tensor``.

    `init` may be a name from INITIALIZERS, a callable (used as is) or None (the default for
    `activation`, see default_for). He/Kaiming use the gain of `activation` (relu gain for the
    ReLU family) and fan_in; Xavier uses gain 1 (Glorot & Bengio's normalized init, and
    PyTorch's xavier_*_ default: with tanh it keeps the backward signal of a deep net level,
    while the gain 5/3 makes it grow ~100x over 20 layers);
    "normal" is N(0, 0.01²) and "uniform" U[-0.05, 0.05]."""
    if callable(init):
        return init
    name = default_for(activation) if init is None else str(init).lower()
    gname = _gain_name(activation)
    if name in ("he", "he_normal", "kaiming", "kaiming_normal", "he_uniform", "kaiming_uniform"):
        gn = "relu" if gname in ("linear", "sigmoid") else gname
        fn = kaiming_uniform_ if name.endswith("uniform") else kaiming_normal_
        return lambda t: fn(t, a=alpha, nonlinearity=gn)
    if name in ("xavier", "xavier_uniform", "glorot", "glorot_uniform", "xavier_normal",
                "glorot_normal"):
        fn = xavier_normal_ if name.endswith("normal") else xavier_uniform_
        return lambda t: fn(t, gain=1.0)
    if name in ("lecun", "lecun_normal"):
        return lecun_normal_
    if name == "orthogonal":
        return orthogonal_
    if name == "normal":
        return lambda t: normal_(t, 0.0, 0.01)
    if name == "uniform":
        return lambda t: uniform_(t, -0.05, 0.05)
    if name == "zeros":
        return zeros_
    if name == "ones":
        return ones_
    raise ValueError(f"unknown init {init!r}; use one of {', '.join(INITIALIZERS)} or a callable")
