"""Vanishing gradients, seen and fixed: a depth-20 MLP with sigmoid units and Xavier init vs
the same depth with ReLU + He init, then an RNN vs an LSTM through 30 time steps.

The GradientMonitor records the backward signal ||dL/d(layer output)|| at every layer (and
||dL/dh_t|| at every time step); diagnose() turns the history into findings.
"""
import tempfile

import numpy as np

import deepgrad as dg
from deepgrad import data, losses, nn, optim
from deepgrad.monitor import GradientMonitor
from deepgrad.nn.utils import clip_grad_norm_


def mlp(activation: str, init: str, depth: int = 20, width: int = 64) -> nn.Sequential:
    layers = [nn.Dense(2, width, activation, init=init)]
    layers += [nn.Dense(width, width, activation, init=init) for _ in range(depth - 2)]
    return nn.Sequential(*layers, nn.Dense(width, 3, init=init))


dg.manual_seed(0)
X, y = data.spirals(n=600, classes=3, seed=0)
monitors = {}
for activation, init in (("sigmoid", "xavier_normal"), ("relu", "he")):
    model = mlp(activation, init)
    opt = optim.Adam(model, lr=1e-3)
    monitor = GradientMonitor(model, every=10)
    for epoch in range(12):                     # 10 mini-batches per epoch: 120 steps
        for xb, yb in data.batches(X, y, batch_size=64, seed=epoch):
            loss = losses.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            clip_grad_norm_(model, 5.0)        # one native pass over the gradient arena
            opt.step()
            monitor.step(loss)
    monitors[activation] = monitor
    signal = monitor.to_dict()["signal_norm"]
    print(f"\n{activation} + {init}: backward signal, layer 1 / layer 20 = "
          f"{signal[0][0] / signal[0][-1]:.1e} at init, {signal[-1][0] / signal[-1][-1]:.1e} "
          f"at step {monitor.to_dict()['steps'][-1]}; loss {loss.item():.3f}")
    for finding in monitor.diagnose():
        print("  ", finding)

# Through time: the gradient reaching h_1 from a loss on h_T.
x = dg.tensor(np.random.default_rng(0).random((16, 30, 2)).astype(np.float32))
for cell in (nn.RNN(2, 32), nn.LSTM(2, 32)):
    monitor = GradientMonitor(cell)
    out, last = cell(x)
    h = last[0] if isinstance(last, tuple) else last
    (h * h).sum().backward()
    monitor.step()
    ts = next(iter(monitor.to_dict()["time_signal"].values()))[0]
    print(f"\n{type(cell).__name__}: ||dL/dh_1|| / ||dL/dh_30|| = {ts[0] / ts[-1]:.1e}")
    for finding in monitor.diagnose():
        print("  ", finding)

try:
    import matplotlib  # noqa: F401
    folder = tempfile.mkdtemp(prefix="vanishing_gradients_")
    paths = monitors["sigmoid"].plot(folder, prefix="sigmoid_")
    paths += monitors["relu"].plot(folder, prefix="relu_")
    print("\nplots:", ", ".join(paths))
except ImportError:
    print("\n(pip install 'deepgrad[plot]' for the PNG plots)")
