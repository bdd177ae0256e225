"""Data-parallel training over MPI (issue 15), run with mpiexec -n 2 from the pip MPICH wheel:
float64 training matches single-process training on the full global batches to 1e-12 (uneven
last batch included), parameters are identical on both ranks after every step, rank 0's monitor
records the all-reduced gradients, checkpoints come from rank 0 only, and a rank that raises
aborts the job instead of hanging. Each mpiexec call has a 60 s timeout."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mpi4py")
HERE = os.path.dirname(os.path.abspath(__file__))
MPIEXEC = (shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or
           shutil.which("mpiexec"))
if MPIEXEC is None:
    pytest.skip("no mpiexec (pip install 'deepgrad[mpi]')", allow_module_level=True)


def mpirun(*args, n=2, timeout=60):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([MPIEXEC, "-n", str(n), sys.executable,
                           os.path.join(HERE, "mpi_train.py"), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_two_ranks_equal_one_process(tmp_path):
    r = mpirun("train", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("steps"))
    _, steps, _, worst, _, gdiff = line.split()
    assert int(steps) == 21                 # 7 epochs x 3 batches (16, 16, 13)
    assert float(worst) <= 1e-12 and float(gdiff) <= 1e-12
    import deepgrad as dg
    saved = dg.load(tmp_path / "model.dg")
    assert set(saved) == {"0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias"}
    assert os.listdir(tmp_path) == ["model.dg"]


def test_a_failing_rank_aborts_every_rank(tmp_path):
    r = mpirun("fail", str(tmp_path), timeout=60)
    assert r.returncode != 0
    assert "planted failure on rank 1" in r.stderr
    assert "rank 1 of 2 failed" in r.stderr


def test_without_mpi4py_the_extra_is_named(monkeypatch):
    import deepgrad.distributed as dist
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setattr(dist, "_STATE", {"comm": None, "hook": False, "staging": None})
    with pytest.raises(ImportError, match=r"deepgrad\[mpi\]"):
        dist.rank()


def test_import_deepgrad_does_not_import_mpi4py():
    r = subprocess.run([sys.executable, "-c", "import sys, deepgrad, deepgrad.distributed; "
                        "print('mpi4py' in sys.modules)"], capture_output=True, text=True,
                       timeout=60)
    assert r.stdout.strip() == "False", r.stderr


def test_sharded_batches_cover_each_sample_once():
    from deepgrad import data
    X = np.arange(45.0).reshape(45, 1)
    for world in (1, 2, 3, 4):
        seen = []
        sizes = []
        for r in range(world):
            for xb, in data.batches(X, batch_size=16, seed=3, rank=r, world_size=world):
                seen += xb[:, 0].tolist()
                sizes.append(len(xb))
        assert sorted(seen) == X[:, 0].tolist()
    with pytest.raises(ValueError, match="same seed"):
        data.batches(X, batch_size=4, rank=0, world_size=2)
    with pytest.raises(ValueError, match="rank 2 is not below"):
        data.batches(X, batch_size=4, seed=0, rank=2, world_size=2)


@pytest.mark.parametrize("mode,words", [
    ("mismatch", "the model on rank 1 differs from rank 0's (140 parameters of float32 against "
                 "132 parameters of float32)"),
    ("mismatch-shape", "the same parameter count and dtype but other layer shapes"),
])
def test_ranks_with_different_models_are_refused_on_every_rank(tmp_path, mode, words):
    # MPI itself failed deep inside the broadcast on one rank only ("message sizes do not
    # match"), while the other rank went on with the model it had
    import re
    r = mpirun(mode, str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    # (the ranks' lines may arrive interleaved: match each message on its own)
    said = re.findall(r"rank (\d) refused: (.*?before the broadcast)", r.stdout)
    assert sorted(k for k, _ in said) == ["0", "1"], r.stdout
    assert all(words in msg for _, msg in said), said
