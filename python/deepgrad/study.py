"""The vanishing/exploding-gradient study behind ``deepgrad study``.

Trains a grid of configurations with a GradientMonitor attached and writes a report folder:

    summary.csv               one row per run (signal ratios at init and end, loss, accuracy, time)
    runs/<name>.json          config, result, loss curve and the full monitor history of each run
    plots/<name>_flow.png     layer × step heatmap of the backward signal, one per run
    flow_init.png             backward signal per layer at initialisation, all MLP runs
    flow_final.png            the same at the end of training
    loss_curves.png           training loss of every run
    time_signal.png           ||dL/dh_t|| over time steps at init, recurrent runs

Each finished run is saved immediately, so an interrupted study keeps its finished runs and a
rerun with the same options resumes from them (``fresh=True`` starts over).
"""
from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from typing import Callable, Sequence

import numpy as np

from . import optim
from .serialization import write_text_atomic

__all__ = ["RunConfig", "classic_grid", "build_grid", "run_one", "run_study", "write_report",
           "SUMMARY_FIELDS"]

from .study_runs import (BUILTIN_DATASETS, CLASSIC_MLP, RunConfig, _Regressor,  # noqa: F401
                         _build_rnn, _mlp_name, _optimizer, _ratio, build_grid, build_mlp,
                         classic_grid, load_dataset, mlp_data, rnn_grid)
from .report import (SUMMARY_FIELDS, THEORY_TOLERANCE, format_theory, summary_rows,  # noqa: F401
                     theory_comparison)


# ---------------------------------------------------------------------------------------------
# one run


def run_one(cfg: RunConfig, progress: Callable[[int, float], None] | None = None) -> dict:
    """Train one configuration with a monitor; returns a JSON-able record
    {config, result, loss_curve, history}."""
    if cfg.framework == "torch":
        from .study_torch import run_one_torch
        return run_one_torch(cfg, progress)
    from .autograd import no_grad
    from .random import manual_seed
    from .tensor import tensor
    from . import losses
    from .monitor import GradientMonitor

    manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if cfg.model == "mlp":
        X, y, tr, te, classify, n_out = mlp_data(cfg, rng)
        model = build_mlp(cfg, X.shape[1], n_out)

        def loss_fn(pred, target):
            return losses.cross_entropy(pred, target) if classify else losses.mse(pred, target)
    elif cfg.model in ("rnn", "lstm", "gru"):
        from ._seqdata import adding_problem
        X, y = adding_problem(4096 + 512, cfg.seq_len, seed=cfg.seed)
        tr, te = np.arange(4096), np.arange(4096, 4096 + 512)
        classify = False
        model = _build_rnn(cfg)
        loss_fn = losses.mse
    else:
        raise ValueError(f"unknown model kind {cfg.model!r}: use mlp, rnn, lstm or gru")
    if cfg.device != "cpu":
        model.to(cfg.device)
    opt = _optimizer(cfg, model.parameters())
    # MLPs: cosine decay to zero, so the final numbers describe a settled model rather than one
    # caught mid-spike; recurrent runs keep a constant rate (the adding problem is learned late)
    sched = optim.CosineAnnealingLR(opt, T_max=cfg.steps) if cfg.model == "mlp" else None
    every = cfg.every or max(1, cfg.steps // 25)
    mon = GradientMonitor(model, every=every)
    Xt = tensor(X[tr], device=cfg.device)
    yt = tensor(y[tr], device=cfg.device)
    curve = []
    bs = min(cfg.batch_size, len(tr))
    Xtr, ytr = X[tr], y[tr]
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        idx = rng.integers(0, len(tr), bs)
        xb = tensor(Xtr[idx], device=cfg.device)
        yb = tensor(ytr[idx], device=cfg.device)
        loss = loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        mon.step(loss)
        curve.append(float(loss.item()))
        if progress is not None:
            progress(step + 1, curve[-1])
    seconds = time.perf_counter() - t0
    # a final record of the trained model's gradient flow (forward + backward, no update)
    final = _final_record(model, mon, loss_fn, Xt, yt, bs, rng)
    model.eval()
    with no_grad():
        train_loss = float(loss_fn(model(Xt), yt).item())
        Xe = tensor(X[te], device=cfg.device)
        pe = model(Xe).numpy()
    model.train()
    mon.close()
    if classify:
        acc = float(np.mean(pe.argmax(axis=1) == y[te]))
        test_mse = None
    else:
        acc = None
        test_mse = float(np.mean((pe.astype(np.float64) - y[te]) ** 2))
    hist = mon.to_dict()
    from .monitor import diagnose
    findings = diagnose(hist, mon.thresholds)
    if cfg.model == "mlp":
        r0 = _ratio(hist["signal_norm"][0]) if hist["signal_norm"] else None
        r1 = _ratio(final)
    else:
        ts = next(iter(hist["time_signal"].values()), [])
        r0 = _ratio(ts[0]) if ts else None
        r1 = _ratio(ts[-1]) if ts else None
    result = {"signal_ratio_init": r0, "signal_ratio_final": r1, "final_loss": train_loss,
              "accuracy": acc, "test_mse": test_mse, "seconds": seconds,
              "monitor_seconds": mon.seconds,
              "findings": [f.message for f in findings]}
    return {"config": cfg.to_dict(), "result": result, "loss_curve": curve, "history": hist,
            "final_signal": final}


def _final_record(model, mon, loss_fn, Xt, yt, bs, rng):
    """Per-layer backward signal of the trained model on one batch (not a training step),
    through each layer's backward hook (removed afterwards)."""
    from .tensor import tensor
    n = Xt.shape[0]
    idx = rng.integers(0, n, bs)
    row = [None] * len(mon.layers)

    def hook(i):
        return lambda m, g: row.__setitem__(i, float(np.linalg.norm(
            np.asarray(g.numpy(), dtype=np.float64))))
    handles = [layer.register_full_backward_hook(hook(i)) for i, layer in enumerate(mon.layers)]
    try:
        xb = tensor(Xt.numpy()[idx], device=Xt.device)
        yb = tensor(yt.numpy()[idx], device=yt.device)
        loss = loss_fn(model(xb), yb)
        model.zero_grad()
        loss.backward()
    finally:
        for h in handles:
            h.remove()
    return row


# ---------------------------------------------------------------------------------------------
# the study: runs with resume, the summary table and the report folder



def _run_path(out: str, name: str) -> str:
    return os.path.join(out, "runs", name + ".json")


_OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
_MODELS = ("mlp", "rnn", "lstm", "gru")


def validate(configs: Sequence[RunConfig], out: str | None = None) -> None:
    """Check every configuration (and that ``out`` is writable) before anything trains; raises
    one ValueError listing every problem once, with the runs it concerns."""
    from .functional import activation_name
    from .init import INITIALIZERS
    problems: dict[str, list[str]] = {}
    datasets = {}
    for c in configs:
        bad = []
        if c.model not in _MODELS:
            bad.append(f"model {c.model!r} (use {', '.join(_MODELS)})")
        for field, lo in (("steps", 1), ("batch_size", 1), ("width", 1), ("hidden", 1),
                          ("seq_len", 2), ("every", 0), ("seed", 0)):
            v = getattr(c, field)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                bad.append(f"{field} must be an int >= {lo}, got {v!r}")
        if isinstance(c.seed, (int, np.integer)) and c.seed >= 2 ** 32:
            bad.append(f"seed must be < 2**32, got {c.seed}")
        if not (isinstance(c.lr, (int, float)) and math.isfinite(c.lr) and c.lr > 0):
            bad.append(f"lr must be a positive number, got {c.lr!r}")
        if c.framework not in ("deepgrad", "torch"):
            bad.append(f"framework {c.framework!r} (use deepgrad or torch)")
        elif c.framework == "torch":
            import importlib.util
            if importlib.util.find_spec("torch") is None:
                bad.append("framework torch needs PyTorch installed")
            if c.device != "cpu":
                bad.append("framework torch runs on the CPU (--device cpu)")
        if str(c.optimizer).lower() not in _OPTIMIZERS:
            bad.append(f"optimizer {c.optimizer!r} (use {', '.join(_OPTIMIZERS)})")
        if c.model == "mlp":
            if not isinstance(c.depth, (int, np.integer)) or c.depth < 2:
                bad.append(f"depth must be >= 2 (input and output layers), got {c.depth!r}")
            try:
                activation_name(c.activation)
            except ValueError as e:
                bad.append(str(e))
            if c.init == "meanfield":
                if c.sigma_w2 is None or not (isinstance(c.sigma_w2, (int, float)) and
                                              math.isfinite(c.sigma_w2) and c.sigma_w2 > 0):
                    bad.append(f"init 'meanfield' needs sigma_w2 > 0, got {c.sigma_w2!r}")
                if not (isinstance(c.sigma_b2, (int, float)) and math.isfinite(c.sigma_b2)
                        and c.sigma_b2 >= 0):
                    bad.append(f"sigma_b2 must be >= 0, got {c.sigma_b2!r}")
            elif c.init not in INITIALIZERS:
                bad.append(f"init {c.init!r} (use auto or one of {', '.join(INITIALIZERS)})")
            if c.norm not in ("none", "batch"):
                bad.append(f"norm {c.norm!r} (use none or batch)")
            key = (c.dataset, c.seed if isinstance(c.seed, int) and c.seed >= 0 else 0)
            if key not in datasets:
                try:
                    datasets[key] = dataset_fingerprint(c.dataset, key[1])
                except (ValueError, OSError, KeyError) as e:
                    datasets[key] = e
            if isinstance(datasets[key], Exception):
                bad.append(f"dataset: {datasets[key]}")
        if c.device != "cpu":
            from .backend import get_backend
            try:
                get_backend(c.device)
            except (RuntimeError, ValueError) as e:
                bad.append(f"device: {e}")
        for b in bad:
            problems.setdefault(b, []).append(c.name)
    lines = [f"{names[0]}: {b}" if len(names) == 1 else
             f"{b} (runs {', '.join(names[:3])}"
             + (f" and {len(names) - 3} more)" if len(names) > 3 else ")")
             for b, names in problems.items()]
    made = []
    if out is not None:
        d = os.path.abspath(os.path.join(out, "runs"))
        while d and not os.path.lexists(d) and d != os.path.dirname(d):
            made.append(d)                     # deepest first
            d = os.path.dirname(d)
        try:
            os.makedirs(os.path.join(out, "runs"), exist_ok=True)
            probe = os.path.join(out, "runs", f".write-test-{os.getpid()}")
            with open(probe, "w") as fh:
                fh.write("ok")
            os.unlink(probe)
        except OSError as e:
            lines.append(f"--out {out!r} is not writable ({e.strerror or e})")
    if lines:
        for d in made:                # a rejected study leaves no empty folders behind
            try:
                os.rmdir(d)
            except OSError:
                pass
        raise ValueError("the study's settings have problems, nothing was trained:\n  "
                         + "\n  ".join(lines))


_FINGERPRINTS: dict = {}


def dataset_fingerprint(name: str, seed: int) -> str:
    """sha256 of the data set's arrays (a user's file by its content, a built-in one as
    generated), so a run record is never reused for other data."""
    import hashlib
    st = os.stat(name) if os.path.isfile(name) else None
    key = (name, seed, (st.st_mtime_ns, st.st_size) if st else None)
    if key not in _FINGERPRINTS:
        X, y = load_dataset(name, seed)
        h = hashlib.sha256()
        for a in (np.asarray(X), np.asarray(y)):
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        _FINGERPRINTS[key] = h.hexdigest()
    return _FINGERPRINTS[key]


def record_key(cfg: RunConfig) -> dict:
    """What a saved run must match to be reused: the whole configuration, the data set's
    content, deepgrad's version and the build facts that change results, and their hash."""
    import hashlib
    from .runtime import __version__, _C
    info = _C.build_info()
    ident = {"config": cfg.to_dict(), "deepgrad": __version__,
             "build": {"simd": info["simd"], "compiler": info["compiler"]},
             "data": (dataset_fingerprint(cfg.dataset, cfg.seed) if cfg.model == "mlp"
                      else f"adding-problem seq_len={cfg.seq_len} seed={cfg.seed}")}
    ident["hash"] = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    return ident


def _load_finished(out: str, cfg: RunConfig, key: dict) -> tuple[dict | None, str]:
    """(the saved record of this exact configuration, data and deepgrad, or None; why not)."""
    path = _run_path(out, cfg.name)
    if not os.path.exists(path):
        return None, ""
    try:
        with open(path) as fh:
            rec = json.load(fh)
        if not isinstance(rec, dict) or not isinstance(rec.get("result"), dict):
            raise ValueError("no result in it")
        for k in ("config", "loss_curve", "history"):
            if k not in rec:
                raise ValueError(f"no {k!r} in it")
    except (OSError, ValueError) as e:
        return None, f"runs/{cfg.name}.json is malformed ({e}); rerunning it"
    old = rec.get("key") or {}
    if not isinstance(old, dict):
        return None, f"runs/{cfg.name}.json is malformed (its key is not an object); rerunning it"
    if old == key and rec.get("config") == key["config"]:   # every field, not the hash alone
        return rec, ""
    if old.get("deepgrad") not in (None, key["deepgrad"]) or \
            old.get("build") not in (None, key["build"]):
        return None, (f"runs/{cfg.name}.json was made by deepgrad {old.get('deepgrad', '?')} "
                      f"({old.get('build')}); rerunning with {key['deepgrad']}")
    if old.get("data") not in (None, key["data"]):
        return None, f"runs/{cfg.name}.json was trained on other data; rerunning it"
    return None, (f"runs/{cfg.name}.json has other settings or no configuration hash; "
                  "rerunning it")


def _save(out: str, rec: dict) -> None:
    path = _run_path(out, rec["config"]["name"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # atomic: an interrupted write never leaves a half file
    write_text_atomic(path, lambda fh: json.dump(rec, fh), "deepgrad study", "run.json")


def _fmt(v, kind="g") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if kind == "pct":
            return f"{100 * v:.1f}%"
        if kind == "s":
            return f"{v:.1f}"
        return f"{v:.2e}" if (v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4)) else f"{v:.3f}"
    return str(v)




def format_table(records: Sequence[dict]) -> str:
    """The summary table printed at the end of a study."""
    head = ("run", "signal 1/L init", "signal 1/L end", "final loss", "accuracy", "test MSE",
            "time s", "monitor")
    lines = [head]
    for row in summary_rows(records):
        lines.append((row["name"], _fmt(row["signal_ratio_init"]), _fmt(row["signal_ratio_final"]),
                      _fmt(row["final_loss"]), _fmt(row["accuracy"], "pct"), _fmt(row["test_mse"]),
                      _fmt(row["seconds"], "s"), _fmt(row["monitor_overhead"], "pct")))
    widths = [max(len(l[i]) for l in lines) for i in range(len(head))]
    out = []
    for j, l in enumerate(lines):
        out.append("  ".join(x.ljust(widths[i]) if i == 0 else x.rjust(widths[i])
                             for i, x in enumerate(l)))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    out.append("signal 1/L: backward-signal norm at the first layer over the last layer "
               "(recurrent runs: at time step 1 over step T); ~1 is healthy, tiny is vanishing.")
    return "\n".join(out)


def write_report(out: str, records: Sequence[dict], plots: bool = True,
                 stream=None, theory: bool = False) -> list[str]:
    """summary.csv and the plots for the finished runs; returns the paths written."""
    os.makedirs(out, exist_ok=True)
    written = []
    path = os.path.join(out, "summary.csv")
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(SUMMARY_FIELDS))
        w.writeheader()
        for row in summary_rows(records):
            w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    written.append(path)
    if not plots or not records:
        return written
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if stream is not None:
            print("matplotlib is not installed: skipping plots (pip install 'deepgrad[plot]')",
                  file=stream)
        return written
    from . import plot as P
    mlp = {r["config"]["name"]: r["history"] for r in records if r["config"]["model"] == "mlp"}
    for rec in records:
        h = rec["history"]
        if h.get("signal_norm") and any(v is not None for row in h["signal_norm"] for v in row):
            name = rec["config"]["name"]
            written.append(P.plot_heatmap(h, os.path.join(out, "plots", name + "_flow.png"),
                                          title=f"{name}: backward signal per layer"))
    if mlp:
        overlay = None
        if theory:
            overlay = {r["config"]["name"]: theory_comparison(r)["profile"] for r in records
                       if r["config"]["model"] == "mlp"}
            overlay = {k: v for k, v in overlay.items() if v}
        written.append(P.plot_flow_comparison(mlp, os.path.join(out, "flow_init.png"), step=0,
                                              title="backward signal at initialisation"
                                              + (" (dashed: mean-field theory)" if overlay
                                                 else ""),
                                              theory=overlay))
        final = {}
        for rec in records:
            if rec["config"]["model"] == "mlp" and rec.get("final_signal"):
                final[rec["config"]["name"]] = {"layers": rec["history"]["layers"],
                                                "signal_norm": [rec["final_signal"]]}
        if final:
            written.append(P.plot_flow_comparison(final, os.path.join(out, "flow_final.png"), step=0,
                                                  title="backward signal after training"))
    written.append(P.plot_loss_curves({r["config"]["name"]: r["loss_curve"] for r in records},
                                      os.path.join(out, "loss_curves.png")))
    ts = {}
    for rec in records:
        for _, rows in (rec["history"].get("time_signal") or {}).items():
            if rows and rows[0]:
                ts[rec["config"]["name"]] = {"layers": [str(t) for t in range(len(rows[0]))],
                                             "signal_norm": [rows[0]]}
    if ts:
        written.append(P.plot_flow_comparison(ts, os.path.join(out, "time_signal.png"), step=0,
                                              xlabel="time step t",
                                              title="gradient through time at initialisation",
                                              ylabel="||dL/dh_t||"))
    return written


_NEED_DASK = ("running the study on several processes or a cluster needs Dask: "
              "pip install 'deepgrad[distributed]'")


def _dask():
    try:
        from dask import distributed
    except ImportError:
        raise ImportError(_NEED_DASK) from None
    return distributed


def check_cluster_args(jobs: int | None = None, scheduler: str | None = None) -> None:
    """Raise ValueError for a ``jobs``/``scheduler`` pair make_client cannot use (checked
    before anything is created or started)."""
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer))
                             or jobs < 1):
        raise ValueError(f"--jobs must be a positive integer, got {jobs!r}")
    if scheduler is None or scheduler == "auto":
        return
    import re
    if not isinstance(scheduler, str) or not re.fullmatch(
            r"([a-z]+://)?(\[[0-9a-fA-F:]+\]|[^\s:/]+):\d+/?", scheduler):
        raise ValueError(f"--scheduler must be 'auto' or a Dask scheduler address like "
                         f"tcp://HOST:8786, got {scheduler!r}")
    if jobs is not None:
        raise ValueError("--jobs starts local workers and --scheduler names an existing "
                         "cluster: give one of them (or --scheduler auto --jobs N)")


def make_client(jobs: int | None = None, scheduler: str | None = None):
    """A dask.distributed Client: ``jobs`` local worker processes (one thread each), or the
    cluster at ``scheduler`` ("tcp://host:port"; "auto" starts a LocalCluster, of ``jobs``
    workers if given, else Dask's default). Returns (client, cluster or None): close both when
    done."""
    check_cluster_args(jobs, scheduler)
    distributed = _dask()
    if scheduler not in (None, "auto"):
        return distributed.Client(scheduler), None
    # the dashboard on a free port (":0"): Dask's None still serves it on 8787, so a second
    # study (or any other Dask cluster) on the machine warned or failed to start
    kw = {"threads_per_worker": 1, "processes": True, "dashboard_address": ":0"}
    if jobs is not None:
        kw["n_workers"] = int(jobs)
    cluster = distributed.LocalCluster(**kw)
    return distributed.Client(cluster), cluster


def _remote_run(cfg_dict: dict) -> dict:
    """One run on a Dask worker: deepgrad on one thread (the worker is one process of many),
    the record returned to the driver, which alone writes files."""
    from .runtime import set_num_threads
    set_num_threads(1)
    return run_one(RunConfig(**cfg_dict))


def _done_line(rec: dict) -> str:
    r = rec["result"]
    metric = (f"accuracy {100 * r['accuracy']:.1f}%" if r["accuracy"] is not None
              else f"test MSE {r['test_mse']:.4f}")
    return f"done in {r['seconds']:.1f} s: loss {r['final_loss']:.4f}, {metric}"


def run_study(configs: Sequence[RunConfig], out: str, resume: bool = True, plots: bool = True,
              stream=None, theory: bool = False, client=None) -> list[dict]:
    """Run (or resume) every configuration, saving each as it finishes; then write the report
    and print the summary table to ``stream`` (default stdout). KeyboardInterrupt keeps the
    finished runs, writes the report for them and re-raises.

    ``client``: a dask.distributed Client; the runs not finished earlier become one task each
    on its workers (one deepgrad thread per task), the driver saves each record as it arrives
    and writes the report. Results equal the sequential study's run by run (same seeds; a run
    does not depend on which worker or in which order it runs); a worker that dies costs only
    its task, which Dask runs again elsewhere."""
    stream = stream if stream is not None else sys.stdout
    names = [c.name for c in configs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"duplicate run names in the study grid: {', '.join(sorted(dup))}")
    validate(configs, out)
    records: dict[int, dict] = {}
    tty = hasattr(stream, "isatty") and stream.isatty()
    n = len(configs)
    todo = []
    for i, cfg in enumerate(configs, 1):
        key = record_key(cfg)
        rec, why = _load_finished(out, cfg, key) if resume else (None, "")
        if why:
            print(f"[{i}/{n}] {why}", file=stream, flush=True)
        if rec is not None:
            print(f"[{i}/{n}] {cfg.name}: finished earlier, reusing runs/{cfg.name}.json",
                  file=stream, flush=True)
            records[i] = rec
        else:
            todo.append((i, cfg, key))
    failures: list[tuple[str, BaseException]] = []
    try:
        if client is not None:
            _run_on_dask(client, todo, records, out, stream, tty, n, failures)
        else:
            for i, cfg, key in todo:
                print(f"[{i}/{n}] {cfg.name}: training {cfg.steps} steps ...", file=stream,
                      flush=True)
                last = [time.perf_counter()]

                def progress(step, loss, cfg=cfg):
                    now = time.perf_counter()
                    if step == cfg.steps or now - last[0] > (0.5 if tty else 10.0):
                        last[0] = now
                        msg = f"    step {step}/{cfg.steps}  loss {loss:.4f}"
                        print(("\r" + msg) if tty else msg, end="" if tty else "\n",
                              file=stream, flush=True)
                try:
                    rec = run_one(cfg, progress)
                except Exception as e:  # one broken run does not cost the others
                    if tty:
                        print(file=stream)
                    failures.append((cfg.name, e))
                    print(f"    FAILED: {type(e).__name__}: {e}", file=stream, flush=True)
                    continue
                rec["key"] = key
                if tty:
                    print(file=stream)
                _save(out, rec)
                print(f"    {_done_line(rec)}", file=stream, flush=True)
                records[i] = rec
    except KeyboardInterrupt:
        done = [records[k] for k in sorted(records)]
        print(f"\ninterrupted: {len(done)} finished run(s) kept in {out}; rerun the same "
              "command to resume", file=stream, flush=True)
        write_report(out, done, plots=False, stream=stream)
        from .report import write_html
        write_html(out, done, theory=theory)
        raise
    done = [records[k] for k in sorted(records)]
    write_report(out, done, plots=plots, stream=stream, theory=theory)
    from .report import write_html
    write_html(out, done, theory=theory)
    print("\n" + format_table(done), file=stream)
    if theory:
        print("\n" + format_theory(done), file=stream)
    print(f"\nreport written to {out}/ (report.html, summary.csv, runs/*.json"
          + (", *.png" if plots else "") + ")", file=stream, flush=True)
    if failures:
        raise RuntimeError(
            f"{len(failures)} of {n} run(s) failed; the other runs and the report are saved "
            "and rerunning the same command retries only the failed ones: "
            + "; ".join(f"{name}: {type(e).__name__}: {e}" for name, e in failures)
        ) from failures[0][1]
    return done


#: the Python API's name for a study (issue 15): study.run(configs, out, client=Client(...))
run = run_study


def _run_on_dask(client, todo, records, out, stream, tty, n, failures) -> None:
    """Submit every missing run as a task; save and report each as it completes, appending
    (name, exception) to ``failures`` for runs that raised. A run raises the same error on
    every try (it is deterministic), so a failed task is not retried; a task whose worker died
    is run again elsewhere by Dask (``distributed.scheduler.allowed-failures``, 3 by default)."""
    distributed = _dask()
    if not todo:
        return
    import uuid
    futures = {}
    token = uuid.uuid4().hex[:8]
    for i, cfg, key in todo:
        # one key per run and submission: the dashboard names the run, and a later study on
        # the same client never receives this one's result or error for a key it reuses
        fut = client.submit(_remote_run, cfg.to_dict(),
                            key=f"deepgrad-run-{cfg.name}-{key['hash'][:12]}-{token}",
                            pure=False)
        futures[fut] = (i, cfg, key)
    print(f"running {len(todo)} run(s) on Dask ({len(client.scheduler_info()['workers'])} "
          f"workers at {client.scheduler.address})", file=stream, flush=True)
    bar = None
    if tty:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(todo), unit="run", file=stream, dynamic_ncols=True)
        except ImportError:
            bar = None
    best = None
    try:
        for fut in distributed.as_completed(list(futures)):
            i, cfg, key = futures.pop(fut)
            try:
                rec = fut.result()
            except Exception as e:  # the run's own error
                failures.append((cfg.name, e))
                msg = f"[{i}/{n}] {cfg.name}: FAILED ({type(e).__name__}: {e})"
                if bar is not None:
                    bar.write(msg, file=stream)
                else:
                    print(msg, file=stream, flush=True)
            else:
                rec["key"] = key
                _save(out, rec)
                records[i] = rec
                loss = rec["result"]["final_loss"]
                if loss is not None and math.isfinite(loss) and (best is None or loss < best[0]):
                    best = (loss, cfg.name)
                if bar is None:
                    print(f"[{i}/{n}] {cfg.name}: {_done_line(rec)}", file=stream, flush=True)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(
                    (f"best loss {best[0]:.3g} ({best[1]})" if best else "best -")
                    + f", failed {len(failures)}")
    finally:
        if bar is not None:
            bar.close()
        if futures:      # interrupted: the runs not collected stop on the cluster
            client.cancel(list(futures))
