"""Backends: one module per device with the same primitives, listed once with their meaning in
backend/protocol.py (``Backend``). ``get_backend(device)`` returns the module for a device
string, ``backend_of(array)`` the module that owns an array, and ``copy_into(dst, src)`` copies
values into a backend array from any device (the one place where data crosses devices)."""
from __future__ import annotations

from types import ModuleType

import numpy as np

from . import cpu
from .protocol import Backend

__all__ = ["Backend", "backend_of", "copy_into", "get_backend", "normalize_device"]

_CUDA_MISSING = "deepgrad was built without CUDA; rebuild with -Ccmake.define.DEEPGRAD_CUDA=ON"


def normalize_device(device) -> str:
    """"cpu" or "cuda" for a device spec ("cpu", "cuda", "cuda:0", a Tensor's .device, None)."""
    if device is None:
        return "cpu"
    if not isinstance(device, str):
        device = str(device)
    d = device.strip().lower()
    if d == "cpu":
        return "cpu"
    if d == "cuda" or d == "cuda:0" or d == "gpu":
        return "cuda"
    if d.startswith("cuda:"):
        raise ValueError(f"device {device!r}: deepgrad uses one GPU; use 'cuda' (device 0)")
    raise ValueError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")


def get_backend(device) -> ModuleType:
    """The backend module for ``device``: backend.cpu, or backend.cuda when this build has CUDA
    kernels and a GPU is present (RuntimeError otherwise, saying which is missing)."""
    d = normalize_device(device)
    if d == "cpu":
        return cpu
    from ..runtime import _C
    if not _C.build_info()["cuda"]:
        raise RuntimeError(_CUDA_MISSING)
    from .. import cuda as _cuda
    if not _cuda.is_available():
        raise RuntimeError("no CUDA device is available (deepgrad.cuda.is_available() is False)")
    from . import cuda as cuda_backend
    return cuda_backend


def backend_of(a) -> ModuleType | None:
    """The backend module that owns array ``a`` (cpu for a numpy array, cuda for a device
    array), or None when ``a`` is not a backend array (a list, a scalar)."""
    if isinstance(a, np.ndarray):
        return cpu
    from ..runtime import _C
    cls = getattr(_C, "CudaArray", None)
    if cls is not None and isinstance(a, cls):
        from . import cuda as cuda_backend
        return cuda_backend
    return None


def copy_into(dst, src) -> None:
    """dst[...] = src in place, where ``dst`` is a backend array of any device and ``src`` is
    a backend array of any device or a host value (numpy array, list, scalar). Values are
    converted to dst's dtype as numpy's ``casting="unsafe"`` does and broadcast to dst's shape;
    data crosses devices through host memory, and stays on the device when both are there.
    Arena views stay views: this writes into dst, it never rebinds it."""
    be = backend_of(dst)
    if be is None:
        raise TypeError(f"copy_into: dst must be a backend array, got {type(dst).__name__}")
    sbe = backend_of(src)
    if sbe is None or sbe.HOST_MEMORY:
        be.copy_from_host_(dst, src)
    elif sbe is be:
        be.copy_(dst, be.astype(src, dst.dtype))
    else:
        be.copy_from_host_(dst, sbe.to_numpy(src))
