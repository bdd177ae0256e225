"""End to end: the course's XOR network and a ReLU MLP on spirals actually learn."""
import time

import numpy as np

import deepgrad as dg
from deepgrad import data, losses, nn, optim


def test_221_sigmoid_network_learns_xor():
    dg.manual_seed(0)
    net = nn.Sequential(nn.Dense(2, 2, "sigmoid"), nn.Dense(2, 1, "sigmoid"))
    opt = optim.SGD(net, lr=2.0, momentum=0.9)
    X, y = data.xor()
    for _ in range(1500):
        opt.zero_grad()
        loss = losses.binary_cross_entropy(net(X), y)
        loss.backward()
        opt.step()
    pred = (net(X).numpy() > 0.5).astype(np.float32)
    assert int((pred == y).sum()) == 4
    assert loss.item() < 0.05


def test_relu_mlp_fits_spirals():
    dg.manual_seed(0)
    X, y = data.spirals(n=1000, classes=3, seed=0)
    net = nn.Sequential(nn.Dense(2, 32, "relu"), nn.Dense(32, 32, "relu"), nn.Dense(32, 3))
    opt = optim.Adam(net, lr=0.02)
    t0 = time.perf_counter()
    for xb, yb in ((X, y),) * 150:          # full-batch gradient descent
        opt.zero_grad()
        losses.cross_entropy(net(xb), yb).backward()
        opt.step()
    elapsed = time.perf_counter() - t0
    acc = float((net(X).numpy().argmax(axis=1) == y).mean())
    assert acc >= 0.97, f"training accuracy {acc:.3f}"
    # ~0.2 s on one idle core; the bound only catches pathological slowdowns on a busy CI box
    assert elapsed < 60.0


def test_minibatch_training_with_scheduler_and_checkpoint(tmp_path):
    dg.manual_seed(1)
    X, y = data.moons(400, noise=0.1, seed=0)
    net = nn.Sequential(nn.Dense(2, 16, "tanh"), nn.Dense(16, 2))
    opt = optim.SGD(net, lr=0.3, momentum=0.9)
    sched = optim.CosineAnnealingLR(opt, T_max=40)
    for _ in range(40):
        for xb, yb in data.batches(X, y, batch_size=64, seed=0):
            opt.zero_grad()
            losses.cross_entropy(net(xb), yb).backward()
            opt.step()
        sched.step()
    acc = float((net(X).numpy().argmax(axis=1) == y).mean())
    assert acc >= 0.95
    dg.save(net.state_dict(), tmp_path / "moons.dg")
    fresh = nn.Sequential(nn.Dense(2, 16, "tanh"), nn.Dense(16, 2))
    fresh.load_state_dict(dg.load(tmp_path / "moons.dg"))
    np.testing.assert_array_equal(fresh(X).numpy(), net(X).numpy())


def test_examples_run(capsys):
    import pathlib
    import runpy
    root = pathlib.Path(__file__).resolve().parents[2] / "examples"
    for name in ("perceptron.py", "xor.py", "dag_weight_reuse.py", "spirals.py"):
        runpy.run_path(str(root / name), run_name="__main__")
    out = capsys.readouterr().out
    assert "= 0.94" in out and "= 0.01" in out                       # perceptron example
    assert "y_hat=0.60  BCE=0.92" in out and "y_hat=0.66  BCE=1.07" in out
    assert "dL/dw = -12, dL/db = -4" in out
