"""The study as a sweep (issues 10 and 15): settings are checked before anything trains and each
problem is reported once with the runs it concerns; a rejected study leaves nothing behind; a
run that raises costs only itself (the others are saved, the report is written, the error names
the run, a rerun retries only it), sequentially and on Dask; the progress bar counts finished
runs with the running best and the failures on a terminal and is absent otherwise."""
import io
import os

import pytest

import deepgrad as dg
from deepgrad import cli, study
from deepgrad.phase import phase_grid


def _grid(steps=4):
    return study.build_grid([3], [4], ["tanh", "relu"], ["auto"], ["none"], [False], rnn=False,
                            steps=steps, batch_size=16, every=1)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_each_problem_once_with_its_runs_and_no_folder_left(tmp_path):
    cfgs = phase_grid("tanh", [0.0, 1.0], [0.05], [1, 3, 5, 7, 9], width=4, steps=2)
    out = tmp_path / "a" / "b"
    with pytest.raises(ValueError) as e:
        study.validate(cfgs, str(out))
    msg = str(e.value)
    # five cells with sigma_w^2 = 0: one line naming three of them and counting the rest
    assert msg.count("init 'meanfield' needs sigma_w2 > 0") == 1
    assert "(runs phase-tanh-sw0-sb0.05-d1, phase-tanh-sw0-sb0.05-d3, " \
           "phase-tanh-sw0-sb0.05-d5 and 2 more)" in msg
    # depth 1 concerns two cells (one per sigma_w^2)
    assert msg.count("depth must be >= 2") == 1 and "phase-tanh-sw1-sb0.05-d1)" in msg
    assert not (tmp_path / "a").exists()          # the folders the check made are gone
    study.validate(cfgs[6:], str(out))            # the good cells pass and keep the folder
    assert (out / "runs").is_dir()


def test_cli_rejects_a_negative_every_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["study", "--every", "-3", "--no-rnn", "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "--every: expected an integer >= 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_failing_run_costs_only_itself(tmp_path, monkeypatch):
    grid = _grid()
    real = study.run_one

    def flaky(cfg, progress=None):
        if "relu" in cfg.name:
            raise FloatingPointError("planted failure")
        return real(cfg, progress)
    monkeypatch.setattr(study, "run_one", flaky)
    log = io.StringIO()
    with pytest.raises(RuntimeError) as e:
        study.run_study(grid, str(tmp_path), plots=False, stream=log)
    assert "1 of 2 run(s) failed" in str(e.value) and grid[1].name in str(e.value)
    assert isinstance(e.value.__cause__, FloatingPointError)
    assert "FAILED: FloatingPointError: planted failure" in log.getvalue()
    assert (tmp_path / "runs" / f"{grid[0].name}.json").exists()
    assert not (tmp_path / "runs" / f"{grid[1].name}.json").exists()
    assert grid[0].name in (tmp_path / "report.html").read_text(encoding="utf-8")
    monkeypatch.setattr(study, "run_one", real)
    log = io.StringIO()
    recs = study.run_study(grid, str(tmp_path), plots=False, stream=log)
    assert len(recs) == 2 and log.getvalue().count("training 4 steps") == 1
    assert study.run is study.run_study


def test_dask_progress_bar_best_and_failures(tmp_path, monkeypatch):
    distributed = pytest.importorskip("dask.distributed")
    pytest.importorskip("tqdm")
    threads = dg.get_num_threads()
    real = study.run_one

    def flaky(cfg, progress=None):
        if "relu" in cfg.name:
            raise FloatingPointError("planted failure")
        return real(cfg, progress)
    monkeypatch.setattr(study, "run_one", flaky)  # the workers are threads of this process
    grid = _grid()
    try:
        with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                      dashboard_address=":0") as cluster, \
                distributed.Client(cluster) as client:
            term = _Terminal()
            with pytest.raises(RuntimeError, match="1 of 2 run"):
                study.run_study(grid, str(tmp_path / "tty"), plots=False, stream=term,
                                client=client)
            text = term.getvalue()
            assert "2/2" in text and "failed 1" in text and "best loss" in text
            assert f"{grid[1].name}: FAILED (FloatingPointError: planted failure)" in text
            assert (tmp_path / "tty" / "report.html").exists()
            plain = io.StringIO()
            monkeypatch.setattr(study, "run_one", real)
            study.run_study(grid, str(tmp_path / "plain"), plots=False, stream=plain,
                            client=client)
            text = plain.getvalue()
            assert "run/s" not in text and "\r" not in text     # no bar off a terminal
            assert text.count("done in") == 2
    finally:
        dg.set_num_threads(threads)      # _remote_run set one thread in this process


@pytest.mark.parametrize("argv, msg", [
    (["--scheduler", "foo"], "--scheduler must be 'auto' or a Dask scheduler address"),
    (["--scheduler", "tcp://sched:8786", "--jobs", "2"], "give one of them"),
])
def test_cluster_arguments_are_checked_before_anything_starts(tmp_path, capsys, argv, msg):
    out = tmp_path / "o"
    assert cli.main(["study", *argv, "--no-rnn", "--depths", "3", "--widths", "4",
                     "--steps", "2", "--out", str(out)]) == 2
    assert msg in capsys.readouterr().err and not out.exists()
    for ok in ("auto", "tcp://127.0.0.1:8786", "sched.example.org:8786", "tls://[::1]:8786"):
        study.check_cluster_args(None, ok)


def test_scheduler_auto_with_jobs_runs_a_local_cluster(tmp_path, capsys):
    pytest.importorskip("dask.distributed")
    out = tmp_path / "o"
    assert cli.main(["study", "--scheduler", "auto", "--jobs", "2", "--no-rnn", "--no-plots",
                     "--depths", "3", "--widths", "4", "--steps", "3", "--activations", "tanh",
                     "relu", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "running 2 run(s) on Dask (2 workers" in text
    assert len(list((out / "runs").glob("*.json"))) == 2


def test_an_interrupted_study_still_writes_its_report(tmp_path, monkeypatch):
    grid = _grid()
    real = study.run_one

    def stop_at_second(cfg, progress=None):
        if cfg.name == grid[1].name:
            raise KeyboardInterrupt
        return real(cfg, progress)
    monkeypatch.setattr(study, "run_one", stop_at_second)
    with pytest.raises(KeyboardInterrupt):
        study.run_study(grid, str(tmp_path), plots=False, stream=io.StringIO())
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert grid[0].name in text and grid[1].name not in text


def test_local_cluster_starts_while_port_8787_is_taken():
    # Dask's dashboard_address=None still served the dashboard on 8787: with that port taken
    # (another study, a notebook's cluster) the cluster warned, and under warnings-as-errors
    # failed to start; the study's cluster now takes a free port
    pytest.importorskip("dask.distributed")
    import socket
    import warnings
    holder = socket.socket()
    try:
        holder.bind(("", 8787))
        holder.listen(1)
    except OSError:
        pass   # already taken by something else: the same situation
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            client, cluster = study.make_client(jobs=1)
        try:
            assert ":8787" not in cluster.dashboard_link
            assert client.submit(sum, [1, 2]).result(timeout=60) == 3
        finally:
            client.close()
            cluster.close()
    finally:
        holder.close()
