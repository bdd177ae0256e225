"""deepgrad.save / deepgrad.load: state dicts in a format that holds only arrays and JSON.

File layout (little endian), format version 2::

    b"DEEPGRAD" | u32 format version | u64 header length H | H bytes of UTF-8 JSON | pad to 64
    | the raw bytes of every array, each aligned to 64 | u32 CRC-32 of all bytes before it
    | b"DGOK"

The JSON header describes the object tree (dicts with str/int keys, lists, tuples, str, int,
float incl. nan/inf, bool, None, numpy arrays and Tensors) plus each array's dtype, shape,
offset and size. The one checksum covers the signature, the header and the data, so a flipped
byte anywhere (an offset or a shape in the header included) is caught.

Loading never runs code (no pickle) and trusts nothing before it is checked: the signature and
version are read first (a large foreign file costs 20 bytes of reading, not its size in RAM), the
header length is bounded by the file's size and 64 MiB, the checksum is verified before the
header is parsed, and then every array entry is validated (known dtype, non-negative integer
shape whose byte size matches, offsets inside the data block and not overlapping). A truncated,
corrupted, deeply nested or foreign file raises ValueError. Version-1 files (checksum over the
data block only) are still read, with the same validation; saving them again writes version 2.

Writing is atomic: the data go to a temporary file beside the target
(``.<name>.dgtmp-<pid>-<random>``), which is fsync'ed and renamed over the target with
os.replace, then the directory is fsync'ed. A save first removes temporaries of the same target
left by processes that no longer run (a save killed mid-write), so preempted jobs do not fill the
disk. The file is created with mode 0666 minus the umask, like any file the user writes.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import struct
import zlib

import numpy as np

__all__ = ["save", "load"]

MAGIC = b"DEEPGRAD"
VERSION = 2
_READS = (1, 2)
_ALIGN = 64
_PREFIX = struct.Struct("<8sIQ")
_TRAILER = struct.Struct("<I4s")
_END = b"DGOK"
_MAX_HEADER = 64 << 20   # bytes of JSON; a state dict's header is a few KB per thousand arrays
_MAX_DEPTH = 64          # nesting of dicts/lists in a saved object
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

    def encode(self, obj, where: str, depth: int = 0):
        from .tensor import Tensor
        if depth > _MAX_DEPTH:
            raise ValueError(f"deepgrad.save: the object is nested more than {_MAX_DEPTH} levels "
                             f"deep at {where}; a state dict is a few levels deep")
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
                items.append([key, self.encode(v, f"{where}[{k!r}]", depth + 1)])
            return {"t": "dict", "items": items}
        if isinstance(obj, (list, tuple)):
            return {"t": "list" if isinstance(obj, list) else "tuple",
                    "items": [self.encode(v, f"{where}[{i}]", depth + 1)
                              for i, v in enumerate(obj)]}
        raise TypeError(f"deepgrad.save: cannot store a {type(obj).__name__} at "
                        f"{where or 'top level'}; only dicts, lists, tuples, numbers, strings, "
                        "None, numpy arrays and Tensors (state dicts) are supported")


class _CrcWriter:
    """A binary file that keeps the CRC-32 of everything written to it."""

    def __init__(self, f):
        self.f, self.crc = f, 0

    def write(self, b) -> None:
        self.crc = zlib.crc32(b, self.crc)
        self.f.write(b)


def _tmp_prefix(path: str) -> str:
    return f".{os.path.basename(path)}.dgtmp-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True   # someone else's process, or we cannot tell: leave its file alone
    return True


def _remove_stale_temporaries(path: str) -> None:
    """Delete `.<name>.dgtmp-<pid>-*` files beside `path` whose writer no longer runs."""
    directory = os.path.dirname(os.path.abspath(path))
    prefix = _tmp_prefix(path)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass


def save(obj, path: str | os.PathLike, format: str | None = None) -> None:
    """Write `obj` (a state dict: nested dicts/lists of arrays, Tensors and scalars) to `path`
    atomically (temporary file in the same directory, fsync, os.replace, fsync of the directory).
    ``format="safetensors"`` (or a path ending in ``.safetensors``) writes a flat dict of arrays
    in the safetensors format instead (needs ``pip install 'deepgrad[safetensors]'``)."""
    path = os.fspath(path)
    fmt = _format_of(path, format, "save")
    if fmt == "safetensors":
        return _save_safetensors(obj, path)
    enc = _Encoder()
    tree = enc.encode(obj, "")
    header = json.dumps({"format": "deepgrad", "version": VERSION, "tree": tree,
                         "arrays": enc.meta, "data_size": enc.offset},
                        separators=(",", ":")).encode("utf-8")
    if len(header) > _MAX_HEADER:
        raise ValueError(f"deepgrad.save: the header would be {len(header)} bytes (limit "
                         f"{_MAX_HEADER}); store fewer, larger arrays")
    _write_atomic(path, lambda w: _write_body(w, header, enc))


def _write_body(w: _CrcWriter, header: bytes, enc: _Encoder) -> None:
    w.write(_PREFIX.pack(MAGIC, VERSION, len(header)))
    w.write(header)
    w.write(b"\0" * _pad(_PREFIX.size + len(header)))
    pos = 0
    for a, m in zip(enc.arrays, enc.meta):
        if m["offset"] > pos:
            w.write(b"\0" * (m["offset"] - pos))
        if a.nbytes:
            w.write(memoryview(a).cast("B"))
        pos = m["offset"] + a.nbytes
    w.f.write(_TRAILER.pack(w.crc, _END))


def _write_atomic(path: str, body) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    _remove_stale_temporaries(path)
    tmp = os.path.join(directory, f"{_tmp_prefix(path)}{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            body(_CrcWriter(f))
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


def _format_of(path: str, format: str | None, verb: str) -> str:
    if format is None:
        return "safetensors" if path.endswith(".safetensors") else "deepgrad"
    if format not in ("deepgrad", "safetensors"):
        raise ValueError(f"deepgrad.{verb}: format must be 'deepgrad' or 'safetensors', "
                         f"got {format!r}")
    return format


def _int(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{what} is {v!r}, not an integer")
    return v


def _validate_arrays(path: str, arrays, data_size: int) -> list:
    """Each entry's dtype, shape, offset and size checked against each other and the data
    block; returns [(dtype, shape, offset, nbytes)]."""
    if not isinstance(arrays, list):
        raise _bad(path, "has a corrupted header (the array table is not a list)")
    out, spans = [], []
    for i, m in enumerate(arrays):
        try:
            if not isinstance(m, dict):
                raise ValueError("not an object")
            if m.get("dtype") not in _DTYPES:
                raise ValueError(f"unknown dtype {m.get('dtype')!r}")
            dt = np.dtype(m["dtype"]).newbyteorder("<")
            shape = m["shape"]
            if not isinstance(shape, list) or len(shape) > 64:
                raise ValueError(f"shape {shape!r}")
            shape = tuple(_int(d, "a dimension") for d in shape)
            if any(d < 0 for d in shape):
                raise ValueError(f"negative dimension in shape {shape}")
            count = math.prod(shape)
            offset, nbytes = _int(m["offset"], "the offset"), _int(m["nbytes"], "the size")
            if offset < 0 or nbytes < 0:
                raise ValueError(f"negative offset {offset} or size {nbytes}")
            if count * dt.itemsize != nbytes:
                raise ValueError(f"{nbytes} bytes do not hold shape {shape} of {dt.name}")
            if offset + nbytes > data_size:
                raise ValueError(f"bytes [{offset}, {offset + nbytes}) lie outside the "
                                 f"{data_size}-byte data block")
        except (ValueError, KeyError, TypeError) as e:
            raise _bad(path, f"has a corrupted array entry {i} ({e})") from None
        out.append((dt, shape, offset, nbytes))
        if nbytes:
            spans.append((offset, offset + nbytes, i))
    spans.sort()
    for (a0, a1, i), (b0, b1, j) in zip(spans, spans[1:]):
        if b0 < a1:
            raise _bad(path, f"has a corrupted header (arrays {i} and {j} overlap)")
    return out


def load(path: str | os.PathLike, format: str | None = None):
    """Read an object written by deepgrad.save. Arrays come back as numpy arrays, Tensors as
    Tensors. Raises ValueError for truncated, corrupted or non-deepgrad files (see the module
    docstring for what is checked). ``.safetensors`` files (or ``format="safetensors"``) load
    as a dict of numpy arrays."""
    path = os.fspath(path)
    if _format_of(path, format, "load") == "safetensors":
        return _load_safetensors(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        prefix = f.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size or not prefix.startswith(MAGIC):
            raise _bad(path, "is not a deepgrad file (missing the DEEPGRAD signature)")
        _, version, hlen = _PREFIX.unpack(prefix)
        if version not in _READS:
            raise _bad(path, f"has format version {version}; this deepgrad reads versions "
                             f"{', '.join(map(str, _READS))} (a newer deepgrad wrote it?)")
        tail = _TRAILER.size if version >= 2 else 0
        if hlen > min(_MAX_HEADER, size - _PREFIX.size - tail):
            raise _bad(path, "is truncated or corrupted (the header length "
                             f"{hlen} exceeds the file)")
        rest = bytearray(size - _PREFIX.size)
        got = f.readinto(rest)
        if got != len(rest):
            raise _bad(path, "changed size while it was read")
    blob = memoryview(rest)
    if version >= 2:
        if bytes(blob[-4:]) != _END:
            end = bytes(blob).rfind(_END)
            if end >= 4 and zlib.crc32(blob[:end - 4], zlib.crc32(prefix)) == \
                    _TRAILER.unpack(blob[end - 4:end + 4])[0]:
                raise _bad(path, "has trailing bytes after the data block (corrupted)")
            raise _bad(path, "is truncated or corrupted (its checksum trailer is missing)")
        (crc, _), body = _TRAILER.unpack(blob[-_TRAILER.size:]), blob[:-_TRAILER.size]
        if zlib.crc32(body, zlib.crc32(prefix)) != crc:
            raise _bad(path, "is corrupted (checksum mismatch over header and data)")
    else:
        body = blob
    try:
        header = json.loads(bytes(body[:hlen]).decode("utf-8"))
        if not isinstance(header, dict):
            raise TypeError("the header is not an object")
        arrays, tree = header["arrays"], header["tree"]
        data_size = _int(header["data_size"], "data_size")
        if data_size < 0:
            raise ValueError(f"negative data_size {data_size}")
        crc1 = _int(header["crc32"], "crc32") if version == 1 else None
    except RecursionError:
        raise _bad(path, "has a corrupted header (nested too deeply)") from None
    except (ValueError, KeyError, TypeError) as e:
        raise _bad(path, f"has a corrupted header ({e})") from None
    start = hlen + _pad(_PREFIX.size + hlen)
    if len(body) < start + data_size:
        raise _bad(path, f"is truncated: {max(0, len(body) - start)} of {data_size} data bytes "
                         "present")
    if len(body) > start + data_size:
        raise _bad(path, "has trailing bytes after the data block (corrupted)")
    data = body[start:start + data_size]
    if version == 1 and zlib.crc32(data) != crc1:
        raise _bad(path, "is corrupted (data checksum mismatch)")
    entries = _validate_arrays(path, arrays, data_size)

    def array(i) -> np.ndarray:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(entries):
            raise _bad(path, f"has a corrupted object tree (array reference {i!r})")
        dt, shape, offset, nbytes = entries[i]
        a = np.frombuffer(data, dtype=dt, count=nbytes // dt.itemsize, offset=offset)
        return a.reshape(shape).astype(dt.newbyteorder("="), copy=True)

    def decode(node, depth: int):
        if node is None or isinstance(node, (bool, str, int, float)):
            return node
        if depth > _MAX_DEPTH:
            raise _bad(path, f"has a corrupted object tree (nested more than {_MAX_DEPTH} "
                             "levels)")
        if not isinstance(node, dict) or "t" not in node:
            raise _bad(path, "has a corrupted object tree")
        t = node["t"]
        if t == "array":
            return array(node["i"])
        if t == "tensor":
            from .tensor import Tensor
            return Tensor(array(node["i"]))
        if t == "float":
            v = node["v"]
            if v not in ("nan", "inf", "-inf"):
                raise _bad(path, f"has a corrupted object tree (float {v!r})")
            return float(v)
        items = node.get("items")
        if not isinstance(items, list):
            raise _bad(path, "has a corrupted object tree (items)")
        if t == "dict":
            out = {}
            for kv in items:
                if not isinstance(kv, list) or len(kv) != 2 or isinstance(kv[0], bool) or \
                        not isinstance(kv[0], (str, int)):
                    raise _bad(path, "has a corrupted object tree (dict item)")
                out[kv[0]] = decode(kv[1], depth + 1)
            return out
        if t == "list":
            return [decode(v, depth + 1) for v in items]
        if t == "tuple":
            return tuple(decode(v, depth + 1) for v in items)
        raise _bad(path, f"has an unknown node type {t!r}")

    try:
        return decode(tree, 0)
    except (KeyError, TypeError) as e:
        raise _bad(path, f"has a corrupted object tree ({e})") from None


# ---- safetensors ---------------------------------------------------------------------------

def _safetensors():
    try:
        import safetensors.numpy as stn
    except ImportError:
        raise ImportError("reading and writing .safetensors files needs the safetensors "
                          "package: pip install 'deepgrad[safetensors]'") from None
    return stn


def _flat_arrays(obj) -> dict:
    from .tensor import Tensor
    if not isinstance(obj, dict):
        raise TypeError("deepgrad.save(format='safetensors'): expected a flat dict of arrays "
                        f"(a state_dict()), got {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise TypeError(f"deepgrad.save(format='safetensors'): keys must be str, got {k!r}")
        if isinstance(v, Tensor):
            v = v.numpy()
        if not isinstance(v, np.ndarray):
            raise TypeError(f"deepgrad.save(format='safetensors'): {k!r} is a "
                            f"{type(v).__name__}; safetensors stores arrays only")
        out[k] = np.ascontiguousarray(v)
    return out


def _save_safetensors(obj, path: str) -> None:
    stn = _safetensors()
    from . import __version__
    arrays = _flat_arrays(obj)
    blob = stn.save(arrays, metadata={"format": "np", "writer": f"deepgrad {__version__}"})

    def body(w):
        w.f.write(blob)
    _write_atomic(path, body)


def _load_safetensors(path: str) -> dict:
    stn = _safetensors()
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or int.from_bytes(head, "little") > os.path.getsize(path):
        raise _bad(path, "is not a safetensors file (bad header length)")
    try:
        return dict(stn.load_file(path))
    except Exception as e:  # the Rust parser's own error type
        raise _bad(path, f"is not a valid safetensors file ({e})") from None
