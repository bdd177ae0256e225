"""``deepgrad study phase``: the trainability phase diagram of deep MLPs at mean-field
initialisation (Schoenholz et al. 2017, fig. 6), with the theory's 6 xi_c depth line over it.

A grid of (sigma_w^2, sigma_b^2, depth) cells, each one run of the study (weights
N(0, sigma_w^2 / fan_in), biases N(0, sigma_b^2), the same activation everywhere, trained
``steps`` Adam steps on spirals): resumable, and on Dask with ``--jobs``/``--scheduler`` like
any study. The map colours each cell by its test accuracy; networks deeper than about 6 xi_c
do not train (deep in the ordered phase, correlations between inputs vanish; deep in the
chaotic phase, they decorrelate), so the trainable region hugs the critical line.
"""
from __future__ import annotations

import math
import os
import sys
from typing import Sequence

import numpy as np

from . import study, theory

TRAINABLE = 0.8   # test accuracy that counts as trained (spirals: 3 classes, chance 1/3)
MAX_POINTS = 10_000   # values per axis of a grid (each cell is a training run)


def parse_range(text: str, what: str) -> list[float]:
    """'a:b:step' (inclusive of b when it lands on the grid) or a single number."""
    try:
        parts = [float(p) for p in str(text).split(":")]
    except ValueError:
        raise ValueError(f"{what}: expected START:STOP:STEP or a number, got {text!r}") from None
    if any(not math.isfinite(v) for v in parts):
        raise ValueError(f"{what}: values must be finite, got {text!r}")
    if len(parts) == 1:
        vals = parts
    elif len(parts) == 3 and parts[2] > 0 and parts[1] >= parts[0]:
        n = (parts[1] - parts[0]) / parts[2] + 1e-9
        if not n < MAX_POINTS:
            raise ValueError(f"{what}: {text!r} has about {n:.3g} values (at most {MAX_POINTS}, "
                             "each is a training run); use a larger STEP")
        n = int(math.floor(n)) + 1
        vals = [round(parts[0] + i * parts[2], 10) for i in range(n)]
    else:
        raise ValueError(f"{what}: expected START:STOP:STEP with STEP > 0 and STOP >= START, "
                         f"got {text!r}")
    return vals


def _values(vals, what: str, big: float) -> list:
    """``vals`` as a list of numbers, or a ValueError naming the bad one. The values themselves
    (sign, depth >= 2, ...) are study.validate's to check, which lists every bad cell once;
    here only what would break the grid or the theory drawn after the runs: non-numbers (a str
    was iterated character by character) and values beyond ``big``."""
    if isinstance(vals, (str, bytes)) or not hasattr(vals, "__iter__"):
        raise ValueError(f"phase_grid: {what} must be a list of numbers such as [1.0, 2.0], got "
                         f"{vals!r}")
    out = []
    for v in vals:
        if not (isinstance(v, (int, float, np.integer, np.floating))
                and not isinstance(v, (bool, np.bool_))):
            raise ValueError(f"phase_grid: every value of {what} must be a number, got {v!r}")
        if v > big:
            raise ValueError(f"phase_grid: {what} holds {v!r}; the mean-field theory drawn over "
                             f"the results is evaluated up to {big:g}; use smaller values")
        out.append(v)
    return out


def phase_grid(activation: str = "tanh", sigma_w2s: Sequence[float] = (1.0,),
               sigma_b2s: Sequence[float] = (0.05,), depths: Sequence[int] = (10, 20, 50, 100),
               width: int = 32, steps: int = 500, lr: float = 1e-4, seed: int = 0,
               dataset: str = "spirals", batch_size: int = 64, device: str = "cpu"):
    """One RunConfig per (sigma_b^2, sigma_w^2, depth) cell."""
    if not theory.supports(activation):
        raise ValueError(f"phase: activation {activation!r} has no mean-field theory; use one "
                         f"of {', '.join(sorted(theory.ACTIVATIONS))}")
    sigma_w2s = _values(sigma_w2s, "sigma_w2s", theory._MAX_VAR)
    sigma_b2s = _values(sigma_b2s, "sigma_b2s", theory._MAX_VAR)
    depths = _values(depths, "depths", math.inf)
    runs, names = [], {}
    for sb in sigma_b2s:
        for sw in sigma_w2s:
            for d in depths:
                name = f"phase-{activation}-sw{sw:g}-sb{sb:g}-d{d}"
                if name in names:    # two cells would share one record: one run silently lost
                    raise ValueError(
                        f"phase_grid: the cells (sigma_w2, sigma_b2, depth) = {names[name]} and "
                        f"{(sw, sb, d)} would both be the run {name!r} (values are named to 6 "
                        "significant digits); drop the duplicate or space the values further")
                names[name] = (sw, sb, d)
                runs.append(study.RunConfig(
                    name=name, dataset=dataset, depth=d,
                    width=width, activation=activation, init="meanfield", sigma_w2=float(sw),
                    sigma_b2=float(sb), optimizer="adam", lr=lr, steps=steps,
                    batch_size=batch_size, seed=seed, device=device, every=max(1, steps // 10)))
    return runs


def plot_phase(records, path: str, activation: str, sigma_b2: float) -> str:
    """Accuracy per (sigma_w^2, depth) cell, the 6 xi_c line and the critical sigma_w^2."""
    from . import plot as P
    recs = [r for r in records if r["config"]["sigma_b2"] == sigma_b2]
    if not recs:
        have = sorted({r["config"]["sigma_b2"] for r in records})
        raise ValueError(f"plot_phase: no record has sigma_b2 = {sigma_b2!r} (the records have "
                         f"{have or 'none'}); pass one of those")
    sws = sorted({r["config"]["sigma_w2"] for r in recs})
    ds = sorted({r["config"]["depth"] for r in recs})
    acc = np.full((len(ds), len(sws)), np.nan)
    for r in recs:
        c = r["config"]
        acc[ds.index(c["depth"]), sws.index(c["sigma_w2"])] = r["result"]["accuracy"] or 0.0
    fig, ax = P._subplots(path, (8, 5))
    # cells as rectangles on the real axes, so the theory line is drawn on the same scale
    sw_edges = np.concatenate([[sws[0] - (sws[1] - sws[0]) / 2 if len(sws) > 1 else sws[0] - .5],
                               (np.array(sws[:-1]) + np.array(sws[1:])) / 2,
                               [sws[-1] + (sws[-1] - sws[-2]) / 2 if len(sws) > 1 else sws[0] + .5]])
    d_edges = np.concatenate([[0], (np.array(ds[:-1]) + np.array(ds[1:])) / 2,
                              [ds[-1] + (ds[-1] - (ds[-2] if len(ds) > 1 else 0)) / 2]])
    mesh = ax.pcolormesh(sw_edges, d_edges, acc, cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(mesh, ax=ax, label="test accuracy after training")
    fine = np.linspace(sw_edges[0], sw_edges[-1], 300)
    xi = np.array([theory.xi_c(activation, max(s, 1e-3), sigma_b2) for s in fine])
    ax.plot(fine, np.minimum(6 * xi, d_edges[-1] * 10), color="white", lw=2, ls="--",
            label=r"$6\,\xi_c$ (mean-field theory)")
    crit = theory.critical_sigma_w2(activation, sigma_b2)
    if math.isfinite(crit):
        ax.axvline(crit, color="red", lw=1, ls=":", label=f"critical $\\sigma_w^2$ = {crit:.2f}")
    ax.set_ylim(d_edges[0], d_edges[-1])
    ax.set_xlabel(r"$\sigma_w^2$")
    ax.set_ylabel("depth (layers)")
    ax.set_title(f"trainability of {activation} nets, $\\sigma_b^2$ = {sigma_b2:g}")
    ax.legend(loc="upper right", fontsize=8)
    return P._save(fig, path)


def format_phase(records, activation: str) -> str:
    lines = []
    for sb in sorted({r["config"]["sigma_b2"] for r in records}):
        recs = [r for r in records if r["config"]["sigma_b2"] == sb]
        sws = sorted({r["config"]["sigma_w2"] for r in recs})
        ds = sorted({r["config"]["depth"] for r in recs})
        cell = {(r["config"]["depth"], r["config"]["sigma_w2"]): r["result"]["accuracy"]
                for r in recs}
        crit = theory.critical_sigma_w2(activation, sb)
        lines.append(f"\ntest accuracy, {activation}, sigma_b^2 = {sb:g} (critical sigma_w^2 = "
                     f"{crit:.3g}; '#' = trained to >= {TRAINABLE:.0%}, 6 xi_c in the last row)")
        lines.append("depth " + " ".join(f"{s:>5g}" for s in sws))
        for d in ds:
            lines.append(f"{d:>5} " + " ".join(
                f"{(cell.get((d, s)) or 0):>4.2f}{'#' if (cell.get((d, s)) or 0) >= TRAINABLE else ' '}"
                for s in sws))
        lines.append("6xi_c " + " ".join(f"{min(6 * theory.xi_c(activation, s, sb), 9999):>5.0f}"
                                         for s in sws))
    return "\n".join(lines)


def run_phase(configs, out: str, activation: str, resume: bool = True, plots: bool = True,
              stream=None, client=None) -> list[dict]:
    """Run the grid like any study (resume, Dask), then draw one map per sigma_b^2."""
    stream = stream if stream is not None else sys.stdout
    records = study.run_study(configs, out, resume=resume, plots=False, stream=stream,
                              client=client)
    table = format_phase(records, activation)
    print(table, file=stream)
    maps = []
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("matplotlib is not installed: no phase map (pip install 'deepgrad[plot]')",
                  file=stream)
        else:
            for sb in sorted({r["config"]["sigma_b2"] for r in records}):
                p = plot_phase(records, os.path.join(out, f"phase_{activation}_sb{sb:g}.png"),
                               activation, sb)
                maps.append(p)
                print(f"phase map: {p}", file=stream)
    from .report import write_html
    write_html(out, records, phase_images=maps, phase_text=table,
               title=f"deepgrad phase study: {activation}")
    return records
