"""Optimizers (SGD, RMSprop, Adam, AdamW) and learning-rate schedules, PyTorch semantics.

Each optimizer steps contiguous slices of the parameter arena with ONE native call per slice:
a whole model given as ``model`` or ``model.parameters()`` is one slice, so one call per step;
param groups are one slice each when their parameters are contiguous in the arena (several
otherwise). State (momentum, m, v, ...) lives in flat buffers on the parameters' device, one
per slice. Parameters outside any arena (a list of bare Tensors) are packed into a private
arena at construction: their ``.data``/``.grad`` become views into it.

Re-layout: when a model's arena is rebuilt after the optimizer was created (a layer was added,
the model was moved with .to()), the next step()/zero_grad() notices it and rebuilds the flat
state, carrying every parameter's state over. Arena gradients are never None, so unlike
PyTorch a parameter that got no gradient is still stepped with a zero gradient (momentum and
weight decay still act on it).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .nn import arena as _arena_mod
from .backend import backend_of, copy_into, get_backend
from .nn.arena import Arena, runs as _runs
from .tensor import Tensor
from .autograd import backward_calls

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "LRScheduler", "StepLR",
           "ExponentialLR", "CosineAnnealingLR", "LinearWarmup"]


def _backend(device):
    return get_backend(device)


class _Run:
    """One contiguous slice [start, stop) of an arena stepped by one native call. ``sargs``:
    () or (offsets, stats rows) for the native step to fill the arena's step statistics of the
    run's segments (set by Optimizer.step while the arena's readers ask)."""
    __slots__ = ("arena", "be", "start", "stop", "p", "g", "state", "segs", "offs", "sargs")

    def __init__(self, arena: Arena, start: int, stop: int):
        self.arena, self.be, self.start, self.stop = arena, arena.be, start, stop
        self.p = arena.slice(arena.params, start, stop)
        self.g = arena.slice(arena.grads, start, stop)
        self.state: dict = {}
        # the arena segments [lo, hi) that tile [start, stop) (runs are unions of whole segments)
        off = arena.offsets
        lo = int(np.searchsorted(off, start, side="left"))
        hi = int(np.searchsorted(off, stop, side="left"))
        while hi < len(off) - 1 and off[hi + 1] == stop:  # empty segments at the end
            hi += 1
        self.segs = (lo, hi)
        self.offs = np.ascontiguousarray(off[lo:hi + 1] - start)
        self.sargs: tuple = ()


class Optimizer:
    """Base class. Subclasses set ``_state_names(group)`` and ``_update(run, group, step)``."""

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        # the native steps of the built-in optimizers fill the arenas' step statistics; an
        # _update written elsewhere might not pass them on
        self._fills_step_stats = type(self)._update in _STEP_STATS_UPDATES
        self._stats_args: dict = {}  # arena id -> (its step_stats, runs, native arguments per run)
        for g in _as_groups(params):
            group = dict(self.defaults)
            group.update({k: v for k, v in g.items() if k != "params"})
            unknown = set(group) - set(self.defaults)
            if unknown:
                raise TypeError(f"{type(self).__name__}: unknown option(s) "
                                f"{', '.join(sorted(unknown))} in a param group")
            group["params"] = g["params"]
            self._check_group(group)
            self.param_groups.append(_ParamGroup(self, group))
        seen: set[int] = set()
        for group in self.param_groups:
            for p in group["params"]:
                if id(p) in seen:
                    raise ValueError(f"{type(self).__name__}: a parameter appears in more than "
                                     "one param group (or twice in one)")
                seen.add(id(p))
        self._steps = [0 for _ in self.param_groups]
        # bare (non-Parameter) Tensors packed into a private arena:
        # id -> (tensor, arena, slot, param view, grad view)
        self._plain: dict[int, tuple] = {}
        self._build(carry=None)

    # -- hooks for subclasses ------------------------------------------------------------------

    def _check_group(self, group: dict) -> None:
        """Every option of `group` valid (ValueError naming the option and its range): checked
        at construction, add_param_group, load_state_dict and on every assignment to a
        param_groups entry, so the native step never sees a bad value mid-update."""
        _real(self, group, "lr", 0.0)

    def _check_bool(self, group: dict, key: str) -> None:
        v = group[key]
        if not (isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, np.integer))
                                                     and v in (0, 1))):
            raise ValueError(f"{type(self).__name__}: {key} must be True or False, got {v!r}")

    def _state_names(self, group: dict) -> tuple[str, ...]:
        raise NotImplementedError(f"{type(self).__name__} must define _state_names() (the flat state buffers it keeps)")

    def _update(self, run: _Run, group: dict, step: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define _update() (its native step over the arena)")

    # -- layout of the flat state --------------------------------------------------------------

    def _build(self, carry) -> None:
        """Lay out runs and zeroed state for every group, then load `carry` (per-parameter
        numpy state, by parameter id) into it."""
        from .nn.parameter import Parameter
        loose = [p for g in self.param_groups for p in g["params"]
                 if (p._arena is None if isinstance(p, Parameter) else id(p) not in self._plain)]
        if loose:
            a = Arena([(f"param{i}", p) for i, p in enumerate(loose)])
            for i, p in enumerate(loose):
                if not isinstance(p, Parameter):
                    self._plain[id(p)] = (p, a, i, a.param_view(i), a.grad_view(i))
        self._locs: list[list[tuple]] = []     # per group, per param: (run idx, offset, shape)
        self._group_runs: list[list[_Run]] = []
        self._where: list[tuple] = []          # (Parameter, arena, slot) to validate the layout
        for group in self.param_groups:
            by_arena: dict[int, tuple[Arena, list[int]]] = {}
            placed = []
            for p in group["params"]:
                if isinstance(p, Parameter):
                    a, slot = p._arena, p._slot
                    self._where.append((p, a, slot))
                else:
                    a, slot = self._plain[id(p)][1:3]
                by_arena.setdefault(id(a), (a, []))[1].append(slot)
                placed.append((a, slot))
            grs: list[_Run] = []
            for a, slots in by_arena.values():
                grs.extend(_Run(a, s, e) for s, e in _runs(a, slots))
            locs = []
            for a, slot in placed:
                seg = a.segments[slot]
                if seg.size == 0:       # an empty parameter: in no run, no state
                    locs.append((None, 0, seg.shape))
                    continue
                ri = next(i for i, r in enumerate(grs)
                          if r.arena is a and r.start <= seg.offset < r.stop)
                locs.append((ri, seg.offset - grs[ri].start, seg.shape))
            names = self._state_names(group)
            for r in grs:
                be = r.be
                r.state = {n: be.zeros((r.stop - r.start,), r.arena.dtype) for n in names}
            self._group_runs.append(grs)
            self._locs.append(locs)
        # the arenas this optimizer updates: each step bumps their version, which every
        # Parameter in them reads as part of its own (a saved parameter then fails the
        # backward's "modified in place" check, as in PyTorch)
        self._arenas = list({id(r.arena): r.arena for grs in self._group_runs
                             for r in grs}.values())
        # {arena id: its runs} where this optimizer steps every non-empty segment of the arena
        # (so one step can fill all of the arena's step statistics)
        self._covering = {}
        for a in self._arenas:
            runs = [r for grs in self._group_runs for r in grs if r.arena is a]
            covered = np.zeros(len(a.segments), dtype=bool)
            for r in runs:
                covered[r.segs[0]:r.segs[1]] = True
            sizes = np.diff(a.offsets)
            if getattr(a.be, "STEP_STATS", False) and bool(np.all(covered | (sizes == 0))):
                self._covering[a.id] = runs
        self._epoch = _arena_mod._EPOCH[0]
        if carry:
            self._import(carry)

    def _sync(self) -> None:
        """Notice re-layouts (rebuild the state, carried over) and re-attach bare Tensors whose
        data/grad the user replaced."""
        if self._epoch != _arena_mod._EPOCH[0]:
            if any(p._arena is not a or p._slot != s for p, a, s in self._where):
                self._build(self._export())
            self._epoch = _arena_mod._EPOCH[0]
        for t, a, i, pv, gv in self._plain.values():
            if t.data is not pv:
                if tuple(t.data.shape) != tuple(pv.shape):
                    raise ValueError(f"{type(self).__name__}: a parameter's shape changed from "
                                     f"{tuple(pv.shape)} to {tuple(t.data.shape)}; create a new "
                                     "optimizer")
                _copy_values(pv, t.data)
                t.data = pv
            g = t.grad
            if g is None or g.data is not gv:
                if g is None:
                    a.be.fill_(gv, 0.0)
                else:
                    _copy_values(gv, g.data)
                t.grad = _view_tensor(gv, t)

    def _export(self) -> dict:
        """Per-parameter state as numpy copies: {id(param): {name: array, "step": int}}."""
        out = {}
        for gi, group in enumerate(self.param_groups):
            grs = self._group_runs[gi]
            for p, (ri, off, shape) in zip(group["params"], self._locs[gi]):
                if ri is None:
                    st = {n: np.zeros(shape) for n in self._state_names(group)}
                    st["step"] = self._steps[gi]
                    out[id(p)] = st
                    continue
                r = grs[ri]
                be = r.be
                st = {n: np.array(be.to_numpy(be.view(b, off, shape)), copy=True)
                      for n, b in r.state.items()}
                st["step"] = self._steps[gi]
                out[id(p)] = st
        return out

    def _import(self, carry: dict) -> None:
        for gi, group in enumerate(self.param_groups):
            grs = self._group_runs[gi]
            steps = []
            for p, (ri, off, shape) in zip(group["params"], self._locs[gi]):
                st = carry.get(id(p))
                if not st:
                    continue
                steps.append(int(st.get("step", 0)))
                if ri is None:
                    continue
                r = grs[ri]
                for n, b in r.state.items():
                    if n in st:
                        _copy_values(r.be.view(b, off, shape), np.asarray(st[n]))
            if steps:
                self._steps[gi] = max(steps)

    # -- public API ----------------------------------------------------------------------------

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Every gradient of every group to zero (one native fill per slice). `set_to_none` is
        accepted for PyTorch compatibility; arena gradients are zero-filled."""
        self._sync()
        for grs in self._group_runs:
            for r in grs:
                r.be.fill_(r.g, 0.0)

    def step(self, closure=None):
        """One update of every parameter; returns closure() when given (evaluated first)."""
        loss = None
        if closure is not None:
            from .autograd import enable_grad
            with enable_grad():
                loss = closure()
        self._sync()
        stats = self._arm_step_stats() if self._fills_step_stats else None
        for gi, group in enumerate(self.param_groups):
            self._steps[gi] += 1
            step = self._steps[gi]
            for r in self._group_runs[gi]:
                self._update(r, group, step)
        if stats:
            k = backward_calls()
            for a, runs in stats:
                for r in runs:
                    r.sargs = ()
                stamp = a.step_stats_stamp
                stamp[0] += 1
                stamp[1] = k
        for a in self._arenas:
            a.version += 1
        for t, *_ in self._plain.values():
            t._version += 1
        return loss

    def _arm_step_stats(self) -> list | None:
        """[(arena, its runs)] for the arenas whose readers ask for step statistics and whose
        every non-empty segment this optimizer steps; their runs get the native arguments."""
        out = None
        for a in self._arenas:
            if a.step_stats_readers and a.step_stats is not None:
                runs = self._covering.get(a.id)
                if runs is None:
                    continue
                cache = self._stats_args.get(a.id)
                if cache is None or cache[0] is not a.step_stats or cache[1] is not runs:
                    # the native arguments (offsets, a view of the arena's rows) per run, kept
                    # while the arena keeps the same statistics array and these runs
                    cache = (a.step_stats, runs, [(r.offs, a.step_stats[r.segs[0]:r.segs[1]])
                                                  for r in runs])
                    self._stats_args[a.id] = cache
                for r, args in zip(runs, cache[2]):
                    r.sargs = args
                if out is None:
                    out = []
                out.append((a, runs))
        return out

    def state_dict(self) -> dict:
        """{"state": {param index: {name: numpy array, "step": int}}, "param_groups": [options
        with "params": [indices]]}, as torch.optim (indices count over all groups in order)."""
        self._sync()
        exported = self._export()
        state, groups, k = {}, [], 0
        for gi, group in enumerate(self.param_groups):
            idx = []
            for p in group["params"]:
                if self._steps[gi] > 0:
                    state[k] = exported[id(p)]
                idx.append(k)
                k += 1
            g = {n: v for n, v in group.items() if n != "params"}
            g["params"] = idx
            groups.append(g)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore options and state saved by state_dict() (same parameter structure). All or
        nothing: the structure, every option (through the same checks as the constructor) and
        every state array (names, shape, numeric) are checked and converted before anything
        changes, so a failure leaves the optimizer exactly as it was."""
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError(f"{name}: expected a dict with 'state' and 'param_groups' (as "
                             "returned by state_dict())")
        groups, state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(groups, (list, tuple)) or not isinstance(state, dict):
            raise ValueError(f"{name}: 'param_groups' must be a list and 'state' a dict")
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{name}: the state has {len(groups)} param groups, this "
                             f"optimizer has {len(self.param_groups)}")
        new_groups, carry, listed = [], {}, set()
        for gi, (saved, group) in enumerate(zip(groups, self.param_groups)):
            if not isinstance(saved, dict) or not isinstance(saved.get("params"), (list, tuple)):
                raise ValueError(f"{name}: param group {gi} is not a dict with a 'params' list")
            bad = [k for k in saved if not isinstance(k, str)]
            if bad:
                raise TypeError(f"{name}: option names must be str, got {bad[0]!r} in param "
                                f"group {gi}")
            unknown = set(saved) - set(self.defaults) - {"params", "initial_lr"}
            if unknown:
                raise ValueError(f"{name}: unknown option(s) {', '.join(sorted(unknown))} in "
                                 f"param group {gi} (a state of another optimizer type?)")
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}: param group {gi} has {len(saved['params'])} "
                                 f"parameters in the state but {len(group['params'])} here")
            g = dict(group)
            g.update({n: tuple(v) if isinstance(v, list) else v
                      for n, v in saved.items() if n != "params"})
            try:
                self._check_group(g)
            except (TypeError, ValueError, KeyError) as e:
                raise ValueError(f"{name}: param group {gi}: {e}") from None
            new_groups.append(g)
            want = set(self._state_names(g))
            for idx, p, loc in zip(saved["params"], group["params"], self._locs[gi]):
                if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)) \
                        or int(idx) in listed:
                    raise ValueError(f"{name}: param group {gi} lists parameter index {idx!r} "
                                     "(indices are distinct ints)")
                idx = int(idx)
                listed.add(idx)
                st = state.get(idx, state.get(str(idx)))
                if st is None:
                    continue
                if not isinstance(st, dict):
                    raise ValueError(f"{name}: the state of parameter {idx} is a "
                                     f"{type(st).__name__}, not a dict")
                if any(not isinstance(n, str) for n in st):
                    raise TypeError(f"{name}: state keys must be str, got "
                                    f"{next(n for n in st if not isinstance(n, str))!r} for "
                                    f"parameter {idx}")
                names = set(st) - {"step"}
                if names != want:
                    raise ValueError(f"{name}: parameter {idx} has state "
                                     f"{sorted(names)}, this {type(self).__name__} with these "
                                     f"options keeps {sorted(want)}")
                carry[id(p)] = self._convert_state(name, idx, st, tuple(loc[2]))
        stray = [k for k in state if (int(k) if str(k).isdigit() else k) not in listed]
        if stray:
            raise ValueError(f"{name}: state for parameter index(es) {stray[:5]} that no param "
                             "group lists")
        for g, group in zip(new_groups, self.param_groups):
            group.update({n: v for n, v in g.items() if n != "params"})
        self._sync()
        for grs in self._group_runs:
            for r in grs:
                be = r.be
                for b in r.state.values():
                    be.fill_(b, 0.0)
        self._steps = [0 for _ in self.param_groups]
        self._import(carry)

    @staticmethod
    def _convert_state(name: str, idx: int, st: dict, shape: tuple) -> dict:
        conv = {}
        for n, v in st.items():
            try:
                v = v.numpy() if isinstance(v, Tensor) else v
                if n == "step":
                    a = np.asarray(v)
                    if a.shape != () or a.dtype.kind not in "iuf" or a != int(a) or a < 0:
                        raise ValueError(f"step must be an integer >= 0, got {v!r}")
                    conv[n] = int(a)
                    continue
                a = np.asarray(v)
                if a.dtype.kind not in "biuf":
                    raise ValueError(f"dtype {a.dtype}")
                conv[n] = np.array(a, dtype=np.float64, copy=True)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{name}: state {n!r} of parameter {idx} cannot be read as "
                                 f"numbers ({e})") from None
            if conv[n].shape != shape:
                raise ValueError(f"{name}: state {n!r} of parameter {idx} has shape "
                                 f"{conv[n].shape}, the parameter {shape}")
            if n in _SQUARE_STATES and bool((conv[n] < 0).any()):
                # a running average of squared gradients; a negative one makes the next step's
                # sqrt NaN every weight it touches
                raise ValueError(f"{name}: state {n!r} of parameter {idx} holds negative values "
                                 f"(min {float(conv[n].min()):.3g}); it averages squared "
                                 "gradients, so the checkpoint is corrupted")
        return conv

    def add_param_group(self, group: dict) -> None:
        """Add a group of parameters with its own options (state is rebuilt, carried over)."""
        name = f"{type(self).__name__}.add_param_group"
        if not isinstance(group, dict):
            raise TypeError(f"{name}: expected a dict with a 'params' entry, got "
                            f"{type(group).__name__}")
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise TypeError(f"{name}: unknown option(s) {', '.join(sorted(map(str, unknown)))}; "
                            f"this optimizer takes {', '.join(self.defaults)}")
        g = dict(self.defaults)
        g.update({k: v for k, v in group.items() if k != "params"})
        g["params"] = _as_groups([group])[0]["params"]
        self._check_group(g)
        have = {id(p) for grp in self.param_groups for p in grp["params"]}
        if any(id(p) in have for p in g["params"]) or len({id(p) for p in g["params"]}) \
                != len(g["params"]):
            raise ValueError(f"{name}: some parameters are already in a param group of this "
                             "optimizer (or listed twice); each parameter belongs to one group")
        carry = self._export()
        groups, steps = list(self.param_groups), list(self._steps)
        self.param_groups.append(_ParamGroup(self, g))
        self._steps.append(0)
        try:
            self._build(carry)
        except BaseException:   # all or nothing: the optimizer as it was
            self.param_groups[:], self._steps = groups, steps
            self._build(carry)
            raise

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            opts = ", ".join(f"{k}={v}" for k, v in g.items() if k != "params")
            lines.append(f"  group {i}: {len(g['params'])} tensors, {opts}")
        return "\n".join(lines + [")"])


#: optimizer states that average squared gradients (never negative)
_SQUARE_STATES = ("exp_avg_sq", "square_avg")


def _real(opt, group: dict, key: str, lo: float | None = None, hi: float | None = None,
          hi_open: bool = False) -> float:
    """group[key] must be a finite real number in [lo, hi] (hi excluded with hi_open)."""
    v = group[key]
    rng = " >= %g" % lo if lo is not None and hi is None else (
        f" in [{lo:g}, {hi:g}{')' if hi_open else ']'}" if lo is not None else "")
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ValueError(f"{type(opt).__name__}: {key} must be a finite number{rng}, got "
                         f"{v!r} ({type(v).__name__})")
    f = float(v)
    if not math.isfinite(f) or (lo is not None and f < lo) or \
            (hi is not None and (f >= hi if hi_open else f > hi)):
        raise ValueError(f"{type(opt).__name__}: {key} must be a finite number{rng}, got {v!r}")
    return f


class _ParamList(list):
    """A param group's "params": read like a list, refused edits (the optimizer's flat state is
    laid out for these parameters at construction; an appended one was silently never
    stepped)."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("an optimizer's param_groups[i]['params'] cannot be edited after "
                        "construction (its state is laid out for those parameters); use "
                        "optimizer.add_param_group({'params': [...]}) or build a new optimizer")

    append = extend = insert = remove = pop = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse

    def __reduce__(self):
        return (list, (list(self),))       # copies and pickles are plain lists


class _ParamGroup(dict):
    """One entry of ``optimizer.param_groups``: a dict whose option assignments
    (``group["lr"] = 0.01``, as schedulers and users do) go through the optimizer's checks, so a
    bad value (a string, NaN, a negative lr) raises there, naming the option, instead of inside
    the native step (a bare pybind error, with the groups before it already stepped). Costs
    nothing per step."""
    __slots__ = ("_opt",)

    def __init__(self, opt, group: dict):
        dict.__init__(self, group)
        dict.__setitem__(self, "params", _ParamList(group["params"]))
        self._opt = opt

    def __setitem__(self, key, value) -> None:
        self._set({key: value})

    def update(self, *args, **kwargs) -> None:
        self._set(dict(*args, **kwargs))

    def setdefault(self, key, default=None):
        if key not in self:
            self._set({key: default})
        return self[key]

    def _set(self, new: dict) -> None:
        opt = self._opt
        if "params" in new and new["params"] is not self.get("params"):
            self["params"]._refuse()
        trial = dict(self)
        trial.update(new)
        opt._check_group(trial)
        for k, v in new.items():
            dict.__setitem__(self, k, v)

    def __delitem__(self, key) -> None:
        if key == "params" or key in self._opt.defaults:
            raise TypeError(f"{type(self._opt).__name__}: the option {key!r} of a param group "
                            "cannot be deleted; assign a new value instead")
        dict.__delitem__(self, key)

    def pop(self, key, *default):
        if key == "params" or key in self._opt.defaults:
            self.__delitem__(key)
        return dict.pop(self, key, *default)

    def popitem(self):
        raise TypeError("the options of a param group cannot be removed")

    def clear(self) -> None:
        self.popitem()

    def __reduce__(self):
        return (dict, (dict(self),))       # copies and pickles are plain dicts


def _as_groups(params) -> list[dict]:
    from .nn.module import Module
    if isinstance(params, Module):
        params = params.parameters()
    if isinstance(params, Tensor):
        raise TypeError("optimizer params must be an iterable of Tensors, a Module or a list of "
                        "param-group dicts, not a single Tensor")
    if isinstance(params, dict):
        raise TypeError("optimizer params must be an iterable of Tensors, a Module or a list of "
                        "param-group dicts, not a single dict; wrap it in a list: "
                        "[{'params': ..., 'lr': ...}]")
    params = list(params)
    if not params:
        raise ValueError("optimizer got an empty parameter list")
    if all(isinstance(g, dict) for g in params):
        groups = []
        for g in params:
            if "params" not in g:
                raise ValueError("a param group dict needs a 'params' entry")
            ps = g["params"]
            ps = list(ps.parameters()) if isinstance(ps, Module) else (
                [ps] if isinstance(ps, Tensor) else list(ps))
            groups.append({**g, "params": _check_params(ps)})
        return groups
    return [{"params": _check_params(params)}]


def _check_params(ps: list) -> list:
    """The trainable tensors of `ps` (frozen ones, requires_grad=False, are left out, as they
    would never get a gradient in PyTorch either)."""
    if not ps:
        raise ValueError("optimizer got an empty parameter list")
    for p in ps:
        if not isinstance(p, Tensor):
            raise TypeError(f"optimizer params must be Tensors, got {type(p).__name__}")
        if np.dtype(p.dtype) not in (np.float32, np.float64):
            raise TypeError(f"optimizer params must be float32/float64, got {p.dtype}")
    ps = [p for p in ps if p.requires_grad]
    if not ps:
        raise ValueError("optimizer got only tensors with requires_grad=False; nothing to train")
    return ps


def _copy_values(dst, src) -> None:
    """dst[...] = src's values in dst's shape, from any device (same number of elements)."""
    be = backend_of(src)
    copy_into(dst, np.asarray(src).reshape(dst.shape) if be is None else
              be.reshape(src, tuple(dst.shape)))


def _view_tensor(arr, like):
    from .tensor import _new
    return _new(arr, like._be)


# ---------------------------------------------------------------------------------------------


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay,
    as torch.optim.SGD."""

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      nesterov=nesterov, weight_decay=weight_decay))

    def _check_group(self, group):
        super()._check_group(group)
        _real(self, group, "momentum", 0.0)
        _real(self, group, "weight_decay", 0.0)
        _real(self, group, "dampening")
        self._check_bool(group, "nesterov")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: Nesterov momentum requires momentum > 0 and dampening = 0")

    def _state_names(self, group):
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def _update(self, r, group, step):
        m = group["momentum"]
        buf = r.state.get("momentum_buffer")
        if m != 0 and buf is None:  # momentum switched on after construction
            buf = r.state["momentum_buffer"] = r.be.zeros(
                (r.stop - r.start,), r.arena.dtype)
        r.be.sgd_step(r.p, r.g, buf if m != 0 else None, group["lr"], m, group["dampening"],
                      group["nesterov"], group["weight_decay"], step == 1, *r.sargs)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with L2 weight decay added to the gradient, as torch.optim.Adam."""
    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas) if isinstance(betas, (list, np.ndarray))
                                      else betas, eps=eps, weight_decay=weight_decay))

    def _check_group(self, group):
        super()._check_group(group)
        betas = group["betas"]
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise ValueError(f"{type(self).__name__}: betas must be a pair (beta1, beta2) of "
                             f"numbers in [0, 1), e.g. (0.9, 0.999); got {betas!r}")
        for i, b in enumerate(betas):
            _real(self, {f"betas[{i}]": b}, f"betas[{i}]", 0.0, 1.0, hi_open=True)
        _real(self, group, "eps", 0.0)
        _real(self, group, "weight_decay", 0.0)

    def _state_names(self, group):
        return ("exp_avg", "exp_avg_sq")

    def _update(self, r, group, step):
        b1, b2 = group["betas"]
        r.be.adam_step(r.p, r.g, r.state["exp_avg"], r.state["exp_avg_sq"], step, group["lr"],
                       b1, b2, group["eps"], group["weight_decay"], self._decoupled, *r.sargs)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as torch.optim.AdamW."""
    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class RMSprop(Optimizer):
    """RMSprop (Hinton), optionally centered and with momentum, as torch.optim.RMSprop."""

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def _check_group(self, group):
        super()._check_group(group)
        for k in ("alpha", "eps", "weight_decay", "momentum"):
            _real(self, group, k, 0.0)
        self._check_bool(group, "centered")

    def _state_names(self, group):
        names = ("square_avg",)
        if group["momentum"] > 0:
            names += ("momentum_buffer",)
        if group["centered"]:
            names += ("grad_avg",)
        return names

    def _update(self, r, group, step):
        st = r.state
        for n in self._state_names(group):
            if n not in st:
                st[n] = r.be.zeros((r.stop - r.start,), r.arena.dtype)
        r.be.rmsprop_step(
            r.p, r.g, st["square_avg"], group["lr"], group["alpha"], group["eps"],
            group["weight_decay"], group["momentum"], st.get("momentum_buffer"),
            group["centered"], st.get("grad_avg"), *r.sargs)


#: the _update methods that pass a run's step-statistics arguments to the native step
_STEP_STATS_UPDATES = (SGD._update, Adam._update, RMSprop._update)


# ---------------------------------------------------------------------------------------------
# learning-rate schedules (closed forms of torch.optim.lr_scheduler)


class LRScheduler:
    """Base: sets every group's lr to ``factor(epoch) * base_lr`` (or a closed form). Call
    ``step()`` once per epoch/iteration after ``optimizer.step()``, as in PyTorch."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for g in optimizer.param_groups:
                g.setdefault("initial_lr", g["lr"])
        self.base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def lr_at(self, base_lr: float, epoch: int) -> float:
        raise NotImplementedError(f"{type(self).__name__} must define lr_at(base_lr, epoch)")

    def step(self) -> None:
        self.last_epoch += 1
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = self.lr_at(base, self.last_epoch)
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Every setting and counter of the schedule (not the optimizer), as torch."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state: dict) -> None:
        """Restore a state_dict() of the same schedule type, checked whole before it applies."""
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, dict):
            raise TypeError(f"{name}: expected a dict, got {type(state).__name__}")
        bad = [k for k in state if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{name}: keys must be str, got {bad[0]!r}")
        own = self.state_dict()
        unknown = set(state) - set(own)
        if unknown:
            raise ValueError(f"{name}: unknown key(s) {', '.join(sorted(unknown))} (a state "
                             f"of another schedule? this one keeps {', '.join(sorted(own))})")
        lrs = state.get("base_lrs", self.base_lrs)
        if not isinstance(lrs, (list, tuple)) or len(lrs) != len(self.optimizer.param_groups):
            raise ValueError(f"{name}: base_lrs must list one lr per param group "
                             f"({len(self.optimizer.param_groups)}), got {lrs!r}")
        epoch = state.get("last_epoch", self.last_epoch)
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < -1:
            raise ValueError(f"{name}: last_epoch must be an int >= -1, got {epoch!r}")
        self.__dict__.update(state)


class StepLR(LRScheduler):
    """lr = base · gamma^(epoch // step_size)."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base, epoch):
        return base * self.gamma ** (epoch // self.step_size)


class ExponentialLR(LRScheduler):
    """lr = base · gamma^epoch."""

    def __init__(self, optimizer, gamma: float, last_epoch: int = -1):
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base, epoch):
        return base * self.gamma ** epoch


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base - eta_min)·(1 + cos(pi·epoch / T_max)) / 2 (SGDR without restarts;
    continues periodically past T_max like PyTorch's)."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        if T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = int(T_max), float(eta_min)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base, epoch):
        return self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2


class LinearWarmup(LRScheduler):
    """lr = base · (start_factor + (1 - start_factor) · min(epoch, warmup_steps) / warmup_steps):
    a linear ramp from start_factor·base to base, then constant (torch LinearLR with
    end_factor=1, total_iters=warmup_steps)."""

    def __init__(self, optimizer, warmup_steps: int, start_factor: float = 0.1,
                 last_epoch: int = -1):
        if warmup_steps < 1:
            raise ValueError(f"LinearWarmup: warmup_steps must be >= 1, got {warmup_steps}")
        if not 0.0 < start_factor <= 1.0:
            raise ValueError(f"LinearWarmup: start_factor must be in (0, 1], got {start_factor}")
        self.warmup_steps, self.start_factor = int(warmup_steps), float(start_factor)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base, epoch):
        t = min(epoch, self.warmup_steps) / self.warmup_steps
        return base * (self.start_factor + (1.0 - self.start_factor) * t)
