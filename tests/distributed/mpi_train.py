"""Run under mpiexec by test_mpi.py: data-parallel training of a float64 MLP over the ranks
against single-process training on the same global batches, checked on rank 0 every step.
Usage: mpi_train.py MODE OUTDIR, MODE one of train, fail, mismatch, mismatch-shape."""
import os
import sys

import numpy as np

import deepgrad as dg
import deepgrad.distributed as dist
from deepgrad import data, losses, nn, optim
from deepgrad.monitor import GradientMonitor
from deepgrad.nn.utils import clip_grad_norm_

mode, out = sys.argv[1], sys.argv[2]
rank, size = dist.init()
dg.set_num_threads(1)
if mode == "fail":
    if rank == 1:
        raise RuntimeError("planted failure on rank 1")
    dist.barrier()   # rank 0 would wait here forever without the abort
    sys.exit(0)
if mode.startswith("mismatch"):   # rank 1 builds another model: every rank must refuse
    width = 16 + (rank if mode == "mismatch" else 0)
    layers = [nn.Dense(3, width, "tanh"), nn.Dense(width, 4)]
    if mode == "mismatch-shape" and rank == 1:   # the same count, other shapes
        layers = [nn.Dense(4, 12, "tanh"), nn.Dense(12, 4), nn.Dense(4, 4)]
    model = nn.Sequential(*layers)
    try:
        dist.broadcast_parameters(model)
    except ValueError as e:
        print(f"rank {rank} refused: {e}", flush=True)
        sys.exit(0)
    print(f"rank {rank} broadcast", flush=True)
    sys.exit(0)


def mlp(seed):
    dg.manual_seed(seed)
    return nn.Sequential(nn.Dense(3, 16, "tanh", dtype=np.float64),
                         nn.Dense(16, 16, "relu", dtype=np.float64),
                         nn.Dense(16, 4, dtype=np.float64))


rng = np.random.default_rng(0)
X = rng.standard_normal((45, 3))                    # 45 = 2 batches of 16 + one of 13
y = rng.integers(0, 4, 45)
model = mlp(seed=100 + rank)                        # different on purpose: broadcast fixes it
model = dist.DataParallel(model)
opt = optim.Adam(model.module, lr=1e-2)
mon = GradientMonitor(model.module) if rank == 0 else None
if rank == 0:
    ref = mlp(seed=100)
    ref_opt = optim.Adam(ref, lr=1e-2)
    ref_mon = GradientMonitor(ref)
worst = 0.0
steps = 0
for epoch in range(7):
    shards = data.batches(X, y, 16, seed=epoch, rank=rank, world_size=size)
    full = data.batches(X, y, 16, seed=epoch)
    for (xb, yb), (xf, yf) in zip(shards, full):
        opt.zero_grad()
        if len(xb):
            loss = losses.cross_entropy(model(dg.tensor(xb, dtype=dg.float64)), yb)
            loss.backward()
        model.allreduce(count=len(xb))
        clip_grad_norm_(model.module, 5.0)
        opt.step()
        if mon is not None:
            mon.step()
        p = np.array(model.module.arena.params)
        everyone = dist._comm().gather(p, root=0)
        if rank == 0:
            assert all(np.array_equal(q, p) for q in everyone), "ranks differ"
            ref_opt.zero_grad()
            losses.cross_entropy(ref(dg.tensor(xf, dtype=dg.float64)), yf).backward()
            clip_grad_norm_(ref, 5.0)
            ref_opt.step()
            ref_mon.step()
            worst = max(worst, float(np.max(np.abs(p - np.array(ref.arena.params)))))
        steps += 1
if rank == 0:
    h, hr = mon.to_dict(), ref_mon.to_dict()
    gdiff = max(abs(a - b) for a, b in zip(h["global_grad_norm"], hr["global_grad_norm"]))
    print(f"steps {steps} worst {worst:.3e} gdiff {gdiff:.3e}", flush=True)
dist.save_on_rank0(model.module.state_dict(), os.path.join(out, "model.dg"))
