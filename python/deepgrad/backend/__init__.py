"""Backends: one module per device with the same primitive functions (see backend/cpu.py for the
interface). ``get_backend(device)`` returns the module for a device string."""
from __future__ import annotations

from types import ModuleType

from . import cpu

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
    from .. import _C
    if not _C.build_info()["cuda"]:
        raise RuntimeError(_CUDA_MISSING)
    from .. import cuda as _cuda
    if not _cuda.is_available():
        raise RuntimeError("no CUDA device is available (deepgrad.cuda.is_available() is False)")
    from . import cuda as cuda_backend
    return cuda_backend
