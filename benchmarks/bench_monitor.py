"""Cost of the GradientMonitor relative to a training step (depth-20 width-64 MLP, batch 64).

    python benchmarks/bench_monitor.py [--steps 50] [--rounds 7] [--threads N] [--width W] [--batch B]

Times, in the same process, the plain training step (forward, backward, Adam) and the same step
with a monitor recording every step, every step without activation statistics, and every 10th
step. The configurations take turns in each round (fair on a shared machine) and each reports
its best round. The last column is the monitor's own clock (``GradientMonitor.seconds``: its
hooks in the forward and ``step()``) per step, recording every step.

``--torch`` adds the PyTorch section (when torch is installed): a torch MLP (depth 20, width 64,
batch 64, tanh) and a torch LSTM (batch 32, 50 steps, 16 inputs, 128 units), each as the plain
torch step, with deepgrad's GradientMonitor at every=1 and every=10, and with the usual
hand-written alternative (after backward, ``p.grad.norm().item()`` for every parameter), taking
turns in the same rounds; medians of the rounds.
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
    ap.add_argument("--torch", action="store_true", help="also the PyTorch section")
    ap.add_argument("--torch-only", action="store_true", help="only the PyTorch section")
    args = ap.parse_args()
    if args.torch or args.torch_only:
        torch_section(args)
        if args.torch_only:
            return
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


def torch_section(args) -> None:
    try:
        import torch
    except ImportError:
        print("torch is not installed: no PyTorch section")
        return
    import statistics
    torch.set_num_threads(args.threads or dg.get_num_threads())
    if args.threads:
        dg.set_num_threads(args.threads)

    def mlp():
        torch.manual_seed(0)
        layers = [torch.nn.Linear(2, 64), torch.nn.Tanh()]
        for _ in range(18):
            layers += [torch.nn.Linear(64, 64), torch.nn.Tanh()]
        model = torch.nn.Sequential(*layers, torch.nn.Linear(64, 3))
        x, y = torch.randn(64, 2), torch.randint(0, 3, (64,))
        return model, lambda: torch.nn.functional.cross_entropy(model(x), y)

    class Seq(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(16, 128, batch_first=True)
            self.head = torch.nn.Linear(128, 1)

        def forward(self, x):
            return self.head(self.lstm(x)[0][:, -1])

    def lstm():
        torch.manual_seed(0)
        model = Seq()
        x, y = torch.randn(32, 50, 16), torch.randn(32, 1)
        return model, lambda: torch.nn.functional.mse_loss(model(x), y)

    variants = ("plain", "monitor every=1", "monitor every=10", "p.grad.norm() loop")
    print(f"\nPyTorch {torch.__version__}, {torch.get_num_threads()} thread(s); medians of "
          f"{args.rounds} rounds of {args.steps} steps, ms per step (overhead vs plain)")
    print(f"{'model':22s} " + " ".join(f"{v:>21s}" for v in variants))
    for label, make_model in (("torch MLP d20 w64 b64", mlp), ("torch LSTM B32 T50 H128", lstm)):
        runs = {}
        for v in variants:
            model, loss_fn = make_model()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            mon = (GradientMonitor(model, every=1 if v.endswith("=1") else 10)
                   if v.startswith("monitor") else None)
            loop = v.startswith("p.grad")

            def step(model=model, loss_fn=loss_fn, opt=opt, mon=mon, loop=loop):
                opt.zero_grad()
                loss = loss_fn()
                loss.backward()
                if loop:
                    _ = [p.grad.norm().item() for p in model.parameters()]
                opt.step()
                if mon is not None:
                    mon.step(loss)
            for _ in range(5):
                step()
            runs[v] = step
        times = {v: [] for v in variants}
        for _ in range(args.rounds):
            for v in variants:
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    runs[v]()
                times[v].append((time.perf_counter() - t0) / args.steps)
        med = {v: statistics.median(t) for v, t in times.items()}
        base = med["plain"]
        cells = [f"{1e3 * base:8.3f}{'':13s}"] + [
            f"{1e3 * med[v]:8.3f} ({100 * (med[v] / base - 1):+6.1f}%)" for v in variants[1:]]
        print(f"{label:22s} " + " ".join(f"{c:>21s}" for c in cells))


if __name__ == "__main__":
    main()
