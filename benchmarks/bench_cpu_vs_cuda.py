"""deepgrad CPU vs deepgrad CUDA vs numpy / PyTorch, in one run.

Prints three tables:
  1. GEMM GFLOP/s for square float32 products: deepgrad CPU, numpy (its BLAS), deepgrad CUDA,
     PyTorch CUDA matmul with TF32 disabled (full FP32, when torch with CUDA is installed).
  2. Training-step milliseconds for the MLP configurations (depth, width, batch) of
     benchmarks/bench_train.py: deepgrad CPU, deepgrad CUDA, PyTorch CUDA eager. A step is
     zero_grad + forward + softmax cross-entropy + backward + Adam, on ReLU Dense layers.
  3. GB/s of the fused gradient norm (segment_norms, bytes read), the one-pass health kernel
     (segment_health, bytes read; when the build has it) and Adam (4 reads + 3 writes per
     element) on a 256 MB arena, against a device-to-device copy (read + write) measured in
     the same run.
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
    from deepgrad.backend import cuda as bcuda
    health = getattr(bcuda, "segment_health", None)
    if health is not None:
        t_health = timeit(lambda: health(src, offs), sync, reps=5, min_time=0.3)
        got = health(src, offs)
        got = got if isinstance(got, np.ndarray) else bcuda.to_numpy(got)
        res["health_max_relerr"] = float(np.max(np.abs(got[:, 0] - ref) / ref))
        res["health_GBs"], res["health_ms"] = n * 4 / t_health / 1e9, t_health * 1e3
        kernels.insert(1, ("segment_health", "health"))
    print(f"\nMemory-bound kernels on a {mbytes} MB float32 arena ({len(offs) - 1} segments)")
    print(f"{'kernel':>22} {'ms':>8} {'GB/s':>8} {'% of copy':>10}")
    print(f"{'device-to-device copy':>22} {res['copy_ms']:>8.3f} {res['copy_GBs']:>8.0f} {100:>9.0f}%")
    for name, key in kernels:
        print(f"{name:>22} {res[key + '_ms']:>8.3f} {res[key + '_GBs']:>8.0f} "
              f"{100 * res[key + '_GBs'] / res['copy_GBs']:>9.0f}%")
    print(f"(segment_norms includes its host round trip: offsets up, norms down; "
          f"max rel. error vs float64 {norm_err:.1e}"
          + (f"; segment_health L2 {res['health_max_relerr']:.1e})" if health else ")"))
    return res


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
