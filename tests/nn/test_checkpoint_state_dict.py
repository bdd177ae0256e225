"""Issue 10, item 6: load_state_dict of modules, optimizers and schedules is all or nothing (every
value checked and converted before the first copy; a failure leaves everything bit-identical),
and non-string keys are a TypeError that says so."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import nn, optim


def _snapshot(model) -> dict:
    return {k: np.array(v, copy=True) for k, v in model.state_dict().items()}


def _assert_same(model, before: dict) -> None:
    after = model.state_dict()
    assert list(after) == list(before)
    for k, v in after.items():
        assert np.asarray(v).tobytes() == before[k].tobytes(), k      # bit-identical


def test_load_state_dict_is_all_or_nothing():
    dg.manual_seed(0)
    model = nn.Sequential(nn.Dense(4, 5), nn.Dense(5, 3))
    before = _snapshot(model)
    good = {k: v + 1.0 for k, v in before.items()}
    keys = list(good)
    bad_values = (np.full(good[keys[-1]].shape, "x"), np.empty(good[keys[-1]].shape, object),
                  np.ones(good[keys[-1]].shape, complex), np.ones((7,), np.float32))
    for bad_value in bad_values:
        state = dict(good)
        state[keys[-1]] = bad_value                       # fails after the others converted
        with pytest.raises(ValueError, match=keys[-1].replace(".", r"\.")):
            model.load_state_dict(state)
        _assert_same(model, before)
    with pytest.raises(TypeError, match="keys must be str"):
        model.load_state_dict({0: good[keys[0]], **good})
    with pytest.raises(TypeError, match="keys must be str"):
        model.load_state_dict({**good, ("0", "weight"): good[keys[0]]})
    _assert_same(model, before)
    model.load_state_dict(good)                           # and a good one applies whole
    for k, t in model.state_dict().items():
        np.testing.assert_array_equal(np.asarray(t), before[k] + 1.0)


def _trained_adam():
    dg.manual_seed(0)
    model = nn.Sequential(nn.Dense(3, 4), nn.Dense(4, 2))
    opt = optim.Adam(model, lr=1e-2)
    x = dg.tensor(np.ones((5, 3), np.float32))
    for _ in range(2):
        opt.zero_grad()
        (model(x) ** 2).mean().backward()
        opt.step()
    return model, opt


def _opt_snapshot(opt) -> tuple:
    sd = opt.state_dict()
    state = {k: {n: np.array(v, copy=True) for n, v in s.items()} for k, s in sd["state"].items()}
    groups = [{n: v for n, v in g.items()} for g in sd["param_groups"]]
    return state, groups


def _assert_opt_same(opt, snap) -> None:
    state, groups = _opt_snapshot(opt)
    assert groups == snap[1]
    assert state.keys() == snap[0].keys()
    for k in state:
        assert state[k].keys() == snap[0][k].keys()
        for n in state[k]:
            assert state[k][n].tobytes() == snap[0][k][n].tobytes(), (k, n)


def _copy(sd) -> dict:
    return {"state": {k: dict(v) for k, v in sd["state"].items()},
            "param_groups": [dict(g) for g in sd["param_groups"]]}


def test_optimizer_load_state_dict_is_all_or_nothing():
    model, opt = _trained_adam()
    sd = opt.state_dict()
    snap = _opt_snapshot(opt)
    last = max(sd["state"])

    def with_state(name, value):
        bad = _copy(sd)
        bad["state"][last] = dict(bad["state"][last])
        bad["state"][last][name] = value
        return bad

    shape = np.shape(sd["state"][last]["exp_avg"])
    cases = [
        (with_state("exp_avg", np.full(shape, "nan?")), ValueError, "cannot be read as numbers"),
        (with_state("exp_avg", np.ones((9,))), ValueError, "has shape"),
        (with_state("step", 2.5), ValueError, "step must be an integer"),
        (with_state("step", -1), ValueError, "step must be an integer"),
        (with_state("momentum_buffer", np.ones(shape)), ValueError, "keeps"),   # SGD's state
        (with_state(3, np.ones(shape)), TypeError, "keys must be str"),
    ]
    # options are checked like the constructor's, before the state is touched
    for opts, match in (({"lr": -1.0}, "lr must be"), ({"lrr": 0.1}, "unknown option"),
                        ({"lr": "fast"}, "lr must be")):
        bad = _copy(sd)
        bad["param_groups"][0].update(opts)
        cases.append((bad, ValueError, match))
    bad = _copy(sd)
    bad["state"][99] = dict(sd["state"][last])
    cases.append((bad, ValueError, "no param group lists"))
    bad = _copy(sd)
    bad["param_groups"][0]["params"] = [0] * len(sd["param_groups"][0]["params"])
    cases.append((bad, ValueError, "distinct"))
    for bad, exc, match in cases:
        with pytest.raises(exc, match=match):
            opt.load_state_dict(bad)
        _assert_opt_same(opt, snap)

    # an SGD state (other names) is refused by Adam, and the other way round
    sgd = optim.SGD(model, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError):
        sgd.load_state_dict(sd)


def test_optimizer_good_state_continues_training_exactly():
    model, opt = _trained_adam()
    sd, weights = opt.state_dict(), _snapshot(model)
    x = dg.tensor(np.ones((5, 3), np.float32))

    def step(m, o):
        o.zero_grad()
        (m(x) ** 2).mean().backward()
        o.step()
        return _snapshot(m)

    ref = step(model, opt)
    dg.manual_seed(1)
    other = nn.Sequential(nn.Dense(3, 4), nn.Dense(4, 2))
    other.load_state_dict(weights)
    opt2 = optim.Adam(other, lr=0.5)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == 1e-2
    got = step(other, opt2)
    for k in ref:
        assert got[k].tobytes() == ref[k].tobytes(), k


def test_scheduler_load_state_dict_checks_before_it_applies():
    _, opt = _trained_adam()
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(3):
        sched.step()
    sd = sched.state_dict()
    fresh = optim.StepLR(optim.Adam(nn.Dense(2, 2), lr=1e-2), step_size=5)
    before = dict(fresh.__dict__)
    for bad, exc, match in (({**sd, 1: 2}, TypeError, "keys must be str"),
                            ({**sd, "T_max": 3}, ValueError, "unknown key"),
                            ({**sd, "base_lrs": [0.1, 0.2]}, ValueError, "one lr per"),
                            ({**sd, "last_epoch": "3"}, ValueError, "last_epoch"),
                            ([1], TypeError, "expected a dict")):
        with pytest.raises(exc, match=match):
            fresh.load_state_dict(bad)
        assert fresh.__dict__ == before
    fresh.load_state_dict(sd)
    assert fresh.last_epoch == sched.last_epoch and fresh.step_size == 2
    fresh.step()
    sched.step()
    assert fresh.get_last_lr() == sched.get_last_lr()
