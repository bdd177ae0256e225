"""An optimizer step is an in-place update of every parameter (issue 11): a backward through a
graph recorded before opt.step() is refused as "modified in place", like PyTorch; the ordinary
loop (forward, backward, step) is untouched; and a weight with a hook gets the same gradient as
one without."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import losses, nn, optim


def _setup(seed=0):
    dg.manual_seed(seed)
    model = nn.Sequential(nn.Dense(3, 5, "tanh"), nn.Dense(5, 2))
    x = dg.tensor(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32))
    return model, x


def test_step_between_forward_and_backward_is_refused():
    model, x = _setup()
    opt = optim.SGD(model, lr=0.1)
    loss = losses.mse(model(x), dg.zeros(4, 2))
    opt.step()
    with pytest.raises(RuntimeError, match="modified in place.*opt.step\\(\\) after backward"):
        loss.backward()


def test_the_ordinary_loop_is_untouched():
    model, x = _setup()
    opt = optim.Adam(model, lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        losses.mse(model(x), dg.zeros(4, 2)).backward()
        opt.step()
    p = next(iter(model.parameters()))
    v = p._version
    opt.step()
    assert p._version == v + 1


def test_hooked_weight_gets_the_same_gradient():
    grads = []
    for hooked in (False, True):
        model, x = _setup()
        if hooked:
            model[0].weight.register_hook(lambda g: g)
        model.zero_grad()
        losses.mse(model(x), dg.zeros(4, 2)).backward()
        grads.append(model[0].weight.grad.numpy().copy())
    np.testing.assert_array_equal(grads[0], grads[1])
