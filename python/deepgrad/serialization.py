"""deepgrad.save / deepgrad.load: state dicts in a format that holds only arrays and JSON.

File layout (little endian)::

    b"DEEPGRAD" | u32 format version | u64 header length H | H bytes of UTF-8 JSON | pad to 64
    | the raw bytes of every array, each aligned to 64

The JSON header describes the object tree (dicts with str/int keys, lists, tuples, str, int,
float incl. nan/inf, bool, None, numpy arrays and Tensors) plus each array's dtype, shape,
offset and a CRC-32 of the whole data block. Loading never runs code (no pickle); a truncated,
corrupted or foreign file raises ValueError. Writing is atomic: a temporary file in the target
directory is written, fsync'ed and renamed over the target with os.replace.
"""
from __future__ import annotations

import json
import math
import os
import struct
import tempfile
import zlib

import numpy as np

__all__ = ["save", "load"]

MAGIC = b"DEEPGRAD"
VERSION = 1
_ALIGN = 64
_PREFIX = struct.Struct("<8sIQ")
_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float16", "float32", "float64"}


def _pad(n: int) -> int:
    return (-n) % _ALIGN


class _Encoder:
    def __init__(self):
        self.arrays: list[np.ndarray] = []
        self.meta: list[dict] = []
        self.offset = 0

    def array(self, a: np.ndarray, tensor: bool) -> dict:
        if a.dtype.name not in _DTYPES:
            raise TypeError(f"deepgrad.save: arrays of dtype {a.dtype} are not supported")
        a = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False)
        self.offset += _pad(self.offset)
        self.meta.append({"dtype": a.dtype.name, "shape": list(a.shape), "offset": self.offset,
                          "nbytes": a.nbytes})
        self.arrays.append(a)
        self.offset += a.nbytes
        node = {"t": "tensor" if tensor else "array", "i": len(self.arrays) - 1}
        return node

    def encode(self, obj, where: str):
        from .tensor import Tensor
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, (int, np.integer)):
            return int(obj)
        if isinstance(obj, (float, np.floating)):
            v = float(obj)
            return v if math.isfinite(v) else {"t": "float", "v": repr(v)}
        if isinstance(obj, Tensor):
            return self.array(np.asarray(obj.numpy()), True)
        if isinstance(obj, np.ndarray):
            return self.array(obj, False)
        if isinstance(obj, dict):
            items = []
            for k, v in obj.items():
                if isinstance(k, bool) or not isinstance(k, (str, int, np.integer)):
                    raise TypeError(f"deepgrad.save: dict key {k!r} at {where or 'top level'} "
                                    "must be a str or an int")
                key = k if isinstance(k, str) else int(k)
                items.append([key, self.encode(v, f"{where}[{k!r}]")])
            return {"t": "dict", "items": items}
        if isinstance(obj, (list, tuple)):
            return {"t": "list" if isinstance(obj, list) else "tuple",
                    "items": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        raise TypeError(f"deepgrad.save: cannot store a {type(obj).__name__} at "
                        f"{where or 'top level'}; only dicts, lists, tuples, numbers, strings, "
                        "None, numpy arrays and Tensors (state dicts) are supported")


def save(obj, path: str | os.PathLike) -> None:
    """Write `obj` (a state dict: nested dicts/lists of arrays, Tensors and scalars) to `path`
    atomically (temporary file in the same directory, fsync, os.replace)."""
    enc = _Encoder()
    tree = enc.encode(obj, "")
    data_size = enc.offset
    crc, pos = 0, 0   # over the whole data block, padding included
    for a, m in zip(enc.arrays, enc.meta):
        crc = zlib.crc32(b"\0" * (m["offset"] - pos), crc)
        if a.nbytes:
            crc = zlib.crc32(memoryview(a).cast("B"), crc)
        pos = m["offset"] + a.nbytes
    header = json.dumps({"format": "deepgrad", "version": VERSION, "tree": tree,
                         "arrays": enc.meta, "data_size": data_size, "crc32": crc},
                        separators=(",", ":")).encode("utf-8")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".deepgrad-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_PREFIX.pack(MAGIC, VERSION, len(header)))
            f.write(header)
            f.write(b"\0" * _pad(_PREFIX.size + len(header)))
            pos = 0
            for a, m in zip(enc.arrays, enc.meta):
                f.write(b"\0" * (m["offset"] - pos))
                if a.nbytes:
                    f.write(memoryview(a).cast("B"))
                pos = m["offset"] + a.nbytes
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable where the platform allows it
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _bad(path: str, why: str) -> ValueError:
    return ValueError(f"deepgrad.load: {path!r} {why}")


def load(path: str | os.PathLike):
    """Read an object written by deepgrad.save. Arrays come back as numpy arrays, Tensors as
    Tensors. Raises ValueError for truncated, corrupted or non-deepgrad files."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < _PREFIX.size or not blob.startswith(MAGIC):
        raise _bad(path, "is not a deepgrad file (missing the DEEPGRAD signature)")
    _, version, hlen = _PREFIX.unpack_from(blob)
    if version != VERSION:
        raise _bad(path, f"has format version {version}; this deepgrad reads version {VERSION}")
    if _PREFIX.size + hlen > len(blob):
        raise _bad(path, "is truncated (the header is incomplete)")
    try:
        header = json.loads(blob[_PREFIX.size:_PREFIX.size + hlen].decode("utf-8"))
        arrays, tree = header["arrays"], header["tree"]
        data_size, crc = int(header["data_size"]), int(header["crc32"])
    except (ValueError, KeyError, TypeError) as e:
        raise _bad(path, f"has a corrupted header ({e})") from None
    start = _PREFIX.size + hlen + _pad(_PREFIX.size + hlen)
    if len(blob) < start + data_size:
        raise _bad(path, f"is truncated: {len(blob) - start} of {data_size} data bytes present")
    if len(blob) > start + data_size:
        raise _bad(path, "has trailing bytes after the data block (corrupted)")
    data = memoryview(blob)[start:start + data_size]
    if zlib.crc32(data) != crc:
        raise _bad(path, "is corrupted (data checksum mismatch)")

    def array(i: int) -> np.ndarray:
        try:
            m = arrays[i]
            if m["dtype"] not in _DTYPES:
                raise ValueError(f"dtype {m['dtype']}")
            dt = np.dtype(m["dtype"]).newbyteorder("<")
            shape = tuple(int(s) for s in m["shape"])
            count = int(np.prod(shape, dtype=np.int64))
            if count * dt.itemsize != m["nbytes"] or m["offset"] + m["nbytes"] > data_size:
                raise ValueError("size does not match shape")
            a = np.frombuffer(data, dtype=dt, count=count, offset=m["offset"]).reshape(shape)
            return a.astype(a.dtype.newbyteorder("="), copy=True)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise _bad(path, f"has a corrupted array entry {i} ({e})") from None

    def decode(node):
        if node is None or isinstance(node, (bool, str, int, float)):
            return node
        if not isinstance(node, dict) or "t" not in node:
            raise _bad(path, "has a corrupted object tree")
        t = node["t"]
        if t == "array":
            return array(node["i"])
        if t == "tensor":
            from .tensor import Tensor
            return Tensor(array(node["i"]))
        if t == "float":
            return float(node["v"])
        if t == "dict":
            return {k: decode(v) for k, v in node["items"]}
        if t == "list":
            return [decode(v) for v in node["items"]]
        if t == "tuple":
            return tuple(decode(v) for v in node["items"])
        raise _bad(path, f"has an unknown node type {t!r}")

    try:
        return decode(tree)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ValueError) and str(e).startswith("deepgrad.load"):
            raise
        raise _bad(path, f"has a corrupted object tree ({e})") from None
