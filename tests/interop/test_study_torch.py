"""deepgrad study --framework torch (issue 12): the same runs as torch.nn models starting from
the same weights, watched by deepgrad's monitor, give the same report fields; at initialisation
the two frameworks' per-layer backward signals agree (the comparison the flag exists for)."""
import io

import numpy as np
import pytest

from deepgrad import study

pytest.importorskip("torch")


def test_torch_runs_match_deepgrad_at_init(tmp_path):
    grid = dict(steps=20, batch_size=32, every=1)
    cfgs = study.build_grid([6], [16], ["tanh", "relu"], ["auto"], ["none"], [False], rnn=True,
                            rnn_steps=5, seq_len=10, **grid)
    dg_recs = study.run_study(cfgs, str(tmp_path / "dg"), plots=False, stream=io.StringIO())
    tcfgs = study.build_grid([6], [16], ["tanh", "relu"], ["auto"], ["none"], [False], rnn=True,
                             rnn_steps=5, seq_len=10, framework="torch", **grid)
    t_recs = study.run_study(tcfgs, str(tmp_path / "torch"), plots=False, stream=io.StringIO())
    assert [r["config"]["framework"] for r in t_recs] == ["torch"] * 4
    for d, t in zip(dg_recs, t_recs):
        assert set(d) == set(t) and set(d["history"]) == set(t["history"])
        assert d["loss_curve"][0] == pytest.approx(t["loss_curve"][0], rel=1e-5)
        if d["config"]["model"] == "mlp":
            np.testing.assert_allclose(t["history"]["signal_norm"][0],
                                       d["history"]["signal_norm"][0], rtol=1e-4)
            assert t["result"]["final_loss"] == pytest.approx(d["result"]["final_loss"],
                                                              rel=0.05)


def test_framework_is_validated(tmp_path):
    cfg = study.RunConfig(name="x", depth=3, width=4, steps=2, framework="jax")
    with pytest.raises(ValueError, match="framework 'jax'"):
        study.validate([cfg], str(tmp_path))
