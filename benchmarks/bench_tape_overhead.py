"""Python overhead of the tape per dense layer per training step (forward + backward).

Times an MLP step through deepgrad.functional.dense + backward() against the same native
kernel calls made directly (no Tensor, no tape), in one run; the difference divided by the
depth is the per-layer Python cost. Each figure is the minimum over many single-step runs so
other load on the machine does not inflate it.
    python benchmarks/bench_tape_overhead.py [--repeats 200] [--threads 1]
"""
from __future__ import annotations

import argparse
import timeit

import numpy as np

import deepgrad as dg
from deepgrad import _C
from deepgrad import functional as F

CONFIGS = [(1, 1, 20), (128, 64, 10), (128, 64, 50), (64, 32, 100)]  # (batch, width, depth)


def build(n, w, d, rng):
    x = dg.tensor(rng.standard_normal((n, w)).astype(np.float32))
    ws = [dg.tensor(rng.standard_normal((w, w)).astype(np.float32) * w ** -0.5,
                    requires_grad=True) for _ in range(d)]
    bs = [dg.tensor(np.zeros(w, np.float32), requires_grad=True) for _ in range(d)]
    return x, ws, bs


def tape_step(x, ws, bs):
    h = x
    for w, b in zip(ws, bs):
        h = F.dense(h, w, b, "sigmoid")
    h.sum().backward()


def native_step(x, ws, bs):
    hs, zs = [x.data], []
    for w, b in zip(ws, bs):
        y, z = _C.dense_forward(hs[-1], w.data, b.data, "sigmoid", 0.01)
        hs.append(y)
        zs.append(z)
    g = np.ones_like(hs[-1])
    for i in reversed(range(len(ws))):
        g = _C.dense_backward(g, hs[i], ws[i].data, zs[i], hs[i + 1], ws[i].grad.data,
                              bs[i].grad.data, "sigmoid", 0.01, i > 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    dg.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"deepgrad {dg.__version__}, {dg.build_info()['simd']}, {args.threads} thread(s)")
    print(f"{'batch':>6} {'width':>6} {'depth':>6} {'tape ms':>9} {'native ms':>10} "
          f"{'overhead us/layer':>18}")
    for n, w, d in CONFIGS:
        x, ws, bs = build(n, w, d, rng)
        tape_step(x, ws, bs)  # creates the .grad buffers both variants accumulate into
        t_tape, t_nat = [], []
        for _ in range(args.repeats):
            t_tape.append(timeit.timeit(lambda: tape_step(x, ws, bs), number=1))
            t_nat.append(timeit.timeit(lambda: native_step(x, ws, bs), number=1))
        a, b = min(t_tape), min(t_nat)
        print(f"{n:>6} {w:>6} {d:>6} {a * 1e3:>9.3f} {b * 1e3:>10.3f} {(a - b) / d * 1e6:>18.2f}")


if __name__ == "__main__":
    main()
