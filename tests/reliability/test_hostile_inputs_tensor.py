"""Hostile inputs to the tensor / autograd / ops layer: every bad input gets a Python exception
that names the op, the problem and the fix; nothing answers silently wrong, and a refused
in-place update changes nothing (values and version counter as they were)."""
from __future__ import annotations

import numpy as np
import pytest

import deepgrad as dg
import deepgrad.functional as F
import deepgrad.losses as L


# ---------------------------------------------------------------------------------------------
# boolean masks from comparisons (a[a > 1] used to gather elements 0 and 1: silently wrong)


def test_comparison_mask_selects_like_numpy():
    x = np.array([1.0, 2.0, 3.0], np.float32)
    a = dg.tensor(x)
    np.testing.assert_array_equal(a[a > 1].numpy(), x[x > 1])
    np.testing.assert_array_equal(a[a <= 1].numpy(), x[x <= 1])
    m = np.arange(6.0).reshape(2, 3)
    t = dg.tensor(m)
    np.testing.assert_array_equal(t[t > 2].numpy(), m[m > 2])   # not a (2, 3, 3) gather
    np.testing.assert_array_equal(t[t[:, 0] > 0].numpy(), m[m[:, 0] > 0])


def test_comparison_mask_gradient_and_setitem():
    a = dg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    a[a > 1].sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.0, 1.0, 1.0])
    b = dg.tensor([1.0, 2.0, 3.0])
    b[b > 1] = 0.0
    np.testing.assert_array_equal(b.numpy(), [1.0, 0.0, 0.0])


def test_float_index_tensor_still_gathers():
    a = dg.tensor([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(a[dg.tensor([0, 2])].numpy(), [1.0, 3.0])
    m = a > 1
    np.testing.assert_array_equal(a[m * 1.0].numpy(), [1.0, 2.0, 2.0])  # arithmetic: indices


# ---------------------------------------------------------------------------------------------
# an op whose backward reads its own output: the output modified in place is caught


@pytest.mark.parametrize("op", [
    lambda x: x.exp(),
    lambda x: x.sqrt(),
    lambda x: x.sigmoid(),
    lambda x: F.tanh(x),
    lambda x: F.softmax(x.reshape(1, -1)),
    lambda x: F.log_softmax(x.reshape(1, -1)),
    lambda x: x.max(),
    lambda x: x.clamp(0.5, 1.5),
    lambda x: 2.0 ** x,
    lambda x: 1.0 / x,
    lambda x: F.dense(x.reshape(1, -1), dg.ones(3, 2), None, "sigmoid"),
])
def test_output_modified_in_place_is_refused(op):
    x = dg.tensor([0.5, 1.0, 2.0], requires_grad=True)
    y = op(x * 1.0)
    z = y.sum()
    with dg.no_grad():
        y.mul_(0.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        z.backward()


def test_output_of_linear_ops_may_change_in_place():
    x = dg.tensor([0.5, 1.0], requires_grad=True)
    y = x * 3.0      # mul by a scalar reads no output
    z = y.sum()
    with dg.no_grad():
        y.mul_(0.0)
    z.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


# ---------------------------------------------------------------------------------------------
# refused in-place updates change nothing (no spurious "modified in place" later)


def _refused_then_backward(update, exc, phrase):
    a = dg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = dg.tensor([4.0, 5.0, 6.0])
    z = (a * b).sum()              # b is saved for the backward
    before = b.numpy().copy()
    with pytest.raises(exc, match=phrase):
        update(b)
    assert b._version == 0
    np.testing.assert_array_equal(b.numpy(), before)
    z.backward()
    np.testing.assert_array_equal(a.grad.numpy(), before)


def test_refused_add_broadcast_keeps_version():
    _refused_then_backward(lambda b: b.add_(dg.ones(2)), ValueError, "add_: shapes")


def test_refused_setitem_keeps_version():
    _refused_then_backward(lambda b: b.__setitem__(5, 1.0), IndexError, "__setitem__: index 5")
    _refused_then_backward(lambda b: b.__setitem__(slice(None), [1.0, 2.0]), ValueError,
                           "__setitem__: cannot assign")
    _refused_then_backward(lambda b: b.__setitem__(0, "x"), TypeError, "__setitem__")


def test_refused_fill_and_copy_keep_version():
    _refused_then_backward(lambda b: b.fill_("x"), TypeError, "fill_")
    _refused_then_backward(lambda b: b.copy_(np.ones(2)), ValueError, "copy_")
    _refused_then_backward(lambda b: b.copy_([[1, 2], [3]]), ValueError, "copy_")


def test_int_tensor_in_place_float_result_is_refused():
    a = dg.tensor([1, 2], dtype="int64")
    with pytest.raises(TypeError, match="add_: the result is float64"):
        a += 0.5
    with pytest.raises(TypeError, match="div_"):
        a /= 2
    np.testing.assert_array_equal(a.numpy(), [1, 2])
    assert a._version == 0


# ---------------------------------------------------------------------------------------------
# conversions


def test_to_int64_is_not_differentiable():
    a = dg.tensor([1.5, 2.0], requires_grad=True)
    b = a.to("int64")
    assert not b.requires_grad and b.grad_fn is None
    np.testing.assert_array_equal(b.numpy(), [1, 2])


def test_tensor_from_bad_data():
    with pytest.raises(ValueError, match="tensor\\(\\): the data is not a rectangular"):
        dg.tensor([[1, 2], [3]])
    with pytest.raises(ValueError, match="does not fit in int64"):
        dg.tensor(np.array([2 ** 63 + 5], np.uint64), dtype="int64")
    with pytest.raises(ValueError, match="cannot be converted to int64"):
        dg.tensor([np.nan, 1.0], dtype="int64")
    with pytest.raises(ValueError, match="cannot be converted to int64"):
        dg.tensor([1e30], dtype="int64")
    with pytest.raises(TypeError, match="real numbers"):
        dg.tensor([1 + 2j])
    np.testing.assert_array_equal(dg.tensor([1.0, -2.0], dtype="int64").numpy(), [1, -2])


def test_big_endian_float64_keeps_its_precision():
    a = np.array([1.0 + 1e-12, 2.0]).astype(">f8")
    t = dg.tensor(a)
    assert t.dtype == dg.float64
    assert t.numpy()[0] == 1.0 + 1e-12


def test_bad_scalar_operands_name_the_op():
    a = dg.tensor([1.0])
    with pytest.raises(TypeError, match="add: unsupported operand type complex"):
        a + 1j
    with pytest.raises(TypeError, match="mul: unsupported operand type bool"):
        a * True
    with pytest.raises(TypeError, match="add: unsupported operand type str"):
        a + "x"
    with pytest.raises(TypeError, match="clamp: min must be a real number"):
        a.clamp(dg.tensor([0.0]))


# ---------------------------------------------------------------------------------------------
# broadcasting failures name the op and the shapes


@pytest.mark.parametrize("name,fn", [
    ("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / b), ("pow", lambda a, b: a ** b),
    ("maximum", dg.maximum), ("minimum", dg.minimum), ("compare", lambda a, b: a < b),
])
def test_broadcast_failure_names_op(name, fn):
    a, b = dg.ones(2, 3), dg.ones(4)
    with pytest.raises(ValueError, match=f"{name}: shapes \\(2, 3\\) and \\(4,\\) do not "
                                         "broadcast"):
        fn(a, b)


def test_where_broadcast_failure():
    with pytest.raises(ValueError, match="where: the shapes"):
        dg.where(dg.ones(4), dg.ones(3), 0.0)


# ---------------------------------------------------------------------------------------------
# empty, reshape, backward arguments, hooks


def test_softmax_over_empty_axis():
    for fn in (F.softmax, F.log_softmax):
        x = dg.zeros(3, 0, requires_grad=True)
        y = fn(x)
        assert y.shape == (3, 0)
        y.sum().backward()
        assert x.grad.shape == (3, 0)


def test_reshape_non_int_shape():
    with pytest.raises(TypeError, match="reshape: the shape must be ints"):
        dg.zeros(2, 3).reshape(3.0, 2)


def test_backward_grad_of_wrong_kind():
    a = dg.ones(2, requires_grad=True)
    with pytest.raises(TypeError, match="backward\\(grad\\): grad must be a Tensor"):
        (a * 2).backward("x")


def test_hook_replacement_gradient_keeps_dtype():
    for ret in (lambda g: np.ones(2), lambda g: [1.0, 1.0], lambda g: g.double()):
        x = dg.tensor([1.0, 5.0], requires_grad=True)
        y = x * 2
        y.register_hook(ret)
        y.sum().backward()
        assert x.grad.dtype == dg.float32
        np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])
    x = dg.tensor([1.0, 5.0], requires_grad=True)
    x.register_hook(lambda g: g.double())
    (x * 2).sum().backward()
    assert x.grad.dtype == dg.float32
    x = dg.tensor([1.0, 5.0], requires_grad=True)
    y = x * 2
    y.register_hook(lambda g: "no")
    with pytest.raises(TypeError, match="hook returned str"):
        y.sum().backward()


# ---------------------------------------------------------------------------------------------
# dtype and type errors of the layers and losses name the op and the Tensor conversion


@pytest.mark.parametrize("name,fn", [
    ("relu", lambda a: a.relu()),
    ("sigmoid", F.sigmoid),
    ("softmax", F.softmax),
    ("matmul", lambda a: a @ a.T),
    ("dense", lambda a: F.dense(a, dg.ones(2, 2, dtype="int64"))),
    ("mse", lambda a: L.mse(a, a)),
    ("cross_entropy", lambda a: L.cross_entropy(a, [0])),
])
def test_int64_tensor_into_float_op(name, fn):
    a = dg.tensor([[1, 2]], dtype="int64")
    with pytest.raises(TypeError, match=f"{name}: .*int64.*\\.float\\(\\)"):
        fn(a)


def test_dense_argument_types():
    x = dg.ones(2, 3)
    with pytest.raises(TypeError, match="dense: w and b must be deepgrad Tensors"):
        F.dense(x, np.ones((3, 4), np.float32))
    with pytest.raises(TypeError, match="dense: w and b must be deepgrad Tensors"):
        F.dense(x, dg.ones(3, 4), np.ones(4, np.float32))
    with pytest.raises(TypeError, match="dense: alpha must be a real number"):
        F.dense(x, dg.ones(3, 4), activation="leaky_relu", alpha="x")


def test_norm_and_dropout_argument_types():
    x = dg.randn(4, 3)
    with pytest.raises(TypeError, match="batch_norm: operands have dtypes float32 and float64"):
        F.batch_norm(x, dg.ones(3, dtype="float64"))
    with pytest.raises(TypeError, match="layer_norm: operands have dtypes"):
        F.layer_norm(x, dg.ones(3, dtype="float64"))
    with pytest.raises(TypeError, match="batch_norm: expected a deepgrad Tensor"):
        F.batch_norm(np.ones((4, 3)))
    with pytest.raises(TypeError, match="layer_norm: expected a deepgrad Tensor"):
        F.layer_norm(np.ones((4, 3)))
    with pytest.raises(TypeError, match="dropout: expected a deepgrad Tensor"):
        F.dropout(np.ones(3), 0.5)
    with pytest.raises(TypeError, match="dropout: p must be a number"):
        F.dropout(x, "a")


def test_cross_entropy_label_edge_cases():
    with pytest.raises(ValueError, match="cross_entropy: .*no classes"):
        L.cross_entropy(dg.zeros(2, 0), [0, 0])
    with pytest.raises(ValueError, match="label 18446744073709551615 at index 1 is out of range"):
        L.cross_entropy(dg.zeros(2, 3), np.array([0, 2 ** 64 - 1], np.uint64))


# ---------------------------------------------------------------------------------------------
# views share the version counter of the tensor owning the memory (reshape, basic indexing,
# a copy-free transpose, detach): an in-place update through either side used to go unseen


def _saved_b(shape=(2,)):
    x = dg.ones(*shape, requires_grad=True)
    b = dg.tensor(np.arange(1.0, 1.0 + int(np.prod(shape)), dtype=np.float32).reshape(shape))
    return x, b


@pytest.mark.parametrize("alias", [
    lambda b: b.reshape(-1),
    lambda b: b.detach(),
    lambda b: b[0],
    lambda b: b.unsqueeze(0),
    lambda b: b.detach().reshape(-1)[:1],
])
def test_update_through_a_view_of_a_saved_tensor_is_caught(alias):
    x, b = _saved_b((1, 2))
    z = (x * b).sum()
    alias(b).fill_(0.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        z.backward()


def test_update_of_the_base_of_a_saved_view_is_caught():
    x, b = _saved_b((1, 2))
    z = (x.reshape(-1) * b.reshape(-1)).sum()
    b.mul_(0.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        z.backward()


def test_dense_layer_input_reshaped_then_modified_is_caught():
    from deepgrad import nn
    layer = nn.Linear(3, 2) if hasattr(nn, "Linear") else nn.Dense(3, 2)
    x = dg.randn(2, 4, 3)            # (..., in): the layer reshapes it to (8, 3), a view
    y = layer(x).sum()
    x.mul_(0.0)
    with pytest.raises(RuntimeError, match="saved by op 'dense'"):
        y.backward()


def test_update_of_a_copy_is_not_reported():
    x, b = _saved_b((2, 2))
    z = (x * b).sum()
    b[[0, 1]].fill_(0.0)               # advanced indexing copies
    b.transpose().fill_(0.0)           # a real transpose copies
    z.backward()
    np.testing.assert_array_equal(x.grad.numpy(), b.numpy())


def test_output_changed_through_a_view_is_caught():
    x = dg.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()
    z = y.sum()
    with dg.no_grad():
        y.reshape(-1).mul_(0.0)
    with pytest.raises(RuntimeError, match="output .* of op 'exp' was modified in place"):
        z.backward()


# ---------------------------------------------------------------------------------------------
# creation, iteration, max with NaN, gradcheck without inputs to check


def test_creation_arguments():
    with pytest.raises(ValueError, match="invalid shape"):
        dg.ones(True)
    with pytest.raises(MemoryError, match="cannot allocate a tensor of shape"):
        dg.zeros(2 ** 40, 2 ** 40)
    with pytest.raises(TypeError, match="full\\(\\): the fill value must be a real number"):
        dg.full((2,), "x")
    with pytest.raises(ValueError, match="arange\\(\\): step must be nonzero"):
        dg.arange(0, 1, 0)


def test_iteration_and_int():
    with pytest.raises(TypeError, match="iteration over a 0-d tensor"):
        list(dg.tensor(1.0))           # used to be [] silently
    assert [float(v) for v in dg.tensor([1.0, 2.0])] == [1.0, 2.0]
    assert int(dg.tensor(2.7)) == 2


def test_max_with_nan_sends_the_gradient_to_the_nan():
    a = dg.tensor([1.0, np.nan, 2.0], requires_grad=True)
    a.max().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.0, 1.0, 0.0])   # was [nan, nan, nan]
    b = dg.tensor([[1.0, 3.0, 3.0], [np.nan, 0.0, 5.0]], requires_grad=True)
    b.max(1).sum().backward()
    np.testing.assert_array_equal(b.grad.numpy(), [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])


def test_gradcheck_without_an_input_to_check():
    with pytest.raises(ValueError, match="gradcheck: no input requires grad"):
        dg.gradcheck(lambda a: a * 2, dg.tensor([1.0]))


# ---------------------------------------------------------------------------------------------
# hooks and hand-set .grad


def test_hook_modifying_its_gradient_in_place_is_refused():
    # add's backward hands one array to both inputs: x2's hook doubling it in place also
    # changed x1's gradient (a.grad was 10 instead of 1)
    w = dg.tensor([1.0, 1.0])
    a = dg.tensor([1.0, 2.0], requires_grad=True)
    c = dg.tensor([1.0, 2.0], requires_grad=True)
    x1, x2 = a * 1, c * 1
    x2.register_hook(lambda g: g.mul_(10))
    with pytest.raises(ValueError, match="mul_: this tensor's memory is read-only.*g \\* 2"):
        ((x1 + x2) * w).sum().backward()
    a.grad = c.grad = None
    x1, x2 = a * 1, c * 1
    x2.register_hook(lambda g: g * 10)
    ((x1 + x2) * w).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [1.0, 1.0])
    np.testing.assert_array_equal(c.grad.numpy(), [10.0, 10.0])


@pytest.mark.parametrize("bad", [dg.ones(2, 2), dg.ones(3), np.ones(2),
                                 dg.ones(2, dtype="int64")])
def test_hand_set_grad_that_cannot_accumulate(bad):
    a = dg.tensor([1.0, 2.0], requires_grad=True)
    a.grad = bad                       # (2, 2) used to broadcast the gradient into it silently
    with pytest.raises(TypeError, match="cannot accumulate the gradient .* set .grad = None"):
        (a * 2).sum().backward()


# ---------------------------------------------------------------------------------------------
# batch norm's running statistics, eps, momentum; activation alpha; dropout of integers


def test_batch_norm_running_statistics_checked_before_any_update():
    x = dg.randn(4, 3) + 5.0
    rm = np.zeros(3, np.float32)
    rv = np.ones(3, np.float32)
    rv.flags.writeable = False        # running_mean used to be updated before rv failed
    with pytest.raises(ValueError, match="batch_norm: running_var is read-only"):
        F.batch_norm(x, running_mean=rm, running_var=rv)
    np.testing.assert_array_equal(rm, 0.0)
    with pytest.raises(TypeError, match="running_mean has dtype float64 but x has float32"):
        F.batch_norm(x, running_mean=dg.zeros(3, dtype="float64"),
                     running_var=dg.ones(3, dtype="float64"), training=False)
    with pytest.raises(TypeError, match="running_mean has dtype int64"):
        F.batch_norm(x, running_mean=np.zeros(3, np.int64), running_var=np.ones(3, np.float32))
    with pytest.raises(TypeError, match="running_mean must be a Tensor"):
        F.batch_norm(x, running_mean=[0.0] * 3, running_var=np.ones(3, np.float32))


def test_batch_norm_running_update_bumps_the_version():
    rm, rv = dg.zeros(3), dg.ones(3)
    F.batch_norm(dg.randn(4, 3), running_mean=rm, running_var=rv)
    assert rm._version == 1 and rv._version == 1
    F.batch_norm(dg.randn(4, 3), running_mean=rm, running_var=rv, training=False)
    assert rm._version == 1


def test_norm_eps_momentum_alpha_dropout_arguments():
    x = dg.randn(4, 3)
    with pytest.raises(ValueError, match="batch_norm: eps must be a finite number >= 0"):
        F.batch_norm(x, eps=-1e-5)
    with pytest.raises(TypeError, match="batch_norm: momentum must be a number"):
        F.batch_norm(x, momentum="a")
    with pytest.raises(ValueError, match="batch_norm: momentum must be a finite number in"):
        F.batch_norm(x, momentum=1.5)
    with pytest.raises(TypeError, match="layer_norm: eps must be a number"):
        F.layer_norm(x, eps="x")
    with pytest.raises(TypeError, match="leaky_relu: alpha must be a number"):
        F.leaky_relu(x, "x")
    with pytest.raises(TypeError, match="elu: alpha must be a number"):
        F.activation(x, "elu", "x")
    with pytest.raises(TypeError, match="dropout: x is a int64 tensor"):
        F.dropout(dg.tensor([1, 2], dtype="int64"), 0.5)


def test_int_tensor_with_float_array_operand_is_not_truncated():
    a = dg.tensor([1, 2], dtype="int64")
    with pytest.raises(TypeError, match="add: an int64 tensor with a list of non-integer"):
        a + [0.5, 0.5]               # used to give [1, 2]: the operand was cast to int64
    with pytest.raises(TypeError, match="mul: an int64 tensor with a ndarray"):
        a * np.array([0.5, 0.5])
    np.testing.assert_array_equal((a + [1, 1]).numpy(), [2, 3])
    np.testing.assert_array_equal((a + 0.5).numpy(), [1.5, 2.5])


def test_compare_with_none_is_false_like_pytorch():
    t = dg.ones(2)
    assert (t == None) is False      # noqa: E711
    assert (t != None) is True       # noqa: E711


def test_hand_set_ndarray_grad_on_the_dense_fast_path():
    w = dg.ones(3, 4, requires_grad=True)
    w.grad = np.ones((3, 4), np.float32)   # grad_sink read .grad.data.dtype: AttributeError
    with pytest.raises(TypeError, match="cannot accumulate the gradient .* ndarray"):
        F.dense(dg.ones(2, 3), w).sum().backward()


def test_in_place_update_from_a_value_that_requires_grad_is_refused():
    # x[0] = v, x.add_(v), x.copy_(v) kept v's values but not its gradient: a later loss on x
    # left v.grad None without a word
    v = dg.tensor([5.0], requires_grad=True)
    for op, update in (("__setitem__", lambda x: x.__setitem__(slice(0, 1), v)),
                       ("add_", lambda x: x.add_(v)), ("copy_", lambda x: x.copy_(v))):
        x = dg.tensor([1.0, 2.0, 3.0])
        with pytest.raises(RuntimeError, match=f"{op}: the value requires grad"):
            update(x)
        np.testing.assert_array_equal(x.numpy(), [1.0, 2.0, 3.0])
        assert x._version == 0
        with dg.no_grad():              # a manual update is still allowed
            update(x)
        assert x._version == 1


def test_from_numpy_byte_swapped_names_the_byte_order():
    with pytest.raises(ValueError, match="from_numpy: the array is not in the machine's byte"):
        dg.from_numpy(np.arange(4.0).astype(">f8"))   # said "convert with astype(float32)"


def test_to_int64_refuses_nan_and_inf():
    with pytest.raises(ValueError, match="to\\(int64\\): the value .* cannot be converted"):
        dg.tensor([np.nan, 1.0]).to("int64")      # was -9223372036854775808 silently
    np.testing.assert_array_equal(dg.tensor([1.7, -2.2]).to("int64").numpy(), [1, -2])


@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_reduction_keepdims_must_be_a_bool(op):
    t = dg.tensor([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(TypeError, match=rf"{op}\(\): keepdims must be True or False.*'no'"):
        getattr(t, op)(axis=0, keepdims="no")
    assert getattr(t, op)(axis=0, keepdims=np.bool_(True)).shape == (1, 2)
    assert getattr(t, op)(axis=0, keepdims=False).shape == (2,)
