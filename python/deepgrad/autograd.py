"""The reverse-mode tape: grad mode, the backward walk, anomaly mode, gradcheck.

Every differentiable op that sees an input with ``requires_grad`` attaches a ``Node`` to its
output: the inputs, a backward closure ``g -> tuple of input gradients`` (None where an input
needs none) that captured only the arrays it needs, and the op's name. ``backward()`` orders
the graph once (iterative DFS, so deep or long graphs do not hit the recursion limit), walks it
in reverse and sums the gradients that reach the same tensor.

Module stack: ``nn.Module.__call__`` brackets its forward with ``_push_module(qualified_name)``
and ``_pop_module()`` so anomaly mode can say which layer produced a NaN/Inf.

Grad mode, anomaly mode and the module stack are per thread (as in PyTorch): a thread starts
with grad on, anomaly off and an empty stack, whatever other threads have switched.
"""
from __future__ import annotations

import functools
import threading

import numpy as np


class _State(threading.local):
    """The tape switches of the calling thread (``_S.grad_enabled``, ``_S.anomaly``,
    ``_S.modules``); __init__ runs once in each thread that reads them."""

    def __init__(self) -> None:
        self.grad_enabled = True
        self.anomaly = False
        self.modules = []


_S = _State()


class Node:
    """One recorded op: ``inputs`` (tuple of Tensors), ``backward`` (closure, None once freed),
    ``name`` (op name), ``saved`` ((tensor, version) pairs checked before backward) and
    ``module`` (innermost module name when recorded in anomaly mode), ``reads_out`` (the
    backward reads the output's values, so the output must not change in place before it)."""
    __slots__ = ("inputs", "backward", "name", "saved", "module", "reads_out")

    def __init__(self, inputs, backward, name, saved=None, reads_out=False):
        self.inputs = inputs
        self.backward = backward
        self.name = name
        self.saved = saved
        self.module = _S.modules[-1] if (_S.anomaly and _S.modules) else None
        self.reads_out = reads_out   # the backward reads the op's own output (exp, sigmoid, ...)

    def __repr__(self) -> str:
        return f"<{self.name}Backward>"


# ---------------------------------------------------------------------------------------------
# grad mode


class _Switch:
    """Base of the context managers that switch a mode of the calling thread (``_attr`` of the
    thread's state) to ``_value()``; each also works as a decorator. The previous value is kept
    per instance and per thread, so one instance may be shared by threads, nested, or left open
    across a generator's yield, and the mode is restored even when the block raises."""
    __slots__ = ("_prev",)
    _attr = "grad_enabled"

    def __new__(cls, *args):
        if len(args) == 1 and callable(args[0]):  # bare decorator: @no_grad, as in PyTorch 2
            return cls()(args[0])
        return super().__new__(cls)

    def __init__(self) -> None:
        self._prev = {}

    def _value(self) -> bool:
        raise NotImplementedError

    def __enter__(self):
        self._prev.setdefault(threading.get_ident(), []).append(getattr(_S, self._attr))
        setattr(_S, self._attr, self._value())
        return self

    def __exit__(self, *exc):
        k = threading.get_ident()
        stack = self._prev[k]
        setattr(_S, self._attr, stack.pop())
        if not stack:
            del self._prev[k]
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)
        return wrapper


class _SetMode(_Switch):
    """PyTorch's set_grad_enabled form: the call switches the mode at once; used in a with
    statement, the mode from before the call comes back at the end of the block; used as a
    decorator, it switches only inside the function."""
    __slots__ = ("mode", "_before")

    def __init__(self, mode: bool) -> None:
        super().__init__()
        self.mode = bool(mode)
        self._before = getattr(_S, self._attr)
        setattr(_S, self._attr, self.mode)

    def _value(self) -> bool:
        return self.mode

    def __enter__(self):
        before, self._before = self._before, None
        super().__enter__()
        if before is not None:  # `with set_grad_enabled(m):` restores the mode before the call
            self._prev[threading.get_ident()][-1] = before
        return self

    def __call__(self, fn):
        if self._before is not None:  # as a decorator: undo the call's switch
            setattr(_S, self._attr, self._before)
            self._before = None
        return super().__call__(fn)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.mode})"


class no_grad(_Switch):
    """Context manager / decorator: ops inside record nothing (inference, manual updates)."""
    __slots__ = ()

    def _value(self) -> bool:
        return False


class enable_grad(_Switch):
    """Context manager / decorator: re-enables recording inside a no_grad block."""
    __slots__ = ()

    def _value(self) -> bool:
        return True


def is_grad_enabled() -> bool:
    """True when ops record the tape (in the calling thread)."""
    return _S.grad_enabled


class set_grad_enabled(_SetMode):
    """Turn tape recording on or off for the calling thread: ``set_grad_enabled(False)``, or
    ``with set_grad_enabled(is_train):`` (the previous mode returns after the block), or as a
    decorator."""
    __slots__ = ()


# ---------------------------------------------------------------------------------------------
# anomaly mode and the module stack


class detect_anomaly(_Switch):
    """Context manager / decorator: raise on the first NaN or Inf produced by an op in the
    forward pass or by a backward function, naming the op and the module that ran it.
    Costs one scan of every op output, so use it to debug, not to train."""
    __slots__ = ()
    _attr = "anomaly"

    def _value(self) -> bool:
        return True


class set_detect_anomaly(_SetMode):
    """Function form of detect_anomaly: switch anomaly mode on or off for the calling thread;
    also a context manager restoring the previous mode, like set_grad_enabled."""
    __slots__ = ()
    _attr = "anomaly"


def is_anomaly_enabled() -> bool:
    """True while anomaly mode is on."""
    return _S.anomaly


def _push_module(name: str) -> None:
    """Called by nn.Module.__call__ before forward with the module's qualified name."""
    _S.modules.append(name)


def _pop_module() -> None:
    """Called by nn.Module.__call__ after forward (also when forward raised)."""
    if _S.modules:
        _S.modules.pop()


def current_module() -> str | None:
    """The innermost module whose forward is running, or None."""
    return _S.modules[-1] if _S.modules else None


class AnomalyError(RuntimeError):
    """Raised by anomaly mode on the first NaN/Inf."""


def _where(module) -> str:
    return f" in module '{module}'" if module else ""


def _check_forward(t, name: str) -> None:
    if t.data.dtype.kind == "f" and t._be.has_nonfinite(t.data):
        raise AnomalyError(f"detect_anomaly: op '{name}'{_where(current_module())} produced "
                           f"NaN/Inf in its forward output of shape {tuple(t.data.shape)}")


def _check_backward(node, grads) -> None:
    for i, g in enumerate(grads):
        if g is not None and node.inputs[i]._be.has_nonfinite(g):
            raise AnomalyError(
                f"detect_anomaly: the backward of op '{node.name}'{_where(node.module)} produced "
                f"NaN/Inf in the gradient of its input {i} (shape {tuple(g.shape)})")


# ---------------------------------------------------------------------------------------------
# the backward walk

_FREED = ("Trying to backward through the graph a second time: its saved buffers were freed "
          "by the first backward() (op '{}'). Call backward(retain_graph=True) the first time "
          "if you need to backward twice, or recompute the forward pass.")


def _dependencies(root) -> dict:
    """For every tensor that requires grad and reaches ``root``, except leaves without hooks
    (they accumulate each gradient as it arrives): how many recorded uses it has inside this
    graph (a tensor is ready for its backward once that many gradients arrived)."""
    deps = {}
    stack = [root]
    while stack:
        node = stack.pop()._node
        for i in node.inputs:
            if i is not None and i.requires_grad and (i._node is not None or i._hooks):
                k = id(i)
                if k in deps:
                    deps[k] += 1
                else:
                    deps[k] = 1
                    if i._node is not None:
                        stack.append(i)
    return deps


def _hook_grad(t, r):
    """A hook's replacement gradient as a backend array of t's device, dtype and shape."""
    be, dt = t._be, t.data.dtype
    if isinstance(r, Tensor):
        if r._be is not be:
            raise ValueError(f"hook returned a gradient on {r.device} for a tensor on "
                             f"{t.device}; return it on the tensor's device (.to(device))")
        g = r.data
    elif isinstance(r, np.ndarray) and be.HOST_MEMORY:
        g = r
    else:
        a = np.asarray(r) if isinstance(r, (np.ndarray, np.generic, list, tuple, float, int)) \
            else None
        if a is None or a.dtype.kind not in "fiu":
            raise TypeError(f"hook returned {type(r).__name__}; a hook returns None or a "
                            f"gradient Tensor of the tensor's shape {tuple(t.data.shape)}")
        g = be.from_numpy(a, dt)
    if tuple(g.shape) != tuple(t.data.shape):
        raise ValueError(f"hook returned a gradient of shape {tuple(g.shape)} for a "
                         f"tensor of shape {tuple(t.data.shape)}")
    if g.dtype != dt:   # a float64 gradient would turn the float32 leaf's .grad into float64
        if g.dtype.kind not in "fiu":
            raise TypeError(f"hook returned a gradient of dtype {g.dtype}")
        g = be.astype(g, dt)
    return g


def _run_hooks(t, g):
    be = t._be
    for fn in list(t._hooks.values()):
        v = g
        if be.HOST_MEMORY:   # the engine may hand this array to other inputs too (add's
            v = g.view()     # backward returns one array for both): a hook modifying it in
            v.flags.writeable = False   # place would change their gradients, silently
        r = fn(_new(v, be))
        if r is not None:
            g = _hook_grad(t, r)
    return g


def _check_saved(node) -> None:
    for s, v in node.saved:
        if s._version != v:
            raise RuntimeError(
                f"a tensor of shape {tuple(s.data.shape)} saved by op '{node.name}' for backward "
                f"was modified in place after it was used (version {s._version}, expected {v}). "
                f"Hint: use an out-of-place op (x = x + y instead of x += y) or clone() it "
                f"before modifying it; an optimizer step updates every parameter in place, so "
                f"call opt.step() after backward, not between the forward and the backward")


def _out_modified(t, node) -> RuntimeError:
    return RuntimeError(
        f"the output (shape {tuple(t.data.shape)}) of op '{node.name}' was modified in place "
        f"(version {t._version}) after it was computed, but its backward reads those values, "
        f"so the gradient would be wrong. Hint: modify a clone() of it, or use an out-of-place "
        f"op (y = y * 2 instead of y.mul_(2))")


def _bad_grad(t, g, err) -> Exception:
    """The error when a gradient cannot be accumulated into a leaf's existing ``.grad`` (one
    assigned by hand with another shape, dtype or type)."""
    cur = t.grad
    if not isinstance(cur, Tensor):
        what = f"a {type(cur).__name__}"
    else:
        what = f"a {cur.device} tensor of shape {tuple(cur.data.shape)} and dtype {cur.data.dtype}"
        if cur._be.HOST_MEMORY and not cur.data.flags.writeable:
            what += " (read-only)"
    return TypeError(f"backward(): cannot accumulate the gradient (shape {tuple(g.shape)}, "
                     f"dtype {g.dtype}) into the .grad of a leaf of shape "
                     f"{tuple(t.data.shape)}: its .grad is {what} ({err}); set .grad = None (or "
                     f"a writable Tensor of the leaf's shape and dtype) before backward")


def _root_grad(root, grad):
    be = root._be
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(f"backward(): grad can be implicitly created only for a scalar "
                               f"output, but this tensor has shape {tuple(root.data.shape)}; "
                               f"pass backward(grad) with a gradient of that shape, or reduce "
                               f"it first (e.g. .sum())")
        return be.full(tuple(root.data.shape), 1.0, root.data.dtype)
    if isinstance(grad, Tensor):
        if grad._be is not be:
            raise ValueError("backward(grad): grad is on another device than the tensor")
        g = grad.data
    else:
        a = np.asarray(grad)
        if a.dtype.kind not in "fiu":
            raise TypeError(f"backward(grad): grad must be a Tensor or an array of numbers, got "
                            f"{type(grad).__name__} (dtype {a.dtype})")
        g = be.from_numpy(a, root.data.dtype)
    if tuple(g.shape) != tuple(root.data.shape):
        raise ValueError(f"backward(grad): grad has shape {tuple(g.shape)} but the tensor has "
                         f"shape {tuple(root.data.shape)}")
    return g if g.dtype == root.data.dtype else be.astype(g, root.data.dtype)


def record(data, be, inputs, backward, name, saved=None, out=False):
    """Wrap an op's output (backend array ``data``) in a Tensor and, when recording is on and an
    input requires grad, attach its tape Node: ``backward(g)`` returns one gradient (or None) per
    input; ``saved`` are the input tensors whose values the backward reads, version-checked
    when it runs (a view's through the tensor owning its memory: tensor._alias); ``out``: the
    backward also reads the output's values (checked likewise).
    The only code that creates a tape node (every op calls it)."""
    t = _new(data, be)
    s = _S
    if s.grad_enabled:
        for i in inputs:
            if i.requires_grad:
                t.requires_grad = True
                t._node = Node(inputs, backward, name,
                               tuple([(v, v._version) if v._base is None else
                                      (v._base, v._base._version) for v in saved])
                               if saved else None, out)
                break
    if s.anomaly:
        _check_forward(t, name)
    return t


def grad_sink(t, data, be):
    """The one gradient sink of the fused ops: where an op's backward puts input ``t``'s
    gradient (``data`` is t's value as the forward read it). Returns (buffer, True) when t is a
    plain leaf the engine would only accumulate into (no hook, no anomaly check, requires
    grad): the buffer is t.grad's storage (the parameter arena's view, allocated zeroed the
    first time) and the op accumulates into it and returns None for t. Otherwise (buffer, False):
    a fresh zeroed buffer that the op returns as t's gradient, so the engine runs t's hooks and
    accumulates as for every other op. Both paths give the same gradient."""
    if t._hooks is None and t._node is None and t.requires_grad and not _S.anomaly:
        gt = t.grad
        if gt is None:
            buf = be.zeros(data.shape, data.dtype)
            t.grad = _new(buf, be)
            return buf, True
        try:
            gd = gt.data
            if gd.shape == data.shape and (gd.dtype is data.dtype or gd.dtype == data.dtype):
                return gd, True
        except AttributeError:   # a .grad set by hand to a non-Tensor: the engine's
            pass                 # accumulation names it (_bad_grad)
    return be.zeros(data.shape, data.dtype), False


#: backward() calls in this process so far (any thread): a reader of statistics taken by an
#: optimizer step checks that no backward ran since (deepgrad.nn.arena step statistics)
_BACKWARDS = [0]


def backward_calls() -> int:
    """How many backward passes have started in this process (any thread)."""
    return _BACKWARDS[0]


def backward(root, grad=None, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) into every leaf's ``.grad`` (see Tensor.backward).

    Dependency counting (as PyTorch's engine does): one pass counts each tensor's uses in the
    graph, then the walk runs a tensor's backward once all its gradients have arrived, so each
    node runs once with the summed gradient and hooks see the complete gradient."""
    if not root.requires_grad:
        raise RuntimeError("backward(): this tensor does not require grad and has no grad_fn; "
                           "create the inputs with requires_grad=True")
    g = _root_grad(root, grad)
    _BACKWARDS[0] += 1
    anomaly = _S.anomaly
    deps = _dependencies(root) if root._node is not None else {}
    grads = {id(root): g}
    ready = [root]
    prev_mode = _S.grad_enabled
    _S.grad_enabled = False  # backward closures run primitives only; never record
    try:
        while ready:
            t = ready.pop()
            g = grads.pop(id(t), None)
            node = t._node
            if g is not None:
                if t._hooks:
                    g = _run_hooks(t, g)
                if node is None:  # a leaf: accumulate into .grad (own a copy the first time)
                    if t.grad is None:
                        t.grad = _new(t._be.copy(g), t._be)
                    else:
                        try:
                            gd = t.grad.data
                            if gd.shape != g.shape:   # numpy would broadcast into a bigger one
                                raise ValueError("shapes differ")
                            t._be.add_(gd, g)
                        except Exception as e:
                            raise _bad_grad(t, g, e) from None
                    continue
                if t._retain:
                    t.grad = _new(t._be.copy(g), t._be)
                fn = node.backward
                if fn is None:
                    raise RuntimeError(_FREED.format(node.name))
                saved = node.saved
                if saved:
                    for s, v in saved:
                        if s._version != v:
                            _check_saved(node)
                if t._version and node.reads_out:
                    raise _out_modified(t, node)
                in_grads = fn(g)
                if anomaly:
                    _check_backward(node, in_grads)
            elif node is None:
                continue
            else:
                in_grads = (None,) * len(node.inputs)  # no gradient reached t: pass the count on
            inputs = node.inputs
            if not retain_graph:  # free the saved arrays and the links to intermediate tensors
                node.backward = None
                node.saved = None
                node.inputs = ()
            for inp, ig in zip(inputs, in_grads):
                if inp is None or not inp.requires_grad:
                    continue
                if inp._node is None and not inp._hooks:  # a plain leaf: accumulate now
                    if ig is not None:
                        if inp.grad is None:
                            inp.grad = _new(inp._be.copy(ig), inp._be)
                        else:
                            try:
                                gd = inp.grad.data
                                if gd.shape != ig.shape:  # numpy would broadcast into it
                                    raise ValueError("shapes differ")
                                inp._be.add_(gd, ig)
                            except Exception as e:
                                raise _bad_grad(inp, ig, e) from None
                    continue
                k = id(inp)
                if ig is not None:
                    prev = grads.get(k)
                    grads[k] = ig if prev is None else inp._be.add(prev, ig)
                d = deps.get(k, 1) - 1  # 1: a leaf given a hook during this walk (uncounted)
                if d:
                    deps[k] = d
                elif inp._node is not None or k in grads:
                    ready.append(inp)
    finally:
        _S.grad_enabled = prev_mode


# ---------------------------------------------------------------------------------------------
# gradcheck


class GradcheckError(AssertionError):
    """gradcheck found analytic and numerical gradients that disagree."""


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True, seed: int = 0) -> list:
    """Compare the tape's gradients of ``fn(*inputs)`` with central finite differences, in
    float64. ``inputs``: a Tensor or a sequence of Tensors (float32 ones are checked as float64
    copies); only those with requires_grad are checked. A non-scalar output is reduced with a
    fixed random projection sum(out * r). An element passes when
    |analytic - numeric| <= atol + rtol * |numeric|.
    Returns the max absolute error per input (0.0 for inputs not checked); raises
    GradcheckError with a readable report on mismatch (unless raise_exception=False)."""
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    xs = []
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.data.dtype.kind == "f":
            if x.device != "cpu":
                raise ValueError("gradcheck runs on the CPU; move the inputs with .cpu()")
            c = Tensor(np.array(x.data, dtype=np.float64), requires_grad=x.requires_grad)
            xs.append(c)
        else:
            xs.append(x)

    def evaluate():
        out = fn(*xs)
        if not isinstance(out, Tensor):
            raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
        return out

    if not any(isinstance(x, Tensor) and x.requires_grad for x in xs):
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check; "
                         "create the float inputs with requires_grad=True")
    out = evaluate()
    r = np.random.default_rng(seed).uniform(0.5, 1.5, out.data.shape)
    proj = Tensor(r.astype(out.data.dtype))
    (out * proj).sum().backward()
    analytic = [x.grad.data.copy() if isinstance(x, Tensor) and x.requires_grad and
                x.grad is not None else None for x in xs]

    errors, report = [], []
    with no_grad():
        for i, x in enumerate(xs):
            if not (isinstance(x, Tensor) and x.requires_grad):
                errors.append(0.0)
                continue
            flat = x.data.reshape(-1)
            num = np.zeros(flat.size)
            for j in range(flat.size):
                v = flat[j]
                flat[j] = v + eps
                fp = float(np.sum(evaluate().data * r))
                flat[j] = v - eps
                fm = float(np.sum(evaluate().data * r))
                flat[j] = v
                num[j] = (fp - fm) / (2 * eps)
            num = num.reshape(x.data.shape)
            ana = analytic[i] if analytic[i] is not None else np.zeros_like(num)
            err = np.abs(ana - num)
            errors.append(float(err.max()) if err.size else 0.0)
            bad = err > atol + rtol * np.abs(num)
            if bad.any():
                j = np.unravel_index(int(np.argmax(np.where(bad, err, -1.0))), num.shape)
                report.append(f"  input {i} shape {tuple(num.shape)}: {int(bad.sum())} of "
                              f"{num.size} elements differ; worst at index {tuple(int(k) for k in j)}: "
                              f"analytic {ana[j]:.8g} vs numeric {num[j]:.8g} "
                              f"(abs error {err[j]:.3g}, max abs error {errors[-1]:.3g})")
    if report and raise_exception:
        raise GradcheckError(f"gradcheck failed (eps={eps}, atol={atol}, rtol={rtol}):\n"
                             + "\n".join(report))
    return errors


# The Tensor type and its constructor for backend arrays, registered by tensor.py when it is
# imported (_bind_tensor): autograd imports nothing of the package.
Tensor = None
_new = None


def _bind_tensor(tensor_cls, new) -> None:
    global Tensor, _new
    Tensor, _new = tensor_cls, new
