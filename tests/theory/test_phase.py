"""deepgrad study phase (issue 17): on a tiny grid with fixed seeds, the critical line crosses
the trainable region and cells deep in the ordered or the chaotic phase fail to train; the map
and the table are written; bad ranges are refused."""
import io
import os

import pytest

from deepgrad import phase, theory


def test_tiny_phase_diagram_has_the_right_shape(tmp_path):
    crit = theory.critical_sigma_w2("tanh", 0.05)
    cfgs = phase.phase_grid("tanh", [0.3, round(crit, 2), 8.0], [0.05], [8, 40], width=32,
                            steps=400, lr=1e-3)
    s = io.StringIO()
    recs = phase.run_phase(cfgs, str(tmp_path), "tanh", stream=s)
    acc = {(r["config"]["sigma_w2"], r["config"]["depth"]): r["result"]["accuracy"] for r in recs}
    assert acc[(round(crit, 2), 40)] >= phase.TRAINABLE          # at the edge of chaos: trains
    assert acc[(0.3, 40)] < 0.5 and acc[(8.0, 40)] < 0.5           # deep ordered / chaotic: not
    assert acc[(round(crit, 2), 8)] >= phase.TRAINABLE             # shallow nets train anyway
    # and the theory says why: 40 layers is beyond 6 xi_c at both extremes, not at the edge
    assert 6 * theory.xi_c("tanh", 0.3, 0.05) < 40 < 6 * theory.xi_c("tanh", crit, 0.05)
    assert 6 * theory.xi_c("tanh", 8.0, 0.05) < 40
    text = s.getvalue()
    assert "critical sigma_w^2 = 1.76" in text and "6xi_c" in text
    pytest.importorskip("matplotlib")
    assert os.path.getsize(tmp_path / "phase_tanh_sb0.05.png") > 10_000


def test_ranges():
    assert phase.parse_range("0.5:1.5:0.25", "x") == [0.5, 0.75, 1.0, 1.25, 1.5]
    assert phase.parse_range("2", "x") == [2.0]
    for bad in ("1:0:0.1", "0:1:0", "a:b:c", "1:2"):
        with pytest.raises(ValueError, match="START:STOP:STEP"):
            phase.parse_range(bad, "--sigma-w")
    with pytest.raises(ValueError, match="no mean-field theory"):
        phase.phase_grid("step")


def test_cli_phase_refuses_bad_settings(tmp_path, capsys):
    from deepgrad.cli import main
    assert main(["study", "phase", "--sigma-w", "0:1:0", "--out", str(tmp_path)]) == 2
    assert "START:STOP:STEP" in capsys.readouterr().err
    assert main(["study", "phase", "--sigma-w", "-1", "--out", str(tmp_path)]) == 2
    assert "sigma_w2 > 0" in capsys.readouterr().err
