"""Memory-bound kernels: GB/s of segment_norms and adam_step against numpy and this machine's bandwidth.

The bandwidth is measured in the same run as the best of a numpy copy (dst = src), a numpy add
(c = a + b) and a numpy max (read only) of large arrays, counting the bytes read and written
(copy and add lose some to write-allocate traffic, which is why the read-only stream is included).
Arrays are much larger than the caches, so every kernel streams from DRAM. Bytes counted:
segment_norms reads the buffer once; adam_step reads param, grad, m, v and writes param, m, v
(7 arrays). numpy does the same work with vectorized expressions (np.linalg.norm per segment,
which accumulates in float32 where deepgrad uses float64; in-place ufuncs with one temporary
for Adam).

    python benchmarks/bench_memory.py [--quick] [--n 67108864] [--threads 1 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from deepgrad import _C


def best_times(fns: dict, reps: int) -> dict:
    """Best wall time of each fn over reps rounds. The fns run in rotation inside each round, so
    a burst of load from other processes hits all of them alike (this machine is shared)."""
    for fn in fns.values():
        fn()  # warm up: page faults, thread pool start
    best = {k: float("inf") for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def with_threads(nt, fn):
    def run():
        _C.set_num_threads(nt)
        fn()
    return run


def numpy_norms(buf, offsets):
    # What a numpy user writes: np.linalg.norm per segment (float32 BLAS dot), then the global norm.
    norms = np.array([np.linalg.norm(buf[offsets[i]:offsets[i + 1]]) for i in range(len(offsets) - 1)])
    return norms, np.linalg.norm(norms)


def numpy_health(buf, offsets):
    """What segment_health computes, per segment, the way a numpy user writes it."""
    out = []
    for a, b in zip(offsets[:-1], offsets[1:]):
        s = buf[a:b]
        fin = np.isfinite(s)
        f = s[fin]
        out.append((np.sqrt(np.dot(f, f)), np.abs(f).max(initial=0), f.min(initial=np.inf),
                    f.max(initial=-np.inf), np.isnan(s).sum(), (~fin).sum()))
    return out


def numpy_adam(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, tmp=None):
    # m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)
    m *= b1
    m += (1 - b1) * g
    v *= b2
    np.multiply(g, g, out=tmp)
    tmp *= 1 - b2
    v += tmp
    np.sqrt(v, out=tmp)
    tmp *= 1 / np.sqrt(1 - b2 ** t)
    tmp += eps
    np.divide(m, tmp, out=tmp)
    tmp *= lr / (1 - b1 ** t)
    p -= tmp


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="16M floats and fewer repetitions")
    ap.add_argument("--n", type=int, default=None, help="elements per array (default 64M, 16M with --quick)")
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    args = ap.parse_args(argv)
    n = args.n or (1 << 24 if args.quick else 1 << 26)
    reps = 4 if args.quick else 10
    rng = np.random.default_rng(0)
    dtype = np.float32
    isz = np.dtype(dtype).itemsize

    src = rng.standard_normal(n, dtype=np.float32)
    dst = np.empty_like(src)
    # ~100 segments of uneven sizes, like a model's parameter tensors.
    cuts = np.sort(rng.choice(np.arange(1, n), size=99, replace=False))
    offsets = np.concatenate([[0], cuts, [n]]).astype(np.int64)
    p = rng.standard_normal(n, dtype=np.float32)
    g = src
    m = np.zeros(n, dtype)
    v = np.zeros(n, dtype)
    tmp = np.empty(n, dtype)
    fns = {"copy": lambda: np.copyto(dst, src),
           "add": lambda: np.add(src, p, out=dst),
           "max": lambda: np.max(src),
           ("segment_norms", "numpy"): lambda: numpy_norms(g, offsets),
           ("segment_health", "numpy"): lambda: numpy_health(g, offsets),
           ("adam_step", "numpy"): lambda: numpy_adam(p, g, m, v, 10, tmp=tmp)}
    for nt in args.threads:
        fns[("segment_norms", nt)] = with_threads(nt, lambda: _C.segment_norms(g, offsets))
        fns[("segment_health", nt)] = with_threads(nt, lambda: _C.segment_health(g, offsets))
        fns[("adam_step", nt)] = with_threads(nt, lambda: _C.adam_step(p, g, m, v, 10, 1e-3, 0.9, 0.999, 1e-8))
    threads0 = _C.get_num_threads()
    try:
        t = best_times(fns, reps)
    finally:
        _C.set_num_threads(threads0)
    bw_copy = 2 * n * isz / t["copy"] / 1e9
    bw_add = 3 * n * isz / t["add"] / 1e9
    bw_read = n * isz / t["max"] / 1e9
    bw = max(bw_copy, bw_add, bw_read)  # the reference: the best stream measured (the stricter target)
    traffic = {"segment_norms": n * isz, "segment_health": n * isz, "adam_step": 7 * n * isz}
    rows = [(k, nt, traffic[k] / t[(k, nt)] / 1e9, traffic[k] / t[(k, "numpy")] / 1e9)
            for nt in args.threads for k in ("segment_norms", "segment_health", "adam_step")]

    print(f"\n## Memory-bound kernels (float32, {n / 2**20:.0f}M elements = {n * isz / 2**20:.0f} MiB per array)\n")
    print(f"- measured memory bandwidth, best of {reps}, bytes read + written: numpy copy {bw_copy:.1f} GB/s, "
          f"numpy add {bw_add:.1f} GB/s, numpy max (read only) {bw_read:.1f} GB/s; reference = the best, "
          f"{bw:.1f} GB/s")
    print("- numpy baseline: one run for all rows (its ufuncs are single-threaded; norms use BLAS dot)\n")
    print("| kernel | threads | deepgrad GB/s | numpy GB/s | vs numpy | % of bandwidth |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, nt, gbs, gbs_np in rows:
        print(f"| {name} | {nt} | {gbs:.1f} | {gbs_np:.1f} | {gbs / gbs_np:.2f}x | {100 * gbs / bw:.0f}% |")


if __name__ == "__main__":
    main()
