"""The adding problem at T = 50: an LSTM learns it, a same-size tanh RNN stays near the 1/6
baseline of always predicting 1 (its gradient vanishes through time). Fixed seeds; a few seconds."""
import numpy as np

import deepgrad as dg
from deepgrad import losses, nn, optim
from deepgrad.data import ADDING_BASELINE_MSE, adding_problem
from deepgrad.study import _Regressor as Regressor  # the study's model: cell + linear read-out


def train(cell_cls, steps=350, T=50, H=32, B=64, lr=0.02):
    dg.manual_seed(0)
    Xtr, ytr = adding_problem(8192, T, seed=0)
    Xte, yte = adding_problem(512, T, seed=1)
    model = Regressor(cell_cls(2, H), H)
    opt = optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        idx = rng.integers(0, len(Xtr), B)
        loss = losses.mse(model(dg.tensor(Xtr[idx])), dg.tensor(ytr[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with dg.no_grad():
        pred = model(dg.tensor(Xte)).numpy().astype(np.float64)
    return float(np.mean((pred - yte) ** 2))


def test_lstm_beats_baseline_and_rnn_does_not():
    lstm_mse = train(nn.LSTM)
    rnn_mse = train(nn.RNN)
    baseline = float(np.mean((adding_problem(512, 50, seed=1)[1].astype(np.float64) - 1.0) ** 2))
    assert abs(baseline - ADDING_BASELINE_MSE) < 0.03
    assert lstm_mse < 0.2 * ADDING_BASELINE_MSE, (lstm_mse, rnn_mse)
    assert rnn_mse > 0.6 * ADDING_BASELINE_MSE, (lstm_mse, rnn_mse)
