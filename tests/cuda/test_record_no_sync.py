"""The CUDA backend's per-step paths make no synchronising read, checked on the CPU (no GPU
needed, not marked cuda).

backend/cuda.py is loaded against a stand-in for deepgrad._C that logs every native call by
name. A monitor record (record_stats) and a recurrent layer's forward and backward without
per-step norms must each be exactly one native call, of the entry points that return without
waiting for the device; reading the ring is the one synchronising call. That those entry points
do not wait is checked twice: on a GPU by deepgrad's own counter (_C.cuda_host_syncs, in
test_health_cuda.py and test_rnn_cuda.py), and here by reading their C++ bodies for the CUDA
calls that block the host."""
import importlib.util
import pathlib
import re
import types

import numpy as np
import pytest

import deepgrad

ROOT = pathlib.Path(__file__).resolve().parents[2]
BACKEND = ROOT / "python" / "deepgrad" / "backend" / "cuda.py"

# Native entry points that only enqueue work (no device-to-host copy, no synchronize).
ENQUEUE_ONLY = {"CudaStatRing.record", "CudaStatRing.copy_async", "cuda_lstm_sequence_forward",
                "cuda_lstm_sequence_backward", "cuda_rnn_sequence_forward",
                "cuda_rnn_sequence_backward", "cuda_gru_sequence_forward",
                "cuda_gru_sequence_backward"}


class FakeArray:
    """Stands in for _C.CudaArray: reading its values is a logged (synchronising) call."""

    def __init__(self, a):
        self.a = np.asarray(a)
        self.shape, self.dtype, self.size, self.ndim = (self.a.shape, self.a.dtype, self.a.size,
                                                        self.a.ndim)

    def numpy(self):
        CALLS.append("CudaArray.numpy")
        return self.a.copy()

    def reshape(self, shape):
        return FakeArray(self.a.reshape(shape))


class FakeRing:
    def __init__(self, slots, width):
        self.slots, self.width, self.rows = slots, width, []

    def record(self, step, health, values):
        CALLS.append("CudaStatRing.record")
        assert isinstance(health, tuple) and isinstance(values, tuple)
        self.rows.append(step)

    def copy_async(self):
        CALLS.append("CudaStatRing.copy_async")

    def read(self):
        CALLS.append("CudaStatRing.read")
        steps, self.rows = np.array(self.rows, np.int64), []
        return steps, np.zeros((len(steps), self.width))


CALLS: list[str] = []


def _native(name, result):
    def f(*args, **kw):
        CALLS.append(name)
        return result(*args)
    return f


def fake_c():
    m = types.ModuleType("deepgrad._C")
    m.CudaArray, m.CudaStatRing = FakeArray, FakeRing
    arr = FakeArray(np.zeros(2, np.float32))
    m.cuda_lstm_sequence_forward = _native("cuda_lstm_sequence_forward", lambda *a: (arr,) * 4)
    m.cuda_rnn_sequence_forward = _native("cuda_rnn_sequence_forward", lambda *a: (arr,) * 3)
    m.cuda_gru_sequence_forward = _native("cuda_gru_sequence_forward", lambda *a: (arr,) * 3)
    nrm = FakeArray(np.ones(3))
    m.cuda_lstm_sequence_backward = _native(
        "cuda_lstm_sequence_backward", lambda *a: (arr,) * 4 + (nrm if a[-1] else None,))
    m.cuda_rnn_sequence_backward = _native(
        "cuda_rnn_sequence_backward", lambda *a: (arr,) * 3 + (nrm if a[-1] else None,))
    m.cuda_gru_sequence_backward = _native(
        "cuda_gru_sequence_backward", lambda *a: (arr,) * 4 + (nrm if a[-1] else None,))

    def other(name):  # any other entry point: logged, and unusable
        def f(*args, **kw):
            CALLS.append(name)
            raise AssertionError(f"unexpected native call {name}")
        return f
    m.__getattr__ = other
    return m


@pytest.fixture
def be(monkeypatch):
    """backend/cuda.py bound to the stand-in _C (deepgrad._C itself is restored afterwards).
    The backend imports _C from deepgrad.runtime, so the stand-in goes there too."""
    import deepgrad.runtime
    fake = fake_c()
    monkeypatch.setattr(deepgrad, "_C", fake)
    monkeypatch.setattr(deepgrad.runtime, "_C", fake)
    spec = importlib.util.spec_from_file_location("deepgrad.backend._cuda_probe", BACKEND)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod._C is deepgrad._C
    CALLS.clear()
    return mod


def test_monitor_record_is_one_enqueue_only_call_per_step(be, rng):
    S = 4
    ring = be.stat_ring(100, 1 + 14 * S)
    grads, params = FakeArray(rng.standard_normal(40)), FakeArray(rng.standard_normal(40))
    offsets = np.array([0, 3, 3, 20, 40], np.int64)
    loss = FakeArray(np.float32(rng.standard_normal()))
    CALLS.clear()
    for step in range(250):
        be.record_stats(ring, step, health=[(1, grads, offsets), (1 + 7 * S, params, offsets)],
                        values=[(0, loss)])
    assert CALLS == ["CudaStatRing.record"] * 250
    CALLS.clear()
    steps, rows = be.read_stats(ring)
    assert CALLS == ["CudaStatRing.read"]
    np.testing.assert_array_equal(steps, np.arange(250))


@pytest.mark.parametrize("kind", ["lstm", "rnn", "gru"])
def test_recurrent_sequence_is_one_native_call_each_way(be, kind):
    a = FakeArray(np.zeros((2, 2), np.float32))
    if kind == "lstm":
        _, saved = be.lstm_sequence_forward(a, a, a, a)
        back = lambda norms: be.lstm_sequence_backward(a, saved, a, norms)  # noqa: E731
    elif kind == "rnn":
        _, saved = be.rnn_sequence_forward(a, a, a, "tanh")
        back = lambda norms: be.rnn_sequence_backward(a, saved, a, norms)  # noqa: E731
    else:
        _, saved = be.gru_sequence_forward(a, a, a, a)
        back = lambda norms: be.gru_sequence_backward(a, saved, a, norms)  # noqa: E731
    out = back(False)
    assert out[-1] is None
    assert CALLS == [f"cuda_{kind}_sequence_forward", f"cuda_{kind}_sequence_backward"]
    assert set(CALLS) <= ENQUEUE_ONLY
    CALLS.clear()
    out = back(True)  # per-step norms asked for: one read of the (T,) array, never one per step
    assert CALLS == [f"cuda_{kind}_sequence_backward", "CudaArray.numpy"]
    np.testing.assert_array_equal(out[-1], np.ones(3))


# ---- the C++ behind the enqueue-only entry points ------------------------------------------------

BLOCKING = ("cudaMemcpy(", "cudaStreamSynchronize", "cudaDeviceSynchronize",
            "cudaEventSynchronize", "memcpy_d2h", "note_host_sync", "synchronize(", ".numpy(")


def body(path: pathlib.Path, signature: str) -> str:
    """The brace-matched body of the first function whose definition starts with `signature`."""
    src = path.read_text()
    i = src.index(signature)
    j = src.index("{", i)
    depth = 0
    for k in range(j, len(src)):
        depth += {"{": 1, "}": -1}.get(src[k], 0)
        if depth == 0:
            return src[j:k + 1]
    raise AssertionError(f"unbalanced braces after {signature}")


ENQUEUE_BODIES = [
    ("csrc/bindings/bind_cuda_health.cpp", "void ring_record("),
    ("csrc/cuda/ring.cu", "double* StatRing::begin("),
    ("csrc/cuda/ring.cu", "void StatRing::copy_async("),
    ("csrc/cuda/ring.cu", "  void harvest_ready("),
    ("csrc/cuda/ring.cu", "const std::int64_t* StatRing::device_table("),
    ("csrc/cuda/health.cu", "void launch_health("),
    ("csrc/cuda/health.cu", "void segment_health(double* out, void* workspace"),
    ("csrc/cuda/health.cu", "void launch_tensors("),
    ("csrc/cuda/health.cu", "void tensors_health(double* out, void* workspace"),
    ("csrc/cuda/health.cu", "void launch_passes("),
    ("csrc/cuda/rnn.cu", "void lstm_sequence_forward("),
    ("csrc/cuda/rnn.cu", "void lstm_sequence_backward("),
    ("csrc/cuda/rnn.cu", "void rnn_sequence_forward("),
    ("csrc/cuda/rnn.cu", "void rnn_sequence_backward("),
    ("csrc/cuda/rnn.cu", "void gru_sequence_forward("),
    ("csrc/cuda/rnn.cu", "void gru_sequence_backward("),
]


@pytest.mark.parametrize("path,signature", ENQUEUE_BODIES, ids=[s for _, s in ENQUEUE_BODIES])
def test_enqueue_only_cxx_has_no_blocking_call(path, signature):
    text = body(ROOT / path, signature)
    found = [b for b in BLOCKING if b in text]
    assert not found, f"{signature.strip()} in {path} calls {found}"


def test_the_ring_read_is_where_the_wait_is():
    text = body(ROOT / "csrc/cuda/ring.cu", "void StatRing::read(")
    assert "note_host_sync" in text and "cudaEventSynchronize" in text
    assert re.search(r"cudaEventQuery", body(ROOT / "csrc/cuda/ring.cu", "  void harvest_ready("))
