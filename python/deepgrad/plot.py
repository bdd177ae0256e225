"""Gradient-flow plots from monitor histories (``GradientMonitor.to_dict()``).

Every function returns a matplotlib Figure when ``path`` is None (shown inline in Jupyter, or
by ``plt.show()``), or saves a PNG to ``path`` and returns the path. Saving draws on a bare
``matplotlib.figure.Figure`` (the Agg canvas), so it works headless on servers and in CI
without touching pyplot's backend or its global state. matplotlib is an optional extra
(``pip install 'deepgrad[plot]'``), imported only when a plot is drawn.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

__all__ = ["plot_layer_norms", "plot_heatmap", "plot_global_norm", "plot_flow_comparison",
           "plot_loss_curves"]

_LABELS = {
    "signal_norm": "backward signal ||dL/d(layer output)||",
    "layer_grad_norm": "weight-gradient norm ||dL/dW||",
    "layer_grad_ratio": "||dL/dW|| / ||W||",
    "layer_update_ratio": "||ΔW|| / ||W||",
}


def _matplotlib():
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("deepgrad plots need matplotlib: pip install 'deepgrad[plot]'") from e
    return matplotlib


def _subplots(path, figsize):
    """(figure, axes): a bare Figure when saving to ``path`` (no backend, no pyplot state), a
    pyplot figure otherwise (the user's backend: inline in Jupyter)."""
    _matplotlib()
    if path is None:
        import matplotlib.pyplot as plt
        return plt.subplots(figsize=figsize)
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize)
    return fig, fig.add_subplot()


def _need(history, key: str, quantity: str):
    if not isinstance(history, Mapping) or key not in history:
        raise ValueError(f"history has no {key!r} (needed to plot {quantity!r}); pass "
                         "GradientMonitor.to_dict() or a loaded history")
    return history[key]


def _matrix(history: Mapping, quantity: str) -> np.ndarray:
    if not isinstance(history, Mapping) or quantity not in history:
        known = sorted(k for k in _LABELS if k in history) if isinstance(history, Mapping) else []
        raise ValueError(f"history has no {quantity!r}; known: {known}")
    rows = history[quantity]
    try:
        m = np.array([[np.nan if v is None else v for v in row] for row in rows],
                     dtype=np.float64)
    except (TypeError, ValueError):
        lens = sorted({len(r) if hasattr(r, "__len__") else -1 for r in rows})
        raise ValueError(f"history[{quantity!r}] must be one row of numbers (or None) per "
                         f"recorded step, all of one length (the layer count); got rows of "
                         f"lengths {lens} or non-numeric values; pass GradientMonitor.to_dict() "
                         "unmodified") from None
    if m.ndim != 2 and m.size:
        raise ValueError(f"history[{quantity!r}] must be a list of per-layer rows, got shape "
                         f"{m.shape}")
    if m.size == 0:
        raise ValueError(f"history has no recorded steps for {quantity!r}; call monitor.step() after backward()")
    return m


def _save(fig, path):
    """Save to ``path`` and return it; with no path, return the figure itself. The image is
    drawn into a temporary file beside ``path`` and renamed over it, so a failed or interrupted
    save leaves the old image (or none), never a half-written one. The format follows the
    extension (PNG when there is none; the file is written exactly at ``path``)."""
    fig.tight_layout()
    if path is None:
        return fig
    from .serialization import _write_atomic
    path = os.fspath(path)
    if not isinstance(path, str) or path == "":
        raise ValueError(f"deepgrad.plot: the output path is empty or not a text path "
                         f"({path!r}); give a file path such as 'flow.png'")
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    ext = os.path.splitext(path)[1][1:].lower()
    fmt = ext or "png"
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(f"deepgrad.plot: cannot save {path!r}: no image format {ext!r}; end the "
                         f"path with one of {', '.join('.' + k for k in sorted(supported))} "
                         "(.png is the usual one)")
    _write_atomic(path, lambda w: fig.savefig(w.f, dpi=100, format=fmt),
                  who="deepgrad.plot", example="flow.png")
    return path


def plot_layer_norms(history: Mapping, path=None, step: int = -1,
                     quantity: str = "signal_norm"):
    """Bar chart (log scale) of one recorded step's per-layer ``quantity``; returns ``path`` (or the Figure)."""
    m = _matrix(history, quantity)
    steps = _need(history, "steps", quantity)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not -len(m) <= step < len(m):
        raise ValueError(f"plot_layer_norms: step={step!r} is not one of the {len(m)} recorded "
                         f"steps; use an index in [{-len(m)}, {len(m) - 1}] (-1: the last)")
    if len(steps) != len(m):
        raise ValueError(f"plot_layer_norms: history has {len(steps)} 'steps' but {len(m)} rows "
                         f"of {quantity!r}; pass GradientMonitor.to_dict() unmodified")
    row = m[step]
    layers = _need(history, "layers", quantity)
    fig, ax = _subplots(path, (max(6, 0.35 * len(layers)), 4))
    x = np.arange(1, len(row) + 1)
    ok = np.isfinite(row) & (row > 0)
    ax.bar(x[ok], row[ok], color="tab:blue")
    ax.set_yscale("log")
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel(_LABELS.get(quantity, quantity))
    ax.set_title(f"step {steps[step]}")
    ax.set_xticks(x)
    return _save(fig, path)


def _integer_axis(axis) -> None:
    from matplotlib.ticker import MaxNLocator
    axis.set_major_locator(MaxNLocator(integer=True))


def plot_heatmap(history: Mapping, path=None, quantity: str = "signal_norm",
                 title: str | None = None):
    """Layer × step heatmap of log10(``quantity``); returns ``path`` (or the Figure)."""
    m = _matrix(history, quantity)
    with np.errstate(divide="ignore", invalid="ignore"):
        lg = np.log10(np.where(m > 0, m, np.nan))
    steps = _need(history, "steps", quantity)
    if len(steps) != len(m):
        raise ValueError(f"plot_heatmap: history has {len(steps)} 'steps' but {len(m)} rows of "
                         f"{quantity!r}; pass GradientMonitor.to_dict() unmodified")
    fig, ax = _subplots(path, (8, max(3, 0.25 * m.shape[1])))
    im = ax.imshow(lg.T, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest",
                   extent=(steps[0] - 0.5, steps[-1] + 0.5, 0.5, m.shape[1] + 0.5))
    fig.colorbar(im, ax=ax, label="log10 " + _LABELS.get(quantity, quantity))
    ax.set_xlabel("step")
    ax.set_ylabel("layer")
    _integer_axis(ax.yaxis)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_global_norm(history: Mapping, path=None):
    """Global gradient norm over the recorded steps (log scale); returns ``path`` (or the Figure)."""
    raw = _need(history, "global_grad_norm", "global_grad_norm")
    try:
        g = np.array([np.nan if v is None else v for v in raw], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("plot_global_norm: history['global_grad_norm'] must be a list of "
                         "numbers (or None), one per recorded step") from None
    if g.size == 0:
        raise ValueError("history has no recorded steps; call monitor.step() after backward()")
    steps = _need(history, "steps", "global_grad_norm")
    if g.ndim != 1 or len(steps) != len(g):
        raise ValueError(f"plot_global_norm: history has {len(steps)} 'steps' but "
                         f"{len(g)} values of 'global_grad_norm'; pass GradientMonitor.to_dict() "
                         "unmodified")
    fig, ax = _subplots(path, (7, 4))
    ax.plot(steps, g, color="tab:red")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("global gradient norm")
    return _save(fig, path)


def plot_flow_comparison(histories: Mapping[str, Mapping], path=None, step: int = 0,
                         quantity: str = "signal_norm", xlabel: str = "layer (input → output)",
                         title: str | None = None, ylabel: str | None = None,
                         theory: Mapping[str, Sequence[float]] | None = None):
    """One line per configuration: per-layer ``quantity`` at one recorded step (log scale).
    ``theory``: per configuration, a predicted profile drawn dashed in the same colour."""
    fig, ax = _subplots(path, (8, 5))
    for name, h in histories.items():
        try:
            row = _matrix(h, quantity)[step]
        except (ValueError, IndexError):
            continue
        line, = ax.plot(np.arange(1, len(row) + 1), row, marker="o", ms=3, label=name)
        pred = (theory or {}).get(name)
        if pred is not None:
            ax.plot(np.arange(1, len(pred) + 1), pred, ls="--", lw=1.2, color=line.get_color(),
                    label=f"{name} (mean-field theory)")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel or _LABELS.get(quantity, quantity))
    _integer_axis(ax.xaxis)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_loss_curves(curves: Mapping[str, Sequence[float]], path=None):
    """Training loss over steps, one line per configuration (log scale when all positive)."""
    fig, ax = _subplots(path, (8, 5))
    allpos = True
    for name, c in curves.items():
        try:
            c = np.asarray([np.nan if v is None else v for v in c], dtype=np.float64)
        except (TypeError, ValueError):
            c = None
        if c is None or c.ndim != 1:
            raise ValueError(f"plot_loss_curves: the curve {name!r} must be a list of numbers "
                             "(or None), one per step")
        allpos &= bool(np.all(c[np.isfinite(c)] > 0))
        ax.plot(np.arange(len(c)), c, label=name)
    if allpos:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=8)
    return _save(fig, path)
