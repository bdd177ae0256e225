"""The native statistics read CPU tensors of another framework in place through borrowed DLPack
capsules (the torch monitor's route: torch.utils.dlpack.to_dlpack is ~3x cheaper than
t.numpy()): the same numbers as for numpy arrays of the same data, bad capsules refused with a
message naming them, and the capsule left to its producer."""
import math

import numpy as np
import pytest

from deepgrad import _C
from deepgrad.monitor import GradientMonitor

torch = pytest.importorskip("torch")
from torch.utils.dlpack import from_dlpack, to_dlpack  # noqa: E402


def _planted(rng, shape, dtype):
    a = rng.standard_normal(shape).astype(dtype)
    flat = a.reshape(-1)
    if flat.size > 5:
        flat[3] = np.nan
        flat[-2] = np.inf
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_health_and_norms_of_capsules_equal_numpy(dtype):
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal(s).astype(dtype) for s in [(5, 7), (1,), (0,), (3, 4, 2), ()]]
    arrays.append(_planted(rng, (6, 6), dtype))
    caps = [to_dlpack(torch.from_numpy(a)) for a in arrays]
    np.testing.assert_array_equal(_C.tensors_health(caps), _C.tensors_health(arrays))
    np.testing.assert_array_equal(_C.l2_norms(caps), _C.l2_norms(arrays))
    # and against numpy itself on the finite arrays
    for a, n in zip(arrays[:-1], _C.l2_norms(caps)[:-1]):
        assert n == pytest.approx(math.sqrt(float(np.sum(a.astype(np.float64) ** 2))), rel=1e-12)
    assert math.isnan(_C.l2_norms(caps)[-1])
    # capsules and arrays mix in one call; the capsules stay usable by their producer
    mixed = [caps[0], arrays[1]]
    np.testing.assert_array_equal(_C.tensors_health(mixed), _C.tensors_health(arrays[:2]))
    assert from_dlpack(caps[0]).shape == (5, 7)


def test_versioned_capsules_are_read():
    a = np.arange(12, dtype=np.float64).reshape(3, 4) - 5.5
    try:
        cap = a.__dlpack__(max_version=(1, 0))
    except TypeError:
        pytest.skip("this numpy exports no versioned capsule")
    np.testing.assert_array_equal(_C.tensors_health([cap]), _C.tensors_health([a]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sat,center,bound,dead", [(1, 0.0, 0.9, False), (0, 0.0, 0.0, True),
                                                   (2, 0.0, 1.5, False), (1, 0.5, 0.4, True)])
def test_act_stats_rows_of_capsules_equal_act_stats(dtype, sat, center, bound, dead):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((4, 5, 6)).astype(dtype)   # read as (20, 6)
    y = np.tanh(z) if center == 0.0 else 1 / (1 + np.exp(-z))
    y = y.astype(dtype)
    y[..., 2] = 0.0 if dead else y[..., 2]
    want = _C.act_stats(z.reshape(-1, 6), y.reshape(-1, 6), sat, center, bound, dead)
    rows = _C.act_stats_rows([(to_dlpack(torch.from_numpy(z)), to_dlpack(torch.from_numpy(y)),
                               sat, center, bound, dead),
                              (z.reshape(-1, 6), y.reshape(-1, 6), sat, center, bound, dead)])
    for row in rows:
        assert tuple(row[:4]) == (want[0], want[1], float(want[2]), float(want[3]))
        assert tuple(row[4:]) == (120.0, 6.0)
    # the sums against numpy in float64
    assert rows[0][0] == pytest.approx(float(np.sum(z, dtype=np.float64)), rel=1e-12, abs=1e-12)
    assert rows[0][1] == pytest.approx(float(np.sum(z.astype(np.float64) ** 2)), rel=1e-12)


def test_act_stats_rows_empty_layer_is_a_zero_row():
    z = torch.zeros(0, 4)
    rows = _C.act_stats_rows([(to_dlpack(z), to_dlpack(z), 1, 0.0, 0.9, True)])
    assert rows.tolist() == [[0.0] * 6]


def test_bad_capsules_are_refused_by_name():
    t = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"arrays\[1\].*strided.*contiguous"):
        _C.tensors_health([to_dlpack(t), to_dlpack(t.t())])
    with pytest.raises(TypeError, match=r"arrays\[0\].*float32 or float64"):
        _C.l2_norms([to_dlpack(t.to(torch.bfloat16))])
    with pytest.raises(TypeError, match=r"arrays\[0\].*float32 or float64"):
        _C.l2_norms([to_dlpack(torch.arange(4))])
    used = to_dlpack(t)
    from_dlpack(used)   # consumed: renamed used_dltensor
    with pytest.raises(ValueError, match=r"arrays\[0\].*no DLPack tensor"):
        _C.tensors_health([used])
    z = to_dlpack(torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"items\[0\].*must match"):
        _C.act_stats_rows([(z, to_dlpack(torch.randn(3, 5)), 1, 0.0, 0.9, False)])
    with pytest.raises(TypeError, match="same dtype"):
        _C.act_stats_rows([(z, to_dlpack(torch.randn(5, 3, dtype=torch.float64)), 1, 0.0, 0.9,
                            False)])
    with pytest.raises(ValueError, match="0-d"):
        _C.act_stats_rows([(to_dlpack(torch.tensor(1.0)), None, 0, 0.0, 0.0, False)])
    with pytest.raises(ValueError, match="saturation"):
        _C.act_stats_rows([(z, z, 3, 0.0, 0.9, False)])


def test_capsule_and_numpy_routes_give_the_same_history(monkeypatch):
    """The torch monitor's capsule route and its numpy route (taken where torch has no
    to_dlpack, or for a tensor the capsule route refuses) record identical histories."""
    from deepgrad.monitor import capture_torch

    def run(capsules: bool):
        if not capsules:
            monkeypatch.setattr(capture_torch, "_TO_DLPACK", [None])
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(),
                                    torch.nn.Linear(16, 16), torch.nn.ReLU(),
                                    torch.nn.Linear(16, 3))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
        mon = GradientMonitor(model)
        for _ in range(4):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            mon.step(loss)
        monkeypatch.undo()
        return mon.to_dict()

    a, b = run(True), run(False)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k], k
    assert all(v is not None for v in a["act_mean"][-1][:2])
