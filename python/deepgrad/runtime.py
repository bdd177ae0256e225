"""The native extension and the process-wide runtime: deepgrad._C imported once, the version,
how this deepgrad was built, the native thread count and the allocator setting applied at
import. A core module: the rest of the package imports ``_C`` and these from here (the package
facade re-exports them)."""
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


