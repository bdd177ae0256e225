"""Layers: course examples, numpy float64 references, finite-difference gradients, bad inputs."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import losses, nn


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_perceptron_course_example():
    p = nn.Perceptron(2, output="sigmoid")
    p.weight.data = np.array([[-1.15], [-0.21]], dtype=np.float32)
    p.bias.data = np.array([4.1], dtype=np.float32)
    out = p(np.array([[0.0, 6.0], [6.0, 8.0]])).numpy().ravel()
    assert [round(float(v), 2) for v in out] == [0.94, 0.01]
    step = nn.Perceptron(2, output="step")
    step.load_state_dict({"weight": p.weight.numpy(), "bias": p.bias.numpy()})
    assert step(np.array([[0.0, 6.0], [6.0, 8.0]])).numpy().ravel().tolist() == [1.0, 0.0]


def test_xor_network_course_example():
    net = nn.Sequential(nn.Dense(2, 2, "sigmoid", bias=False), nn.Dense(2, 1, "sigmoid", bias=False))
    net.load_state_dict({"0.weight": np.array([[0.96, 0.89], [0.28, 0.73]]),
                         "1.weight": np.array([[0.60], [0.22]])})
    X, y = dg.data.xor()
    out = net(X)
    assert [round(float(v), 2) for v in out.numpy().ravel()] == [0.60, 0.62, 0.64, 0.66]
    bce = losses.binary_cross_entropy(out, y, reduction="none").numpy().ravel()
    assert [round(float(v), 2) for v in bce] == [0.92, 0.48, 0.44, 1.07]


@pytest.mark.parametrize("act", ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu",
                                 "selu", "gelu", "softplus", "silu", "softsign"])
def test_dense_matches_numpy_and_gradcheck(act, module_gradcheck):
    dg.manual_seed(1)
    layer = nn.Dense(4, 3, activation=act, alpha=0.2 if act in ("leaky_relu", "elu") else 0.01)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 4))
    layer.double()
    z = x @ layer.weight.numpy() + layer.bias.numpy()
    ref = {"identity": z, "sigmoid": _sig(z), "tanh": np.tanh(z), "relu": np.maximum(z, 0),
           "leaky_relu": np.where(z > 0, z, 0.2 * z), "elu": np.where(z > 0, z, 0.2 * np.expm1(z)),
           "softplus": np.log1p(np.exp(z)), "silu": z * _sig(z), "softsign": z / (1 + np.abs(z))}
    if act in ref:
        np.testing.assert_allclose(layer(x).numpy(), ref[act], rtol=1e-10, atol=1e-12)
    # keep ReLU-like kinks away from the finite-difference step
    module_gradcheck(layer, x + np.sign(x) * 0.05, atol=1e-6, rtol=1e-5)


def test_dense_without_bias_and_step_repr():
    layer = nn.Dense(3, 2, bias=False)
    assert layer.bias is None and layer.num_parameters() == 6
    assert repr(layer) == "Dense(3 -> 2, bias=False)"


def test_activation_modules_and_softmax(module_gradcheck):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 5))
    assert np.allclose(nn.ReLU()(x).numpy(), np.maximum(x, 0), atol=1e-7)
    assert np.allclose(nn.LeakyReLU(0.1)(x).numpy(), np.where(x > 0, x, 0.1 * x), atol=1e-7)
    assert np.allclose(nn.Tanh()(x).numpy(), np.tanh(x), atol=1e-6)
    assert np.array_equal(nn.Step()(x).numpy(), (x > 0).astype(np.float32))
    sm = nn.Softmax()(dg.tensor(x, dtype="float64")).numpy()
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(sm, e / e.sum(1, keepdims=True), rtol=1e-12)
    lsm = nn.LogSoftmax()(dg.tensor(x, dtype="float64")).numpy()
    np.testing.assert_allclose(lsm, np.log(e / e.sum(1, keepdims=True)), rtol=1e-12)
    module_gradcheck(nn.Sequential(nn.Dense(5, 3), nn.Softmax()), x)
    module_gradcheck(nn.Sequential(nn.Dense(5, 3), nn.LogSoftmax()), x)
    module_gradcheck(nn.Sequential(nn.Dense(5, 3), nn.GELU(), nn.SiLU(), nn.Softsign()), x)


def test_sequential_indexing_append_and_repr():
    seq = nn.Sequential(nn.Dense(2, 4, "relu"), nn.Dense(4, 1))
    assert len(seq) == 2 and isinstance(seq[0], nn.Dense) and isinstance(seq[-1], nn.Dense)
    assert isinstance(seq[0:1], nn.Sequential) and len(seq[0:1]) == 1
    seq.append(nn.Sigmoid())
    assert len(seq) == 3
    assert repr(seq) == ("Sequential(\n  (0): Dense(2 -> 4, activation=relu)\n"
                         "  (1): Dense(4 -> 1)\n  (2): Sigmoid()\n)")
    with pytest.raises(IndexError):
        seq[5]
    with pytest.raises(TypeError, match="expected a Module"):
        seq.append(lambda x: x)


def test_residual_identity_learned_and_fixed(module_gradcheck):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 4))
    dg.manual_seed(0)
    block = nn.Dense(4, 4, "tanh")
    res = nn.Residual(block)
    res.double()
    np.testing.assert_allclose(res(x).numpy(), block(x).numpy() + x, rtol=1e-12)
    module_gradcheck(res, x)
    learned = nn.Residual(nn.Dense(4, 2, "tanh"), projection=nn.Dense(4, 2, bias=False))
    module_gradcheck(learned, x)
    w = rng.normal(size=(4, 2))
    fixed = nn.Residual(nn.Dense(4, 2, "tanh"), projection=w)
    fixed.double()
    np.testing.assert_allclose(fixed(x).numpy(), fixed.block(x).numpy() + x @ w, rtol=1e-12)
    assert fixed.num_parameters() == 4 * 2 + 2  # the fixed matrix is a buffer, not trained
    assert "fixed" in fixed.state_dict()
    module_gradcheck(fixed, x)
    with pytest.raises(ValueError, match="projection"):
        nn.Residual(nn.Dense(4, 2))(x)


def test_batchnorm_train_eval_and_running_stats(module_gradcheck):
    rng = np.random.default_rng(5)
    x = rng.normal(2.0, 3.0, size=(8, 3))
    bn = nn.BatchNorm1d(3, momentum=0.1)
    bn.double()
    y = bn(x).numpy()
    ref = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * x.var(0, ddof=1), rtol=1e-12)
    bn.eval()
    ye = bn(x).numpy()
    ref_e = (x - bn.running_mean.numpy()) / np.sqrt(bn.running_var.numpy() + 1e-5)
    np.testing.assert_allclose(ye, ref_e, rtol=1e-10)
    bn.train()
    module_gradcheck(nn.Sequential(nn.Dense(3, 4), nn.BatchNorm1d(4)), x, atol=1e-5)
    with pytest.raises(ValueError, match="at least 2 samples|more than one sample"):
        nn.BatchNorm1d(3)(x[:1])


def test_batchnorm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    bn = nn.BatchNorm1d(4, momentum=0.2).double()
    tb = torch.nn.BatchNorm1d(4, momentum=0.2).double()
    for _ in range(3):
        x = rng.normal(1.0, 2.0, size=(6, 4))
        np.testing.assert_allclose(bn(x).numpy(), tb(torch.tensor(x)).detach().numpy(), rtol=1e-9,
                                   atol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), tb.running_var.numpy(), rtol=1e-12)
    bn.eval()
    tb.eval()
    x = rng.normal(size=(5, 4))
    np.testing.assert_allclose(bn(x).numpy(), tb(torch.tensor(x)).detach().numpy(), rtol=1e-9)


def test_layernorm_and_dropout(module_gradcheck):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 6))
    ln = nn.LayerNorm(6).double()
    ref = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(ln(x).numpy(), ref, rtol=1e-10, atol=1e-12)
    module_gradcheck(nn.Sequential(nn.Dense(6, 5), nn.LayerNorm(5)), x)
    drop = nn.Dropout(0.5)
    dg.manual_seed(0)
    y = drop(np.ones((200, 50), dtype=np.float32)).numpy()
    assert set(np.unique(y).tolist()) == {0.0, 2.0}
    assert abs((y == 0).mean() - 0.5) < 0.02
    drop.eval()
    assert np.array_equal(drop(x).numpy(), x)
    module_gradcheck(nn.Sequential(nn.Dense(6, 5), nn.Dropout(0.3)), x, reseed=3)


def test_default_inits_follow_the_activation():
    dg.manual_seed(0)
    relu = nn.Dense(2000, 200, "relu").weight.numpy()
    assert abs(relu.std() - np.sqrt(2.0 / 2000)) < 0.02 * np.sqrt(2.0 / 2000)
    tanh = nn.Dense(1000, 200, "tanh").weight.numpy()
    bound = np.sqrt(6.0 / 1200)  # Glorot uniform, gain 1
    assert np.abs(tanh).max() <= bound and np.abs(tanh).max() > 0.99 * bound
    sig = nn.Dense(1000, 200, "sigmoid").weight.numpy()
    assert np.abs(sig).max() <= np.sqrt(6.0 / 1200)
    lin = nn.Dense(300, 100, init="orthogonal").weight.numpy()
    np.testing.assert_allclose(lin.T @ lin, np.eye(100), atol=1e-5)
    assert np.all(nn.Dense(3, 2, init="zeros").weight.numpy() == 0)
    with pytest.raises(ValueError, match="unknown init"):
        nn.Dense(2, 2, init="bogus")
    with pytest.raises(ValueError, match="unknown activation"):
        nn.Dense(2, 2, activation="relu6")


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4), (2, 1, 3, 4)])
def test_dense_takes_one_sample_or_extra_batch_axes_like_pytorch(shape, module_gradcheck):
    # (in,) -> (out,); (..., in) -> (..., out), as torch.nn.Linear
    dg.manual_seed(3)
    layer = nn.Dense(4, 3, activation="tanh").double()
    x = np.random.default_rng(4).normal(size=shape)
    y = layer(x)
    assert y.shape == shape[:-1] + (3,)
    ref = np.tanh(x @ layer.weight.numpy() + layer.bias.numpy())
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)
    module_gradcheck(layer, x)


def test_layer_sizes_and_dtypes_are_checked():
    for make in (lambda: nn.BatchNorm1d(0), lambda: nn.LayerNorm(0), lambda: nn.Dense(2, -1),
                 lambda: nn.BatchNorm1d(2.5), lambda: nn.LSTM(3, 0)):
        with pytest.raises(ValueError, match="must be a positive int"):
            make()
    layer = nn.Dense(3, 2)  # float32
    with pytest.raises(TypeError, match=r"Dense\(3 -> 2\): input has dtype float64 but the "
                                        r"layer's parameters are float32"):
        layer(dg.tensor(np.ones((4, 3))))
    with pytest.raises(TypeError, match=r"Dense\(3 -> 2\): input has dtype float64"):
        layer(dg.tensor(np.ones(3)))
    assert layer(np.ones((4, 3))).dtype == np.float32  # arrays are converted, not rejected


def test_bad_inputs_raise_clear_errors():
    layer = nn.Dense(3, 2)
    with pytest.raises(ValueError, match=r"input has 5 features .* expects 3"):
        layer(np.zeros((4, 5)))
    with pytest.raises(ValueError, match="empty batch"):
        layer(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="positive int"):
        nn.Dense(0, 2)
    out = layer(np.zeros((4, 3)))
    with pytest.raises((ValueError, IndexError), match="label|class|range"):
        losses.cross_entropy(out, np.array([0, 1, 2, 5]))
    with pytest.raises(ValueError, match="p must be"):
        nn.Dropout(1.5)


@pytest.mark.parametrize("module", [nn.Identity(), nn.Sigmoid(), nn.Tanh(), nn.ReLU(),
                                    nn.LeakyReLU(0.2), nn.ELU(0.5), nn.SELU(), nn.GELU(),
                                    nn.Softplus(), nn.SiLU(), nn.Softsign()],
                         ids=lambda m: type(m).__name__)
def test_activation_module_gradcheck(module, module_gradcheck):
    dg.manual_seed(2)
    x = np.random.default_rng(8).normal(size=(3, 4))
    module_gradcheck(nn.Sequential(nn.Dense(4, 3), module), x + np.sign(x) * 0.05)


def test_dense_alpha_defaults_match_pytorch():
    import deepgrad as dg
    assert dg.nn.Dense(3, 2, "elu").alpha == 1.0
    assert dg.nn.Dense(3, 2, "leaky_relu").alpha == 0.01
    assert dg.nn.Dense(3, 2, "elu", alpha=0.5).alpha == 0.5
    x = np.linspace(-3, 3, 12, dtype=np.float64).reshape(4, 3)
    layer = dg.nn.Dense(3, 2, "elu", dtype="float64")
    z = x @ layer.weight.numpy() + layer.bias.numpy()
    np.testing.assert_allclose(layer(dg.tensor(x)).numpy(), np.where(z > 0, z, np.expm1(z)), rtol=1e-12)
