"""deepgrad study --theory: each MLP run at initialisation is compared with mean-field theory
(predicted vs measured per-layer backward-signal ratio, flagged beyond the stated tolerance;
runs the theory does not cover say why), and flow_init.png gets the dashed prediction."""
import io
import os

import pytest

from deepgrad import study


def test_study_theory_block_and_overlay(tmp_path):
    cfgs = study.build_grid([12], [64], ["sigmoid", "tanh"], ["normal", "xavier"], ["none", "batch"],
                            [False], rnn=False, steps=2, batch_size=32, every=1)
    s = io.StringIO()
    recs = study.run_study(cfgs, str(tmp_path), plots=True, stream=s, theory=True)
    text = s.getvalue()
    assert "Mean-field theory at initialisation" in text
    assert "n/a: batch norm" in text
    by = {r["config"]["name"]: study.theory_comparison(r) for r in recs}
    van = by["mlp-d12-w64-sigmoid-normal"]
    assert van["predicted"] < 0.05 and van["agrees"]              # the classic vanishing case
    assert abs(van["measured"] / van["predicted"] - 1) < study.THEORY_TOLERANCE
    tx = by["mlp-d12-w64-tanh-xavier"]
    assert tx["predicted"] == pytest.approx(1.0, abs=1e-6) and tx["agrees"]
    assert len(tx["profile"]) == 12 and tx["profile"][0] is None
    pytest.importorskip("matplotlib")
    assert os.path.getsize(tmp_path / "flow_init.png") > 10_000


def test_cli_has_the_flag(tmp_path):
    from deepgrad.cli import build_parser
    args = build_parser().parse_args(["study", "--theory", "--out", str(tmp_path)])
    assert args.theory is True
