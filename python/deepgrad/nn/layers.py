"""Layers: Dense, activation modules, Sequential, Residual, BatchNorm1d, LayerNorm, Dropout,
Perceptron. Inputs are (N, features) Tensors (numpy arrays are converted)."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from .. import functional as F
from .. import init as _init
from ..autograd import _S
from ..ops.linalg import dense_stack as _dense_stack
from ..tensor import Tensor
from .module import Module
from .parameter import Parameter

__all__ = ["Dense", "Linear", "Sequential", "Residual", "BatchNorm1d", "LayerNorm", "Dropout",
           "Perceptron", "Activation", "Identity", "Step", "Sigmoid", "Tanh", "ReLU",
           "LeakyReLU", "ELU", "SELU", "GELU", "Softplus", "SiLU", "Swish", "Softsign",
           "Softmax", "LogSoftmax"]

def _check_positive_int(layer: str, name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{layer}: {name} must be a positive int, got {v!r}")


def _check_float(layer: str, name: str, v, lo: float = -np.inf, hi: float = np.inf,
                 hi_open: bool = False) -> float:
    """v as a finite float in [lo, hi] (or [lo, hi) with hi_open); ValueError naming the layer,
    the argument and the accepted range otherwise (a NaN slope or eps made every output NaN)."""
    rng = f" in [{lo:g}, {hi:g}{')' if hi_open else ']'}" if np.isfinite(lo) and np.isfinite(hi) \
        else (f" >= {lo:g}" if np.isfinite(lo) else "")
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"{layer}: {name} must be a finite number{rng}, got {v!r} "
                         f"({type(v).__name__})")
    f = float(v)
    if not (np.isfinite(f) and lo <= f and (f < hi if hi_open else f <= hi)):
        raise ValueError(f"{layer}: {name} must be a finite number{rng}, got {v!r}")
    return f


def _dtype(dtype, layer: str = "layer") -> np.dtype:
    try:
        dt = np.dtype(dtype if dtype is not None else np.float32)
    except TypeError:
        raise TypeError(f"{layer}: dtype {dtype!r} is not a dtype; use 'float32' or "
                        "'float64'") from None
    if dt not in (np.float32, np.float64):
        raise TypeError(f"{layer}: parameters must be float32 or float64, got {dt}")
    return dt


def _numbers(x, layer: str, what: str = "the input") -> np.ndarray:
    """Array-like x as a numpy array of real numbers, or an error naming the layer and ``what``
    (strings, None, objects, complex, ragged lists)."""
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as e:   # ragged nested lists
        raise ValueError(f"{layer}: {what} must be a Tensor or an array of numbers, got "
                         f"a {type(x).__name__} numpy cannot read as one ({e})") from None
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{layer}: {what} must be a Tensor or an array of real numbers, "
                        f"got a {type(x).__name__} of dtype {a.dtype}")
    return a


def _as_input(x, layer: str, features: int | None = None, dtype=None) -> Tensor:
    """x as a Tensor with at least one sample, checking the feature axis. Arrays are converted
    (to `dtype`, the layer's parameter dtype, when given)."""
    if not isinstance(x, Tensor):
        a = _numbers(x, layer)
        if dtype is None and a.dtype.kind in "biu":
            dtype = np.float32
        x = Tensor(a, dtype=dtype)
    shape = tuple(x.shape)
    if len(shape) == 0:
        raise ValueError(f"{layer}: expected an input of shape (N, features), got a scalar")
    if shape[0] == 0:
        raise ValueError(f"{layer}: empty batch (input shape {shape}); need at least one sample")
    if features is not None and shape[-1] != features:
        raise ValueError(f"{layer}: input has {shape[-1]} features (shape {shape}) but the layer "
                         f"expects {features}")
    return x


class Dense(Module):
    """y = act(x @ W + b), one fused native op forward and backward.

    x (N, in_features) -> y (N, out_features); W (in_features, out_features), b (out_features,).
    Default init (``init=None``): He/Kaiming normal with the activation's gain for the ReLU
    family (relu, leaky_relu, elu, gelu, silu, softplus), LeCun normal for selu, Xavier/Glorot
    uniform (gain 1) otherwise; biases start at zero. ``init`` also takes any name of
    deepgrad.init.INITIALIZERS or a callable filling the weight in place. ``alpha`` is the
    leaky_relu slope (default 0.01) / elu scale (default 1.0), as in PyTorch.

    ``stats``: None, or a layer statistics record (``F.layer_record()``) handed to every
    forward's ``F.dense(..., stats=)``: the fused kernels then fill it with the pre-activation's
    sums, the saturated and alive counts and ||dL/dy||^2 of each recorded step, with no extra
    pass (the GradientMonitor sets it)."""

    stats = None

    def __init__(self, in_features: int, out_features: int, activation: str | None = None,
                 bias: bool = True, init=None, alpha: float | None = None, dtype=None):
        super().__init__()
        for n, v in (("in_features", in_features), ("out_features", out_features)):
            _check_positive_int("Dense", n, v)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.activation = F.activation_name(activation)
        self.alpha = _check_float("Dense", "alpha", F._DEFAULT_ALPHA.get(self.activation, 0.01)
                                  if alpha is None else alpha)
        dt = _dtype(dtype, "Dense")
        self.weight = Parameter(np.zeros((self.in_features, self.out_features), dtype=dt))
        _init.get(init, self.activation, self.alpha)(self.weight)
        self.bias = Parameter(np.zeros(self.out_features, dtype=dt)) if bias else None

    def forward(self, x) -> Tensor:
        d = getattr(x, "data", None)
        if not isinstance(x, Tensor) or d.ndim != 2 or d.shape[1] != self.in_features \
                or d.shape[0] == 0:
            return self._forward_any_shape(x)
        try:
            return F.dense(x, self.weight, self.bias, self.activation, self.alpha,
                           stats=self.stats)
        except TypeError:
            if x.dtype != self.weight.dtype:
                return self._forward_any_shape(x)  # raises, naming the layer
            raise

    def _forward_any_shape(self, x) -> Tensor:
        """Arrays and lists are converted to the parameters' dtype. As in PyTorch, a 1-D input
        (in_features,) is one sample -> (out_features,), and (..., in_features) maps the last
        axis -> (..., out_features) (the leading axes flattened into one batch)."""
        name = f"Dense({self.in_features} -> {self.out_features})"
        x = _as_input(x, name, self.in_features, self.weight.dtype)
        if x.dtype != self.weight.dtype:
            raise TypeError(f"{name}: input has dtype {x.dtype} but the layer's parameters are "
                            f"{self.weight.dtype}; convert the input (x.to({str(self.weight.dtype)!r})) "
                            f"or the model (model.to({str(x.dtype)!r}))")
        shape = tuple(x.shape)
        if len(shape) == 2:
            return F.dense(x, self.weight, self.bias, self.activation, self.alpha,
                           stats=self.stats)
        y = F.dense(x.reshape(-1, self.in_features), self.weight, self.bias, self.activation,
                    self.alpha, stats=self.stats)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        s = f"{self.in_features} -> {self.out_features}"
        if self.activation != "identity":
            s += f", activation={self.activation}"
            if self.activation in ("leaky_relu", "elu"):
                s += f", alpha={self.alpha}"
        if self.bias is None:
            s += ", bias=False"
        return s


Linear = Dense


class Activation(Module):
    """Applies a native activation by name (``alpha`` for leaky_relu / elu)."""

    def __init__(self, activation: str, alpha: float = 0.01):
        super().__init__()
        self.activation = F.activation_name(activation)
        self.alpha = _check_float(type(self).__name__, "alpha", alpha)

    def forward(self, x) -> Tensor:
        x = _as_input(x, type(self).__name__)
        return F.activation(x, self.activation, self.alpha)

    def extra_repr(self) -> str:
        if type(self) is Activation:
            return repr(self.activation)
        return f"alpha={self.alpha}" if self.activation in ("leaky_relu", "elu") else ""


def _act_class(cls_name: str, act: str, default_alpha: float | None = None, doc: str = ""):
    if default_alpha is None:
        def __init__(self):
            Activation.__init__(self, act)
    else:
        def __init__(self, alpha: float = default_alpha):
            Activation.__init__(self, act, alpha)
    return type(cls_name, (Activation,), {"__init__": __init__, "__doc__": doc,
                                          "__module__": __name__})


Identity = _act_class("Identity", "identity", doc="y = x.")
Step = _act_class("Step", "step", doc="y = 1 if x > 0 else 0 (the perceptron's threshold; "
                  "its derivative is zero).")
Sigmoid = _act_class("Sigmoid", "sigmoid", doc="y = 1 / (1 + exp(-x)).")
Tanh = _act_class("Tanh", "tanh", doc="y = tanh(x).")
ReLU = _act_class("ReLU", "relu", doc="y = max(x, 0).")
LeakyReLU = _act_class("LeakyReLU", "leaky_relu", 0.01, doc="y = x if x > 0 else alpha·x.")
ELU = _act_class("ELU", "elu", 1.0, doc="y = x if x > 0 else alpha·(exp(x) - 1).")
SELU = _act_class("SELU", "selu", doc="Scaled ELU (Klambauer et al. 2017).")
GELU = _act_class("GELU", "gelu", doc="y = x·Φ(x).")
Softplus = _act_class("Softplus", "softplus", doc="y = log(1 + exp(x)).")
SiLU = _act_class("SiLU", "silu", doc="y = x·sigmoid(x) (swish).")
Swish = SiLU
Softsign = _act_class("Softsign", "softsign", doc="y = x / (1 + |x|).")


class Softmax(Module):
    """Row-wise softmax over the last axis of (N, C)."""

    def forward(self, x) -> Tensor:
        return F.softmax(_as_input(x, "Softmax"))


class LogSoftmax(Module):
    """Row-wise log-softmax over the last axis of (N, C)."""

    def forward(self, x) -> Tensor:
        return F.log_softmax(_as_input(x, "LogSoftmax"))


class Sequential(Module):
    """Modules applied in order. Supports indexing (an int gives the module, a slice a new
    Sequential sharing the modules), len(), iteration and append()."""

    def __init__(self, *modules: Module):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (list, tuple)):
            modules = tuple(modules[0])
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> "Sequential":
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: expected a Module, got {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return Sequential(*mods[idx])
        try:
            return mods[idx]
        except IndexError:
            raise IndexError(f"Sequential index {idx} out of range for {len(mods)} modules") from None

    def forward(self, x):
        mods = self._modules
        if len(mods) < 2 or _S.anomaly:  # anomaly mode names the failing layer: one by one
            for m in mods.values():
                x = m(x)
            return x
        mods = list(mods.values())
        i, n = 0, len(mods)
        while i < n:  # [i, j): a run of plain Dense layers (one chain node), else one module
            j = i
            while j < n and _plain_dense(mods[j]):
                j += 1
            if j - i >= 2:
                y = _dense_run(mods[i:j], x)
                if y is not None:
                    x, i = y, j
                    continue
            else:
                j = i + 1
            for m in mods[i:j]:
                x = m(x)
            i = j
        return x


def _plain_dense(m) -> bool:
    """m runs as F.dense with nothing around it: a Dense (not a subclass), no forward hooks
    (a GradientMonitor hooks only layers its kernel records cannot serve), forward not
    replaced on the instance."""
    return (type(m) is Dense and not m._forward_pre_hooks and not m._forward_hooks
            and "forward" not in m.__dict__)


def _dense_run(layers: list, x):
    """Consecutive plain Dense layers as one F.dense_stack node (the same values, gradients and
    statistics records as calling them one by one, less the Python per layer), or None when
    the input or the layers are not what every layer's F.dense would take as is (an array, a
    shape or dtype mismatch, mixed devices): the caller then calls them one by one, and the
    failing layer reports the problem."""
    d = getattr(x, "data", None)
    if not isinstance(x, Tensor) or d.ndim != 2 or d.shape[0] == 0:
        return None
    be, dt, width = x._be, d.dtype, d.shape[1]
    ws, bs, acts, alphas, stats = [], [], [], [], []
    for m in layers:
        w, b = m.weight, m.bias
        wd = w.data
        if (w._be is not be or wd.dtype != dt or wd.ndim != 2 or wd.shape[0] != width
                or m.in_features != width):
            return None
        if b is not None and (b._be is not be or b.data.dtype != dt
                              or b.data.shape != (wd.shape[1],)):
            return None
        act, alpha = m.activation, m.alpha
        if act not in F._ACT_SET or type(alpha) is not float:  # F.dense normalizes these
            return None
        width = wd.shape[1]
        ws.append(w)
        bs.append(b)
        acts.append(act)
        alphas.append(alpha)
        stats.append(m.stats)
    return _dense_stack(x, ws, bs, acts, alphas, stats)


class Residual(Module):
    """y = f(x) + x, or y = f(x) + skip(x) with a projection.

    ``projection`` is None (identity skip; f must keep the shape), a Module (a learned skip, e.g.
    ``Dense(in, out, bias=False)``) or a fixed (in, out) matrix (array/Tensor) W_skip giving
    x @ W_skip (stored as a buffer, not trained)."""

    def __init__(self, block: Module, projection=None):
        super().__init__()
        if not isinstance(block, Module):
            raise TypeError(f"Residual: block must be a Module, got {type(block).__name__}")
        self.block = block
        self.fixed = None
        if isinstance(projection, Module):
            self.projection = projection
        elif projection is None:
            self.projection = None
        else:
            w = projection.numpy() if isinstance(projection, Tensor) else np.asarray(projection)
            if w.ndim != 2:
                raise ValueError(f"Residual: a fixed projection must be a 2-D (in, out) matrix, "
                                 f"got shape {w.shape}")
            self.projection = None
            dt = w.dtype if w.dtype in (np.float32, np.float64) else np.float32
            self.register_buffer("fixed", Tensor(np.ascontiguousarray(w, dtype=dt)))

    def forward(self, x):
        if not isinstance(x, Tensor):
            a = self._layout()
            x = _as_input(x, "Residual", dtype=None if a is None else a.dtype)
        fx = self.block(x)
        if self.projection is not None:
            skip = self.projection(x)
        elif self.fixed is not None:
            w = self.fixed
            if w.dtype != x.dtype:
                w = Tensor(w.numpy().astype(x.dtype))
            if x.shape[-1] != w.shape[0]:
                raise ValueError(f"Residual: input has {x.shape[-1]} features but the fixed "
                                 f"projection is {tuple(w.shape)}")
            skip = x @ w
        else:
            skip = x
        if tuple(fx.shape) != tuple(skip.shape):
            raise ValueError(f"Residual: block output {tuple(fx.shape)} and skip path "
                             f"{tuple(skip.shape)} differ; pass projection= to map the input")
        return fx + skip

    def extra_repr(self) -> str:
        return f"fixed projection {tuple(self.fixed.shape)}" if self.fixed is not None else ""


class BatchNorm1d(Module):
    """Batch normalisation over the batch axis of (N, C): batch statistics in training (running
    averages updated with ``momentum``, unbiased variance, as PyTorch), running averages in eval.
    ``affine`` adds a learned scale (init 1) and shift (init 0)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, dtype=None):
        super().__init__()
        _check_positive_int("BatchNorm1d", "num_features", num_features)
        if momentum is None:
            raise ValueError("BatchNorm1d: momentum=None (PyTorch's cumulative average) is not "
                             "supported; pass a number in [0, 1] such as 0.1")
        # eps < 0 makes var + eps negative (NaN outputs) for low-variance features; a momentum
        # outside [0, 1] makes the running statistics diverge (both silently in PyTorch)
        self.num_features = int(num_features)
        self.eps = _check_float("BatchNorm1d", "eps", eps, 0.0)
        self.momentum = _check_float("BatchNorm1d", "momentum", momentum, 0.0, 1.0)
        dt = _dtype(dtype, "BatchNorm1d")
        self.weight = Parameter(np.ones(self.num_features, dtype=dt)) if affine else None
        self.bias = Parameter(np.zeros(self.num_features, dtype=dt)) if affine else None
        self.register_buffer("running_mean", Tensor(np.zeros(self.num_features, dtype=dt)))
        self.register_buffer("running_var", Tensor(np.ones(self.num_features, dtype=dt)))

    def forward(self, x) -> Tensor:
        x = _as_input(x, f"BatchNorm1d({self.num_features})", self.num_features,
                      self.running_mean.dtype)
        if x.ndim != 2:
            raise ValueError(f"BatchNorm1d: expected (N, {self.num_features}), got {tuple(x.shape)}")
        if self.training and x.shape[0] < 2:
            raise ValueError("BatchNorm1d: training needs at least 2 samples per batch to "
                             "estimate the variance (call .eval() for single samples)")
        return F.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                            training=self.training, momentum=self.momentum, eps=self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.weight is not None}")


class LayerNorm(Module):
    """Normalises the last axis of (..., D) per sample; learned scale/shift when affine."""

    def __init__(self, normalized_shape: int, eps: float = 1e-5, elementwise_affine: bool = True,
                 dtype=None):
        super().__init__()
        if isinstance(normalized_shape, (tuple, list)):
            if len(normalized_shape) != 1:
                raise ValueError("LayerNorm: only the last axis can be normalised")
            normalized_shape = normalized_shape[0]
        _check_positive_int("LayerNorm", "normalized_shape", normalized_shape)
        self.normalized_shape = int(normalized_shape)
        self.eps = _check_float("LayerNorm", "eps", eps, 0.0)
        dt = _dtype(dtype, "LayerNorm")
        self.weight = Parameter(np.ones(self.normalized_shape, dtype=dt)) if elementwise_affine else None
        self.bias = Parameter(np.zeros(self.normalized_shape, dtype=dt)) if elementwise_affine else None

    def forward(self, x) -> Tensor:
        x = _as_input(x, f"LayerNorm({self.normalized_shape})", self.normalized_shape,
                      None if self.weight is None else self.weight.dtype)
        return F.layer_norm(x, self.weight, self.bias, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"


class Dropout(Module):
    """Zeroes each element with probability p in training and scales the rest by 1/(1-p)
    (inverted dropout); the identity in eval."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = _check_float("Dropout", "p", p, 0.0, 1.0, hi_open=True)

    def forward(self, x) -> Tensor:
        x = _as_input(x, "Dropout")
        return F.dropout(x, self.p, training=self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Perceptron(Dense):
    """A single unit y = out(x @ w + w0) with a step (the classic perceptron) or sigmoid output.
    x (N, in_features) -> y (N, 1)."""

    def __init__(self, in_features: int, output: str = "step", init=None, dtype=None):
        if output not in ("step", "sigmoid"):
            raise ValueError(f"Perceptron: output must be 'step' or 'sigmoid', got {output!r}")
        super().__init__(in_features, 1, activation=output, bias=True, init=init, dtype=dtype)
