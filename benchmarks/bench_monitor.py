"""Cost of the GradientMonitor relative to a training step (depth-20 width-64 MLP, batch 64).

    python benchmarks/bench_monitor.py [--steps 50] [--rounds 7] [--threads N] [--width W] [--batch B]

Times, in the same process, the plain training step (forward, backward, Adam) and the same step
with a monitor recording every step, every step without activation statistics, and every 10th
step. The configurations take turns in each round (fair on a shared machine) and each reports
its best round. The last column is the monitor's own clock (``GradientMonitor.seconds``: its
hooks in the forward and ``step()``) per step, recording every step.
"""
import argparse
import os
import time

import deepgrad as dg
from deepgrad import losses, optim
from deepgrad.data import spirals
from deepgrad.monitor import GradientMonitor
from deepgrad.study import RunConfig, build_mlp

CONFIGS = (("plain", None), ("every=1", dict(every=1)),
           ("every=1 no act", dict(every=1, activation_stats=False)), ("every=10", dict(every=10)))


def make(kw, activation: str, init: str, width: int = 64, batch: int = 64):
    """A step function for a fresh model, optimizer and (when kw is not None) monitor."""
    dg.manual_seed(0)
    X, y = spirals(max(600, batch), seed=0)
    xb, yb = dg.tensor(X[:batch]), dg.tensor(y[:batch])
    model = build_mlp(RunConfig(name="bench", activation=activation, init=init, width=width), 2, 3)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    mon = GradientMonitor(model, **kw) if kw is not None else None

    def step():
        loss = losses.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if mon is not None:
            mon.step(loss)
    for _ in range(10):
        step()
    return step, mon


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50, help="steps per timed batch (a multiple of 10)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="deepgrad threads (0: default)")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    if args.threads:
        dg.set_num_threads(args.threads)
    print(f"threads {dg.get_num_threads()}, load average {os.getloadavg()[0]:.2f} at start")
    names = [n for n, _ in CONFIGS]
    print(f"{'model':16s} " + " ".join(f"{n:>17s}" for n in names) + f" {'monitor ms':>11s}")
    for act, init in (("tanh", "xavier"), ("relu", "he")):
        runs = {n: make(kw, act, init, args.width, args.batch) for n, kw in CONFIGS}
        best = dict.fromkeys(names, float("inf"))
        own = float("inf")
        for _ in range(args.rounds):
            for n in names:
                step, mon = runs[n]
                s0 = mon.seconds if mon is not None else 0.0
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    step()
                t = (time.perf_counter() - t0) / args.steps
                best[n] = min(best[n], t)
                if n == "every=1":
                    own = min(own, (mon.seconds - s0) / args.steps)
        base = best["plain"]
        cells = [f"{1e3 * base:8.3f}{'':9s}"] + [
            f"{1e3 * best[n]:8.3f} ({100 * (best[n] / base - 1):+5.1f}%)" for n in names[1:]]
        print(f"{f'd20 w{args.width} b{args.batch} ' + act:16s} " + " ".join(f"{c:>17s}" for c in cells) + f" {1e3 * own:11.3f}")
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
