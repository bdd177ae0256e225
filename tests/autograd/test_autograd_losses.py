"""deepgrad.losses against float64 references and PyTorch, gradcheck, and bad inputs."""
import numpy as np
import pytest

import deepgrad as dg
import deepgrad.functional as F
from deepgrad import losses

RNG = np.random.default_rng(5)
RED = ["mean", "sum", "none"]


def _reduce(v, reduction):
    return v.mean() if reduction == "mean" else v.sum() if reduction == "sum" else v


@pytest.mark.parametrize("reduction", RED)
def test_mse(reduction):
    p = dg.tensor(RNG.standard_normal((6, 3)), requires_grad=True)
    t = dg.tensor(RNG.standard_normal((6, 3)), requires_grad=True)
    out = losses.mse(p, t, reduction)
    np.testing.assert_allclose(out.numpy(), _reduce((p.numpy() - t.numpy()) ** 2, reduction),
                               rtol=1e-12)
    dg.gradcheck(lambda p, t: losses.mse(p, t, reduction), [p, t], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("reduction", RED)
def test_binary_cross_entropy(reduction):
    p = dg.tensor(RNG.uniform(0.05, 0.95, (5, 2)), requires_grad=True)
    t = RNG.uniform(0, 1, (5, 2))
    ref = -(t * np.log(p.numpy()) + (1 - t) * np.log(1 - p.numpy()))
    np.testing.assert_allclose(losses.binary_cross_entropy(p, t, reduction).numpy(),
                               _reduce(ref, reduction), rtol=1e-10)
    dg.gradcheck(lambda p: losses.binary_cross_entropy(p, t, reduction), [p], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("reduction", RED)
def test_bce_with_logits(reduction):
    z = dg.tensor(RNG.standard_normal((7,)) * 3, requires_grad=True)
    t = (RNG.uniform(size=7) > 0.5).astype(np.float64)
    p = 1 / (1 + np.exp(-z.numpy()))
    ref = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    np.testing.assert_allclose(losses.bce_with_logits(z, t, reduction).numpy(),
                               _reduce(ref, reduction), rtol=1e-10)
    dg.gradcheck(lambda z: losses.bce_with_logits(z, t, reduction), [z], atol=1e-6, rtol=1e-5)


def test_bce_with_logits_is_stable_for_large_logits():
    z = dg.tensor([100.0, -100.0], requires_grad=True)
    out = losses.bce_with_logits(z, [0.0, 1.0], "none")
    np.testing.assert_allclose(out.numpy(), [100.0, 100.0], rtol=1e-6)
    out.sum().backward()
    assert np.isfinite(z.grad.numpy()).all()


@pytest.mark.parametrize("reduction", RED)
def test_cross_entropy_and_nll(reduction):
    x = dg.tensor(RNG.standard_normal((6, 4)), requires_grad=True)
    y = RNG.integers(0, 4, 6)
    xv = x.numpy()
    lse = np.log(np.exp(xv - xv.max(1, keepdims=True)).sum(1)) + xv.max(1)
    ref = lse - xv[np.arange(6), y]
    np.testing.assert_allclose(losses.cross_entropy(x, y, reduction).numpy(),
                               _reduce(ref, reduction), rtol=1e-10)
    np.testing.assert_allclose(losses.nll(F.log_softmax(x), y, reduction).numpy(),
                               _reduce(ref, reduction), rtol=1e-10)
    dg.gradcheck(lambda x: losses.cross_entropy(x, y, reduction), [x], atol=1e-6, rtol=1e-5)
    dg.gradcheck(lambda x: losses.nll(F.log_softmax(x), y, reduction), [x], atol=1e-6, rtol=1e-5)


def test_losses_match_torch_in_float32():
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x = RNG.standard_normal((16, 5)).astype(np.float32)
    y = RNG.integers(0, 5, 16)
    t = RNG.uniform(size=(16, 5)).astype(np.float32)
    cases = [
        (losses.cross_entropy(dg.tensor(x), y), tf.cross_entropy(torch.tensor(x), torch.tensor(y))),
        (losses.bce_with_logits(dg.tensor(x), t),
         tf.binary_cross_entropy_with_logits(torch.tensor(x), torch.tensor(t))),
        (losses.binary_cross_entropy(F.sigmoid(dg.tensor(x)), t),
         tf.binary_cross_entropy(torch.sigmoid(torch.tensor(x)), torch.tensor(t))),
        (losses.mse(dg.tensor(x), t), tf.mse_loss(torch.tensor(x), torch.tensor(t))),
    ]
    for ours, ref in cases:
        assert ours.dtype == np.float32
        assert ours.item() == pytest.approx(ref.item(), rel=1e-5)


def test_labels_may_be_tensors_or_float_integers():
    x = dg.tensor(RNG.standard_normal((3, 3)))
    a = losses.cross_entropy(x, [0, 2, 1]).item()
    assert losses.cross_entropy(x, dg.tensor([0, 2, 1], dtype="int64")).item() == a
    assert losses.cross_entropy(x, dg.tensor([0.0, 2.0, 1.0])).item() == a
    assert losses.cross_entropy(x, np.array([[0], [2], [1]])).item() == a


def test_loss_errors():
    x = dg.zeros(4, 3)
    with pytest.raises(ValueError, match="label 3 at index 1 is out of range for 3 classes"):
        losses.cross_entropy(x, [0, 3, 1, 2])
    with pytest.raises(ValueError, match="label -1"):
        losses.nll(x, [0, -1, 1, 2])
    with pytest.raises(ValueError, match="4 rows but labels have shape \\(3,\\)"):
        losses.cross_entropy(x, [0, 1, 2])
    with pytest.raises(TypeError, match="integer class indices"):
        losses.cross_entropy(x, [0.5, 1, 2, 0])
    with pytest.raises(ValueError, match="empty batch"):
        losses.cross_entropy(dg.zeros(0, 3), np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match="empty batch"):
        losses.mse(dg.zeros(0, 1), np.zeros((0, 1)))
    with pytest.raises(ValueError, match="pred has shape \\(4, 1\\) but target has shape \\(4,\\)"):
        losses.mse(dg.zeros(4, 1), np.zeros(4))
    with pytest.raises(ValueError, match="reduction"):
        losses.mse(x, x, reduction="avg")
    with pytest.raises(ValueError, match="\\(N, C\\)"):
        losses.cross_entropy(dg.zeros(4), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="probabilities"):
        losses.binary_cross_entropy(dg.tensor([1.5]), [1.0])
    with pytest.raises(ValueError, match="treats the target as a constant"):
        losses.binary_cross_entropy(dg.tensor([0.5]), dg.tensor([1.0], requires_grad=True))


def test_course_xor_network_outputs_and_bce():
    # w(1) = [[0.96, 0.89], [0.28, 0.73]], w(2) = [[0.60], [0.22]], no bias, sigmoid everywhere.
    X = dg.tensor([[0, 0], [0, 1], [1, 0], [1, 1]], dtype="float64")
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    w1 = dg.tensor([[0.96, 0.89], [0.28, 0.73]], dtype="float64", requires_grad=True)
    w2 = dg.tensor([[0.60], [0.22]], dtype="float64", requires_grad=True)
    out = F.dense(F.dense(X, w1, None, "sigmoid"), w2, None, "sigmoid")
    np.testing.assert_allclose(np.round(out.numpy().ravel(), 2), [0.60, 0.62, 0.64, 0.66])
    per = losses.binary_cross_entropy(out, y, "none")
    np.testing.assert_allclose(np.round(per.numpy().ravel(), 2), [0.92, 0.48, 0.44, 1.07])
    dg.gradcheck(lambda w1, w2: losses.binary_cross_entropy(
        F.dense(F.dense(X, w1, None, "sigmoid"), w2, None, "sigmoid"), y), [w1, w2],
        atol=1e-7, rtol=1e-5)
