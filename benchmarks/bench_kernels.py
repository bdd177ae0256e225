"""GFLOP/s of deepgrad's GEMM and fused dense layer against numpy (OpenBLAS), 1 and 2 threads.

    python benchmarks/bench_kernels.py            # full table (about 1-2 minutes)
    python benchmarks/bench_kernels.py --quick    # fewer shapes, shorter timings
    python benchmarks/bench_kernels.py --wait-idle 30   # on a shared machine: each row waits
                                                        # (up to 30 s) for idle CPUs

Both libraries run in this process on the same arrays; numpy's threads are set with threadpoolctl
when it is installed (pip install threadpoolctl), else through OPENBLAS_NUM_THREADS in a child
process per thread count. OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are removed from the environment
of this process so that OpenBLAS picks its native kernel for the CPU; the kernel is printed.
Ends with benchmarks/bench_memory.py's table (norm/Adam GB/s) when that file exists.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

_PINNED = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if any(v in os.environ for v in _PINNED) and "DG_BENCH_CHILD" not in os.environ:
    # OpenBLAS reads these when it loads: restart before numpy is imported.
    env = {k: v for k, v in os.environ.items() if k not in _PINNED}
    env["DG_BENCH_CHILD"] = "1"
    sys.exit(subprocess.call([sys.executable, *sys.argv], env=env))

import numpy as np  # noqa: E402

import deepgrad  # noqa: E402
from deepgrad import _C  # noqa: E402

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:  # numpy's threads are then set per child process
    threadpool_info = threadpool_limits = None


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_kernel() -> str:
    if threadpool_info is None:
        return "unknown (install threadpoolctl to see it)"
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            return (f"{info.get('internal_api')} {info.get('version')} "
                    f"kernel {info.get('architecture')}")
    return "unknown"


SETTLE = 0.0  # seconds to pause before timing each library (set for multi-threaded tables)


def best_times(fns, min_time: float) -> list[float]:
    """Best per-call seconds of each fn over 6 batches of about min_time/6 each. Each fn is timed
    after a pause of SETTLE seconds: OpenBLAS's worker threads keep spinning for a while after a
    call, and would otherwise steal a core from whatever is timed next."""
    best = []
    for fn in fns:
        if SETTLE:
            time.sleep(SETTLE)
        fn()
        t0 = time.perf_counter()
        fn()
        reps = max(1, int(min_time / 6 / max(time.perf_counter() - t0, 1e-7)))
        b = float("inf")
        for _ in range(6):
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            b = min(b, (time.perf_counter() - t0) / reps)
        best.append(b)
    return best


def cpu_idle_fraction(seconds: float = 0.5) -> float:
    """Fraction of all CPUs idle over the next `seconds` (Linux /proc/stat; 1.0 elsewhere)."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v[:8])

    try:
        idle0, tot0 = sample()
        time.sleep(seconds)
        idle1, tot1 = sample()
    except OSError:
        return 1.0
    return (idle1 - idle0) / max(tot1 - tot0, 1)


WAIT_IDLE = 0.0  # set by --wait-idle


def wait_idle() -> None:
    """On a machine shared with other jobs, wait (up to WAIT_IDLE seconds) until the CPUs are
    >= 90% idle, so that multi-threaded rows are not measured while another job holds a core."""
    deadline = time.perf_counter() + WAIT_IDLE
    while WAIT_IDLE > 0 and time.perf_counter() < deadline:
        if cpu_idle_fraction() >= 0.9:
            return


class NumpyThreads:
    def __init__(self, n: int):
        self.n, self.ctx = n, None

    def __enter__(self):
        if threadpool_limits is not None:
            self.ctx = threadpool_limits(limits=self.n, user_api="blas")
        deepgrad.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self.ctx is not None:
            self.ctx.unregister()


def gemm_row(label, m, n, k, ta, tb, dtype, min_time, rng):
    wait_idle()
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    out_dg = np.empty((m, n), dtype)
    out_np = np.empty((m, n), dtype)
    a_op, b_op = (a.T if ta else a), (b.T if tb else b)
    t_dg, t_np = best_times([lambda: _C.gemm(a, b, out_dg, ta, tb),
                             lambda: np.matmul(a_op, b_op, out=out_np)], min_time)
    flops = 2.0 * m * n * k
    return label, flops / t_dg / 1e9, flops / t_np / 1e9


def dense_row(batch, width, dtype, min_time, rng):
    wait_idle()
    x = rng.standard_normal((batch, width)).astype(dtype)
    w = rng.standard_normal((width, width)).astype(dtype)
    b = rng.standard_normal(width).astype(dtype)
    tmp = np.empty((batch, width), dtype)

    def numpy_dense():
        np.matmul(x, w, out=tmp)
        np.add(tmp, b, out=tmp)
        return np.maximum(tmp, 0.0)

    t_dg, t_np = best_times([lambda: _C.dense_forward(x, w, b, "relu"), numpy_dense], min_time)
    flops = 2.0 * batch * width * width
    return f"dense relu {batch}x{width}->{width}", flops / t_dg / 1e9, flops / t_np / 1e9


def run_table(threads: int, quick: bool) -> list[tuple[str, str, float, float]]:
    rng = np.random.default_rng(0)
    min_time = 0.06 if quick else 0.2
    squares = [64, 256, 1024] if quick else [64, 128, 256, 512, 1024, 2048]
    batches = [32, 1024] if quick else [32, 256, 1024]
    widths = [32, 128, 1024] if quick else [32, 128, 512, 1024]
    rows = []
    with NumpyThreads(threads):
        for dtype in (np.float32, np.float64):
            for s in squares:
                if dtype == np.float64 and quick and s > 256:
                    continue
                rows.append((np.dtype(dtype).name, *gemm_row(f"square {s}", s, s, s, False,
                                                             False, dtype, min_time, rng)))
        for bsz in batches:
            for wd in widths:
                # The three GEMMs of a dense layer: forward X W, backward dY W^T and X^T dY.
                rows.append(("float32", *gemm_row(f"X W      {bsz}x{wd}x{wd}", bsz, wd, wd,
                                                  False, False, np.float32, min_time, rng)))
                rows.append(("float32", *gemm_row(f"dY W^T   {bsz}x{wd}x{wd}", bsz, wd, wd,
                                                  False, True, np.float32, min_time, rng)))
                rows.append(("float32", *gemm_row(f"X^T dY   {wd}x{wd}x{bsz}", wd, wd, bsz,
                                                  True, False, np.float32, min_time, rng)))
                rows.append(("float32", *dense_row(bsz, wd, np.float32, min_time, rng)))
    return rows


def print_table(threads: int, rows) -> None:
    print(f"\n### {threads} thread{'s' if threads > 1 else ''}\n")
    print("| shape (M x N x K) | dtype | deepgrad GFLOP/s | numpy GFLOP/s | ratio |")
    print("|---|---|---:|---:|---:|")
    for dtype, label, g_dg, g_np in rows:
        print(f"| {label} | {dtype} | {g_dg:.1f} | {g_np:.1f} | {g_dg / g_np:.2f} |")
    sys.stdout.flush()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer shapes and shorter timings")
    p.add_argument("--threads", type=int, nargs="*", default=[1, 2], help="thread counts")
    p.add_argument("--passes", type=int, default=1,
                   help="measure the whole table this many times and keep each row's best figure "
                        "per library (for machines shared with other work)")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="before each row wait up to SECONDS for the CPUs to be >= 90%% idle")
    p.add_argument("--no-memory", action="store_true", help="skip bench_memory.py")
    args = p.parse_args(argv)
    global WAIT_IDLE, SETTLE
    WAIT_IDLE = args.wait_idle

    child = os.environ.get("DG_BENCH_THREADS")
    if child is None:
        info = deepgrad.build_info()
        print(f"# deepgrad kernel benchmark ({time.strftime('%Y-%m-%d')})\n")
        print(f"- CPU: {cpu_model()}, {os.cpu_count()} logical CPUs")
        print(f"- deepgrad {info['version']}, SIMD {info['simd']}, compiler {info['compiler']}")
        print(f"- numpy {np.__version__}, BLAS {blas_kernel()}")
        print("- GFLOP/s = 2*M*N*K / best time; 'dense relu' is deepgrad.dense_forward against "
              "numpy x@w, +b, maximum(.,0)")
        sys.stdout.flush()
    for t in args.threads:
        if threadpool_limits is None and child != str(t):
            # Without threadpoolctl, numpy's thread count is fixed when OpenBLAS loads.
            env = dict(os.environ, OPENBLAS_NUM_THREADS=str(t), DG_BENCH_THREADS=str(t))
            cmd = [sys.executable, os.path.abspath(__file__), "--threads", str(t), "--no-memory",
                   "--passes", str(args.passes), "--wait-idle", str(args.wait_idle)]
            subprocess.call(cmd + (["--quick"] if args.quick else []), env=env)
            continue
        SETTLE = 0.15 if t > 1 else 0.0
        rows = run_table(t, args.quick)
        for _ in range(args.passes - 1):
            more = run_table(t, args.quick)
            rows = [(d, lab, max(a, a2), max(b, b2))
                    for (d, lab, a, b), (_, _, a2, b2) in zip(rows, more)]
        print_table(t, rows)

    mem = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_memory.py")
    if not args.no_memory and os.path.exists(mem):
        import importlib.util

        spec = importlib.util.spec_from_file_location("bench_memory", mem)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.argv = [mem] + (["--quick"] if args.quick else [])
        module.main()


if __name__ == "__main__":
    main()
