"""Cost of the GradientMonitor relative to a training step (depth-20 width-64 MLP, batch 64).

    python benchmarks/bench_monitor.py [--steps 60]

Prints the plain training step time and the step time with a monitor recording every step and
every 10th step, in the same process.
"""
import argparse
import time

import numpy as np

import deepgrad as dg
from deepgrad import losses, optim
from deepgrad.data import spirals
from deepgrad.monitor import GradientMonitor
from deepgrad.study import RunConfig, build_mlp


def bench(every: int, steps: int, activation: str, init: str) -> float:
    dg.manual_seed(0)
    X, y = spirals(600, seed=0)
    xb, yb = dg.tensor(X[:64]), dg.tensor(y[:64])
    model = build_mlp(RunConfig(name="bench", activation=activation, init=init), 2, 3)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    mon = GradientMonitor(model, every=every) if every else None

    def step():
        loss = losses.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if mon is not None:
            mon.step(loss)
    for _ in range(5):
        step()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - t0) / steps)
    return best * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    print(f"threads {dg.get_num_threads()}")
    print(f"{'model':26s} {'step ms':>8s} {'every=1':>14s} {'every=10':>14s}")
    for act, init in (("tanh", "xavier"), ("relu", "he")):
        base = bench(0, args.steps, act, init)
        e1 = bench(1, args.steps, act, init)
        e10 = bench(10, args.steps, act, init)
        print(f"{'d20 w64 ' + act:26s} {base:8.2f} {e1:8.2f} ({100 * (e1 / base - 1):+3.0f}%)"
              f" {e10:8.2f} ({100 * (e10 / base - 1):+3.0f}%)")


if __name__ == "__main__":
    main()
