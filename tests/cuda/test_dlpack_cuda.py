"""DLPack interop of CUDA tensors (issue 12), zero copy both ways with torch on the GPU:
torch -> deepgrad -> torch round trips share memory (a write on either side is seen on the
other), dtype, shape and strides are preserved, each side's memory stays alive while the other
holds it and is freed after; non-contiguous, read-only or unsupported-dtype producers are refused
naming the copy to make; the versioned and legacy capsules, the stream argument, dl_device and
copy follow the Python DLPack spec. The torch monitor takes its CUDA norms from deepgrad's health
kernel over DLPack views, equal to float64 norms computed on the CPU, with a fixed number of host
synchronisations per step whatever the depth.

Marked cuda (skipped without a GPU); also skipped when torch has no CUDA. Fresh random inputs."""
import gc

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import _C

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="torch has no CUDA")]

_DTYPES = [(torch.float32, np.float32), (torch.float64, np.float64), (torch.int64, np.int64)]
_SHAPES = [(7,), (3, 4), (2, 3, 5), (), (0, 4)]


def _rand(rng, shape, np_dtype):
    """An array of `shape` (a 0-d ndarray for (), not a numpy scalar)."""
    if np_dtype == np.int64:
        return np.asarray(rng.integers(-1000, 1000, size=shape), dtype=np.int64)
    return np.asarray(rng.standard_normal(shape) * 3 + 0.5, dtype=np_dtype)


@pytest.mark.parametrize("tdt,ndt", _DTYPES)
@pytest.mark.parametrize("shape", _SHAPES)
def test_torch_to_deepgrad_shares_memory(rng, tdt, ndt, shape):
    host = _rand(rng, shape, ndt)
    src = torch.from_numpy(host.copy()).to("cuda")
    t = dg.from_dlpack(src)
    assert t.device == "cuda" and t.shape == tuple(shape) and t.numpy().dtype == ndt
    np.testing.assert_array_equal(t.numpy(), host)
    if src.numel():
        assert t.data.data_ptr == src.data_ptr()
        src.view(-1)[-1] = 42            # torch writes, deepgrad sees it
        torch.cuda.synchronize()
        assert t.numpy().reshape(-1)[-1] == 42
        t.data.fill_(-3)                 # deepgrad writes, torch sees it
        _C.cuda_synchronize()
        assert (src.cpu().numpy() == -3).all()


@pytest.mark.parametrize("tdt,ndt", _DTYPES)
@pytest.mark.parametrize("shape", _SHAPES)
def test_deepgrad_to_torch_shares_memory_and_keeps_strides(rng, tdt, ndt, shape):
    host = _rand(rng, shape, ndt)
    t = dg.tensor(host, dtype=ndt, device="cuda")
    tt = torch.from_dlpack(t)
    assert tt.is_cuda and tt.dtype == tdt and tuple(tt.shape) == tuple(shape)
    assert tt.is_contiguous() and tt.stride() == torch.empty(shape).stride()
    np.testing.assert_array_equal(tt.cpu().numpy(), host)
    if tt.numel():
        assert tt.data_ptr() == t.data.data_ptr
        tt.view(-1)[0] = 17
        torch.cuda.synchronize()
        assert t.numpy().reshape(-1)[0] == 17


def test_round_trip_is_the_same_memory(rng):
    src = torch.from_numpy(_rand(rng, (5, 6), np.float32)).cuda()
    back = torch.from_dlpack(dg.from_dlpack(src))
    assert back.data_ptr() == src.data_ptr()
    back[1, 2] = 123.0
    assert src[1, 2].item() == 123.0
    # and deepgrad -> torch -> deepgrad
    t = dg.tensor(_rand(rng, (4, 3), np.float64), device="cuda")
    t2 = dg.from_dlpack(torch.from_dlpack(t))
    assert t2.data.data_ptr == t.data.data_ptr and t2.data.storage_ptr == t.data.storage_ptr


def test_imported_memory_lives_until_deepgrad_drops_it(rng):
    host = _rand(rng, (256, 1024), np.float32)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    src = torch.from_numpy(host).cuda()
    t = dg.from_dlpack(src)
    del src
    gc.collect()
    assert torch.cuda.memory_allocated() == base + host.nbytes   # deepgrad still holds it
    np.testing.assert_array_equal(t.numpy(), host)
    del t
    gc.collect()
    assert torch.cuda.memory_allocated() == base                  # the producer's deleter ran


def test_exported_memory_lives_until_torch_drops_it(rng):
    host = _rand(rng, (128, 512), np.float64)
    _C.cuda_synchronize()
    base = _C.cuda_memory_allocated()
    t = dg.tensor(host, device="cuda")
    tt = torch.from_dlpack(t)
    del t
    gc.collect()
    assert _C.cuda_memory_allocated() > base
    np.testing.assert_array_equal(tt.cpu().numpy(), host)
    del tt
    gc.collect()
    assert _C.cuda_memory_allocated() == base


def test_unconsumed_capsule_frees_its_tensor(rng):
    _C.cuda_synchronize()
    base = _C.cuda_memory_allocated()
    t = dg.tensor(_rand(rng, (64, 64), np.float32), device="cuda")
    cap = t.__dlpack__(max_version=(1, 0))
    del t
    gc.collect()
    assert _C.cuda_memory_allocated() > base
    del cap
    gc.collect()
    assert _C.cuda_memory_allocated() == base


def _capsule_name(cap):
    import ctypes
    f = ctypes.pythonapi.PyCapsule_GetName
    f.restype, f.argtypes = ctypes.c_char_p, [ctypes.py_object]
    return f(cap).decode()


def test_capsule_versions_follow_max_version(rng):
    host = _rand(rng, (3, 5), np.float32)
    t = dg.tensor(host, device="cuda")
    assert t.__dlpack_device__() == (2, 0)
    for kw, name in (({}, "dltensor"), ({"max_version": (0, 8)}, "dltensor"),
                     ({"max_version": (1, 0)}, "dltensor_versioned"),
                     ({"max_version": (1, 5)}, "dltensor_versioned")):
        cap = t.__dlpack__(**kw)
        assert _capsule_name(cap) == name
        np.testing.assert_array_equal(torch.from_dlpack(cap).cpu().numpy(), host)
        assert _capsule_name(cap) == "used_" + name


def test_export_arguments(rng):
    host = _rand(rng, (4, 4), np.float32)
    t = dg.tensor(host, device="cuda")
    with pytest.raises(ValueError, match="stream=0 is ambiguous"):
        t.__dlpack__(stream=0)
    with pytest.raises(BufferError, match="cannot be exported"):
        t.__dlpack__(dl_device=(1, 0))
    c = torch.from_dlpack(t.__dlpack__(copy=True, max_version=(1, 0)))
    assert c.data_ptr() != t.data.data_ptr
    np.testing.assert_array_equal(c.cpu().numpy(), host)
    for s in (None, -1, 1, 2):
        np.testing.assert_array_equal(torch.from_dlpack(t.__dlpack__(stream=s)).cpu().numpy(), host)


def test_consumer_stream_sees_finished_data(rng):
    """deepgrad computes on its stream; torch reads on a side stream without a host sync: the
    event that __dlpack__(stream=...) records orders the read after the write."""
    a = _rand(rng, (2048, 2048), np.float32)
    x = dg.tensor(a, device="cuda")
    side = torch.cuda.Stream()
    for _ in range(3):
        y = (x * 2.0 + 1.0).exp().log()        # a few launches on deepgrad's stream
        with torch.cuda.stream(side):
            ty = torch.from_dlpack(y)           # torch passes side's handle as stream
            s = ty.double().sum()
        side.synchronize()
        ref = (a.astype(np.float64) * 2 + 1).sum()
        assert abs(s.item() - ref) <= 1e-4 * abs(ref) + 1e-2


def test_refusals_name_the_fix(rng):
    base = torch.from_numpy(_rand(rng, (4, 6), np.float32)).cuda()
    with pytest.raises(ValueError, match=r"not C-contiguous.*x\.contiguous\(\)"):
        dg.from_dlpack(base.T)
    with pytest.raises(ValueError, match="not C-contiguous"):
        dg.from_dlpack(base[:, ::2])
    for bad in (base.half(), base.to(torch.int32), base.to(torch.bfloat16), base > 0):
        with pytest.raises(TypeError, match=r"cannot be shared.*x\.float\(\)"):
            dg.from_dlpack(bad)
    # a refused producer's memory is still its own and intact
    np.testing.assert_array_equal(dg.from_dlpack(base.contiguous()).numpy(), base.cpu().numpy())
    t = dg.from_dlpack(base[1:3])                  # a contiguous slice with an offset is shared
    assert t.data.data_ptr == base[1:3].data_ptr()
    np.testing.assert_array_equal(t.numpy(), base[1:3].cpu().numpy())


def test_cuda_tensors_health_over_dlpack_views_matches_cpu(rng):
    from deepgrad.backend import cpu as cpu_be, cuda as cuda_be
    for dtype in (np.float32, np.float64):
        arrays = [_rand(rng, s, dtype) for s in ((33, 7), (1000,), (0,), (1,), (4097,))]
        arrays[1][[5, 700]] = [np.nan, np.inf]
        arrays[4][4000] = -np.inf
        views = [dg.from_dlpack(torch.from_numpy(a).cuda()).data for a in arrays]
        np.testing.assert_allclose(cuda_be.tensors_health(views), cpu_be.tensors_health(arrays),
                                   rtol=1e-12, atol=0)


def test_monitor_cuda_health_mixed_dtypes_and_strides(rng):
    from deepgrad.backend import cpu as cpu_be
    from deepgrad.monitor import capture_torch
    a = _rand(rng, (6, 8), np.float32)
    b = _rand(rng, (5,), np.float64)
    ts = [torch.from_numpy(a).cuda().T, torch.from_numpy(b).cuda(),
          torch.from_numpy(a).cuda().half()]
    got = capture_torch._cuda_health(ts)
    ref = cpu_be.tensors_health([a.T.astype(np.float64).copy(), b,
                                 a.astype(np.float16).astype(np.float64)])
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0)


def test_monitor_cuda_health_waits_for_torch_side_stream(rng):
    """Tensors written on a torch side stream and read by deepgrad's kernel at once: the one
    event _cuda_health records orders deepgrad's stream after torch's (no host sync)."""
    from deepgrad.backend import cpu as cpu_be
    from deepgrad.monitor import capture_torch
    a = [_rand(rng, (2048, 2048), np.float32) for _ in range(3)]
    side = torch.cuda.Stream()
    for _ in range(3):
        with torch.cuda.stream(side):
            ts = [torch.from_numpy(x).cuda(non_blocking=False) for x in a]
            ts = [(t * 2.0 + 1.0).exp().log() for t in ts]   # pending work on the side stream
            got = capture_torch._cuda_health(ts)
        ref = cpu_be.tensors_health([(x.astype(np.float64) * 2 + 1) for x in a])
        np.testing.assert_allclose(got[:, :4], ref[:, :4], rtol=1e-5)


def test_torch_monitor_cuda_norms_use_deepgrad_kernel(rng):
    from deepgrad.monitor import GradientMonitor
    from deepgrad.monitor import capture_torch
    torch.manual_seed(int(rng.integers(1 << 31)))
    depth = 12
    layers = []
    for _ in range(depth):
        layers += [torch.nn.Linear(32, 32), torch.nn.Tanh()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(32, 4)).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    mon = GradientMonitor(model)
    x = torch.from_numpy(_rand(rng, (16, 32), np.float32)).cuda()
    y = torch.from_numpy(_rand(rng, (16, 4), np.float32)).cuda()
    syncs = []
    prev = None
    for _ in range(3):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        before = [p.detach().double().cpu() for p in model.parameters()]
        grads = [p.grad.double().cpu() for p in model.parameters()]
        opt.step()
        after = [p.detach().double().cpu() for p in model.parameters()]
        s0 = _C.cuda_host_syncs()
        mon.step(loss)
        syncs.append(_C.cuda_host_syncs() - s0)
        prev = (grads, before, after)
    grads, before, after = prev
    assert capture_torch._cuda_health([p for p in model.parameters()]) is not None
    d = mon.to_dict()
    g_ref = [float(g.norm()) for g in grads]
    np.testing.assert_allclose(d["param_grad_norm"][-1], g_ref, rtol=1e-5)
    np.testing.assert_allclose(d["param_norm"][-1], [float(w.norm()) for w in after], rtol=1e-5)
    np.testing.assert_allclose(d["update_norm"][-1],
                               [float((a - b).norm()) for a, b in zip(after, before)], rtol=1e-4)
    lg = [float(np.hypot(g_ref[2 * i], g_ref[2 * i + 1])) for i in range(depth + 1)]
    np.testing.assert_allclose(d["layer_grad_norm"][-1], lg, rtol=1e-5)
    linf = [max(float(grads[2 * i].abs().max()), float(grads[2 * i + 1].abs().max()))
            for i in range(depth + 1)]
    np.testing.assert_allclose(d["layer_grad_linf"][-1], linf, rtol=1e-6)
    assert d["layer_nonfinite"][-1] == [0] * (depth + 1)
    # the same few host synchronisations per step whatever the depth (none per layer)
    assert max(syncs) <= 2, syncs
    mon.close()


def test_tensors_health_at_reads_torch_tensors_and_refuses_host_addresses(rng):
    """The torch monitor's address route: rows equal the CPU kernel's over the same values
    (offset views and empty tensors included); a host address or a freed-looking one is refused
    by name before any launch."""
    from deepgrad.backend import cpu as cpu_be
    host = [_rand(rng, s, np.float32) for s in [(7,), (33, 5), (0,), (1000,)]]
    ts = [torch.from_numpy(h).cuda() for h in host]
    big = torch.from_numpy(_rand(rng, (50,), np.float32)).cuda()
    ts.append(big[10:30])                                   # a view at an offset
    host.append(big[10:30].cpu().numpy())
    got = _C.cuda_tensors_health_at([t.data_ptr() for t in ts], [t.numel() for t in ts],
                                    "float32")
    ref = cpu_be.tensors_health([h.reshape(-1) for h in host])
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=0)
    cpu_arr = np.ones(8, np.float32)
    with pytest.raises(ValueError, match=r"ptrs\[1\] is not an address in the device memory"):
        _C.cuda_tensors_health_at([ts[0].data_ptr(), cpu_arr.ctypes.data], [7, 8], "float32")
    with pytest.raises(ValueError, match=r"ptrs\[0\] is not an address"):
        _C.cuda_tensors_health_at([12345], [1], "float64")


def test_act_stats_at_matches_the_cpu_kernel(rng):
    """The torch monitor's activation statistics on CUDA: K layers of torch CUDA tensors given as
    addresses, in one call, equal the CPU kernel's (sums to float64 rounding, counts exactly)."""
    from deepgrad.backend import cpu as cpu_be
    cases = []
    for rows, cols, sat, center, bound, dead, dt in [(33, 300, 1, 0.0, 0.5, True, np.float32),
                                                     (64, 10, 2, 0.1, 1.0, False, np.float64),
                                                     (1, 1, 0, 0.0, 0.0, True, np.float32)]:
        z = _rand(rng, (rows, cols), dt)
        y = np.maximum(_rand(rng, (rows, cols), dt), 0)
        y[:, ::3] = 0   # dead columns
        cases.append((z, y, sat, center, bound, dead))
    tz = [(torch.from_numpy(z).cuda(), torch.from_numpy(y).cuda()) for z, y, *_ in cases]
    items = [(a.data_ptr(), b.data_ptr(), a.shape[0], a.shape[1], str(a.dtype)[6:], *c[2:])
             for (a, b), c in zip(tz, cases)]
    got = _C.cuda_act_stats_at(items)
    for k, c in enumerate(cases):
        s, q, n_sat, alive = cpu_be.act_stats(*c)
        np.testing.assert_allclose(got[k, :2], [s, q], rtol=1e-12, atol=1e-9)
        assert got[k, 2] == n_sat and got[k, 3] == alive, k
    with pytest.raises(ValueError, match=r"items\[0\]: z_ptr or y_ptr is not an address"):
        _C.cuda_act_stats_at([(np.ones(4, np.float32).ctypes.data, items[0][1], 2, 2,
                               "float32", 0, 0.0, 0.0, False)])
