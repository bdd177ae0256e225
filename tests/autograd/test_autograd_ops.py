"""Every Tensor op: forward against numpy in float64, gradient against central differences
(deepgrad.gradcheck, float64), including broadcasting shapes."""
import numpy as np
import pytest

import deepgrad as dg

RNG = np.random.default_rng(1234)


def T(*shape, positive=False, grad=True):
    a = RNG.standard_normal(shape)
    if positive:
        a = np.abs(a) + 0.5
    return dg.tensor(a, requires_grad=grad)


BINARY_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3)), ((5,), ())]


@pytest.mark.parametrize("sa,sb", BINARY_SHAPES)
@pytest.mark.parametrize("op,ref", [
    (lambda a, b: a + b, np.add), (lambda a, b: a - b, np.subtract),
    (lambda a, b: a * b, np.multiply), (lambda a, b: a / b, np.divide),
    (dg.maximum, np.maximum), (dg.minimum, np.minimum)])
def test_binary_ops_broadcast(op, ref, sa, sb):
    a, b = T(*sa), T(*sb, positive=ref is np.divide)
    out = op(a, b)
    np.testing.assert_allclose(out.numpy(), ref(a.numpy(), b.numpy()), rtol=1e-12)
    assert out.shape == np.broadcast_shapes(sa, sb)
    errs = dg.gradcheck(op, [a, b], atol=1e-6, rtol=1e-5)
    assert len(errs) == 2


def test_pow_tensor_and_scalar_exponents():
    a, b = T(3, 2, positive=True), T(2)
    np.testing.assert_allclose((a ** b).numpy(), a.numpy() ** b.numpy(), rtol=1e-12)
    dg.gradcheck(lambda a, b: a ** b, [a, b], atol=1e-6, rtol=1e-5)
    dg.gradcheck(lambda a: a ** 3, [a], atol=1e-6, rtol=1e-5)
    dg.gradcheck(lambda a: a ** 0.5, [a], atol=1e-6, rtol=1e-5)
    dg.gradcheck(lambda a: 2.0 ** a, [a], atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose((2.0 ** a).numpy(), 2.0 ** a.numpy(), rtol=1e-12)


@pytest.mark.parametrize("fn", [lambda a: 2.5 + a, lambda a: a + 2.5, lambda a: 2.5 - a,
                                lambda a: a - 2.5, lambda a: 3.0 * a, lambda a: a * 3.0,
                                lambda a: 3.0 / a, lambda a: a / 3.0, lambda a: -a])
def test_scalar_and_reflected_operands(fn):
    a = T(2, 3, positive=True)
    np.testing.assert_allclose(fn(a).numpy(), fn(a.numpy()), rtol=1e-12)
    dg.gradcheck(fn, [a], atol=1e-6, rtol=1e-5)


def test_numpy_array_operands_are_constants():
    a = T(2, 3)
    c = RNG.standard_normal(3)
    np.testing.assert_allclose((a * c).numpy(), a.numpy() * c, rtol=1e-12)
    np.testing.assert_allclose((c * a).numpy(), a.numpy() * c, rtol=1e-12)  # ndarray defers
    dg.gradcheck(lambda a: c - a * c, [a], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name,ref,positive", [("exp", np.exp, False), ("log", np.log, True),
                                               ("sqrt", np.sqrt, True), ("abs", np.abs, False)])
def test_unary_ops(name, ref, positive):
    a = T(3, 4, positive=positive)
    out = getattr(a, name)()
    np.testing.assert_allclose(out.numpy(), ref(a.numpy()), rtol=1e-12)
    dg.gradcheck(lambda a: getattr(a, name)(), [a], atol=1e-6, rtol=1e-5)


def test_clamp():
    a = dg.tensor(np.array([-2.0, -0.5, 0.3, 1.7]), requires_grad=True)
    out = a.clamp(-1.0, 1.0)
    np.testing.assert_allclose(out.numpy(), [-1.0, -0.5, 0.3, 1.0])
    out.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [0.0, 1.0, 1.0, 0.0])


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_sum_mean(axis, keepdims):
    a = T(2, 3, 4)
    np.testing.assert_allclose(a.sum(axis, keepdims).numpy(),
                               a.numpy().sum(axis=axis, keepdims=keepdims), rtol=1e-12)
    np.testing.assert_allclose(a.mean(axis, keepdims).numpy(),
                               a.numpy().mean(axis=axis, keepdims=keepdims), rtol=1e-12)
    dg.gradcheck(lambda a: a.sum(axis, keepdims), [a], atol=1e-6, rtol=1e-5)
    dg.gradcheck(lambda a: a.mean(axis, keepdims), [a], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_max(axis):
    a = T(4, 5)
    np.testing.assert_allclose(a.max(axis).numpy(), a.numpy().max(axis=axis), rtol=0)
    dg.gradcheck(lambda a: a.max(axis), [a], atol=1e-6, rtol=1e-5)


def test_max_ties_share_the_gradient():
    a = dg.tensor([1.0, 3.0, 3.0], requires_grad=True)
    a.max().backward()
    np.testing.assert_allclose(a.grad.numpy(), [0.0, 0.5, 0.5])


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((4,), (4, 2)), ((3, 4), (4,)),
                                   ((4,), (4,)), ((1, 7), (7, 1))])
def test_matmul(sa, sb):
    a, b = T(*sa), T(*sb)
    out = a @ b
    np.testing.assert_allclose(out.numpy(), a.numpy() @ b.numpy(), rtol=1e-12)
    assert out.shape == (a.numpy() @ b.numpy()).shape
    dg.gradcheck(lambda a, b: a @ b, [a, b], atol=1e-6, rtol=1e-5)


def test_matmul_float32_matches_float64_reference():
    a = RNG.standard_normal((17, 33)).astype(np.float32)
    b = RNG.standard_normal((33, 9)).astype(np.float32)
    out = (dg.tensor(a) @ dg.tensor(b)).numpy()
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-4,
                               atol=1e-4)


def test_reshape_transpose_permute():
    a = T(2, 3, 4)
    np.testing.assert_array_equal(a.reshape(6, 4).numpy(), a.numpy().reshape(6, 4))
    np.testing.assert_array_equal(a.reshape(-1).numpy(), a.numpy().reshape(-1))
    np.testing.assert_array_equal(a.transpose(0, 2).numpy(), a.numpy().swapaxes(0, 2))
    np.testing.assert_array_equal(a.permute(1, 2, 0).numpy(), a.numpy().transpose(1, 2, 0))
    np.testing.assert_array_equal(a.T.numpy(), a.numpy().T)
    dg.gradcheck(lambda a: a.reshape(4, 6) * np.arange(6.0), [a], atol=1e-6, rtol=1e-5)
    dg.gradcheck(lambda a: a.permute(2, 0, 1), [a], atol=1e-6, rtol=1e-5)
    m = T(3, 5)
    dg.gradcheck(lambda m: m.T @ m, [m], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("index", [
    1, -1, slice(1, 3), (slice(None), 2), (Ellipsis, slice(0, 2)), (1, slice(None, None, -1)),
    (None, 0), np.array([0, 2, 2, 1]), ([0, 1, 1], [3, 0, 0]), (slice(None), [2, 2, 0])])
def test_getitem_basic_and_integer_array(index):
    a = T(4, 5)
    np.testing.assert_array_equal(a[index].numpy(), a.numpy()[index])
    dg.gradcheck(lambda a: a[index], [a], atol=1e-6, rtol=1e-5)


def test_getitem_with_repeated_indices_sums_gradients():
    a = dg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    a[dg.tensor([0, 0, 2], dtype="int64")].sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [2.0, 0.0, 1.0])


def test_boolean_mask_indexing():
    a = T(6)
    m = a.numpy() > 0
    np.testing.assert_array_equal(a[m].numpy(), a.numpy()[m])
    dg.gradcheck(lambda a: a[m] * 2, [a], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_and_stack(axis):
    a, b, c = T(2, 3), T(2, 3), T(2, 3)
    np.testing.assert_array_equal(dg.concat([a, b, c], axis).numpy(),
                                  np.concatenate([a.numpy(), b.numpy(), c.numpy()], axis))
    np.testing.assert_array_equal(dg.stack([a, b, c], axis).numpy(),
                                  np.stack([a.numpy(), b.numpy(), c.numpy()], axis))
    dg.gradcheck(lambda a, b, c: dg.concat([a, b * 2, c], axis), [a, b, c], atol=1e-6, rtol=1e-5)
    dg.gradcheck(lambda a, b, c: dg.stack([a, b, c * c], axis), [a, b, c], atol=1e-6, rtol=1e-5)


def test_concat_uneven_sizes():
    a, b = T(2, 3), T(2, 1)
    out = dg.concat([a, b], axis=1)
    assert out.shape == (2, 4)
    dg.gradcheck(lambda a, b: dg.concat([a, b], axis=1), [a, b], atol=1e-6, rtol=1e-5)


def test_where():
    a, b = T(3, 4), T(4)
    cond = a.numpy() > 0
    np.testing.assert_array_equal(dg.where(cond, a, b).numpy(), np.where(cond, a.numpy(), b.numpy()))
    dg.gradcheck(lambda a, b: dg.where(cond, a, b), [a, b], atol=1e-6, rtol=1e-5)
    dg.gradcheck(lambda a: dg.where(a > 0, a, 0.0), [a], atol=1e-6, rtol=1e-5)


def test_comparisons_are_float_masks_without_grad():
    a = dg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    m = a > 1.5
    assert not m.requires_grad and m.dtype == np.float32
    np.testing.assert_array_equal(m.numpy(), [0.0, 1.0, 1.0])
    np.testing.assert_array_equal((a == 2.0).numpy(), [0.0, 1.0, 0.0])


def test_to_dtype_and_clone_are_differentiable():
    a = dg.tensor(RNG.standard_normal(4).astype(np.float32), requires_grad=True)
    b = a.double()
    assert b.dtype == np.float64
    (b * b).sum().backward()
    assert a.grad.dtype == np.float32
    np.testing.assert_allclose(a.grad.numpy(), 2 * a.numpy(), rtol=1e-6)
    c = T(3)
    dg.gradcheck(lambda c: c.clone() * c, [c], atol=1e-6, rtol=1e-5)


def test_composite_expression_with_broadcasting():
    x, w, b = T(5, 3), T(3, 4), T(4)
    f = lambda x, w, b: ((x @ w + b).exp() / (1.0 + (x @ w + b).exp())).mean(axis=0).sum()
    dg.gradcheck(f, [x, w, b], atol=1e-6, rtol=1e-5)


def test_gradcheck_reports_a_wrong_gradient():
    from deepgrad.autograd import GradcheckError
    from deepgrad.tensor import _result

    def bad_square(a):  # backward off by a factor 2
        be = a._be
        return _result(be.mul(a.data, a.data), be, (a,), lambda g: (be.mul(g, a.data),), "bad")
    a = T(3)
    with pytest.raises(GradcheckError, match="input 0 shape \\(3,\\).*analytic.*numeric"):
        dg.gradcheck(bad_square, [a])
    errs = dg.gradcheck(bad_square, [a], raise_exception=False)
    assert errs[0] > 0.1


def test_gradcheck_checks_float32_inputs_in_float64():
    a = dg.tensor(RNG.standard_normal((2, 2)).astype(np.float32), requires_grad=True)
    errs = dg.gradcheck(lambda a: (a * a).sum(), [a])
    assert errs[0] < 1e-6
    assert a.grad is None  # the caller's tensor is untouched


def test_creation_functions_and_seed():
    dg.manual_seed(7)
    a = dg.randn(3, 4)
    dg.manual_seed(7)
    b = dg.randn(3, 4)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert a.dtype == np.float32 and a.shape == (3, 4)
    r = dg.rand(1000, dtype="float64")
    assert r.dtype == np.float64 and 0 <= r.numpy().min() and r.numpy().max() < 1
    np.testing.assert_array_equal(dg.zeros(2, 3).numpy(), np.zeros((2, 3)))
    np.testing.assert_array_equal(dg.ones((2,)).numpy(), np.ones(2))
    np.testing.assert_array_equal(dg.full((2, 2), 3.5).numpy(), np.full((2, 2), 3.5))
    z = dg.zeros_like(r)
    assert z.dtype == np.float64 and z.shape == r.shape
    assert dg.tensor([1, 2]).dtype == np.float32
    assert dg.tensor(np.array([1.0])).dtype == np.float64
    assert dg.tensor([1, 2], dtype="int64").dtype == np.int64


def test_tensor_basics():
    t = dg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    assert t.shape == (2, 2) and t.ndim == 2 and t.device == "cpu" and t.is_leaf
    assert t.numel() == 4 and len(t) == 2
    assert dg.tensor(5.0).item() == 5.0
    assert "requires_grad=True" in repr(t)
    with pytest.raises(ValueError, match="one-element"):
        t.item()


def test_numpy_interop_and_formatting():
    t = dg.tensor([[1.0, 2.0]])
    np.testing.assert_array_equal(np.asarray(t), [[1.0, 2.0]])
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    loss = dg.tensor(0.123456)
    assert f"{loss:.3f}" == "0.123"
    assert "tensor(" in f"{t}"


def test_scalar_results_stay_zero_dimensional():
    t = dg.tensor([1.0, 2.0], requires_grad=True)
    assert t[0].shape == () and [a.shape for a in t] == [(), ()]
    assert dg.tensor(5.0).T.shape == ()
    assert t.sum().shape == () and t.max().shape == ()
    (t[0] * 3 + t[1]).backward()
    np.testing.assert_array_equal(t.grad.numpy(), [3.0, 1.0])
