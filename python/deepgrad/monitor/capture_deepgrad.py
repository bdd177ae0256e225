"""The monitor's capture for deepgrad models: GradientMonitor (see deepgrad.monitor).

    monitor = GradientMonitor(model)
    for X, y in batches:
        loss = loss_fn(model(X), y)
        opt.zero_grad(); loss.backward(); opt.step()
        monitor.step(loss)          # after backward (and after opt.step for update ratios)
    for f in monitor.diagnose():
        print(f)

Per recorded step and per layer it keeps: the norm of the back-propagated signal dL/d(layer
output), the weight-gradient and weight norms with their ratio, the update/weight ratio, and
activation statistics (pre-activation mean/std, saturated fraction for sigmoid/tanh-like
activations, dead fraction for ReLU). Recurrent layers add the norm of dL/dh_t for every time
step.

Cost (see benchmarks/RESULTS.md): per recorded step, one native pass over the parameter arena
(parameter, gradient and update norms), one native call for all layer-output gradient norms, and
per layer one native pass over its output for the activation statistics, on the pre-activation
that the fused Dense kernel hands back (``F.dense(pre=...)``), so no matmul is repeated. Steps
skipped by ``every`` cost a forward-hook call per layer (and a parameter copy before a recorded
step).

The monitor attaches only through each module's forward hooks (``register_forward_hook``) and
the fused Dense layer's documented taps (``pre=``/``probe=`` of F.dense, shared by every monitor
through one ``_Tap`` per module), so several monitors can watch one model and ``close()``
removes only the closing monitor's hooks.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
import warnings
from dataclasses import asdict

import numpy as np

from .core import (Finding, GradientWarning, Thresholds, _jsonable, diagnose,
                   new_history, thin, window)
from .sinks import _close_writer, _tensorboard_record, _tensorboard_writer, history_to_csv

# ---------------------------------------------------------------------------------------------
# the monitor

_SATURATING = ("sigmoid", "tanh", "softsign")
_DEAD = ("relu",)


class _Tap:
    """One module slot shared by every monitor watching that module: F.dense's ``pre=`` and
    ``probe=`` call ``.append(item)``, which hands the same item to each monitor's own list, so
    monitors on one model never take each other's data."""

    __slots__ = ("lists",)

    def __init__(self):
        self.lists: list = []

    def append(self, item) -> None:
        for lst in self.lists:
            lst.append(item)

    def __len__(self) -> int:  # items handed over and not yet taken (by the fullest monitor)
        return max((len(x) for x in self.lists), default=0)


def _tap_add(m, slot: str, lst: list) -> None:
    tap = m.__dict__.get(slot)
    if tap is None:
        tap = m.__dict__[slot] = _Tap()
    if not any(x is lst for x in tap.lists):
        tap.lists.append(lst)


def _tap_remove(m, slot: str, lst: list) -> None:
    tap = m.__dict__.get(slot)
    if tap is None:
        return
    tap.lists = [x for x in tap.lists if x is not lst]
    if not tap.lists:
        del m.__dict__[slot]


def _has_params(m) -> bool:
    return any(True for _ in m._named_parameters_raw())


def _default_layers(model) -> list:
    """A Sequential model (possibly wrapped in modules with no parameters of their own): its
    children that hold parameters. Otherwise: every module that holds parameters itself."""
    from ..nn.layers import Sequential
    root = model
    while True:
        if isinstance(root, Sequential):
            kids = [c for c in root.children() if _has_params(c)]
            if kids:
                return kids
            break
        kids = list(root.children())
        if len(kids) == 1 and not root._parameters:
            root = kids[0]
            continue
        break
    return [m for m in model.modules() if any(p is not None for p in m._parameters.values())]


def _followers(model, names: dict, layer) -> list:
    """The parameter-free modules right after ``layer`` in its parent Sequential."""
    from ..nn.layers import Sequential
    name = names.get(id(layer), "")
    if not name:
        return []
    parent_name = name.rpartition(".")[0]
    parent = dict(model.named_modules()).get(parent_name)
    if not isinstance(parent, Sequential):
        return []
    kids = list(parent.children())
    k = next((j for j, c in enumerate(kids) if c is layer), None)
    out = []
    for c in kids[k + 1:] if k is not None else []:
        if _has_params(c):
            break
        out.append(c)
    return out


def _act_of(m) -> str | None:
    a = getattr(m, "activation", None)
    return a if isinstance(a, str) and a != "identity" else None


def _host(be, a) -> np.ndarray:
    return a if isinstance(a, np.ndarray) else np.asarray(be.to_numpy(a))


def _norm(be, a) -> float:
    """L2 norm with float64 accumulation (the native deterministic reduction)."""
    if type(a) is np.ndarray and a.flags.c_contiguous:  # the common case, per layer and step
        flat = a.reshape(-1)
    else:
        flat = be.reshape(a, (int(a.size),)) if not isinstance(a, np.ndarray) else a.reshape(-1)
        if isinstance(flat, np.ndarray) and not flat.flags.c_contiguous:
            flat = be.copy(flat)  # (device arrays are always C-contiguous: reshape is a view)
    _, total, bad = be.segment_norms(flat, np.array([0, flat.size], dtype=np.int64))
    return float("nan") if bad else float(total)


#: (predicate on the model, GradientMonitor subclass) for models of other frameworks
_CAPTURES: list = []


class GradientMonitor:
    """Records gradient flow through ``model`` every ``every`` calls of ``step()``.

    ``layers``: the modules whose outputs count as layers (default: the children of a
    Sequential model that hold parameters, else every module with parameters of its own).
    Recurrent layers also record ||dL/dh_t|| per time step. ``thresholds`` configures
    ``diagnose()``; with ``warn=True`` each new finding is issued once as a GradientWarning.

    Usage: forward, backward (and optimizer step), then ``monitor.step(loss)``. The forward of a
    recorded step must run with gradients enabled; forwards under ``no_grad`` are ignored.

    Recorded per step (``to_dict()`` keys): ``global_grad_norm``, ``param_grad_norm`` and
    ``param_norm`` (per arena segment, from one native pass over the arena),
    ``update_norm`` (||w - w at the previous call||, so called after ``opt.step()`` it is this
    step's update), per layer ``layer_grad_norm``, ``layer_weight_norm`` (all parameters of the
    layer), ``layer_grad_ratio``, ``layer_update_ratio``, ``signal_norm`` (||dL/d output||),
    ``act_mean``/``act_std`` (pre-activation), ``saturated``, ``dead``; and ``time_signal``
    ({recurrent layer: per step, ||dL/dh_t|| for t = 1..T}). ``seconds`` is the time the monitor
    itself has spent (hooks and step()), for overhead reports; a Dense layer that is its own
    output needs no hook (F.dense's ``probe=`` hands over z, y and dL/dy), so the little extra
    work inside its forward and backward is not counted.

    ``warn=True`` diagnoses, at each recorded step, only the records a new finding can depend
    on (the latest, and the last ``growth_window`` for growth), so its cost does not grow with
    the history. ``max_records`` (None: unbounded, about 8 KB of memory per record for a 20-layer MLP,
    measured by benchmarks/bench_soak.py)
    caps the history: when it is exceeded, the older three quarters are thinned to every other
    record (the first is always kept) and the most recent quarter stays whole.
    """

    def __new__(cls, model=None, *args, **kwargs):
        # other frameworks' captures register here (capture_torch does on import of the
        # package), so this module never imports them
        if cls is GradientMonitor and model is not None:
            for accepts, capture in _CAPTURES:
                if accepts(model):
                    return super().__new__(capture)
        return super().__new__(cls)

    def __init__(self, model, every: int = 1, layers=None, thresholds: Thresholds | None = None,
                 warn: bool = False, activation_stats: bool = True,
                 max_records: int | None = None, tensorboard=None, writer=None):
        from ..nn.module import Module
        if not isinstance(model, Module):
            raise TypeError("GradientMonitor: model must be a deepgrad nn.Module or a "
                            f"torch.nn.Module, got {type(model).__name__}")
        names = self._setup_common(model, every, layers, thresholds, warn, max_records,
                                   _default_layers)
        self._tb = None
        self._tb_seen: set = set()
        if tensorboard is not None or writer is not None:
            self._tb = _tensorboard_writer(tensorboard, writer)
            self._tb_owned = writer is None
        self._layer_prefix = [names[id(m)] for m in self.layers]
        L = len(self.layers)

        # A layer's output is its own, or that of the parameter-free modules (activations,
        # dropout) that directly follow it in a Sequential: Dense -> ReLU counts as one layer.
        self._followers = [_followers(model, names, m) for m in self.layers]
        out_mod = [f[-1] if f else m for m, f in zip(self.layers, self._followers)]
        # Which module's forward provides each layer's activation statistics.
        self._act_src: dict[int, int] = {}
        if activation_stats:
            for i, m in enumerate(self.layers):
                src = None
                for sub in list(m.modules()) + self._followers[i]:
                    if _act_of(sub):
                        src = sub  # the last one: the activation that feeds the next layer
                if src is not None:
                    self._act_src[id(src)] = i
        self._recurrent = {i for i, m in enumerate(self.layers) if hasattr(m, "_watch_states")}
        self._out_index = {id(m): i for i, m in enumerate(out_mod)}
        self._rec_index = {id(self.layers[i]): i for i in self._recurrent}
        self._wrapped = []
        self._handles = []
        self._pre_lists: list = []
        targets = {id(m): m for m in out_mod}
        for i in self._recurrent:
            targets[id(self.layers[i])] = self.layers[i]
        for i, m in enumerate(self.layers):
            for sub in list(m.modules()) + self._followers[i]:
                if id(sub) in self._act_src:
                    targets[id(sub)] = sub
        # A Dense layer that is its own output (activation fused, no followers) needs no
        # wrapper and no tensor hook: on recorded steps it gets a probe list (F.dense(probe=))
        # that receives (z, y, backend, sink) in the forward and dL/dy into sink in backward.
        from ..nn.layers import Dense
        self._probed = [(i, m, _act_of(m) if id(m) in self._act_src else None)
                        for i, m in enumerate(self.layers)
                        if type(m) is Dense and not self._followers[i] and i not in self._recurrent]
        for _, m, _ in self._probed:
            targets.pop(id(m), None)
        self._probe_lists = [[] for _ in self._probed]
        self._armed = False
        self._arm(True)  # step 0 is recorded
        for m in targets.values():
            self._wrap(m)
        self._watching = set(self._recurrent)
        for i in self._recurrent:  # a count: each monitor watching the layer adds one
            m = self.layers[i]
            m.__dict__["_watch_states"] = int(m._watch_states) + 1

        # one lookup per hooked forward: (output index, recurrent index, statistics index)
        self._roles = {k: (self._out_index.get(k), self._rec_index.get(k), self._act_src.get(k))
                       for k in targets}
        self._signal_hooks = [functools.partial(self._signal_hook, i) for i in range(L)]
        from ..autograd import _S
        self._grad_mode = _S
        self._n = 0
        self._seg_cache = None  # (arena, segment->layer index, (segments, layers) 0/1 matrix)
        self._prev_params = None
        self._pending_signal = [None] * L
        self._pending_stats = [None] * L
        self._pending_time: dict[int, list] = {}
        self._h = new_history()
        self._raw: list = []  # recorded steps not yet turned into history lists (_flush)
        self._params: list[str] = []
        self.seconds = 0.0  # time spent in step() and in the hooks (for overhead reports)

    def _setup_common(self, model, every, layers, thresholds, warn, max_records, default_layers):
        """The arguments both captures share, checked and stored; ``layers`` resolved (names or
        modules of the model, else ``default_layers(model)``) into self.layers and
        self.layer_names. Returns {id(module): qualified name}."""
        if isinstance(every, bool) or int(every) != every or every < 1:
            raise ValueError(f"GradientMonitor: every must be a positive int, got {every!r}")
        if max_records is not None and (isinstance(max_records, bool) or
                                        int(max_records) != max_records or max_records < 8):
            raise ValueError("GradientMonitor: max_records must be None or an int >= 8, got "
                             f"{max_records!r}")
        self.model = model
        self.every = int(every)
        self.thresholds = thresholds or Thresholds()
        self.warn = bool(warn)
        self.max_records = None if max_records is None else int(max_records)
        self._warned: set = set()
        names = {id(m): n for n, m in model.named_modules()}
        if layers is None:
            layers = default_layers(model)
        else:
            mods = dict(model.named_modules())
            resolved = []
            for l in layers:
                if isinstance(l, str):
                    if l not in mods:
                        raise ValueError(f"GradientMonitor: no submodule named {l!r}; "
                                         f"known: {', '.join(n for n in mods if n)}")
                    l = mods[l]
                if id(l) not in names:
                    raise ValueError("GradientMonitor: a layer passed in is not part of the model")
                resolved.append(l)
            layers = resolved
        if not layers:
            raise ValueError("GradientMonitor: the model has no layers with parameters to monitor")
        self.layers = list(layers)
        self.layer_names = [f"{names[id(m)]}:{type(m).__name__}" if names[id(m)]
                            else type(m).__name__ for m in self.layers]
        return names

    # -- hooks -----------------------------------------------------------------------------------
    def _wrap(self, m) -> None:
        """Attach to module m through its forward hooks (removed by close())."""
        mon = self
        from ..nn.layers import Dense
        if id(m) in self._act_src and isinstance(m, Dense):
            # Its statistics need z = x W + b: on recorded steps the fused kernel hands it over
            # (F.dense(pre=...), through the module's shared tap), so no matmul is repeated.
            pre: list = []

            def before(mod, args):
                if mon._n % mon.every == 0:
                    pre.clear()
                    _tap_add(mod, "_pre", pre)

            def after(mod, args, out):
                if mon._n % mon.every == 0:
                    _tap_remove(mod, "_pre", pre)
                    mon._on_forward(mod, args, out, pre[-1] if pre else None)
                    pre.clear()
            self._handles.append(m.register_forward_pre_hook(before))
            self._handles.append(m.register_forward_hook(after))
            self._pre_lists.append((m, pre))
        else:
            def after(mod, args, out):
                if mon._n % mon.every == 0:
                    mon._on_forward(mod, args, out)
            self._handles.append(m.register_forward_hook(after))
        self._wrapped.append(m)

    def _arm(self, on: bool) -> None:
        """Give the probed Dense layers their probe lists (on) or take them away."""
        if on:
            for (_, m, _), lst in zip(self._probed, self._probe_lists):
                lst.clear()
                _tap_add(m, "_probe", lst)
        elif self._armed:
            for (_, m, _), lst in zip(self._probed, self._probe_lists):
                _tap_remove(m, "_probe", lst)
        self._armed = on

    def _collect_probes(self) -> None:
        """The probed layers' last recorded forward: the gradient the dense backward reported
        and the act_stats arguments, into the pending lists the hooks fill for other layers."""
        lim = self.thresholds.saturation_derivative
        sig, stats = self._pending_signal, self._pending_stats
        for (i, _, act), lst in zip(self._probed, self._probe_lists):
            if not lst:
                continue
            z, y, be, sink = lst[-1]
            lst.clear()
            if sink:
                sig[i] = (be, sink[-1])
            if act is None:
                continue
            if type(y) is not np.ndarray:
                y, z = _host(be, y), _host(be, z)
            # (Dense's z and y: the same (N > 0, C) shape and dtype from one kernel call)
            stats[i] = (z, y) + _stat_args(act, lim)

    def _gather_host(self):
        """When every layer is probed and all arrays are on the host: (signal, stats) as
        _signal_norms() and _layer_stats() return them, straight from the probes in one loop;
        None (probes untouched) otherwise."""
        sg, sa, tg, ti, tm = [], [], [], [], []
        lim = self.thresholds.saturation_derivative
        nd = np.ndarray
        for (i, _, act), lst in zip(self._probed, self._probe_lists):
            if not lst:
                continue
            z, y, be, sink = lst[-1]
            if type(y) is not nd:
                return None
            if sink:
                g = sink[-1]
                if type(g) is not nd:
                    return None
                sg.append(i)
                sa.append(g)
            if act is not None:
                a = _stat_args(act, lim)
                tg.append(i)
                ti.append((z, y) + a)
                tm.append((z.size, a[0], a[3], y.shape[1]))
        for lst in self._probe_lists:
            lst.clear()
        return (sg, _l2_norms(sa) if sa else []), (tg, _act_stats_many(ti), tm) if tg else None

    def close(self) -> None:
        """Remove the monitor's hooks from the model (recorded history stays)."""
        self._arm(False)
        self._probed, self._probe_lists = [], []
        for h in self._handles:
            h.remove()
        for m, pre in self._pre_lists:  # a forward that raised between the two hooks
            _tap_remove(m, "_pre", pre)
        for i in self._watching:
            m = self.layers[i]
            if m._watch_states:
                m.__dict__["_watch_states"] = int(m._watch_states) - 1
        self._watching = set()
        self._handles, self._pre_lists, self._wrapped = [], [], []
        _close_writer(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _on_forward(self, m, args, out, z=None) -> None:
        if not self._grad_mode.grad_enabled:
            return
        t0 = time.perf_counter()
        i, r, j = self._roles[id(m)]
        y = out[0] if isinstance(out, tuple) else out
        if i is not None and getattr(y, "requires_grad", False):
            self._pending_signal[i] = None
            y.register_hook(self._signal_hooks[i])
        i = r
        if i is not None and getattr(y, "requires_grad", False):
            # the recurrent layer's sequence node fills this list with ||dL/dh_t|| on backward
            # (the layer sets _time_row on every forward; other monitors read the same row)
            self._pending_time[i] = m._time_row or []
        if j is not None and args:
            self._pending_stats[j] = self._stat_item(m, args[0], y, z)
        self.seconds += time.perf_counter() - t0

    def _signal_hook(self, i: int, g) -> None:
        # Keep the gradient (backward never writes into an incoming gradient: sums are out of
        # place); step() takes all the layers' norms in one native call.
        self._pending_signal[i] = (g._be, g.data)

    def _signal_norms(self) -> tuple:
        """(indices of the layers a gradient reached, their ||dL/d output||: NaN where the
        gradient holds NaN or Inf) from the gradients the hooks kept; to_dict() puts None where
        no gradient arrived."""
        sig = self._pending_signal
        got = [i for i, p in enumerate(sig) if p is not None]
        if all(type(sig[i][1]) is np.ndarray for i in got):
            return got, _l2_norms([sig[i][1] for i in got])
        return got, [_norm(*sig[i]) for i in got]

    def _stat_item(self, m, x, y, z=None):
        """The act_stats arguments (z, y, saturation, center, bound, dead) for a layer's output,
        host arrays kept until step() (None when the output is not (N, C)). z is the
        pre-activation the fused Dense kernel handed over, the input of an activation module, or
        (other weighted layers) recomputed now with one matmul, while the weights are those of
        this forward."""
        be = y._be
        yd = y.data
        if type(yd) is not np.ndarray:
            yd = _host(be, yd)
        if yd.ndim != 2 or yd.shape[0] == 0 or yd.shape[1] == 0:
            return None
        if z is not None:
            if type(z) is not np.ndarray:
                z = _host(be, z)
        elif getattr(m, "in_features", None) is not None and getattr(m, "weight", None) is not None:
            z = _host(be, getattr(x, "data", x)) @ _host(be, m.weight.data)
            if getattr(m, "bias", None) is not None:
                z += _host(be, m.bias.data)
        else:
            z = _host(be, getattr(x, "data", x))
        if z.shape != yd.shape or z.dtype != yd.dtype:
            return None
        return (z, yd) + _stat_args(_act_of(m), self.thresholds.saturation_derivative)

    def _layer_stats(self) -> tuple | None:
        """The raw per-layer statistics of this step: (layer indices, act_stats_many results
        (sum z, sum z^2, saturated count, alive-column count), (z.size, saturation mode, dead,
        columns) per layer), one native pass over each layer's z and y (float64 sums), all in
        one call; _stats_row() turns them into (mean, std, saturated, dead) when read."""
        items = self._pending_stats
        got = [i for i, it in enumerate(items) if it is not None]
        if not got:
            return None
        its = [items[i] for i in got]
        return got, _act_stats_many(its), [(it[0].size, it[2], it[5], it[1].shape[1]) for it in its]

    @staticmethod
    def _stats_row(raw, L: int) -> list:
        """Per layer (pre-activation mean, std, saturated fraction or None, dead fraction or
        None) from _layer_stats()'s raw sums; None for layers without statistics."""
        out = [None] * L
        if raw is None:
            return out
        for i, (s1, s2, n_sat, n_alive), (n, sat, dead, cols) in zip(*raw):
            mean = s1 / n
            var = max(s2 / n - mean * mean, 0.0)
            out[i] = (mean, math.sqrt(var), n_sat / n if sat else None,
                      1.0 - n_alive / cols if dead else None)
        return out

    # -- recording ---------------------------------------------------------------------------------
    def _seg_layers(self, arena):
        """(segment -> layer index or -1, (segments, layers) 0/1 float64 matrix), cached."""
        if self._seg_cache is not None and self._seg_cache[0] is arena:
            return self._seg_cache[1], self._seg_cache[2]
        idx = np.full(len(arena.segments), -1, dtype=np.int64)
        # the longest matching layer prefix owns a parameter (a layer inside another layer)
        order = sorted(range(len(self.layers)), key=lambda i: -len(self._layer_prefix[i]))
        for s, seg in enumerate(arena.segments):
            for i in order:
                p = self._layer_prefix[i]
                if p == "" or seg.name.startswith(p + "."):
                    idx[s] = i
                    break
        member = np.zeros((len(idx), len(self.layers)))
        ok = idx >= 0
        member[np.flatnonzero(ok), idx[ok]] = 1.0
        self._seg_cache = (arena, idx, member)
        self._params = list(arena.names)
        return idx, member

    def _snapshot(self, arena) -> None:
        """Copy the parameters for the next update norm (into the previous copy's buffer)."""
        prev = self._prev_params
        if prev is not None and prev[0] is arena:
            arena.be.copy_(prev[1], arena.params)
        else:
            self._prev_params = (arena, arena.be.copy(arena.params))

    def step(self, loss=None) -> bool:
        """Record this step if it is one of every ``every``; returns True when it recorded."""
        t0 = time.perf_counter()
        n = self._n
        self._n += 1
        arena = self.model.arena
        if n % self.every != 0:
            if (n + 1) % self.every == 0:
                self._arm(True)  # the next forward is recorded
                if arena is not None:
                    self._snapshot(arena)
            self.seconds += time.perf_counter() - t0
            return False
        fast = self._gather_host() if not self._wrapped else None
        if fast is None:
            self._collect_probes()
        if self.every != 1:
            self._arm(False)
        L = len(self.layers)
        lossv = None if loss is None else float(loss.item() if hasattr(loss, "item") else loss)
        norms = None
        if arena is not None:
            be = arena.be
            prev = self._prev_params
            has_prev = prev is not None and prev[0] is arena
            # the snapshot for the next update norm: here when every step is recorded, else on
            # the step before the next recorded one
            snap = self.every == 1
            if type(arena.params) is np.ndarray:  # host arena: one native pass does it all
                if snap and not has_prev:
                    prev = self._prev_params = (arena, np.empty_like(arena.params))
                # the gradient pass is the health kernel: L-inf and non-finite counts and the
                # first bad element come out of the same read as the norms
                pn, gn, un, gbad, gh = _monitor_norms(arena.params, arena.grads,
                                                      prev[1] if has_prev or snap else None,
                                                      arena.offsets, has_prev, snap, True)
                gtot = ptot = None  # from gn and pn when read
            else:
                gh = None   # the device arena: L2 norms only (see the CUDA backend)
                gn, gtot, gbad = arena.grad_norms()
                pn, ptot, _ = arena.param_norms()
                gn, pn = np.asarray(gn, dtype=np.float64), np.asarray(pn, dtype=np.float64)
                un = None
                if has_prev:
                    un = np.asarray(be.segment_norms(be.sub(arena.params, prev[1]),
                                                     arena.offsets)[0], dtype=np.float64)
                if snap:
                    self._snapshot(arena)
            seg_layer, member = self._seg_layers(arena)
            norms = (gbad, gtot, ptot, gn, pn, un, member, gh, seg_layer)
        # the per-layer aggregates, ratios and Python lists are derived when read (_flush)
        if fast is None:
            fast = (self._signal_norms(), self._layer_stats())
        self._raw.append((n, lossv, norms) + fast)
        for i in self._recurrent:
            self._h["time_signal"].setdefault(self.layer_names[i], []).append(
                self._pending_time.get(i) or [])
        self._pending_signal = [None] * L
        self._pending_stats = [None] * L
        self._pending_time = {}
        if self.max_records is not None and len(self._raw) >= max(8, self.max_records // 4):
            self._flush()  # keeps the raw list short and applies the cap
        self.seconds += time.perf_counter() - t0
        self._after_record()
        return True

    def _after_record(self) -> None:
        """warn=True and the TensorBoard stream, after each recorded step. Incremental: every
        finding depends on the latest record or, for growth, on the last growth_window records,
        so only that window is diagnosed; a step costs the same at step 10,000 as at step 100."""
        if not (self.warn or self._tb is not None):
            return
        win = self._window(int(self.thresholds.growth_window) + 1)
        findings = diagnose(win, self.thresholds)
        if self.warn:
            for f in findings:
                key = (f.kind, f.where, f.layer)
                if key not in self._warned:
                    self._warned.add(key)
                    warnings.warn(GradientWarning(f.message), stacklevel=3)
        if self._tb is not None:
            _tensorboard_record(self._tb, win, findings, self._tb_seen)

    # -- results ----------------------------------------------------------------------------------
    def _window(self, k: int) -> dict:
        """The last k records as a history dict (for the incremental diagnosis of warn=True)."""
        return window(self._flush(), k, self.layer_names)

    def _thin(self) -> None:
        thin(self._h, self.max_records)

    def _flush(self) -> dict:
        """Turn the raw records of the steps since the last read into the history lists."""
        raw, self._raw = self._raw, []
        h = self._h
        L = len(self.layers)
        for n, loss, norms, (got, sig), stats in raw:
            h["steps"].append(n)
            h["loss"].append(loss)
            if norms is not None:
                gbad, gtot, ptot, gn, pn, un, member, gh, seg_layer = norms
                if gtot is None:
                    gtot, ptot = math.sqrt(float(gn @ gn)), math.sqrt(float(pn @ pn))
                # per layer: sqrt of the sum of its segments' squared norms, one small matmul
                sq = np.array([gn, pn] if un is None else [gn, pn, un])
                agg = np.sqrt((sq * sq) @ member)
                lg, lw = agg[0], agg[1]
                pos = lw > 0
                with np.errstate(divide="ignore", invalid="ignore"):
                    rat = np.where(pos, agg / np.where(pos, lw, 1.0), np.nan)
                h["global_grad_norm"].append(float("nan") if gbad else float(gtot))
                h["global_param_norm"].append(float(ptot))
                h["param_grad_norm"].append(gn.tolist())
                h["param_norm"].append(pn.tolist())
                h["update_norm"].append(None if un is None else un.tolist())
                h["layer_grad_norm"].append(lg.tolist())
                h["layer_weight_norm"].append(lw.tolist())
                h["layer_grad_ratio"].append(rat[0].tolist())
                h["layer_update_ratio"].append([None] * L if un is None else rat[2].tolist())
                linf, nonf, first = _health_rows(gh, member, self._params, seg_layer)
                h["layer_grad_linf"].append(linf)
                h["layer_nonfinite"].append(nonf)
                h["first_nonfinite"].append(first)
            else:
                for k in ("global_grad_norm", "global_param_norm"):
                    h[k].append(float("nan"))
                for k in ("param_grad_norm", "param_norm", "update_norm"):
                    h[k].append(None)
                for k in ("layer_grad_norm", "layer_weight_norm", "layer_grad_ratio",
                          "layer_update_ratio", "layer_grad_linf", "layer_nonfinite"):
                    h[k].append([None] * L)
                h["first_nonfinite"].append(None)
            row = [None] * L
            for i, v in zip(got, sig.tolist() if isinstance(sig, np.ndarray) else sig):
                row[i] = v
            h["signal_norm"].append(row)
            st = self._stats_row(stats, L)
            for k, pos in (("act_mean", 0), ("act_std", 1), ("saturated", 2), ("dead", 3)):
                h[k].append([None if s is None else s[pos] for s in st])
        if self.max_records is not None:
            self._thin()
        return h

    @property
    def num_records(self) -> int:
        return len(self._h["steps"]) + len(self._raw)

    def to_dict(self) -> dict:
        """The history as plain Python data (lists of floats; None where nothing was recorded)."""
        out = {"layers": list(self.layer_names), "params": list(self._params), "every": self.every,
               "thresholds": asdict(self.thresholds)}
        for k, v in self._flush().items():
            out[k] = _jsonable(v)  # fresh containers; NaN/Inf as None, as in the JSON file
        return out

    def diagnose(self) -> list[Finding]:
        """Findings for the recorded history, using this monitor's thresholds (see Thresholds)."""
        return diagnose(self.to_dict(), self.thresholds)

    def to_json(self, path: str) -> str:
        """Write ``to_dict()`` plus the findings as JSON; returns the path."""
        d = self.to_dict()
        d["findings"] = [f.to_dict() for f in diagnose(d, self.thresholds)]
        path = os.fspath(path)
        with open(path, "w") as fh:
            json.dump(_jsonable(d), fh)
        return path

    def to_csv(self, path: str) -> str:
        """One row per (recorded step, layer); returns the path."""
        return history_to_csv(self.to_dict(), path)

    def plot(self, folder: str | None = None, prefix: str = "") -> list:
        """The three standard plots (per-layer bars of the last step, layer × step heatmap,
        global norm over steps): saved as PNG files into ``folder`` (their paths returned), or,
        with no folder, returned as matplotlib Figures (shown inline in Jupyter)."""
        from .. import plot as P
        d = self.to_dict()
        if folder is None:
            return [P.plot_layer_norms(d), P.plot_heatmap(d), P.plot_global_norm(d)]
        os.makedirs(folder, exist_ok=True)
        return [P.plot_layer_norms(d, os.path.join(folder, prefix + "layer_norms.png")),
                P.plot_heatmap(d, os.path.join(folder, prefix + "heatmap.png")),
                P.plot_global_norm(d, os.path.join(folder, prefix + "global_norm.png"))]


def _l2_norms(arrays: list) -> np.ndarray:
    """The native norms of host arrays in one call (deepgrad.backend.cpu.l2_norms)."""
    global _l2_norms
    from ..backend import get_backend
    _l2_norms = get_backend("cpu").l2_norms
    return _l2_norms(arrays)


def _monitor_norms(params, grads, prev, offsets, diff: bool, snapshot: bool,
                   health: bool = False):
    """The native one-pass arena norms (deepgrad.backend.cpu.monitor_norms) of host buffers."""
    global _monitor_norms
    from ..backend import get_backend
    _monitor_norms = get_backend("cpu").monitor_norms
    return _monitor_norms(params, grads, prev, offsets, diff, snapshot, health)


def _health_rows(gh, member, names, seg_layer):
    """(per-layer L-inf, per-layer non-finite count, [parameter, index, layer] of the first
    non-finite gradient or None) from monitor_norms' health rows (S, 3)."""
    L = member.shape[1]
    if gh is None:
        return [None] * L, [None] * L, None
    linf = (gh[:, 0:1] * member).max(axis=0) if len(gh) else np.zeros(L)
    nonf = gh[:, 1] @ member
    first = None
    badseg = np.flatnonzero(gh[:, 1] > 0)
    if badseg.size:
        s = int(badseg[0])
        li = int(seg_layer[s])
        first = [names[s], int(gh[s, 2]), li if li >= 0 else None]
    return linf.tolist(), [int(v) for v in nonf], first


@functools.lru_cache(maxsize=64)
def _stat_args(act: str | None, lim: float) -> tuple:
    """act_stats arguments (saturation mode, center, bound, dead) for an activation: a derivative
    below ``lim`` x its maximum, written as a bound on |y - center| (or |z|)."""
    dead = act in _DEAD
    if act == "sigmoid":  # y(1 - y) < lim/4  <=>  |y - 1/2| > sqrt(1 - lim)/2
        return 1, 0.5, 0.5 * math.sqrt(1.0 - lim), dead
    if act == "tanh":  # 1 - y^2 < lim  <=>  |y| > sqrt(1 - lim)
        return 1, 0.0, math.sqrt(1.0 - lim), dead
    if act == "softsign":  # 1/(1 + |z|)^2 < lim  <=>  |z| > 1/sqrt(lim) - 1
        return 2, 0.0, 1.0 / math.sqrt(lim) - 1.0, dead
    return 0, 0.0, 0.0, dead


def _act_stats_many(items: list) -> list:
    """The native one-pass statistics of host arrays, all layers in one call
    (deepgrad.backend.cpu.act_stats_many)."""
    global _act_stats_many
    from ..backend import get_backend
    _act_stats_many = get_backend("cpu").act_stats_many  # resolved once
    return _act_stats_many(items)
