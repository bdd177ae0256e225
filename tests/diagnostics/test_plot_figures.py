"""Plot functions return matplotlib Figures when no path is given (inline in Jupyter) and save
PNGs on a bare Figure when one is, without switching the user's pyplot backend (issue 12)."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import losses, nn, plot as P
from deepgrad.monitor import GradientMonitor

matplotlib = pytest.importorskip("matplotlib")


def _monitor():
    dg.manual_seed(0)
    m = nn.Sequential(nn.Dense(3, 8, "tanh"), nn.Dense(8, 2))
    mon = GradientMonitor(m)
    x = dg.tensor(np.ones((4, 3), np.float32))
    for _ in range(2):
        m.zero_grad()
        loss = losses.cross_entropy(m(x), np.zeros(4, np.int64))
        loss.backward()
        mon.step(loss)
    return mon


def test_figures_without_a_path_and_backend_untouched(tmp_path):
    from matplotlib.figure import Figure
    import matplotlib.pyplot as plt
    before = matplotlib.get_backend()
    mon = _monitor()
    figs = mon.plot()
    assert len(figs) == 3 and all(isinstance(f, Figure) for f in figs)
    for f in figs:
        plt.close(f)
    paths = mon.plot(str(tmp_path))
    assert all(p.endswith(".png") and (tmp_path / p.split("/")[-1]).stat().st_size > 1000
               for p in paths)
    d = mon.to_dict()
    fig = P.plot_flow_comparison({"a": d}, theory={"a": [1.0, 0.5]})
    assert isinstance(fig, Figure)
    plt.close(fig)
    assert matplotlib.get_backend() == before
