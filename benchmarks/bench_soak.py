"""Soak: memory and step time over a long run, for an MLP and an LSTM, without the monitor, with
a GradientMonitor(every=1) unbounded, and with max_records=1000.

    python benchmarks/bench_soak.py [--steps 20000] [--interval 2000] [--threads 1]

Prints, per configuration, RSS (MiB, from /proc/self/statm) and the median step time of the
last interval at every interval, then the RSS growth from the first interval to the end. Without
the monitor RSS should stay flat; with max_records it should level off; unbounded it grows by the
history's size (about 2-3 KB per record for a 20-layer net).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import deepgrad as dg
from deepgrad import losses, nn, optim
from deepgrad.monitor import GradientMonitor


def rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mlp_case():
    dg.manual_seed(0)
    model = nn.Sequential(nn.Dense(16, 64, "tanh"), *[nn.Dense(64, 64, "tanh") for _ in range(18)],
                          nn.Dense(64, 4))
    rng = np.random.default_rng(0)
    x = dg.tensor(rng.standard_normal((64, 16)).astype(np.float32))
    y = rng.integers(0, 4, 64)
    return model, lambda: losses.cross_entropy(model(x), y)


class _Seq(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(8, 32)
        self.head = nn.Dense(32, 1)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1, :])


def lstm_case():
    dg.manual_seed(0)
    model = _Seq()
    rng = np.random.default_rng(0)
    x = dg.tensor(rng.standard_normal((16, 20, 8)).astype(np.float32))
    y = dg.tensor(rng.standard_normal((16, 1)).astype(np.float32))
    return model, lambda: losses.mse(model(x), y)


def soak(make, monitor: str, steps: int, interval: int) -> list[tuple]:
    model, loss_fn = make()
    opt = optim.Adam(model, lr=1e-3)
    mon = None
    if monitor == "every=1":
        mon = GradientMonitor(model, every=1)
    elif monitor == "max_records":
        mon = GradientMonitor(model, every=1, max_records=1000)
    rows, times = [], []
    for s in range(1, steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        if mon is not None:
            mon.step(loss)
        times.append(time.perf_counter() - t0)
        if s % interval == 0:
            if mon is not None:
                mon.num_records  # noqa: B018 (the history is kept; reading it is not timed)
            rows.append((s, rss_mib(), 1e3 * statistics.median(times)))
            times = []
    if mon is not None:
        rows.append(("records", mon.num_records if mon.max_records is None else
                     len(mon.to_dict()["steps"]), None))
        mon.close()
    return rows


CASES = {"mlp": ("MLP 20x64, batch 64", mlp_case), "lstm": ("LSTM B16 T20 I8 H32", lstm_case)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--interval", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--one", nargs=2, metavar=("CASE", "MONITOR"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one is None:
        # each configuration in a fresh process, so one run's freed heap cannot hide another's
        import subprocess
        import sys
        print(f"deepgrad {dg.__version__}, {a.threads} thread(s), {a.steps} steps per run, "
              "each run in its own process")
        for case in CASES:
            for monitor in ("none", "every=1", "max_records"):
                subprocess.run([sys.executable, __file__, "--steps", str(a.steps), "--interval",
                                str(a.interval), "--threads", str(a.threads), "--one", case,
                                monitor], check=True)
        return
    dg.set_num_threads(a.threads)
    for label, make in [CASES[a.one[0]]]:
        for monitor in [a.one[1]]:
            rows = soak(make, monitor, a.steps, a.interval)
            recs = rows.pop() if monitor != "none" else None
            print(f"\n{label}, monitor: {monitor}", end="")
            print(""
                  + (f" (max_records=1000)" if monitor == "max_records" else ""))
            print(f"{'step':>8} {'RSS MiB':>9} {'ms/step':>9}")
            for s, rss, ms in rows:
                print(f"{s:>8} {rss:>9.1f} {ms:>9.3f}")
            growth = rows[-1][1] - rows[0][1]
            print(f"RSS growth from step {rows[0][0]} to {rows[-1][0]}: {growth:+.1f} MiB; "
                  f"step time {rows[0][2]:.3f} -> {rows[-1][2]:.3f} ms"
                  + (f"; records kept {recs[1]}" if recs else ""))


if __name__ == "__main__":
    main()
