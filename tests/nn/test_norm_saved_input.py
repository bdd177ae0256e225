"""batch_norm and layer_norm save their input x (and the mean) for backward on both backends,
so a later in-place change of x is caught like any other saved tensor's, instead of giving a
silently wrong gradient (the CPU backend used to save x-hat, the CUDA one x)."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import functional as F


@pytest.mark.parametrize("op", ["batch_norm", "layer_norm"])
def test_input_modified_in_place_before_backward_raises(op):
    x = dg.tensor(np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32))
    w = dg.tensor(np.ones(3, np.float32), requires_grad=True)
    y = getattr(F, op)(x, w, None)
    x.add_(1.0)
    with pytest.raises(RuntimeError, match=f"saved by op '{op}'.*modified in place"):
        (y * y).sum().backward()


@pytest.mark.parametrize("op", ["batch_norm", "layer_norm"])
def test_unmodified_input_backward_runs(op):
    x = dg.tensor(np.random.default_rng(1).standard_normal((6, 3)).astype(np.float32),
                  requires_grad=True)
    w = dg.tensor(np.ones(3, np.float32), requires_grad=True)
    (getattr(F, op)(x, w, None) ** 2).sum().backward()
    assert x.grad is not None and np.isfinite(x.grad.numpy()).all()
