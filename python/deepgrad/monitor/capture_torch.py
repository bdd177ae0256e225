"""The monitor's capture for torch.nn.Module models (deepgrad.monitor.TorchGradientMonitor).

``GradientMonitor(torch_model, ...)`` returns a ``TorchGradientMonitor``: the same arguments,
history keys, ``step(loss)``, ``diagnose()``, ``to_json``/``to_csv``, ``plot()``, thresholds,
``warn``, ``max_records`` and ``tensorboard=`` as for a deepgrad model. torch is imported only
here, when a torch model is monitored.

What it attaches (all removed by ``close()``; none changes a number of the training):
- layers: the leaf modules that hold parameters of their own (Linear, Conv*, norms, Embedding,
  RNN/LSTM/GRU, ...), in registration order (``model.modules()``), or the ``layers=`` given;
- a forward hook per layer that, on recorded steps, puts a tensor hook on the layer's output:
  dL/d(layer output) is kept (a reference, no copy) and all layers' norms are taken at
  ``step()`` in one call. When an activation module follows the layer, the layer's output is
  the activation's (as for deepgrad models, where Dense("tanh") is one layer), so
  the signal is taken there. (A tensor hook on the output gives exactly what a full backward hook
  reports as grad_output, without its wrapping of the module's inputs and outputs, its warning
  for a first layer whose input needs no gradient, or its clash with in-place activations.
  On the output of an activation module paired with its layer the hook is a pre-hook of the
  output's autograd node instead, ``grad_fn.register_prehook``: the same gradient, for ~0.8 us
  less per layer and step than a tensor hook; it sees the gradient after any tensor hooks the
  user put on that output, i.e. the one the node receives.);
- a forward hook per activation module (ReLU, LeakyReLU, Tanh, Sigmoid, Softsign, GELU, ELU,
  SiLU) that follows a layer in the forward: its input is the layer's pre-activation, so the
  pre-activation mean/std and the saturated or dead fractions come from one native pass
  (deepgrad's act_stats) over tensors already computed; a layer with no activation module after
  it gets no statistics.
The forward hooks are on only for the steps that are recorded: with ``every`` > 1 they are
attached when the step before a recorded one ends and removed when the recorded step ends, since
a module with any forward hook takes torch's slower call path even when the hook returns at once.
Hooks the user registers meanwhile therefore run before the monitor's on recorded steps.
Norms: on the CPU the gradients, the kept signals and the activations are read in place through
borrowed DLPack capsules (torch.utils.dlpack.to_dlpack, a third of the cost of t.numpy(); the
numpy views remain the route for what the native calls refuse, e.g. a strided tensor), the
parameters through numpy views cached across steps, and their norms and statistics come from
deepgrad's native multi-tensor kernels in one call per quantity; on
CUDA, when deepgrad was built with CUDA, from deepgrad's CUDA health kernel over zero-copy DLPack
views of the gradients, weights and updates in one call and one copy of the results to the host
per recorded step (else ``torch._foreach_norm`` on the device, one copy per quantity); never a
synchronisation per layer.

Recurrent layers: torch's fused RNN/LSTM/GRU kernels do not expose the gradient with respect to
each step's hidden state (it lives inside the fused backward), so ``time_signal`` stays empty for
torch models; the layer's backward signal and its parameters' gradient norms are recorded as for
any layer. (deepgrad's own recurrent layers record ||dL/dh_t|| for every step.)
"""
from __future__ import annotations

import functools
import math
import time

import numpy as np

from .capture_deepgrad import (_CAPTURES, GradientMonitor, _act_stats_many, _health_rows,
                               _l2_norms, _monitor_norms, _stat_args)
from .core import Thresholds, loss_value, new_history
from .sinks import _close_writer

#: torch activation module class name -> deepgrad activation name (for the statistics)
_ACTIVATIONS = {"ReLU": "relu", "ReLU6": "relu", "LeakyReLU": "leaky_relu", "Tanh": "tanh",
                "Sigmoid": "sigmoid", "Softsign": "softsign", "GELU": "gelu", "ELU": "elu",
                "SiLU": "silu", "Hardtanh": "tanh"}


def is_torch_module(obj) -> bool:
    """True for a torch.nn.Module, without importing torch."""
    for cls in type(obj).__mro__:
        if cls.__name__ == "Module" and cls.__module__ == "torch.nn.modules.module":
            return True
    return False


def _own_params(m) -> list:
    return [p for p in m.parameters(recurse=False)]


class TorchGradientMonitor(GradientMonitor):
    """GradientMonitor over a torch.nn.Module; see the module docstring."""

    def __init__(self, model, every: int = 1, layers=None, thresholds: Thresholds | None = None,
                 warn: bool = False, activation_stats: bool = True,
                 max_records: int | None = None, tensorboard=None, writer=None):
        import torch  # noqa: F401  (the caller passed a torch model: torch is installed)
        names = self._setup_common(
            model, every, layers, thresholds, warn, max_records,
            lambda mod: [m for m in mod.modules() if _own_params(m) and not list(m.children())])
        self._index = {id(m): i for i, m in enumerate(self.layers)}
        # parameters: every trainable one, named as in state_dict(); each owned by the layer
        # whose qualified name prefixes it (longest first), or by none
        self._named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self._params = [n for n, _ in self._named]
        self._param_list = [p for _, p in self._named]
        prefixes = sorted(((names[id(m)], i) for i, m in enumerate(self.layers)),
                          key=lambda t: -len(t[0]))
        owner = []
        for n, _ in self._named:
            owner.append(next((i for pre, i in prefixes if pre == "" or n.startswith(pre + ".")),
                              -1))
        self._seg_layer = np.array(owner, dtype=np.int64)
        self._member = np.zeros((len(self._named), len(self.layers)))
        for k, i in enumerate(owner):
            if i >= 0:
                self._member[k, i] = 1.0
        self._handles = []
        self._signal = [None] * len(self.layers)
        # dL/d(output of the activation module right after layer i), preferred when present:
        # a layer's output is that of the activation following it, as for deepgrad models
        # (Dense("tanh") is one layer there), so the two frameworks' histories compare
        self._signal_act = [None] * len(self.layers)
        self._stats: list = [None] * len(self.layers)
        self._last_layer = None  # the layer that ran last in the current forward
        self._activation_stats = bool(activation_stats)
        self._keeps = [functools.partial(_keep, self._signal, i) for i in range(len(self.layers))]
        self._keeps_act = [functools.partial(_keep, self._signal_act, i)
                           for i in range(len(self.layers))]
        # the same as node pre-hooks on the activation's autograd node (one output): they get
        # (dL/d output,) before the node runs; registering one costs half a tensor hook
        self._keeps_node = [functools.partial(_keep_first, self._signal_act, i)
                           for i in range(len(self.layers))]
        # A layer followed in its Sequential by an activation module is paired with it once,
        # here: only the activation gets a hook (its input is the layer's output, its output is
        # the layer's signal). Other layers get a hook of their own, and activations that are
        # not paired find their layer as the one that ran last.
        pairs = _sequential_pairs(model, self.layers)
        paired = set()
        self._hook_specs = []   # (module, forward hook): attached only for recorded steps
        for i, m in enumerate(self.layers):
            if i in pairs:
                a = pairs[i]
                paired.add(id(a))
                self._hook_specs.append(
                    (a, functools.partial(self._on_pair, i, _ACTIVATIONS[type(a).__name__])))
            else:
                self._hook_specs.append((m, self._make_layer_hook(i)))
        self._acts = {}
        # an activation inside a monitored layer (layers= naming a block such as Linear +
        # BatchNorm + activation) gives that layer its statistics; its signal is the block's
        # output, taken by the block's own hook (the activation is not the layer that ran last:
        # the block's hook runs after everything inside it)
        self._act_owner = {}
        if activation_stats:
            prefixes = [(names[id(m)] + ".", i) for i, m in enumerate(self.layers)
                        if names[id(m)] and list(m.children())]
            for qn, m in model.named_modules():
                act = _ACTIVATIONS.get(type(m).__name__)
                if act is not None and not list(m.children()) and id(m) not in paired:
                    self._acts[id(m)] = act
                    self._hook_specs.append((m, self._on_activation))
                    inside = [(len(pre), i) for pre, i in prefixes if qn.startswith(pre)]
                    if inside:
                        self._act_owner[id(m)] = max(inside)[1]   # the innermost layer
        # An activation that works in place (ReLU(inplace=True), ...) overwrites its input, the
        # layer's pre-activation, with its output before the forward hook sees it: a pre-hook
        # keeps a copy of the input for the statistics (recorded steps only)
        self._pre: dict = {}
        self._pre_hooks = set()
        if activation_stats:
            for m, _ in list(self._hook_specs):
                if getattr(m, "inplace", False) is True and _ACTIVATIONS.get(type(m).__name__):
                    fn = self._keep_input
                    self._hook_specs.append((m, fn))
                    self._pre_hooks.add(len(self._hook_specs) - 1)
        self._grad_enabled = torch.is_grad_enabled
        self._closed = False
        self._paused = False
        self._attached = False
        self._slots = None
        self._attach()   # step 0 is recorded
        self._pviews = None  # (data pointers, numpy views) of the parameters (CPU fast path)
        self._zeros: dict = {}  # parameter index -> zeros standing for its missing gradient
        self._n = 0
        self._prev = None
        self._flat = None
        self._has_prev = False
        self._h = new_history()
        self._raw: list = []
        self.seconds = 0.0
        self._tb = None
        self._tb_seen: set = set()
        if tensorboard is not None or writer is not None:
            from .sinks import _tensorboard_writer
            self._tb = _tensorboard_writer(tensorboard, writer)
            self._tb_owned = writer is None

    # -- hooks ----------------------------------------------------------------------------------
    def _recording(self) -> bool:
        return self._n % self.every == 0

    def _attach(self) -> None:
        """Put the forward hooks on (before a recorded step). Between recorded steps they are
        off: a module with a forward hook takes torch's slow call path even when the hook
        returns at once, so with every > 1 the steps that are not recorded run hook-free.
        The hooks are registered once; later the monitor puts each back into its module's hook
        dict under the key its handle owns (a dict store, not a new handle: registering 20
        hooks costs ~50 us), and close() removes them through their handles."""
        if self._attached or self._closed:
            return
        if not self._handles:
            self._handles = [m.register_forward_pre_hook(fn) if k in self._pre_hooks
                             else m.register_forward_hook(fn)
                             for k, (m, fn) in enumerate(self._hook_specs)]
            self._slots = [(getattr(h, "hooks_dict_ref", None), getattr(h, "id", None), fn)
                           for h, (_, fn) in zip(self._handles, self._hook_specs)]
            if not all(callable(ref) and key is not None for ref, key, _ in self._slots):
                self._slots = None   # a torch without these handle fields: re-register
        elif self._slots is not None:
            for ref, key, fn in self._slots:
                d = ref()
                if d is not None:
                    d[key] = fn
        self._attached = True

    def _detach(self) -> None:
        if not self._attached:
            return
        if self._slots is None:
            for h in self._handles:
                h.remove()
            self._handles = []
        else:
            for ref, key, _ in self._slots:
                d = ref()
                if d is not None:
                    d.pop(key, None)
        self._attached = False

    def _quiet(self, on: bool) -> None:
        """pause() (on): the hooks off; resume(): back on, with the parameters kept for the
        update norm, when the next step is recorded (what step() does the step before)."""
        if self._closed:
            return
        if on:
            self._detach()
        elif self._n % self.every == 0:
            self._keep_for_update()
            self._attach()

    def _keep_for_update(self) -> None:
        """Keep the parameters for the next recorded step's update norm."""
        params = self._param_list
        views = self._host_views(params)
        if views is not None:
            self._cpu_param_norms(views, diff=False, snapshot=True)
        else:
            self._prev = _snapshot(self._prev, params)

    def _make_layer_hook(self, i: int):
        keep = self._keeps[i]

        def hook(module, args, out):
            self._last_layer = i
            if self._n % self.every:
                return
            y = out[0] if isinstance(out, tuple) else out
            if isinstance(y, tuple) and hasattr(y, "batch_sizes"):
                y = y.data   # a PackedSequence: the gradient of its packed values is the signal
            if getattr(y, "requires_grad", False):
                y.register_hook(keep)
        return hook

    def _keep_input(self, module, args):
        """Forward pre-hook of an in-place activation: a copy of its input (the pre-activation
        it is about to overwrite) for the statistics of this recorded step."""
        if args and getattr(args[0], "requires_grad", False) and self._grad_enabled():
            self._pre[id(module)] = args[0].detach().clone()

    def _on_pair(self, i: int, act: str, module, args, out):
        """The activation module paired with layer i: its output's gradient is the layer's
        signal, its input and output give the layer's statistics (kept as references; their
        numbers, and the checks of their shapes, are taken at step())."""
        if self._n % self.every or not out.requires_grad:
            return  # not recorded, or a forward without gradients (no_grad, eval)
        fn = out.grad_fn
        if fn is not None and out.output_nr == 0:
            fn.register_prehook(self._keeps_node[i])
        else:   # a leaf that requires grad, or not its node's first output
            out.register_hook(self._keeps_act[i])
        if self._activation_stats and args:
            z = self._pre.pop(id(module), None) if self._pre else None
            self._stats[i] = (args[0] if z is None else z, out, act)

    def _on_activation(self, module, args, out):
        owner = self._act_owner.get(id(module)) if self._act_owner else None
        i = self._last_layer if owner is None else owner
        if i is None or self._n % self.every or not args or not self._grad_enabled():
            return
        t0 = time.perf_counter()
        z, y = args[0], out
        if owner is None:
            if getattr(y, "requires_grad", False):
                y.register_hook(self._keeps_act[i])
            self._last_layer = None   # one activation per layer
        if getattr(z, "dim", lambda: 0)() < 1 or z.shape != y.shape or z.numel() == 0:
            return
        zc = self._pre.pop(id(module), None) if self._pre else None
        self._stats[i] = ((z if zc is None else zc).detach(), y.detach(), self._acts[id(module)])
        self.seconds += time.perf_counter() - t0

    def close(self) -> None:
        """Remove every hook this monitor put on the model (the history stays)."""
        self._closed = True
        for h in self._handles:
            h.remove()
        self._handles = []
        self._attached = False
        self._signal[:] = [None] * len(self.layers)
        self._signal_act[:] = [None] * len(self.layers)
        self._stats[:] = [None] * len(self.layers)
        self._pre.clear()
        _close_writer(self)

    # -- recording -------------------------------------------------------------------------------
    def _norms(self, tensors: list) -> np.ndarray:
        """L2 norm of each tensor (NaN where it holds NaN/Inf), float64, one call."""
        if not tensors:
            return np.zeros(0)
        caps = _capsules(tensors)   # CPU tensors: borrowed DLPack capsules, ~0.8 us each
        if caps is not None:
            try:
                return np.asarray(_l2_norms(caps), dtype=np.float64)
            except (TypeError, ValueError):
                pass   # a strided, non-float or device tensor: the numpy route below
        arrays = _cpu_arrays(tensors)
        if arrays is not None:
            return np.asarray(_l2_norms(arrays), dtype=np.float64)
        if all(t.device.type == "cpu" for t in tensors):
            arrays = []
            for t in tensors:
                a = _host(t)
                if a.dtype not in (np.float32, np.float64) or not a.flags.c_contiguous:
                    a = np.ascontiguousarray(a, dtype=np.float64)
                arrays.append(a.reshape(-1))
            return np.asarray(_l2_norms(arrays), dtype=np.float64)
        rows = _cuda_health(tensors)   # deepgrad's CUDA kernel over DLPack views, one sync
        if rows is not None:
            return _l2_of(rows)
        import torch
        norms = torch._foreach_norm([t.detach().float() for t in tensors])
        return torch.stack(norms).double().cpu().numpy()   # one host copy per recorded step

    def step(self, loss=None) -> bool:
        """Record this step if it is one of every ``every`` (call after backward, and after the
        optimizer step for update ratios); returns True when it recorded. ``loss``: None, a real
        number or a one-element tensor, read on the recorded steps only; anything else raises
        TypeError/ValueError there before the monitor changes anything (the step not counted)."""
        t0 = time.perf_counter()
        n = self._n
        self._n += 1
        if self._paused:
            return False
        params = self._param_list
        if n % self.every != 0:
            if (n + 1) % self.every == 0:   # the next step is recorded: keep w for its update
                self._keep_for_update()
                self._attach()              # and the hooks on for its forward and backward
            self.seconds += time.perf_counter() - t0
            return False
        try:   # refused before anything of this step changes (the step not counted)
            lossv = loss_value(loss)
        except (TypeError, ValueError):
            self._n = n
            raise
        views = self._host_views(params)
        L = len(self.layers)
        if views is not None:
            # CPU, read in place: one native call for the gradients' health (L2, L-inf,
            # non-finite counts, first bad index; DLPack capsules of them) and one for the weight
            # and update norms that also refreshes the snapshot (cached numpy views)
            gh = self._grad_health(params)
            pn, un = self._cpu_param_norms(views, diff=self._has_prev,
                                           snapshot=self.every == 1)
            self._has_prev = self.every == 1
        else:
            import torch
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            has_prev = self._prev is not None and len(self._prev) == len(params)
            if has_prev:   # one foreach call, not a subtraction per parameter
                with torch.no_grad():
                    diffs = list(torch._foreach_sub(params, self._prev))
            else:
                diffs = []
            # deepgrad's CUDA health kernel over zero-copy DLPack views of all of them: one
            # native call, one synchronisation (torch._foreach_norm without deepgrad's CUDA)
            rows = _cuda_health(grads + list(params) + diffs)
            K = len(params)
            if rows is not None:
                gh, pn = rows[:K], _l2_of(rows[K:2 * K])
                un = _l2_of(rows[2 * K:]) if has_prev else None
            else:
                gh = (self._norms(grads), None)
                pn = self._norms(params)
                un = self._norms(diffs) if has_prev else None
            self._prev = _snapshot(self._prev if has_prev else None, params) \
                if self.every == 1 else None
        sig_idx, sig_t = [], []
        for i, (a, g) in enumerate(zip(self._signal_act, self._signal)):
            if a is not None:
                sig_idx.append(i)
                sig_t.append(a)
            elif g is not None:
                sig_idx.append(i)
                sig_t.append(g)
        sig = self._norms(sig_t)
        lim = self.thresholds.saturation_derivative
        fast = _stats_capsules(self._stats, lim) if views is not None else None
        if fast is not None:   # CPU: DLPack capsules of all layers' z and y, one native call
            st_idx, raw, meta = fast
            items = st_idx
        else:
            st_idx, raw, meta, items = self._stats_general(views, lim)
        none = [None] * L
        self._signal[:] = none
        self._signal_act[:] = none
        self._stats[:] = none
        self._pre.clear()
        self._last_layer = None
        self._raw.append((n, lossv, gh, pn, un, sig_idx, sig,
                          (st_idx, raw, meta) if items else None))
        if self.every > 1:
            self._detach()   # off until the step before the next recorded one
        if self.max_records is not None and len(self._raw) >= max(8, self.max_records // 4):
            self._flush()
        self.seconds += time.perf_counter() - t0
        self._after_record()
        return True

    def _stats_general(self, views, lim):
        """The layers' activation statistics through the general routes: CUDA tensors by their
        device addresses in one call (deepgrad built with CUDA), others as numpy arrays (host
        copies of device tensors, float64 copies of other dtypes) in one call."""
        st_idx, items, meta = [], [], []
        dev_items = []   # CUDA tensors: their addresses, all layers in one native call
        at = _cuda_act_stats_route() if views is None else None
        for i, s in enumerate(self._stats):
            if s is None:
                continue
            z, y, act = s
            d = _device_stat_item(z, y) if at is not None else None
            if d is not None:
                a = _stat_args(act, lim)
                st_idx.append(i)
                items.append(None)   # (its result comes from the device call)
                dev_items.append(d + a)
                meta.append((d[2] * d[3], a[0], a[3], d[3]))
                continue
            try:   # the common case: 2-D CPU float32/float64 tensors of one dtype and shape
                # force=True: detach (and resolve a view) in one call, ~0.5 us less than
                # detach().numpy(); a view of the same memory for a plain CPU tensor
                z, y = z.numpy(force=True), y.numpy(force=True)
                dt = z.dtype
                ok = (z.ndim == 2 and y.dtype is dt and (dt is _F32 or dt is _F64)
                      and z.shape == y.shape and z.size > 0)
            except (TypeError, RuntimeError):
                ok = False
            if not ok:
                z, y = s[0], s[1]
                if z.dim() < 1 or z.shape != y.shape or z.numel() == 0:
                    continue
                z, y = _host(z), _host(y)
                z = np.ascontiguousarray(z.reshape(-1, z.shape[-1]))
                y = np.ascontiguousarray(y.reshape(-1, y.shape[-1]), dtype=z.dtype)
                if z.dtype not in (np.float32, np.float64):
                    z, y = z.astype(np.float64), y.astype(np.float64)
            a = _stat_args(act, lim)
            st_idx.append(i)
            items.append((z, y) + a)
            meta.append((z.size, a[0], a[3], y.shape[1]))
        host_items = [it for it in items if it is not None]
        host_raw = iter(_act_stats_many(host_items) if host_items else [])
        dev_raw = iter(_device_act_stats(at, dev_items) if dev_items else [])
        raw = [next(host_raw) if it is not None else next(dev_raw) for it in items]
        return st_idx, raw, meta, items

    def _flush(self) -> dict:
        """Turn the raw records of the steps since the last read into the history lists."""
        raw, self._raw = self._raw, []
        h = self._h
        L = len(self.layers)
        for n, lossv, gh, pn, un, sig_idx, sig, stats in raw:
            if isinstance(gh, tuple):  # the torch path: L2 norms only
                gn, gh = gh
            else:
                bad = gh[:, 4] + gh[:, 5]
                gn = np.where(bad > 0, np.nan, gh[:, 0])
                gh = np.stack([gh[:, 1], bad, gh[:, 6]], axis=1)
            h["steps"].append(n)
            h["loss"].append(lossv)
            bad = not np.all(np.isfinite(gn))
            h["global_grad_norm"].append(float("nan") if bad else math.sqrt(float(gn @ gn)))
            h["global_param_norm"].append(math.sqrt(float(pn @ pn)))
            h["param_grad_norm"].append(gn.tolist())
            h["param_norm"].append(pn.tolist())
            h["update_norm"].append(None if un is None else un.tolist())
            sq = np.array([gn, pn] if un is None else [gn, pn, un])
            agg = np.sqrt((sq * sq) @ self._member)
            lw = agg[1]
            pos = lw > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                rat = np.where(pos, agg / np.where(pos, lw, 1.0), np.nan)
            h["layer_grad_norm"].append(agg[0].tolist())
            h["layer_weight_norm"].append(lw.tolist())
            h["layer_grad_ratio"].append(rat[0].tolist())
            h["layer_update_ratio"].append([None] * L if un is None else rat[2].tolist())
            linf, nonf, first = _health_rows(gh, self._member, self._params, self._seg_layer)
            h["layer_grad_linf"].append(linf)
            h["layer_nonfinite"].append(nonf)
            h["first_nonfinite"].append(first)
            row = [None] * L
            for i, v in zip(sig_idx, sig.tolist()):
                row[i] = v
            h["signal_norm"].append(row)
            st = self._stats_row(stats, L)
            for k, p in (("act_mean", 0), ("act_std", 1), ("saturated", 2), ("dead", 3)):
                h[k].append([None if s is None else s[p] for s in st])
        if self.max_records is not None:
            self._thin()
        return h

    @property
    def num_records(self) -> int:
        return len(self._h["steps"]) + len(self._raw)

    def _host_views(self, params):
        """Flat numpy views of the parameters when every one is a CPU float32 (or every one a
        float64) tensor, cached and checked against the tensors' data pointers each step (a
        parameter given new storage gets a new view); None otherwise (the torch path)."""
        pv = self._pviews
        if pv is not None:
            ptrs = [p.data_ptr() for p in params]
            if ptrs == pv[0]:
                return pv[1]
        if not params or any(p.device.type != "cpu" for p in params):
            self._pviews = None
            return None
        dt = params[0].dtype
        if any(p.dtype != dt for p in params):
            self._pviews = None
            return None
        if str(dt) not in _TORCH_FLOATS or any(not p.is_contiguous() for p in params):
            self._pviews = None
            return None
        views = [p.detach().numpy().reshape(-1) for p in params]  # views: contiguous
        total = sum(v.size for v in views)
        if self._flat is None or self._flat.size != total or self._flat.dtype != views[0].dtype:
            self._flat = np.empty(total, views[0].dtype)  # the snapshot for update norms
            self._has_prev = False
        self._pviews = ([p.data_ptr() for p in params], views)
        self._zeros = {}
        return views

    def _grad_health(self, params):
        """Health rows (K, 7) of the parameters' gradients (CPU): one native call over borrowed
        DLPack capsules of them (a kept read-only zero array for a parameter without one), or
        over their numpy views when a gradient is not a contiguous CPU float tensor."""
        to_dl = _to_dlpack()
        if to_dl is not None:
            try:
                caps = []
                for k, p in enumerate(params):
                    g = p.grad
                    caps.append(self._zero_grad(k) if g is None else to_dl(g))
                return _tensors_health(caps)
            except (TypeError, ValueError, RuntimeError, BufferError):
                pass
        return _tensors_health(self._grad_views(params))

    def _zero_grad(self, k: int) -> np.ndarray:
        """A read-only zero array, kept across steps, standing for parameter k's missing
        gradient."""
        z = self._zeros.get(k)
        if z is None:
            z = np.zeros(self._pviews[1][k].size, self._pviews[1][k].dtype)
            z.flags.writeable = False
            self._zeros[k] = z
        return z

    def _grad_views(self, params) -> list:
        """Zero-copy numpy views of the gradients (a read-only zero array, kept across steps,
        for a parameter without one; a float64 copy of a gradient of another dtype)."""
        out = []
        for k, p in enumerate(params):
            g = p.grad
            if g is None:
                out.append(self._zero_grad(k))
                continue
            try:
                a = g.numpy()   # C-contiguity: the native call copies a strided array
            except (TypeError, RuntimeError):   # requires grad, neg/conj bit, bfloat16, a device
                a = _host(g)
            dt = a.dtype
            out.append(a if dt is _F32 or dt is _F64 else np.ascontiguousarray(a, np.float64))
        return out

    def _cpu_param_norms(self, views, diff: bool, snapshot: bool):
        pn, un = _tensors_param_norms(views, self._flat, diff, snapshot)
        if snapshot:
            self._has_prev = True
        return pn, un



_TORCH_FLOATS = {"torch.float32", "torch.float64"}
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _keep_first(lst: list, i: int, grads) -> None:
    """Node pre-hook of a one-output node: keep a reference to the gradient of its output."""
    lst[i] = grads[0]


def _keep(lst: list, i: int, g) -> None:
    """Tensor hook: keep a reference to the gradient (no copy; norms are taken at step())."""
    lst[i] = g


def _host(t) -> np.ndarray:
    """A zero-copy numpy view of a CPU tensor (a host copy of a CUDA one; a float64 copy of a
    dtype numpy has no type for, such as bfloat16)."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.resolve_conj().resolve_neg()
    if str(t.dtype) == "torch.bfloat16":
        t = t.double()
    return t.numpy()


_TO_DLPACK = []   # [torch.utils.dlpack.to_dlpack, or None]


def _to_dlpack():
    """torch's DLPack export of a CPU tensor as a legacy capsule (torch.utils.dlpack.to_dlpack:
    ~0.8 us a tensor, where t.numpy() takes ~2.5 us and t.__dlpack__() ~7 us), resolved once;
    None where this torch has none."""
    if not _TO_DLPACK:
        try:
            from torch.utils.dlpack import to_dlpack
        except ImportError:
            to_dlpack = None
        _TO_DLPACK.append(to_dlpack)
    return _TO_DLPACK[0]


def _capsules(tensors) -> list | None:
    """Borrowed DLPack capsules of CPU tensors (deepgrad's native calls read them in place and
    raise for a strided or non-float one), or None when one is not on the CPU or torch cannot
    export it."""
    to_dl = _to_dlpack()
    if to_dl is None:
        return None
    out = []
    try:
        for t in tensors:
            if t.device.type != "cpu":
                return None
            out.append(to_dl(t))
    except (TypeError, ValueError, RuntimeError, BufferError):
        return None
    return out


def _stats_capsules(stats: list, lim: float):
    """(layer indices, raw sums, meta) of the layers' activation statistics from one native
    call over borrowed DLPack capsules of their z and y (CPU tensors; read as (elements / last
    dim, last dim) like the numpy route, layers with no elements skipped), or None when one is
    not a contiguous CPU float32/float64 tensor, z and y differ in dtype or shape, or torch has
    no to_dlpack (the caller then takes the general route)."""
    to_dl = _to_dlpack()
    if to_dl is None:
        return None
    idx, args, items = [], [], []
    try:
        for i, s in enumerate(stats):
            if s is None:
                continue
            z, y, act = s   # (a CUDA tensor's capsule is refused natively: ValueError)
            a = _stat_args(act, lim)
            items.append((to_dl(z), to_dl(y)) + a)
            idx.append(i)
            args.append(a)
        if not items:
            return [], [], []
        rows = _act_stats_rows(items).tolist()
    except (TypeError, ValueError, RuntimeError, BufferError, AttributeError):
        return None
    st_idx, raw, meta = [], [], []
    for i, a, (s1, s2, sat, alive, n, cols) in zip(idx, args, rows):
        if n == 0:
            continue
        st_idx.append(i)
        raw.append((s1, s2, int(sat), int(alive)))
        meta.append((int(n), a[0], a[3], int(cols)))
    return st_idx, raw, meta


def _act_stats_rows(items):
    from ..backend import get_backend
    return get_backend("cpu")._act_stats_rows(items)


def _cpu_arrays(tensors) -> list | None:
    """numpy views of CPU tensors for the native norms (float64 copies of other float dtypes;
    the native call copies a strided one), or None when one is not a CPU float tensor numpy can
    view (the caller then takes its general route)."""
    out = []
    try:
        for t in tensors:
            a = t.numpy()
            dt = a.dtype
            if dt is not _F32 and dt is not _F64:
                if dt.kind != "f":
                    return None
                a = np.ascontiguousarray(a, np.float64)
            out.append(a)
    except (TypeError, RuntimeError, AttributeError):   # requires grad, a device, bfloat16, ...
        return None
    return out


def _sequential_pairs(model, layers) -> dict:
    """{layer index: the activation module right after that layer in its parent Sequential}."""
    index = {id(m): i for i, m in enumerate(layers)}
    pairs = {}
    for parent in model.modules():
        if type(parent).__name__ != "Sequential":
            continue
        kids = list(parent.children())
        for a, b in zip(kids, kids[1:]):
            i = index.get(id(a))
            if i is not None and type(b).__name__ in _ACTIVATIONS and not list(b.children()):
                pairs[i] = b
    return pairs


_CUDA_BACKEND = []   # [deepgrad's CUDA backend, or None without CUDA kernels or a GPU]


def _snapshot(prev, params) -> list:
    """Copies of the parameters for the next update norm: into the previous copies with one
    foreach call when they still match (shape, dtype, device), else fresh clones."""
    import torch
    same = prev is not None and len(prev) == len(params) and all(
        q.shape == p.shape and q.dtype == p.dtype and q.device == p.device
        for q, p in zip(prev, params))
    if same and hasattr(torch, "_foreach_copy_"):
        with torch.no_grad():
            torch._foreach_copy_(prev, params)
        return prev
    return [p.detach().clone() for p in params]


def _cuda_backend():
    """deepgrad's CUDA backend, resolved once; None without CUDA kernels or a GPU."""
    if not _CUDA_BACKEND:
        from ..backend import get_backend
        try:
            _CUDA_BACKEND.append(get_backend("cuda"))
        except RuntimeError:
            _CUDA_BACKEND.append(None)
    return _CUDA_BACKEND[0]


def _after_torch_stream(index: int) -> None:
    """deepgrad reads on the legacy default stream: order it after torch's current stream on
    device `index` (an event, no host sync; nothing when torch is on that stream already)."""
    import torch
    cur = torch.cuda.current_stream(index)
    if cur.cuda_stream != 0:
        torch.cuda.default_stream(index).wait_stream(cur)


def _cuda_health(tensors):
    """float64 (K, 7) health rows (tensors_health) of torch CUDA tensors from deepgrad's CUDA
    kernel, read in place at their device addresses (through DLPack views where the backend has
    no address route), with a float32 copy for other float dtypes, float64 copies when float32
    and float64 mix and a contiguous copy for strided ones; None when deepgrad has no CUDA or a
    tensor is not on deepgrad's device (the caller then uses torch._foreach_norm)."""
    be = _cuda_backend()
    if be is None:
        return None
    index = be.DLPACK_DEVICE[1]
    ts = []
    for t in tensors:
        if t.device.type != "cuda" or (t.device.index or 0) != index:
            return None
        ts.append(t if str(t.dtype) in _TORCH_FLOATS else t.detach().float())
    if len({t.dtype for t in ts}) > 1:   # the kernel takes one dtype per call
        ts = [t.detach().double() for t in ts]
    ts = [t if t.is_contiguous() else t.detach().contiguous() for t in ts]
    import torch
    _after_torch_stream(index)
    at = getattr(be, "_tensors_health_at", None)
    if at is not None:
        # the tensors' addresses (checked native-side to be device memory): ts holds them alive
        # until the call, which synchronises, returns
        dtype = "float64" if ts and ts[0].dtype == torch.float64 else "float32"
        return at([t.data_ptr() for t in ts], [t.numel() for t in ts], dtype)
    return be.tensors_health([be.from_dlpack(t.__dlpack__(stream=-1, max_version=(1, 1)))
                              for t in ts])


def _cuda_act_stats_route():
    """deepgrad's CUDA backend's address route for activation statistics, or None."""
    be = _cuda_backend()
    return None if be is None else getattr(be, "_act_stats_at", None)


def _device_stat_item(z, y):
    """(z address, y address, rows, cols, dtype) of a layer's pre-activation and output when
    both are contiguous float32/float64 CUDA tensors of one shape on deepgrad's device (read as
    (numel / last dim, last dim), as the host route reshapes them), else None (that layer then
    takes the host route)."""
    try:
        dev = z.device
        if dev.type != "cuda" or y.device != dev or (dev.index or 0) != \
                _CUDA_BACKEND[0].DLPACK_DEVICE[1]:
            return None
        dt = str(z.dtype)
        if dt not in _TORCH_FLOATS or y.dtype != z.dtype or z.shape != y.shape or z.dim() < 1:
            return None
        n, cols = z.numel(), z.shape[-1]
        if n == 0 or not (z.is_contiguous() and y.is_contiguous()):
            return None
    except (AttributeError, TypeError):
        return None
    return (z.data_ptr(), y.data_ptr(), n // cols, cols, dt[len("torch."):])


def _device_act_stats(at, items) -> list:
    """The address route's (sum z, sum z^2, saturated, live columns) per item, ordered after
    torch's current stream (an event, no host sync) and read with one synchronisation."""
    _after_torch_stream(_CUDA_BACKEND[0].DLPACK_DEVICE[1])
    return [(s, q, int(c), int(a)) for s, q, c, a in np.asarray(at(items)).tolist()]


def _l2_of(rows: np.ndarray) -> np.ndarray:
    """The L2 norm column of health rows, NaN where the tensor holds a NaN or an Inf (as
    _l2_norms)."""
    return np.where(rows[:, 4] + rows[:, 5] > 0, np.nan, rows[:, 0])


def _tensors_health(arrays):
    from ..backend import get_backend
    return get_backend("cpu").tensors_health(arrays)


def _tensors_param_norms(arrays, prev, diff, snapshot):
    from ..backend import get_backend
    return get_backend("cpu").tensors_param_norms(arrays, prev, diff, snapshot)


_CAPTURES.append((is_torch_module, TorchGradientMonitor))
