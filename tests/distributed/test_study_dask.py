"""deepgrad study on Dask (issue 15): a grid on a LocalCluster of 2 worker processes gives the
sequential study's results run by run; a worker killed mid-study costs only its task; a rerun
does only the missing runs; without Dask, --jobs names the extra."""
import io
import os
import signal
import sys
import threading
import time

import pytest

from deepgrad import study

distributed = pytest.importorskip("dask.distributed")


def _grid(steps=15):
    return study.build_grid([4], [8], ["tanh", "relu"], ["auto"], ["none"], [False, True],
                            rnn=False, steps=steps, batch_size=32, every=1)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _same(a, b):
    assert [r["config"] for r in a] == [r["config"] for r in b]
    for x, y in zip(a, b):
        assert x["loss_curve"] == y["loss_curve"], x["config"]["name"]
        assert x["history"] == y["history"], x["config"]["name"]
        assert x["final_signal"] == y["final_signal"]


def test_dask_equals_sequential(tmp_path, client):
    seq = study.run_study(_grid(), str(tmp_path / "seq"), plots=False, stream=io.StringIO())
    log = io.StringIO()
    par = study.run_study(_grid(), str(tmp_path / "par"), plots=False, stream=log,
                          client=client)
    assert "running 4 run(s) on Dask (2 workers" in log.getvalue()
    _same(seq, par)
    assert sorted(os.listdir(tmp_path / "par" / "runs")) == sorted(
        os.listdir(tmp_path / "seq" / "runs"))


def test_resume_runs_only_the_missing(tmp_path, client):
    grid = _grid()
    study.run_study(grid[:2], str(tmp_path), plots=False, stream=io.StringIO(), client=client)
    log = io.StringIO()
    recs = study.run_study(grid, str(tmp_path), plots=False, stream=log, client=client)
    text = log.getvalue()
    assert text.count("finished earlier, reusing") == 2 and "running 2 run(s)" in text
    assert len(recs) == 4


def test_a_killed_worker_costs_only_its_task(tmp_path, client):
    grid = _grid(steps=400)
    seq = study.run_study(grid, str(tmp_path / "seq"), plots=False, stream=io.StringIO())
    result, error = {}, []

    def go():
        try:
            result["recs"] = study.run_study(grid, str(tmp_path / "par"), plots=False,
                                             stream=io.StringIO(), client=client)
        except Exception as e:  # reported below
            error.append(e)
    t = threading.Thread(target=go)
    t.start()
    killed = None
    deadline = time.time() + 60
    while time.time() < deadline and killed is None:
        busy = [w for w, tasks in client.processing().items() if tasks]
        if busy:
            pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed = pid
        time.sleep(0.05)
    t.join(timeout=180)
    assert killed is not None, "no task was running to kill"
    assert not t.is_alive() and not error, error
    _same(seq, result["recs"])
    client.wait_for_workers(2, timeout=60)


def test_without_dask_the_extra_is_named(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    with pytest.raises(ImportError, match=r"deepgrad\[distributed\]"):
        study.make_client(jobs=2)
    from deepgrad.cli import main
    assert main(["study", "--jobs", "2", "--out", str(tmp_path), "--no-rnn", "--steps", "2",
                 "--depths", "3", "--widths", "4"]) == 2
