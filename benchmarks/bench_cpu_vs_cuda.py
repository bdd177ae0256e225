"""deepgrad CPU vs deepgrad CUDA vs numpy / PyTorch, in one run.

Prints three tables:
  1. GEMM GFLOP/s for square float32 products: deepgrad CPU, numpy (its BLAS), deepgrad CUDA,
     PyTorch CUDA matmul with TF32 disabled (full FP32, when torch with CUDA is installed).
  2. Training-step milliseconds for the MLP configurations (depth, width, batch) of
     benchmarks/bench_train.py: deepgrad CPU, deepgrad CUDA, PyTorch CUDA eager. A step is
     zero_grad + forward + softmax cross-entropy + backward + Adam, on ReLU Dense layers.
  3. GB/s of the fused gradient norm (segment_norms, bytes read) and Adam (4 reads + 3 writes
     per element) on a 256 MB arena, against a device-to-device copy (read + write) measured in
     the same run; then the one-pass health kernel on 256 MB float32 and float64 arenas, as
     segment_health (rows to the host) and as a ring record (device only), alternating rounds
     with a copy of the same buffer; then an LSTM sequence's forward + backward, one native call
     each way against the Python loop it replaced.
  4. Host synchronisations per training step (deepgrad's own counter, _C.cuda_host_syncs),
     without and with a GradientMonitor at every=1: a step is meant to make none.
Without a GPU (or in a CPU-only build) only the CPU columns run, and the output says so.

    python benchmarks/bench_cpu_vs_cuda.py [--quick] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import deepgrad as dg
from deepgrad import _C, losses, nn, optim

CONFIGS = [(10, 64, 128), (50, 64, 128), (100, 32, 64), (10, 256, 256), (5, 1024, 512)]
CLASSES = 10


def cuda_ok() -> bool:
    return bool(_C.build_info()["cuda"]) and _C.cuda_device_count() > 0


def torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    return torch


def timeit(fn, sync=lambda: None, warmup=2, reps=5, min_time=0.2):
    """Median seconds per call over `reps` batches; each batch repeats fn until min_time/reps."""
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    one = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_time / reps / one))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


# ---- 1. GEMM ------------------------------------------------------------------------------------

def bench_gemm(sizes_cpu, sizes_gpu, torch):
    rows = []
    rng = np.random.default_rng(0)
    for n in sorted(set(sizes_cpu) | set(sizes_gpu)):
        flop = 2.0 * n ** 3
        a = rng.standard_normal((n, n)).astype(np.float32)
        b = rng.standard_normal((n, n)).astype(np.float32)
        row = {"n": n}
        if n in sizes_cpu:
            out = np.empty((n, n), np.float32)
            row["dg_cpu"] = flop / timeit(lambda: _C.gemm(a, b, out=out), reps=3, min_time=0.3) / 1e9
            row["numpy"] = flop / timeit(lambda: np.matmul(a, b, out=out), reps=3, min_time=0.3) / 1e9
        if n in sizes_gpu and cuda_ok():
            da, db, dc = _C.CudaArray(a), _C.CudaArray(b), _C.CudaArray(np.zeros((n, n), np.float32))
            ref = a.astype(np.float64) @ b
            got = _C.cuda_gemm(da, db, out=dc).numpy()
            row["dg_cuda_relerr"] = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
            row["dg_cuda"] = flop / timeit(lambda: _C.cuda_gemm(da, db, out=dc), _C.cuda_synchronize,
                                           reps=5, min_time=0.5) / 1e9
            if torch is not None:
                ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
                tc = torch.empty_like(ta)
                row["torch_cuda"] = flop / timeit(lambda: torch.matmul(ta, tb, out=tc),
                                                  torch.cuda.synchronize, reps=5, min_time=0.5) / 1e9
                del ta, tb, tc
            del da, db, dc
        rows.append(row)
    print("\nGEMM float32, GFLOP/s (square n x n x n)")
    print(f"{'n':>6} {'dg CPU':>9} {'numpy':>9} {'dg CUDA':>10} {'torch CUDA':>11} {'dg/torch':>9}"
          f" {'CUDA relerr':>12}")
    for r in rows:
        ratio = (r["dg_cuda"] / r["torch_cuda"]) if "dg_cuda" in r and "torch_cuda" in r else None
        print(f"{r['n']:>6} {fmt(r.get('dg_cpu')):>9} {fmt(r.get('numpy')):>9} "
              f"{fmt(r.get('dg_cuda')):>10} {fmt(r.get('torch_cuda')):>11} {fmt(ratio, '.2f'):>9}"
              f" {fmt(r.get('dg_cuda_relerr'), '.1e'):>12}")
    return rows


# ---- 2. training step -----------------------------------------------------------------------------

def dg_mlp(depth, width, seed=0):
    dg.manual_seed(seed)
    layers = [nn.Dense(width, width, activation="relu") for _ in range(depth - 1)]
    return nn.Sequential(*layers, nn.Dense(width, CLASSES))


def dg_step_fn(depth, width, batch, device):
    rng = np.random.default_rng(1)
    model = dg_mlp(depth, width).to(device)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    x = dg.tensor(rng.standard_normal((batch, width)).astype(np.float32), device=device)
    y = rng.integers(0, CLASSES, batch)

    def step():
        opt.zero_grad()
        loss = losses.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    step.model = model
    return step


def torch_step_fn(torch, depth, width, batch):
    tnn = torch.nn
    torch.manual_seed(0)
    layers = []
    for _ in range(depth - 1):
        layers += [tnn.Linear(width, width), tnn.ReLU()]
    model = tnn.Sequential(*layers, tnn.Linear(width, CLASSES)).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, width, device="cuda")
    y = torch.randint(0, CLASSES, (batch,), device="cuda")

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return step


def bench_train(configs, torch, quick):
    rows = []
    reps, min_time = (3, 0.3) if quick else (5, 1.0)
    for depth, width, batch in configs:
        row = {"depth": depth, "width": width, "batch": batch}
        row["dg_cpu_ms"] = 1e3 * timeit(dg_step_fn(depth, width, batch, "cpu"), reps=reps,
                                        min_time=min_time)
        if cuda_ok():
            row["dg_cuda_ms"] = 1e3 * timeit(dg_step_fn(depth, width, batch, "cuda"),
                                             _C.cuda_synchronize, warmup=3, reps=reps,
                                             min_time=min_time)
        if torch is not None:
            row["torch_cuda_ms"] = 1e3 * timeit(torch_step_fn(torch, depth, width, batch),
                                                torch.cuda.synchronize, warmup=3, reps=reps,
                                                min_time=min_time)
        rows.append(row)
    print("\nTraining step (zero_grad + forward + cross-entropy + backward + Adam), ms per step")
    print(f"{'depth':>5} {'width':>6} {'batch':>6} {'dg CPU':>9} {'dg CUDA':>9} {'torch CUDA':>11}"
          f" {'torch/dg CUDA':>14}")
    for r in rows:
        sp = (r["torch_cuda_ms"] / r["dg_cuda_ms"]) if "dg_cuda_ms" in r and "torch_cuda_ms" in r else None
        print(f"{r['depth']:>5} {r['width']:>6} {r['batch']:>6} {fmt(r.get('dg_cpu_ms'), '.3f'):>9} "
              f"{fmt(r.get('dg_cuda_ms'), '.3f'):>9} {fmt(r.get('torch_cuda_ms'), '.3f'):>11} "
              f"{fmt(sp, '.2f'):>14}")
    return rows


# ---- 3. memory-bound kernels ----------------------------------------------------------------------

def bench_bandwidth(mbytes):
    n = mbytes * (1 << 20) // 4
    rng = np.random.default_rng(2)
    host = rng.standard_normal(n).astype(np.float32)
    src = _C.CudaArray(host)
    dst = _C.CudaArray(np.zeros(n, np.float32))
    sync = _C.cuda_synchronize
    t_copy = timeit(lambda: dst.copy_(src), sync, reps=5, min_time=0.3)
    # a realistic arena: many segments of mixed sizes, boundaries at arbitrary elements
    offs = np.unique(np.concatenate([[0, n], rng.integers(1, n, 199)])).astype(np.int64)
    t_norm = timeit(lambda: _C.cuda_segment_norms(src, offs), sync, reps=5, min_time=0.3)
    norms = _C.cuda_segment_norms(src, offs)[0]
    ref = np.sqrt(np.add.reduceat(host.astype(np.float64) ** 2, offs[:-1]))
    norm_err = float(np.max(np.abs(norms - ref) / ref))
    p, m, v = src, _C.CudaArray(np.zeros(n, np.float32)), _C.CudaArray(np.zeros(n, np.float32))
    g = dst
    step = [0]

    def adam():
        step[0] += 1
        _C.cuda_adam_step(p, g, m, v, step[0], 1e-6)
    t_adam = timeit(adam, sync, reps=5, min_time=0.3)
    res = {"mbytes": mbytes, "copy_GBs": 2 * n * 4 / t_copy / 1e9,
           "norm_GBs": n * 4 / t_norm / 1e9, "adam_GBs": 7 * n * 4 / t_adam / 1e9,
           "norm_ms": t_norm * 1e3, "adam_ms": t_adam * 1e3, "copy_ms": t_copy * 1e3,
           "norm_max_relerr": norm_err}
    kernels = [("segment_norms", "norm"), ("adam_step", "adam")]
    print(f"\nMemory-bound kernels on a {mbytes} MB float32 arena ({len(offs) - 1} segments)")
    print(f"{'kernel':>22} {'ms':>8} {'GB/s':>8} {'% of copy':>10}")
    print(f"{'device-to-device copy':>22} {res['copy_ms']:>8.3f} {res['copy_GBs']:>8.0f} {100:>9.0f}%")
    for name, key in kernels:
        print(f"{name:>22} {res[key + '_ms']:>8.3f} {res[key + '_GBs']:>8.0f} "
              f"{100 * res[key + '_GBs'] / res['copy_GBs']:>9.0f}%")
    print(f"(segment_norms includes its host round trip: offsets up, norms down; "
          f"max rel. error vs float64 {norm_err:.1e})")
    return res


def alternate(fns: dict, sync, rounds=7, min_time=0.05) -> dict:
    """Median seconds per call of each fn; every round runs each side in turn (same order), a
    batch of calls then one device synchronize, so machine noise hits both sides alike."""
    inner = {}
    for name, fn in fns.items():
        fn()
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        inner[name] = max(1, int(min_time / max(time.perf_counter() - t0, 1e-7)))
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            sync()
            times[name].append((time.perf_counter() - t0) / inner[name])
    return {name: statistics.median(v) for name, v in times.items()}


def bench_health(mbytes):
    """The one-pass health kernel (csrc/cuda/health.cu) on an arena of `mbytes` MB, float32 and
    float64, against a device-to-device copy of the same buffer, alternating in rounds: the
    backend's segment_health (rows back to the host, one synchronize per call) and a ring record
    (CudaStatRing.record: the same kernel writing into a device slot, no host round trip; the
    monitor's per-step path). GB/s counts bytes read (the copy: read + written). The rows are
    checked against the CPU kernel (L2 to 1e-12 relative, the rest exact)."""
    from deepgrad.backend import cuda as bcuda
    rng = np.random.default_rng(3)
    sync = _C.cuda_synchronize
    res = {"mbytes": mbytes}
    print(f"\nOne-pass tensor health on a {mbytes} MB arena (200 segments), vs a device copy of "
          "the same buffer, alternating rounds (medians)")
    print(f"{'dtype':>8} {'kernel':>34} {'ms':>8} {'GB/s':>8} {'% of copy':>10}")
    for dtype in (np.float32, np.float64):
        item = np.dtype(dtype).itemsize
        n = mbytes * (1 << 20) // item
        host = rng.standard_normal(n).astype(dtype)
        host[rng.integers(0, n, 3)] = np.nan
        offs = np.unique(np.concatenate([[0, n], rng.integers(1, n, 199)])).astype(np.int64)
        src, dst = _C.CudaArray(host), _C.CudaArray(np.zeros(n, dtype))
        S = len(offs) - 1
        ring = bcuda.stat_ring(64, 7 * S)
        step = [0]

        def record():
            step[0] += 1
            ring.record(step[0], ((0, src, offs),), ())
            if step[0] % 64 == 0:
                ring.read()  # keeps host storage bounded; one sync per 64 records
        t = alternate({"copy": lambda: dst.copy_(src),
                       "health": lambda: bcuda.segment_health(src, offs),
                       "ring": record}, sync)
        got, ref = bcuda.segment_health(src, offs), _C.segment_health(host, offs)
        relerr = float(np.max(np.abs(got[:, 0] - ref[:, 0]) / ref[:, 0]))
        exact = bool(np.array_equal(got[:, 1:], ref[:, 1:], equal_nan=True))
        ring.read()
        ring.record(0, ((0, src, offs),), ())
        ring_ok = bool(np.array_equal(ring.read()[1].reshape(S, 7), got, equal_nan=True))
        copy_gbs = 2 * n * item / t["copy"] / 1e9
        name = np.dtype(dtype).name
        r = {"copy_ms": t["copy"] * 1e3, "copy_GBs": copy_gbs, "l2_max_relerr": relerr,
             "others_exact": exact, "ring_equals_host": ring_ok}
        for key, label in (("health", "segment_health (rows to host)"),
                           ("ring", "ring record (device only)")):
            gbs = n * item / t[key] / 1e9
            r[key + "_ms"], r[key + "_GBs"], r[key + "_pct"] = t[key] * 1e3, gbs, 100 * gbs / copy_gbs
        print(f"{name:>8} {'device-to-device copy':>34} {r['copy_ms']:>8.3f} {copy_gbs:>8.0f} "
              f"{100:>9.0f}%")
        for key, label in (("health", "segment_health (rows to host)"),
                           ("ring", "ring record (device only)")):
            print(f"{name:>8} {label:>34} {r[key + '_ms']:>8.3f} {r[key + '_GBs']:>8.0f} "
                  f"{r[key + '_pct']:>9.0f}%")
        print(f"{'':>8} vs the CPU kernel: L2 max rel. error {relerr:.1e}, other columns "
              f"{'exact' if exact else 'DIFFER'}; ring row {'equal' if ring_ok else 'DIFFERS'}")
        res[name] = r
        del src, dst, ring
    return res


# ---- 3b. recurrent sequences --------------------------------------------------------------------

def bench_rnn_sequence(configs=((32, 50, 128), (64, 100, 256))):
    """LSTM forward + backward (with per-step norms, as under the monitor) on CUDA: the backend's
    one native call each way against the Python loop over backend primitives it replaced (kept
    here as the baseline), alternating rounds; host synchronisations per forward + backward."""
    from deepgrad.backend import cuda as b
    rng = np.random.default_rng(4)
    sync = _C.cuda_synchronize

    def python_loop(xw, w, h0, c0, gy):
        B, T = int(h0.shape[0]), int(xw.shape[0]) // int(h0.shape[0])
        h, c, hs, cs, acts = h0, c0, [h0], [c0], []
        for t in range(T):
            gates = b.add(b.getitem(xw, slice(t * B, (t + 1) * B)), b.matmul(h, w))
            h, c, act = b.lstm_cell_forward(gates, c)
            hs.append(h)
            cs.append(c)
            acts.append(act)
        b.stack(hs[1:] + [c], axis=1)
        wt, dgs, dh_next = b.transpose(w), [None] * T, None
        dc = b.getitem(gy, (slice(None), T))
        norms = np.zeros(T)
        for t in range(T - 1, -1, -1):
            dh = b.getitem(gy, (slice(None), t))
            if dh_next is not None:
                dh = b.add(dh, dh_next)
            norms[t] = b.segment_norms(b.reshape(dh, (int(dh.size),)),
                                       np.array([0, int(dh.size)], np.int64))[1]
            dgs[t], dc = b.lstm_cell_backward(dh, dc, cs[t], cs[t + 1], acts[t])
            dh_next = b.matmul(dgs[t], wt)
        dxw = b.concat(dgs, axis=0)
        b.matmul(b.concat(hs[:T], axis=0), dxw, trans_a=True)

    def native(xw, w, h0, c0, gy):
        _, saved = b.lstm_sequence_forward(xw, w, h0, c0)
        b.lstm_sequence_backward(gy, saved, w, True)

    rows = []
    print("\nLSTM sequence forward + backward on CUDA (with ||dL/dh_t||), ms, alternating rounds")
    print(f"{'B':>4} {'T':>4} {'H':>5} {'python loop':>12} {'native':>9} {'speedup':>8} "
          f"{'syncs loop':>11} {'syncs native':>13}")
    for B, T, H in configs:
        args = [_C.CudaArray(a.astype(np.float32)) for a in (
            rng.standard_normal((T * B, 4 * H)), rng.standard_normal((H, 4 * H)) / np.sqrt(H),
            rng.standard_normal((B, H)), rng.standard_normal((B, H)),
            rng.standard_normal((B, T + 1, H)))]
        t = alternate({"loop": lambda: python_loop(*args), "native": lambda: native(*args)}, sync,
                      rounds=5)
        syncs = {}
        for name, fn in (("loop", python_loop), ("native", native)):
            sync()
            before = _C.cuda_host_syncs()
            fn(*args)
            syncs[name] = _C.cuda_host_syncs() - before
        row = {"B": B, "T": T, "H": H, "loop_ms": t["loop"] * 1e3, "native_ms": t["native"] * 1e3,
               "syncs_loop": syncs["loop"], "syncs_native": syncs["native"]}
        rows.append(row)
        print(f"{B:>4} {T:>4} {H:>5} {row['loop_ms']:>12.3f} {row['native_ms']:>9.3f} "
              f"{row['loop_ms'] / row['native_ms']:>7.1f}x {syncs['loop']:>11} "
              f"{syncs['native']:>13}")
    return rows


# ---- 4. host synchronisations per step --------------------------------------------------------

def bench_host_syncs(depth=10, width=64, batch=128, steps=20):
    """Counts deepgrad's host synchronisations over `steps` CUDA training steps, without and
    with a GradientMonitor(every=1); reading the loss or the history is left out of the loop."""
    from deepgrad.monitor import GradientMonitor
    res = {}
    for label in ("plain", "monitor every=1"):
        step = dg_step_fn(depth, width, batch, "cuda")
        mon = GradientMonitor(step.model, every=1) if label != "plain" else None
        for _ in range(3):
            step()
            if mon:
                mon.step()
        _C.cuda_synchronize()
        before = _C.cuda_host_syncs()
        for _ in range(steps):
            step()
            if mon:
                mon.step()
        res[label] = (_C.cuda_host_syncs() - before) / steps
        if mon:
            mon.close()
    print(f"\nHost synchronisations per CUDA training step ({depth}x{width}, batch {batch}; "
          "target 0)")
    for k, v in res.items():
        print(f"{k:>22} {v:>8.2f}")
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repetitions")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    info = _C.build_info()
    gpu = cuda_ok()
    torch = torch_cuda() if gpu else None
    print(f"deepgrad {info['version']}, CPU threads {info['threads']} ({info['simd']}), "
          f"CUDA build: {info['cuda']}")
    if gpu:
        print(f"GPU: {_C.cuda_device_name(0)}; PyTorch CUDA: "
              f"{torch.__version__ + ' (TF32 off)' if torch else 'not available'}")
    else:
        print("No CUDA GPU available (or a CPU-only build): running the CPU columns only.")
    if args.quick:
        cpu_sizes, gpu_sizes = [256, 1024], [1024, 2048, 4096]
    else:
        cpu_sizes, gpu_sizes = [256, 512, 1024, 2048], [512, 1024, 2048, 4096, 8192]
    out = {"build": dict(info), "gpu": _C.cuda_device_name(0) if gpu else None}
    out["gemm"] = bench_gemm(cpu_sizes, gpu_sizes if gpu else [], torch)
    out["train"] = bench_train(CONFIGS, torch, args.quick)
    if gpu:
        out["bandwidth"] = bench_bandwidth(256)
        out["health"] = bench_health(256)
        out["rnn_sequence"] = bench_rnn_sequence()
        try:
            out["host_syncs"] = bench_host_syncs()
        except Exception as e:  # a failure here must not lose the tables above
            print(f"\nhost synchronisation count failed: {type(e).__name__}: {e}")
            out["host_syncs"] = f"failed: {e}"
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
    return out


if __name__ == "__main__":
    main()
