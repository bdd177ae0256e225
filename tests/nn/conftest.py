"""Finite-difference gradient check of a whole module in float64, through its arena."""
import numpy as np
import pytest

import deepgrad as dg


def _module_gradcheck(module, x, eps=1e-6, atol=1e-6, rtol=1e-5, seed=0, reseed=None):
    """Compare the tape's gradients of sum(module(x) * r) w.r.t. every arena element and x with
    central differences. `reseed` (an int) reseeds deepgrad before every forward (dropout)."""
    module.double()
    x = dg.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)

    def forward():
        if reseed is not None:
            dg.manual_seed(reseed)
        return module(x)

    out = forward()
    r = np.random.default_rng(seed).uniform(0.5, 1.5, out.shape)
    module.zero_grad()
    (out * dg.tensor(r, dtype=np.float64)).sum().backward()
    arena = module.arena
    analytic = [("x", x.grad.numpy().copy())]
    if arena is not None:
        analytic.append(("params", arena.grads.copy()))

    def f():
        with dg.no_grad():
            return float(np.sum(forward().numpy() * r))

    for name, ana in analytic:
        buf = x.data if name == "x" else arena.params
        flat = buf.reshape(-1)
        num = np.zeros(flat.size)
        for i in range(flat.size):
            v = flat[i]
            flat[i] = v + eps
            fp = f()
            flat[i] = v - eps
            fm = f()
            flat[i] = v
            num[i] = (fp - fm) / (2 * eps)
        np.testing.assert_allclose(ana.reshape(-1), num, atol=atol, rtol=rtol,
                                   err_msg=f"gradient w.r.t. {name}")


@pytest.fixture
def module_gradcheck():
    return _module_gradcheck
