"""Fused optimizer updates vs straightforward numpy implementations and torch.optim."""
import numpy as np
import pytest

from deepgrad import _C

STEPS = 5


def np_sgd(p, g, buf, lr, momentum, dampening, nesterov, wd, first):
    d = g + wd * p if wd else g.copy()
    if momentum:
        buf[:] = d if first else momentum * buf + (1 - dampening) * d
        d = d + momentum * buf if nesterov else buf.copy()
    p -= lr * d


def np_adam(p, g, m, v, t, lr, b1, b2, eps, wd, decoupled):
    if decoupled:
        p *= 1 - lr * wd
    elif wd:
        g = g + wd * p
    m[:] = m + (1 - b1) * (g - m)
    v[:] = b2 * v + (1 - b2) * g * g
    p -= lr / (1 - b1 ** t) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps)


def np_rmsprop(p, g, sq, lr, alpha, eps, wd, momentum, buf, centered, ga):
    if wd:
        g = g + wd * p
    sq[:] = alpha * sq + (1 - alpha) * g * g
    if centered:
        ga[:] = ga + (1 - alpha) * (g - ga)
        avg = np.sqrt(sq - ga * ga) + eps
    else:
        avg = np.sqrt(sq) + eps
    if momentum > 0:
        buf[:] = momentum * buf + g / avg
        p -= lr * buf
    else:
        p -= lr * g / avg


def grads(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=n).astype(dtype) for _ in range(STEPS)]


SGD_CFGS = [
    dict(momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0),
    dict(momentum=0.9, dampening=0.0, nesterov=False, weight_decay=0.0),
    dict(momentum=0.9, dampening=0.1, nesterov=False, weight_decay=1e-2),
    dict(momentum=0.9, dampening=0.0, nesterov=True, weight_decay=1e-2),
    dict(momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.1),
]
SIZES = [1, 7, 33, 257, 70_001]


@pytest.mark.parametrize("cfg", SGD_CFGS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-13), (np.float32, 1e-5)])
def test_sgd_matches_numpy(cfg, n, dtype, rtol):
    p0 = np.random.default_rng(9).normal(size=n)
    p, buf = p0.astype(dtype), np.zeros(n, dtype)
    rp, rbuf = p0.copy(), np.zeros(n)
    for t, g in enumerate(grads(n, dtype)):
        _C.sgd_step(p, g, buf if cfg["momentum"] else None, 0.05, cfg["momentum"], cfg["dampening"],
                    cfg["nesterov"], cfg["weight_decay"], t == 0)
        np_sgd(rp, g.astype(np.float64), rbuf, 0.05, cfg["momentum"], cfg["dampening"], cfg["nesterov"],
               cfg["weight_decay"], t == 0)
    np.testing.assert_allclose(p, rp, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(buf, rbuf, rtol=rtol, atol=rtol)


ADAM_CFGS = [(0.0, False), (0.05, False), (0.05, True), (0.0, True)]


@pytest.mark.parametrize("wd,decoupled", ADAM_CFGS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_adam_matches_numpy(wd, decoupled, n, dtype, rtol):
    p0 = np.random.default_rng(8).normal(size=n)
    p, m, v = p0.astype(dtype), np.zeros(n, dtype), np.zeros(n, dtype)
    rp, rm, rv = p0.copy(), np.zeros(n), np.zeros(n)
    for t, g in enumerate(grads(n, dtype, 1), start=1):
        _C.adam_step(p, g, m, v, t, 1e-2, 0.9, 0.999, 1e-8, wd, decoupled)
        np_adam(rp, g.astype(np.float64), rm, rv, t, 1e-2, 0.9, 0.999, 1e-8, wd, decoupled)
    np.testing.assert_allclose(p, rp, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(m, rm, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(v, rv, rtol=rtol, atol=rtol * 1e-3)


RMS_CFGS = [(0.0, 0.0, False), (0.01, 0.0, False), (0.0, 0.9, False), (0.0, 0.0, True), (0.01, 0.9, True)]


@pytest.mark.parametrize("wd,momentum,centered", RMS_CFGS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 5e-5)])
def test_rmsprop_matches_numpy(wd, momentum, centered, n, dtype, rtol):
    p0 = np.random.default_rng(7).normal(size=n)
    p, sq, buf, ga = p0.astype(dtype), np.zeros(n, dtype), np.zeros(n, dtype), np.zeros(n, dtype)
    rp, rsq, rbuf, rga = p0.copy(), np.zeros(n), np.zeros(n), np.zeros(n)
    for g in grads(n, dtype, 2):
        _C.rmsprop_step(p, g, sq, 1e-2, 0.99, 1e-8, wd, momentum, buf if momentum else None, centered,
                        ga if centered else None)
        np_rmsprop(rp, g.astype(np.float64), rsq, 1e-2, 0.99, 1e-8, wd, momentum, rbuf, centered, rga)
    np.testing.assert_allclose(p, rp, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(sq, rsq, rtol=rtol, atol=rtol * 1e-3)
    if momentum:
        np.testing.assert_allclose(buf, rbuf, rtol=rtol, atol=rtol)
    if centered:
        np.testing.assert_allclose(ga, rga, rtol=rtol, atol=rtol)


def _torch_run(torch, opt_cls, kwargs, p0, gs):
    tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = opt_cls([tp], foreach=False, **kwargs)
    for g in gs:
        tp.grad = torch.from_numpy(g.copy())
        opt.step()
    return tp.detach().numpy()


@pytest.mark.parametrize("cfg", SGD_CFGS)
def test_sgd_matches_torch(cfg):
    torch = pytest.importorskip("torch")
    n = 33
    p0 = np.random.default_rng(0).normal(size=n)
    gs = grads(n, np.float64, 3)
    want = _torch_run(torch, torch.optim.SGD, dict(lr=0.05, **cfg), p0, gs)
    p, buf = p0.copy(), np.zeros(n)
    for t, g in enumerate(gs):
        _C.sgd_step(p, g, buf, 0.05, cfg["momentum"], cfg["dampening"], cfg["nesterov"], cfg["weight_decay"], t == 0)
    np.testing.assert_allclose(p, want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("wd,decoupled", ADAM_CFGS)
def test_adam_matches_torch(wd, decoupled):
    torch = pytest.importorskip("torch")
    n = 33
    p0 = np.random.default_rng(1).normal(size=n)
    gs = grads(n, np.float64, 4)
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    want = _torch_run(torch, cls, dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd), p0, gs)
    p, m, v = p0.copy(), np.zeros(n), np.zeros(n)
    for t, g in enumerate(gs, start=1):
        _C.adam_step(p, g, m, v, t, 1e-2, 0.9, 0.999, 1e-8, wd, decoupled)
    np.testing.assert_allclose(p, want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("wd,momentum,centered", RMS_CFGS)
def test_rmsprop_matches_torch(wd, momentum, centered):
    torch = pytest.importorskip("torch")
    n = 33
    p0 = np.random.default_rng(2).normal(size=n)
    gs = grads(n, np.float64, 5)
    want = _torch_run(torch, torch.optim.RMSprop,
                      dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=wd, momentum=momentum, centered=centered),
                      p0, gs)
    p, sq, buf, ga = p0.copy(), np.zeros(n), np.zeros(n), np.zeros(n)
    for g in gs:
        _C.rmsprop_step(p, g, sq, 1e-2, 0.99, 1e-8, wd, momentum, buf, centered, ga)
    np.testing.assert_allclose(p, want, rtol=1e-13, atol=1e-15)


def test_threaded_update_matches_small_calls():
    n = 300_000
    p0 = np.random.default_rng(3).normal(size=n).astype(np.float32)
    g = np.random.default_rng(4).normal(size=n).astype(np.float32)
    p, m, v = p0.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32)
    _C.adam_step(p, g, m, v, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, False)
    q, mq, vq = p0[-1000:].copy(), np.zeros(1000, np.float32), np.zeros(1000, np.float32)
    _C.adam_step(q, g[-1000:], mq, vq, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, False)
    np.testing.assert_array_equal(p[-1000:], q)


def test_nonfinite_gradient_does_not_crash():
    p, g = np.ones(4), np.array([np.nan, np.inf, -np.inf, 1.0])
    _C.adam_step(p, g, np.zeros(4), np.zeros(4), 1)
    assert np.isnan(p[0]) and np.isfinite(p[3])
    _C.sgd_step(p, g, None, 0.1)
    _C.rmsprop_step(p, g, np.zeros(4))
    assert np.isnan(p[0])
