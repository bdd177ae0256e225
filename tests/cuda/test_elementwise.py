"""The CUDA glue kernels (elementwise with broadcasting, scalar and unary ops, where, casts,
reductions, strided copies, gather/scatter) against numpy on fresh random inputs of odd and
large shapes. float32 results of + - * / max min and comparisons are correctly rounded, so they
must equal numpy's float32 results exactly; transcendental functions get the tolerance stated
at each call."""
import numpy as np
import pytest

from deepgrad import _C

pytestmark = pytest.mark.cuda
D = getattr(_C, "CudaArray", None)

EXACT_OPS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
             "maximum": np.maximum, "minimum": np.minimum}
CMP_OPS = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
           "gt": np.greater, "ge": np.greater_equal}

BCAST = [((7,), (7,)), ((3, 5), (5,)), ((3, 5), (3, 1)), ((4, 1, 6), (5, 1)), ((), (2, 3)),
         ((2, 3), ()), ((1,), (9, 1, 3)), ((2, 3, 1, 5, 1, 2, 1, 3), (1, 4, 5, 3, 2, 1, 3)),
         ((1031, 257), (257,)), (((1 << 20) + 3,), ((1 << 20) + 3,))]


def rand(rng, shape, dtype=np.float32):
    return np.asarray(rng.standard_normal(shape) + 0.1).astype(dtype)


def misaligned(a):
    """A device view one element past a 16-byte boundary (exercises the scalar tails)."""
    flat = np.concatenate([np.zeros(1, a.dtype), a.ravel()])
    return D(flat).view(1, a.shape)


@pytest.mark.parametrize("sa,sb", BCAST)
@pytest.mark.parametrize("op", list(EXACT_OPS) + list(CMP_OPS))
def test_binary_broadcast_float32_exact(rng, op, sa, sb):
    a, b = rand(rng, sa), rand(rng, sb)
    if op in CMP_OPS:  # make ties happen
        b = np.broadcast_to(b, np.broadcast_shapes(sa, sb)).copy()
        if b.size:
            b.flat[::3] = np.broadcast_to(a, b.shape).flat[::3]
        sb = b.shape
    ref = (EXACT_OPS.get(op) or CMP_OPS[op])(a, b)
    out = _C.cuda_binary(op, D(a), D(b)).numpy()
    assert out.shape == ref.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, ref.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.float64, np.int64])
@pytest.mark.parametrize("op", ["add", "sub", "mul", "maximum", "minimum", "lt", "eq"])
def test_binary_other_dtypes_exact(rng, op, dtype):
    a = (rng.standard_normal((33, 17)) * 100).astype(dtype)
    b = (rng.standard_normal((17,)) * 100).astype(dtype)
    ref = (EXACT_OPS.get(op) or CMP_OPS[op])(a, b).astype(dtype)
    out = _C.cuda_binary(op, D(a), D(b)).numpy()
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, ref)


def test_binary_vectorised_and_scalar_tails_agree(rng):
    n = 4 * 1000 + 3
    a, b = rand(rng, (n,)), rand(rng, (n,))
    ref = a * b
    np.testing.assert_array_equal(_C.cuda_binary("mul", D(a), D(b)).numpy(), ref)
    np.testing.assert_array_equal(_C.cuda_binary("mul", misaligned(a), D(b)).numpy(), ref)


def test_binary_nan_propagation_and_pow(rng):
    a = np.array([np.nan, 1.0, -2.0, np.inf], np.float32)
    b = np.array([0.0, np.nan, 3.0, 1.0], np.float32)
    np.testing.assert_array_equal(_C.cuda_binary("maximum", D(a), D(b)).numpy(), np.maximum(a, b))
    np.testing.assert_array_equal(_C.cuda_binary("minimum", D(a), D(b)).numpy(), np.minimum(a, b))
    x = np.abs(rand(rng, (100, 7))) + 0.5
    y = rand(rng, (7,))
    # powf: CUDA's documented bound is a few ulp; 1e-6 relative covers it with margin
    np.testing.assert_allclose(_C.cuda_binary("pow", D(x), D(y)).numpy(),
                               np.power(x.astype(np.float64), y), rtol=1e-6)


def test_binary_errors(rng):
    with pytest.raises(ValueError, match="broadcast"):
        _C.cuda_binary("add", D(rand(rng, (3, 4))), D(rand(rng, (5,))))
    with pytest.raises(TypeError, match="dtype"):
        _C.cuda_binary("add", D(rand(rng, (3,))), D(rand(rng, (3,), np.float64)))
    with pytest.raises(ValueError, match="unknown op"):
        _C.cuda_binary("hypot", D(rand(rng, (3,))), D(rand(rng, (3,))))
    with pytest.raises(TypeError, match="cpu"):
        _C.cuda_binary("add", D(rand(rng, (3,))), rand(rng, (3,)))
    with pytest.raises(TypeError, match="int64"):
        _C.cuda_binary("div", D(np.arange(3)), D(np.arange(3)))
    with pytest.raises(ValueError, match="out has shape"):
        _C.cuda_binary("add", D(rand(rng, (3,))), D(rand(rng, (3,))), out=D(rand(rng, (4,))))


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "maximum", "minimum", "gt", "le"])
@pytest.mark.parametrize("left", [False, True])
def test_scalar_ops_exact(rng, op, left):
    a = rand(rng, (129, 33))
    s = np.float32(0.3781)
    f = EXACT_OPS.get(op) or CMP_OPS[op]
    ref = (f(s, a) if left else f(a, s)).astype(np.float32)
    out = _C.cuda_binary_scalar(op, D(a), float(s), left).numpy()
    np.testing.assert_array_equal(out, ref)


def test_inplace_out_aliasing_input(rng):
    a, b = rand(rng, (300, 7)), rand(rng, (7,))
    d = D(a)
    _C.cuda_binary("add", d, D(b), out=d)
    np.testing.assert_array_equal(d.numpy(), a + b)


@pytest.mark.parametrize("shape", [(1,), (5, 7), (1 << 20) + 5])
def test_unary(rng, shape):
    a = rand(rng, shape)
    pos = np.abs(a) + 1e-3
    d, dp = D(a), D(pos)
    u = lambda op, x, *p: _C.cuda_unary(op, x, *p).numpy()  # noqa: E731
    np.testing.assert_array_equal(u("neg", d), -a)
    np.testing.assert_array_equal(u("abs", d), np.abs(a))
    np.testing.assert_array_equal(u("sign", d), np.sign(a))
    np.testing.assert_array_equal(u("square", d), a * a)
    np.testing.assert_array_equal(u("clip", d, -0.5, 0.25), np.clip(a, -0.5, 0.25))
    # expf/logf: <= 2 ulp in CUDA's tables; sqrtf and 1/x are correctly rounded
    a64, p64 = a.astype(np.float64), pos.astype(np.float64)
    np.testing.assert_allclose(u("exp", d), np.exp(a64), rtol=5e-7)
    np.testing.assert_allclose(u("log", dp), np.log(p64), rtol=5e-7, atol=1e-7)
    np.testing.assert_array_equal(u("sqrt", dp), np.sqrt(pos))
    np.testing.assert_array_equal(u("reciprocal", dp), np.float32(1) / pos)


def test_unary_int64_and_errors():
    i = np.array([-3, 0, 5, -7], np.int64)
    np.testing.assert_array_equal(_C.cuda_unary("abs", D(i)).numpy(), np.abs(i))
    np.testing.assert_array_equal(_C.cuda_unary("clip", D(i), -2.5, 4.5).numpy(), np.clip(i, -2, 4))
    with pytest.raises(TypeError, match="int64"):
        _C.cuda_unary("exp", D(i))


@pytest.mark.parametrize("sc,sa,sb", [((5, 4), (5, 4), (5, 4)), ((5, 1), (4,), ()),
                                      ((3, 1, 6), (1, 7, 1), (7, 6)), (((1 << 19) + 1,),) * 3])
def test_where(rng, sc, sa, sb):
    c = (rng.random(sc) < 0.5).astype(np.float32)
    a, b = rand(rng, sa), rand(rng, sb)
    out = _C.cuda_where(D(c), D(a), D(b)).numpy()
    np.testing.assert_array_equal(out, np.where(c != 0, a, b))


def test_fill_cast_nonfinite(rng):
    d = D.empty((1001,), "float64")
    d.fill_(-1.25)
    np.testing.assert_array_equal(d.numpy(), np.full(1001, -1.25))
    a = rand(rng, (50_000,))
    assert not _C.cuda_has_nonfinite(D(a))
    for bad in (np.nan, np.inf, -np.inf):
        b = a.copy()
        b[rng.integers(b.size)] = bad
        assert _C.cuda_has_nonfinite(D(b))
    assert not _C.cuda_has_nonfinite(D(np.arange(5)))


REDUCE_CASES = [((7,), None), ((7,), 0), ((3, 5), 1), ((3, 5), 0), ((3, 5), (0, 1)),
                ((4, 5, 6), (0, 2)), ((4, 5, 6), 1), ((2, 3, 4, 5), (1, 2)), ((2, 3, 4, 5), -1),
                ((5_000_003,), None), ((3, 1_000_003), 1), ((200_003, 3), 0), ((7, 20_000, 5), 1),
                ((1, 1), None), ((100_000, 17), 1), ((3, 0), 1)]


@pytest.mark.parametrize("shape,axis", REDUCE_CASES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_sum_mean(rng, shape, axis, keepdims):
    a = rand(rng, shape)
    a64 = a.astype(np.float64)
    ref = np.sum(a64, axis=axis, keepdims=keepdims)
    out = _C.cuda_reduce("sum", D(a), axis, keepdims).numpy()
    assert out.shape == ref.shape and out.dtype == np.float32
    # accumulated in float64 on the device; only the final rounding to float32 remains
    scale = np.sum(np.abs(a64), axis=axis, keepdims=keepdims)
    assert np.all(np.abs(out - ref) <= 1e-6 * scale + 1e-30)
    if a.size and np.prod([shape[i] for i in ([axis] if isinstance(axis, int) else (axis or range(len(shape))))]):
        mref = np.mean(a64, axis=axis, keepdims=keepdims)
        mout = _C.cuda_reduce("mean", D(a), axis, keepdims).numpy()
        np.testing.assert_allclose(mout, mref, rtol=1e-6, atol=1e-6 * np.max(np.abs(mref)))


@pytest.mark.parametrize("shape,axis", [c for c in REDUCE_CASES if 0 not in c[0]])
def test_max_min_argmax(rng, shape, axis):
    a = rand(rng, shape)
    np.testing.assert_array_equal(_C.cuda_reduce("max", D(a), axis).numpy(), np.max(a, axis=axis))
    np.testing.assert_array_equal(_C.cuda_reduce("min", D(a), axis).numpy(), np.min(a, axis=axis))
    if axis is None or isinstance(axis, int):
        out = _C.cuda_reduce("argmax", D(a), axis).numpy()
        assert out.dtype == np.int64
        np.testing.assert_array_equal(out, np.argmax(a, axis=axis))


def test_argmax_ties_and_nan_follow_numpy():
    a = np.array([[1, 3, 3, 0], [2, np.nan, 5, np.nan], [7, 7, 7, 7]], np.float32)
    np.testing.assert_array_equal(_C.cuda_reduce("argmax", D(a), 1).numpy(), np.argmax(a, 1))
    np.testing.assert_array_equal(_C.cuda_reduce("max", D(a), 1).numpy(), np.max(a, 1))
    big = np.zeros(3_000_001, np.float32)
    big[[17, 2_500_000]] = 4.0  # a tie across chunks: the first wins
    assert int(_C.cuda_reduce("argmax", D(big)).numpy()) == 17


def test_reductions_are_deterministic_and_int64(rng):
    a = D(rand(rng, (3_000_017,)) * 1e3)
    first = _C.cuda_reduce("sum", a).numpy()
    for _ in range(3):
        assert _C.cuda_reduce("sum", a).numpy().tobytes() == first.tobytes()
    i = rng.integers(-1000, 1000, (1000, 7))
    np.testing.assert_array_equal(_C.cuda_reduce("sum", D(i), 0).numpy(), i.sum(0))
    with pytest.raises(ValueError, match="identity"):
        _C.cuda_reduce("max", D(np.ones((0, 3), np.float32)), 0)
    with pytest.raises(IndexError):
        _C.cuda_reduce("sum", D(np.ones((2, 3), np.float32)), 2)


def test_strided_copy_transpose_slices_broadcast(rng):
    a = rand(rng, (5, 6, 7))
    st = [42, 7, 1]
    # permute (2, 0, 1)
    out = D.empty((7, 5, 6))
    _C.cuda_strided_copy(out, 0, [30, 6, 1], D(a), 0, [1, 42, 7], [7, 5, 6])
    np.testing.assert_array_equal(out.numpy(), a.transpose(2, 0, 1))
    # a[4:0:-2, 1::2, ::3]
    ref = a[4:0:-2, 1::2, ::3]
    out = D.empty(ref.shape)
    _C.cuda_strided_copy(out, 0, [9, 3, 1], D(a), 4 * 42 + 7, [-2 * 42, 2 * 7, 3], list(ref.shape))
    np.testing.assert_array_equal(out.numpy(), ref)
    # broadcast a row, then accumulate into a slice of a larger buffer
    row = rand(rng, (7,))
    out = D(np.zeros((4, 10), np.float32))
    _C.cuda_strided_copy(out, 2, [10, 1], D(row), 0, [0, 1], [4, 7], True)
    _C.cuda_strided_copy(out, 2, [10, 1], D(row), 0, [0, 1], [4, 7], True)
    ref = np.zeros((4, 10), np.float32)
    ref[:, 2:9] += row
    ref[:, 2:9] += row
    np.testing.assert_array_equal(out.numpy(), ref)
    with pytest.raises(IndexError, match="outside"):
        _C.cuda_strided_copy(out, 5, [10, 1], D(row), 0, [0, 1], [4, 7], False)
    assert st  # strides of a, for the reader


def test_gather_scatter_flat_deterministic(rng):
    src = rand(rng, (1000, 13))
    flat = rng.integers(0, src.size, 50_001)
    out = _C.cuda_gather_flat(D(src), flat, [50_001])
    np.testing.assert_array_equal(out.numpy(), src.ravel()[flat])
    vals = rand(rng, (50_001,))
    dst0 = rand(rng, (1000, 13))
    ref = dst0.astype(np.float64).ravel()
    np.add.at(ref, flat, vals.astype(np.float64))
    results = []
    for _ in range(2):
        dst = D(dst0)
        _C.cuda_scatter_flat(dst, flat, D(vals), True)
        results.append(dst.numpy())
    assert results[0].tobytes() == results[1].tobytes()
    np.testing.assert_allclose(results[0].ravel(), ref, rtol=1e-5, atol=1e-5)
    # assignment: the last occurrence wins, as in numpy
    dst = D(dst0)
    _C.cuda_scatter_flat(dst, flat, D(vals), False)
    r = dst0.copy().ravel()
    r[flat] = vals
    np.testing.assert_array_equal(dst.numpy().ravel(), r)
    with pytest.raises(IndexError, match="out of bounds"):
        _C.cuda_gather_flat(D(src), np.array([src.size]), [1])
