"""Recurrent training step timing: forward through T steps, MSE on the last hidden state,
backpropagation through time, Adam, for RNN (tanh), GRU and LSTM.

Compares deepgrad, a plain numpy implementation written the way a student would (RNN and
LSTM), and PyTorch eager on the CPU (torch.nn.RNN/GRU/LSTM, batch_first) when installed, all in
this process with the same thread count. Prints ms/step (median after warm-up) and the ratios.

    python benchmarks/bench_rnn.py [--threads N] [--seconds S] [--configs B,T,I,H ...]
                                   [--kinds rnn gru lstm] [--wait-idle S]
"""
from __future__ import annotations

import argparse
import os
import sys

if "--threads" in sys.argv[:-1]:  # BLAS pools read these once, when numpy/torch are imported
    _n = sys.argv[sys.argv.index("--threads") + 1]
    for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_v] = _n

import numpy as np  # noqa: E402

import deepgrad as dg  # noqa: E402
from bench_train import _time, _wait_idle, frameworks  # noqa: E402
from deepgrad import losses, nn, optim  # noqa: E402

# (batch, time steps, input features, hidden units)
CONFIGS = [(64, 50, 8, 64), (32, 100, 16, 128), (128, 20, 32, 256)]
KINDS = ("rnn", "gru", "lstm")


def _data(B: int, T: int, I: int, H: int):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((B, T, I)).astype(np.float32),
            rng.uniform(-0.5, 0.5, (B, H)).astype(np.float32))


def deepgrad_step(kind: str, B: int, T: int, I: int, H: int):
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
    return step


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
    """A student's numpy BPTT: a forward loop keeping a cache, a reverse loop, Adam per array."""
    if kind == "gru":
        return None
    G = 4 * H if kind == "lstm" else H
    rng = np.random.default_rng(0)
    k = 1.0 / np.sqrt(H)
    params = [rng.uniform(-k, k, s).astype(np.float32) for s in ((I, G), (H, G), (G,))]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    x, tgt = _data(B, T, I, H)
    state = {"k": 0}

    def step():
        Wih, Whh, b = params
        h, c = np.zeros((B, H), np.float32), np.zeros((B, H), np.float32)
        cache = []
        for t in range(T):
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for every framework")
    ap.add_argument("--seconds", type=float, default=0.5, help="time budget per measurement")
    ap.add_argument("--configs", nargs="*", default=None, help="B,T,I,H quadruples")
    ap.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                    help="before each measurement wait up to S seconds for idle CPUs")
    args = ap.parse_args()
    configs = [tuple(int(v) for v in c.split(",")) for c in args.configs] if args.configs else CONFIGS
    torch = frameworks(args.threads)
    print("recurrent training step (forward over T, MSE on h_T, BPTT, Adam), float32, ms/step "
          "(median)")
    head = f"{'kind':>4} {'B':>4} {'T':>4} {'I':>4} {'H':>4} | {'deepgrad':>9} {'numpy':>9} " \
           f"{'torch':>9} | {'numpy/dg':>8} {'torch/dg':>8}"
    print(head)
    print("-" * len(head))
    for B, T, I, H in configs:
        for kind in args.kinds:
            def timed(make):
                step = make(kind, B, T, I, H)
                if step is None:
                    return None
                if args.wait_idle > 0:
                    _wait_idle(args.wait_idle)
                return _time(step, args.seconds)
            t_dg = timed(deepgrad_step)
            t_np = timed(numpy_step)
            t_th = timed(lambda *a: torch_step(torch, *a)) if torch else None

            def ms(t):
                return f"{t * 1e3:9.3f}" if t is not None else f"{'-':>9}"

            def ratio(t):
                return f"{t / t_dg:7.2f}x" if t is not None else f"{'-':>8}"
            print(f"{kind:>4} {B:4d} {T:4d} {I:4d} {H:4d} | {ms(t_dg)} {ms(t_np)} {ms(t_th)} | "
                  f"{ratio(t_np)} {ratio(t_th)}")


if __name__ == "__main__":
    main()
