"""Checkpoint save/load: time and peak memory of deepgrad.save/load against numpy and safetensors.

A state dict of --mb MiB (float32 arrays of a transformer-like mix of sizes) is written and read
back in alternating rounds in one process; each figure is the median over the rounds. Peak
memory is measured in a separate traced pass (tracemalloc sees numpy's allocations) and given as
a multiple of the data size. The baselines, all in the same run:

- ``whole-file load``: the loader deepgrad had before (read the file into one buffer, CRC it,
  copy every array out), kept here as the reference the streaming loader replaced;
- ``np.savez`` / ``np.load`` (no checksum, not atomic, no fsync; pickle off);
- ``safetensors.numpy`` save_file / load_file (no checksum, not atomic) when installed.

deepgrad's save includes two fsyncs (file and folder); reads come from the page cache.
    python benchmarks/bench_checkpoint.py [--mb 256] [--rounds 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import tracemalloc
import zlib

import numpy as np

import deepgrad as dg
from deepgrad import serialization as S


def state_dict(mb: int) -> dict:
    rng = np.random.default_rng(0)
    out, total, i = {}, 0, 0
    shapes = [(1024, 1024), (1024,), (1024, 4096), (4096,), (4096, 1024), (1024,)]
    while total < mb << 20:
        shape = shapes[i % len(shapes)]
        out[f"layers.{i // len(shapes)}.p{i % len(shapes)}"] = \
            rng.standard_normal(shape, dtype=np.float32)
        total += 4 * int(np.prod(shape))
        i += 1
    return out


def whole_file_load(path: str) -> dict:
    """The previous loader's data path: the file in one buffer, then a copy of every array."""
    with open(path, "rb") as f:
        prefix = f.read(S._PREFIX.size)
        _, _, hlen = S._PREFIX.unpack(prefix)
        rest = bytearray(os.fstat(f.fileno()).st_size - S._PREFIX.size)
        f.readinto(rest)
    body = memoryview(rest)[:-S._TRAILER.size]
    if zlib.crc32(body, zlib.crc32(prefix)) != S._TRAILER.unpack(rest[-S._TRAILER.size:])[0]:
        raise ValueError("checksum")
    tree, arrays, data_size, _ = S._parse_header(path, bytes(body[:hlen]), 2)
    start = hlen + S._pad(S._PREFIX.size + hlen)
    data = body[start:start + data_size]
    out = {}
    for (k, node), (dt, shape, off, nb) in zip(tree["items"], S._validate_arrays(path, arrays,
                                                                                 data_size)):
        out[k] = np.frombuffer(data, dt, nb // dt.itemsize, off).reshape(shape).copy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    sd = state_dict(args.mb)
    nbytes = sum(a.nbytes for a in sd.values())
    try:
        import safetensors.numpy as stn
    except ImportError:
        stn = None
    with tempfile.TemporaryDirectory() as d:
        dgp, npp, stp = (os.path.join(d, n) for n in ("m.dg", "m.npz", "m.safetensors"))
        sides = {
            "deepgrad.save": lambda: dg.save(sd, dgp),
            "deepgrad.load": lambda: dg.load(dgp),
            "whole-file load": lambda: whole_file_load(dgp),
            "np.savez": lambda: np.savez(npp, **sd),
            "np.load": lambda: dict(np.load(npp, allow_pickle=False)),
        }
        if stn is not None:
            sides["safetensors save"] = lambda: stn.save_file(sd, stp)
            sides["safetensors load"] = lambda: stn.load_file(stp)
        for f in sides.values():          # warm up, create every file
            f()
        times = {k: [] for k in sides}
        for _ in range(args.rounds):
            for k, f in sides.items():
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
        peaks = {}
        for k, f in sides.items():
            tracemalloc.start()
            f()
            peaks[k] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    print(f"{len(sd)} float32 arrays, {nbytes / 2**20:.0f} MiB; median of {args.rounds} "
          f"alternating rounds; load average {os.getloadavg()[0]:.2f}")
    print(f"{'':18s} {'time':>9s} {'GB/s':>6s} {'peak mem':>9s}")
    for k in sides:
        t = statistics.median(times[k])
        print(f"{k:18s} {t * 1e3:7.0f}ms {nbytes / t / 1e9:6.2f} {peaks[k] / nbytes:8.2f}x")
    base = statistics.median(times["whole-file load"])
    new = statistics.median(times["deepgrad.load"])
    print(f"deepgrad.load vs the whole-file loader: {base / new:.2f}x faster, peak "
          f"{peaks['deepgrad.load'] / nbytes:.2f}x vs {peaks['whole-file load'] / nbytes:.2f}x "
          "the data")


if __name__ == "__main__":
    main()
