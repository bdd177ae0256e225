"""deepgrad.functional: activations, softmax, the fused dense node, normalisation, dropout."""
import numpy as np
import pytest

import deepgrad as dg
import deepgrad.functional as F

RNG = np.random.default_rng(99)


def T(*shape, grad=True):
    return dg.tensor(RNG.standard_normal(shape), requires_grad=grad)


def _sig(x):
    return 1 / (1 + np.exp(-x))


REF = {
    "identity": lambda x: x,
    "step": lambda x: (x > 0).astype(x.dtype),
    "sigmoid": _sig,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "selu": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x)),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "silu": lambda x: x * _sig(x),
    "softsign": lambda x: x / (1 + np.abs(x)),
}


@pytest.mark.parametrize("name", F.ACTIVATIONS)
def test_activation_forward_and_gradcheck(name):
    x = T(4, 7)
    fn = getattr(F, name)
    y = fn(x)
    if name in REF:
        np.testing.assert_allclose(y.numpy(), REF[name](x.numpy()), rtol=1e-10, atol=1e-12)
    assert y.grad_fn is not None and y.grad_fn.name == name
    if name == "step":
        y.sum().backward()
        np.testing.assert_array_equal(x.grad.numpy(), 0.0)
    else:
        dg.gradcheck(fn, [x], atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(F.activation(x, name).numpy(), y.numpy(), rtol=0)


def test_gelu_matches_torch():
    torch = pytest.importorskip("torch")
    x = T(50)
    ref = torch.nn.functional.gelu(torch.tensor(x.numpy())).numpy()
    np.testing.assert_allclose(F.gelu(x).numpy(), ref, rtol=1e-6, atol=1e-7)


def test_activation_alpha_and_aliases():
    x = T(3, 3)
    np.testing.assert_allclose(F.leaky_relu(x, 0.2).numpy(),
                               np.where(x.numpy() > 0, x.numpy(), 0.2 * x.numpy()), rtol=1e-12)
    np.testing.assert_allclose(F.elu(x, 0.5).numpy(),
                               np.where(x.numpy() > 0, x.numpy(), 0.5 * np.expm1(x.numpy())),
                               rtol=1e-12)
    dg.gradcheck(lambda x: F.leaky_relu(x, 0.2), [x], atol=1e-6, rtol=1e-5)
    dg.gradcheck(lambda x: F.elu(x, 0.5), [x], atol=1e-6, rtol=1e-5)
    np.testing.assert_array_equal(F.activation(x, "swish").numpy(), F.silu(x).numpy())
    with pytest.raises(ValueError, match="unknown activation 'relu6'.*sigmoid"):
        F.activation(x, "relu6")


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_and_log_softmax(axis):
    x = T(3, 4, 5)
    xv = x.numpy()
    e = np.exp(xv - xv.max(axis=axis, keepdims=True))
    ref = e / e.sum(axis=axis, keepdims=True)
    np.testing.assert_allclose(F.softmax(x, axis).numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(F.log_softmax(x, axis).numpy(), np.log(ref), rtol=1e-10)
    dg.gradcheck(lambda x: F.softmax(x, axis), [x], atol=1e-6, rtol=1e-5)
    dg.gradcheck(lambda x: F.log_softmax(x, axis), [x], atol=1e-6, rtol=1e-5)


def test_softmax_is_stable_for_large_logits():
    x = dg.tensor([[1000.0, 0.0, -1000.0]])
    np.testing.assert_allclose(F.softmax(x).numpy(), [[1.0, 0.0, 0.0]], atol=1e-7)
    assert np.isfinite(F.log_softmax(x).numpy()).all()


@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh", "relu", "leaky_relu",
                                        "gelu", "softplus", "silu", "elu"])
@pytest.mark.parametrize("bias", [True, False])
def test_dense_matches_composition_and_gradcheck(activation, bias):
    x, w = T(6, 5), T(5, 3)
    b = T(3) if bias else None
    y = F.dense(x, w, b, activation)
    assert y.grad_fn.name == "dense"
    z = x.numpy() @ w.numpy() + (b.numpy() if bias else 0)
    np.testing.assert_allclose(y.numpy(), F.activation(dg.tensor(z), activation).numpy(),
                               rtol=1e-10, atol=1e-12)
    ins = [x, w, b] if bias else [x, w]
    fn = (lambda x, w, b: F.dense(x, w, b, activation)) if bias else \
        (lambda x, w: F.dense(x, w, None, activation))
    dg.gradcheck(fn, ins, atol=1e-6, rtol=1e-5)


def test_dense_accumulates_into_existing_leaf_grad_in_place():
    x, w, b = T(4, 3, grad=False), T(3, 2), T(2)
    arena = np.zeros(8)
    w.grad = dg.Tensor.__new__(dg.Tensor)
    from deepgrad.tensor import _new
    w.grad = _new(arena[:6].reshape(3, 2), w._be)
    b.grad = _new(arena[6:], b._be)
    for _ in range(2):
        F.dense(x, w, b, "tanh").sum().backward()
    z = np.tanh(x.numpy() @ w.numpy() + b.numpy())
    dz = 1 - z ** 2
    np.testing.assert_allclose(arena[:6].reshape(3, 2), 2 * x.numpy().T @ dz, rtol=1e-12)
    np.testing.assert_allclose(arena[6:], 2 * dz.sum(0), rtol=1e-12)


def test_dense_weight_shared_by_two_layers_gets_both_contributions():
    x, w = T(4, 3, grad=False), T(3, 3)
    f = lambda w: F.dense(F.dense(x, w, None, "tanh"), w, None, "sigmoid")
    dg.gradcheck(f, [w], atol=1e-6, rtol=1e-5)


def test_dense_with_hooked_weight_goes_through_the_engine():
    x, w = T(4, 3, grad=False), T(3, 2)
    seen = []
    w.register_hook(lambda g: seen.append(g.numpy().copy()))
    F.dense(x, w, None, "identity").sum().backward()
    np.testing.assert_allclose(seen[0], x.numpy().T @ np.ones((4, 2)), rtol=1e-12)
    np.testing.assert_allclose(w.grad.numpy(), seen[0], rtol=0)


def test_dense_float32_against_float64():
    x = RNG.standard_normal((64, 32)).astype(np.float32)
    w = RNG.standard_normal((32, 16)).astype(np.float32)
    y = F.dense(dg.tensor(x), dg.tensor(w), None, "relu").numpy()
    np.testing.assert_allclose(y, np.maximum(x.astype(np.float64) @ w, 0), rtol=1e-4, atol=1e-4)


def test_dense_shape_errors_are_clear():
    with pytest.raises(ValueError, match="dense_forward"):
        F.dense(dg.zeros(4, 3), dg.zeros(5, 2))
    with pytest.raises(TypeError):
        F.dense(dg.zeros(4, 3), dg.zeros(3, 2, dtype="float64"))


def test_batch_norm_training_matches_torch_and_gradcheck():
    torch = pytest.importorskip("torch")
    x, g, b = T(8, 4), T(4), T(4)
    rm, rv = np.zeros(4), np.ones(4)
    y = F.batch_norm(x, g, b, rm, rv, training=True, momentum=0.1, eps=1e-5)
    tx = torch.tensor(x.numpy(), requires_grad=True)
    trm, trv = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    ty = torch.nn.functional.batch_norm(tx, trm, trv, torch.tensor(g.numpy()),
                                        torch.tensor(b.numpy()), training=True, momentum=0.1,
                                        eps=1e-5)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-12)
    dg.gradcheck(lambda x, g, b: F.batch_norm(x, g, b, None, None, True), [x, g, b],
                 atol=1e-6, rtol=1e-5)


def test_batch_norm_eval_uses_running_stats():
    x, g, b = T(5, 3), T(3), T(3)
    rm, rv = RNG.standard_normal(3), RNG.uniform(0.5, 2.0, 3)
    y = F.batch_norm(x, g, b, rm, rv, training=False, eps=1e-5)
    ref = (x.numpy() - rm) / np.sqrt(rv + 1e-5) * g.numpy() + b.numpy()
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12)
    dg.gradcheck(lambda x, g, b: F.batch_norm(x, g, b, rm, rv, False), [x, g, b],
                 atol=1e-6, rtol=1e-5)


def test_batch_norm_errors():
    with pytest.raises(ValueError, match="more than one sample"):
        F.batch_norm(dg.zeros(1, 3), training=True)
    with pytest.raises(ValueError, match="3 features"):
        F.batch_norm(dg.zeros(4, 3), dg.ones(2))


def test_layer_norm_matches_reference_and_gradcheck():
    x, g, b = T(3, 2, 5), T(5), T(5)
    xv = x.numpy()
    ref = (xv - xv.mean(-1, keepdims=True)) / np.sqrt(xv.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(F.layer_norm(x, g, b).numpy(), ref * g.numpy() + b.numpy(),
                               rtol=1e-10)
    dg.gradcheck(lambda x, g, b: F.layer_norm(x, g, b), [x, g, b], atol=1e-6, rtol=1e-5)
    dg.gradcheck(lambda x: F.layer_norm(x), [x], atol=1e-6, rtol=1e-5)


def test_dropout_is_inverted_and_seeded():
    x = dg.ones(200, 50, requires_grad=True)
    dg.manual_seed(3)
    y = F.dropout(x, 0.3)
    kept = y.numpy() != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), y.numpy(), rtol=0)
    dg.manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x, 0.3).numpy(), y.numpy())
    assert F.dropout(x, 0.3, training=False) is x
    with pytest.raises(ValueError, match="p must be in"):
        F.dropout(x, 1.5)


def test_dense_accepts_array_input_in_the_weight_dtype():
    w = dg.ones(3, 2, requires_grad=True)
    y = F.dense([[1, 2, 3]], w, None, "identity")
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), [[6.0, 6.0]])
