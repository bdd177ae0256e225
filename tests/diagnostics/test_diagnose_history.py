"""diagnose() and the plots over hand-made histories (no model needed)."""
import json

import numpy as np
import pytest

from deepgrad.monitor import Thresholds, diagnose


def make_history(signal_rows, global_norms=None, dead=None, saturated=None, time_signal=None):
    L = len(signal_rows[0])
    S = len(signal_rows)
    h = {
        "layers": [f"layers.{i}" for i in range(L)],
        "steps": list(range(S)),
        "signal_norm": signal_rows,
        "global_grad_norm": global_norms or [1.0] * S,
        "layer_grad_norm": signal_rows,
    }
    if dead is not None:
        h["dead"] = dead
    if saturated is not None:
        h["saturated"] = saturated
    if time_signal is not None:
        h["time_signal"] = time_signal
    return h


def kinds(findings):
    return sorted((f.kind, f.where) for f in findings)


def test_healthy_history_has_no_findings():
    h = make_history([[1.0, 0.9, 1.1, 1.0]] * 5, dead=[[0.0] * 4] * 5, saturated=[[0.1] * 4] * 5)
    assert diagnose(h) == []


def test_vanishing_depth_names_the_layers_and_ratio():
    row = list(np.logspace(-7, 0, 20))
    f = diagnose(make_history([row]))
    assert kinds(f) == [("vanishing", "depth")]
    assert f[0].layer == 1 and f[0].value == pytest.approx(1e-7, rel=1e-9)
    assert "layer 1 (layers.0) is 1.0e-07 of layer 20 (layers.19)" in f[0].message
    # the threshold is configurable
    assert diagnose(make_history([row]), Thresholds(vanishing_ratio=1e-8)) == []


def test_exploding_depth_and_growth():
    h = make_history([[1e5, 1e2, 1.0]] * 11, global_norms=[1.0] * 5 + [1e4] * 6)
    f = diagnose(h)
    assert ("exploding", "depth") in kinds(f) and ("exploding", "growth") in kinds(f)
    growth = [x for x in f if x.where == "growth"][0]
    assert growth.value == pytest.approx(1e4) and "grew 1e+04x in 1 steps" in growth.message
    # growth spread over more steps than the window is not reported
    slow = make_history([[1.0, 1.0]] * 40, global_norms=list(np.logspace(0, 4, 40)))
    assert ("exploding", "growth") not in kinds(diagnose(slow, Thresholds(growth_window=5)))
    assert ("exploding", "growth") in kinds(diagnose(slow, Thresholds(growth_window=40)))


def test_nonfinite_gradient_is_reported():
    h = make_history([[1.0, 1.0]] * 3, global_norms=[1.0, None, float("inf")])
    f = [x for x in diagnose(h) if x.kind == "nonfinite"]
    assert len(f) == 1 and f[0].step == 1


def test_dead_and_saturated_layers():
    h = make_history([[1.0, 1.0, 1.0]], dead=[[0.0, 0.62, 0.1]], saturated=[[0.98, None, 0.2]])
    f = diagnose(h)
    msgs = [x.message for x in f]
    assert "dead ReLUs: 62% in layer 2 (layers.1)" in msgs
    assert "saturation: 98% of units in layer 1 (layers.0)" in msgs
    assert len(f) == 2


def test_time_signal_vanishing_and_exploding():
    h = make_history([[1.0, 1.0]], time_signal={"rnn": [list(np.logspace(-9, 0, 50))]})
    f = diagnose(h)
    assert kinds(f) == [("vanishing", "rnn")]
    h = make_history([[1.0, 1.0]], time_signal={"rnn": [list(np.logspace(6, 0, 50))]})
    assert kinds(diagnose(h)) == [("exploding", "rnn")]


def test_findings_are_json_serialisable():
    row = list(np.logspace(-7, 0, 5))
    f = diagnose(make_history([row]))
    s = json.dumps([x.to_dict() for x in f])
    assert json.loads(s)[0]["kind"] == "vanishing"


def test_plots_from_history(tmp_path):
    pytest.importorskip("matplotlib")
    from deepgrad import plot
    rows = [list(np.logspace(-s - 1, 0, 6)) for s in range(4)]
    h = make_history(rows, global_norms=[1.0, 2.0, 3.0, 4.0])
    for fn, name in ((plot.plot_layer_norms, "bars.png"), (plot.plot_heatmap, "heat.png"),
                     (plot.plot_global_norm, "global.png")):
        p = fn(h, str(tmp_path / name))
        assert (tmp_path / name).stat().st_size > 1000
        assert p.endswith(name)
    plot.plot_flow_comparison({"a": h, "b": h}, str(tmp_path / "sub" / "flow.png"))
    plot.plot_loss_curves({"a": [1.0, 0.5, 0.2], "b": [1.0, 0.9, 0.8]}, str(tmp_path / "loss.png"))
    assert (tmp_path / "sub" / "flow.png").stat().st_size > 1000
    assert (tmp_path / "loss.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no recorded steps"):
        plot.plot_global_norm(make_history([[1.0]])| {"global_grad_norm": [], "steps": []}, str(tmp_path / "x.png"))
