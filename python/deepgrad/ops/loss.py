"""Losses: mse, binary_cross_entropy, bce_with_logits, cross_entropy, nll (csrc/cpu/losses.cpp,
csrc/cuda/softmax_loss.cu through the backend). Each loss is one tape node on the stable native loss kernels; ``reduction`` is "mean" (default),
"sum" or "none" (per-element for mse/bce, per-sample for cross_entropy/nll)."""
from __future__ import annotations

import numpy as np

from ..autograd import record as _result
from ..tensor import Tensor, int64

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(fn, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _float_pred(fn, what, pred: Tensor) -> None:
    if pred.data.dtype.kind != "f":
        raise TypeError(f"{fn}: {what} is a {pred.data.dtype} tensor but losses need float32 or "
                        f"float64 scores; convert it with .float() or .double()")


def _as_target(fn, pred: Tensor, target) -> Tensor:
    if not isinstance(pred, Tensor):
        raise TypeError(f"{fn}: pred must be a deepgrad Tensor, got {type(pred).__name__}")
    if pred.data.dtype.kind != "f":
        _float_pred(fn, "pred", pred)
    if not isinstance(target, Tensor):
        target = Tensor(target, dtype=pred.dtype, device=pred.device)
    elif target._be is not pred._be:
        raise ValueError(f"{fn}: pred is on {pred.device} but target is on {target.device}")
    elif target.dtype != pred.dtype:
        target = target.to(dtype=pred.dtype)
    if target.shape != pred.shape:
        raise ValueError(f"{fn}: pred has shape {pred.shape} but target has shape "
                         f"{target.shape}; they must match")
    if pred.data.size == 0:
        raise ValueError(f"{fn}: empty batch (pred has shape {pred.shape})")
    return target


def _in_unit_interval(fn, what, t: Tensor) -> None:
    """ValueError (PyTorch refuses these too) when a value of t lies outside [0, 1]. NaN passes
    through, so anomaly mode and the monitor see it. On CUDA this copies t to the host."""
    a = t._be.to_numpy(t.data)
    bad = (a < 0) | (a > 1)
    if bad.any():
        i = np.unravel_index(int(np.argmax(bad)), a.shape)
        where = f"[{', '.join(str(int(k)) for k in i)}]" if a.ndim else ""
        kind = "probabilities" if what == "pred" else "values"
        raise ValueError(f"{fn}: {what} must hold {kind} in [0, 1], but {what}{where} = "
                         f"{float(a[i])!r} ({int(bad.sum())} of {a.size} values are outside)"
                         + ("; pass logits to bce_with_logits instead" if what == "pred" else ""))


def _elementwise(fn, kind, pred, target, reduction, target_grad_sign):
    _check_reduction(fn, reduction)
    target = _as_target(fn, pred, target)
    if kind != "mse":
        if kind == "bce":
            _in_unit_interval(fn, "pred", pred)
        _in_unit_interval(fn, "target", target)
    be = pred._be
    pd, td = pred.data, target.data
    if target.requires_grad and target_grad_sign is None:
        raise ValueError(f"{fn}: target requires grad, but {fn} treats the target as a constant; "
                         f"pass target.detach()")
    out = be.loss_forward(kind, pd, td, reduction)

    def backward(g):
        d = be.loss_backward(kind, pd, td, reduction, g)
        return (d if pred.requires_grad else None,
                be.neg(d) if target.requires_grad else None)
    return _result(out, be, (pred, target), backward, fn, (pred, target))


def mse(pred: Tensor, target, reduction: str = "mean") -> Tensor:
    """Mean squared error (pred - target)^2; pred and target have the same shape."""
    return _elementwise("mse", "mse", pred, target, reduction, -1)


def binary_cross_entropy(pred: Tensor, target, reduction: str = "mean") -> Tensor:
    """-(t log p + (1 - t) log(1 - p)) for probabilities p in [0, 1] (e.g. a sigmoid output)
    and targets t in [0, 1] (ValueError otherwise, as in PyTorch; NaN passes through);
    log terms are clamped like PyTorch's so p = 0 or 1 gives a finite loss."""
    return _elementwise("binary_cross_entropy", "bce", pred, target, reduction, None)


def bce_with_logits(logits: Tensor, target, reduction: str = "mean") -> Tensor:
    """Binary cross-entropy of sigmoid(logits), computed stably from the logits (exact at any
    logit scale); targets must be in [0, 1] (PyTorch does not check them here: outside that
    range the loss is unbounded below)."""
    return _elementwise("bce_with_logits", "bce_logits", logits, target, reduction, None)


def _labels(fn, pred: Tensor, labels):
    """Class labels as an int64 array on pred's device, checked against pred (N, C)."""
    if not isinstance(pred, Tensor):
        raise TypeError(f"{fn}: input must be a deepgrad Tensor, got {type(pred).__name__}")
    if pred.data.dtype.kind != "f":
        _float_pred(fn, "input", pred)
    if pred.data.ndim != 2:
        raise ValueError(f"{fn}: input must be (N, C) scores, got shape {pred.shape}")
    n, c = pred.data.shape
    if n == 0:
        raise ValueError(f"{fn}: empty batch (input has shape {pred.shape})")
    lab = labels._be.to_numpy(labels.data) if isinstance(labels, Tensor) else np.asarray(labels)
    if lab.dtype.kind == "f":
        # float tensors of whole numbers are accepted: deepgrad.tensor(labels) is float32 unless
        # dtype="int64" is given
        if not np.all(np.isfinite(lab) & (lab == np.round(lab))):
            raise TypeError(f"{fn}: labels must be integer class indices, got non-integer "
                            f"values of dtype {lab.dtype}")
    elif lab.dtype.kind not in "iu":
        raise TypeError(f"{fn}: labels must be integer class indices, got dtype {lab.dtype}")
    if c == 0:
        raise ValueError(f"{fn}: input has shape {pred.shape}: no classes to score")
    if lab.dtype.kind == "u" and lab.size and int(lab.max()) >= c:   # before the int64 cast
        bad = int(lab.max())                                          # wraps 2**64-1 to -1
        raise ValueError(f"{fn}: label {bad} at index {int(np.argmax(lab == lab.max()))} is out "
                         f"of range for {c} classes (labels must be in [0, {c - 1}])")
    lab = lab.astype(int64, copy=False)
    if lab.ndim == 2 and lab.shape[1] == 1:
        lab = lab.reshape(-1)
    if lab.shape != (n,):
        raise ValueError(f"{fn}: input has {n} rows but labels have shape {lab.shape}; "
                         f"expected ({n},)")
    lo, hi = int(lab.min()), int(lab.max())
    if lo < 0 or hi >= c:
        bad = lo if lo < 0 else hi
        i = int(np.argmax(lab == bad))
        raise ValueError(f"{fn}: label {bad} at index {i} is out of range for {c} classes "
                         f"(labels must be in [0, {c - 1}])")
    return pred._be.from_numpy(lab, int64), lab


def cross_entropy(logits: Tensor, labels, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy of logits (N, C) against integer labels (N,), fused: log-softmax
    then pick, -(x_label - max) + log(sum exp(x - max)), so it is exact at any logit scale (two
    tied logits of 1e30 give log 2 in float32). Labels: (N,) or (N, 1), integers in [0, C)."""
    _check_reduction("cross_entropy", reduction)
    td, _ = _labels("cross_entropy", logits, labels)
    be = logits._be
    pd = logits.data
    out = be.loss_forward("cross_entropy", pd, td, reduction)
    return _result(out, be, (logits,),
                   lambda g: (be.loss_backward("cross_entropy", pd, td, reduction, g),),
                   "cross_entropy", (logits,))


def nll(log_probs: Tensor, labels, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood: -log_probs[i, labels[i]] for log-probabilities (N, C)
    (e.g. log_softmax output); cross_entropy(x, y) == nll(log_softmax(x), y)."""
    _check_reduction("nll", reduction)
    _, lab = _labels("nll", log_probs, labels)
    n = lab.shape[0]
    picked = -log_probs[np.arange(n, dtype=int64), lab]
    if reduction == "none":
        return picked
    return picked.sum() if reduction == "sum" else picked.mean()


nll_loss = nll
bce = binary_cross_entropy
