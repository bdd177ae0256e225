"""`deepgrad study` end to end on tiny grids (seconds): report files, resume after an
interruption, custom grids, user datasets, argument errors."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from deepgrad import cli, study

TINY = ["--depths", "4", "--widths", "8", "--steps", "12", "--rnn-steps", "6", "--seq-len", "6",
        "--hidden", "4", "--every", "3"]


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:  # plots are an optional extra; the rest of the report is still checked
        return False


def read_summary(out):
    with open(os.path.join(out, "summary.csv"), newline="") as fh:
        return list(csv.DictReader(fh))


def test_default_grid_tiny_report_and_resume(tmp_path, capsys):
    out = str(tmp_path / "report")
    assert cli.main(["study", *TINY, "--out", out]) == 0
    text = capsys.readouterr().out
    assert "signal 1/L init" in text and "[8/8] lstm-adding-T6" in text
    rows = read_summary(out)
    names = [r["name"] for r in rows]
    assert names == ["mlp-d4-w8-sigmoid-normal", "mlp-d4-w8-tanh-xavier", "mlp-d4-w8-relu-he",
                     "mlp-d4-w8-leaky_relu-he", "mlp-d4-w8-sigmoid-xavier-batchnorm",
                     "mlp-d4-w8-sigmoid-xavier-residual", "rnn-adding-T6", "lstm-adding-T6"]
    for r in rows:
        assert float(r["seconds"]) >= 0 and float(r["final_loss"]) > 0
        assert float(r["signal_ratio_init"]) > 0
    assert 0 <= float(rows[0]["accuracy"]) <= 1 and rows[6]["test_mse"] != ""
    # the deep sigmoid with small normal init already shows a tiny first/last signal ratio
    assert float(rows[0]["signal_ratio_init"]) < 1e-3 < float(rows[2]["signal_ratio_init"])
    for n in names:
        with open(os.path.join(out, "runs", n + ".json")) as fh:
            rec = json.load(fh)
        assert rec["config"]["name"] == n and len(rec["loss_curve"]) == rec["config"]["steps"]
        assert rec["history"]["steps"][0] == 0 and len(rec["history"]["signal_norm"][0]) >= 2
    with open(os.path.join(out, "runs", "lstm-adding-T6.json")) as fh:
        rnn = json.load(fh)
    assert len(next(iter(rnn["history"]["time_signal"].values()))[0]) == 6
    if _has_matplotlib():
        for f in ("flow_init.png", "flow_final.png", "loss_curves.png", "time_signal.png",
                  "plots/mlp-d4-w8-relu-he_flow.png"):
            assert os.path.getsize(os.path.join(out, f)) > 1000, f

    # rerun: everything is reused, nothing retrained
    before = {n: os.path.getmtime(os.path.join(out, "runs", n + ".json")) for n in names}
    assert cli.main(["study", *TINY, "--out", out, "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert text.count("finished earlier") == 8 and "training" not in text
    assert before == {n: os.path.getmtime(os.path.join(out, "runs", n + ".json")) for n in names}
    # a run saved with other options is retrained
    assert cli.main(["study", *TINY, "--out", out, "--no-plots", "--no-rnn", "--lr", "0.002"]) == 0
    assert capsys.readouterr().out.count("training") == 6


def test_interrupted_study_keeps_finished_runs(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "r")
    real = study.run_one
    calls = []

    def flaky(cfg, progress=None):
        calls.append(cfg.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(cfg, progress)
    monkeypatch.setattr(study, "run_one", flaky)
    args = ["study", *TINY, "--no-rnn", "--no-plots", "--out", out]
    assert cli.main(args) == 130
    assert "interrupted: 2 finished run(s) kept" in capsys.readouterr().out
    assert len(os.listdir(os.path.join(out, "runs"))) == 2
    assert len(read_summary(out)) == 2
    monkeypatch.setattr(study, "run_one", real)
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert text.count("finished earlier") == 2 and text.count("training") == 4
    assert len(read_summary(out)) == 6
    # --fresh retrains everything
    assert cli.main(args + ["--fresh"]) == 0
    assert capsys.readouterr().out.count("training") == 6


def test_custom_grid_and_user_dataset(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    out = str(tmp_path / "c")
    assert cli.main(["study", "--depths", "3", "--widths", "4", "--activations", "relu", "tanh",
                     "--inits", "auto", "--norm", "none", "batch", "--residual", "no",
                     "--steps", "5", "--no-rnn", "--no-plots", "--dataset", str(tmp_path / "d.npz"),
                     "--optimizer", "sgd", "--out", out]) == 0
    names = [r["name"] for r in read_summary(out)]
    assert names == ["mlp-d3-w4-relu-he", "mlp-d3-w4-relu-he-batchnorm",
                     "mlp-d3-w4-tanh-xavier", "mlp-d3-w4-tanh-xavier-batchnorm"]
    capsys.readouterr()
    # csv with a float target column: regression (MSE, no accuracy)
    with open(tmp_path / "r.csv", "w") as fh:
        for row in rng.normal(size=(30, 3)):
            fh.write(",".join(f"{v:.4f}" for v in row) + "\n")
    out2 = str(tmp_path / "c2")
    assert cli.main(["study", "--depths", "3", "--widths", "4", "--activations", "tanh", "--steps",
                     "4", "--no-rnn", "--no-plots", "--dataset", str(tmp_path / "r.csv"),
                     "--out", out2]) == 0
    row = read_summary(out2)[0]
    assert row["accuracy"] == "" and float(row["test_mse"]) > 0


def test_argument_errors(tmp_path, capsys):
    assert cli.main(["study", "--dataset", str(tmp_path / "missing.csv"), "--out", str(tmp_path)]) == 2
    assert "no such dataset file" in capsys.readouterr().err
    assert cli.main(["study", "--dataset", "mnist", "--steps", "2", "--no-rnn", "--depths", "3",
                     "--out", str(tmp_path / "x")]) == 2
    assert "unknown dataset 'mnist'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["study", "--steps", "0"])
    assert e.value.code == 2
    assert "positive integer" in capsys.readouterr().err
    assert cli.main(["study", "--depths", "1", "--no-rnn", "--out", str(tmp_path / "y")]) == 2
    assert "depth must be >= 2" in capsys.readouterr().err
    assert cli.main([]) == 0 and "study" in capsys.readouterr().out


def test_python_dash_m_dispatches(tmp_path):
    out = str(tmp_path / "m")
    r = subprocess.run([sys.executable, "-m", "deepgrad", "study", "--depths", "3", "--widths", "4",
                        "--steps", "3", "--no-rnn", "--no-plots", "--activations", "relu",
                        "--out", out], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "mlp-d3-w4-relu-he" in r.stdout and os.path.exists(os.path.join(out, "summary.csv"))


def test_vanishing_gradients_example_runs(capsys):
    import pathlib
    import runpy
    root = pathlib.Path(__file__).resolve().parents[2] / "examples"
    runpy.run_path(str(root / "vanishing_gradients.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "vanishing: the backward signal at layer 1 (0:Dense)" in out
    assert "vanishing: the backward signal at time step 1" in out and "in RNN" in out
    relu = [line for line in out.splitlines() if line.startswith("relu + he")][0]
    ratio_at_init = float(relu.split("= ")[1].split(" at init")[0])
    assert 0.1 <= ratio_at_init <= 10
