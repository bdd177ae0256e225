"""Cost of the GradientMonitor relative to a training step (depth-20 MLP, batch 64, Adam).

    python benchmarks/bench_monitor.py [--steps 50] [--rounds 15] [--threads N] [--widths 64,256]

Times, in the same process, the plain training step (forward, backward, Adam) and the same step
with a monitor recording every step, every step without activation statistics, and every 10th
step. The configurations take turns in each round (fair on a shared machine) and each reports
the median of its rounds and, as its overhead, the median over the rounds of its batch's ratio
to the plain batch of the same round. "own us" is the monitor's own clock per recorded step
(``GradientMonitor.seconds``: ``step()`` and any hooks).

The breakdown table splits the every=1 cost, in the same rounds, into what the kernels add
(every Dense layer given its layer statistics record: the statistics taken in the dense forward
epilogue and backward), what the optimizer adds (the arena's step statistics: gradient health,
weight and update norms taken in the Adam pass), and the rest (the monitor's ``step()``: one
copy of the records and of the step statistics into the history arrays).

The "one model" table times each monitor configuration against its own paused rounds: one
model, optimizer and monitor per configuration, rounds of ``--steps`` steps taking turns between
``monitor.paused()`` (the model runs as without a monitor: plain kernels, no statistics in the
optimizer's pass, step() only counts) and the monitor recording. The step with and the step
without monitoring then run on the same parameters, optimizer state and buffers in the same
caches, as in a training run; the six-model table above also pays each model's return to the
caches after the others ran (at width 256 six models of ~21 MB each evict each other from the
last-level cache, and its medians scatter by +-5%). The first active step of a round pays the
resume (records attached again, statistics asked for again) and the return of this model to the
caches: each batch starts with one untimed step, and the two sides take turns going first. The
configurations run one after the other (all rounds of one, then the next), so only one model is
in the caches. Its overhead is the median over the rounds of each round's ratio of its two batches
(taken back to back, so a slow stretch of the shared machine moves both sides of a ratio);
the two medians are printed beside it.

``--torch`` adds the PyTorch section (when torch is installed): a torch MLP (depth 20, width 64,
batch 64, tanh) and a torch LSTM (batch 32, 50 steps, 16 inputs, 128 units), each as the plain
torch step, with only the hooks the monitor needs doing nothing ("hooks only": the floor torch's
hook dispatch sets for any per-layer capture), with deepgrad's GradientMonitor at every=1,
every=10 and every=1 without activation statistics, and with the usual hand-written alternative
(after backward, ``p.grad.norm().item()`` for every parameter), taking turns in the same rounds;
medians of the rounds. ``--torch-device cuda`` runs it on the GPU: there the monitor takes its
norms with deepgrad's CUDA health kernel over zero-copy DLPack views when deepgrad was built with
CUDA, and the extra column "every=1 foreach" is the same monitor with that path switched off
(``torch._foreach_norm``), measured in the same rounds.
"""
import argparse
import os
import statistics
import time

import deepgrad as dg
from deepgrad import functional as F
from deepgrad import losses, optim
from deepgrad.data import spirals
from deepgrad.monitor import GradientMonitor
from deepgrad.study import RunConfig, build_mlp

CONFIGS = (("plain", None), ("every=1", dict(every=1)),
           ("every=1 no act", dict(every=1, activation_stats=False)), ("every=10", dict(every=10)))


def make(kw, activation: str, init: str, width: int = 64, batch: int = 64):
    """A step function for a fresh model, optimizer and (when kw is not None) monitor. kw may
    also be "records" (every Dense layer gets a layer statistics record, no monitor) or
    "step stats" (the arena asks the optimizer for step statistics, no monitor)."""
    dg.manual_seed(0)
    X, y = spirals(max(600, batch), seed=0)
    xb, yb = dg.tensor(X[:batch]), dg.tensor(y[:batch])
    model = build_mlp(RunConfig(name="bench", activation=activation, init=init, width=width), 2, 3)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    mon = None
    if kw == "records":
        for m in model.modules():
            if isinstance(m, dg.nn.Dense):
                m.stats = F.layer_record(True, 1 if activation == "tanh" else 0, 0.0, 0.9995,
                                         activation == "relu")
    elif kw == "step stats":
        model.arena.request_step_stats(True)
    elif kw is not None:
        mon = GradientMonitor(model, **kw)

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
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="deepgrad threads (0: default)")
    ap.add_argument("--widths", default="64,256")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--torch", action="store_true", help="also the PyTorch section")
    ap.add_argument("--torch-only", action="store_true", help="only the PyTorch section")
    ap.add_argument("--torch-device", default="cpu", help="cpu or cuda (the PyTorch section)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with the process's CPU clock (time.process_time) instead of "
                         "the wall clock (deepgrad on 1 thread, PyTorch on the CPU), so that time spent "
                         "waiting for a core taken by other processes is not counted (a loaded "
                         "shared machine; cache interference still is)")
    args = ap.parse_args()
    if args.torch or args.torch_only:
        torch_section(args)
        if args.torch_only:
            return
    if args.threads:
        dg.set_num_threads(args.threads)
    # the process's CPU clock counts only this process's time (one thread: its own work), not the
    # time other processes hold the core; the wall clock otherwise
    clock = time.process_time if args.cpu_time and dg.get_num_threads() == 1 else time.perf_counter
    print(f"deepgrad, {dg.get_num_threads()} thread(s), load average {os.getloadavg()[0]:.2f} "
          f"at start; medians of {args.rounds} rounds of {args.steps} steps, ms per step "
          f"({'process CPU time' if clock is time.process_time else 'wall clock'}; overhead "
          "vs plain: median of the rounds' ratios)")
    names = [n for n, _ in CONFIGS] + ["records", "step stats"]
    shown = [n for n, _ in CONFIGS]
    print(f"{'model':18s} " + " ".join(f"{n:>17s}" for n in shown) + f" {'own us':>8s}")
    breakdown = []
    for width in (int(w) for w in args.widths.split(",")):
        for act, init in (("tanh", "xavier"), ("relu", "he")):
            kws = dict(CONFIGS)
            kws.update({"records": "records", "step stats": "step stats"})
            runs = {n: make(kws[n], act, init, width, args.batch) for n in names}
            times = {n: [] for n in names}
            own = []
            for _ in range(args.rounds):
                for n in names:
                    step, mon = runs[n]
                    s0 = mon.seconds if mon is not None else 0.0
                    t0 = clock()
                    for _ in range(args.steps):
                        step()
                    times[n].append((clock() - t0) / args.steps)
                    if n == "every=1":
                        own.append((mon.seconds - s0) / args.steps)
            med = {n: statistics.median(v) for n, v in times.items()}
            base = med["plain"]
            # the overhead: the median of the rounds' own ratios to that round's plain batch
            ratio = {n: statistics.median(a / b for a, b in zip(times[n], times["plain"]))
                     for n in names}
            cells = [f"{1e3 * base:8.3f}{'':9s}"] + [
                f"{1e3 * med[n]:8.3f} ({100 * (ratio[n] - 1):+5.1f}%)" for n in shown[1:]]
            label = f"d20 w{width} b{args.batch} {act}"
            print(f"{label:18s} " + " ".join(f"{c:>17s}" for c in cells)
                  + f" {1e6 * statistics.median(own):8.1f}")
            total = (ratio["every=1"] - 1) * base
            breakdown.append((label, 1e6 * total, 1e6 * (ratio["records"] - 1) * base,
                              1e6 * (ratio["step stats"] - 1) * base,
                              1e6 * statistics.median(own)))
    print("\nevery=1 cost per step, us (records: the layer statistics in the dense kernels; step "
          "stats: the norms in the Adam pass; step(): the monitor's own clock)")
    print(f"{'model':18s} {'total':>8s} {'records':>8s} {'step stats':>10s} {'step()':>8s}")
    for label, tot, rec, st, own in breakdown:
        print(f"{label:18s} {tot:8.1f} {rec:8.1f} {st:10.1f} {own:8.1f}")
    same_model_section(args, clock)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


def same_model_section(args, clock) -> None:
    """Each monitor configuration against its own paused rounds on one model (module doc)."""
    configs = [(n, kw) for n, kw in CONFIGS if kw is not None]
    print(f"\none model: each configuration against its own paused rounds, medians of "
          f"{args.rounds} rounds of {args.steps} steps, ms per step (overhead: median of the "
          "rounds' on/paused ratios)")
    print(f"{'model':18s} " + " ".join(f"{n + ' paused/on':>28s}" for n, _ in configs))
    for width in (int(w) for w in args.widths.split(",")):
        for act, init in (("tanh", "xavier"), ("relu", "he")):
            times = {n: ([], []) for n, _ in configs}
            for n, kw in configs:  # one configuration at a time: only its model in the caches
                step, mon = make(kw, act, init, width, args.batch)
                for r in range(args.rounds):
                    for on in ((False, True) if r % 2 == 0 else (True, False)):
                        if not on:
                            mon.pause()
                        step()  # untimed: the first step after a pause or a resume
                        t0 = clock()
                        for _ in range(args.steps):
                            step()
                        times[n][on].append((clock() - t0) / args.steps)
                        if not on:
                            mon.resume()
            cells = []
            for n, _ in configs:
                off, on = (statistics.median(v) for v in times[n])
                # the overhead: the median of the rounds' own ratios (each round's two batches
                # ran back to back, so a slow stretch of the machine moves both)
                paired = statistics.median(b / a for a, b in zip(*times[n]))
                cells.append(f"{1e3 * off:7.3f}/{1e3 * on:7.3f} ({100 * (paired - 1):+5.1f}%)")
            label = f"d20 w{width} b{args.batch} {act}"
            print(f"{label:18s} " + " ".join(f"{c:>28s}" for c in cells))


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
        x, y = torch.randn(64, 2, device=dev), torch.randint(0, 3, (64,), device=dev)
        model = model.to(dev)
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
        model = Seq().to(dev)
        x, y = torch.randn(32, 50, 16, device=dev), torch.randn(32, 1, device=dev)
        return model, lambda: torch.nn.functional.mse_loss(model(x), y)

    dev = args.torch_device
    from deepgrad.monitor import capture_torch
    variants = ("plain", "hooks only", "monitor every=1", "monitor every=10",
                "no act, every=1", "p.grad.norm() loop")
    if dev != "cpu":
        variants += ("monitor every=1 foreach",)
    sync = torch.cuda.synchronize if dev != "cpu" else (lambda: None)
    cpu_clock = args.cpu_time and dev == "cpu"
    clock = time.process_time if cpu_clock else time.perf_counter
    print(f"\nPyTorch {torch.__version__} on {dev}, {torch.get_num_threads()} thread(s); "
          f"{'process CPU time, ' if cpu_clock else ''}load average {os.getloadavg()[0]:.2f} "
          f"at start; medians of "
          f"{args.rounds} rounds of {args.steps} steps, ms per step (overhead vs plain: median "
          "of the rounds' ratios)")
    print(f"{'model':22s} " + " ".join(f"{v:>21s}" for v in variants))
    for label, make_model in (("torch MLP d20 w64 b64", mlp), ("torch LSTM B32 T50 H128", lstm)):
        runs = {}
        for v in variants:
            model, loss_fn = make_model()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            mon = None
            if v.startswith("monitor"):
                mon = GradientMonitor(model, every=10 if v.endswith("=10") else 1)
            elif v.startswith("no act"):
                mon = GradientMonitor(model, every=1, activation_stats=False)
            elif v == "hooks only":
                _floor_hooks(torch, model)
            loop = v.startswith("p.grad")
            foreach = v.endswith("foreach")

            def step(model=model, loss_fn=loss_fn, opt=opt, mon=mon, loop=loop, foreach=foreach):
                opt.zero_grad()
                loss = loss_fn()
                loss.backward()
                if loop:
                    _ = [p.grad.norm().item() for p in model.parameters()]
                opt.step()
                if mon is not None:
                    if foreach:   # deepgrad's CUDA route off: torch._foreach_norm
                        saved = capture_torch._CUDA_BACKEND[:]
                        capture_torch._CUDA_BACKEND[:] = [None]
                    mon.step(loss)
                    if foreach:
                        capture_torch._CUDA_BACKEND[:] = saved
            for _ in range(5):
                step()
            runs[v] = step
        times = {v: [] for v in variants}
        for _ in range(args.rounds):
            for v in variants:
                sync()
                t0 = clock()
                for _ in range(args.steps):
                    runs[v]()
                sync()
                times[v].append((clock() - t0) / args.steps)
        med = {v: statistics.median(t) for v, t in times.items()}
        base = med["plain"]
        # the overhead: the median of the rounds' own ratios to that round's plain batch
        ratio = {v: statistics.median(a / b for a, b in zip(times[v], times["plain"]))
                 for v in variants}
        cells = [f"{1e3 * base:8.3f}{'':13s}"] + [
            f"{1e3 * med[v]:8.3f} ({100 * (ratio[v] - 1):+6.1f}%)" for v in variants[1:]]
        print(f"{label:22s} " + " ".join(f"{c:>21s}" for c in cells))
    print(f"load average {os.getloadavg()[0]:.2f} at end")


def _floor_hooks(torch, model) -> None:
    """The mechanism the monitor needs in torch, doing nothing: a forward hook on each
    activation module (or parameter layer not followed by one) that puts a no-op tensor hook on
    its output. Its cost is torch's hook dispatch, the floor of any per-layer capture."""
    def keep(g):
        return None

    def hook(module, args, out):
        if out.requires_grad:
            out.register_hook(keep)
    for m in model.modules():
        name = type(m).__name__
        if name in ("Tanh", "ReLU", "Sigmoid", "GELU") or \
                (name in ("Linear", "LSTM") and m is list(model.modules())[-1]):
            m.register_forward_hook(hook)


if __name__ == "__main__":
    main()
