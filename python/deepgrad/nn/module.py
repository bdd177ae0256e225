"""nn.Module: the base class of every layer and model (PyTorch-like), with an arena layout.

Assigning a Parameter or a Module to an attribute registers it (in assignment order); buffers
(running statistics) are registered with ``register_buffer``. See nn/arena.py for how and when
a model's parameters are laid out in one flat buffer.
"""
from __future__ import annotations

import copy as _copy
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Iterator, NamedTuple

import numpy as np

from ..autograd import _S
from ..backend import copy_into
from .arena import _EPOCH, Arena, runs
from ..tensor import Tensor
from .parameter import Parameter

__all__ = ["Module", "IncompatibleKeys", "RemovableHandle"]

# arena._EPOCH is bumped on every arena creation and on every (un)registration of a parameter
# or submodule anywhere, so a module's cached layout check is one int comparison.
_STRUCT = _EPOCH
# One layout at a time: two threads calling a model for the first time (a trainer and an
# evaluator) each built an arena, moving parameters mid-step under the other's optimizer.
_LAYOUT_LOCK = threading.RLock()


class RemovableHandle:
    """Returned by the ``register_*_hook`` methods: ``handle.remove()`` (or leaving a ``with``
    block) unregisters the hook; removing twice is harmless."""

    _next = [0]

    def __init__(self, hooks: "OrderedDict"):
        self._hooks = hooks
        with _LAYOUT_LOCK:
            self.id = RemovableHandle._next[0]
            RemovableHandle._next[0] += 1

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self) -> "RemovableHandle":
        return self

    def __exit__(self, *exc) -> bool:
        self.remove()
        return False


class IncompatibleKeys(NamedTuple):
    missing_keys: list
    unexpected_keys: list


class Module:
    """Base class: subclasses set parameters/submodules as attributes in __init__ and define
    forward(). Calling the module runs forward (and lays out the arena on the first call)."""

    training: bool
    # Forward hooks (register_forward_pre_hook / register_forward_hook): None until the first
    # one is registered, so the call path of a module without hooks checks one attribute.
    _forward_pre_hooks = None
    _forward_hooks = None

    def __init__(self) -> None:
        d = self.__dict__
        d["_parameters"] = OrderedDict()
        d["_modules"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["training"] = True
        d["_arena_cache"] = None
        d["_stamp"] = None
        d["_runs"] = None
        d["_callname"] = type(self).__name__   # pushed on autograd's module stack when called

    # -- registration --------------------------------------------------------------------------

    def __setattr__(self, name: str, value) -> None:
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before "
                                 "assigning attributes")
        params, mods, bufs = d["_parameters"], d["_modules"], d["_buffers"]
        if isinstance(value, Parameter):
            mods.pop(name, None)
            bufs.pop(name, None)
            params[name] = value
            _STRUCT[0] += 1
        elif isinstance(value, Module):
            if value is self or any(m is self for m in value.modules()):
                raise ValueError(f"{type(self).__name__}.{name}: cannot register "
                                 f"{'the module itself' if value is self else 'a module that contains this one'}"
                                 " as its own submodule (a cycle: calling, printing or copying "
                                 "the model would recurse forever); use a new module or "
                                 "copy.deepcopy(module)")
            params.pop(name, None)
            bufs.pop(name, None)
            mods[name] = value
            _STRUCT[0] += 1
        elif name in bufs:
            bufs[name] = value
        elif name in params or name in mods:
            if value is not None:
                kind = "a Parameter" if name in params else "a Module"
                raise TypeError(f"{type(self).__name__}.{name} is {kind}; assign {kind} or None "
                                f"(got {type(value).__name__})")
            params.pop(name, None)
            mods.pop(name, None)
            _STRUCT[0] += 1
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        d = self.__dict__
        if d["_parameters"].pop(name, None) is not None or d["_modules"].pop(name, None) is not None:
            _STRUCT[0] += 1
        d["_buffers"].pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, value) -> None:
        """A non-trainable tensor saved in state_dict (running statistics, fixed matrices)."""
        self.__dict__["_buffers"][name] = value
        object.__setattr__(self, name, value)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Same as ``setattr(self, name, param)``."""
        setattr(self, name, param)

    def add_module(self, name: str, module: "Module | None") -> None:
        """Same as ``setattr(self, name, module)``."""
        setattr(self, name, module)

    # -- traversal -----------------------------------------------------------------------------

    def children(self) -> Iterator["Module"]:
        """Direct submodules."""
        for m in self._modules.values():
            if m is not None:
                yield m

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        for n, m in self._modules.items():
            if m is not None:
                yield n, m

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """(qualified name, module) for this module ("" or `prefix`) and all descendants, each
        module once."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield name, m
            kids = [(f"{name}.{n}" if name else n, c) for n, c in m._modules.items() if c is not None]
            stack.extend(reversed(kids))

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def _named_parameters_raw(self) -> list[tuple[str, Parameter]]:
        out, seen = [], set()
        for mname, m in self.named_modules():
            for pname, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                out.append((f"{mname}.{pname}" if mname else pname, p))
        return out

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """(qualified name, Parameter), each shared parameter once; lays out the arena."""
        self._layout()
        return iter(self._named_parameters_raw())

    def parameters(self) -> Iterator[Parameter]:
        """All parameters (each shared one once); lays out the arena."""
        self._layout()
        return iter([p for _, p in self._named_parameters_raw()])

    def named_buffers(self) -> Iterator[tuple[str, object]]:
        for mname, m in self.named_modules():
            for bname, b in m._buffers.items():
                if b is not None:
                    yield (f"{mname}.{bname}" if mname else bname), b

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of scalar parameters (shared ones counted once)."""
        return sum(int(np.prod(p.data.shape, dtype=np.int64)) for _, p in self._named_parameters_raw()
                   if p.requires_grad or not trainable_only)

    # -- the arena -----------------------------------------------------------------------------

    def _layout(self) -> Arena | None:
        """The arena holding this module's parameters, laid out now if needed (see arena.py)."""
        if self._stamp == _EPOCH[0]:
            return self._arena_cache
        with _LAYOUT_LOCK:
            return self._layout_locked()

    def _layout_locked(self) -> Arena | None:
        if self._stamp == _EPOCH[0]:  # laid out by another thread while this one waited
            return self._arena_cache
        named = self._named_parameters_raw()
        a = None
        if named:
            a = named[0][1]._arena
            if a is None or a.retired or any(p._arena is not a for _, p in named):
                a = Arena(named)
        d = self.__dict__
        d["_arena_cache"] = a
        d["_runs"] = runs(a, [p._slot for _, p in named]) if a is not None else []
        d["_stamp"] = _EPOCH[0]
        return a

    @property
    def arena(self) -> Arena | None:
        """The arena of this module's parameters (None when it has none). A submodule of a laid
        out model shares its parent's arena."""
        return self._layout()

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Every gradient to zero: one native fill over the gradient arena (one per contiguous
        run when this module is part of a larger model). `set_to_none` is accepted for PyTorch
        compatibility; arena gradients are always zero-filled instead."""
        a = self._layout()
        if a is None:
            return
        be = a.be
        if len(self._runs) == 1 and self._runs[0] == (0, a.numel):
            be.fill_(a.grads, 0.0)
        else:
            for s, e in self._runs:
                be.fill_(a.slice(a.grads, s, e), 0.0)

    # -- hooks ------------------------------------------------------------------------------------

    def register_forward_pre_hook(self, hook) -> RemovableHandle:
        """``hook(module, args)`` runs before each ``forward``; it may return replacement args (a
        tuple, or a single value that becomes a 1-tuple) or None. Hooks run in registration
        order; the handle's ``remove()`` unregisters it (PyTorch semantics)."""
        return self._add_hook("_forward_pre_hooks", hook, "register_forward_pre_hook")

    def register_forward_hook(self, hook) -> RemovableHandle:
        """``hook(module, args, output)`` runs after each ``forward``; it may return a replacement
        output or None. Hooks run in registration order; ``remove()`` unregisters it."""
        return self._add_hook("_forward_hooks", hook, "register_forward_hook")

    def _add_hook(self, slot: str, hook, what: str) -> RemovableHandle:
        if not callable(hook):
            raise TypeError(f"{what}: hook must be callable, got {hook!r}")
        hooks = self.__dict__.get(slot)
        if hooks is None:
            hooks = self.__dict__[slot] = OrderedDict()
        h = RemovableHandle(hooks)
        hooks[h.id] = hook
        return h

    def register_full_backward_hook(self, hook) -> RemovableHandle:
        """``hook(module, grad_output)`` runs during backward with dL/d(output) of this module's
        forward (for a tuple output, of its first element, e.g. a recurrent layer's outputs).
        Implemented as a forward hook that puts a tensor hook on the output, so it costs nothing
        on forwards whose output does not require grad."""
        if not callable(hook):
            raise TypeError(f"register_full_backward_hook: hook must be callable, got {hook!r}")
        module = self

        def attach(m, args, out):
            y = out[0] if isinstance(out, tuple) else out
            if getattr(y, "requires_grad", False):
                y.register_hook(lambda g: hook(module, g))
        return self.register_forward_hook(attach)

    def _call_hooked(self, args, kwargs):
        pre = self._forward_pre_hooks
        if pre:
            for hook in list(pre.values()):
                r = hook(self, args)
                if r is not None:
                    args = r if isinstance(r, tuple) else (r,)
        out = self._forward_with_stack(args, kwargs)
        post = self._forward_hooks
        if post:
            for hook in list(post.values()):
                r = hook(self, args, out)
                if r is not None:
                    out = r
        return out

    def __deepcopy__(self, memo):
        # The copy gets fresh parameters outside any arena and lays out its own on first use.
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            if k in ("_arena_cache", "_stamp", "_runs"):
                new.__dict__[k] = None
            elif k in ("_forward_pre_hooks", "_forward_hooks"):
                continue  # hooks (a monitor's, say) belong to the original module
            else:
                new.__dict__[k] = _copy.deepcopy(v, memo)
        _STRUCT[0] += 1
        return new

    # -- modes and conversion ------------------------------------------------------------------

    def train(self, mode: bool = True) -> "Module":
        """Training mode (batch statistics, dropout on) for this module and its descendants."""
        if not isinstance(mode, (bool, np.bool_)):
            # train("False") or train(0.5) used to switch training ON (any truthy value)
            raise TypeError(f"{type(self).__name__}.train: mode must be True or False, got "
                            f"{mode!r}; call .eval() for evaluation mode")
        for m in self.modules():
            m.__dict__["training"] = bool(mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode: running statistics, no dropout."""
        return self.train(False)

    def requires_grad_(self, flag: bool = True) -> "Module":
        for _, p in self._named_parameters_raw():
            p.requires_grad = bool(flag)
        return self

    def to(self, device=None, dtype=None) -> "Module":
        """Move/convert every parameter (re-laid out into ONE new arena of that device/dtype,
        values and gradients copied) and every buffer. ``to("cuda")``, ``to("float64")``,
        ``to(deepgrad.float64)``, ``to("cuda", "float32")``. Optimizers built before notice
        the new layout on their next step and carry their state over."""
        from ..backend import normalize_device
        from ..tensor import as_dtype
        if device is not None:
            try:
                normalize_device(device)
            except ValueError:
                try:
                    as_dtype(device)
                except TypeError:
                    raise ValueError(f"Module.to: {device!r} is neither a device ('cpu', "
                                     "'cuda') nor a dtype ('float32', 'float64')") from None
                if dtype is not None:
                    raise
                device, dtype = None, device     # to(dtype) written positionally
        dt = as_dtype(dtype)
        if dt is not None and dt.kind != "f":
            raise TypeError(f"Module.to: parameters must be float32 or float64, got {dt}")
        named = self._named_parameters_raw()
        if named:
            Arena(named, dtype=dt, device=device)
        for m in self.modules():
            for bname, b in list(m._buffers.items()):
                if isinstance(b, Tensor):
                    nb = b.to(device=device, dtype=dt if b.dtype.kind == "f" else None)
                    m._buffers[bname] = nb
                    object.__setattr__(m, bname, nb)
        self._layout()
        return self

    def double(self) -> "Module":
        """Parameters and buffers to float64 (gradient checks)."""
        return self.to(dtype=np.float64)

    def float(self) -> "Module":
        """Parameters and buffers to float32."""
        return self.to(dtype=np.float32)

    def cpu(self) -> "Module":
        return self.to("cpu")

    def cuda(self) -> "Module":
        return self.to("cuda")

    # -- state dicts ---------------------------------------------------------------------------

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Qualified name -> a numpy copy of every parameter and buffer."""
        out = OrderedDict()
        for n, p in self._named_parameters_raw():
            out[n] = np.array(p.numpy(), copy=True)
        for n, b in self.named_buffers():
            out[n] = np.array(b.numpy() if hasattr(b, "numpy") else b, copy=True)
        return out

    def load_state_dict(self, state: dict, strict: bool = True) -> IncompatibleKeys:
        """Copy values in place (parameters stay in their arena). With ``strict`` any missing or
        unexpected key is an error; a shape mismatch or a value that cannot be converted to the
        parameter's dtype always is. The error names every key. All or nothing: every value is
        checked and converted before the first one is copied, so a failure leaves the model
        exactly as it was."""
        if isinstance(state, Mapping) and not isinstance(state, dict):
            state = dict(state.items())      # a read-only mapping (MappingProxyType), as torch
        if not isinstance(state, dict):
            raise TypeError(f"load_state_dict: expected a dict, got {type(state).__name__}")
        bad_keys = [k for k in state if not isinstance(k, str)]
        if bad_keys:
            raise TypeError("load_state_dict: keys must be str (qualified names such as "
                            f"'0.weight'), got {', '.join(repr(k) for k in bad_keys[:5])}")
        targets = dict(self._named_parameters_raw())
        buffers = dict(self.named_buffers())
        own = list(targets) + list(buffers)
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in targets and k not in buffers]
        bad_shape, bad_value = [], []
        values = {}
        for k in own:
            if k not in state:
                continue
            t = targets[k] if k in targets else buffers[k]
            try:
                v = state[k]
                v = v.numpy() if hasattr(v, "numpy") else np.asarray(v)
            except Exception as e:  # a value numpy cannot read
                bad_value.append(f"{k}: {type(e).__name__}: {e}")
                continue
            want = tuple(t.shape)
            if tuple(v.shape) != want:
                bad_shape.append(f"{k}: checkpoint {tuple(v.shape)} vs model {want}")
                continue
            dtype = np.dtype(t.dtype)
            if v.dtype.kind not in "biuf":
                bad_value.append(f"{k}: values of dtype {v.dtype} cannot be loaded into a "
                                 f"{dtype.name} tensor")
                continue
            with np.errstate(over="ignore", invalid="ignore"):
                conv = np.array(v, dtype=dtype, copy=True)
            if v.dtype.kind == "f" and conv.size and not np.array_equal(
                    np.isfinite(conv), np.isfinite(v)):
                # a float64 checkpoint with values beyond float32's range became inf silently
                big = float(np.max(np.abs(v[np.isfinite(v) & ~np.isfinite(conv)])))
                bad_value.append(f"{k}: values up to {big:.3g} overflow {dtype.name} (they "
                                 "would load as inf); load into a float64 model "
                                 "(model.double()) or fix the checkpoint")
                continue
            values[k] = conv
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if bad_shape:
            problems.append("shape mismatches: " + "; ".join(bad_shape))
        if bad_value:
            problems.append("values that cannot be loaded: " + "; ".join(bad_value))
        if problems:
            raise ValueError(f"load_state_dict for {type(self).__name__}: " + " | ".join(problems))
        for k, v in values.items():
            t = targets[k] if k in targets else buffers[k]
            _assign(t, v)
        return IncompatibleKeys(missing, unexpected)

    def load_torch_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Load the ``state_dict()`` of the equivalent torch.nn model: Linear weights are
        transposed, recurrent gates and biases mapped, BatchNorm running statistics kept (see
        deepgrad.nn.torch_interop). All or nothing; errors name the key."""
        from .torch_interop import load_torch_state_dict
        return load_torch_state_dict(self, state_dict, strict)

    def torch_state_dict(self) -> "OrderedDict":
        """This model's weights as the ``state_dict()`` of the equivalent torch.nn model (torch
        tensors; needs torch)."""
        from .torch_interop import torch_state_dict
        return torch_state_dict(self)

    # -- calling and printing ------------------------------------------------------------------

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        # The hot path of every layer. The layout check is one int comparison (a stale stamp
        # runs _layout, which keeps the arena when all parameters already live in one, e.g. a
        # submodule in its parent's). Hooks are two attribute reads (None or an empty dict when
        # there are none). The module-name stack only serves anomaly mode, so it is
        # pushed/popped (inline, what autograd._push_module/_pop_module do) only then.
        if self._stamp != _EPOCH[0]:
            self._layout()
        if self._forward_pre_hooks or self._forward_hooks:
            return self._call_hooked(args, kwargs)
        if not _S.anomaly:
            return self.forward(*args, **kwargs)
        return self._forward_with_stack(args, kwargs)

    def _forward_with_stack(self, args, kwargs):
        if not _S.anomaly:
            return self.forward(*args, **kwargs)
        stack = _S.modules
        if not stack:  # a top-level call: name every submodule by its qualified name
            for n, m in self.named_modules():
                m.__dict__["_callname"] = n or type(m).__name__
        stack.append(self._callname)
        try:
            return self.forward(*args, **kwargs)
        finally:
            stack.pop()

    def extra_repr(self) -> str:
        """The text inside the parentheses of this module's repr line."""
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, m in self._modules.items():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n" + "\n".join(lines) + "\n)"


def _assign(t, value: np.ndarray) -> None:
    """t's values = value (in place: arena views stay views)."""
    copy_into(t.data if isinstance(t, Tensor) else t, value)
