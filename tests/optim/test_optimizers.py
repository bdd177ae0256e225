"""Optimizers against numpy references and torch.optim over several steps; state, groups,
private arenas; schedulers against torch.optim.lr_scheduler."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import nn, optim

SHAPES = [(3, 4), (4,), (4, 2), (2,)]


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s) for s in SHAPES]


def _grads(step, seed=1):
    rng = np.random.default_rng(seed + 100 * step)
    return [rng.normal(size=s) for s in SHAPES]


def _model(values):
    m = nn.Sequential(nn.Dense(3, 4, "tanh", dtype="float64"), nn.Dense(4, 2, dtype="float64"))
    for p, v in zip(m.parameters(), values):
        p.data = v
    return m


def _run(opt_factory, steps=5):
    m = _model(_params())
    opt = opt_factory(m)
    for k in range(steps):
        opt.zero_grad()
        for p, g in zip(m.parameters(), _grads(k)):
            p.grad = dg.tensor(g, dtype="float64")
        opt.step()
    return [p.numpy().copy() for p in m.parameters()], opt


# numpy references written from the papers / torch docs -----------------------------------------

def _np_sgd(lr, momentum=0.0, dampening=0.0, nesterov=False, wd=0.0, steps=5):
    ps, bufs = _params(), [None] * len(SHAPES)
    for k in range(steps):
        for i, g in enumerate(_grads(k)):
            d = g + wd * ps[i]
            if momentum:
                bufs[i] = d.copy() if bufs[i] is None else momentum * bufs[i] + (1 - dampening) * d
                d = d + momentum * bufs[i] if nesterov else bufs[i]
            ps[i] = ps[i] - lr * d
    return ps


def _np_adam(lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, decoupled=False, steps=5):
    ps = _params()
    m = [np.zeros(s) for s in SHAPES]
    v = [np.zeros(s) for s in SHAPES]
    for k in range(1, steps + 1):
        for i, g in enumerate(_grads(k - 1)):
            if decoupled:
                ps[i] = ps[i] * (1 - lr * wd)
            else:
                g = g + wd * ps[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            mh, vh = m[i] / (1 - b1 ** k), v[i] / (1 - b2 ** k)
            ps[i] = ps[i] - lr * mh / (np.sqrt(vh) + eps)
    return ps


def _np_rmsprop(lr, alpha=0.99, eps=1e-8, wd=0.0, momentum=0.0, centered=False, steps=5):
    ps = _params()
    sq = [np.zeros(s) for s in SHAPES]
    buf = [np.zeros(s) for s in SHAPES]
    ga = [np.zeros(s) for s in SHAPES]
    for k in range(steps):
        for i, g in enumerate(_grads(k)):
            g = g + wd * ps[i]
            sq[i] = alpha * sq[i] + (1 - alpha) * g * g
            avg = sq[i]
            if centered:
                ga[i] = alpha * ga[i] + (1 - alpha) * g
                avg = sq[i] - ga[i] ** 2
            denom = np.sqrt(avg) + eps
            if momentum:
                buf[i] = momentum * buf[i] + g / denom
                ps[i] = ps[i] - lr * buf[i]
            else:
                ps[i] = ps[i] - lr * g / denom
    return ps


CASES = [
    ("sgd", lambda m: optim.SGD(m, lr=0.1), lambda: _np_sgd(0.1)),
    ("sgd_momentum_wd", lambda m: optim.SGD(m, lr=0.05, momentum=0.9, dampening=0.1,
                                            weight_decay=0.01),
     lambda: _np_sgd(0.05, 0.9, 0.1, False, 0.01)),
    ("sgd_nesterov", lambda m: optim.SGD(m, lr=0.05, momentum=0.8, nesterov=True),
     lambda: _np_sgd(0.05, 0.8, 0.0, True)),
    ("adam", lambda m: optim.Adam(m, lr=0.01), lambda: _np_adam(0.01)),
    ("adam_l2", lambda m: optim.Adam(m, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
     lambda: _np_adam(0.01, 0.8, 0.99, wd=0.1)),
    ("adamw", lambda m: optim.AdamW(m, lr=0.01, weight_decay=0.1),
     lambda: _np_adam(0.01, wd=0.1, decoupled=True)),
    ("rmsprop", lambda m: optim.RMSprop(m, lr=0.01), lambda: _np_rmsprop(0.01)),
    ("rmsprop_full", lambda m: optim.RMSprop(m, lr=0.01, alpha=0.9, weight_decay=0.05,
                                             momentum=0.7, centered=True),
     lambda: _np_rmsprop(0.01, 0.9, wd=0.05, momentum=0.7, centered=True)),
]


@pytest.mark.parametrize("name,factory,reference", CASES, ids=[c[0] for c in CASES])
def test_optimizer_matches_numpy_reference(name, factory, reference):
    got, opt = _run(factory)
    for g, r in zip(got, reference()):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-14)
    # one native call per step: a whole model is one contiguous slice
    assert sum(len(runs) for runs in opt._group_runs) == 1


TORCH = {
    "sgd_momentum_wd": lambda t, ps: t.optim.SGD(ps, lr=0.05, momentum=0.9, dampening=0.1,
                                                 weight_decay=0.01),
    "sgd_nesterov": lambda t, ps: t.optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True),
    "adam_l2": lambda t, ps: t.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
    "adamw": lambda t, ps: t.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
    "rmsprop_full": lambda t, ps: t.optim.RMSprop(ps, lr=0.01, alpha=0.9, weight_decay=0.05,
                                                  momentum=0.7, centered=True),
}


@pytest.mark.parametrize("name", sorted(TORCH))
def test_optimizer_matches_torch(name):
    torch = pytest.importorskip("torch")
    factory = dict((c[0], c[1]) for c in CASES)[name]
    got, _ = _run(factory, steps=6)
    ps = [torch.tensor(v, requires_grad=True) for v in _params()]
    opt = TORCH[name](torch, ps)
    for k in range(6):
        for p, g in zip(ps, _grads(k)):
            p.grad = torch.tensor(g)
        opt.step()
    for g, p in zip(got, ps):
        np.testing.assert_allclose(g, p.detach().numpy(), rtol=1e-10, atol=1e-13)


def test_param_groups_with_their_own_options():
    m = _model(_params())
    weights = [m[0].weight, m[1].weight]
    biases = [m[0].bias, m[1].bias]
    opt = optim.SGD([{"params": weights}, {"params": biases, "lr": 0.5}], lr=0.1)
    assert [len(r) for r in opt._group_runs] == [2, 2]  # interleaved: two slices per group
    for p, g in zip(m.parameters(), _grads(0)):
        p.grad = dg.tensor(g, dtype="float64")
    opt.step()
    p0, g0 = _params(), _grads(0)
    for i, p in enumerate(m.parameters()):
        lr = 0.1 if i in (0, 2) else 0.5
        np.testing.assert_allclose(p.numpy(), p0[i] - lr * g0[i], rtol=1e-13)
    with pytest.raises(ValueError, match="more than one param group"):
        optim.SGD([{"params": weights}, {"params": weights}], lr=0.1)


def test_bare_tensors_are_packed_into_a_private_arena():
    ps = [dg.tensor(v, requires_grad=True) for v in _params()]
    opt = optim.Adam(ps, lr=0.01)
    assert sum(len(r) for r in opt._group_runs) == 1
    for k in range(5):
        opt.zero_grad()
        x = sum((p * dg.tensor(g)).sum() for p, g in zip(ps, _grads(k)))
        x.backward()
        opt.step()
    for p, r in zip(ps, _np_adam(0.01)):
        np.testing.assert_allclose(p.numpy(), r, rtol=1e-12)
    ps[0].grad = None                          # user replaced the gradient: re-attached
    opt.zero_grad()
    assert ps[0].grad is not None and not ps[0].grad.numpy().any()


def test_state_dict_round_trip_continues_identically(tmp_path):
    got_ref, _ = _run(lambda m: optim.Adam(m, lr=0.01), steps=6)
    m = _model(_params())
    opt = optim.Adam(m, lr=0.01)
    for k in range(3):
        for p, g in zip(m.parameters(), _grads(k)):
            p.grad = dg.tensor(g, dtype="float64")
        opt.step()
    dg.save({"model": m.state_dict(), "optim": opt.state_dict()}, tmp_path / "ckpt.dg")
    ck = dg.load(tmp_path / "ckpt.dg")
    assert ck["optim"]["state"][0]["step"] == 3
    m2 = _model(_params(5))
    m2.load_state_dict(ck["model"])
    opt2 = optim.Adam(m2, lr=0.5)
    opt2.load_state_dict(ck["optim"])
    assert opt2.param_groups[0]["lr"] == 0.01
    for k in range(3, 6):
        for p, g in zip(m2.parameters(), _grads(k)):
            p.grad = dg.tensor(g, dtype="float64")
        opt2.step()
    for a, b in zip(m2.parameters(), got_ref):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-12)
    with pytest.raises(ValueError, match="param groups"):
        opt2.load_state_dict({"state": {}, "param_groups": []})


def test_bad_optimizer_arguments():
    m = _model(_params())
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(m, lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(m, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(m, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([])
    m[0].requires_grad_(False)                 # frozen layer: left out of the optimizer
    opt = optim.SGD(m, lr=0.1)
    assert len(opt.param_groups[0]["params"]) == 2
    with pytest.raises(ValueError, match="nothing to train"):
        optim.SGD(list(m[0].parameters()), lr=0.1)
    with pytest.raises(TypeError, match="unknown option"):
        optim.SGD([{"params": list(m.parameters()), "foo": 1}], lr=0.1)


SCHED = [
    ("step", lambda o: optim.StepLR(o, step_size=3, gamma=0.5),
     lambda t, o: t.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5)),
    ("exp", lambda o: optim.ExponentialLR(o, gamma=0.9),
     lambda t, o: t.optim.lr_scheduler.ExponentialLR(o, gamma=0.9)),
    ("cos", lambda o: optim.CosineAnnealingLR(o, T_max=7, eta_min=0.01),
     lambda t, o: t.optim.lr_scheduler.CosineAnnealingLR(o, T_max=7, eta_min=0.01)),
    ("warmup", lambda o: optim.LinearWarmup(o, warmup_steps=4, start_factor=0.25),
     lambda t, o: t.optim.lr_scheduler.LinearLR(o, start_factor=0.25, end_factor=1.0,
                                                total_iters=4)),
]


@pytest.mark.parametrize("name,ours,theirs", SCHED, ids=[s[0] for s in SCHED])
def test_schedulers_match_torch(name, ours, theirs):
    torch = pytest.importorskip("torch")
    m = _model(_params())
    opt = optim.SGD(m, lr=0.2)
    sched = ours(opt)
    tp = [torch.zeros(1, requires_grad=True)]
    topt = torch.optim.SGD(tp, lr=0.2)
    tsched = theirs(torch, topt)
    for _ in range(16):
        assert np.isclose(opt.param_groups[0]["lr"], topt.param_groups[0]["lr"], rtol=1e-9,
                          atol=1e-12)
        assert np.isclose(sched.get_last_lr()[0], tsched.get_last_lr()[0], rtol=1e-9, atol=1e-12)
        opt.step()
        topt.step()
        sched.step()
        tsched.step()


def test_scheduler_closed_forms():
    m = _model(_params())
    opt = optim.SGD(m, lr=1.0)
    s = optim.StepLR(opt, step_size=2, gamma=0.1)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        s.step()
    np.testing.assert_allclose(lrs, [1, 1, 0.1, 0.1, 0.01])
    state = s.state_dict()
    s2 = optim.StepLR(optim.SGD(m, lr=1.0), step_size=2)
    s2.load_state_dict(state)
    assert s2.last_epoch == 5


def test_add_param_group_keeps_existing_state():
    m = _model(_params())
    first = list(m[0].parameters())
    opt = optim.Adam(first, lr=0.01)
    for k in range(2):
        for p, g in zip(m.parameters(), _grads(k)):
            p.grad = dg.tensor(g, dtype="float64")
        opt.step()
    before = opt.state_dict()["state"][0]["exp_avg"].copy()
    opt.add_param_group({"params": list(m[1].parameters()), "lr": 0.0})
    assert len(opt.param_groups) == 2 and opt.param_groups[1]["betas"] == (0.9, 0.999)
    sd = opt.state_dict()
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], before)
    frozen = [p.numpy().copy() for p in m[1].parameters()]
    opt.step()                                 # lr 0 for the new group: unchanged
    for p, f in zip(m[1].parameters(), frozen):
        np.testing.assert_array_equal(p.numpy(), f)
    assert opt.state_dict()["state"][0]["step"] == 3
