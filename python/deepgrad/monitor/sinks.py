"""The monitor's sinks: CSV and JSON files, plots, and the TensorBoard stream. They read
history dicts (the core's plain data) and never import torch or a backend: TensorBoard is
written with tensorboardX, or with torch.utils.tensorboard only when torch is already loaded."""
from __future__ import annotations

import csv
import math
import os
import re
import sys
from typing import Mapping

from .core import _LAYER_KEYS

# ---------------------------------------------------------------------------------------------
# export


def _tensorboard_writer(logdir, writer):
    """A SummaryWriter for ``logdir`` (tensorboardX; torch.utils.tensorboard when tensorboardX
    is missing and torch is already loaded), or the ``writer`` given (anything with add_scalar
    and add_text)."""
    if writer is not None:
        if not (hasattr(writer, "add_scalar") and hasattr(writer, "add_text")):
            raise TypeError("GradientMonitor: writer= must have add_scalar and add_text (a "
                            f"SummaryWriter), got {type(writer).__name__}")
        return writer
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        SummaryWriter = None
        if "torch" in sys.modules:   # never import torch here; use it when the user has
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                SummaryWriter = None
        if SummaryWriter is None:
            raise ImportError("GradientMonitor(tensorboard=...) needs a TensorBoard writer: "
                              "pip install 'deepgrad[tensorboard]'") from None
    return SummaryWriter(log_dir=os.fspath(logdir))


_TB_LAYER_KEYS = (("signal_norm", "backward_signal"), ("layer_grad_norm", "grad_norm"),
                  ("layer_grad_ratio", "grad_weight_ratio"),
                  ("layer_update_ratio", "update_weight_ratio"),
                  ("saturated", "saturated_fraction"), ("dead", "dead_fraction"))


def _close_writer(mon) -> None:
    """At close(): a writer the monitor opened is closed (which drains its queue to the file);
    a writer the user passed is only flushed."""
    w = getattr(mon, "_tb", None)
    if w is None:
        return
    if getattr(mon, "_tb_owned", False):
        w.close()
        mon._tb = None
    elif hasattr(w, "flush"):
        w.flush()


def tb_tag(name: str) -> str:
    """A layer name as a TensorBoard tag part (letters, digits, _ . / - only, as TensorBoard's
    writers require): "0:Dense" -> "0_Dense"."""
    return re.sub(r"[^A-Za-z0-9_./-]", "_", name)


def _tensorboard_record(w, win: Mapping, findings: list, seen: set) -> None:
    """The latest record of a history window as TensorBoard scalars (one tag group per
    quantity, one tag per layer), and each finding as text the first time it appears. The
    writer only appends to its buffer; its own thread writes the file."""
    if not win["steps"]:
        return
    step = int(win["steps"][-1])
    layers = win["layers"]
    for key, tag in _TB_LAYER_KEYS:
        row = win[key][-1] if win.get(key) else None
        for name, v in zip(layers, row or []):
            if v is not None and math.isfinite(v):
                w.add_scalar(f"{tag}/{tb_tag(name)}", v, step)
    for key in ("global_grad_norm", "global_param_norm", "loss"):
        v = win[key][-1] if win.get(key) else None
        if v is not None and math.isfinite(v):
            w.add_scalar(f"global/{key}" if key != "loss" else "loss", v, step)
    for f in findings:
        key = (f.kind, f.where, f.layer)
        if key not in seen:
            seen.add(key)
            w.add_text(f"findings/{f.kind}", f.message, step)


def write_atomic(path, write) -> str:
    """write(fh) into a temporary file beside ``path`` (text, newline=''), flushed and
    fsync'ed, then renamed over ``path``: an interrupted or failed write leaves the old file (or
    none), never a half one. Returns the path. (serialization.write_text_atomic does the same
    for the rest of the package; the sinks import only the monitor's core.)"""
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path!r}: it is a directory; give a file name")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path!r}: the folder {folder!r} does not exist "
                                "(create it first)")
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}-"
                               f"{os.urandom(4).hex()}")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def history_to_json(d: Mapping, path: str) -> str:
    """The history dict ``d`` (plain data) as JSON, written atomically."""
    import json
    return write_atomic(path, lambda fh: json.dump(d, fh))


def history_to_csv(history: Mapping, path: str) -> str:
    """Long format: one row per (step, layer) with every per-layer quantity (written
    atomically)."""
    keys = [k for k in _LAYER_KEYS if history.get(k)]

    def write(fh):
        w = csv.writer(fh)
        w.writerow(["step", "layer_index", "layer", "global_grad_norm", "loss"] + keys)
        loss = history.get("loss") or []
        for i, s in enumerate(history.get("steps", [])):
            gn = history["global_grad_norm"][i]
            ls = loss[i] if i < len(loss) else None
            for l, name in enumerate(history["layers"]):
                w.writerow([s, l + 1, name, gn, ls] + [history[k][i][l] for k in keys])
    return write_atomic(path, write)
