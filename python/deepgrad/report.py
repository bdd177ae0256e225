"""report.html: the study in one self-contained page (images embedded as data URIs, no network,
no JavaScript), readable on a laptop and printable to PDF."""
from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import os
from typing import Sequence

from .serialization import write_text_atomic

# What each finding kind means and what fixes it (the lessons the classic runs teach).
REMEDIES = {
    "vanishing": "the backward signal dies out before it reaches the first layers, so they "
                 "barely learn. He or Xavier initialisation, ReLU-family activations, batch "
                 "norm or residual connections fix it",
    "exploding": "the gradient grows layer by layer or step by step. A smaller initial scale, "
                 "a lower learning rate or gradient clipping (clip_grad_norm_) fix it",
    "saturation": "most units sit on the flat tails of sigmoid/tanh, where the derivative is "
                  "nearly zero. Xavier initialisation, batch norm or a ReLU-family activation "
                  "fix it",
    "dead": "most ReLUs output zero for every sample and pass no gradient. LeakyReLU, He "
            "initialisation or a lower learning rate fix it",
    "nonfinite": "the gradient holds NaN or Inf. A lower learning rate, gradient clipping or "
                 "deepgrad.detect_anomaly() to find the op fix it",
}
TIME_REMEDY = ("the gradient through time dies out over the sequence, so early inputs are not "
               "learned. Gated cells (LSTM, GRU) with a forget-gate bias of 1, shorter "
               "sequences (truncated BPTT) or gradient clipping against the opposite problem "
               "help")

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1100px; margin: 0 auto; padding: 1.2em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta { color: #666; font-size: .9em; }
table { border-collapse: collapse; width: 100%; font-size: .85em; margin: .6em 0; }
th, td { border: 1px solid #ddd; padding: .3em .45em; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
tr.bad td { background: #fff3f0; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; }
pre { font-size: .85em; background: #f8f8f8; padding: .6em; overflow-x: auto; }
.finding { margin: .3em 0 .3em 1em; } .ok { color: #2a7a2a; } .warn { color: #b03a2e; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: .8em; }
td.text, th.text { text-align: left; }
@media print { body { max-width: none; font-size: 11pt; } figure, table, .run { break-inside: avoid; }
               h2 { break-after: avoid; } }
"""


SUMMARY_FIELDS = ("name", "model", "dataset", "depth", "width", "activation", "init", "norm",
                  "residual", "optimizer", "lr", "steps", "signal_ratio_init",
                  "signal_ratio_final", "final_loss", "accuracy", "test_mse", "seconds",
                  "monitor_overhead", "findings")


THEORY_TOLERANCE = 0.2   # relative disagreement of the per-layer ratio that gets flagged


def _findings(result: dict) -> list:
    """A record's findings as a list of messages (one message given as a string, as a hand
    edit may leave it, is one finding, not one per character)."""
    fs = result.get("findings") or []
    return [fs] if isinstance(fs, str) else [str(f) for f in fs]


def theory_comparison(rec: dict) -> dict:
    """Mean-field prediction vs measurement at initialisation for one run record: the predicted
    per-layer backward-signal ratio sqrt(chi_1) (deepgrad.theory), the measured one (geometric
    mean over the hidden layers of the step-0 record), the predicted profile scaled to the
    measured last hidden layer, and whether they agree within THEORY_TOLERANCE. ``why`` says
    why there is no prediction (batch norm, residual blocks, recurrent runs, an activation or
    init the theory does not cover)."""
    from . import theory
    c = rec["config"]
    out = {"predicted": None, "measured": None, "agrees": None, "profile": None, "why": None}
    if c["model"] != "mlp":
        out["why"] = "recurrent run (the theory is for feed-forward nets)"
    elif c["norm"] != "none":
        out["why"] = "batch norm (another recursion)"
    elif c["residual"]:
        out["why"] = "residual blocks (another recursion)"
    elif not theory.supports(c["activation"]):
        out["why"] = f"no formulas for {c['activation']}"
    if out["why"]:
        return out
    if c["init"] == "meanfield":          # the phase study draws from the theory's own law
        sw, sb = c.get("sigma_w2"), c.get("sigma_b2") or 0.0
    else:                                 # deepgrad's inits start the biases at 0
        sw, sb = theory.sigma_w2_of_init(c["init"], c["activation"], c["width"], c["width"]), 0.0
    if sw is None or sw <= 0:
        out["why"] = f"init {c['init']!r} has no sigma_w^2"
        return out
    try:
        p = theory.predict(c["activation"], sw, sb, c["depth"])
    except (ValueError, TypeError) as e:   # a record the theory cannot take: said in its row,
        out["why"] = f"no prediction ({e})"   # not an error for the whole report
        return out
    out["sigma_b2"] = sb
    out["predicted"], out["sigma_w2"], out["chi1"] = p["ratio_per_layer"], sw, p["chi1"]
    rows = rec["history"].get("signal_norm") or []
    row = rows[0] if rows else None
    # hidden layers 2..depth-1 are the square width x width ones the theory describes
    hid = [v for v in (row or [])[1:-1]]
    if len(hid) >= 2 and all(v is not None and v > 0 and math.isfinite(v) for v in hid):
        out["measured"] = (hid[0] / hid[-1]) ** (1.0 / (len(hid) - 1))
        if math.isfinite(p["ratio_per_layer"]) and p["ratio_per_layer"] > 0:
            out["agrees"] = abs(out["measured"] / p["ratio_per_layer"] - 1.0) <= THEORY_TOLERANCE
            last = hid[-1]
            L = c["depth"]
            # layers 2..L-1 measured against the prediction anchored at layer L-1
            out["profile"] = [None] + [last * p["ratio_per_layer"] ** (L - 1 - l)
                                       for l in range(2, L)] + [None]
    return out


def format_theory(records: Sequence[dict]) -> str:
    """The --theory block printed after the summary table."""
    lines = ["Mean-field theory at initialisation (infinite width; sigma_b^2 = 0): per-layer "
             "backward-signal ratio",
             f"{'run':40s} {'sigma_w^2':>9} {'predicted':>10} {'measured':>10}  verdict"]
    for rec in records:
        t = theory_comparison(rec)
        name = rec["config"]["name"]
        if t["why"]:
            lines.append(f"{name:40s} {'':>9} {'':>10} {'':>10}  n/a: {t['why']}")
            continue
        meas = "-" if t["measured"] is None else f"{t['measured']:.3f}"
        verdict = ("-" if t["agrees"] is None else
                   "agrees" if t["agrees"] else
                   f"DISAGREES by more than {100 * THEORY_TOLERANCE:.0f}%")
        lines.append(f"{name:40s} {t['sigma_w2']:>9.3g} {t['predicted']:>10.3f} {meas:>10}  "
                     f"{verdict}")
    lines.append("The theory holds for wide nets at initialisation; at width 64 the measured "
                 "ratio scatters around it by several percent per layer.")
    return "\n".join(lines)


def summary_rows(records: Sequence[dict]) -> list[dict]:
    rows = []
    for rec in records:
        c, r = rec["config"], rec["result"]
        row = {k: c.get(k) for k in SUMMARY_FIELDS if k in c}
        row.update({k: r.get(k) for k in ("signal_ratio_init", "signal_ratio_final", "final_loss",
                                          "accuracy", "test_mse", "seconds")})
        sec = r.get("seconds") or 0.0
        row["monitor_overhead"] = (r.get("monitor_seconds", 0.0) / sec) if sec > 0 else None
        row["findings"] = "; ".join(_findings(r))
        rows.append(row)
    return rows


def _img(path: str) -> str | None:
    if not path or not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def _figure(path: str, caption: str) -> str:
    src = _img(path)
    if src is None:
        return ""
    return (f'<figure><img src="{src}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _fmt(v, kind: str = "g") -> str:
    if v is None:
        return "–"
    if kind == "pct":
        return f"{100 * v:.1f}%"
    if kind == "s":
        return f"{v:.1f}"
    return f"{v:.3g}" if isinstance(v, float) else html.escape(str(v))


_INIT_WORDS = {"normal": "small normal (N(0, 0.01²))", "uniform": "small uniform (U[±0.05])",
               "he": "He", "xavier": "Xavier", "lecun": "LeCun",
               "meanfield": "mean-field (N(0, σ_w²/fan_in))"}


def _verdict(t: dict) -> str:
    if t["agrees"] is None:
        return "–"
    off = abs(t["measured"] / t["predicted"] - 1.0)
    return (f"agrees (within {100 * off:.0f}%)" if t["agrees"] else
            f"DISAGREES by {100 * off:.0f}% (more than {100 * THEORY_TOLERANCE:.0f}%)")


def _theory_sentence(rec: dict) -> str:
    t = theory_comparison(rec)
    if t["why"] or t["measured"] is None:
        return ""
    L = rec["config"]["depth"]
    return (f'<p class="finding">Mean-field theory (σ<sub>w</sub>² = {t["sigma_w2"]:.3g}, '
            f"χ<sub>1</sub> = {t['chi1']:.3g}) predicts the backward signal to change by "
            f"{t['predicted']:.3g} per layer, {t['predicted'] ** (L - 3):.2g} over the "
            f"{L - 2} hidden layers; measured {t['measured']:.3g} per layer: "
            f"{html.escape(_verdict(t))}.</p>")


BRIEF_ABOVE = 12   # runs; a larger study lists its healthy runs in one line


def _findings_html(records, theory: bool = False) -> str:
    healthy_mlp = [r["config"]["name"] for r in records
                   if not r["result"].get("findings") and r["config"]["model"] == "mlp"]
    healthy_rec = [r["config"]["name"] for r in records
                   if not r["result"].get("findings") and r["config"]["model"] != "mlp"]
    out = []
    # a large grid (a phase study, a sweep): one line for the healthy runs, a section for the rest
    brief = len(records) > BRIEF_ABOVE
    if brief:
        ok = [r["config"]["name"] for r in records if not r["result"].get("findings")]
        if ok:
            out.append(f'<p><span class="ok">No problem found in {len(ok)} of {len(records)} '
                       f"runs</span>: {html.escape(', '.join(ok))}.</p>")
    for rec in records:
        name = rec["config"]["name"]
        fs = _findings(rec["result"])
        if brief and not fs:
            continue
        c = rec["config"]
        what = (f"{c['activation']} with {_INIT_WORDS.get(c['init'], c['init'])} init"
                + (", batch norm" if c.get("norm") == "batch" else "")
                + (", residual" if c.get("residual") else "")
                if c["model"] == "mlp" else f"{c['model'].upper()} on the adding problem")
        out.append(f'<div class="run"><h3>{html.escape(name)}</h3><p>{html.escape(what)}.')
        if not fs:
            out.append(' <span class="ok">No problem found.</span></p>')
        else:
            out.append("</p>")
            for f in fs:
                kind = f.split(":", 1)[0].strip()
                in_time = " time step " in f
                remedy = TIME_REMEDY if in_time and kind == "vanishing" else REMEDIES.get(kind, "")
                see = [h for h in (healthy_rec if in_time else healthy_mlp) if h != name][:3]
                out.append(f'<p class="finding warn">{html.escape(f)}: '
                           f"{html.escape(remedy)}"
                           + (f" (compare runs {html.escape(', '.join(see))})." if see and remedy
                              else ".") + "</p>")
        if theory and not brief:
            out.append(_theory_sentence(rec))
        out.append("</div>")
    return "\n".join(out)


def write_html(out: str, records: Sequence[dict], theory: bool = False,
               phase_images: Sequence[str] = (), title: str = "deepgrad study",
               phase_text: str = "") -> str:
    """Write ``out``/report.html from the run records and the plots already in ``out``;
    returns its path (written atomically). A phase study passes its maps (``phase_images``)
    and accuracy table (``phase_text``), shown first."""
    from .runtime import __version__, build_info
    info = build_info()
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f'<p class="meta">deepgrad {html.escape(__version__)} · {html.escape(info["simd"])} · '
             f'{_dt.datetime.now().strftime("%Y-%m-%d %H:%M")} · {len(records)} run(s)</p>']
    if phase_images or phase_text:
        parts.append("<h2>Phase diagram</h2><p>Test accuracy after training per (σ<sub>w</sub>², "
                     "depth); the dashed line is the theory's 6 ξ<sub>c</sub>: networks deeper "
                     "than that lose the correlation between inputs (ordered phase, left) or "
                     "decorrelate them (chaotic phase, right) and do not train; the dotted line "
                     "is the critical σ<sub>w</sub>², where ξ<sub>c</sub> diverges.</p>"
                     + "".join(_figure(p, os.path.basename(p)) for p in phase_images)
                     + (f"<pre>{html.escape(phase_text.strip())}</pre>" if phase_text else ""))
    # summary
    parts.append("<h2>Summary</h2><table><thead><tr><th>run</th><th>signal 1/L at init</th>"
                 "<th>signal 1/L at end</th><th>final loss</th><th>accuracy</th><th>test MSE</th>"
                 "<th>time (s)</th><th>monitor</th></tr></thead><tbody>")
    for rec, row in zip(records, summary_rows(records)):
        cls = ' class="bad"' if rec["result"].get("findings") else ""
        parts.append(f"<tr{cls}><td>{html.escape(row['name'])}</td>"
                     f"<td>{_fmt(row['signal_ratio_init'])}</td>"
                     f"<td>{_fmt(row['signal_ratio_final'])}</td><td>{_fmt(row['final_loss'])}</td>"
                     f"<td>{_fmt(row['accuracy'], 'pct')}</td><td>{_fmt(row['test_mse'])}</td>"
                     f"<td>{_fmt(row['seconds'], 's')}</td>"
                     f"<td>{_fmt(row['monitor_overhead'], 'pct')}</td></tr>")
    parts.append("</tbody></table><p class=\"meta\">signal 1/L: the backward-signal norm at the "
                 "first layer over the last layer (recurrent runs: time step 1 over step T); "
                 "about 1 is healthy, tiny is vanishing, huge is exploding.</p>")
    parts.append("<h2>What each run shows</h2>" + _findings_html(records, theory))
    figs = [(os.path.join(out, "flow_init.png"), "Backward signal per layer at initialisation"
             + (" (dashed: mean-field theory)" if theory else "")),
            (os.path.join(out, "flow_final.png"), "Backward signal per layer after training"),
            (os.path.join(out, "loss_curves.png"), "Training loss"),
            (os.path.join(out, "time_signal.png"), "Gradient through time at initialisation")]
    body = "".join(_figure(p, c) for p, c in figs)
    if body:
        parts.append("<h2>Gradient flow</h2>" + body)
    if theory:
        rows = []
        for rec in records:
            t = theory_comparison(rec)
            verdict = t["why"] and f"no prediction: {t['why']}" or _verdict(t)
            cls = ' class="bad"' if t["agrees"] is False else ""
            rows.append(f"<tr{cls}><td>{html.escape(rec['config']['name'])}</td>"
                        f"<td>{_fmt(t.get('sigma_w2'))}</td><td>{_fmt(t['predicted'])}</td>"
                        f"<td>{_fmt(t['measured'])}</td>"
                        f'<td class="text">{html.escape(verdict)}</td></tr>')
        parts.append("<h2>Theory beside measurement</h2><p>Mean-field signal propagation "
                     "(Poole et al. 2016, Schoenholz et al. 2017) predicts the per-layer ratio of "
                     "the backward signal at initialisation, sqrt(chi_1), from the activation and "
                     "the initialisation's weight variance. It holds for wide networks at "
                     "initialisation; at width 64 the measurement scatters around it by a few "
                     "percent per layer, and batch norm, residual blocks and recurrent nets follow "
                     "other recursions. The measured ratio is the geometric mean over the hidden "
                     "layers at step 0; a run is flagged (highlighted) when it differs from the "
                     f"prediction by more than {100 * THEORY_TOLERANCE:.0f}%. On the plot of the "
                     "backward signal at initialisation the prediction is drawn dashed in each "
                     "run's colour.</p><table><thead><tr><th>run</th><th>σ<sub>w</sub>²</th>"
                     "<th>predicted ratio</th><th>measured ratio</th>"
                     '<th class="text">verdict</th></tr></thead>'
                     "<tbody>" + "".join(rows) + "</tbody></table>")
    per_run = [(os.path.join(out, "plots", r["config"]["name"] + "_flow.png"),
                f"{r['config']['name']}: backward signal per layer and step") for r in records]
    grid = "".join(_figure(p, c) for p, c in per_run)
    if grid:
        parts.append(f'<h2>Per run: layer × step</h2><div class="grid">{grid}</div>')
    parts.append("</body></html>")
    return write_text_atomic(os.path.join(out, "report.html"), lambda f: f.write("\n".join(parts)),
                             "deepgrad study report", "report.html")
