"""The DLPack protocol's CUDA side in every build (issue 12): the argument rules of
backend/dlpack.py (capsule kind from max_version, the stream values the spec allows, dl_device,
copy), how deepgrad asks a producer for a capsule (max_version first, the legacy call for older
producers), from_dlpack's refusals when deepgrad cannot import CUDA memory, and, in a CUDA
build, the import checks of _C.cuda_from_dlpack that run before any device is touched (a refused
capsule is left to its producer). The GPU half is tests/cuda/test_dlpack_cuda.py."""
import ctypes

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import _C
from deepgrad.backend import dlpack as dl

HAVE_CUDA_BUILD = bool(_C.build_info()["cuda"])
HAVE_GPU = HAVE_CUDA_BUILD and _C.cuda_device_count() > 0


@pytest.mark.parametrize("max_version,want", [
    (None, None), ((0, 8), None), ((1, 0), (1, 0)), ((1, 1), (1, 1)), ((1, 7), (1, 1)),
    ((2, 0), (1, 1)), ([1, 0], (1, 0))])
def test_capsule_version(max_version, want):
    assert dl.capsule_version(max_version) == want


@pytest.mark.parametrize("bad", [1, "1.0", (1,), (1, 0, 0)])
def test_capsule_version_refuses_malformed(bad):
    with pytest.raises(TypeError, match="max_version"):
        dl.capsule_version(bad)


def test_export_stream_values():
    for ok in (None, -1, 1, 2, 0x7f0012345678):
        assert dl.export_stream(ok) == ok
    with pytest.raises(ValueError, match="stream=0 is ambiguous"):
        dl.export_stream(0)
    with pytest.raises(ValueError, match="not a CUDA stream"):
        dl.export_stream(-2)
    for bad in (1.0, "1", True, object()):
        with pytest.raises(TypeError, match="stream must be an int"):
            dl.export_stream(bad)


def test_export_args():
    assert dl.export_args((2, 0)) == {"versioned": False, "minor": 0, "stream": None,
                                      "copy": False}
    assert dl.export_args((2, 0), stream=2, max_version=(1, 0), dl_device=(2, 0), copy=True) == \
        {"versioned": True, "minor": 0, "stream": 2, "copy": True}
    assert dl.export_args((2, 0), max_version=(1, 3), copy=False)["minor"] == 1
    with pytest.raises(BufferError, match=r"device \(2, 0\) and cannot be exported to \(1, 0\)"):
        dl.export_args((2, 0), dl_device=(1, 0))
    with pytest.raises(TypeError, match="copy must be"):
        dl.export_args((2, 0), copy="yes")


class _NewProducer:
    def __init__(self):
        self.calls = []

    def __dlpack__(self, *, stream=None, max_version=None):
        self.calls.append({"stream": stream, "max_version": max_version})
        return "capsule"


class _OldProducer:
    """A producer from before DLPack 1.0: no max_version keyword."""
    def __init__(self):
        self.calls = []

    def __dlpack__(self, stream=None):
        self.calls.append({"stream": stream})
        return "legacy capsule"


class _BrokenProducer:
    def __dlpack__(self, *, stream=None, max_version=None):
        raise TypeError("cannot export a tensor that requires grad")


def test_request_capsule_negotiates_the_version():
    p = _NewProducer()
    assert dl.request_capsule(p) == "capsule"
    assert p.calls == [{"stream": 1, "max_version": (1, 1)}]   # deepgrad's legacy default stream
    q = _OldProducer()
    assert dl.request_capsule(q) == "legacy capsule"
    assert q.calls == [{"stream": 1}]
    with pytest.raises(TypeError, match="requires grad"):      # other TypeErrors are not masked
        dl.request_capsule(_BrokenProducer())


class _FakeCudaProducer:
    def __init__(self, device=(2, 0)):
        self.device = device
        self.asked = False

    def __dlpack_device__(self):
        return self.device

    def __dlpack__(self, **kw):
        self.asked = True
        raise AssertionError("not reached: deepgrad refuses before asking for the capsule")


@pytest.mark.skipif(HAVE_GPU, reason="the refusal of a build or machine without CUDA")
def test_from_dlpack_cuda_producer_without_cuda_names_the_fix():
    p = _FakeCudaProducer()
    want = "rebuild with -Ccmake.define.DEEPGRAD_CUDA=ON" if not HAVE_CUDA_BUILD \
        else "no CUDA device is available"
    with pytest.raises(BufferError, match=r"on CUDA \(DLPack device \(2, 0\)\).*") as e:
        dg.from_dlpack(p)
    assert want in str(e.value) and "x.cpu()" in str(e.value)
    assert not p.asked


def test_from_dlpack_other_devices_are_refused():
    p = _FakeCudaProducer(device=(8, 0))   # kDLMetal
    with pytest.raises(BufferError, match=r"DLPack device \(8, 0\), neither the CPU nor CUDA"):
        dg.from_dlpack(p)
    assert not p.asked


def test_cpu_tensor_export_is_unchanged():
    t = dg.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert t.__dlpack_device__() == (1, 0)
    n = np.from_dlpack(t)
    n[0, 1] = 9
    assert t.numpy()[0, 1] == 9


def _capsule_name(cap):
    f = ctypes.pythonapi.PyCapsule_GetName
    f.restype, f.argtypes = ctypes.c_char_p, [ctypes.py_object]
    return f(cap).decode()


@pytest.mark.skipif(not HAVE_CUDA_BUILD, reason="deepgrad was built without CUDA")
def test_cuda_import_checks_before_touching_the_device():
    """_C.cuda_from_dlpack's checks that need no GPU: not a capsule, a wrong name, a consumed
    capsule, CPU memory; each refused capsule keeps its name, so numpy's deleter frees it."""
    with pytest.raises(TypeError, match="expected a DLPack capsule"):
        _C.cuda_from_dlpack(np.arange(3.0))
    a = np.arange(4.0)
    for kw, name in (({}, "dltensor"), ({"max_version": (1, 0)}, "dltensor_versioned")):
        cap = a.__dlpack__(**kw)
        assert _capsule_name(cap) == name
        with pytest.raises(BufferError, match=r"DLPack device type 1, not CUDA \(2\)"):
            _C.cuda_from_dlpack(cap)
        assert _capsule_name(cap) == name          # not consumed: its destructor frees it
    pyc = ctypes.pythonapi.PyCapsule_New
    pyc.restype, pyc.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p,
                                                   ctypes.c_void_p]
    buf = ctypes.create_string_buffer(8)
    for nm, exc, msg in ((b"used_dltensor", ValueError, "already consumed"),
                         (b"something_else", TypeError, "not 'dltensor'")):
        with pytest.raises(exc, match=msg):
            _C.cuda_from_dlpack(pyc(ctypes.addressof(buf), nm, None))


def test_monitor_cuda_route_is_off_without_deepgrad_cuda():
    """Without CUDA kernels (or a GPU) the torch monitor's CUDA norms fall back to
    torch._foreach_norm; the health rows' L2 column becomes NaN where a tensor is not finite."""
    from deepgrad.monitor import capture_torch as ct
    rows = np.array([[3.0, 2, -2, 2, 0, 0, -1], [1.0, 1, 0, 1, 1, 0, 4], [5.0, 5, 5, 5, 0, 2, 0]])
    out = ct._l2_of(rows)
    assert out[0] == 3.0 and np.isnan(out[1]) and np.isnan(out[2])
    if not HAVE_GPU:
        assert ct._cuda_health([]) is None


def test_monitor_cuda_health_hands_the_kernel_addresses(monkeypatch):
    """The torch monitor's CUDA norms pass each tensor's address and element count to one
    native call (one dtype per call: float16 converted to float32, a float32 + float64 mix to
    float64, a strided tensor made contiguous first), not a DLPack export and import per tensor
    (~8 us each in Python, 140 a step for the d20 MLP on an H200's host). Checked on the CPU:
    CPU tensors dressed as CUDA ones and a stand-in backend that records the call."""
    torch = pytest.importorskip("torch")
    import types
    from deepgrad.monitor import capture_torch as ct

    calls = []

    class FakeBackend:
        DLPACK_DEVICE = (2, 0)

        def _tensors_health_at(self, ptrs, sizes, dtype):
            calls.append((list(ptrs), list(sizes), dtype))
            return np.zeros((len(ptrs), 7))

        def from_dlpack(self, x):
            raise AssertionError("no DLPack import on the address route")

    cuda0 = types.SimpleNamespace(type="cuda", index=0)

    class AsCuda:   # a CPU tensor that says it is on cuda:0
        def __init__(self, t):
            self.t = t
        device, dtype = cuda0, property(lambda self: self.t.dtype)
        shape = property(lambda self: self.t.shape)

        def dim(self):
            return self.t.dim()

        def data_ptr(self):
            return self.t.data_ptr()

        def numel(self):
            return self.t.numel()

        def is_contiguous(self):
            return self.t.is_contiguous()

        def detach(self):
            return AsCuda(self.t.detach())

        def float(self):
            return AsCuda(self.t.float())

        def double(self):
            return AsCuda(self.t.double())

        def contiguous(self):
            return AsCuda(self.t.contiguous())

    monkeypatch.setattr(ct, "_CUDA_BACKEND", [FakeBackend()])
    monkeypatch.setattr(torch.cuda, "current_stream",
                        lambda i=None: types.SimpleNamespace(cuda_stream=0))
    a, b = torch.randn(3, 4), torch.randn(5)
    rows = ct._cuda_health([AsCuda(a), AsCuda(b)])
    assert rows.shape == (2, 7)
    assert calls[-1] == ([a.data_ptr(), b.data_ptr()], [12, 5], "float32")
    half, wide = torch.randn(4).half(), torch.randn(6, dtype=torch.float64)
    ct._cuda_health([AsCuda(half), AsCuda(wide)])
    ptrs, sizes, dtype = calls[-1]
    assert dtype == "float64" and sizes == [4, 6]
    assert ptrs[0] != half.data_ptr() and ptrs[1] == wide.data_ptr()   # only the half copied
    strided = torch.randn(4, 6)[:, ::2]
    ct._cuda_health([AsCuda(strided)])
    assert calls[-1][1] == [12] and calls[-1][0][0] != strided.data_ptr()
    assert ct._cuda_health([AsCuda(a), a]) is None   # a tensor off the device: the other route
    # the activation statistics' items: addresses and the (rows, last dim) view of the host route
    z, y = torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    assert ct._device_stat_item(AsCuda(z), AsCuda(y)) == (z.data_ptr(), y.data_ptr(), 8, 5,
                                                          "float32")
    assert ct._device_stat_item(AsCuda(z[:, ::2]), AsCuda(y[:, ::2])) is None   # strided
    assert ct._device_stat_item(AsCuda(z), AsCuda(y.double())) is None          # two dtypes
    assert ct._device_stat_item(AsCuda(z.half()), AsCuda(y.half())) is None    # float16
    assert ct._device_stat_item(z, y) is None                                    # on the CPU


def test_monitor_device_branch_bookkeeping_matches_the_cpu_path(monkeypatch):
    """The torch monitor's CUDA branch (one health call over gradients + weights + updates,
    sliced into the gradient health, weight norms and update norms) gives the CPU path's history:
    checked on the CPU with the device kernel stood in for by the CPU tensors_health over the
    same tensors (the CUDA kernel itself is checked against the CPU in tests/cuda)."""
    torch = pytest.importorskip("torch")
    from deepgrad.backend import cpu as cpu_be
    from deepgrad.monitor import GradientMonitor
    from deepgrad.monitor import capture_torch as ct

    def run(device_branch):
        torch.manual_seed(3)
        model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(),
                                    torch.nn.Linear(16, 16), torch.nn.ReLU(),
                                    torch.nn.Linear(16, 3))
        g = torch.Generator().manual_seed(5)
        x, y = torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        mon = GradientMonitor(model)
        calls = []
        calls_at = []
        if device_branch:
            # the activation statistics' address route, every other layer: the stand-in passes
            # the tensors themselves for addresses and computes with the CPU kernel
            def item(z, y):
                if item.k % 2:
                    item.k += 1
                    return None
                item.k += 1
                c = z.shape[-1]
                return (z.detach(), y.detach(), z.numel() // c, c, "float32")
            item.k = 0

            def at(items):
                calls_at.append(len(items))
                return [cpu_be.act_stats(z.numpy().reshape(r, c), y.numpy().reshape(r, c), *a)
                        for z, y, r, c, _, *a in items]
            monkeypatch.setattr(ct, "_cuda_act_stats_route", lambda: at)
            monkeypatch.setattr(ct, "_device_stat_item", item)
            monkeypatch.setattr(ct, "_device_act_stats", lambda f, items: f(items))

            def health(tensors):
                calls.append(len(tensors))
                return cpu_be.tensors_health([t.detach().numpy().reshape(-1) for t in tensors])
            monkeypatch.setattr(ct, "_cuda_health", health)
            monkeypatch.setattr(ct.TorchGradientMonitor, "_host_views", lambda self, p: None)
        for i in range(4):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            if i == 2:
                model[2].weight.grad[1, 1] = float("nan")   # a non-finite gradient, found
            opt.step()
            mon.step(loss)
        monkeypatch.undo()
        assert not device_branch or calls_at == [1] * 4   # one device layer of two, each step
        return mon.to_dict(), calls

    ref, _ = run(False)
    got, calls = run(True)
    assert any(v is not None for row in ref["act_mean"] for v in row)
    assert got["act_mean"] == ref["act_mean"] and got["saturated"] == ref["saturated"]
    assert got["dead"] == ref["dead"] and got["act_std"] == ref["act_std"]
    P = 6   # 3 Linear layers x (weight, bias)
    # one call per recorded step: gradients + weights (+ updates after the first)
    assert calls == [2 * P, 3 * P, 3 * P, 3 * P]
    for key in ("param_grad_norm", "param_norm", "update_norm", "layer_grad_norm",
                "layer_weight_norm", "layer_grad_ratio", "layer_update_ratio", "signal_norm",
                "layer_grad_linf", "layer_nonfinite", "global_grad_norm"):
        if key not in ref:
            continue
        assert len(got[key]) == len(ref[key]) == 4, key
        for step, (a, b) in enumerate(zip(ref[key], got[key])):
            if a is None or b is None:
                assert a is None and b is None, (key, step)
                continue
            a = np.array(a, dtype=np.float64)
            b = np.array(b, dtype=np.float64)
            np.testing.assert_allclose(b, a, rtol=1e-6, equal_nan=True, err_msg=f"{key} {step}")
    assert got["first_nonfinite"] == ref["first_nonfinite"]
    assert np.isnan(np.array(got["param_grad_norm"][2], dtype=np.float64)[2])


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


_DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32),
                ("manager_ctx", ctypes.c_void_p), ("deleter", _DELETER),
                ("flags", ctypes.c_uint64), ("dl_tensor", _DLTensor)]


def _fake_cuda_capsule(shape, strides=None, code=2, bits=32, flags=0, major=1, device_id=0):
    """A "dltensor_versioned" capsule claiming CUDA memory (the pointer is never dereferenced:
    every case below is refused before), with a deleter that counts its calls."""
    keep = {"calls": 0}

    def deleter(_):
        keep["calls"] += 1
    keep["deleter"] = _DELETER(deleter)
    n = len(shape)
    keep["shape"] = (ctypes.c_int64 * max(n, 1))(*shape)
    keep["strides"] = (ctypes.c_int64 * max(n, 1))(*(strides or [0]))
    keep["buf"] = ctypes.create_string_buffer(1024)
    m = _DLManagedTensorVersioned()
    m.major, m.minor, m.deleter, m.flags = major, 1, keep["deleter"], flags
    m.dl_tensor.data = ctypes.addressof(keep["buf"])
    m.dl_tensor.device = _DLDevice(2, device_id)
    m.dl_tensor.ndim = n
    m.dl_tensor.dtype = _DLDataType(code, bits, 1)
    m.dl_tensor.shape = ctypes.cast(keep["shape"], ctypes.POINTER(ctypes.c_int64))
    if strides is not None:
        m.dl_tensor.strides = ctypes.cast(keep["strides"], ctypes.POINTER(ctypes.c_int64))
    keep["m"] = m
    pyc = ctypes.pythonapi.PyCapsule_New
    pyc.restype, pyc.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p,
                                                   ctypes.c_void_p]
    return pyc(ctypes.addressof(m), b"dltensor_versioned", None), keep


@pytest.mark.skipif(not HAVE_CUDA_BUILD, reason="deepgrad was built without CUDA")
@pytest.mark.parametrize("kw,exc,msg", [
    (dict(shape=(4, 6), strides=(1, 4)), ValueError,
     r"shape \(4, 6\) is not C-contiguous \(strides \(1, 4\).*x\.contiguous\(\)"),
    (dict(shape=(4, 6), strides=(12, 2)), ValueError, "not C-contiguous"),
    (dict(shape=(3,), bits=16), TypeError, r"dtype float16 cannot be shared.*x\.float\(\)"),
    (dict(shape=(3,), code=4, bits=16), TypeError, "dtype bfloat16 cannot be shared"),
    (dict(shape=(3,), code=0, bits=32), TypeError, "dtype int32 cannot be shared"),
    (dict(shape=(3,), code=6, bits=8), TypeError, "dtype bool8 cannot be shared"),
    (dict(shape=(3,), flags=1), ValueError, "read-only"),
    (dict(shape=(3,), major=2), BufferError, r"version 2\.1 is newer"),
])
def test_cuda_import_refusals_leave_the_capsule_to_its_producer(kw, exc, msg):
    cap, keep = _fake_cuda_capsule(**kw)
    with pytest.raises(exc, match=msg):
        _C.cuda_from_dlpack(cap)
    assert _capsule_name(cap) == "dltensor_versioned" and keep["calls"] == 0


@pytest.mark.skipif(not HAVE_CUDA_BUILD, reason="deepgrad was built without CUDA")
def test_cuda_import_accepts_contiguous_strides_and_checks_the_device_last():
    """Strides of size-1 dimensions are free and a zero-size tensor is contiguous; such
    capsules pass every layout check and reach the device check (no GPU: the CUDA runtime's
    error; a GPU: cuda:99 is not deepgrad's device), still unconsumed."""
    for kw in (dict(shape=(4, 1, 6), strides=(6, 99, 1)), dict(shape=(0, 3), strides=(7, 7)),
               dict(shape=(2, 3), strides=None)):
        cap, keep = _fake_cuda_capsule(device_id=99, **kw)
        with pytest.raises((BufferError, RuntimeError)) as e:
            _C.cuda_from_dlpack(cap)
        assert "cuda:99" in str(e.value) or "CUDA" in str(e.value)
        assert _capsule_name(cap) == "dltensor_versioned" and keep["calls"] == 0
