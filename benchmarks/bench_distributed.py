"""Data-parallel training over MPI: step time and scaling at 1 and 2 ranks, the measured
all-reduce time of the gradient arena, and an alpha-beta model fitted to it that projects the
step time and efficiency on 2-64 nodes at 10 and 100 Gb/s.

    python benchmarks/bench_distributed.py [--steps 60] [--quick]

Runs itself under ``mpiexec -n 1`` and ``-n 2`` (the pip MPICH wheel's; ranks on one machine
talk through shared memory), one deepgrad thread per rank, a fixed GLOBAL batch (strong
scaling: each of p ranks computes 1/p of it). Step = zero_grad, forward, cross-entropy,
backward, one Allreduce of the arena, Adam.

The model: t_allreduce(n bytes, p ranks) = 2 (p - 1) alpha + 2 (p - 1) / p * n * beta (ring
all-reduce: reduce-scatter then all-gather). alpha and beta are fitted by least squares on
relative errors to this machine's 2-rank measurements (p = 2: t = 2 alpha + n beta); for the projections beta is the
link's (8 / bandwidth) and alpha is the larger of the fitted one and 5 us (a typical
latency between nodes on Ethernet with a user-space MPI), and the compute per rank is the
1-rank step's compute / p (the global batch is split). Overlap of communication with the
backward is not assumed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

CONFIGS = [("small MLP 4x64, batch 64", 4, 64, 64), ("large MLP 4x1024, batch 256", 4, 1024, 256)]
SIZES = [1 << k for k in range(10, 27, 2)]   # 1 KiB .. 64 MiB


def child(steps: int) -> None:
    import deepgrad as dg
    import deepgrad.distributed as dist
    from deepgrad import losses, nn, optim
    rank, size = dist.init()
    dg.set_num_threads(1)
    comm = dist._comm()
    from mpi4py import MPI
    out = {"ranks": size, "steps": {}, "allreduce": {}}
    for label, depth, width, batch in CONFIGS:
        dg.manual_seed(0)
        layers = [nn.Dense(width, width, "relu") for _ in range(depth - 1)]
        model = dist.DataParallel(nn.Sequential(*layers, nn.Dense(width, 10)))
        opt = optim.Adam(model.module, lr=1e-3)
        rng = np.random.default_rng(rank)
        local = batch // size
        x = dg.tensor(rng.standard_normal((local, width)).astype(np.float32))
        y = rng.integers(0, 10, local)
        times, comm_times = [], []
        for s in range(steps + 5):
            comm.Barrier()
            t0 = time.perf_counter()
            opt.zero_grad()
            losses.cross_entropy(model(x), y).backward()
            t1 = time.perf_counter()
            if size > 1:
                model.allreduce()
            t2 = time.perf_counter()
            opt.step()
            t3 = time.perf_counter()
            if s >= 5:
                times.append(t3 - t0)
                comm_times.append(t2 - t1)
        nbytes = int(np.asarray(model.module.arena.grads).nbytes)
        out["steps"][label] = {"step": statistics.median(times),
                               "comm": statistics.median(comm_times), "arena_bytes": nbytes}
    if size > 1:
        for n in SIZES:
            buf = np.ones(n // 4, np.float32)
            ts = []
            for _ in range(15):
                comm.Barrier()
                t0 = time.perf_counter()
                comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
                ts.append(time.perf_counter() - t0)
            out["allreduce"][n] = statistics.median(ts[3:])
    if rank == 0:
        print("JSON " + json.dumps(out), flush=True)


def run(n: int, steps: int) -> dict:
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or \
        shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit("bench_distributed: no mpiexec; pip install 'deepgrad[mpi]'")
    r = subprocess.run([mpiexec, "-n", str(n), sys.executable, __file__, "--child",
                        "--steps", str(steps)], capture_output=True, text=True, timeout=900,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("JSON ")), None)
    if r.returncode != 0 or line is None:
        sys.exit(f"bench_distributed: mpiexec -n {n} failed:\n{r.stdout}\n{r.stderr[-3000:]}")
    return json.loads(line[5:])


def fit(points: dict) -> tuple[float, float]:
    """alpha, beta from 2-rank times t = 2 alpha + n beta, least squares on RELATIVE errors
    (each row weighted by 1/t, so the microsecond messages count as much as the 64 MiB ones)."""
    n = np.array([float(k) for k in points])
    t = np.array(list(points.values()))
    A = np.stack([2.0 * np.ones_like(n), n], axis=1) / t[:, None]
    (alpha, beta), *_ = np.linalg.lstsq(A, np.ones_like(t), rcond=None)
    return max(float(alpha), 0.0), max(float(beta), 0.0)


def ring(n_bytes: float, p: int, alpha: float, beta: float) -> float:
    return 0.0 if p == 1 else 2 * (p - 1) * alpha + 2 * (p - 1) / p * n_bytes * beta


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--quick", action="store_true", help="20 steps per configuration")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    steps = 20 if a.quick else a.steps
    if a.child:
        child(steps)
        return
    import deepgrad as dg
    from mpi4py import MPI
    print(f"deepgrad {dg.__version__}; {MPI.Get_library_version().splitlines()[0].strip()}; "
          f"one deepgrad thread per rank; load average {os.getloadavg()[0]:.2f}")
    one, two = run(1, steps), run(2, steps)
    print("\nStep time (median), fixed global batch split over the ranks")
    print(f"{'config':30s} {'arena':>9} {'1 rank ms':>10} {'2 ranks ms':>11} {'allreduce ms':>13}"
          f" {'speed-up':>9} {'efficiency':>11}")
    for label, *_ in CONFIGS:
        s1, s2 = one["steps"][label], two["steps"][label]
        sp = s1["step"] / s2["step"]
        print(f"{label:30s} {s1['arena_bytes'] / 2**20:>7.2f}MB {1e3 * s1['step']:>10.3f} "
              f"{1e3 * s2['step']:>11.3f} {1e3 * s2['comm']:>13.3f} {sp:>9.2f} {sp / 2:>10.0%}")
    alpha, beta = fit({int(k): v for k, v in two["allreduce"].items()})
    print("\nAllreduce of a float32 buffer, 2 ranks (shared memory): measured and fitted")
    print(f"{'bytes':>10} {'measured us':>12} {'model us':>9} {'GB/s':>7}")
    for k, v in two["allreduce"].items():
        n = int(k)
        print(f"{n:>10} {1e6 * v:>12.1f} {1e6 * ring(n, 2, alpha, beta):>9.1f} "
              f"{n / v / 1e9:>7.2f}")
    print(f"fitted alpha = {1e6 * alpha:.2f} us, beta = {1e9 * beta:.3f} ns/byte "
          f"({1 / beta / 1e9 if beta else float('inf'):.2f} GB/s)")
    alpha_net = max(alpha, 5e-6)
    print(f"\nProjection (ring all-reduce, alpha = {1e6 * alpha_net:.0f} us, beta from the link; "
          "compute = 1-rank compute / p; no overlap)")
    print(f"{'config':30s} {'link':>8} " + " ".join(f"{'p=' + str(p):>14}" for p in
                                                      (2, 4, 8, 16, 32, 64)))
    for label, *_ in CONFIGS:
        s1 = one["steps"][label]
        compute = s1["step"]
        for gbps in (10, 100):
            bnet = 8.0 / (gbps * 1e9)
            cells = []
            for p in (2, 4, 8, 16, 32, 64):
                t = compute / p + ring(s1["arena_bytes"], p, alpha_net, bnet)
                cells.append(f"{1e3 * t:6.3f}ms {compute / (p * t):4.0%}")
            print(f"{label:30s} {gbps:>5}Gb/s " + " ".join(f"{c:>14}" for c in cells))
    print("(cells: projected step time and scaling efficiency t1 / (p * t_p))")


if __name__ == "__main__":
    main()
