"""Full training step timing: forward, MSE loss, backward, Adam step, for deep sigmoid MLPs.

Compares deepgrad, a plain numpy MLP written the way a student would, and PyTorch eager on the
CPU (when installed), all in this process with the same thread count. Prints ms/step (median
over rounds that alternate the frameworks) and the ratios; then, per configuration, deepgrad's
step against the machine's FMA peak measured in the same run (bench_kernels.fma_peak) and where
its time goes (GEMMs, activation, loss, optimizer, the other native work, Python); then the
Python overhead per Dense layer per step (a deep, tiny network where the kernels cost next to
nothing).

    python benchmarks/bench_train.py [--threads N] [--seconds S] [--configs 10,64,128 ...]
                                     [--wait-idle S]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

if "--threads" in sys.argv[:-1]:  # BLAS pools read these once, when numpy/torch are imported
    _n = sys.argv[sys.argv.index("--threads") + 1]
    for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_v] = _n

import numpy as np  # noqa: E402

import deepgrad as dg  # noqa: E402
from deepgrad import losses, nn, optim  # noqa: E402

CONFIGS = [(10, 64, 128), (50, 64, 128), (100, 32, 64), (10, 256, 256), (5, 1024, 512)]


def _wait_idle(limit: float) -> None:
    """Wait up to `limit` seconds until the CPUs are >= 90% idle (a machine shared with other
    jobs: each measurement starts when no one else holds a core)."""
    from bench_kernels import cpu_idle_fraction
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline and cpu_idle_fraction(0.3) < 0.9:
        pass


def _time(step, seconds: float, min_steps: int = 5, warmup: int = 3,
          reduce=statistics.median) -> float:
    """Median (or `reduce`) seconds per call of step() over about `seconds` of repeated calls."""
    for _ in range(warmup):
        step()
    times = []
    t_end = time.perf_counter() + seconds
    while len(times) < min_steps or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        if len(times) >= 2000:
            break
    return reduce(times)


def _time_rounds(steps, seconds: float, rounds: int = 5, warmup: int = 3) -> list[float]:
    """Median seconds per call of each of `steps`, timed side by side: `rounds` rounds, each
    running every step (in alternating order) for about seconds/rounds, so that a burst of load
    from another process hits all of them alike."""
    for step in steps:
        for _ in range(warmup):
            step()
    samples = [[] for _ in steps]
    for r in range(rounds):
        for i in (range(len(steps)) if r % 2 == 0 else reversed(range(len(steps)))):
            t_end = time.perf_counter() + seconds / rounds
            while True:
                t0 = time.perf_counter()
                steps[i]()
                t1 = time.perf_counter()
                samples[i].append(t1 - t0)
                if t1 >= t_end or len(samples[i]) >= 400 * (r + 1):
                    break
    return [statistics.median(x) for x in samples]


def _data(width: int, batch: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, width)).astype(np.float32)
    t = rng.uniform(0.2, 0.8, (batch, width)).astype(np.float32)
    return x, t


def deepgrad_step(depth: int, width: int, batch: int):
    dg.manual_seed(0)
    model = nn.Sequential(*[nn.Dense(width, width, "sigmoid") for _ in range(depth)])
    opt = optim.Adam(model, lr=1e-3)
    x, t = _data(width, batch)
    x, t = dg.tensor(x), dg.tensor(t)

    def step():
        opt.zero_grad()
        loss = losses.mse(model(x), t)
        loss.backward()
        opt.step()
    step.optimizer = opt
    return step


def numpy_step(depth: int, width: int, batch: int):
    """A student's numpy MLP: lists of weights, a forward loop, a backward loop, Adam per array."""
    rng = np.random.default_rng(0)
    bound = np.sqrt(6.0 / (2 * width))
    W = [rng.uniform(-bound, bound, (width, width)).astype(np.float32) for _ in range(depth)]
    b = [np.zeros(width, dtype=np.float32) for _ in range(depth)]
    params = W + b
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    x, t = _data(width, batch)
    state = {"k": 0}

    def step():
        acts = [x]
        for Wi, bi in zip(W, b):
            acts.append(1.0 / (1.0 + np.exp(-(acts[-1] @ Wi + bi))))
        y = acts[-1]
        grad = 2.0 * (y - t) / y.size
        gW, gb = [None] * depth, [None] * depth
        for i in reversed(range(depth)):
            a = acts[i + 1]
            dz = grad * a * (1.0 - a)
            gW[i] = acts[i].T @ dz
            gb[i] = dz.sum(axis=0)
            grad = dz @ W[i].T
        state["k"] += 1
        k = state["k"]
        for p, g, mi, vi in zip(params, gW + gb, m, v):
            mi *= 0.9
            mi += 0.1 * g
            vi *= 0.999
            vi += 0.001 * g * g
            mhat = mi / (1 - 0.9 ** k)
            vhat = vi / (1 - 0.999 ** k)
            p -= 1e-3 * mhat / (np.sqrt(vhat) + 1e-8)
    return step


def torch_step(torch, depth: int, width: int, batch: int):
    torch.manual_seed(0)
    layers = []
    for _ in range(depth):
        layers += [torch.nn.Linear(width, width), torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, t = (torch.from_numpy(a) for a in _data(width, batch))
    mse = torch.nn.MSELoss()

    def step():
        opt.zero_grad()
        loss = mse(model(x), t)
        loss.backward()
        opt.step()
    return step


def step_flops(depth: int, width: int, batch: int) -> int:
    """GEMM floating-point operations of one step: forward x W, backward dY W^T and X^T dY per
    layer, minus the first layer's dX (its input needs no gradient). Elementwise work, the
    loss and Adam are left out, so GFLOP/s = this / time is a lower bound on the GEMM rate."""
    return 2 * batch * width * width * (3 * depth - 1)


SPLIT = ("GEMMs", "activation", "loss", "optimizer", "other native", "Python")


def step_split(depth: int, width: int, batch: int, seconds: float) -> dict:
    """Where deepgrad's training step spends its time, each part measured side by side with the
    step itself (medians over alternating rounds):
      GEMMs         the step's 3*depth-1 products alone (_C.gemm into preallocated arrays),
                    less the fixed cost of as many empty (1x1x1) calls;
      activation    sigmoid forward and backward (_C.act_forward/act_backward) on every layer;
      loss          MSE forward and backward kernels;
      optimizer     opt.step() (one native Adam call over the parameter arena, and its Python);
      other native  the bare native step (dense_forward/backward, loss and opt.step() called
                    from a plain loop) less the four parts above: bias, colsum, dz, checks;
      Python        the full step less the bare native step: the tape, modules, zero_grad.
    Returns the seconds of each part and of the step."""
    from deepgrad import _C
    f32 = np.float32
    rng = np.random.default_rng(1)
    x, t = _data(width, batch)
    ws = [rng.uniform(-0.3, 0.3, (width, width)).astype(f32) for _ in range(depth)]
    bs = [np.zeros(width, f32) for _ in range(depth)]
    hs = [x] + [np.empty((batch, width), f32) for _ in range(depth)]
    gs = [np.empty((batch, width), f32) for _ in range(depth + 1)]
    dws = [np.zeros_like(w) for w in ws]
    dbs = [np.zeros_like(b) for b in bs]
    for i in range(depth):
        hs[i + 1][:] = _C.act_forward(hs[i] @ ws[i], "sigmoid")
    gs[depth][:] = rng.standard_normal((batch, width)).astype(f32) * 1e-3
    one, one_out = np.ones((1, 1), f32), np.empty((1, 1), f32)

    def gemms():
        for i in range(depth):
            _C.gemm(hs[i], ws[i], hs[i + 1])
        for i in reversed(range(depth)):
            _C.gemm(hs[i], gs[i + 1], dws[i], True, False, 1.0, 1.0)
            if i:
                _C.gemm(gs[i + 1], ws[i], gs[i], False, True)

    def empty_calls():
        for _ in range(3 * depth - 1):
            _C.gemm(one, one, one_out)

    def acts():
        for i in range(depth):
            _C.act_forward(hs[i + 1], "sigmoid")
            _C.act_backward(gs[i + 1], None, hs[i + 1], "sigmoid")

    def loss():
        _C.loss_forward("mse", hs[depth], t, "mean")
        _C.loss_backward("mse", hs[depth], t, "mean", 1.0)

    full = deepgrad_step(depth, width, batch)
    full()
    opt = full.optimizer

    def native():
        h, saved = x, []
        for w, b in zip(ws, bs):
            y, z = _C.dense_forward(h, w, b, "sigmoid")
            saved.append((h, y))
            h = y
        _C.loss_forward("mse", h, t, "mean")
        g = _C.loss_backward("mse", h, t, "mean", 1.0)
        for i in reversed(range(depth)):
            hi, y = saved[i]
            g = _C.dense_backward(g, hi, ws[i], None, y, dws[i], dbs[i], "sigmoid", 0.01, i > 0)
        opt.step()

    t_full, t_native, t_gemm, t_empty, t_act, t_loss, t_opt = _time_rounds(
        [full, native, gemms, empty_calls, acts, loss, opt.step], seconds)
    parts = {"GEMMs": max(t_gemm - t_empty, 0.0), "activation": t_act, "loss": t_loss,
             "optimizer": t_opt}
    parts["other native"] = max(t_native - sum(parts.values()), 0.0)
    parts["Python"] = max(t_full - t_native, 0.0)
    parts["step"] = t_full
    return parts


def print_peak_table(configs, seconds: float, threads: int) -> None:
    """Per configuration: deepgrad's step GFLOP/s against the FMA peak of `threads` threads
    measured in this run, and the time split (step_split)."""
    from bench_kernels import fma_peak
    peak = fma_peak(threads)
    print(f"\ndeepgrad step against the FMA peak ({peak:.0f} GFLOP/s on {threads} thread"
          f"{'s' if threads > 1 else ''}, measured in this run; load average "
          f"{open('/proc/loadavg').read().split()[0]})")
    print("GFLOP/s = the step's GEMM flops / step time; 'GEMM GFLOP/s' = the same flops / the "
          "GEMMs' own time; 'at peak' = the GEMM flops / the peak (the floor for this step)")
    head = (f"{'depth':>5} {'width':>5} {'batch':>5} | {'step us':>8} {'GFLOP/s':>7} "
            f"{'%peak':>5} {'GEMM GF/s':>9} {'at peak':>7} | " +
            " ".join(f"{k:>12}" for k in SPLIT))
    print(head)
    print("-" * len(head))
    for depth, width, batch in configs:
        p = step_split(depth, width, batch, max(seconds, 1.0))
        fl = step_flops(depth, width, batch)
        print(f"{depth:5d} {width:5d} {batch:5d} | {p['step'] * 1e6:8.1f} "
              f"{fl / p['step'] * 1e-9:7.1f} {100 * fl / p['step'] * 1e-9 / peak:4.0f}% "
              f"{fl / max(p['GEMMs'], 1e-12) * 1e-9:9.1f} {fl / peak * 1e-3:7.1f} | " +
              " ".join(f"{p[k] * 1e6:6.1f} ({100 * p[k] / p['step']:2.0f}%)" for k in SPLIT))
    sys.stdout.flush()


def python_overhead(seconds: float) -> tuple[float, float, float]:
    """For a 100-layer network of width 4 and batch 1 (kernels cost next to nothing): µs per
    Dense layer per training step, µs per layer of the bare native calls alone (dense_forward +
    dense_backward called from a plain loop: the floor), and µs per layer of a no_grad forward.
    Minimum times (not medians): a difference of two small figures, read on a shared machine."""
    from deepgrad import _C
    depth = 100
    step = deepgrad_step(depth, 4, 1)
    full = _time(step, seconds, reduce=min) / depth * 1e6
    dg.manual_seed(0)
    model = nn.Sequential(*[nn.Dense(4, 4, "sigmoid") for _ in range(depth)])
    x = dg.tensor(np.ones((1, 4), dtype=np.float32))
    with dg.no_grad():
        fwd = _time(lambda: model(x), seconds, reduce=min) / depth * 1e6
    ws = [np.full((4, 4), 0.1, dtype=np.float32) for _ in range(depth)]
    bs = [np.zeros(4, dtype=np.float32) for _ in range(depth)]
    dws, dbs = [np.zeros_like(w) for w in ws], [np.zeros_like(b) for b in bs]
    x0 = np.ones((1, 4), dtype=np.float32)

    def native():
        h, saved = x0, []
        for w, b in zip(ws, bs):
            y, z = _C.dense_forward(h, w, b, "sigmoid", 0.01)
            saved.append((h, z, y))
            h = y
        g = np.ones_like(h)
        for i in reversed(range(depth)):
            hi, z, y = saved[i]
            g = _C.dense_backward(g, hi, ws[i], z, y, dws[i], dbs[i], "sigmoid", 0.01, True)
    floor = _time(native, seconds, reduce=min) / depth * 1e6
    return full, floor, fwd


def frameworks(threads: int | None):
    """Sets deepgrad's (and torch's) thread count, prints the versions; returns torch or None."""
    if threads:
        dg.set_num_threads(threads)
    threads = dg.get_num_threads()
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    info = dg.build_info()
    print(f"deepgrad {info['version']} ({info['simd']}, {threads} threads); numpy "
          f"{np.__version__}; torch {torch.__version__ if torch else 'not installed'}")
    return torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for every framework")
    ap.add_argument("--seconds", type=float, default=0.5, help="time budget per measurement")
    ap.add_argument("--configs", nargs="*", default=None, help="depth,width,batch triples")
    ap.add_argument("--no-numpy", action="store_true", help="skip the numpy baseline")
    ap.add_argument("--no-split", action="store_true",
                    help="skip the FMA-peak table and time split of the narrow (width <= 64) "
                         "configurations")
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                    help="before each measurement wait up to S seconds for idle CPUs")
    args = ap.parse_args()
    configs = [tuple(int(v) for v in c.split(",")) for c in args.configs] if args.configs else CONFIGS
    torch = frameworks(args.threads)
    print("full training step (forward, MSE, backward, Adam), sigmoid, float32, ms/step (median "
          "over rounds alternating the frameworks); load average "
          f"{open('/proc/loadavg').read().split()[0]}")
    head = f"{'depth':>5} {'width':>5} {'batch':>5} | {'deepgrad':>9} {'numpy':>9} {'torch':>9} | " \
           f"{'numpy/dg':>8} {'torch/dg':>8} | GEMM GFLOP/s: {'dg':>5} {'numpy':>5} {'torch':>5}"
    print(head)
    print("-" * len(head))
    for depth, width, batch in configs:
        steps = [deepgrad_step(depth, width, batch)]
        if not args.no_numpy:
            steps.append(numpy_step(depth, width, batch))
        if torch:
            steps.append(torch_step(torch, depth, width, batch))
        if args.wait_idle > 0:
            _wait_idle(args.wait_idle)
        times = _time_rounds(steps, args.seconds * len(steps))
        t_dg = times[0]
        t_np = None if args.no_numpy else times[1]
        t_th = times[-1] if torch else None

        def ms(t):
            return f"{t * 1e3:9.3f}" if t is not None else f"{'-':>9}"

        def ratio(t):
            return f"{t / t_dg:7.1f}x" if t is not None else f"{'-':>8}"

        def gflops(t):
            return f"{step_flops(depth, width, batch) / t * 1e-9:5.1f}" if t is not None \
                else f"{'-':>5}"
        print(f"{depth:5d} {width:5d} {batch:5d} | {ms(t_dg)} {ms(t_np)} {ms(t_th)} | "
              f"{ratio(t_np)} {ratio(t_th)} |               {gflops(t_dg)} {gflops(t_np)} "
              f"{gflops(t_th)}")
    narrow = [c for c in configs if c[1] <= 64]
    if narrow and not args.no_split:
        print_peak_table(narrow, args.seconds, dg.get_num_threads())
    if args.wait_idle > 0:
        _wait_idle(args.wait_idle)
    full, floor, fwd = python_overhead(args.seconds)
    print(f"\nper Dense layer, 100 x Dense(4, 4), batch 1: {full:.2f} µs per training step "
          f"(forward + backward + its share of zero_grad/Adam) vs {floor:.2f} µs for the bare "
          f"native calls in a plain loop -> Python overhead {full - floor:.2f} µs per layer per "
          f"step; {fwd:.2f} µs per no_grad forward")


if __name__ == "__main__":
    main()
