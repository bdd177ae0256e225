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
import statistics
import subprocess
import sys
import time

_PINNED = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if (__name__ == "__main__" and any(v in os.environ for v in _PINNED)
        and "DG_BENCH_CHILD" not in os.environ):
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


# gemm runs the AVX-512 micro-kernel on this CPU: also time the AVX2 one (the previous kernel).
AVX2_COLUMN = _C._gemm_isas()[1] == "avx512"
SETTLE = 0.0  # seconds to pause before timing each batch (set for multi-threaded tables)
ROUNDS = 7


def median_times(fns, min_time: float, rounds: int | None = None) -> list[float]:
    """Median per-call seconds of each fn: `rounds` rounds, each timing one batch of calls of
    every fn in turn (the order alternates between rounds), about min_time/rounds per fn per
    round. Side by side in rounds, so a neighbour's burst of load hits both sides alike. Each
    batch is timed after a pause of SETTLE seconds: OpenBLAS's worker threads keep spinning for a
    while after a call, and would otherwise steal a core from whatever is timed next. After the
    pause each side makes one untimed call: the pause lets both libraries' worker threads go to
    sleep, and on a VM waking a sleeping vCPU takes up to milliseconds (a 2-thread 256^3 gemm:
    0.75 ms back to back, 1.8 ms after 50 ms idle, on the Zen 1 VM), which would be counted in a
    batch of a few calls; the tables measure back-to-back calls, as in a training loop."""
    rounds = rounds or ROUNDS
    reps = []
    for fn in fns:
        fn()
        t0 = time.perf_counter()
        fn()
        reps.append(max(1, int(min_time / rounds / max(time.perf_counter() - t0, 1e-7))))
    samples = [[] for _ in fns]
    for r in range(rounds):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            if SETTLE:
                time.sleep(SETTLE)
                fns[i]()
            fn, n = fns[i], reps[i]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[i].append((time.perf_counter() - t0) / n)
    return [statistics.median(x) for x in samples]


def fma_peak(threads: int, probes: int = 40, seconds: float = 0.004) -> float:
    """GFLOP/s of `threads` cores running independent FMA chains of the GEMM micro-kernel's
    vector width (deepgrad._C._fma_peak_probe): the machine's arithmetic peak, measured in this
    run. It is `threads` x the best of `probes` short one-thread probes spread over about a
    second: on a shared machine a long probe, or one on all threads at once (which waits for a
    thread that another process preempted), measures the neighbours too."""
    flops, secs = _C._fma_peak_probe(100_000, 1)
    iters = max(1000, int(100_000 * seconds / max(secs, 1e-6)))
    best = 0.0
    for _ in range(probes):
        flops, secs = _C._fma_peak_probe(iters, 1)
        best = max(best, flops / secs / 1e9)
        time.sleep(0.02)
    return threads * best


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


ROWS = ""  # set by --rows


def gemm_row(label, m, n, k, ta, tb, dtype, min_time, rng):
    if ROWS not in label:
        return None
    wait_idle()
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    out_dg = np.empty((m, n), dtype)
    out_np = np.empty((m, n), dtype)
    a_op, b_op = (a.T if ta else a), (b.T if tb else b)
    fns = [lambda: _C.gemm(a, b, out_dg, ta, tb), lambda: np.matmul(a_op, b_op, out=out_np)]
    if AVX2_COLUMN:  # the AVX2 micro-kernel too, when gemm runs a wider one: before/after
        out_2 = np.empty((m, n), dtype)
        fns.append(lambda: _C._gemm_avx2(a, b, out_2, ta, tb))
    t = median_times(fns, min_time)
    return label, 2.0 * m * n * k, t[0], t[1], t[2] if AVX2_COLUMN else None


def dense_row(batch, width, dtype, min_time, rng):
    if ROWS not in f"dense relu {batch}x{width}->{width}":
        return None
    wait_idle()
    x = rng.standard_normal((batch, width)).astype(dtype)
    w = rng.standard_normal((width, width)).astype(dtype)
    b = rng.standard_normal(width).astype(dtype)
    tmp = np.empty((batch, width), dtype)

    def numpy_dense():
        np.matmul(x, w, out=tmp)
        np.add(tmp, b, out=tmp)
        return np.maximum(tmp, 0.0)

    t_dg, t_np = median_times([lambda: _C.dense_forward(x, w, b, "relu"), numpy_dense],
                              min_time)
    return f"dense relu {batch}x{width}->{width}", 2.0 * batch * width * width, t_dg, t_np, None


SQUARES = [32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048]


def run_table(threads: int, quick: bool) -> list[tuple]:
    rng = np.random.default_rng(0)
    min_time = 0.1 if quick else 0.3
    squares = [32, 64, 128, 256, 1024] if quick else SQUARES
    batches = [32, 1024] if quick else [32, 128, 1024]
    widths = [32, 128, 1024] if quick else [32, 64, 256, 1024]
    rows = []
    with NumpyThreads(threads):
        # The fixed cost of a call (argument checks, dispatch, output checks): a 1x1x1 product.
        rows.append(("float32", gemm_row("per call: 1x1x1", 1, 1, 1, False, False, np.float32,
                                          min_time, rng)))
        for dtype in (np.float32, np.float64):
            for s in squares if dtype == np.float32 else [64, 256, 1024]:
                if dtype == np.float64 and quick and s > 256:
                    continue
                rows.append((np.dtype(dtype).name, gemm_row(f"square {s}", s, s, s, False,
                                                             False, dtype, min_time, rng)))
        for bsz in batches:
            for wd in widths:
                # The three GEMMs of a dense layer: forward X W, backward dY W^T and X^T dY.
                rows.append(("float32", gemm_row(f"X W      {bsz}x{wd}x{wd}", bsz, wd, wd,
                                                  False, False, np.float32, min_time, rng)))
                rows.append(("float32", gemm_row(f"dY W^T   {bsz}x{wd}x{wd}", bsz, wd, wd,
                                                  False, True, np.float32, min_time, rng)))
                rows.append(("float32", gemm_row(f"X^T dY   {wd}x{wd}x{bsz}", wd, wd, bsz,
                                                  True, False, np.float32, min_time, rng)))
                rows.append(("float32", dense_row(bsz, wd, np.float32, min_time, rng)))
    return [(d, *r) for d, r in rows if r is not None]


def print_table(threads: int, rows, peak: float) -> None:
    print(f"\n### {threads} thread{'s' if threads > 1 else ''} (FMA peak {peak:.0f} GFLOP/s; "
          f"load average {open('/proc/loadavg').read().split()[0]})\n")
    avx2 = " deepgrad AVX2 GFLOP/s |" if AVX2_COLUMN else ""
    print("| shape (M x N x K) | dtype | deepgrad us/call | numpy us/call | deepgrad GFLOP/s "
          f"| numpy GFLOP/s |{avx2} deepgrad % of peak | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if AVX2_COLUMN else ""))
    for dtype, label, flops, t_dg, t_np, t_2 in rows:
        # float64 has half the lanes per FMA: its peak is half the float32 peak.
        pk = peak / (2 if dtype == "float64" else 1)
        col2 = (f" {flops / t_2 / 1e9:.1f} |" if t_2 else " - |") if AVX2_COLUMN else ""
        print(f"| {label} | {dtype} | {t_dg * 1e6:.2f} | {t_np * 1e6:.2f} | "
              f"{flops / t_dg / 1e9:.1f} | {flops / t_np / 1e9:.1f} |{col2} "
              f"{100 * flops / t_dg / 1e9 / pk:.0f}% | {t_np / t_dg:.2f} |")
    worst = min(((t_np / t_dg, label) for d, label, f, t_dg, t_np, _ in rows
                 if label.startswith("square") and d == "float32"), default=None)
    if worst:
        print(f"\nworst float32 square ratio: {worst[0]:.2f} ({worst[1]})")
    sys.stdout.flush()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer shapes and shorter timings")
    p.add_argument("--threads", type=int, nargs="*", default=[1, 2], help="thread counts")
    p.add_argument("--passes", type=int, default=1,
                   help="measure the whole table this many times and keep each row's best median "
                        "per library (for machines shared with other work)")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="before each row wait up to SECONDS for the CPUs to be >= 90%% idle")
    p.add_argument("--no-memory", action="store_true", help="skip bench_memory.py")
    p.add_argument("--rows", default="", metavar="TEXT",
                   help="only the rows whose label contains TEXT (e.g. 'square', '128x64')")
    args = p.parse_args(argv)
    global WAIT_IDLE, SETTLE, ROWS
    WAIT_IDLE, ROWS = args.wait_idle, args.rows

    child = os.environ.get("DG_BENCH_THREADS")
    if child is None:
        info = deepgrad.build_info()
        print(f"# deepgrad kernel benchmark ({time.strftime('%Y-%m-%d')})\n")
        print(f"- CPU: {cpu_model()}, {os.cpu_count()} logical CPUs")
        print(f"- deepgrad {info['version']}, SIMD {info['simd']}, GEMM micro-kernel "
              f"{_C._gemm_isas()[1]}, compiler {info['compiler']}")
        print(f"- numpy {np.__version__}, BLAS {blas_kernel()}")
        print("- us/call = median over rounds that alternate the two libraries; GFLOP/s = "
              "2*M*N*K / that time, so the per-call cost counts; 'dense relu' is "
              "deepgrad.dense_forward against numpy x@w, +b, maximum(.,0)")
        print("- FMA peak: deepgrad._C._fma_peak_probe, independent float FMA chains of the GEMM "
              "micro-kernel's vector width, the best of 40 short one-thread probes before and "
              "after the table, times the thread count; float64 rows are compared with half of "
              "it")
        sys.stdout.flush()
    for t in args.threads:
        if threadpool_limits is None and child != str(t):
            # Without threadpoolctl, numpy's thread count is fixed when OpenBLAS loads.
            env = dict(os.environ, OPENBLAS_NUM_THREADS=str(t), DG_BENCH_THREADS=str(t))
            cmd = [sys.executable, os.path.abspath(__file__), "--threads", str(t), "--no-memory",
                   "--passes", str(args.passes), "--wait-idle", str(args.wait_idle),
                   "--rows", args.rows]
            subprocess.call(cmd + (["--quick"] if args.quick else []), env=env)
            continue
        # OpenBLAS's workers spin ~0.1 s after a call (its THREAD_TIMEOUT): a shorter pause left
        # numpy's spinning thread on the second core while deepgrad's 2-thread batch ran, and
        # the table showed deepgrad at its 1-thread rate (0.39-0.75x numpy at n = 96-1024)
        SETTLE = 0.25 if t > 1 else 0.0
        peak = fma_peak(t)
        rows = run_table(t, args.quick)
        for _ in range(args.passes - 1):
            more = run_table(t, args.quick)
            rows = [(d, lab, f, min(a, a2), min(b, b2), c and min(c, c2))
                    for (d, lab, f, a, b, c), (_, _, _, a2, b2, c2) in zip(rows, more)]
        peak = max(peak, fma_peak(t))
        print_table(t, rows, peak)

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
