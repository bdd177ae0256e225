"""deepgrad: a small, fast deep-learning library for seeing and beating vanishing and
exploding gradients. Numeric work runs in hand-written C++ (and optional CUDA) kernels."""
from __future__ import annotations

from . import _C

__version__: str = _C.build_info()["version"]


def build_info() -> dict:
    """How this deepgrad was built: version, compiler, SIMD level, OpenMP threads, CUDA."""
    return dict(_C.build_info())


def set_num_threads(n: int) -> None:
    """Set how many CPU threads the native kernels may use."""
    _C.set_num_threads(int(n))


def get_num_threads() -> int:
    """How many CPU threads the native kernels may use."""
    return int(_C.get_num_threads())


__all__ = ["build_info", "set_num_threads", "get_num_threads", "__version__"]
