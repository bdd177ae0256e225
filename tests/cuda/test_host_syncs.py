"""A CUDA training step makes no host synchronisation, with or without a GradientMonitor at
every=1 (deepgrad's own counter, _C.cuda_host_syncs, counts device-to-host copies and
synchronize calls). Reading a value (loss.item(), the monitor's history) may synchronise; a
step may not. Skipped only without a GPU."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import _C, losses, nn, optim
from deepgrad.monitor import GradientMonitor

pytestmark = pytest.mark.cuda
if not (_C.build_info()["cuda"] and _C.cuda_device_count() > 0):
    pytest.skip("no CUDA GPU present", allow_module_level=True)


def _setup(rng, monitor: bool):
    dg.manual_seed(int(rng.integers(1 << 30)))
    model = nn.Sequential(nn.Dense(16, 32, activation="tanh"), nn.Dense(32, 32, activation="relu"),
                          nn.Dense(32, 4)).to("cuda")
    opt = optim.Adam(model, lr=1e-3)
    x = dg.tensor(rng.standard_normal((64, 16)).astype(np.float32), device="cuda")
    y = rng.integers(0, 4, 64)  # labels as the other CUDA tests pass them
    mon = GradientMonitor(model, every=1) if monitor else None

    def step():
        opt.zero_grad()
        loss = losses.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if mon is not None:
            mon.step(loss)
    return step, mon


@pytest.mark.parametrize("monitor", [False, True], ids=["plain", "monitor"])
def test_training_step_makes_no_host_sync(rng, monitor):
    step, mon = _setup(rng, monitor)
    for _ in range(3):
        step()
    _C.cuda_synchronize()
    before = _C.cuda_host_syncs()
    for _ in range(10):
        step()
    assert _C.cuda_host_syncs() - before == 0
    if mon is not None:
        assert mon.num_records > 0  # reading the history afterwards is allowed to sync
        mon.close()


def test_counter_counts_reads(rng):
    a = dg.tensor(rng.standard_normal(8).astype(np.float32), device="cuda")
    before = _C.cuda_host_syncs()
    a.numpy()
    assert _C.cuda_host_syncs() - before >= 1
