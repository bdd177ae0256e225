"""The CUDA backend means what the CPU backend means: every case of tests/backend/cases.py (at
least one per Protocol primitive) runs on both backends from the same fresh random inputs and
the results, the arrays changed in place and the named saved values (batch/layer norm's x,
mean and inv_std) must agree. The CPU backend itself is checked against float64 references in
tests/backend/test_parity.py. Skipped only without a GPU."""
import importlib.util
import os

import numpy as np
import pytest

from deepgrad import _C
from deepgrad.backend import cpu

pytestmark = pytest.mark.cuda

if _C.build_info()["cuda"] and _C.cuda_device_count() > 0:
    from deepgrad.backend import cuda as gpu
else:
    gpu = None


def _load_cases():
    path = os.path.join(os.path.dirname(__file__), "..", "backend", "cases.py")
    spec = importlib.util.spec_from_file_location("_backend_cases", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


C = _load_cases()
CASES = C.build_cases()


def up(x):
    """numpy arrays -> device arrays (bool masks stay host arrays, as from_numpy keeps them);
    tuples and lists element by element; everything else unchanged."""
    if isinstance(x, np.ndarray):
        return gpu.from_numpy(x)
    if isinstance(x, (tuple, list)) and not isinstance(x, C.Fwd):
        return type(x)(up(i) for i in x)
    return x


def down(x):
    if isinstance(x, _C.CudaArray):
        return x.numpy()
    if isinstance(x, (tuple, list)):
        return type(x)(down(i) for i in x)
    return x


@pytest.mark.parametrize("case", CASES, ids=C.case_id)
def test_cuda_agrees_with_cpu(case, rng):
    # float32 on both sides; the GPU kernels sum in other orders (and use fused multiply-adds),
    # so results agree to a few float32 ulps scaled by the reduction length, not bit for bit
    C.parity_check(gpu, cpu, case, rng, up, down, rtol=max(case.rtol, 1e-4),
                   atol=max(case.atol, 1e-5))


def test_cuda_dense_forward_keeps_z_when_asked(rng):
    """keep_z was ignored on CUDA: z came back None for tanh/sigmoid/identity."""
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((7, 5), (5, 3), (3,)))
    for act in ("identity", "sigmoid", "tanh"):
        y, z = gpu.dense_forward(gpu.from_numpy(x), gpu.from_numpy(w), gpu.from_numpy(b), act,
                                 0.01, True)
        assert z is not None, act
        np.testing.assert_allclose(z.numpy(), x.astype(np.float64) @ w + b, rtol=1e-5, atol=1e-5)
        assert gpu.dense_forward(gpu.from_numpy(x), gpu.from_numpy(w), None, act)[1] is None


def test_cuda_monitor_norms_snapshot_writes_the_device_buffer(rng):
    p = rng.standard_normal(40).astype(np.float32)
    g = rng.standard_normal(40).astype(np.float32)
    prev = gpu.from_numpy(np.zeros(40, np.float32))
    gpu.monitor_norms(gpu.from_numpy(p), gpu.from_numpy(g), prev, np.array([0, 40]), True, True)
    np.testing.assert_array_equal(prev.numpy(), p)
