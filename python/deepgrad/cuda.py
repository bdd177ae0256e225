"""deepgrad.cuda: GPU queries and the device memory allocator.

Importing this module never needs a GPU. ``is_available()`` is False when deepgrad was built
without CUDA or no NVIDIA GPU/driver is present; the other functions then raise a RuntimeError
saying which is missing. Device memory comes from a caching allocator: blocks freed by dropped
arrays are kept for reuse, so a training step after warm-up makes no cudaMalloc calls;
``empty_cache()`` returns the unused blocks to the driver.
"""
from __future__ import annotations

from .runtime import _C

BUILT_WITHOUT_CUDA = ("deepgrad was built without CUDA; "
                      "rebuild with -Ccmake.define.DEEPGRAD_CUDA=ON")
NO_DEVICE = "no CUDA device is available (deepgrad.cuda.is_available() is False)"


def is_built() -> bool:
    """True if this deepgrad was compiled with its CUDA kernels."""
    return bool(_C.build_info()["cuda"])


def _require_build() -> None:
    if not is_built():
        raise RuntimeError(BUILT_WITHOUT_CUDA)


def _require_device() -> None:
    _require_build()
    if _C.cuda_device_count() == 0:
        raise RuntimeError(NO_DEVICE)


def is_available() -> bool:
    """True if deepgrad has CUDA kernels and a usable NVIDIA GPU is present."""
    return is_built() and _C.cuda_device_count() > 0


def device_count() -> int:
    """Number of visible CUDA devices (0 without a GPU, a driver or a CUDA build)."""
    return int(_C.cuda_device_count()) if is_built() else 0


def get_device_name(index: int = 0) -> str:
    """The name of CUDA device ``index`` (e.g. "NVIDIA H100 80GB HBM3")."""
    _require_device()
    return str(_C.cuda_device_name(int(index)))


def synchronize() -> None:
    """Wait until every queued CUDA kernel and copy has finished (for timing)."""
    _require_device()
    _C.cuda_synchronize()


def memory_allocated() -> int:
    """Bytes of device memory held by live deepgrad arrays (rounded to allocator blocks)."""
    _require_build()
    return int(_C.cuda_memory_allocated())


def memory_reserved() -> int:
    """Bytes of device memory deepgrad holds from the driver: live arrays plus the cache."""
    _require_build()
    return int(_C.cuda_memory_reserved())


def empty_cache() -> None:
    """Return every cached (unused) device block to the driver."""
    _require_build()
    _C.cuda_empty_cache()


def malloc_count() -> int:
    """cudaMalloc calls made so far (steady-state training makes none)."""
    _require_build()
    return int(_C.cuda_malloc_calls())


__all__ = ["is_available", "is_built", "device_count", "get_device_name", "synchronize",
           "memory_allocated", "memory_reserved", "empty_cache", "malloc_count"]
