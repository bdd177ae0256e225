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
header length is bounded by the file's size and 16 MiB before the header is read, the header's
JSON is refused when deeply nested or denser in containers than any state dict, and every array
entry is validated (known dtype, non-negative integer shape whose byte size matches, inside the
data block, no overlaps, the data block exactly filling the file) before anything is allocated.
The arrays are then read straight into their own memory (a load costs one copy of the data, not
two) while the checksum is computed; a mismatch raises before anything is returned. A
truncated, corrupted, deeply nested or foreign file raises ValueError naming the file. Version-1
files (checksum over the data block only) are still read, with the same validation; saving them
again writes version 2.

Writing is atomic: the data go to a temporary file beside the target
(``.<name>.dgtmp-<pid>-<random>``), held under an exclusive flock while it is written, fsync'ed
and renamed over the target with os.replace, then the directory is fsync'ed. A save first
removes temporaries of the same target that nobody is writing any more (not locked, and their
writer's pid is gone or the file is over a minute old): a save killed mid-write costs disk space
only until the next save, so preempted jobs do not fill the disk. The file is created with mode
0666 minus the umask, like any file the user writes.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import struct
import time
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
_MAX_HEADER = 16 << 20   # bytes of JSON; a state dict needs ~100 per array
_CHUNK = 16 << 20        # bytes read (and checksummed) at a time
_STALE_AFTER = 60.0      # seconds after which an unlocked temporary is stale whatever its pid
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
        # asarray, not ascontiguousarray: that one turns a 0-d array into shape (1,)
        a = np.asarray(a, order="C").astype(a.dtype.newbyteorder("<"), copy=False)
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


def _unused(full: str, pid: int) -> bool:
    """True when nobody writes the temporary `full` any more: its flock is free (a writer holds
    it until its file is renamed) and its writer's pid is gone, or the file is old enough that a
    free lock cannot be the instant between a writer's open and its flock (a reused pid, or a
    writer on another machine sharing the folder)."""
    try:
        import fcntl
    except ImportError:            # no flock (Windows): the pid decides
        return not _pid_alive(pid)
    try:
        fd = os.open(full, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False               # a live writer holds it
    except OSError:
        os.close(fd)
        return not _pid_alive(pid)  # a file system without flock: the pid decides
    try:
        return not _pid_alive(pid) or time.time() - os.fstat(fd).st_mtime > _STALE_AFTER
    finally:
        os.close(fd)


def _remove_stale_temporaries(path: str) -> None:
    """Delete `.<name>.dgtmp-<pid>-*` files beside `path` that no writer uses any more."""
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
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        full = os.path.join(directory, name)
        if _unused(full, int(pid)):
            try:
                os.unlink(full)
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


def _lock(fd: int) -> None:
    """Mark a temporary as being written (released when the file is closed)."""
    try:
        import fcntl
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (ImportError, OSError):
        pass                       # no flock here: cleaners fall back to the pid


def _check_target(path: str, who: str = "deepgrad.save", example: str = "model.dg") -> None:
    """A clear error before anything is written: the OS's own errors name the temporary file
    (``.x.dgtmp-123-ab12``), not the path the user gave."""
    directory = os.path.dirname(os.path.abspath(path))
    if path == "":
        raise ValueError(f"{who}: the path is empty; give a file path such as {example!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{who}: {path!r} is a directory; give a file path such "
                                f"as {os.path.join(path or '.', example)!r}")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{who}: the folder {directory!r} of {path!r} does not "
                                "exist; create it first (os.makedirs(folder, exist_ok=True))")


def write_text_atomic(path, write, who: str, example: str) -> str:
    """The one way the package writes a text file (histories, study records, the report):
    ``write(fh)`` into a temporary file beside ``path`` (UTF-8, newline=''), fsync'ed and renamed
    over it, so an interrupted or failed write leaves the old file (or none), never a half one.
    ``who``/``example`` name the caller and a file name in the errors. Returns the path."""
    path = os.fspath(path)
    _write_atomic(path, write, text=True, who=who, example=example)
    return path


def _write_atomic(path: str, body, text: bool = False, who: str = "deepgrad.save",
                  example: str = "model.dg") -> None:
    directory = os.path.dirname(os.path.abspath(path))
    _check_target(path, who, example)
    _remove_stale_temporaries(path)
    tmp = os.path.join(directory, f"{_tmp_prefix(path)}{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        _lock(fd)
        with (os.fdopen(fd, "w", encoding="utf-8", newline="") if text
              else os.fdopen(fd, "wb")) as f:
            body(f if text else _CrcWriter(f))
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
            if math.prod(d for d in shape if d) > max(data_size, 1 << 32):
                raise ValueError(f"shape {shape} is far larger than the file")
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


def _parse_header(path: str, raw: bytes, version: int) -> tuple:
    """The JSON header -> (tree, array table, data_size, v1 crc or None); ValueError for
    anything malformed, deeply nested or too dense to parse in bounded memory."""
    # A legitimate header spends ~25 bytes per JSON container ({"dtype":...} entries, tree
    # nodes); "[[],[],..." spends 3 and would cost ~20x its size in Python objects.
    if raw.count(b"[") + raw.count(b"{") > len(raw) // 8 + 64:
        raise _bad(path, "has a corrupted header (far more JSON containers than a state dict "
                         "header holds)")
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise TypeError("the header is not an object")
        arrays, tree = header["arrays"], header["tree"]
        data_size = _int(header["data_size"], "data_size")
        if data_size < 0:
            raise ValueError(f"negative data_size {data_size}")
        crc1 = _int(header["crc32"], "crc32") if version == 1 else None
    except RecursionError:
        raise _bad(path, "has a corrupted header (nested too deeply)") from None
    except MemoryError:
        raise _bad(path, "has a corrupted header (too large to parse)") from None
    except (ValueError, KeyError, TypeError) as e:
        raise _bad(path, f"has a corrupted header ({e})") from None
    return tree, arrays, data_size, crc1


def _read_into(f, mv: memoryview, crc: int, path: str) -> int:
    """Fill `mv` from `f` in chunks, folding each chunk into the CRC while it is in cache."""
    for off in range(0, len(mv), _CHUNK):
        part = mv[off:off + _CHUNK]
        if f.readinto(part) != len(part):
            raise _bad(path, "changed size while it was read")
        crc = zlib.crc32(part, crc)
    return crc


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
        raw = f.read(hlen)
        pad = f.read(_pad(_PREFIX.size + hlen))
        if len(raw) != hlen or len(pad) != _pad(_PREFIX.size + hlen):
            raise _bad(path, "is truncated (it ends inside the header)")
        tree, arrays, data_size, crc1 = _parse_header(path, raw, version)
        start = _PREFIX.size + hlen + len(pad)
        if start + data_size + tail > size:
            raise _bad(path, f"is truncated: the header describes {data_size} data bytes, "
                             f"the file holds {max(0, size - start - tail)}")
        if start + data_size + tail < size:
            raise _bad(path, f"has {size - start - data_size - tail} trailing bytes after the "
                             "data block (corrupted, or something was appended)")
        entries = _validate_arrays(path, arrays, data_size)
        # Nothing is allocated before this point beyond the (bounded) header; the arrays
        # are read straight into their own memory, so a load costs one copy of the data.
        crc = zlib.crc32(pad, zlib.crc32(raw, zlib.crc32(prefix))) if version >= 2 else 0
        out: list = [None] * len(entries)
        gap = bytearray(_ALIGN)
        pos = 0
        for i in sorted(range(len(entries)), key=lambda i: entries[i][2]):
            dt, shape, offset, nbytes = entries[i]
            if offset > pos:   # alignment padding between arrays
                if offset - pos > len(gap):
                    gap = bytearray(offset - pos)
                crc = _read_into(f, memoryview(gap)[:offset - pos], crc, path)
            a = np.empty(shape, dtype=dt)
            crc = _read_into(f, memoryview(a.reshape(-1).view(np.uint8)), crc, path)
            out[i] = a
            pos = offset + nbytes
        if data_size > pos:
            gap = bytearray(data_size - pos)
            crc = _read_into(f, memoryview(gap), crc, path)
        if version >= 2:
            trailer = f.read(_TRAILER.size)
            if len(trailer) != _TRAILER.size or trailer[4:] != _END:
                raise _bad(path, "is truncated or corrupted (its checksum trailer is missing)")
            if _TRAILER.unpack(trailer)[0] != crc:
                raise _bad(path, "is corrupted (checksum mismatch over header and data)")
        elif crc != crc1:
            raise _bad(path, "is corrupted (data checksum mismatch)")
        if f.read(1):
            raise _bad(path, "changed size while it was read")
    used: set = set()

    def array(i) -> np.ndarray:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(entries):
            raise _bad(path, f"has a corrupted object tree (array reference {i!r})")
        a = out[i]
        if not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        elif i in used:     # a crafted tree may name one array twice: never alias them
            a = a.copy()
        used.add(i)
        return a

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
        out[k] = np.asarray(v, order="C")     # keeps 0-d arrays 0-d
    return out


# The safetensors format has no checksum: a flipped byte in the data block loads as a wrong
# weight. deepgrad writes one into the metadata, a CRC-32 of the whole file with its own 8 hex
# digits read as "00000000", and checks it on load (files from other writers have none).
_ST_CRC_KEY = "deepgrad_crc32"
_ST_CRC_ZERO = b'"deepgrad_crc32":"00000000"'


def _save_safetensors(obj, path: str) -> None:
    stn = _safetensors()
    from .runtime import __version__
    arrays = _flat_arrays(obj)
    blob = stn.save(arrays, metadata={"format": "np", "writer": f"deepgrad {__version__}",
                                      "deepgrad_version": __version__,
                                      _ST_CRC_KEY: "00000000"})
    n = int.from_bytes(blob[:8], "little")
    head = bytearray(blob[:8 + n])
    at = head.find(_ST_CRC_ZERO)
    if at < 0 or head.find(_ST_CRC_ZERO, at + 1) >= 0:   # safetensors changed its JSON writer
        raise RuntimeError("deepgrad.save(format='safetensors'): cannot place the checksum in "
                           "the header written by this safetensors version")
    data = memoryview(blob)[8 + n:]
    crc = zlib.crc32(data, zlib.crc32(head))
    digits = at + len(_ST_CRC_ZERO) - 9
    head[digits:digits + 8] = b"%08x" % crc

    def body(w):
        w.f.write(head)
        w.f.write(data)
    _write_atomic(path, body)


def _verify_safetensors_crc(path: str, f, raw: bytes, metadata) -> None:
    """Check the CRC-32 deepgrad wrote into the metadata (nothing to check without one)."""
    want = metadata.get(_ST_CRC_KEY) if isinstance(metadata, dict) else None
    if want is None:
        return
    stored = b'"%s":"%s"' % (_ST_CRC_KEY.encode(), str(want).encode())
    if len(str(want)) != 8 or raw.count(stored) != 1:
        raise _bad(path, "is corrupted (its deepgrad checksum entry is malformed)")
    try:
        want = int(want, 16)
    except ValueError:
        raise _bad(path, "is corrupted (its deepgrad checksum entry is malformed)") from None
    f.seek(0)
    crc = zlib.crc32(f.read(8))
    crc = zlib.crc32(raw.replace(stored, _ST_CRC_ZERO), crc)
    f.seek(8 + len(raw))
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            break
        crc = zlib.crc32(chunk, crc)
    if crc != want:
        raise _bad(path, "is corrupted (checksum mismatch over header and data; it was written "
                         "by deepgrad, which stores a CRC-32 in the safetensors metadata)")


_ST_DTYPES = {"BOOL", "U8", "I8", "U16", "I16", "F16", "U32", "I32", "F32", "U64", "I64", "F64"}


def _load_safetensors(path: str) -> dict:
    stn = _safetensors()
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 2 <= n <= min(size - 8, _MAX_HEADER * 8):
            raise _bad(path, "is not a safetensors file (bad header length)")
        raw = f.read(n)
        try:
            header = json.loads(raw)
            if not isinstance(header, dict):
                raise TypeError("the header is not an object")
            dtypes = {k: v["dtype"] for k, v in header.items() if k != "__metadata__"}
        except (ValueError, TypeError, KeyError, RecursionError) as e:
            raise _bad(path, f"is not a valid safetensors file (header: {e})") from None
        _verify_safetensors_crc(path, f, raw, header.get("__metadata__"))
    odd = {k: d for k, d in dtypes.items() if d not in _ST_DTYPES}
    if odd:
        k, d = next(iter(odd.items()))
        raise _bad(path, f"holds {len(odd)} tensor(s) of a dtype numpy cannot represent "
                         f"({k!r} is {d}); convert them to float32 before saving, e.g. in "
                         "torch {k: v.float() for k, v in state_dict.items()}")
    try:
        return dict(stn.load_file(path))
    except Exception as e:  # the Rust parser's own error type
        raise _bad(path, f"is not a valid safetensors file ({e})") from None
