"""deepgrad: a small, fast deep-learning library for seeing and beating vanishing and
exploding gradients. Numeric work runs in hand-written C++ (and optional CUDA) kernels."""
from __future__ import annotations

from .runtime import (_C, _MALLOC, __version__, build_info, get_num_threads,  # noqa: F401
                      set_num_threads)

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
