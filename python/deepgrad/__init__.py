"""deepgrad: a small, fast deep-learning library for seeing and beating vanishing and
exploding gradients. Numeric work runs in hand-written C++ (and optional CUDA) kernels."""
from __future__ import annotations

import os as _os

from . import _C

__version__: str = _C.build_info()["version"]


def _tune_malloc() -> str:
    """A training step frees most of what it allocated (activations, gradients, LSTM gate
    buffers) and the next step allocates it again. With glibc's defaults the freed top of the
    heap goes back to the OS at once and every step page-faults it in again: ~2800 faults and
    ~45% of an LSTM step (B=64, T=50, H=64) measured here. So at import deepgrad keeps up to
    64 MiB of freed heap for reuse (M_TOP_PAD) and serves blocks below 32 MiB from the heap
    (M_MMAP_THRESHOLD, glibc's own dynamic ceiling). Skipped when DEEPGRAD_MALLOC_TUNING=0 or
    when the environment already sets glibc's malloc variables; a no-op off glibc."""
    env = _os.environ
    if env.get("DEEPGRAD_MALLOC_TUNING", "1") == "0":
        return "off (DEEPGRAD_MALLOC_TUNING=0)"
    if any(k in env for k in ("MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_",
                              "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")):
        return "off (malloc settings from the environment)"
    if _C._tune_malloc(64 << 20, 32 << 20):
        return "glibc top_pad=64MiB mmap_threshold=32MiB"
    return "off (not glibc)"


_MALLOC = _tune_malloc()


def build_info() -> dict:
    """How this deepgrad was built: version, compiler, SIMD level, OpenMP threads, CUDA; and
    ``malloc``, the allocator setting applied at import (see ``_tune_malloc``)."""
    return dict(_C.build_info(), malloc=_MALLOC)


def set_num_threads(n: int) -> None:
    """Set how many CPU threads the native kernels may use, for the whole process: kernels called
    from any Python thread fork at most ``n`` threads. ``n`` is an int from 1 to
    ``4 x cores``; a machine that cannot start that many threads raises RuntimeError and keeps
    the previous setting."""
    import numbers
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__} {n!r}")
    _C.set_num_threads(int(n))


def get_num_threads() -> int:
    """How many CPU threads the native kernels may use."""
    return int(_C.get_num_threads())


from . import random
from .autograd import (detect_anomaly, enable_grad, gradcheck, is_anomaly_enabled,
                       is_grad_enabled, no_grad, set_detect_anomaly, set_grad_enabled)
from .random import manual_seed
from .tensor import (Tensor, arange, float32, float64, from_dlpack, from_numpy, full,
                     full_like, int64, ones, ones_like, rand, rand_like, randn, randn_like,
                     tensor, zeros, zeros_like)
from .ops import cat, concat, matmul, maximum, minimum, stack, where  # binds Tensor's operators
from . import functional, losses
from . import data, init, nn, optim
from . import cuda
from .serialization import load, save
from . import monitor  # GradientMonitor, diagnose (the diagnostics part)

__all__ = ["build_info", "set_num_threads", "get_num_threads", "__version__", "from_numpy",
           "from_dlpack",
           # tensors and the tape
           "Tensor", "tensor", "zeros", "ones", "full", "rand", "randn", "arange", "zeros_like",
           "ones_like", "full_like", "rand_like", "randn_like", "float32", "float64", "int64",
           "matmul", "concat", "cat", "stack", "where", "maximum", "minimum",
           "no_grad", "enable_grad", "is_grad_enabled", "set_grad_enabled",
           "detect_anomaly", "set_detect_anomaly", "is_anomaly_enabled", "gradcheck",
           "manual_seed", "random", "functional", "losses",
           # modules, optimizers, data, saving
           "nn", "optim", "init", "data", "save", "load", "cuda",
           # gradient-flow diagnostics
           "monitor"]
