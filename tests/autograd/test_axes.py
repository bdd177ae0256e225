"""Axis arguments: -ndim <= axis < ndim everywhere (numpy/PyTorch), a clear error naming the
axis and ndim otherwise (never a silent wrap), 0-d tensors handled, permutations checked."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import functional as F
from deepgrad.tensor import AxisError

X = np.random.default_rng(0).standard_normal((2, 3, 4))


def t(requires_grad=False):
    return dg.tensor(X, dtype="float64", requires_grad=requires_grad)


# (op name, call on a 3-d tensor with an axis, numpy reference or None)
AXIS_OPS = [
    ("sum", lambda x, a: x.sum(a), lambda v, a: v.sum(a)),
    ("mean", lambda x, a: x.mean(a), lambda v, a: v.mean(a)),
    ("max", lambda x, a: x.max(a), lambda v, a: v.max(a)),
    ("argmax", lambda x, a: x.argmax(a), lambda v, a: v.argmax(a)),
    ("softmax", lambda x, a: F.softmax(x, a),
     lambda v, a: np.exp(v - v.max(a, keepdims=True))
     / np.exp(v - v.max(a, keepdims=True)).sum(a, keepdims=True)),
    ("log_softmax", lambda x, a: F.log_softmax(x, a), None),
    ("flatten", lambda x, a: x.flatten(a), lambda v, a: v.reshape(*v.shape[:a % 3], -1)),
    ("concat", lambda x, a: dg.concat([x, x], a), lambda v, a: np.concatenate([v, v], a)),
    ("squeeze", lambda x, a: x.squeeze(a), lambda v, a: v),
    ("transpose", lambda x, a: x.transpose(a, 0), lambda v, a: np.swapaxes(v, a, 0)),
    ("size", lambda x, a: x.size(a), lambda v, a: v.shape[a]),
]


@pytest.mark.parametrize("name,op,ref", AXIS_OPS, ids=[o[0] for o in AXIS_OPS])
@pytest.mark.parametrize("axis", [-3, -2, -1, 0, 1, 2])
def test_axes_in_range_work_like_numpy(name, op, ref, axis):
    out = op(t(), axis)
    if ref is not None:
        got = out if isinstance(out, (int, tuple)) else out.numpy()
        np.testing.assert_allclose(got, ref(X, axis), rtol=1e-12)


@pytest.mark.parametrize("name,op,ref", AXIS_OPS, ids=[o[0] for o in AXIS_OPS])
@pytest.mark.parametrize("axis", [3, -4, 7, -100])
def test_axes_out_of_range_raise_naming_axis_and_ndim(name, op, ref, axis):
    with pytest.raises(AxisError, match=rf"{name}: axis {axis} is out of range for a tensor "
                                        rf"with 3 dimensions \(expected -3 <= axis < 3\)"):
        op(t(), axis)


def test_axis_error_is_both_index_and_value_error():
    assert issubclass(AxisError, IndexError) and issubclass(AxisError, ValueError)
    with pytest.raises(IndexError):
        t().transpose(0, 5)
    with pytest.raises(ValueError):
        t().sum(5)


@pytest.mark.parametrize("bad", [1.0, "1", None, True])
def test_non_integer_axes_are_refused(bad):
    with pytest.raises(TypeError, match="axis must be an int"):
        t().transpose(bad, 0)


def test_stack_and_unsqueeze_take_one_more_axis():
    x = t()
    for a in range(-4, 4):
        np.testing.assert_array_equal(dg.stack([x, x], a).numpy(), np.stack([X, X], a))
        np.testing.assert_array_equal(x.unsqueeze(a).numpy(), np.expand_dims(X, a))
    for a in (4, -5):
        with pytest.raises(AxisError, match=f"axis {a} is out of range"):
            dg.stack([x, x], a)
        with pytest.raises(AxisError, match=f"axis {a} is out of range"):
            x.unsqueeze(a)


def test_permute_requires_a_permutation():
    x = t()
    assert x.permute(2, 0, 1).shape == (4, 2, 3)
    assert x.permute(-1, 0, 1).shape == (4, 2, 3)
    assert x.permute((1, 2, 0)).shape == (3, 4, 2)
    for bad in [(0, 1), (0, 0, 1), (0, 1, 2, 3), (0, 2, -1)]:
        with pytest.raises(ValueError, match="not a permutation of the 3 axes"):
            x.permute(*bad)
    with pytest.raises(AxisError, match="permute: axis 3 is out of range"):
        x.permute(0, 1, 3)


def test_transpose_and_permute_gradients_follow_the_permutation():
    for fn in (lambda x: x.permute(2, 0, 1), lambda x: x.transpose(-1, 1), lambda x: x.T,
               lambda x: x.flatten(1, 2), lambda x: x.unsqueeze(1).squeeze(1)):
        dg.gradcheck(fn, t(True))


def test_reductions_reject_repeated_axes():
    with pytest.raises(ValueError, match="name the same axis twice"):
        t().sum((0, -3))


def test_flatten_ranges():
    x = t()
    assert x.flatten().shape == (24,)
    assert x.flatten(0, 1).shape == (6, 4)
    assert x.flatten(-2).shape == (2, 12)
    assert x.flatten(1, 1).shape == (2, 3, 4)
    with pytest.raises(ValueError, match="start_dim 2 comes after end_dim 1"):
        x.flatten(2, 1)


def test_squeeze_keeps_axes_that_are_not_one_like_pytorch():
    x = dg.zeros(1, 3, 1)
    assert x.squeeze().shape == (3,)
    assert x.squeeze(0).shape == (3, 1)
    assert x.squeeze(1).shape == (1, 3, 1)
    assert x.squeeze((0, -1)).shape == (3,)


def test_zero_d_tensors_take_axis_0_and_minus_1_like_pytorch():
    s = dg.tensor(2.5, dtype="float64", requires_grad=True)
    for a in (0, -1):
        assert s.sum(a).shape == () and s.sum(a).item() == 2.5
        assert s.mean(a, keepdims=True).shape == ()
        assert s.max(a).item() == 2.5
        assert s.argmax(a).item() == 0
        assert F.softmax(s, a).item() == 1.0
        assert F.log_softmax(s, a).item() == 0.0
        assert s.flatten(a).shape == (1,)
        assert s.transpose(a, 0).shape == ()
        assert s.squeeze(a).shape == ()
    assert s.transpose().shape == () and s.permute().shape == () and s.T.shape == ()
    assert dg.stack([s, s]).shape == (2,) and s.unsqueeze(-1).shape == (1,)
    for bad in (1, -2):
        with pytest.raises(AxisError, match=rf"axis {bad} is out of range for a tensor with 0 "
                                            r"dimensions \(expected -1 <= axis < 1\)"):
            s.sum(bad)
        with pytest.raises(AxisError):
            s.transpose(bad, 0)
        with pytest.raises(AxisError):
            s.flatten(bad)
    with pytest.raises(ValueError, match="not a permutation"):
        s.permute(0)
    with pytest.raises(ValueError, match="0-d tensors cannot be concatenated"):
        dg.concat([s, s])
    with pytest.raises(AxisError, match="0-d tensor has no axes"):
        s.size(0)
    s.sum(0).backward()
    assert s.grad.item() == 1.0


def test_matches_pytorch_on_the_same_axes():
    torch = pytest.importorskip("torch")
    tx = torch.tensor(X)
    x = t()
    np.testing.assert_array_equal(x.flatten(1).numpy(), torch.flatten(tx, 1).numpy())
    np.testing.assert_array_equal(x.flatten(0, -2).numpy(), torch.flatten(tx, 0, -2).numpy())
    np.testing.assert_array_equal(x.transpose(-1, 0).numpy(), tx.transpose(-1, 0).numpy())
    np.testing.assert_array_equal(x.permute(-1, 0, 1).numpy(), tx.permute(-1, 0, 1).numpy())
    for bad in (lambda a: a.transpose(0, 3), lambda a: a.flatten(3), lambda a: a.permute(0, 1)):
        with pytest.raises((IndexError, RuntimeError)):
            bad(tx)
        with pytest.raises((IndexError, ValueError)):
            bad(x)
