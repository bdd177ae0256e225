"""CUDA SGEMM and the fused dense layer against float64 numpy and the CPU entry points
(deepgrad._C), on fresh random inputs of odd and large shapes. Skipped only without a GPU."""
import numpy as np
import pytest

from deepgrad import _C

pytestmark = pytest.mark.cuda
if not (_C.build_info()["cuda"] and _C.cuda_device_count() > 0):
    pytest.skip("no CUDA GPU present", allow_module_level=True)

ACTS = ["identity", "step", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu",
        "softplus", "silu", "softsign"]


def dev(a):
    return _C.CudaArray(np.ascontiguousarray(a, dtype=np.float32))


def dev_misaligned(a):
    """A device view starting one float past a 16-byte boundary (exercises the scalar loads)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    flat = np.concatenate([np.float32([np.nan]), a.ravel()])
    return _C.CudaArray(flat).view(1, a.shape)


def rel_err(out, ref):
    return np.linalg.norm(out.astype(np.float64) - ref) / max(np.linalg.norm(ref), 1e-30)


GEMM_SHAPES = [(1, 1, 1), (7, 13, 5), (33, 65, 17), (129, 257, 63), (64, 64, 64), (1300, 1100, 77),
               (5, 1031, 300)]


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("mnk", GEMM_SHAPES)
def test_gemm_matches_float64_and_cpu(mnk, ta, tb):
    m, n, k = mnk
    rng = np.random.default_rng()
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    ref = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
    out = _C.cuda_gemm(dev(a), dev(b), trans_a=ta, trans_b=tb).numpy()
    assert out.shape == (m, n)
    # float32 accumulation over k terms of size ~1: a few ulps times sqrt(k)
    assert rel_err(out, ref) < 2e-6 * np.sqrt(k) + 1e-6
    np.testing.assert_allclose(out, _C.gemm(a, b, trans_a=ta, trans_b=tb), rtol=1e-4, atol=1e-5 * k)
    naive = _C.cuda_gemm_naive(dev(a), dev(b), trans_a=ta, trans_b=tb).numpy()
    assert rel_err(naive, ref) < 2e-6 * np.sqrt(k) + 1e-6


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_misaligned_views_alpha_beta(ta, tb):
    rng = np.random.default_rng()
    m, n, k = 131, 260, 45  # big enough for several tiles; n % 4 == 0 but the views are misaligned
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    out = dev_misaligned(c0)
    res = _C.cuda_gemm(dev_misaligned(a), dev_misaligned(b), out=out, trans_a=ta, trans_b=tb,
                       alpha=-0.5, beta=1.5).numpy()
    ref = -0.5 * ((a.T if ta else a).astype(np.float64) @ (b.T if tb else b)) + 1.5 * c0
    assert rel_err(res, ref) < 1e-5
    np.testing.assert_allclose(out.numpy(), res, rtol=0, atol=0)  # written in place


def test_gemm_beta_zero_never_reads_out():
    rng = np.random.default_rng()
    a = rng.standard_normal((70, 30)).astype(np.float32)
    b = rng.standard_normal((30, 90)).astype(np.float32)
    out = dev(np.full((70, 90), np.nan, np.float32))
    res = _C.cuda_gemm(dev(a), dev(b), out=out, beta=0.0).numpy()
    assert np.isfinite(res).all()
    assert rel_err(res, a.astype(np.float64) @ b) < 1e-5


def test_gemm_large_square_every_element_written():
    rng = np.random.default_rng()
    n = 1029  # edge tiles on both sides of the 128x128 path
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    out = dev(np.full((n, n), np.nan, np.float32))
    res = _C.cuda_gemm(dev(a), dev(b), out=out).numpy()
    assert np.isfinite(res).all()
    assert rel_err(res, a.astype(np.float64) @ b) < 1e-5


def test_gemm_errors():
    a = dev(np.ones((3, 4)))
    with pytest.raises(ValueError, match="inner dimensions"):
        _C.cuda_gemm(a, dev(np.ones((5, 2))))
    with pytest.raises(TypeError, match="numpy array on the cpu"):
        _C.cuda_gemm(a, np.ones((4, 2), np.float32))
    with pytest.raises(TypeError, match="float64"):
        _C.cuda_gemm(a, _C.CudaArray(np.ones((4, 2))))
    with pytest.raises(ValueError, match="out has shape"):
        _C.cuda_gemm(a, dev(np.ones((4, 2))), out=dev(np.ones((3, 3))))
    with pytest.raises(ValueError, match="shares memory"):
        _C.cuda_gemm(a, dev(np.ones((4, 4))), out=a.view(0, (3, 4)))


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", [(1, 3, 1), (37, 19, 23), (256, 130, 300)])
def test_dense_forward_backward_matches_cpu(act, shape):
    n, fin, fout = shape
    rng = np.random.default_rng()
    x = rng.standard_normal((n, fin)).astype(np.float32)
    w = (rng.standard_normal((fin, fout)) / np.sqrt(fin)).astype(np.float32)
    b = rng.standard_normal(fout).astype(np.float32)
    alpha = 0.2
    y_cpu, z_cpu = _C.dense_forward(x, w, b, act, alpha)
    y_d, z_d = _C.cuda_dense_forward(dev(x), dev(w), dev(b), act, alpha)
    tol = dict(rtol=2e-5, atol=2e-5 * np.sqrt(fin))
    if act == "step":  # a pre-activation within rounding of 0 may land on either side
        z_ref = x.astype(np.float64) @ w + b
        keep = np.abs(z_ref) > 1e-4
        np.testing.assert_array_equal(y_d.numpy()[keep], y_cpu[keep])
    else:
        np.testing.assert_allclose(y_d.numpy(), y_cpu, **tol)
    assert (z_d is None) == (z_cpu is None)
    if z_d is not None:
        np.testing.assert_allclose(z_d.numpy(), z_cpu, **tol)

    dy = rng.standard_normal((n, fout)).astype(np.float32)
    dw0 = rng.standard_normal((fin, fout)).astype(np.float32)
    db0 = rng.standard_normal(fout).astype(np.float32)
    dw_cpu, db_cpu = dw0.copy(), db0.copy()
    # both backends see the same saved tensors (the CPU's), so the comparison isolates backward
    dx_cpu = _C.dense_backward(dy, x, w, z_cpu, y_cpu, dw_cpu, db_cpu, act, alpha)
    dw_d, db_d = dev(dw0), dev(db0)
    dx_d = _C.cuda_dense_backward(dev(dy), dev(x), dev(w), None if z_cpu is None else dev(z_cpu),
                                  dev(y_cpu), dw_d, db_d, act, alpha)
    btol = dict(rtol=2e-5, atol=2e-5 * np.sqrt(max(n, fout)))
    np.testing.assert_allclose(dx_d.numpy(), dx_cpu, **btol)
    np.testing.assert_allclose(dw_d.numpy(), dw_cpu, **btol)  # accumulated onto dw0
    np.testing.assert_allclose(db_d.numpy(), db_cpu, **btol)


def test_dense_backward_without_bias_dx_and_y():
    rng = np.random.default_rng()
    x = rng.standard_normal((50, 33)).astype(np.float32)
    w = rng.standard_normal((33, 17)).astype(np.float32)
    dy = rng.standard_normal((50, 17)).astype(np.float32)
    z = x.astype(np.float64) @ w
    y = np.tanh(z)
    dw = dev(np.zeros((33, 17)))
    # tanh with only z: the output is recomputed from z
    dx = _C.cuda_dense_backward(dev(dy), dev(x), dev(w), dev(z), None, dw, None, "tanh",
                                need_dx=False)
    assert dx is None
    np.testing.assert_allclose(dw.numpy(), x.T.astype(np.float64) @ (dy * (1 - y * y)),
                               rtol=1e-4, atol=1e-4)


def test_dense_deterministic_and_errors():
    rng = np.random.default_rng()
    x, w = dev(rng.standard_normal((300, 70))), dev(rng.standard_normal((70, 40)))
    dy = dev(rng.standard_normal((300, 40)))
    runs = []
    for _ in range(2):
        dw, db = dev(np.zeros((70, 40))), dev(np.zeros(40))
        _C.cuda_dense_backward(dy, x, w, None, None, dw, db, "identity")
        runs.append((dw.numpy(), db.numpy()))
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])
    with pytest.raises(ValueError, match="input features"):
        _C.cuda_dense_forward(x, dev(np.ones((71, 3))), None)
    with pytest.raises(ValueError, match="unknown activation"):
        _C.cuda_dense_forward(x, w, None, "nope")
    with pytest.raises(ValueError, match="b must be"):
        _C.cuda_dense_forward(x, w, dev(np.ones(3)))
    with pytest.raises(ValueError, match="needs z"):
        _C.cuda_dense_backward(dy, x, w, None, None, dev(np.zeros((70, 40))), None, "relu")
    with pytest.raises(ValueError, match="dw has shape"):
        _C.cuda_dense_backward(dy, x, w, None, None, dev(np.zeros((40, 70))), None)
