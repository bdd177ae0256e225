"""The Python DLPack protocol's argument rules for deepgrad's CUDA arrays (pure Python, no CUDA:
tested in every build). https://dmlc.github.io/dlpack/latest/python_spec.html

Export (``Tensor.__dlpack__`` of a CUDA tensor): ``export_args`` turns the consumer's keyword
arguments into what ``_C.cuda_to_dlpack`` takes: the capsule kind ("dltensor_versioned" when the
consumer passes ``max_version >= (1, 0)``, else the legacy "dltensor"), the stream to order (see
``export_args``), and whether a copy was asked for.

Import (``deepgrad.from_dlpack`` of a CUDA producer): ``request_capsule`` asks the producer for a
capsule the way the spec tells a consumer to: ``max_version`` first, falling back to the legacy
call for producers that do not know it, with ``stream=1``, the legacy default stream that every
deepgrad launch uses, so the producer orders its pending work before deepgrad reads.
"""
from __future__ import annotations

#: the DLPack version deepgrad writes and reads (csrc/third_party/dlpack/dlpack.h)
VERSION = (1, 1)
#: the stream deepgrad's CUDA launches run on, in the protocol's numbering (legacy default)
DEEPGRAD_STREAM = 1

KDL_CPU, KDL_CUDA = 1, 2


def capsule_version(max_version) -> tuple | None:
    """The version of the capsule to export for a consumer's ``max_version``: None for the
    legacy unversioned capsule (no max_version, or a major version below 1), else (1, minor)
    with minor the smaller of the consumer's and deepgrad's."""
    if max_version is None:
        return None
    try:
        major, minor = (int(v) for v in max_version)
    except (TypeError, ValueError):
        raise TypeError(f"__dlpack__: max_version must be a (major, minor) tuple of ints, got "
                        f"{max_version!r}") from None
    if major < 1:
        return None
    if major > VERSION[0]:
        return VERSION
    return (1, min(minor, VERSION[1]))


def export_stream(stream):
    """The consumer's ``stream`` for a CUDA export, checked: None (the consumer did not say:
    nothing to order, as the spec assumes the legacy default stream, deepgrad's own), -1 (the
    consumer orders the work itself), 1 (legacy default), 2 (per-thread default) or a positive
    cudaStream_t handle. 0 is ambiguous for CUDA and refused."""
    if stream is None:
        return None
    if isinstance(stream, bool) or not isinstance(stream, int):
        raise TypeError(f"__dlpack__: stream must be an int or None for a CUDA tensor, got "
                        f"{type(stream).__name__}")
    if stream == 0:
        raise ValueError("__dlpack__: stream=0 is ambiguous for CUDA in the DLPack protocol; "
                         "pass 1 (legacy default stream), 2 (per-thread default stream), the "
                         "consumer's cudaStream_t, or -1 for no ordering")
    if stream < -1:
        raise ValueError(f"__dlpack__: stream={stream} is not a CUDA stream")
    return stream


def export_args(device: tuple, stream=None, max_version=None, dl_device=None, copy=None) -> dict:
    """Keyword arguments for ``_C.cuda_to_dlpack`` (versioned, minor, stream) plus ``copy``
    (True: export a fresh copy), from the consumer's ``__dlpack__`` arguments. ``device`` is the
    tensor's ``__dlpack_device__()``. Raises BufferError for a ``dl_device`` other than the
    tensor's (deepgrad does not copy across devices while exporting)."""
    if dl_device is not None and tuple(int(v) for v in dl_device) != tuple(device):
        raise BufferError(f"__dlpack__: the tensor is on DLPack device {tuple(device)} and cannot "
                          f"be exported to {tuple(dl_device)}; move it first (t.to('cpu'))")
    if copy not in (None, True, False):
        raise TypeError(f"__dlpack__: copy must be None, True or False, got {copy!r}")
    version = capsule_version(max_version)
    return {"versioned": version is not None, "minor": version[1] if version else 0,
            "stream": export_stream(stream), "copy": bool(copy)}


def request_capsule(x, stream: int = DEEPGRAD_STREAM):
    """A DLPack capsule from producer ``x``: ``x.__dlpack__(stream=..., max_version=VERSION)``,
    or without ``max_version`` for producers that predate it (TypeError on the keyword)."""
    try:
        return x.__dlpack__(stream=stream, max_version=VERSION)
    except TypeError as e:
        if "max_version" not in str(e) and "keyword" not in str(e):
            raise
        return x.__dlpack__(stream=stream)
