"""Weights between deepgrad models and the equivalent torch.nn models, without silent transposes.

``model.load_torch_state_dict(sd, strict=True)`` and ``model.torch_state_dict()``: keys are the
torch names of the equivalent torch model: deepgrad's qualified names (attributes and Sequential
indices, as in torch), except that in a Sequential a Dense with a fused activation stands for two
torch modules (Linear, then the activation module), so ``Sequential(Dense(2, 8, "tanh"),
Dense(8, 1))`` is torch's ``Sequential(Linear(2, 8), Tanh(), Linear(8, 1))`` (keys ``0.*`` and
``2.*``); plus torch's per-layer parameter names. The conversion is chosen
by the deepgrad layer's TYPE, never guessed from shapes, so a square Dense never loads
transposed:

| deepgrad | torch | conversion |
|---|---|---|
| Dense weight (in, out), bias | Linear weight (out, in), bias | transpose |
| RNN/LSTM weight_ih (in, G), weight_hh (H, G), bias (G) | RNN/LSTM weight_ih_l0 (G, in), weight_hh_l0 (G, H), bias_ih_l0, bias_hh_l0 | transpose; bias = bias_ih + bias_hh |
| GRU weight_ih, weight_hh, bias, bias_hh | GRU weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0 | transpose; biases as they are |
| BatchNorm1d weight, bias, running_mean, running_var | BatchNorm1d the same + num_batches_tracked | none |
| LayerNorm weight, bias | LayerNorm weight, bias | none |
| any other parameter or buffer | the same name | none |

Gate orders are torch's (LSTM i, f, g, o; GRU r, z, n). torch's RNN and LSTM have two bias
vectors where deepgrad has their sum: loading adds them (so outputs and gradients match torch),
and ``torch_state_dict()`` gives back the two vectors that were loaded while the sum is
unchanged since (an exact round trip), else the sum as bias_ih and zeros as bias_hh.
``num_batches_tracked`` is kept the same way (0 for a model that never loaded one). Loading is
all or nothing: every key is checked (missing, unexpected with ``strict``, shapes) and converted
before the first value is copied; errors name the key.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np


def _np(v, key: str) -> np.ndarray:
    try:
        if hasattr(v, "detach"):
            v = v.detach().cpu()
            if str(getattr(v, "dtype", "")) == "torch.bfloat16":   # numpy has no bfloat16
                raise TypeError(f"{key!r} is a bfloat16 tensor, which numpy cannot hold; "
                                "convert the state dict first: {k: v.float() for k, v in "
                                "sd.items()}")
            v = v.numpy()
        return np.asarray(v)
    except TypeError as e:
        if "bfloat16" in str(e):
            raise TypeError(f"load_torch_state_dict: {e}") from None
        raise TypeError(f"load_torch_state_dict: {key!r} is not an array ({e})") from None
    except Exception as e:  # a value neither torch nor numpy can read
        raise TypeError(f"load_torch_state_dict: {key!r} is not an array ({e})") from None


def _count(v, key: str) -> int:
    """torch's num_batches_tracked: a non-negative integer scalar."""
    a = _np(v, key)
    if a.shape not in ((), (1,)) or a.dtype.kind not in "iuf" or not np.isfinite(a).all() \
            or a.reshape(()) != np.floor(a.reshape(())) or a.reshape(()) < 0:
        raise ValueError(f"{key!r} must be a non-negative integer scalar (torch's "
                         f"num_batches_tracked), got {a.dtype} of shape {a.shape}"
                         + (f" = {a.reshape(()).item()!r}" if a.size == 1 else ""))
    return int(a.reshape(()))


def _is(m, name: str) -> bool:
    """m is an instance of deepgrad.nn's class ``name`` (or a subclass), checked by the MRO so
    this module imports nothing from nn (Module's methods call it)."""
    return any(c.__name__ == name and c.__module__.startswith("deepgrad.nn.")
               for c in type(m).__mro__)


def _named(model):
    """(deepgrad prefix, torch prefix, module) for every module. In a Sequential, a Dense with a
    fused activation stands for two torch modules (Linear, then the activation), so the torch
    indices after it shift by one: Sequential(Dense(a, b, "tanh"), Dense(b, c)) is
    torch's Sequential(Linear(a, b), Tanh(), Linear(b, c)), keys 0.* and 2.*."""
    out = []

    def walk(m, dpre, tpre):
        out.append((dpre, tpre, m))
        i = 0
        for name, c in m.named_children():
            tname = str(i) if _is(m, "Sequential") else name
            walk(c, f"{dpre}.{name}" if dpre else name, f"{tpre}.{tname}" if tpre else tname)
            i += 1
            if _is(c, "Dense") and getattr(c, "activation", "identity") != "identity":
                i += 1
    walk(model, "", "")
    return out


def _rules(model):
    """(deepgrad key, torch keys, to_deepgrad(values), to_torch(value, module) -> {key: array},
    owning module) for every parameter and buffer of ``model``."""
    rules = []
    for dprefix, prefix, m in _named(model):
        p = prefix + "." if prefix else ""
        dp = dprefix + "." if dprefix else ""
        start = len(rules)
        own = [(n, t) for n, t in m._parameters.items() if t is not None]
        own += [(n, t) for n, t in m._buffers.items() if t is not None]
        if _is(m, "Dense"):
            for n, t in own:
                if n == "weight":
                    rules.append((dp + n, [p + n], lambda v: v[0].T, lambda a, m, k=p + n: {k: a.T}))
                else:
                    rules.append((dp + n, [p + n], lambda v: v[0], lambda a, m, k=p + n: {k: a}))
        elif _is(m, "RNN") or _is(m, "LSTM") or _is(m, "GRU"):
            for n, t in own:
                if n in ("weight_ih", "weight_hh"):
                    rules.append((dp + n, [p + n + "_l0"], lambda v: v[0].T,
                                  lambda a, m, k=p + n + "_l0": {k: a.T}))
                elif n == "bias" and _is(m, "GRU"):
                    rules.append((dp + n, [p + "bias_ih_l0"], lambda v: v[0],
                                  lambda a, m, k=p + "bias_ih_l0": {k: a}))
                elif n == "bias_hh":   # GRU's own b_hh
                    rules.append((dp + n, [p + "bias_hh_l0"], lambda v: v[0],
                                  lambda a, m, k=p + "bias_hh_l0": {k: a}))
                elif n == "bias":      # RNN / LSTM: b_ih + b_hh
                    rules.append((dp + n, [p + "bias_ih_l0", p + "bias_hh_l0"],
                                  lambda v: v[0] + v[1], _split_bias(p)))
                else:
                    rules.append((dp + n, [p + n], lambda v: v[0], lambda a, m, k=p + n: {k: a}))
        else:
            for n, t in own:
                rules.append((dp + n, [p + n], lambda v: v[0], lambda a, m, k=p + n: {k: a}))
            if type(m).__name__ == "BatchNorm1d":
                rules.append((None, [p + "num_batches_tracked"], None, _batches(p)))
        rules[start:] = [r + (m,) for r in rules[start:]]
    return rules


def _split_bias(p: str):
    def to_torch(a, m):
        kept = m.__dict__.get("_torch_bias_pair")
        if kept is not None and np.array_equal(kept[0] + kept[1], a):
            return {p + "bias_ih_l0": kept[0].copy(), p + "bias_hh_l0": kept[1].copy()}
        return {p + "bias_ih_l0": a, p + "bias_hh_l0": np.zeros_like(a)}
    return to_torch


def _batches(p: str):
    def to_torch(a, m):
        return {p + "num_batches_tracked": np.array(m.__dict__.get("_torch_num_batches", 0),
                                                    dtype=np.int64)}
    return to_torch


def load_torch_state_dict(model, state_dict, strict: bool = True):
    """Load the state_dict of the equivalent torch model (see the module docstring)."""
    if not hasattr(state_dict, "items"):
        raise TypeError("load_torch_state_dict: expected a mapping (torch's state_dict()), got "
                        f"{type(state_dict).__name__}")
    sd = dict(state_dict.items())
    bad = [k for k in sd if not isinstance(k, str)]
    if bad:
        raise TypeError(f"load_torch_state_dict: keys must be str, got {bad[:3]!r}")
    own = dict(model.state_dict())
    rules = _rules(model)
    used, problems, values, extra = set(), [], {}, {}
    for dkey, tkeys, conv, _, mod in rules:
        missing = [k for k in tkeys if k not in sd]
        used.update(k for k in tkeys if k in sd)
        if dkey is None:                      # num_batches_tracked: optional, kept as metadata
            if not missing:
                try:
                    extra[id(mod)] = (mod, "_torch_num_batches", _count(sd[tkeys[0]], tkeys[0]))
                except (TypeError, ValueError) as e:
                    problems.append(str(e).replace("load_torch_state_dict: ", ""))
            continue
        if missing:
            if strict:
                problems.append("missing key " + ", ".join(repr(k) for k in missing))
            continue
        arrs = [_np(sd[k], k) for k in tkeys]
        want = tuple(np.shape(own[dkey]))
        try:
            v = conv(arrs)
        except ValueError as e:
            problems.append(f"{tkeys[0]!r}: {e}")
            continue
        if tuple(v.shape) != want:
            torch_want = tuple(reversed(want)) if arrs[0].ndim == 2 and tuple(
                reversed(v.shape)) == tuple(arrs[0].shape) else want
            problems.append(f"{tkeys[0]!r} has shape {tuple(arrs[0].shape)} but this model "
                            f"needs {torch_want}")
            continue
        values[dkey] = v
        if len(tkeys) == 2:
            dt = np.asarray(own[dkey]).dtype
            extra[id(mod)] = (mod, "_torch_bias_pair", (arrs[0].astype(dt), arrs[1].astype(dt)))
    unexpected = [k for k in sd if k not in used]
    if strict and unexpected:
        problems.append("unexpected key " + ", ".join(repr(k) for k in unexpected))
    if problems:
        raise ValueError(f"load_torch_state_dict for {type(model).__name__}: "
                         + "; ".join(problems))
    result = model.load_state_dict(values, strict=False)   # all or nothing, converts dtypes
    for mod, attr, v in extra.values():
        mod.__dict__[attr] = v
    return result


def torch_state_dict(model):
    """The state_dict of the equivalent torch model, as torch tensors (needs torch)."""
    try:
        import torch
    except ImportError:
        raise ImportError("torch_state_dict() needs PyTorch installed") from None
    own = model.state_dict()
    out = OrderedDict()
    for dkey, tkeys, _, to_torch, mod in _rules(model):
        a = None if dkey is None else np.asarray(own[dkey])
        for k, v in to_torch(a, mod).items():
            out[k] = torch.from_numpy(np.array(v, copy=True, order="C"))
    return out
