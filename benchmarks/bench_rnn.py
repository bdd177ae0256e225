"""Recurrent training step timing: forward through T steps, MSE on the last hidden state,
backpropagation through time, Adam, for RNN (tanh), GRU and LSTM.

Compares, in this process with the same thread count: deepgrad; deepgrad with its stepwise
reference sequence kernels (one gemm() call per step, the previous implementation: the
"before" column); a plain numpy BPTT written the way a student would; and PyTorch eager on the
CPU (torch.nn.RNN/GRU/LSTM, batch_first) when installed. The sides alternate in rounds (a few
steps of each, every round), and each time is the median over all rounds, so load that comes
and goes on a shared machine reaches every side alike. Also prints each step's GEMM work as
GFLOP/s and as a fraction of deepgrad's own large GEMM (1024^3, timed between the rounds).

    python benchmarks/bench_rnn.py [--threads N] [--rounds R] [--configs B,T,I,H ...]
                                   [--kinds rnn gru lstm] [--wait-idle S] [--kernel auto|avx2]
                                   [--clock wall|cpu] [--settle S]
"""
from __future__ import annotations

import argparse
import contextlib
import functools
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
from bench_train import _wait_idle, frameworks  # noqa: E402
from deepgrad import _C, losses, nn, optim  # noqa: E402

# (batch, time steps, input features, hidden units)
CONFIGS = [(64, 50, 8, 64), (32, 100, 16, 128), (128, 20, 32, 256)]
KINDS = ("rnn", "gru", "lstm")
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
_SEQ = ("lstm_sequence_forward", "lstm_sequence_backward", "rnn_sequence_forward",
        "rnn_sequence_backward", "gru_sequence_forward", "gru_sequence_backward")


def step_flops(kind: str, B: int, T: int, I: int, H: int) -> float:
    """The step's GEMM work: forward x W_ih and h W_hh, backward dh W_hh^T, dW_hh and dW_ih
    (the input needs no gradient): 2 T B G (2 I + 3 H) with G = gates * H."""
    G = GATES[kind] * H
    return 2.0 * T * B * G * (2 * I + 3 * H)


@contextlib.contextmanager
def stepwise_kernels():
    """deepgrad's sequence kernels switched to the stepwise reference (reference=True)."""
    saved = {n: getattr(_C, n) for n in _SEQ}
    try:
        for n, f in saved.items():
            setattr(_C, n, functools.partial(f, reference=True))
        yield
    finally:
        for n, f in saved.items():
            setattr(_C, n, f)


def _data(B: int, T: int, I: int, H: int):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((B, T, I)).astype(np.float32),
            rng.uniform(-0.5, 0.5, (B, H)).astype(np.float32))


def deepgrad_step(kind: str, B: int, T: int, I: int, H: int, stepwise: bool = False):
    dg.manual_seed(0)
    model = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[kind](I, H)
    opt = optim.Adam(model, lr=1e-3)
    x, t = (dg.tensor(a) for a in _data(B, T, I, H))

    def step():
        opt.zero_grad()
        out, _ = model(x)
        loss = losses.mse(out[:, -1], t)
        loss.backward()
        opt.step()

    if not stepwise:
        return step

    def step_stepwise():
        with stepwise_kernels():
            step()
    return step_stepwise


def torch_step(torch, kind: str, B: int, T: int, I: int, H: int):
    torch.manual_seed(0)
    model = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[kind](
        I, H, batch_first=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, t = (torch.from_numpy(a) for a in _data(B, T, I, H))
    mse = torch.nn.MSELoss()

    def step():
        opt.zero_grad()
        out, _ = model(x)
        loss = mse(out[:, -1], t)
        loss.backward()
        opt.step()
    return step


def _sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def numpy_step(kind: str, B: int, T: int, I: int, H: int):
    """A student's numpy BPTT: a forward loop keeping a cache, a reverse loop, Adam per array.
    GRU as in PyTorch: r, z from x W_ih + b_ih + h W_hh + b_hh, n = tanh(x_n + r (h W_hn + b_hn))."""
    G = GATES[kind] * H
    rng = np.random.default_rng(0)
    k = 1.0 / np.sqrt(H)
    shapes = [(I, G), (H, G), (G,)] + ([(G,)] if kind == "gru" else [])
    params = [rng.uniform(-k, k, s).astype(np.float32) for s in shapes]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    x, tgt = _data(B, T, I, H)
    state = {"k": 0}

    def step():
        Wih, Whh, b = params[:3]
        h, c = np.zeros((B, H), np.float32), np.zeros((B, H), np.float32)
        cache = []
        for t in range(T):
            if kind == "gru":
                xg = x[:, t] @ Wih + b
                hg = h @ Whh + params[3]
                r = _sig(xg[:, :H] + hg[:, :H])
                z = _sig(xg[:, H:2 * H] + hg[:, H:2 * H])
                n = np.tanh(xg[:, 2 * H:] + r * hg[:, 2 * H:])
                h_new = (1 - z) * n + z * h
                cache.append((h, r, z, n, hg[:, 2 * H:]))
                h = h_new
                continue
            a = x[:, t] @ Wih + h @ Whh + b
            if kind == "rnn":
                h_new = np.tanh(a)
                cache.append((h, h_new))
                h = h_new
            else:
                i, f = _sig(a[:, :H]), _sig(a[:, H:2 * H])
                g, o = np.tanh(a[:, 2 * H:3 * H]), _sig(a[:, 3 * H:])
                c_new = f * c + i * g
                h_new = o * np.tanh(c_new)
                cache.append((h, c, i, f, g, o, c_new))
                h, c = h_new, c_new
        dh = 2.0 * (h - tgt) / h.size
        dc = np.zeros_like(dh)
        grads = [np.zeros_like(p) for p in params]
        for t in reversed(range(T)):
            if kind == "gru":
                h_prev, r, z, n, hn = cache[t]
                dn = dh * (1 - z) * (1 - n * n)
                dz = dh * (h_prev - n) * z * (1 - z)
                dr = dn * hn * r * (1 - r)
                dxg = np.concatenate([dr, dz, dn], axis=1)
                dhg = np.concatenate([dr, dz, dn * r], axis=1)
                grads[0] += x[:, t].T @ dxg
                grads[1] += h_prev.T @ dhg
                grads[2] += dxg.sum(axis=0)
                grads[3] += dhg.sum(axis=0)
                dh = dh * z + dhg @ Whh.T
                continue
            if kind == "rnn":
                h_prev, h_t = cache[t]
                da = dh * (1.0 - h_t * h_t)
            else:
                h_prev, c_prev, i, f, g, o, c_new = cache[t]
                tc = np.tanh(c_new)
                dct = dc + dh * o * (1.0 - tc * tc)
                da = np.concatenate([dct * g * i * (1 - i), dct * c_prev * f * (1 - f),
                                     dct * i * (1 - g * g), dh * tc * o * (1 - o)], axis=1)
                dc = dct * f
            grads[0] += x[:, t].T @ da
            grads[1] += h_prev.T @ da
            grads[2] += da.sum(axis=0)
            dh = da @ Whh.T
        state["k"] += 1
        kk = state["k"]
        for p, gr, mi, vi in zip(params, grads, m, v):
            mi *= 0.9
            mi += 0.1 * gr
            vi *= 0.999
            vi += 0.001 * gr * gr
            p -= 1e-3 * (mi / (1 - 0.9 ** kk)) / (np.sqrt(vi / (1 - 0.999 ** kk)) + 1e-8)
    return step


def gemm_rate(n: int = 1024, reps: int = 3, clock=time.perf_counter) -> float:
    """deepgrad's large-GEMM GFLOP/s: the best of `reps` n^3 products (its roofline here)."""
    a = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    out = np.empty_like(a)
    _C.gemm(a, a, out=out)
    best = float("inf")
    for _ in range(reps):
        t0 = clock()
        _C.gemm(a, a, out=out)
        best = min(best, clock() - t0)
    return 2.0 * n ** 3 / best / 1e9


def alternate(steps: dict, rounds: int, per_round: float, wait_idle: float,
              clock=time.perf_counter, settle: float = 0.0) -> dict:
    """Median seconds per step of each side, the sides taking turns: every round runs each side
    for about `per_round` seconds (at least 2 steps), and the median is over all rounds' steps.
    `clock` times each step (time.process_time: the CPU time of this process, which on one
    thread leaves out the time slices other processes take). `settle`: seconds of pause before
    each side's turn (OpenBLAS's and PyTorch's worker threads keep spinning for ~0.1 s after
    their last call and hold the second core during the next side's first steps)."""
    times = {k: [] for k in steps}
    for f in steps.values():  # warm-up
        for _ in range(2):
            f()
    for _ in range(rounds):
        for k, f in steps.items():
            if settle > 0:
                time.sleep(settle)
            if wait_idle > 0:
                _wait_idle(wait_idle)
            t_end = time.perf_counter() + per_round
            n = 0
            while n < 2 or time.perf_counter() < t_end:
                t0 = clock()
                f()
                times[k].append(clock() - t0)
                n += 1
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for every framework")
    ap.add_argument("--rounds", type=int, default=7, help="rounds of alternating sides")
    ap.add_argument("--per-round", type=float, default=0.06, metavar="S",
                    help="seconds of each side per round")
    ap.add_argument("--configs", nargs="*", default=None, help="B,T,I,H quadruples")
    ap.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    ap.add_argument("--kernel", default="auto", choices=("auto", "avx2"),
                    help="deepgrad's sequence micro-kernel (avx2: AVX2 even where AVX-512 is)")
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                    help="before each side's turn wait up to S seconds for idle CPUs")
    ap.add_argument("--settle", type=float, default=None, metavar="S",
                    help="pause before each side's turn (default 0.25 s with more than one "
                         "thread, else 0)")
    ap.add_argument("--clock", default="wall", choices=("wall", "cpu"),
                    help="time steps by the wall clock, or by this process's CPU time (only "
                         "meaningful on 1 thread: on a shared machine it leaves out the time "
                         "slices other processes take)")
    args = ap.parse_args()
    if args.clock == "cpu" and (args.threads or dg.get_num_threads()) != 1:
        ap.error("--clock cpu needs --threads 1 (CPU time adds up the threads)")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    nthreads = args.threads or dg.get_num_threads()
    settle = args.settle if args.settle is not None else (0.25 if nthreads > 1 else 0.0)
    configs = [tuple(int(v) for v in c.split(",")) for c in args.configs] if args.configs else CONFIGS
    torch = frameworks(args.threads)
    kernel = _C._rnn_set_kernel(args.kernel)
    print(f"recurrent training step (forward over T, MSE on h_T, BPTT, Adam), float32, ms/step "
          f"(median of {args.rounds} alternating rounds, {args.clock} clock, {settle:g} s pause "
          f"before each turn); deepgrad sequence "
          f"kernel: {kernel}; before = deepgrad's stepwise reference kernels")
    head = (f"{'kind':>4} {'B':>4} {'T':>4} {'I':>4} {'H':>4} | {'deepgrad':>8} {'before':>8} "
            f"{'numpy':>8} {'torch':>8} | {'before/dg':>9} {'numpy/dg':>8} {'torch/dg':>8} | "
            f"{'GFLOP/s':>7} {'of GEMM':>7}")
    print(head)
    print("-" * len(head))
    rates = [gemm_rate(clock=clock)]
    for B, T, I, H in configs:
        for kind in args.kinds:
            steps = {"dg": deepgrad_step(kind, B, T, I, H),
                     "before": deepgrad_step(kind, B, T, I, H, stepwise=True),
                     "numpy": numpy_step(kind, B, T, I, H)}
            if torch:
                steps["torch"] = torch_step(torch, kind, B, T, I, H)
            t = alternate(steps, args.rounds, args.per_round, args.wait_idle, clock, settle)
            rates.append(gemm_rate(clock=clock))
            gf = step_flops(kind, B, T, I, H) / t["dg"] / 1e9

            def ms(k):
                return f"{t[k] * 1e3:8.3f}" if k in t else f"{'-':>8}"

            def ratio(k, w=8):
                return f"{t[k] / t['dg']:{w - 1}.2f}x" if k in t else f"{'-':>{w}}"
            print(f"{kind:>4} {B:4d} {T:4d} {I:4d} {H:4d} | {ms('dg')} {ms('before')} "
                  f"{ms('numpy')} {ms('torch')} | {ratio('before', 9)} {ratio('numpy')} "
                  f"{ratio('torch')} | {gf:7.1f} {gf / statistics.median(rates):6.0%}")
    print(f"deepgrad large GEMM (1024^3, best of 3, between configs): median "
          f"{statistics.median(rates):.1f} GFLOP/s (range {min(rates):.1f}-{max(rates):.1f})")
    _C._rnn_set_kernel("auto")


if __name__ == "__main__":
    main()
