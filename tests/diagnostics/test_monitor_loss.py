"""The monitor refuses what it cannot use, naming it, before it changes anything. The loss
handed to GradientMonitor.step(): any real number or one-element tensor/array is recorded as
that number; anything else is refused on a recorded step (a retry with the right loss then gives
the history of a run without the bad call). Thresholds and the monitor's arguments outside their
ranges are refused at construction."""
import json

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import losses, nn, optim
from deepgrad.monitor import GradientMonitor
from deepgrad.monitor.core import loss_value

STEPS = 9

BAD = [
    (lambda loss: np.ones(2, np.float32), ValueError, "one number"),
    (lambda loss: dg.tensor(np.ones(3, np.float32)), ValueError, "shape (3,)"),
    (lambda loss: "0.5", TypeError, "got str"),
    (lambda loss: 1j, TypeError, "got complex"),
    (lambda loss: True, TypeError, "got bool"),
    (lambda loss: [0.5], TypeError, "got list"),
    (lambda loss: np.array("x"), TypeError, "holding a str"),
]


def _run(every: int, bad_at=None, bad=None):
    dg.manual_seed(2)
    model = nn.Sequential(nn.Dense(3, 10, "tanh"), nn.Dense(10, 10, "relu"), nn.Dense(10, 2))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    mon = GradientMonitor(model, every=every)
    rng = np.random.default_rng(5)
    for n in range(STEPS):
        x = dg.tensor(rng.standard_normal((6, 3)).astype(np.float32))
        loss = losses.cross_entropy(model(x), rng.integers(0, 2, 6))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if n == bad_at:
            make, exc, words = bad
            with pytest.raises(exc, match="GradientMonitor.step") as info:
                mon.step(make(loss))
            assert words in str(info.value)
        mon.step(loss)
    return json.dumps(mon.to_dict(), sort_keys=True)


@pytest.mark.parametrize("every,bad_at", [(1, 0), (1, 4), (3, 3), (3, 6)])
@pytest.mark.parametrize("k", range(len(BAD)))
def test_a_refused_loss_changes_nothing(every, bad_at, k):
    # bad_at is a recorded step: the loss is read there, refused, and the retry records the step
    # as if the bad call had not happened (the row, the step count, the every > 1 switch)
    assert _run(every, bad_at, BAD[k]) == _run(every)


def _tiny(hidden: int = 3, every: int = 1):
    """A small regression model's monitor and one training step of it (forward, backward, SGD;
    returns the loss, not yet handed to the monitor)."""
    dg.manual_seed(0)
    model = nn.Sequential(nn.Dense(2, hidden, "tanh"), nn.Dense(hidden, 1))
    opt = optim.SGD(model.parameters(), lr=0.1)
    mon = GradientMonitor(model, every=every)
    x, t = dg.tensor(np.ones((3, 2), np.float32)), dg.tensor(np.zeros((3, 1), np.float32))

    def train():
        loss = losses.mse(model(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    return mon, train


def test_the_loss_is_only_read_on_recorded_steps():
    mon, train = _tiny(hidden=4, every=2)
    for n in range(4):
        loss = train()
        if n % 2:
            assert mon.step(np.ones(2)) is False  # not recorded: not read
        else:
            assert mon.step(loss) is True
    assert mon.to_dict()["steps"] == [0, 2]


@pytest.mark.parametrize("loss,want", [
    (None, None), (0.25, 0.25), (3, 3.0), (np.float32(0.5), 0.5), (np.float64(-2.0), -2.0),
    (np.array(1.5), 1.5), (np.array([2.5], np.float32), 2.5), (np.int64(7), 7.0),
    (float("nan"), "nan"), (float("inf"), float("inf")),
])
def test_loss_value_accepts_numbers_and_one_element_arrays(loss, want):
    got = loss_value(loss)
    if want == "nan":
        assert np.isnan(got)
    else:
        assert got == want and (got is None or type(got) is float)


def test_every_accepted_form_is_recorded_as_its_number():
    mon, train = _tiny()
    forms = [0.5, 2, np.float32(0.25), np.array(1.5), np.array([[0.75]], np.float32),
             dg.tensor(np.array([[1.25]], np.float32)), None]
    for f in forms:
        train()
        mon.step(f)
    assert mon.to_dict()["loss"] == [0.5, 2.0, 0.25, 1.5, 0.75, 1.25, None]


def test_torch_monitor_refuses_a_bad_loss_without_changing_anything():
    torch = pytest.importorskip("torch")

    def run(bad_at=None):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        mon = GradientMonitor(model, every=2)
        g = torch.Generator().manual_seed(1)
        for n in range(8):
            x, y = torch.randn(5, 3, generator=g), torch.randint(0, 2, (5,), generator=g)
            loss = torch.nn.functional.cross_entropy(model(x), y, reduction="none")
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
            if n == bad_at:
                with pytest.raises(ValueError, match="one number"):
                    mon.step(loss)  # the per-sample losses, not reduced
            mon.step(loss.mean())
        return json.dumps(mon.to_dict(), sort_keys=True)

    assert run(bad_at=4) == run()


@pytest.mark.parametrize("kw,words", [
    (dict(vanishing_ratio=-1.0), "vanishing_ratio"), (dict(exploding_ratio=0), "exploding_ratio"),
    (dict(growth_factor=0.5), "growth_factor"), (dict(growth_window=0), "growth_window"),
    (dict(growth_window=2.5), "growth_window"), (dict(dead_fraction=2.0), "dead_fraction"),
    (dict(saturation_fraction=-0.1), "saturation_fraction"),
    (dict(saturation_derivative=0.0), "saturation_derivative"),
    (dict(vanishing_ratio=float("nan")), "vanishing_ratio"), (dict(dead_fraction="x"), "dead"),
])
def test_thresholds_outside_their_range_are_refused(kw, words):
    from deepgrad.monitor import Thresholds
    with pytest.raises(ValueError, match=f"Thresholds: {words}"):
        Thresholds(**kw)


def test_thresholds_at_the_edges_of_their_ranges_are_kept():
    from deepgrad.monitor import Thresholds
    t = Thresholds(dead_fraction=0, saturation_fraction=1.0, saturation_derivative=1.0,
                   growth_window=1, vanishing_ratio=1e-30, exploding_ratio=float("inf"))
    assert t.growth_window == 1 and t.dead_fraction == 0


@pytest.mark.parametrize("kw,words", [
    (dict(every=None), "every must be a positive int"),
    (dict(every=float("inf")), "every must be a positive int"),
    (dict(max_records="x"), "max_records must be None or an int >= 8"),
    (dict(thresholds={"growth_window": 3}), "thresholds must be a deepgrad.monitor.Thresholds"),
])
def test_monitor_arguments_are_refused_by_name(kw, words):
    model = nn.Sequential(nn.Dense(2, 3, "tanh"), nn.Dense(3, 1))
    with pytest.raises((ValueError, TypeError), match=words):
        GradientMonitor(model, **kw)


def _recorded_monitor():
    mon, train = _tiny()
    for _ in range(3):
        mon.step(train())
    return mon


@pytest.mark.parametrize("kind", ["json", "csv"])
def test_history_files_are_written_atomically(tmp_path, monkeypatch, kind):
    # a write that fails after the data went out (here: the disk fills at fsync) leaves the file
    # that was there, whole, and no temporary file beside it
    import os
    mon = _recorded_monitor()
    path = tmp_path / f"h.{kind}"
    write = mon.to_json if kind == "json" else mon.to_csv
    write(path)
    before = path.read_text()
    assert len(before) > 50

    def full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        write(path)
    monkeypatch.undo()
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_history_files_name_a_missing_folder_or_a_directory(tmp_path):
    mon = _recorded_monitor()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mon.to_json(tmp_path / "nope" / "h.json")
    with pytest.raises(IsADirectoryError, match="directory"):
        mon.to_csv(tmp_path)
