"""backend/cuda.py against backend/cpu.py, function by function, on fresh random inputs; device
mixing errors; Tensor.to / Module.to; a short MLP training run on CUDA matching the CPU run."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import _C
from deepgrad.backend import cpu

pytestmark = pytest.mark.cuda

if _C.build_info()["cuda"] and _C.cuda_device_count() > 0:
    from deepgrad.backend import cuda as gpu
else:
    gpu = None


def rand(rng, shape, dtype=np.float32):
    return np.asarray(rng.standard_normal(shape) + 0.1).astype(dtype)


def up(x):
    """numpy -> device; other values (scalars, None, tuples of them) unchanged."""
    if isinstance(x, np.ndarray):
        return gpu.from_numpy(x)
    if isinstance(x, tuple):
        return tuple(up(i) for i in x)
    if isinstance(x, list):
        return [up(i) for i in x]
    return x


def down(x):
    if isinstance(x, _C.CudaArray):
        return x.numpy()
    if isinstance(x, (tuple, list)):
        return type(x)(down(i) for i in x)
    return x


def same(name, *args, exact=True, rtol=1e-6, atol=1e-6, **kw):
    """Run backend function ``name`` on both devices and compare the results."""
    ref = getattr(cpu, name)(*args, **kw)
    out = down(getattr(gpu, name)(*up(args), **kw))
    _compare(out, ref, exact, rtol, atol)
    return out


def _compare(out, ref, exact, rtol, atol):
    if isinstance(ref, (tuple, list)):
        assert len(out) == len(ref)
        for o, r in zip(out, ref):
            _compare(o, r, exact, rtol, atol)
        return
    ref = np.asarray(ref)
    out = np.asarray(out)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    if exact:
        np.testing.assert_array_equal(out, ref)
    else:
        np.testing.assert_allclose(out, ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "maximum", "minimum", "eq", "ne",
                                  "lt", "le", "gt", "ge"])
def test_binary_ops(rng, name):
    a, b = rand(rng, (37, 1, 5)), rand(rng, (4, 5))
    same(name, a, b)
    same(name, a, 0.75)
    same(name, 0.75, a)
    same(name, a.astype(np.float64), b.astype(np.float64))


def test_pow_unary_clip_where(rng):
    x = np.abs(rand(rng, (33, 9))) + 0.1
    same("pow", x, 2.0, exact=False, rtol=1e-6)  # powf within a few ulp
    same("pow", x, rand(rng, (9,)), exact=False, rtol=1e-6)
    for name in ["neg", "sqrt", "abs", "sign"]:
        same(name, rand(rng, (101, 3)) if name != "sqrt" else x)
    same("exp", rand(rng, (101, 3)), exact=False, rtol=5e-7, atol=0)  # expf <= 2 ulp
    same("log", x, exact=False, rtol=5e-7, atol=1e-7)
    same("clip", rand(rng, (50,)), -0.3, 0.4)
    same("clip", rand(rng, (50,)), None, 0.4)
    same("clip", rand(rng, (50,)), -0.3, None)
    c = (rng.random((6, 1)) < 0.5).astype(np.float32)
    same("where", c, rand(rng, (6, 4)), rand(rng, (4,)))
    same("where", c, rand(rng, (6, 4)), 0.0)
    same("where", c, -1.0, rand(rng, (1, 4)))


@pytest.mark.parametrize("shape,axis", [((13, 7), None), ((13, 7), 0), ((13, 7), 1),
                                        ((3, 4, 5), (0, 2)), ((3, 4, 5), -1),
                                        ((100_003,), None)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(rng, shape, axis, keepdims):
    a = rand(rng, shape)
    same("sum", a, axis, keepdims, exact=False, rtol=2e-6, atol=2e-6 * np.sqrt(a.size))
    same("mean", a, axis, keepdims, exact=False, rtol=2e-6, atol=2e-6)
    same("max", a, axis, keepdims)
    if axis is None or isinstance(axis, int):
        same("argmax", a, axis)


def test_broadcast_to_and_sum_to_shape(rng):
    same("broadcast_to", rand(rng, (3, 1)), (2, 3, 5))
    same("broadcast_to", rand(rng, ()), (4,))
    g = rand(rng, (6, 3, 5))
    for shape in [(3, 5), (1, 5), (3, 1), (6, 1, 1), (), (6, 3, 5)]:
        same("sum_to_shape", g, shape, exact=False, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError):
        gpu.broadcast_to(up(rand(rng, (3, 2))), (3, 4))


def test_shape_ops(rng):
    a = rand(rng, (4, 6, 5))
    same("reshape", a, (24, 5))
    same("reshape", a, (-1, 3, 10))
    same("transpose", a)
    same("transpose", a, (1, 2, 0))
    same("concat", [a, rand(rng, (4, 2, 5)), rand(rng, (4, 1, 5))], 1)
    same("concat", [a, a], -1)
    same("stack", [a, a * 2, a * 3], 2)
    same("split", a, [1, 3, 2], 1)
    with pytest.raises(ValueError):
        gpu.reshape(up(a), (7, -1))
    with pytest.raises(ValueError):
        gpu.concat([up(a), up(rand(rng, (3, 6, 5)))], 1)


INDEXES = [
    3, -1, slice(1, 5), slice(None, None, -2), (slice(1, 4), 2), (Ellipsis, 1),
    (None, slice(2, 3), Ellipsis, None), (1, slice(None), slice(4, 0, -3)),
    np.array([0, 3, 3, -1]), (np.array([1, 2, 0]), np.array([4, 0, 4])),
    (slice(None), np.array([[0, 1], [2, 2]])), np.array([True, False, True, True, False, True, False]),
    (Ellipsis, np.array([2, 2, 0])),
]


@pytest.mark.parametrize("index", INDEXES, ids=[repr(i) for i in range(len(INDEXES))])
def test_getitem_index_add_setitem(rng, index):
    a = rand(rng, (7, 5, 6))
    dindex = tuple(gpu.from_numpy(i) if isinstance(i, np.ndarray) else i
                   for i in (index if isinstance(index, tuple) else (index,)))
    dindex = dindex if isinstance(index, tuple) else dindex[0]
    ref = cpu.getitem(a, index)
    out = gpu.getitem(gpu.from_numpy(a), dindex)
    np.testing.assert_array_equal(out.numpy(), ref)
    # index_add_: the backward of getitem (repeated indices sum)
    g = rand(rng, ref.shape)
    z = np.zeros_like(a)
    cpu.index_add_(z, index, g)
    dz = gpu.zeros(a.shape, np.float32)
    gpu.index_add_(dz, dindex, gpu.from_numpy(g))
    np.testing.assert_allclose(dz.numpy(), z, rtol=1e-6, atol=1e-6)
    # setitem_ with an array and with a scalar
    for v in (rand(rng, ref.shape), 0.5):
        s = a.copy()
        cpu.setitem_(s, index, v)
        ds = gpu.from_numpy(a)
        gpu.setitem_(ds, dindex, up(v))
        np.testing.assert_array_equal(ds.numpy(), s)


def test_getitem_errors(rng):
    a = gpu.from_numpy(rand(rng, (3, 4)))
    with pytest.raises(IndexError):
        gpu.getitem(a, 3)
    with pytest.raises(IndexError):
        gpu.getitem(a, (0, 0, 0))
    with pytest.raises(IndexError):
        gpu.getitem(a, gpu.from_numpy(np.array([0, 5])))


def test_creation_copy_random(rng):
    assert gpu.empty((2, 3), np.float32).shape == (2, 3)
    np.testing.assert_array_equal(gpu.zeros((4,), np.float64).numpy(), np.zeros(4))
    np.testing.assert_array_equal(gpu.full((2, 2), 3.5, np.float32).numpy(), np.full((2, 2), 3.5))
    a = rand(rng, (5, 3))
    d = gpu.from_numpy(a)
    c = gpu.copy(d)
    gpu.fill_(d, 0.0)
    np.testing.assert_array_equal(c.numpy(), a)
    gpu.copy_(d, gpu.from_numpy(a[0]))
    np.testing.assert_array_equal(d.numpy(), np.broadcast_to(a[0], (5, 3)))
    gpu.add_(d, c)
    np.testing.assert_array_equal(d.numpy(), a[0] + a)
    assert gpu.astype(d, np.float64).dtype == np.float64
    assert gpu.item(gpu.from_numpy(np.array([2.5], np.float32))) == 2.5
    assert gpu.has_nonfinite(gpu.from_numpy(np.array([1.0, np.inf], np.float32)))
    for name, args in [("normal", ((3, 4), 0.5, 2.0, np.float32)),
                       ("uniform", ((7,), -1.0, 1.0, np.float32)),
                       ("bernoulli", ((5, 5), 0.3, np.float32))]:
        dg.manual_seed(123)
        ref = getattr(cpu, name)(*args)
        dg.manual_seed(123)
        np.testing.assert_array_equal(getattr(gpu, name)(*args).numpy(), ref)


def test_compute_kernels_through_the_backend(rng):
    x, w, b = rand(rng, (33, 17)), rand(rng, (17, 9)) * 0.3, rand(rng, (9,))
    same("matmul", x, w, exact=False, rtol=1e-4, atol=1e-4)
    same("matmul", x.T.copy(), w, True, False, exact=False, rtol=1e-4, atol=1e-4)
    logits = rand(rng, (12, 5))
    labels = rng.integers(0, 5, 12)
    for red in ("mean", "sum", "none"):
        same("loss_forward", "cross_entropy", logits, labels, red, exact=False, rtol=1e-5, atol=1e-5)
    same("loss_backward", "cross_entropy", logits, labels, "mean", np.array(1.5, np.float32),
         exact=False, rtol=1e-5, atol=1e-6)
    same("act_forward", x, "tanh", exact=False, rtol=1e-5, atol=1e-6)
    same("softmax", logits, exact=False, rtol=1e-5, atol=1e-6)
    # batch norm and layer norm: the saved values differ per backend, results must agree
    gamma, beta = rand(rng, (17,)), rand(rng, (17,))
    for training in (True, False):
        rm, rv = rand(rng, (17,)), np.abs(rand(rng, (17,))) + 0.5
        drm, drv = gpu.from_numpy(rm), gpu.from_numpy(rv)
        y, xh, inv = cpu.batch_norm_forward(x, gamma, beta, rm, rv, training, 0.1, 1e-5)
        dy_, dxh, dinv = gpu.batch_norm_forward(*up((x, gamma, beta)), drm, drv, training, 0.1, 1e-5)
        np.testing.assert_allclose(dy_.numpy(), y, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(drm.numpy(), rm, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(drv.numpy(), rv, rtol=1e-5, atol=1e-6)
        g = rand(rng, x.shape)
        ref = cpu.batch_norm_backward(g, xh, inv, gamma, training)
        out = down(gpu.batch_norm_backward(up(g), dxh, dinv, up(gamma), training))
        _compare(out, ref, False, 1e-4, 1e-4)
    x3 = rand(rng, (4, 6, 17))
    y, xh, inv = cpu.layer_norm_forward(x3, gamma, beta, 1e-5)
    dy_, dxh, dinv = gpu.layer_norm_forward(*up((x3, gamma, beta)), 1e-5)
    np.testing.assert_allclose(dy_.numpy(), y, rtol=1e-4, atol=1e-5)
    g = rand(rng, x3.shape)
    _compare(down(gpu.layer_norm_backward(up(g), dxh, dinv, up(gamma))),
             cpu.layer_norm_backward(g, xh, inv, gamma), False, 1e-4, 1e-4)
    buf = rand(rng, (1000,))
    offs = np.array([0, 10, 500, 1000])
    n_ref, t_ref, k_ref = cpu.segment_norms(buf, offs)
    n_out, t_out, k_out = gpu.segment_norms(gpu.from_numpy(buf), offs)
    np.testing.assert_allclose(n_out, n_ref, rtol=1e-6)
    assert abs(t_out - t_ref) <= 1e-6 * t_ref and k_out == k_ref == 0


def test_device_mixing_raises_clear_errors(rng):
    a = rand(rng, (3, 4))
    with pytest.raises(ValueError, match="cpu.*cuda|cuda.*cpu"):
        gpu.add(gpu.from_numpy(a), a)
    with pytest.raises(ValueError, match="cpu.*cuda|cuda.*cpu"):
        gpu.matmul(a, gpu.from_numpy(a.T.copy()))
    t_cpu = dg.tensor(a)
    t_gpu = dg.tensor(a, device="cuda")
    assert t_gpu.device == "cuda"
    for op in (lambda: t_cpu + t_gpu, lambda: t_gpu * t_cpu, lambda: dg.matmul(t_gpu, t_cpu.T)):
        with pytest.raises(ValueError, match="cpu.*cuda|cuda.*cpu"):
            op()


def test_tensor_to_and_autograd_on_cuda(rng):
    a = rand(rng, (5, 4))
    t = dg.tensor(a, requires_grad=True)
    g = t.to("cuda")
    assert g.device == "cuda"
    y = ((g * g).sum(axis=1) + g[:, 1:3].mean()).sum()
    y.backward()
    ref = 2 * a
    ref[:, 1:3] += 5 * (1.0 / 10)  # the mean is added to each of the 5 row sums
    np.testing.assert_allclose(t.grad.numpy(), ref, rtol=1e-6, atol=1e-6)
    assert t.grad.device == "cpu"
    np.testing.assert_array_equal(g.to("cpu").numpy(), a)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_mlp_training_matches_cpu(rng, opt):
    x = rand(rng, (64, 10))
    labels = rng.integers(0, 3, 64)
    losses = {}
    for device in ("cpu", "cuda"):
        dg.manual_seed(7)
        model = dg.nn.Sequential(dg.nn.Dense(10, 32, activation="tanh"),
                                 dg.nn.Dense(32, 32, activation="relu"),
                                 dg.nn.Dense(32, 3))
        model.to(device)
        params = list(model.parameters())
        optim = (dg.optim.SGD(params, lr=0.1, momentum=0.9) if opt == "sgd"
                 else dg.optim.Adam(params, lr=1e-2))
        xt = dg.tensor(x, device=device)
        run = []
        for step in range(8):
            if step == 3 and device == "cuda":  # warmed up: the cache serves every allocation
                mallocs = dg.cuda.malloc_count()
            optim.zero_grad()
            loss = dg.losses.cross_entropy(model(xt), labels)
            loss.backward()
            optim.step()
            run.append(loss.item())
        losses[device] = run
        assert all(p.device == device for p in model.parameters())
    assert dg.cuda.malloc_count() == mallocs, "training steps after warm-up called cudaMalloc"
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-4, atol=1e-5)
    assert losses["cuda"][-1] < losses["cuda"][0]
