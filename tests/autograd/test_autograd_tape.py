"""Tape semantics: the course examples, shared inputs, grad modes, errors, hooks, in-place checks."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import autograd


def test_course_example_linear_squared_error():
    # y = w*x + b, L = (y - 9)^2 with w = 2, b = 1, x = 3: y = 7, dL/dy = -4.
    w = dg.tensor(2.0, requires_grad=True)
    b = dg.tensor(1.0, requires_grad=True)
    x = dg.tensor(3.0)
    loss = (w * x + b - 9) ** 2
    loss.backward()
    assert loss.item() == pytest.approx(4.0, abs=1e-6)
    assert w.grad.item() == pytest.approx(-12.0, abs=1e-6)
    assert b.grad.item() == pytest.approx(-4.0, abs=1e-6)
    assert x.grad is None


def test_dag_with_reused_input_follows_the_chain_rule():
    # y_hat = w1 * (z1 + z2), z2 = w2 * (z1 + x): z1 reaches y_hat along two paths.
    w1v, w2v, z1v, xv = 0.7, -1.3, 0.4, 2.5
    w1, w2, z1 = (dg.tensor(v, dtype="float64", requires_grad=True) for v in (w1v, w2v, z1v))
    x = dg.tensor(xv, dtype="float64", requires_grad=True)
    z2 = w2 * (z1 + x)
    y_hat = w1 * (z1 + z2)
    y_hat.backward()
    z2v = w2v * (z1v + xv)
    assert y_hat.item() == pytest.approx(w1v * (z1v + z2v), rel=1e-12)
    assert w1.grad.item() == pytest.approx(z1v + z2v, rel=1e-12)
    assert w2.grad.item() == pytest.approx(w1v * (z1v + xv), rel=1e-12)
    assert z1.grad.item() == pytest.approx(w1v * (1 + w2v), rel=1e-12)
    assert x.grad.item() == pytest.approx(w1v * w2v, rel=1e-12)


def test_weight_used_twice_gets_both_contributions():
    w = dg.tensor(3.0, dtype="float64", requires_grad=True)
    y = w * w + 2 * w  # dy/dw = 2w + 2
    y.backward()
    assert w.grad.item() == pytest.approx(8.0)
    x = dg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    (x + x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 1 + 2 * np.arange(6.0).reshape(2, 3), rtol=0)


def test_leaf_grad_accumulates_until_zeroed():
    w = dg.tensor([1.0, 2.0], requires_grad=True)
    for _ in range(3):
        (w * 2).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [6.0, 6.0])
    w.grad = None
    (w * w).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [2.0, 4.0])


def test_grad_of_shared_add_inputs_are_independent_arrays():
    # add's backward hands the same array to both inputs; the leaves must not alias it.
    a = dg.tensor([1.0, 2.0], requires_grad=True)
    b = dg.tensor([3.0, 4.0], requires_grad=True)
    (a + b).sum().backward()
    (a * 3).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [4.0, 4.0])
    np.testing.assert_allclose(b.grad.numpy(), [1.0, 1.0])


def test_backward_with_explicit_grad_for_non_scalar():
    x = dg.tensor([[1.0, 2.0], [3.0, 4.0]], dtype="float64", requires_grad=True)
    y = x * x
    g = np.array([[1.0, 0.5], [-1.0, 2.0]])
    y.backward(g)
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy() * g)
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(np.ones(3))


def test_non_scalar_backward_without_grad_is_an_error():
    x = dg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2).backward()


def test_backward_of_tensor_without_grad_is_an_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        dg.tensor(1.0).backward()


def test_second_backward_through_freed_graph_is_an_error():
    x = dg.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = dg.tensor([1.0, 2.0], dtype="float64", requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    xv = np.array([1.0, 2.0])
    np.testing.assert_allclose(x.grad.numpy(), 2 * (np.exp(xv) * (1 + xv)), rtol=1e-12)


def test_no_grad_and_enable_grad():
    x = dg.tensor([1.0], requires_grad=True)
    with dg.no_grad():
        y = x * 2
        assert not dg.is_grad_enabled()
        with dg.enable_grad():
            z = x * 2
    assert dg.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None

    @dg.no_grad()
    def f(t):
        return t * 3
    assert not f(x).requires_grad


def test_no_grad_restores_mode_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with dg.no_grad():
            1 / 0
    assert dg.is_grad_enabled()


def test_detach_cuts_the_tape():
    x = dg.tensor([2.0], requires_grad=True)
    y = x * x.detach()  # d/dx = x (the detached factor is a constant)
    y.backward(np.ones(1))
    assert x.grad.item() == pytest.approx(2.0)


def test_hooks_see_and_replace_gradients():
    x = dg.tensor([1.0, 2.0], dtype="float64", requires_grad=True)
    h = x * 3
    seen = []
    handle = h.register_hook(lambda g: seen.append(g.numpy().copy()))
    h.register_hook(lambda g: g * 10)  # replace: dL/dh scaled by 10
    (h * h).sum().backward()
    np.testing.assert_allclose(seen[0], 2 * 3 * np.array([1.0, 2.0]))
    np.testing.assert_allclose(x.grad.numpy(), 10 * 3 * 2 * 3 * np.array([1.0, 2.0]))
    handle.remove()


def test_hook_on_a_reused_tensor_sees_the_summed_gradient():
    x = dg.tensor([1.0], dtype="float64", requires_grad=True)
    h = x * 2
    seen = []
    h.register_hook(lambda g: seen.append(g.item()))
    (h * 3 + h * 5).sum().backward()
    assert seen == [8.0]


def test_leaf_hook_runs_before_accumulation():
    w = dg.tensor([1.0, 1.0], requires_grad=True)
    w.register_hook(lambda g: g * 0.5)
    (w * 4).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [2.0, 2.0])


def test_retain_grad_keeps_intermediate_gradient():
    x = dg.tensor([1.0, -2.0], dtype="float64", requires_grad=True)
    h = x * 2
    h.retain_grad()
    y = h * h
    y.sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * h.numpy())
    assert y.grad is None


def test_in_place_modification_of_a_saved_tensor_is_detected():
    a = dg.tensor([1.0, 2.0], requires_grad=True)
    b = dg.tensor([3.0, 4.0])
    y = (a * b).sum()  # mul saves b
    b += 1
    with pytest.raises(RuntimeError, match="modified in place.*Hint"):
        y.backward()


def test_in_place_on_a_tensor_that_requires_grad_is_refused():
    w = dg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        w += 1
    with pytest.raises(RuntimeError, match="in-place"):
        w[0] = 5.0
    with dg.no_grad():  # manual gradient descent
        w -= 0.5 * dg.tensor([2.0, 2.0])
    np.testing.assert_allclose(w.numpy(), [0.0, 1.0])


def test_manual_gradient_descent_converges_on_the_course_example():
    w = dg.tensor(2.0, requires_grad=True)
    b = dg.tensor(1.0, requires_grad=True)
    x = dg.tensor(3.0)
    for _ in range(200):
        loss = (w * x + b - 9) ** 2
        w.grad = b.grad = None
        loss.backward()
        with dg.no_grad():
            w -= 0.01 * w.grad
            b -= 0.01 * b.grad
    assert (w * x + b).item() == pytest.approx(9.0, abs=1e-3)


def test_deep_graph_does_not_hit_the_recursion_limit():
    x = dg.tensor([1.0], dtype="float64", requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.sum().backward()
    assert x.grad.item() == pytest.approx(1.0001 ** 5000, rel=1e-9)


def test_anomaly_mode_names_op_and_module_in_forward():
    x = dg.tensor([-1.0, 1.0], requires_grad=True)
    with dg.detect_anomaly():
        autograd._push_module("model.layers.3")
        try:
            with pytest.raises(autograd.AnomalyError, match="'log'.*'model.layers.3'.*forward"):
                x.log()
        finally:
            autograd._pop_module()
    assert not dg.is_anomaly_enabled()
    assert autograd.current_module() is None
    x.log()  # outside anomaly mode, NaN passes silently (numpy warnings aside)


def test_anomaly_mode_catches_nan_in_backward():
    x = dg.tensor([0.0], requires_grad=True)
    with dg.detect_anomaly():
        y = x.sqrt()  # forward is finite (0), backward divides by 0
        with pytest.raises(autograd.AnomalyError, match="backward of op 'sqrt'"):
            y.sum().backward()


def test_set_detect_anomaly_function_form():
    dg.set_detect_anomaly(True)
    try:
        assert dg.is_anomaly_enabled()
        with pytest.raises(autograd.AnomalyError):
            dg.tensor([1.0]) / 0.0
    finally:
        dg.set_detect_anomaly(False)


def test_no_grad_ops_record_nothing_and_are_fast_path():
    w = dg.tensor(np.ones((3, 2)), requires_grad=True)
    with dg.no_grad():
        y = dg.functional.dense(dg.ones(4, 3, dtype="float64"), w, None, "relu")
    assert y.grad_fn is None and not y.requires_grad


def test_backward_frees_intermediates_but_keeps_the_error_for_a_second_backward():
    import gc
    import weakref
    x = dg.tensor(np.ones(1000), requires_grad=True)
    h = x.exp()
    ref = weakref.ref(h)
    loss = (h * 2).sum()
    del h
    loss.backward()
    gc.collect()
    assert ref() is None  # the intermediate and its array are gone while `loss` lives on
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_manual_update_between_forward_and_backward_is_detected_for_dense():
    x = dg.ones(2, 3)
    w = dg.ones(3, 2, requires_grad=True)
    loss = dg.functional.dense(x, w, None, "tanh").sum()
    with dg.no_grad():
        w -= 0.1
    with pytest.raises(RuntimeError, match="saved by op 'dense'.*modified in place"):
        loss.backward()


def test_plain_leaf_accumulates_each_arrival_and_hooked_leaf_sees_the_sum():
    # backward() adds into a hook-free leaf's .grad as each gradient arrives (no dependency
    # count for it); a leaf with a hook still waits for all its uses and sees their sum once.
    a = dg.tensor(np.arange(3.0), requires_grad=True)
    h = dg.tensor(np.arange(1.0, 4.0), requires_grad=True)
    seen = []
    h.register_hook(lambda g: seen.append(g.numpy().copy()))
    ((a + a) * h + h * a + h).sum().backward()
    av, hv = np.arange(3.0), np.arange(1.0, 4.0)
    np.testing.assert_allclose(a.grad.numpy(), 3 * hv, rtol=1e-15)
    np.testing.assert_allclose(h.grad.numpy(), 3 * av + 1, rtol=1e-15)
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], 3 * av + 1, rtol=1e-15)
    a.grad.data[:] = 0.0  # the leaf owns its gradient: no other tensor shares that array
    np.testing.assert_allclose(h.grad.numpy(), 3 * av + 1, rtol=1e-15)


def test_hook_registered_on_a_leaf_during_backward_still_gets_every_gradient():
    a = dg.tensor([1.0, 2.0], dtype="float64", requires_grad=True)
    b = dg.tensor([3.0, 5.0], dtype="float64", requires_grad=True)
    seen = []
    y = a * b
    y.register_hook(lambda g: (b.register_hook(lambda gb: seen.append(gb.numpy().copy())), None)[1])
    (y + b * b).sum().backward()
    np.testing.assert_allclose(b.grad.numpy(), [1.0 + 6.0, 2.0 + 10.0], rtol=1e-15)
    np.testing.assert_allclose(a.grad.numpy(), [3.0, 5.0], rtol=1e-15)
    assert seen  # the late hook ran on what arrived after it was registered
