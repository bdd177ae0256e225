"""Bad input to every elementwise / norm / optimizer entry point raises a clear Python error."""
import numpy as np
import pytest

from deepgrad import _C

BAD_DTYPES = [np.int32, np.int64, np.float16, np.bool_, np.complex64]
X = np.linspace(-1, 1, 12).reshape(3, 4)


def unary_calls(x):
    """Every entry point that reads one float array, called with x in that slot."""
    good = np.zeros(x.shape if hasattr(x, "shape") else (3, 4))
    return {
        "act_forward": lambda: _C.act_forward(x, "relu"),
        "act_backward.dy": lambda: _C.act_backward(x, good, None, "relu"),
        "act_backward.z": lambda: _C.act_backward(good, x, None, "relu"),
        "softmax": lambda: _C.softmax(x),
        "log_softmax": lambda: _C.log_softmax(x),
        "softmax_backward": lambda: _C.softmax_backward(x, good),
        "log_softmax_backward": lambda: _C.log_softmax_backward(good, x),
        "loss_forward": lambda: _C.loss_forward("mse", x, good),
        "loss_backward": lambda: _C.loss_backward("mse", good, x, "sum", 1.0),
        "segment_norms": lambda: _C.segment_norms(x, np.array([0, np.size(x)])),
        "sgd_step.grad": lambda: _C.sgd_step(good, x, None, 0.1),
        "adam_step.grad": lambda: _C.adam_step(good, x, np.zeros_like(good), np.zeros_like(good), 1),
        "rmsprop_step.grad": lambda: _C.rmsprop_step(good, x, np.zeros_like(good)),
    }


def inplace_calls(buf):
    """Every entry point that writes a float array in place, called with buf in that slot."""
    shape = buf.shape if hasattr(buf, "shape") else (3, 4)
    z = lambda: np.zeros(shape)  # noqa: E731
    return {
        "scale_": lambda: _C.scale_(buf, 2.0),
        "clip_value_": lambda: _C.clip_value_(buf, 1.0),
        "fill_": lambda: _C.fill_(buf, 1.0),
        "sgd_step.param": lambda: _C.sgd_step(buf, z(), None, 0.1),
        "sgd_step.momentum_buf": lambda: _C.sgd_step(z(), z(), buf, 0.1, 0.9),
        "adam_step.param": lambda: _C.adam_step(buf, z(), z(), z(), 1),
        "adam_step.m": lambda: _C.adam_step(z(), z(), buf, z(), 1),
        "adam_step.v": lambda: _C.adam_step(z(), z(), z(), buf, 1),
        "rmsprop_step.param": lambda: _C.rmsprop_step(buf, z(), z()),
        "rmsprop_step.square_avg": lambda: _C.rmsprop_step(z(), z(), buf),
        "rmsprop_step.momentum_buf": lambda: _C.rmsprop_step(z(), z(), z(), momentum=0.9, momentum_buf=buf),
        "rmsprop_step.grad_avg": lambda: _C.rmsprop_step(z(), z(), z(), centered=True, grad_avg=buf),
    }


@pytest.mark.parametrize("dtype", BAD_DTYPES)
@pytest.mark.parametrize("which", list(unary_calls(X)))
def test_non_float_input_is_type_error(dtype, which):
    with pytest.raises(TypeError, match="float32 or float64"):
        unary_calls(X.astype(dtype))[which]()


@pytest.mark.parametrize("dtype", BAD_DTYPES)
@pytest.mark.parametrize("which", list(inplace_calls(X)))
def test_non_float_inplace_is_type_error(dtype, which):
    with pytest.raises(TypeError, match="float32 or float64"):
        inplace_calls(X.astype(dtype))[which]()


@pytest.mark.parametrize("which", list(unary_calls(X)) + list(inplace_calls(X)))
def test_non_array_is_type_error(which):
    calls = {**unary_calls([[1.0, 2.0]]), **inplace_calls([[1.0, 2.0]])}
    with pytest.raises(TypeError):
        calls[which]()


@pytest.mark.parametrize("which", list(unary_calls(X)))
def test_non_contiguous_input_is_read_correctly(which):
    big = np.random.default_rng(0).normal(size=(3, 8))
    strided = big[:, ::2]
    assert not strided.flags.c_contiguous
    a = unary_calls(strided)[which]()
    b = unary_calls(np.ascontiguousarray(strided))[which]()
    if isinstance(a, tuple):
        a, b = a[0], b[0]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("which", list(inplace_calls(X)))
def test_non_contiguous_inplace_is_rejected(which):
    strided = np.zeros((3, 8))[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        inplace_calls(strided)[which]()


@pytest.mark.parametrize("which", list(inplace_calls(X)))
def test_read_only_inplace_is_rejected(which):
    ro = np.zeros((3, 4))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        inplace_calls(ro)[which]()


@pytest.mark.parametrize("which", [k for k in unary_calls(X)
                                   if k not in ("act_forward", "softmax", "log_softmax", "segment_norms")])
def test_mismatched_dtype_is_type_error(which):
    with pytest.raises(TypeError, match="must match"):
        unary_calls(X.astype(np.float32))[which]()


@pytest.mark.parametrize("call", [
    lambda: _C.act_backward(np.zeros(3), np.zeros(4), None, "relu"),
    lambda: _C.act_backward(np.zeros(3), np.zeros(3), np.zeros(4), "relu"),
    lambda: _C.softmax_backward(np.zeros((2, 3)), np.zeros((3, 2))),
    lambda: _C.log_softmax_backward(np.zeros((2, 3)), np.zeros((2, 4))),
    lambda: _C.loss_forward("mse", np.zeros(3), np.zeros(4)),
    lambda: _C.loss_forward("bce_logits", np.zeros((2, 3)), np.zeros((3, 2))),
    lambda: _C.loss_forward("cross_entropy", np.zeros((2, 3)), np.zeros(3, np.int64)),
    lambda: _C.loss_forward("cross_entropy", np.zeros(6), np.zeros(6, np.int64)),
    lambda: _C.loss_backward("mse", np.zeros(3), np.zeros(3), "none", np.zeros(4)),
    lambda: _C.loss_backward("cross_entropy", np.zeros((2, 3)), np.zeros(2, np.int64), "none", np.zeros((2, 3))),
    lambda: _C.loss_backward("mse", np.zeros(3), np.zeros(3), "mean", np.zeros(3)),
    lambda: _C.sgd_step(np.zeros(3), np.zeros(4), None, 0.1),
    lambda: _C.sgd_step(np.zeros(3), np.zeros(3), np.zeros(4), 0.1, 0.9),
    lambda: _C.adam_step(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros((3, 1)), 1),
    lambda: _C.rmsprop_step(np.zeros(3), np.zeros(3), np.zeros(2)),
], ids=lambda f: "")
def test_mismatched_shapes_are_value_errors(call):
    with pytest.raises(ValueError, match="shape"):
        call()


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="leaky_relu.*softsign"):
        _C.act_forward(X, "relu6")
    with pytest.raises(ValueError, match="valid names"):
        _C.act_backward(X, X, None, "Relu")
    with pytest.raises(ValueError, match="mse, bce, bce_logits, cross_entropy"):
        _C.loss_forward("hinge", X, X)
    with pytest.raises(ValueError, match="mean, sum, none"):
        _C.loss_forward("mse", X, X, "avg")
    with pytest.raises(ValueError, match="mean, sum, none"):
        _C.loss_backward("mse", X, X, "max", 1.0)


def test_act_backward_missing_arrays():
    with pytest.raises(ValueError, match="needs the pre-activation z"):
        _C.act_backward(X, None, X, "relu")
    with pytest.raises(ValueError, match="both None"):
        _C.act_backward(X, None, None, "tanh")


def test_empty_batches():
    with pytest.raises(ValueError, match="empty"):
        _C.loss_forward("mse", np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="empty"):
        _C.loss_backward("bce_logits", np.zeros((0, 3)), np.zeros((0, 3)), "sum", 1.0)
    with pytest.raises(ValueError, match="empty"):
        _C.loss_forward("cross_entropy", np.zeros((0, 3)), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="no classes"):
        _C.loss_forward("cross_entropy", np.zeros((2, 0)), np.zeros(2, np.int64))
    # Elementwise ops and optimizer steps on empty buffers are no-ops, not errors.
    assert _C.act_forward(np.zeros((0, 4), np.float32), "gelu").shape == (0, 4)
    assert _C.softmax_backward(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 4)
    e = np.zeros(0)
    _C.adam_step(e, e, np.zeros(0), np.zeros(0), 1)
    _C.sgd_step(e, e, None, 0.1)
    _C.rmsprop_step(e, e, np.zeros(0))
    _C.scale_(e, 2.0)
    with pytest.raises(ValueError, match="0-d"):
        _C.softmax(np.array(1.0))


@pytest.mark.parametrize("labels,bad", [([0, 3, 1], "3"), ([0, -1, 1], "-1"), ([0, 1, 99], "99")])
def test_cross_entropy_label_out_of_range_names_the_label(labels, bad):
    with pytest.raises(ValueError, match=rf"target\[\d\] = {bad} is not a class index in \[0, 3\)"):
        _C.loss_forward("cross_entropy", np.zeros((3, 3)), np.array(labels))
    with pytest.raises(ValueError, match="not a class index"):
        _C.loss_backward("cross_entropy", np.zeros((3, 3)), np.array(labels), "mean", 1.0)


def test_cross_entropy_labels_must_be_integers():
    with pytest.raises(TypeError, match="integers"):
        _C.loss_forward("cross_entropy", np.zeros((2, 3)), np.array([0.0, 1.0]))


def test_bce_rejects_probabilities_outside_unit_interval():
    with pytest.raises(ValueError, match=r"\[0, 1\].*bce_logits"):
        _C.loss_forward("bce", np.array([0.5, 1.5]), np.array([0.0, 1.0]))


def test_loss_backward_grad_kinds():
    with pytest.raises(TypeError, match="grad must be a float"):
        _C.loss_backward("mse", X, X, "mean", "one")
    with pytest.raises(TypeError, match="per-sample"):
        _C.loss_backward("mse", X, X, "none", 1.0)


@pytest.mark.parametrize("offsets,match", [
    ([1, 12], "offsets\\[0\\] must be 0"),
    ([0, 5, 3, 12], "non-decreasing"),
    ([0, 11], "must equal buf.size"),
    ([0, 13], "must equal buf.size"),
    ([], "S\\+1 >= 1"),
    ([[0, 12]], "1-D"),
])
def test_bad_offsets(offsets, match):
    with pytest.raises(ValueError, match=match):
        _C.segment_norms(X, np.array(offsets, dtype=np.int64))


def test_offsets_must_be_integers():
    with pytest.raises(TypeError, match="integers"):
        _C.segment_norms(X, np.array([0.0, 12.0]))


@pytest.mark.parametrize("call,match", [
    (lambda: _C.sgd_step(np.zeros(3), np.zeros(3), None, -0.1), "lr"),
    (lambda: _C.sgd_step(np.zeros(3), np.zeros(3), None, float("nan")), "lr"),
    (lambda: _C.sgd_step(np.zeros(3), np.zeros(3), None, 0.1, 0.9), "momentum_buf is None"),
    (lambda: _C.sgd_step(np.zeros(3), np.zeros(3), np.zeros(3), 0.1, 0.0, 0.0, True), "Nesterov"),
    (lambda: _C.sgd_step(np.zeros(3), np.zeros(3), np.zeros(3), 0.1, 0.9, 0.5, True), "Nesterov"),
    (lambda: _C.adam_step(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3), 0), "step counts from 1"),
    (lambda: _C.adam_step(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3), 1, beta1=1.0), "beta1"),
    (lambda: _C.adam_step(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3), 1, beta2=-0.1), "beta2"),
    (lambda: _C.adam_step(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3), 1, eps=-1.0), "eps"),
    (lambda: _C.adam_step(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3), 1, weight_decay=float("inf")), "weight_decay"),
    (lambda: _C.rmsprop_step(np.zeros(3), np.zeros(3), np.zeros(3), alpha=-0.5), "alpha"),
    (lambda: _C.rmsprop_step(np.zeros(3), np.zeros(3), np.zeros(3), centered=True), "grad_avg is None"),
    (lambda: _C.rmsprop_step(np.zeros(3), np.zeros(3), np.zeros(3), momentum=0.5), "momentum_buf is None"),
    (lambda: _C.clip_value_(np.zeros(3), -1.0), "clip must be >= 0"),
    (lambda: _C.clip_value_(np.zeros(3), float("nan")), "clip must be >= 0"),
    (lambda: _C.act_forward(X, "leaky_relu", float("nan")), "alpha"),
])
def test_bad_hyperparameters(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_optimizer_state_dtype_must_match_param():
    with pytest.raises(TypeError, match="must match"):
        _C.adam_step(np.zeros(3), np.zeros(3), np.zeros(3, np.float32), np.zeros(3), 1)


def test_nan_inf_inputs_never_crash():
    bad = np.array([[np.nan, np.inf, -np.inf, 0.0]])
    for name in ["identity", "step", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu",
                 "softplus", "silu", "softsign"]:
        y = _C.act_forward(bad, name)
        _C.act_backward(np.ones_like(bad), bad, y, name)
    _C.softmax_backward(np.ones_like(bad), _C.softmax(bad))
    _C.log_softmax_backward(np.ones_like(bad), _C.log_softmax(bad))
    assert np.isnan(_C.loss_forward("cross_entropy", bad, np.array([3])))
    _C.loss_backward("cross_entropy", bad, np.array([0]), "mean", 1.0)
    _C.loss_backward("bce_logits", bad, np.zeros_like(bad), "none", np.ones_like(bad))
    assert _C.segment_norms(bad, np.array([0, 4]))[2] == 3
