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


@pytest.mark.parametrize("norm,residual", [("batch", False), ("none", True)])
def test_block_layers_compare_layer_by_layer(tmp_path, norm, residual):
    # a Dense + BatchNorm + activation block (or a residual block) is one layer of the deepgrad
    # run: the torch twin's monitor watches the same blocks, so the histories line up layer by
    # layer (they were 39 torch layers against 20, the first one a point deepgrad does not watch)
    grid = dict(steps=4, batch_size=32, every=1)
    args = ([8], [16], ["sigmoid"], ["xavier"], [norm], [residual])
    dg_rec = study.run_study(study.build_grid(*args, rnn=False, **grid), str(tmp_path / "dg"),
                             plots=False, stream=io.StringIO())[0]
    t_rec = study.run_study(study.build_grid(*args, rnn=False, framework="torch", **grid),
                            str(tmp_path / "torch"), plots=False, stream=io.StringIO())[0]
    dh, th = dg_rec["history"], t_rec["history"]
    assert len(th["layers"]) == len(dh["layers"])   # (names differ: a Dense is Linear + act)
    for k in ("signal_norm", "layer_grad_norm", "act_mean", "act_std", "saturated"):
        a = np.array([np.nan if v is None else v for v in dh[k][0]], float)
        b = np.array([np.nan if v is None else v for v in th[k][0]], float)
        np.testing.assert_allclose(b, a, rtol=2e-3, atol=1e-6, err_msg=k)
    assert t_rec["result"]["signal_ratio_init"] == pytest.approx(
        dg_rec["result"]["signal_ratio_init"], rel=2e-3)
