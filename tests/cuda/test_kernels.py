"""CUDA activations, softmax, losses, segment norms, in-place ops, optimizer steps, batch norm and
layer norm against the CPU entry points (deepgrad._C) or float64 numpy, on fresh random inputs
of odd and large shapes. Skipped only without a GPU."""
import numpy as np
import pytest

from deepgrad import _C

pytestmark = pytest.mark.cuda
if not (_C.build_info()["cuda"] and _C.cuda_device_count() > 0):
    pytest.skip("no CUDA GPU present", allow_module_level=True)

ACTS = ["identity", "step", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu",
        "softplus", "silu", "softsign"]
SHAPES = [(1,), (7,), (33, 5), (257, 129), (1 << 20,)]


def dev(a, dtype=np.float32):
    return _C.CudaArray(np.ascontiguousarray(a, dtype=dtype))


def rng():
    return np.random.default_rng()


# ---- activations ---------------------------------------------------------------------------------

@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_activations_match_cpu(act, shape):
    r = rng()
    x = (3 * r.standard_normal(shape)).astype(np.float32)
    y = _C.cuda_act_forward(dev(x), act, 0.3).numpy()
    y_cpu = _C.act_forward(x, act, 0.3)
    np.testing.assert_allclose(y, y_cpu, rtol=1e-5, atol=1e-6)  # same formula, libm vs CUDA math
    dy = r.standard_normal(shape).astype(np.float32)
    dz = _C.cuda_act_backward(dev(dy), dev(x), dev(y_cpu), act, 0.3).numpy()
    np.testing.assert_allclose(dz, _C.act_backward(dy, x, y_cpu, act, 0.3), rtol=1e-5, atol=1e-6)


# ---- softmax -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (64, 10), (33, 1000), (3, 50000)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_matches_cpu(shape, log):
    r = rng()
    x = (5 * r.standard_normal(shape)).astype(np.float32)
    fwd, bwd = ("log_softmax", "log_softmax_backward") if log else ("softmax", "softmax_backward")
    y = getattr(_C, "cuda_" + fwd)(dev(x)).numpy()
    y_cpu = getattr(_C, fwd)(x)
    np.testing.assert_allclose(y, y_cpu, rtol=1e-5, atol=1e-6)
    dy = r.standard_normal(shape).astype(np.float32)
    dx = getattr(_C, "cuda_" + bwd)(dev(dy), dev(y_cpu)).numpy()
    np.testing.assert_allclose(dx, getattr(_C, bwd)(dy, y_cpu), rtol=1e-4, atol=1e-5)


def test_softmax_extreme_rows():
    x = np.array([[1e4, -1e4, 0.0], [-np.inf, 0.0, 1.0]], np.float32)
    y = _C.cuda_softmax(dev(x)).numpy()
    np.testing.assert_allclose(y, _C.softmax(x), atol=1e-7)


# ---- losses --------------------------------------------------------------------------------------

def loss_inputs(kind, shape):
    r = rng()
    if kind == "cross_entropy":
        n, c = shape
        return (3 * r.standard_normal((n, c))).astype(np.float32), r.integers(0, c, n)
    if kind == "bce":
        return r.uniform(0.01, 0.99, shape).astype(np.float32), r.uniform(0, 1, shape).astype(np.float32)
    return (2 * r.standard_normal(shape)).astype(np.float32), r.uniform(0, 1, shape).astype(np.float32)


def target_dev(kind, t):
    return dev(t, np.int64) if kind == "cross_entropy" else dev(t)


@pytest.mark.parametrize("kind", ["mse", "bce", "bce_logits", "cross_entropy"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(1, 1), (37, 3), (512, 129)])
def test_losses_match_cpu(kind, reduction, shape):
    pred, target = loss_inputs(kind, shape)
    got = _C.cuda_loss_forward(kind, dev(pred), target_dev(kind, target), reduction)
    ref = _C.loss_forward(kind, pred, target, reduction)
    if reduction == "none":
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-6)
        grad = rng().standard_normal(np.shape(ref)).astype(np.float32)
        g_dev = dev(grad)
    else:
        assert isinstance(got, float)
        assert got == pytest.approx(ref, rel=1e-5, abs=1e-6)  # both accumulate in double
        grad, g_dev = 0.7, 0.7
    d = _C.cuda_loss_backward(kind, dev(pred), target_dev(kind, target), reduction, g_dev).numpy()
    d_ref = _C.loss_backward(kind, pred, target, reduction, grad)
    np.testing.assert_allclose(d, d_ref, rtol=1e-5, atol=1e-7)
    if reduction != "none":
        # the no-wait path of a training step: the loss stays a 0-d device array and its
        # gradient is read on the device
        got0 = _C.cuda_loss_forward(kind, dev(pred), target_dev(kind, target), reduction, False)
        assert isinstance(got0, _C.CudaArray) and got0.shape == () and got0.dtype == np.float32
        assert float(got0.numpy()) == pytest.approx(ref, rel=1e-5, abs=1e-6)
        d0 = _C.cuda_loss_backward(kind, dev(pred), target_dev(kind, target), reduction,
                                   dev([grad])).numpy()
        np.testing.assert_allclose(d0, d_ref, rtol=1e-5, atol=1e-7)


def test_loss_sum_is_deterministic():
    pred, target = loss_inputs("mse", (1 << 18,))
    p, t = dev(pred), dev(target)
    vals = {_C.cuda_loss_forward("mse", p, t, "sum") for _ in range(3)}
    assert len(vals) == 1


def test_loss_errors():
    pred = dev(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"target\[2\] = 3 is not a class index"):
        _C.cuda_loss_forward("cross_entropy", pred, dev([0, 1, 3, 3], np.int64), "mean")
    with pytest.raises(TypeError, match="int64"):
        _C.cuda_loss_forward("cross_entropy", pred, dev([0, 1, 2, 0]), "mean")
    with pytest.raises(ValueError, match="target must be"):
        _C.cuda_loss_forward("cross_entropy", pred, dev([0, 1], np.int64), "mean")
    with pytest.raises(ValueError, match="must match"):
        _C.cuda_loss_forward("mse", pred, dev(np.zeros((3, 4))), "mean")
    with pytest.raises(ValueError, match="empty"):
        _C.cuda_loss_forward("mse", dev(np.zeros((0, 3))), dev(np.zeros((0, 3))), "mean")
    with pytest.raises(ValueError, match="unknown loss"):
        _C.cuda_loss_forward("hinge", pred, pred, "mean")
    with pytest.raises(ValueError, match="unknown reduction"):
        _C.cuda_loss_forward("mse", pred, pred, "avg")
    with pytest.raises(ValueError, match="one-element"):
        _C.cuda_loss_backward("mse", pred, pred, "mean", dev([1.0, 2.0]))
    # sync=False leaves the labels to the caller: a bad one gives NaN, never a wild read
    bad = _C.cuda_loss_forward("cross_entropy", dev(np.ones((4, 3))), dev([0, 1, 3, 3], np.int64),
                               "mean", False)
    assert np.isnan(bad.numpy())


# ---- segment norms and in-place ops --------------------------------------------------------------

def random_offsets(n, segments, r):
    cuts = np.sort(r.integers(0, n + 1, segments - 1))
    return np.concatenate([[0], cuts, [n]]).astype(np.int64)


@pytest.mark.parametrize("n,segments", [(1, 1), (10, 4), (4099, 7), (300_001, 50), (5_000_003, 3)])
def test_segment_norms_match_cpu_and_are_deterministic(n, segments):
    r = rng()
    buf = r.standard_normal(n).astype(np.float32)
    offs = random_offsets(n, segments, r)
    d = dev(buf)
    norms, total, nonfinite = _C.cuda_segment_norms(d, offs)
    n_cpu, t_cpu, nf_cpu = _C.segment_norms(buf, offs)
    np.testing.assert_allclose(norms, n_cpu, rtol=1e-12, atol=0)  # both sum squares in double
    assert total == pytest.approx(t_cpu, rel=1e-12)
    assert nonfinite == nf_cpu == 0
    ref = [np.linalg.norm(buf[a:b].astype(np.float64)) for a, b in zip(offs[:-1], offs[1:])]
    np.testing.assert_allclose(norms, ref, rtol=1e-12)
    again = _C.cuda_segment_norms(d, offs)
    assert np.array_equal(again[0], norms) and again[1] == total  # the same bits


def test_segment_norms_misaligned_view_and_empty_segments():
    r = rng()
    buf = r.standard_normal(70_001).astype(np.float32)
    full = dev(np.concatenate([[np.float32(1e30)], buf]))
    view = full.view(1, (buf.size,))
    offs = np.array([0, 0, 5, 5, 40_000, 70_001, 70_001], np.int64)
    norms, total, nonfinite = _C.cuda_segment_norms(view, offs)
    np.testing.assert_allclose(norms, _C.segment_norms(buf, offs)[0], rtol=1e-12)
    assert norms[0] == 0 and norms[2] == 0 and norms[5] == 0
    assert total == pytest.approx(np.linalg.norm(buf.astype(np.float64)), rel=1e-12)


def test_segment_norms_report_nonfinite():
    buf = rng().standard_normal(100_000).astype(np.float32)
    buf[10] = np.nan
    buf[60_000] = np.inf
    buf[60_001] = -np.inf
    offs = np.array([0, 50_000, 100_000], np.int64)
    norms, total, nonfinite = _C.cuda_segment_norms(dev(buf), offs)
    assert nonfinite == 3
    assert np.isnan(norms[0]) and np.isinf(norms[1]) and not np.isfinite(total)


def test_segment_norms_errors():
    d = dev(np.ones(10))
    with pytest.raises(ValueError, match="last offset"):
        _C.cuda_segment_norms(d, np.array([0, 5, 9]))
    with pytest.raises(ValueError, match="non-decreasing"):
        _C.cuda_segment_norms(d, np.array([0, 6, 5, 10]))
    with pytest.raises(TypeError, match="numpy"):
        _C.cuda_segment_norms(d, dev([0, 10], np.int64))


def test_inplace_ops_match_cpu():
    buf = (3 * rng().standard_normal(100_003)).astype(np.float32)
    for op, arg in [("scale_", 0.37), ("clip_value_", 1.5), ("fill_", -2.25)]:
        d, c = dev(buf), buf.copy()
        getattr(_C, "cuda_" + op)(d, arg)
        getattr(_C, op)(c, arg)
        np.testing.assert_array_equal(d.numpy(), c)
    with pytest.raises(ValueError, match="clip"):
        _C.cuda_clip_value_(dev(buf), -1.0)


# ---- optimizers ----------------------------------------------------------------------------------

def run_steps(fn_name, n, steps, kwargs, state_names, extra=lambda i: {}):
    r = rng()
    p = r.standard_normal(n).astype(np.float32)
    states = {k: (np.abs(r.standard_normal(n)) if k in ("square_avg", "v") else
                  r.standard_normal(n)).astype(np.float32) * (0 if k in ("m", "v") else 1)
              for k in state_names}
    if "grad_avg" in states:
        # centered RMSprop's state has square_avg >= grad_avg**2 (the running variance is never
        # negative; the updates keep it so); an invalid state puts sqrt at a cancellation
        states["square_avg"] = (states["grad_avg"].astype(np.float64) ** 2 + 0.1
                                + np.abs(r.standard_normal(n))).astype(np.float32)
    cpu = {"param": p.copy(), **{k: v.copy() for k, v in states.items()}}
    gpu = {"param": dev(p), **{k: dev(v) for k, v in states.items()}}
    for i in range(steps):
        g = r.standard_normal(n).astype(np.float32)
        getattr(_C, fn_name)(grad=g, **cpu, **kwargs, **extra(i))
        getattr(_C, "cuda_" + fn_name)(grad=dev(g), **gpu, **kwargs, **extra(i))
    for k in cpu:
        np.testing.assert_allclose(gpu[k].numpy(), cpu[k], rtol=2e-5, atol=2e-6, err_msg=k)


@pytest.mark.parametrize("n", [1, 13, 100_003])
@pytest.mark.parametrize("cfg", [dict(momentum=0.0), dict(momentum=0.9, dampening=0.1),
                                 dict(momentum=0.9, nesterov=True, weight_decay=1e-2)])
def test_sgd_matches_cpu(n, cfg):
    names = ["momentum_buf"] if cfg["momentum"] else []
    kwargs = dict(lr=0.05, **cfg)
    if not names:
        kwargs["momentum_buf"] = None
    run_steps("sgd_step", n, 4, kwargs, names, extra=lambda i: {"first_step": i == 0})


@pytest.mark.parametrize("n", [1, 13, 100_003])
@pytest.mark.parametrize("decoupled,wd", [(False, 0.0), (False, 0.01), (True, 0.05)])
def test_adam_matches_cpu(n, decoupled, wd):
    run_steps("adam_step", n, 5, dict(lr=1e-2, weight_decay=wd, decoupled=decoupled), ["m", "v"],
              extra=lambda i: {"step": i + 1})


@pytest.mark.parametrize("n", [7, 100_003])
@pytest.mark.parametrize("momentum,centered", [(0.0, False), (0.9, True)])
def test_rmsprop_matches_cpu(n, momentum, centered):
    names = ["square_avg"] + (["momentum_buf"] if momentum else []) + (["grad_avg"] if centered else [])
    kwargs = dict(lr=1e-2, momentum=momentum, centered=centered, weight_decay=1e-3)
    if not momentum:
        kwargs["momentum_buf"] = None
    if not centered:
        kwargs["grad_avg"] = None
    run_steps("rmsprop_step", n, 4, kwargs, names)


def test_optimizer_errors():
    p = dev(np.ones(10))
    with pytest.raises(ValueError, match="step counts from 1"):
        _C.cuda_adam_step(p, dev(np.ones(10)), dev(np.zeros(10)), dev(np.zeros(10)), 0)
    with pytest.raises(ValueError, match="must match"):
        _C.cuda_adam_step(p, dev(np.ones(9)), dev(np.zeros(10)), dev(np.zeros(10)), 1)
    with pytest.raises(ValueError, match="momentum_buf is None"):
        _C.cuda_sgd_step(p, dev(np.ones(10)), None, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="Nesterov"):
        _C.cuda_sgd_step(p, dev(np.ones(10)), dev(np.ones(10)), lr=0.1, momentum=0.0, nesterov=True)


# ---- batch norm and layer norm (float64 numpy references) ----------------------------------------

def bn_ref(x, gamma, beta, eps):
    x = x.astype(np.float64)
    mean, var = x.mean(0), x.var(0)
    xh = (x - mean) / np.sqrt(var + eps)
    return xh * gamma + beta, mean, var, xh


def norm_backward_ref(dy, xh, gamma, invstd, axis):
    """dx of y = gamma * xhat + beta with statistics over `axis` (0: batch norm, 1: layer norm)."""
    g = dy.astype(np.float64) * gamma
    return invstd * (g - g.mean(axis, keepdims=True) - xh * (g * xh).mean(axis, keepdims=True))


@pytest.mark.parametrize("shape", [(2, 1), (37, 45), (1024, 257)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_training(shape, affine):
    r = rng()
    n, c = shape
    x = (2 * r.standard_normal(shape) + 1).astype(np.float32)
    gamma = r.standard_normal(c).astype(np.float32) if affine else np.ones(c, np.float32)
    beta = r.standard_normal(c).astype(np.float32) if affine else np.zeros(c, np.float32)
    rm0, rv0 = r.standard_normal(c).astype(np.float32), r.uniform(0.5, 2, c).astype(np.float32)
    rm, rv = dev(rm0), dev(rv0)
    eps, mom = 1e-5, 0.1
    y, mean, invstd = _C.cuda_batch_norm_forward(dev(x), dev(gamma) if affine else None,
                                                 dev(beta) if affine else None, rm, rv, True, mom, eps)
    y_ref, m_ref, v_ref, xh = bn_ref(x, gamma, beta, eps)
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mean.numpy(), m_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(invstd.numpy(), 1 / np.sqrt(v_ref + eps), rtol=1e-5)
    np.testing.assert_allclose(rm.numpy(), (1 - mom) * rm0 + mom * m_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rv.numpy(), (1 - mom) * rv0 + mom * v_ref * n / (n - 1), rtol=1e-5)
    dy = r.standard_normal(shape).astype(np.float32)
    dg0, db0 = r.standard_normal(c).astype(np.float32), r.standard_normal(c).astype(np.float32)
    dgam, dbet = dev(dg0), dev(db0)
    dx = _C.cuda_batch_norm_backward(dev(dy), dev(x), dev(gamma) if affine else None, mean, invstd,
                                     dgam, dbet, True).numpy()
    dx_ref = norm_backward_ref(dy, xh, gamma, 1 / np.sqrt(v_ref + eps), 0)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(dgam.numpy(), dg0 + (dy * xh).sum(0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dbet.numpy(), db0 + dy.sum(0), rtol=1e-4, atol=1e-3)


def test_batch_norm_eval_and_errors():
    r = rng()
    x = r.standard_normal((20, 6)).astype(np.float32)
    rm, rv = r.standard_normal(6).astype(np.float32), r.uniform(0.5, 2, 6).astype(np.float32)
    gamma, beta = r.standard_normal(6).astype(np.float32), r.standard_normal(6).astype(np.float32)
    y, mean, invstd = _C.cuda_batch_norm_forward(dev(x), dev(gamma), dev(beta), dev(rm), dev(rv), False)
    inv = 1 / np.sqrt(rv.astype(np.float64) + 1e-5)
    np.testing.assert_allclose(y.numpy(), (x - rm) * inv * gamma + beta, rtol=1e-5, atol=1e-5)
    dy = r.standard_normal((20, 6)).astype(np.float32)
    dx = _C.cuda_batch_norm_backward(dev(dy), dev(x), dev(gamma), mean, invstd, None, None, False)
    np.testing.assert_allclose(dx.numpy(), dy * gamma * inv, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="running_mean"):
        _C.cuda_batch_norm_forward(dev(x), None, None, None, None, False)
    with pytest.raises(ValueError, match="more than 1 row"):
        _C.cuda_batch_norm_forward(dev(x[:1]), None, None, None, None, True)
    with pytest.raises(ValueError, match="gamma has shape"):
        _C.cuda_batch_norm_forward(dev(x), dev(np.ones(5)), None, None, None, True)


@pytest.mark.parametrize("shape", [(1, 1), (37, 45), (513, 1000)])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(shape, affine):
    r = rng()
    n, d = shape
    x = (2 * r.standard_normal(shape) - 1).astype(np.float32)
    gamma = r.standard_normal(d).astype(np.float32) if affine else np.ones(d, np.float32)
    beta = r.standard_normal(d).astype(np.float32) if affine else np.zeros(d, np.float32)
    eps = 1e-5
    y, mean, invstd = _C.cuda_layer_norm_forward(dev(x), dev(gamma) if affine else None,
                                                 dev(beta) if affine else None, eps)
    x64 = x.astype(np.float64)
    mu, var = x64.mean(1, keepdims=True), x64.var(1, keepdims=True)
    inv = 1 / np.sqrt(var + eps)
    xh = (x64 - mu) * inv
    np.testing.assert_allclose(y.numpy(), xh * gamma + beta, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mean.numpy(), mu[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(invstd.numpy(), inv[:, 0], rtol=1e-5)
    dy = r.standard_normal(shape).astype(np.float32)
    dg0, db0 = r.standard_normal(d).astype(np.float32), r.standard_normal(d).astype(np.float32)
    dgam, dbet = dev(dg0), dev(db0)
    dx = _C.cuda_layer_norm_backward(dev(dy), dev(x), dev(gamma) if affine else None, mean, invstd,
                                     dgam, dbet).numpy()
    np.testing.assert_allclose(dx, norm_backward_ref(dy, xh, gamma, inv, 1), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(dgam.numpy(), dg0 + (dy * xh).sum(0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dbet.numpy(), db0 + dy.sum(0), rtol=1e-4, atol=1e-3)
