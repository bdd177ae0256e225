"""The monitor's framework-free core: thresholds, findings, the diagnosis of a history, and
the history helpers (bounded windows, the max_records cap, plain-data export). It imports
nothing from the rest of deepgrad and never torch: a history is plain lists and numbers."""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

__all__ = ["Thresholds", "Finding", "GradientWarning", "diagnose", "history_keys"]

_LAYER_KEYS = ("signal_norm", "layer_grad_norm", "layer_weight_norm", "layer_grad_ratio",
               "layer_update_ratio", "act_mean", "act_std", "saturated", "dead",
               "layer_grad_linf", "layer_nonfinite")

HISTORY_KEYS = ("steps", "loss", "global_grad_norm", "global_param_norm", "param_grad_norm",
                "param_norm", "update_norm") + _LAYER_KEYS + ("first_nonfinite",)


def history_keys() -> tuple:
    """The per-record keys every monitor (deepgrad or torch) keeps, in order."""
    return HISTORY_KEYS


def new_history() -> dict:
    h = {k: [] for k in HISTORY_KEYS}
    h["time_signal"] = {}
    return h


def loss_value(loss) -> float | None:
    """The loss handed to ``GradientMonitor.step`` as a float (None stays None): a real number,
    or anything with ``item()`` holding one (a one-element tensor or array of any framework).
    Anything else raises, naming what came and what to pass, so the monitor can refuse it before
    it changes anything."""
    if loss is None:
        return None
    v = loss
    if hasattr(loss, "item"):
        try:
            v = loss.item()
        except (ValueError, RuntimeError):   # more than one element (numpy, torch, deepgrad)
            shape = getattr(loss, "shape", None)
            shape = tuple(shape) if shape is not None else "?"
            raise ValueError(f"GradientMonitor.step: the loss must be one number, got "
                             f"{type(loss).__name__} of shape {shape}; pass the scalar loss "
                             f"(e.g. loss.mean() or loss.sum())") from None
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        got = type(loss).__name__ + ("" if v is loss else f" holding a {type(v).__name__}")
        raise TypeError(f"GradientMonitor.step: the loss must be None, a real number or a "
                        f"one-element tensor or array, got {got}")
    return float(v)


def window(h: dict, k: int, layers) -> dict:
    """The last k records of history ``h`` as a history dict (incremental diagnosis)."""
    lo = max(0, len(h["steps"]) - k)
    out = {key: v[lo:] for key, v in h.items() if key != "time_signal"}
    out["time_signal"] = {name: rows[lo:] for name, rows in h["time_signal"].items()}
    out["layers"] = layers
    return out


def thin(h: dict, cap: int | None) -> None:
    """Apply a max_records cap in place: the older three quarters of the history are thinned to
    every other record (the first record is always kept), the most recent quarter stays whole;
    the history keeps spanning the whole run, at full resolution for recent steps."""
    n = len(h["steps"])
    if cap is None or n <= cap:
        return
    recent = cap // 4
    keep = list(range(0, n - recent, 2)) + list(range(n - recent, n))
    while len(keep) > cap:  # far over the cap (a long unread stretch)
        old = keep[:-recent]
        keep = old[::2] + keep[-recent:]
    for key, v in h.items():
        if key == "time_signal":
            for name, rows in v.items():
                if len(rows) == n:
                    v[name] = [rows[i] for i in keep]
        elif isinstance(v, list) and len(v) == n:
            h[key] = [v[i] for i in keep]


class GradientWarning(UserWarning):
    """Issued once per finding by a monitor created with ``warn=True``."""


@dataclass
class Thresholds:
    """When ``diagnose`` reports a problem. Every threshold can be changed per monitor.

    - ``vanishing_ratio``: backward signal at the first layer (or first time step) divided by the
      signal at the last layer (last time step) below this is "vanishing" (default 1e-3).
    - ``exploding_ratio``: that same ratio above this is "exploding" (default 1e3).
    - ``growth_factor`` / ``growth_window``: the global gradient norm growing by more than
      ``growth_factor`` within ``growth_window`` recorded steps is "exploding" (1e3 in 10).
    - ``dead_fraction``: a ReLU-like layer whose fraction of units that are zero over the whole
      batch exceeds this is "dead" (default 0.5).
    - ``saturation_fraction``: a sigmoid/tanh-like layer whose fraction of pre-activations with
      derivative below ``saturation_derivative`` × its maximum exceeds this is "saturated"
      (default 0.9, derivative threshold 1e-3).
    """

    vanishing_ratio: float = 1e-3
    exploding_ratio: float = 1e3
    growth_factor: float = 1e3
    growth_window: int = 10
    dead_fraction: float = 0.5
    saturation_fraction: float = 0.9
    saturation_derivative: float = 1e-3

    def __post_init__(self):
        # (name, lowest, highest, lowest allowed itself): a threshold outside its range would
        # make a finding impossible or permanent without saying so
        for name, lo, hi, lo_ok in (("vanishing_ratio", 0.0, math.inf, False),
                                    ("exploding_ratio", 0.0, math.inf, False),
                                    ("growth_factor", 1.0, math.inf, False),
                                    ("dead_fraction", 0.0, 1.0, True),
                                    ("saturation_fraction", 0.0, 1.0, True),
                                    ("saturation_derivative", 0.0, 1.0, False)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (
                    (v >= lo if lo_ok else v > lo) and v <= hi):
                rng = f"{'[' if lo_ok else '('}{lo:g}, {hi:g}]"
                raise ValueError(f"Thresholds: {name} must be a number in {rng}, got {v!r}")
        w = self.growth_window
        if isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1:
            raise ValueError(f"Thresholds: growth_window must be an int >= 1 (recorded steps), "
                             f"got {w!r}")


@dataclass
class Finding:
    """One diagnosed problem. ``kind`` is vanishing, exploding, nonfinite, dead or saturation;
    ``where`` is depth, time, growth or a layer name; ``layer`` is 1-based (None when global)."""

    kind: str
    message: str
    value: float
    step: int
    layer: int | None = None
    where: str = "depth"

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# diagnosis over a history dict (pure Python; works on saved JSON histories too)


def _row(history: Mapping, key: str, i: int) -> np.ndarray | None:
    rows = history.get(key)
    if not rows:
        return None
    return np.array([np.nan if v is None else v for v in rows[i]], dtype=np.float64)


def _last_with(history: Mapping, key: str) -> int | None:
    """Index of the latest step whose ``key`` row has a finite entry."""
    rows = history.get(key) or []
    for i in range(len(rows) - 1, -1, -1):
        if any(v is not None and math.isfinite(v) for v in rows[i]):
            return i
    return None


def _ratio_finding(first: float, last: float, th: Thresholds, step: int, where: str,
                   first_name: str, last_name: str, layer: int | None) -> Finding | None:
    if not (math.isfinite(first) and math.isfinite(last)) or last <= 0:
        return None
    ratio = first / last
    what = "layer" if where == "depth" else "time step"
    if ratio < th.vanishing_ratio:
        return Finding("vanishing", f"vanishing: the backward signal at {what} {first_name} is "
                       f"{ratio:.1e} of {what} {last_name}", ratio, step, layer, where)
    if ratio > th.exploding_ratio:
        return Finding("exploding", f"exploding: the backward signal at {what} {first_name} is "
                       f"{ratio:.1e}x that of {what} {last_name}", ratio, step, layer, where)
    return None


def diagnose(history: Mapping, thresholds: Thresholds | None = None) -> list[Finding]:
    """Structured findings for a monitor history (``GradientMonitor.to_dict()`` or its JSON)."""
    th = thresholds or Thresholds()
    out: list[Finding] = []
    steps = history.get("steps") or []
    if not steps:
        return out
    layers = history.get("layers") or []

    # non-finite gradients
    g = np.array([np.nan if v is None else v for v in history.get("global_grad_norm", [])], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(g))
    if bad.size:
        s = steps[bad[0]]
        firsts = history.get("first_nonfinite") or []
        where = firsts[bad[0]] if bad[0] < len(firsts) else None
        if where:   # [parameter name, index of the first bad element, layer index or None]
            pname, idx, li = where[0], where[1], where[2] if len(where) > 2 else None
            lay = f" in layer {li + 1} ({layers[li]})" if li is not None and li < len(layers) else ""
            msg = (f"nonfinite: the gradient of {pname}{lay} holds NaN or Inf at step {s}, first "
                   f"at element {idx} (try a smaller learning rate, clip_grad_norm_, or "
                   "detect_anomaly())")
            out.append(Finding("nonfinite", msg, float(g[bad[0]]), s,
                               None if li is None else li + 1, pname))
        else:
            out.append(Finding("nonfinite", f"nonfinite: the gradient holds NaN or Inf at step {s} "
                               "(try a smaller learning rate, clip_grad_norm_, or detect_anomaly())",
                               float(g[bad[0]]), s, None, "growth"))

    # depth: first vs last layer of the backward signal, at the latest recorded step
    i = _last_with(history, "signal_norm")
    if i is not None and len(layers) >= 2:
        row = _row(history, "signal_norm", i)
        idx = np.flatnonzero(np.isfinite(row))
        if idx.size >= 2:
            a, b = int(idx[0]), int(idx[-1])
            f = _ratio_finding(row[a], row[b], th, steps[i], "depth", f"{a + 1} ({layers[a]})",
                               f"{b + 1} ({layers[b]})", a + 1)
            if f:
                out.append(f)

    # time: dL/dh_t at the first vs the last time step, for every recurrent layer
    for name, rows in (history.get("time_signal") or {}).items():
        for j in range(len(rows) - 1, -1, -1):
            r = rows[j]
            if r:
                r = np.array([np.nan if v is None else v for v in r], dtype=np.float64)
                f = _ratio_finding(r[0], r[-1], th, steps[j], "time", "1", f"{len(r)}", None)
                if f:
                    f.message += f" in {name}"
                    f.where = name
                    out.append(f)
                break

    # growth of the global norm within a window of recorded steps
    w = max(1, int(th.growth_window))
    if g.size >= 2:
        best, at, frm = 0.0, None, None
        for k in range(1, g.size):
            lo = max(0, k - w)
            window = g[lo:k]
            ok = np.isfinite(window) & (window > 0)
            if not ok.any() or not np.isfinite(g[k]):
                continue
            vals = np.where(ok, window, np.inf)[::-1]  # latest minimum: the shortest span
            j = k - 1 - int(np.argmin(vals))
            r = float(g[k] / g[j])
            if r > best:
                best, at, frm = r, k, j
        if best > th.growth_factor:
            out.append(Finding("exploding", f"exploding: global norm grew {best:.0e}x in "
                               f"{steps[at] - steps[frm]} steps (step {steps[frm]} to {steps[at]})",
                               best, steps[at], None, "growth"))

    # dead units and saturation per layer, at the latest step that has them
    for key, kind, limit, label in (("dead", "dead", th.dead_fraction, "dead ReLUs"),
                                    ("saturated", "saturation", th.saturation_fraction, "saturation")):
        i = _last_with(history, key)
        if i is None:
            continue
        row = _row(history, key, i)
        for l, v in enumerate(row):
            if np.isfinite(v) and v > limit:
                unit = "" if kind == "dead" else " of units"
                out.append(Finding(kind, f"{label}: {100 * v:.0f}%{unit} in layer {l + 1} ({layers[l]})",
                                   float(v), steps[i], l + 1, layers[l]))
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x
