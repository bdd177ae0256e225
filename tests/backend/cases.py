"""One case table for every primitive of deepgrad.backend.protocol.Backend.

Each case makes fresh random inputs (float32, as the CUDA kernels take) and says
- what the primitive MEANS: ``ref`` computes the expected value from the inputs in float64
  (numpy formulas written from the Protocol's docstring, or a float64 finite difference of a
  reference forward for backward primitives), and ``meaning`` picks the matching observation
  from the backend's output; tests/backend/test_parity.py checks the CPU backend this way;
- what must AGREE across devices: ``parity`` picks the outputs (and arrays changed in place)
  that tests/cuda/test_backend_parity.py compares between the CUDA and the CPU backend.

Loaded by path (pytest's importlib mode has no test packages): ``load_cases()`` in the tests.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np

import deepgrad as dg
from deepgrad import random as _random

F32 = np.float32


class Fwd(NamedTuple):
    """An argument that is the ``saved`` value of running forward primitive ``name`` (with
    ``args``) on the backend under test: backward primitives take what their forward saved."""
    name: str
    args: tuple
    index: int = 1


class Case(NamedTuple):
    name: str                         # the primitive
    make: Callable                    # rng -> (args, kwargs, extra)
    ref: Callable | None = None       # (args64, kwargs, extra) -> expected observation
    meaning: Callable | None = None   # (out, args, extra) -> observation (numpy)
    parity: Callable | None = None    # (out, args) -> values compared across devices
    mutates: tuple = ()               # indices of arguments changed in place
    host: tuple = ()                  # indices of arguments that stay host numpy arrays
    seed: int | None = None           # dg.manual_seed(seed) right before the call
    rtol: float = 2e-5
    atol: float = 2e-6
    label: str = ""
    step_stats: bool = False          # uses stats=: NotImplementedError where not STEP_STATS


def _r(rng, *shape, lo=None):
    a = rng.standard_normal(shape) + 0.1
    if lo is not None:
        a = np.abs(a) + lo
    return a.astype(F32)


def _default_obs(case):
    def obs(out, args, extra=None):
        if case.mutates:   # the arrays changed in place, then the result (in-place calls: none)
            got = [args[i] for i in case.mutates]
            return got + ([] if case.name.endswith(("_", "_step")) else [out])
        return out
    return obs


# -- float64 reference formulas ------------------------------------------------------------------

def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


_ERF = np.vectorize(math.erf)
_SA, _SS = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
ACT64 = {
    "identity": lambda z, a: z,
    "sigmoid": lambda z, a: _sig(z),
    "tanh": lambda z, a: np.tanh(z),
    "relu": lambda z, a: np.maximum(z, 0.0),
    "leaky_relu": lambda z, a: np.where(z > 0, z, a * z),
    "elu": lambda z, a: np.where(z > 0, z, a * np.expm1(z)),
    "selu": lambda z, a: _SS * np.where(z > 0, z, _SA * np.expm1(z)),
    "gelu": lambda z, a: 0.5 * z * (1.0 + _ERF(z / math.sqrt(2.0))),
    "softplus": lambda z, a: np.log1p(np.exp(z)),
    "silu": lambda z, a: z * _sig(z),
    "softsign": lambda z, a: z / (1.0 + np.abs(z)),
}
_ACT_ALPHA = {"leaky_relu": 0.05, "elu": 0.7}


def _dact(act, z, a):
    h = 1e-6
    return (ACT64[act](z + h, a) - ACT64[act](z - h, a)) / (2 * h)


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def _loss64(kind, p, t, red):
    if kind == "mse":
        per = (p - t) ** 2
    elif kind == "bce":
        per = -(t * np.log(p) + (1 - t) * np.log1p(-p))
    elif kind == "bce_logits":
        per = np.maximum(p, 0) - p * t + np.log1p(np.exp(-np.abs(p)))
    else:
        per = -_log_softmax(p)[np.arange(len(t)), t]
    return per.mean() if red == "mean" else per.sum() if red == "sum" else per


def _dloss64(kind, p, t, red, grad):
    if kind == "mse":
        d = 2 * (p - t)
    elif kind == "bce":
        d = (p - t) / (p * (1 - p))
    elif kind == "bce_logits":
        d = _sig(p) - t
    else:
        d = _softmax(p)
        d[np.arange(len(t)), t] -= 1
    if red == "none":
        return d * (grad[:, None] if kind == "cross_entropy" else grad)
    n = len(t) if kind == "cross_entropy" else p.size
    return d * float(grad) / (n if red == "mean" else 1)


def _bn_fwd64(x, g, b, rm, rv, training, mom, eps):
    if training:
        mu, var = x.mean(0), x.var(0)
        rm2 = (1 - mom) * rm + mom * mu
        rv2 = (1 - mom) * rv + mom * var * len(x) / (len(x) - 1)
    else:
        mu, var, rm2, rv2 = rm, rv, rm, rv
    inv = 1 / np.sqrt(var + eps)
    return (x - mu) * inv * g + b, mu, inv, rm2, rv2


def _norm_bwd64(dy, x, mu, inv, g, axis, training=True):
    """dx, dgamma, dbeta of y = (x - mu) inv * g + b with the statistics over ``axis``."""
    xhat = (x - mu) * inv
    red = 0 if axis == 0 else None
    dgamma = (dy * xhat).sum(0) if red == 0 else (dy * xhat).reshape(-1, x.shape[-1]).sum(0)
    dbeta = dy.sum(0) if red == 0 else dy.reshape(-1, x.shape[-1]).sum(0)
    dxh = dy * g
    if not training:
        return dxh * inv, dgamma, dbeta
    n = x.shape[axis]
    dx = inv / n * (n * dxh - dxh.sum(axis, keepdims=True)
                    - xhat * (dxh * xhat).sum(axis, keepdims=True))
    return dx, dgamma, dbeta


def _lstm64(xw, w, h0, c0):
    B, H = h0.shape
    T = xw.shape[0] // B
    h, c, hs = h0, c0, []
    for t in range(T):
        a = xw[t * B:(t + 1) * B] + h @ w
        i, f = _sig(a[:, :H]), _sig(a[:, H:2 * H])
        g, o = np.tanh(a[:, 2 * H:3 * H]), _sig(a[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs + [c], axis=1)


def _rnn64(xw, w, h0, act="tanh"):
    B = h0.shape[0]
    h, hs = h0, []
    for t in range(xw.shape[0] // B):
        h = ACT64[act](xw[t * B:(t + 1) * B] + h @ w, 0.01)
        hs.append(h)
    return np.stack(hs, axis=1)


def _gru64(xw, w, bh, h0):
    B, H = h0.shape
    h, hs = h0, []
    for t in range(xw.shape[0] // B):
        xg = xw[t * B:(t + 1) * B]
        hg = h @ w + (0 if bh is None else bh)
        r = _sig(xg[:, :H] + hg[:, :H])
        z = _sig(xg[:, H:2 * H] + hg[:, H:2 * H])
        n = np.tanh(xg[:, 2 * H:] + r * hg[:, 2 * H:])
        h = (1 - z) * n + z * h
        hs.append(h)
    return np.stack(hs, axis=1)


def _dir_deriv(f, params, dirs, gy, eps=1e-6):
    """d/de <gy, f(params + e dirs)> at e = 0, central difference in float64."""
    plus = f(*[p + eps * d if d is not None else p for p, d in zip(params, dirs)])
    minus = f(*[p - eps * d if d is not None else p for p, d in zip(params, dirs)])
    return float(np.sum(gy * (plus - minus)) / (2 * eps))


def _dot(grads, dirs):
    return float(sum(np.sum(np.asarray(g, np.float64) * d) for g, d in zip(grads, dirs)
                     if d is not None))


# -- the table -----------------------------------------------------------------------------------

def _ew(name, fn, pos=False, scalar=False):
    def make(rng):
        a = _r(rng, 3, 4, lo=0.5 if pos else None)
        b = 1.7 if scalar else _r(rng, 4, lo=0.5 if pos else None)
        return (a, b), {}, None
    return Case(name, make, lambda a, k, e: fn(a[0], a[1]),
                label="scalar" if scalar else "broadcast")


def _cmp(name, fn):
    def make(rng):
        a = _r(rng, 3, 4)
        b = a.copy()
        b[0] = _r(rng, 4)          # some equal, some not
        return (a, b), {}, None
    return Case(name, make, lambda a, k, e: fn(a[0], a[1]).astype(np.float64))


def _un(name, fn, pos=False):
    return Case(name, lambda rng: ((_r(rng, 3, 5, lo=0.2 if pos else None),), {}, None),
                lambda a, k, e: fn(a[0]))


def _red(name, fn, axis, keepdims=False):
    def make(rng):
        return (_r(rng, 3, 4, 5),), {"axis": axis, "keepdims": keepdims}, None
    return Case(name, make, lambda a, k, e: np.asarray(fn(a[0], axis=axis, keepdims=keepdims)),
                label=f"axis={axis}")


def _act(act):
    alpha = _ACT_ALPHA.get(act, 0.01)
    return Case("act_forward", lambda rng: ((_r(rng, 6, 7), act, alpha), {}, None),
                lambda a, k, e: ACT64[act](a[0], alpha), label=act, rtol=1e-5, atol=1e-6)


def _act_bwd(act):
    alpha = _ACT_ALPHA.get(act, 0.01)

    def make(rng):
        z = _r(rng, 6, 7)
        z[np.abs(z) < 1e-3] = 0.5    # away from the kinks, where the difference quotient fails
        y = ACT64[act](z.astype(np.float64), alpha).astype(F32)
        return (_r(rng, 6, 7), z, y, act, alpha), {}, None
    return Case("act_backward", make, lambda a, k, e: a[0] * _dact(act, a[1], alpha),
                label=act, rtol=1e-4, atol=1e-5)


def _loss(kind, red):
    def make(rng):
        if kind == "cross_entropy":
            p, t = _r(rng, 6, 4), rng.integers(0, 4, 6).astype(np.int64)
        elif kind == "bce":
            p = rng.uniform(0.05, 0.95, (6, 3)).astype(F32)
            t = (rng.random((6, 3)) < 0.5).astype(F32)
        else:
            p, t = _r(rng, 6, 3), rng.uniform(0, 1, (6, 3)).astype(F32)
        return (kind, p, t, red), {}, None
    return Case("loss_forward", make, lambda a, k, e: np.asarray(_loss64(*a)),
                label=f"{kind}-{red}", rtol=1e-5, atol=1e-6)


def _loss_b(kind, red):
    inner = _loss(kind, red).make

    def make(rng):
        (kd, p, t, rd), _, _ = inner(rng)
        n = p.shape[0] if kind == "cross_entropy" else p.shape
        g = _r(rng, *((n,) if kind == "cross_entropy" else n)) if red == "none" else \
            np.asarray(1.5, F32)
        return (kd, p, t, rd, g), {}, None
    return Case("loss_backward", make, lambda a, k, e: _dloss64(*a), label=f"{kind}-{red}",
                rtol=1e-5, atol=1e-6)


def _dense_fwd(act, keep_z, bias=True):
    alpha = _ACT_ALPHA.get(act, 0.01)

    def make(rng):
        x, w = _r(rng, 9, 5), _r(rng, 5, 4) * F32(0.4)
        return (x, w, _r(rng, 4) if bias else None, act, alpha, keep_z), {}, None

    def ref(a, k, e):
        z = a[0] @ a[1] + (0 if a[2] is None else a[2])
        needs_z = act not in ("identity", "sigmoid", "tanh")
        return ACT64[act](z, alpha), z if (keep_z or needs_z) else None
    return Case("dense_forward", make, ref, label=f"{act}-keep_z={keep_z}-bias={bias}",
                rtol=1e-5, atol=1e-5)


def _dense_bwd(act, bias=True, need_dx=True):
    alpha = _ACT_ALPHA.get(act, 0.01)

    def make(rng):
        x, w, b = _r(rng, 9, 5), _r(rng, 5, 4) * F32(0.4), _r(rng, 4)
        z = (x.astype(np.float64) @ w + b).astype(F32)
        y = ACT64[act](z.astype(np.float64), alpha).astype(F32)
        needs_z = act not in ("identity", "sigmoid", "tanh")
        return (_r(rng, 9, 4), x, w, z if needs_z else None, y, _r(rng, 5, 4),
                _r(rng, 4) if bias else None, act, alpha, need_dx), {}, None

    def ref(a, k, e):
        dy, x, w, z, y, dw, db = a[:7]
        zz = z if z is not None else x @ w + 0  # sigmoid/tanh/identity: act' from y
        if act == "tanh":
            dz = dy * (1 - y * y)
        elif act == "sigmoid":
            dz = dy * y * (1 - y)
        elif act == "identity":
            dz = dy
        else:
            dz = dy * _dact(act, zz, alpha)
        out = [dw + x.T @ dz] + ([db + dz.sum(0)] if db is not None else [])
        return out + [dz @ w.T if need_dx else None]
    return Case("dense_backward", make, ref, mutates=(5, 6) if bias else (5,),
                label=f"{act}-bias={bias}-need_dx={need_dx}", rtol=1e-4, atol=1e-5)


_CHAIN = (("tanh", True, (5, 4)), ("leaky_relu", False, (4, 6)), ("sigmoid", True, (6, 3)))


def _dense_chain_fwd(keep_from):
    """dense_chain_forward: three layers (a bias-free middle one), against the float64 layers
    one by one; the layers before keep_from give None."""
    acts = [a for a, _, _ in _CHAIN]
    alphas = [_ACT_ALPHA.get(a, 0.01) for a in acts]

    def make(rng):
        ws = [_r(rng, *shape) * F32(0.5) for _, _, shape in _CHAIN]
        bs = [_r(rng, shape[1]) if bias else None for _, bias, shape in _CHAIN]
        return (_r(rng, 7, 5), ws, bs, acts, alphas, [None] * 3, keep_from), {}, None

    def ref(a, k, e):
        h, out = a[0], []
        for i, (w, b) in enumerate(zip(a[1], a[2])):
            z = h @ w + (0 if b is None else b)
            h = ACT64[acts[i]](z, alphas[i])
            needs_z = acts[i] not in ("identity", "sigmoid", "tanh")
            out.append((h, z if needs_z else None) if i >= keep_from or i == 2 else None)
        return out
    return Case("dense_chain_forward", make, ref, label=f"keep_from={keep_from}", rtol=1e-5,
                atol=1e-5)


def _dense_chain_bwd(k, need_dx):
    """dense_chain_backward from the last layer down to layer k, against float64 formulas;
    observes dws, dbs (accumulated in place) and the returned dx."""
    acts = [a for a, _, _ in _CHAIN]
    alphas = [_ACT_ALPHA.get(a, 0.01) for a in acts]

    def make(rng):
        ws = [_r(rng, *shape) * F32(0.5) for _, _, shape in _CHAIN]
        bs = [_r(rng, shape[1]) if bias else None for _, bias, shape in _CHAIN]
        h = _r(rng, 7, 5)
        xs, zs, ys = [], [], []
        for i, (w, b) in enumerate(zip(ws, bs)):
            z64 = h.astype(np.float64) @ w + (0 if b is None else b)
            y = ACT64[acts[i]](z64, alphas[i]).astype(F32)
            xs.append(h)
            zs.append(z64.astype(F32) if acts[i] not in ("sigmoid", "tanh") else None)
            ys.append(y)
            h = y
        dws = [_r(rng, *w.shape) for w in ws]
        dbs = [_r(rng, b.shape[0]) if b is not None else None for b in bs]
        for i in range(k):  # entries below k are not read
            xs[i] = zs[i] = ys[i] = dws[i] = dbs[i] = None
        return (_r(rng, 7, 3), xs, ws, zs, ys, dws, dbs, acts, alphas, [None] * 3, k,
                need_dx), {}, None

    def ref(a, kw, e):
        g, xs, ws, zs, ys, dws, dbs = a[:7]
        dws, dbs = list(dws), list(dbs)
        for i in range(2, k - 1, -1):
            y, act = ys[i], acts[i]
            if act == "tanh":
                dz = g * (1 - y * y)
            elif act == "sigmoid":
                dz = g * y * (1 - y)
            else:
                dz = g * _dact(act, zs[i], alphas[i])
            dws[i] = dws[i] + xs[i].T @ dz
            if dbs[i] is not None:
                dbs[i] = dbs[i] + dz.sum(0)
            g = dz @ ws[i].T
        return [dws, dbs, g if need_dx else None]
    return Case("dense_chain_backward", make, ref, mutates=(5, 6),
                label=f"k={k}-need_dx={need_dx}", rtol=1e-4, atol=1e-5)


def _bn_fwd(training, affine=True):
    def make(rng):
        c = 5
        g, b = (_r(rng, c), _r(rng, c)) if affine else (None, None)
        return (_r(rng, 8, c), g, b, _r(rng, c), _r(rng, c, lo=0.5), training, 0.1, 1e-5), {}, None

    def meaning(out, a, e):
        y, (x, mu), inv = out
        assert np.array_equal(np.asarray(x), a[0]), "saved[0] is x"
        return [y, mu, inv, a[3], a[4]]

    def ref(a, k, e):
        x, g, b = a[0], a[1], a[2]
        y, mu, inv, rm, rv = _bn_fwd64(x, 1.0 if g is None else g, 0.0 if b is None else b,
                                       a[3], a[4], training, 0.1, 1e-5)
        return [y, mu, inv, rm, rv]

    def parity(out, a):
        y, (x, mu), inv = out
        return [y, x, mu, inv, a[3], a[4]]
    return Case("batch_norm_forward", make, ref, meaning, parity, mutates=(3, 4),
                label=f"training={training}-affine={affine}", rtol=1e-4, atol=1e-5)


def _bn_bwd(training):
    fwd = _bn_fwd(training).make

    def make(rng):
        a, _, _ = fwd(rng)
        return (_r(rng, 8, 5), Fwd("batch_norm_forward", a), Fwd("batch_norm_forward", a, 2),
                a[1], training), {}, a

    def ref(a, k, fa):
        x, g = fa[0].astype(np.float64), fa[1].astype(np.float64)
        rm, rv = fa[3].astype(np.float64), fa[4].astype(np.float64)
        if training:
            mu, inv = x.mean(0), 1 / np.sqrt(x.var(0) + 1e-5)
        else:
            mu, inv = rm, 1 / np.sqrt(rv + 1e-5)
        return list(_norm_bwd64(a[0], x, mu, inv, g, 0, training))
    return Case("batch_norm_backward", make, ref, label=f"training={training}",
                rtol=1e-4, atol=1e-4)


def _ln_fwd(affine=True):
    def make(rng):
        d = 6
        g, b = (_r(rng, d), _r(rng, d)) if affine else (None, None)
        return (_r(rng, 3, 4, d), g, b, 1e-5), {}, None

    def meaning(out, a, e):
        y, (x2, mu), inv = out
        assert np.array_equal(np.asarray(x2), a[0].reshape(-1, a[0].shape[-1])), "saved[0] is x"
        return [y, mu, inv]

    def ref(a, k, e):
        x = a[0]
        mu, inv = x.mean(-1), 1 / np.sqrt(x.var(-1) + 1e-5)
        g = 1.0 if a[1] is None else a[1]
        b = 0.0 if a[2] is None else a[2]
        return [(x - mu[..., None]) * inv[..., None] * g + b, mu.reshape(-1), inv.reshape(-1)]

    def parity(out, a):
        y, (x2, mu), inv = out
        return [y, x2, mu, inv]
    return Case("layer_norm_forward", make, ref, meaning, parity, label=f"affine={affine}",
                rtol=1e-4, atol=1e-5)


def _ln_bwd():
    fwd = _ln_fwd().make

    def make(rng):
        a, _, _ = fwd(rng)
        return (_r(rng, 3, 4, 6), Fwd("layer_norm_forward", a), Fwd("layer_norm_forward", a, 2),
                a[1]), {}, a

    def ref(a, k, fa):
        x, g = fa[0].astype(np.float64), fa[1].astype(np.float64)
        mu, inv = x.mean(-1, keepdims=True), 1 / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
        return list(_norm_bwd64(a[0], x, mu, inv, g, -1))
    return Case("layer_norm_backward", make, ref, rtol=1e-4, atol=1e-4)


def _seq_bwd(name, fwd_name, ref_fwd, in_shapes, gy_shape, grads_idx, norms):
    """A sequence backward checked by a float64 directional derivative of the reference
    forward: <grads, dirs> = d/de <gy, f(params + e dirs)>."""
    def make(rng):
        params = [(_r(rng, *s) * F32(0.5)) if s is not None else None for s in in_shapes]
        fargs = tuple(params) + (("tanh",) if fwd_name == "rnn_sequence_forward" else ())
        if fwd_name == "gru_sequence_forward":
            fargs = (params[0], params[1], params[2], params[3])
        gy = _r(rng, *gy_shape)
        dirs = [rng.standard_normal(s) if s is not None else None for s in in_shapes]
        return (gy, Fwd(fwd_name, fargs), params[1], norms), {}, (params, dirs)

    def meaning(out, a, extra):
        params, dirs = extra
        grads = [out[i] for i in grads_idx]
        if norms:   # dL/dh_T is gy's last h column: its norm is the last entry
            assert np.isclose(out[-1][-1], np.linalg.norm(a[0][:, gy_shape[1] - 1 - (
                name == "lstm_sequence_backward")].astype(np.float64)), rtol=1e-4)
        else:
            assert out[-1] is None
        return np.array(_dot(grads, dirs))

    def ref(a, k, extra):
        params, dirs = extra
        p64 = [None if p is None else p.astype(np.float64) for p in params]
        return np.array(_dir_deriv(ref_fwd, p64, dirs, a[0].astype(np.float64)))

    def parity(out, a):
        return list(out)
    return Case(name, make, ref, meaning, parity, label=f"norms={norms}", rtol=2e-4, atol=2e-4)


def _opt_sgd(nesterov, first):
    def make(rng):
        return (_r(rng, 20), _r(rng, 20), _r(rng, 20), 0.1, 0.9, 0.1 if not nesterov else 0.0,
                nesterov, 0.01, first), {}, None

    def ref(a, k, e):
        p, g, buf, lr, mom, damp, nest, wd, fs = a
        d = g + wd * p
        b = d if fs else mom * buf + (1 - damp) * d
        d = d + mom * b if nest else b
        return [p - lr * d, g, b]
    return Case("sgd_step", make, ref, mutates=(0, 1, 2),
                label=f"nesterov={nesterov}-first={first}", rtol=1e-5, atol=1e-6)


def _opt_adam(decoupled):
    def make(rng):
        return (_r(rng, 20), _r(rng, 20), _r(rng, 20) * F32(0.1), _r(rng, 20, lo=0.01) * F32(0.1),
                3, 1e-2, 0.9, 0.999, 1e-8, 0.05, decoupled), {}, None

    def ref(a, k, e):
        p, g, m, v, step, lr, b1, b2, eps, wd, dec = a
        pp = p * (1 - lr * wd) if dec else p
        if not dec:
            g = g + wd * pp
        m = m + (1 - b1) * (g - m)
        v = b2 * v + (1 - b2) * g * g
        p = pp - lr / (1 - b1 ** step) * m / (np.sqrt(v) / math.sqrt(1 - b2 ** step) + eps)
        return [p, m, v]
    return Case("adam_step", make, ref, mutates=(0, 2, 3), label=f"decoupled={decoupled}",
                rtol=1e-5, atol=1e-6)


def _opt_adam_stats():
    """adam_step filling step statistics per segment, one segment holding an Inf gradient."""
    plain = _opt_adam(False)

    def make(rng):
        a, _, _ = plain.make(rng)
        a[1][9] = np.inf
        return a + (np.array([0, 4, 4, 20]), np.zeros((3, 8))), {}, None

    def ref(a, k, e):
        with np.errstate(all="ignore"):   # the Inf gradient makes its parameter NaN
            p, m, v = plain.ref(a[:11], k, e)
        offs, g, rows = a[11], a[1], []
        for s, t in zip(offs[:-1], offs[1:]):
            gs, fin = g[s:t], np.isfinite(g[s:t])
            bad = np.flatnonzero(~fin)
            rows.append([np.sqrt(np.sum(gs ** 2)) if fin.all() else np.nan,
                         np.abs(gs[fin]).max(initial=0), (~fin).sum(), bad[0] if bad.size else -1,
                         np.linalg.norm(p[s:t]), np.linalg.norm(p[s:t] - a[0][s:t]), 1, 0])
        return [p, m, v, np.array(rows)]
    return Case("adam_step", make, ref, mutates=(0, 2, 3, 12), host=(11,), step_stats=True,
                label="step stats", rtol=1e-5, atol=1e-6)


def _opt_rms(centered):
    def make(rng):
        return (_r(rng, 20), _r(rng, 20), _r(rng, 20, lo=0.01), 1e-2, 0.99, 1e-8, 0.01, 0.9,
                _r(rng, 20), centered, _r(rng, 20) * F32(0.01) if centered else None), {}, None

    def ref(a, k, e):
        p, g, sq, lr, al, eps, wd, mom, buf, cen, ga = a
        g = g + wd * p
        sq = al * sq + (1 - al) * g * g
        if cen:
            ga = ga + (1 - al) * (g - ga)
            avg = np.sqrt(sq - ga * ga) + eps
        else:
            avg = np.sqrt(sq) + eps
        buf = mom * buf + g / avg
        return [p - lr * buf, sq, buf] + ([ga] if cen else [])
    return Case("rmsprop_step", make, ref, mutates=(0, 2, 8, 10) if centered else (0, 2, 8),
                label=f"centered={centered}", rtol=1e-4, atol=1e-6)


def _health64(b, offs):
    rows = []
    for s, t in zip(offs[:-1], offs[1:]):
        v = b[s:t]
        fin = v[np.isfinite(v)]
        bad = np.flatnonzero(~np.isfinite(v))
        lo, hi = (fin.min(), fin.max()) if fin.size else (0.0, 0.0)
        rows.append([np.sqrt(np.sum(fin ** 2)), np.abs(fin).max(initial=0), lo, hi,
                     np.isnan(v).sum(), np.isinf(v).sum(),
                     bad[0] if bad.size else -1])
    return np.array(rows)


def _with_bad(rng):
    b = _r(rng, 30)
    b[7], b[20] = np.nan, np.inf
    return b


def _seg_norms64(b, offs):
    norms = np.array([np.sqrt(np.sum(b[s:t] ** 2)) for s, t in zip(offs[:-1], offs[1:])])
    return [norms, np.sqrt(np.sum(b ** 2)), np.array(int((~np.isfinite(b)).sum()))]


def _dead_cols(y):
    """relu-like outputs with every third column dead (never positive)."""
    y = np.maximum(y, 0)
    y[:, ::3] = 0
    return y


def _act_stats64(z, y, sat, center, bound, dead):
    a = y if sat == 1 else z
    cnt = int((np.abs(a - center) > bound).sum()) if sat else 0
    return [np.array(z.sum()), np.array((z * z).sum()), np.array(cnt),
            np.array(int((y > 0).any(0).sum()) if dead else 0)]


def _index_case(name, index, values_shape=None):
    def make(rng):
        a = _r(rng, 5, 4, 3)
        if name == "getitem":
            return (a, index), {}, None
        v = _r(rng, *values_shape) if values_shape is not None else 2.5
        return (a, index, v), {}, None

    def ref(a, k, e):
        if name == "getitem":
            return a[0][index]
        dst = a[0].copy()
        if name == "setitem_":
            dst[index] = a[2]
        else:
            np.add.at(dst, index, a[2])
        return [dst]
    return Case(name, make, ref, mutates=() if name == "getitem" else (0,), host=(1,),
                label=repr(index)[:40])


_IDX_INT = np.array([0, 3, 3, 1], dtype=np.int64)
_IDX_BOOL = np.array([True, False, True, True, False])


def _sum_to_shape_ref(a, k, e):
    g, shape = a
    lead = g.ndim - len(shape)
    s = g.sum(axis=tuple(range(lead))) if lead else g
    for i, n in enumerate(shape):
        if n == 1 and s.shape[i] != 1:
            s = s.sum(axis=i, keepdims=True)
    return s


def _rng_case(name, args, draw):
    return Case(name, lambda rng: (args, {}, None), lambda a, k, e: draw(a), seed=1234,
                rtol=0, atol=0)


def build_cases() -> list[Case]:
    B, H, T = 3, 4, 5
    c = [
        # creation and transfer
        Case("from_numpy", lambda r: ((r.standard_normal((3, 4)), F32), {}, None),
             lambda a, k, e: a[0].astype(F32).astype(np.float64), host=(0,)),
        Case("from_numpy", lambda r: ((r.integers(0, 9, 7).astype(np.int64),), {}, None),
             lambda a, k, e: a[0], host=(0,), label="int64"),
        Case("to_numpy", lambda r: ((_r(r, 3, 4),), {}, None), lambda a, k, e: a[0]),
        Case("empty", lambda r: (((3, 0, 2), F32), {}, None), lambda a, k, e: np.zeros((3, 0, 2))),
        Case("empty", lambda r: (((2, 3), F32), {}, None), lambda a, k, e: ((2, 3), "float32"),
             meaning=lambda o, a, e: (tuple(o.shape), o.dtype.name),
             parity=lambda o, a: np.array(o.shape), label="shape"),
        Case("zeros", lambda r: (((2, 3), F32), {}, None), lambda a, k, e: np.zeros((2, 3))),
        Case("full", lambda r: (((2, 3), -1.25, F32), {}, None),
             lambda a, k, e: np.full((2, 3), -1.25)),
        Case("copy", lambda r: ((_r(r, 3, 4),), {}, None), lambda a, k, e: a[0]),
        Case("astype", lambda r: ((_r(r, 3, 4), np.float64), {}, None),
             lambda a, k, e: a[0]),
        Case("view", lambda r: ((_r(r, 20), 3, (2, 4)), {}, None),
             lambda a, k, e: a[0][3:11].reshape(2, 4)),
        Case("copy_", lambda r: ((_r(r, 3, 4), _r(r, 1, 4)), {}, None),
             lambda a, k, e: [np.broadcast_to(a[1], (3, 4))], mutates=(0,)),
        Case("copy_", lambda r: ((_r(r, 3, 4), 0.5), {}, None),
             lambda a, k, e: [np.full((3, 4), 0.5)], mutates=(0,), label="scalar"),
        Case("copy_from_host_", lambda r: ((_r(r, 3, 4), r.standard_normal(4)), {}, None),
             lambda a, k, e: [np.broadcast_to(a[1].astype(F32), (3, 4))], mutates=(0,),
             host=(1,)),
        Case("add_", lambda r: ((_r(r, 3, 4), _r(r, 3, 4)), {}, None),
             lambda a, k, e: [a[0] + a[1]], mutates=(0,)),
        Case("has_nonfinite", lambda r: ((_with_bad(r),), {}, None), lambda a, k, e: True),
        Case("has_nonfinite", lambda r: ((_r(r, 30),), {}, None), lambda a, k, e: False,
             label="finite"),
        Case("item", lambda r: ((_r(r, 1, 1),), {}, None), lambda a, k, e: float(a[0][0, 0])),
        # elementwise
        _ew("add", np.add), _ew("add", np.add, scalar=True), _ew("sub", np.subtract),
        _ew("sub", np.subtract, scalar=True), _ew("mul", np.multiply),
        _ew("mul", np.multiply, scalar=True), _ew("div", np.divide, pos=True),
        _ew("div", np.divide, scalar=True), _ew("pow", np.power, pos=True),
        _ew("pow", np.power, pos=True, scalar=True), _ew("maximum", np.maximum),
        _ew("minimum", np.minimum),
        _cmp("eq", np.equal), _cmp("ne", np.not_equal), _cmp("lt", np.less),
        _cmp("le", np.less_equal), _cmp("gt", np.greater), _cmp("ge", np.greater_equal),
        Case("where", lambda r: (((r.random((3, 4)) < 0.5).astype(F32), _r(r, 3, 4), _r(r, 4)),
                                 {}, None),
             lambda a, k, e: np.where(a[0] != 0, a[1], a[2])),
        Case("where", lambda r: (((r.random((3, 4)) < 0.5).astype(F32), _r(r, 3, 4), 0.0),
                                 {}, None),
             lambda a, k, e: np.where(a[0] != 0, a[1], 0.0), label="scalar"),
        _un("neg", np.negative), _un("exp", np.exp), _un("log", np.log, pos=True),
        _un("sqrt", np.sqrt, pos=True), _un("abs", np.abs), _un("sign", np.sign),
        Case("clip", lambda r: ((_r(r, 3, 5), -0.5, 0.7), {}, None),
             lambda a, k, e: np.clip(a[0], -0.5, 0.7)),
        Case("clip", lambda r: ((_r(r, 3, 5), None, 0.2), {}, None),
             lambda a, k, e: np.minimum(a[0], 0.2), label="lo=None"),
        # activations
        *[_act(a) for a in ("tanh", "relu", "gelu", "elu", "leaky_relu", "softplus", "silu",
                            "selu", "softsign", "sigmoid")],
        *[_act_bwd(a) for a in ("tanh", "relu", "gelu", "elu", "softplus", "silu")],
        # reductions
        _red("sum", np.sum, None), _red("sum", np.sum, 1), _red("sum", np.sum, (0, 2), True),
        _red("mean", np.mean, None), _red("mean", np.mean, 2, True), _red("max", np.max, None),
        _red("max", np.max, 0),
        Case("argmax", lambda r: ((_r(r, 4, 6), 1), {}, None),
             lambda a, k, e: np.argmax(a[0], axis=1)),
        Case("argmax", lambda r: ((_r(r, 4, 6), None), {}, None),
             lambda a, k, e: np.asarray(np.argmax(a[0])), label="flat"),
        Case("broadcast_to", lambda r: ((_r(r, 4, 1), (3, 4, 5)), {}, None),
             lambda a, k, e: np.broadcast_to(a[0], (3, 4, 5))),
        Case("sum_to_shape", lambda r: ((_r(r, 2, 3, 4, 5), (4, 1)), {}, None),
             _sum_to_shape_ref),
        # linear algebra and dense
        Case("matmul", lambda r: ((_r(r, 5, 7), _r(r, 7, 3)), {}, None),
             lambda a, k, e: a[0] @ a[1], rtol=1e-5, atol=1e-5),
        Case("matmul", lambda r: ((_r(r, 7, 5), _r(r, 3, 7), True, True), {}, None),
             lambda a, k, e: a[0].T @ a[1].T, rtol=1e-5, atol=1e-5, label="trans"),
        *[_dense_fwd(act, kz) for act in ("tanh", "relu", "identity") for kz in (False, True)],
        _dense_fwd("gelu", False, bias=False),
        *[_dense_bwd(act) for act in ("tanh", "relu", "identity", "gelu")],
        _dense_bwd("sigmoid", bias=False, need_dx=False),
        _dense_chain_fwd(0), _dense_chain_fwd(2),
        _dense_chain_bwd(0, True), _dense_chain_bwd(1, False),
        # softmax
        Case("softmax", lambda r: ((_r(r, 4, 6),), {}, None), lambda a, k, e: _softmax(a[0])),
        Case("log_softmax", lambda r: ((_r(r, 4, 6),), {}, None),
             lambda a, k, e: _log_softmax(a[0])),
        Case("softmax_backward", lambda r: ((_r(r, 4, 6), _softmax(_r(r, 4, 6)).astype(F32)),
                                            {}, None),
             lambda a, k, e: a[1] * (a[0] - (a[0] * a[1]).sum(-1, keepdims=True))),
        Case("log_softmax_backward",
             lambda r: ((_r(r, 4, 6), _log_softmax(_r(r, 4, 6).astype(np.float64)).astype(F32)),
                        {}, None),
             lambda a, k, e: a[0] - np.exp(a[1]) * a[0].sum(-1, keepdims=True),
             rtol=1e-5, atol=1e-6),
        # losses
        *[_loss(k, red) for k in ("mse", "bce", "bce_logits", "cross_entropy")
          for red in ("mean", "sum", "none")],
        *[_loss_b(k, red) for k in ("mse", "bce", "bce_logits", "cross_entropy")
          for red in ("mean", "none")],
        # normalisation
        _bn_fwd(True), _bn_fwd(False), _bn_fwd(True, affine=False), _bn_bwd(True),
        _bn_bwd(False), _ln_fwd(), _ln_fwd(affine=False), _ln_bwd(),
        # shape and indexing
        Case("reshape", lambda r: ((_r(r, 3, 4), (2, -1)), {}, None),
             lambda a, k, e: a[0].reshape(2, 6)),
        Case("transpose", lambda r: ((_r(r, 2, 3, 4), (2, 0, 1)), {}, None),
             lambda a, k, e: a[0].transpose(2, 0, 1)),
        Case("transpose", lambda r: ((_r(r, 3, 4),), {}, None), lambda a, k, e: a[0].T,
             label="reverse"),
        _index_case("getitem", (slice(1, 4), Ellipsis, 2)),
        _index_case("getitem", (None, slice(None, None, 2), -1)),
        _index_case("getitem", _IDX_INT),
        _index_case("getitem", _IDX_BOOL),
        _index_case("index_add_", (slice(0, 2), 1), (2, 3)),
        _index_case("index_add_", _IDX_INT, (4, 4, 3)),
        _index_case("setitem_", (slice(0, 2), 1)),
        _index_case("setitem_", _IDX_BOOL, (3, 4, 3)),
        Case("concat", lambda r: (([_r(r, 2, 3), _r(r, 4, 3)], 0), {}, None),
             lambda a, k, e: np.concatenate(a[0], 0)),
        Case("concat", lambda r: (([_r(r, 2, 3), _r(r, 2, 1)], -1), {}, None),
             lambda a, k, e: np.concatenate(a[0], -1), label="axis=-1"),
        Case("stack", lambda r: (([_r(r, 2, 3), _r(r, 2, 3)], 1), {}, None),
             lambda a, k, e: np.stack(a[0], 1)),
        Case("split", lambda r: ((_r(r, 3, 7), [2, 0, 5], 1), {}, None),
             lambda a, k, e: np.split(a[0], [2, 2], axis=1)),
        # random: deepgrad.random's generator after the seed
        _rng_case("normal", ((3, 4), 0.5, 2.0, F32),
                  lambda a: (_random.generator().standard_normal(a[0]) * a[2] + a[1]).astype(F32)),
        _rng_case("uniform", ((7,), -1.0, 3.0, F32),
                  lambda a: _random.generator().uniform(a[1], a[2], a[0]).astype(F32)),
        _rng_case("bernoulli", ((5, 5), 0.3, F32),
                  lambda a: (_random.generator().random(a[0]) < a[1]).astype(F32)),
        # arena
        Case("segment_norms", lambda r: ((_r(r, 30), np.array([0, 4, 4, 30])), {}, None),
             lambda a, k, e: _seg_norms64(*a), host=(1,), rtol=1e-6, atol=1e-6),
        Case("segment_norms", lambda r: ((_with_bad(r), np.array([0, 10, 30])), {}, None),
             lambda a, k, e: _seg_norms64(*a), host=(1,), label="nonfinite"),
        Case("segment_health", lambda r: ((_with_bad(r), np.array([0, 5, 10, 30])), {}, None),
             lambda a, k, e: _health64(*a), host=(1,), rtol=1e-6, atol=1e-6),
        Case("monitor_norms",
             lambda r: ((_r(r, 30), _with_bad(r), _r(r, 30), np.array([0, 5, 30]), True, True,
                         True), {}, None),
             lambda a, k, e: [a[0],
                              [_seg_norms64(a[0], a[3])[0], _seg_norms64(a[1], a[3])[0],
                               _seg_norms64(a[0] - a[2], a[3])[0], np.array(2),
                               _health64(a[1], a[3])[:, [1, 4, 5, 6]] @ np.array(
                                   [[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]])]],
             mutates=(2,), host=(3,), rtol=1e-6, atol=1e-6),
        Case("monitor_norms",
             lambda r: ((_r(r, 30), _r(r, 30), None, np.array([0, 5, 30])), {}, None),
             lambda a, k, e: [_seg_norms64(a[0], a[3])[0], _seg_norms64(a[1], a[3])[0], None,
                              np.array(0)],
             host=(3,), rtol=1e-6, atol=1e-6, label="plain"),
        Case("act_stats", lambda r: ((_r(r, 6, 4), np.tanh(_r(r, 6, 4)), 1, 0.0, 0.5, True),
                                     {}, None),
             lambda a, k, e: _act_stats64(*a), rtol=1e-6, atol=1e-5),
        Case("act_stats", lambda r: ((_r(r, 6, 4), _r(r, 6, 4), 2, 0.1, 1.0, False), {}, None),
             lambda a, k, e: _act_stats64(*a), rtol=1e-6, atol=1e-5, label="z"),
        Case("act_stats_array", lambda r: ((_r(r, 6, 4), np.tanh(_r(r, 6, 4)), 1, 0.0, 0.5,
                                            True), {}, None),
             lambda a, k, e: np.array([float(v) for v in _act_stats64(*a)]), rtol=1e-6,
             atol=1e-5),
        # more columns than one block of threads (256) and dead columns among them
        Case("act_stats_array", lambda r: ((_r(r, 33, 300), _dead_cols(_r(r, 33, 300)), 2, 0.1,
                                            1.0, True), {}, None),
             lambda a, k, e: np.array([float(v) for v in _act_stats64(*a)]), rtol=1e-6,
             atol=1e-4, label="wide"),
        Case("act_stats_many",
             lambda r: (([(_r(r, 6, 4), _r(r, 6, 4), 1, 0.0, 0.5, True),
                          (_r(r, 3, 2), _r(r, 3, 2), 2, 0.0, 0.3, False)],), {}, None),
             lambda a, k, e: [_act_stats64(*it) for it in a[0]], rtol=1e-6, atol=1e-5),
        Case("l2_norms", lambda r: (([_r(r, 6, 4), _with_bad(r), _r(r, 3)],), {}, None),
             lambda a, k, e: np.array([np.linalg.norm(a[0][0]), np.nan,
                                       np.linalg.norm(a[0][2])]), rtol=1e-6, atol=1e-6),
        Case("tensors_health", lambda r: (([_r(r, 6, 4), _with_bad(r), _r(r, 3)],), {}, None),
             lambda a, k, e: np.concatenate([_health64(x.reshape(-1), np.array([0, x.size]))
                                             for x in a[0]]), rtol=1e-6, atol=1e-6),
        Case("tensors_param_norms",
             lambda r: (([_r(r, 6, 4), _r(r, 5)], _r(r, 29), True, True), {}, None),
             lambda a, k, e: [np.concatenate([x.reshape(-1) for x in a[0]]),
                              [np.array([np.linalg.norm(x) for x in a[0]]),
                               np.array([np.linalg.norm(a[0][0].reshape(-1) - a[1][:24]),
                                         np.linalg.norm(a[0][1] - a[1][24:])])]],
             mutates=(1,), rtol=1e-6, atol=1e-6),
        Case("scale_", lambda r: ((_r(r, 30), 0.3), {}, None), lambda a, k, e: [a[0] * 0.3],
             mutates=(0,)),
        Case("clip_value_", lambda r: ((_r(r, 30), 0.4), {}, None),
             lambda a, k, e: [np.clip(a[0], -0.4, 0.4)], mutates=(0,)),
        Case("fill_", lambda r: ((_r(r, 30), 0.0), {}, None), lambda a, k, e: [np.zeros(30)],
             mutates=(0,)),
        _opt_sgd(False, False), _opt_sgd(True, False), _opt_sgd(False, True),
        _opt_adam(False), _opt_adam(True), _opt_adam_stats(), _opt_rms(False), _opt_rms(True),
        # recurrent cells and sequences
        Case("lstm_cell_forward", lambda r: ((_r(r, B, 4 * H), _r(r, B, H)), {}, None),
             lambda a, k, e: _lstm_cell64(*a), rtol=1e-5, atol=1e-6),
        Case("lstm_cell_backward", lambda r: _lstm_bwd_make(r, B, H, True),
             lambda a, k, e: _lstm_cell_bwd64(*a), rtol=1e-5, atol=1e-6),
        Case("lstm_cell_backward", lambda r: _lstm_bwd_make(r, B, H, False),
             lambda a, k, e: _lstm_cell_bwd64(*a), rtol=1e-5, atol=1e-6, label="dh=None"),
        Case("gru_cell_forward", lambda r: ((_r(r, B, 3 * H), _r(r, B, 3 * H), _r(r, B, H)), {},
                                            None),
             lambda a, k, e: _gru_cell64(*a), rtol=1e-5, atol=1e-6),
        Case("gru_cell_backward", lambda r: _gru_bwd_make(r, B, H),
             lambda a, k, e: _gru_cell_bwd64(*a), rtol=1e-5, atol=1e-6),
        Case("rnn_sequence_forward",
             lambda r: ((_r(r, T * B, H), _r(r, H, H) * F32(0.5), _r(r, B, H), "tanh"), {}, None),
             lambda a, k, e: _rnn64(*a), meaning=lambda o, a, e: o[0], parity=lambda o, a: o[0],
             rtol=1e-5, atol=1e-5),
        Case("gru_sequence_forward",
             lambda r: ((_r(r, T * B, 3 * H), _r(r, H, 3 * H) * F32(0.5), _r(r, 3 * H),
                         _r(r, B, H)), {}, None),
             lambda a, k, e: _gru64(*a), meaning=lambda o, a, e: o[0], parity=lambda o, a: o[0],
             rtol=1e-5, atol=1e-5),
        Case("gru_sequence_forward",
             lambda r: ((_r(r, T * B, 3 * H), _r(r, H, 3 * H) * F32(0.5), None, _r(r, B, H)),
                        {}, None),
             lambda a, k, e: _gru64(*a), meaning=lambda o, a, e: o[0], parity=lambda o, a: o[0],
             rtol=1e-5, atol=1e-5, label="bh=None"),
        Case("lstm_sequence_forward",
             lambda r: ((_r(r, T * B, 4 * H), _r(r, H, 4 * H) * F32(0.5), _r(r, B, H),
                         _r(r, B, H)), {}, None),
             lambda a, k, e: _lstm64(*a), meaning=lambda o, a, e: o[0], parity=lambda o, a: o[0],
             rtol=1e-5, atol=1e-5),
        *[_seq_bwd("rnn_sequence_backward", "rnn_sequence_forward", _rnn64,
                   [(T * B, H), (H, H), (B, H)], (B, T, H), (0, 1, 2), n) for n in (False, True)],
        *[_seq_bwd("gru_sequence_backward", "gru_sequence_forward", _gru64,
                   [(T * B, 3 * H), (H, 3 * H), (3 * H,), (B, H)], (B, T, H), (0, 1, 2, 3), n)
          for n in (False, True)],
        *[_seq_bwd("lstm_sequence_backward", "lstm_sequence_forward", _lstm64,
                   [(T * B, 4 * H), (H, 4 * H), (B, H), (B, H)], (B, T + 1, H), (0, 1, 2, 3), n)
          for n in (False, True)],
    ]
    return c


def _lstm_cell64(gates, c_prev):
    H = c_prev.shape[1]
    i, f = _sig(gates[:, :H]), _sig(gates[:, H:2 * H])
    g, o = np.tanh(gates[:, 2 * H:3 * H]), _sig(gates[:, 3 * H:])
    c = f * c_prev + i * g
    return [o * np.tanh(c), c, np.concatenate([i, f, g, o], 1)]


def _lstm_bwd_make(r, B, H, with_dh):
    gates, c_prev = _r(r, B, 4 * H), _r(r, B, H)
    h, c, act = (x.astype(F32) for x in _lstm_cell64(gates.astype(np.float64), c_prev))
    return ((_r(r, B, H) if with_dh else None, _r(r, B, H), c_prev, c, act), {}, None)


def _lstm_cell_bwd64(dh, dc, c_prev, c, act):
    H = c.shape[1]
    i, f, g, o = (act[:, k * H:(k + 1) * H] for k in range(4))
    dh = 0 if dh is None else dh
    dc = 0 if dc is None else dc
    tc = np.tanh(c)
    dct = dc + dh * o * (1 - tc * tc)
    return [np.concatenate([dct * g * i * (1 - i), dct * c_prev * f * (1 - f),
                            dct * i * (1 - g * g), dh * tc * o * (1 - o)], 1), dct * f]


def _gru_cell64(xg, hg, h_prev):
    H = h_prev.shape[1]
    r = _sig(xg[:, :H] + hg[:, :H])
    z = _sig(xg[:, H:2 * H] + hg[:, H:2 * H])
    n = np.tanh(xg[:, 2 * H:] + r * hg[:, 2 * H:])
    return [(1 - z) * n + z * h_prev, np.concatenate([r, z, n, hg[:, 2 * H:]], 1)]


def _gru_bwd_make(r, B, H):
    xg, hg, h_prev = _r(r, B, 3 * H), _r(r, B, 3 * H), _r(r, B, H)
    _, act = (x.astype(F32) for x in _gru_cell64(xg.astype(np.float64), hg.astype(np.float64),
                                                 h_prev.astype(np.float64)))
    return ((_r(r, B, H), h_prev, act), {}, None)


def _gru_cell_bwd64(dh, h_prev, act):
    H = h_prev.shape[1]
    r, z, n, hn = (act[:, k * H:(k + 1) * H] for k in range(4))
    dan = dh * (1 - z) * (1 - n * n)
    daz = dh * (h_prev - n) * z * (1 - z)
    dar = dan * hn * r * (1 - r)
    return [np.concatenate([dar, daz, dan], 1), np.concatenate([dar, daz, dan * r], 1), dh * z]


# -- running a case on a backend -----------------------------------------------------------------

def to64(x):
    """float32 arrays (nested in tuples/lists) as float64; everything else unchanged."""
    if isinstance(x, np.ndarray) and x.dtype == F32:
        return x.astype(np.float64)
    if isinstance(x, tuple) and not isinstance(x, Fwd):
        return tuple(to64(i) for i in x)
    if isinstance(x, list):
        return [to64(i) for i in x]
    return x


def fresh(x):
    """A deep copy of the numpy arrays in x (each backend run gets its own inputs)."""
    if isinstance(x, np.ndarray):
        return x.copy()
    if isinstance(x, Fwd):
        return Fwd(x.name, fresh(x.args), x.index)
    if isinstance(x, tuple):
        return tuple(fresh(i) for i in x)
    if isinstance(x, list):
        return [fresh(i) for i in x]
    return x


def call(be, case: Case, args, kwargs, up=lambda x: x, down=lambda x: x):
    """Run case's primitive on backend ``be`` (inputs moved with ``up`` except the host ones,
    Fwd arguments resolved by running the forward on ``be``); returns (out, args) as numpy."""
    def res(x):
        if isinstance(x, Fwd):
            return getattr(be, x.name)(*[up(fresh(i)) for i in x.args])[x.index]
        return up(x)
    dev = tuple(a if i in case.host else res(a) for i, a in enumerate(args))
    if case.seed is not None:
        dg.manual_seed(case.seed)
    out = getattr(be, case.name)(*dev, **kwargs)
    return down(out), [down(a) for a in dev]


def expected(case: Case, args, kwargs, extra):
    if case.seed is not None:
        dg.manual_seed(case.seed)
    return case.ref(to64(args), kwargs, extra)


def observe(case: Case, out, args, extra, which="meaning"):
    fn = case.meaning if which == "meaning" else case.parity
    if fn is None:
        return _default_obs(case)(out, args, extra)
    return fn(out, args, extra) if which == "meaning" else fn(out, args)


def compare(got, want, rtol, atol, where="") -> None:
    """Nested comparison of (tuples/lists of) arrays, scalars and None; shapes must match."""
    if want is None or got is None:
        assert got is None and want is None, f"{where}: got {got!r}, expected {want!r}"
        return
    if isinstance(want, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(want), \
            f"{where}: got {got!r}, expected {len(want)} items"
        for i, (g, w) in enumerate(zip(got, want)):
            compare(g, w, rtol, atol, f"{where}[{i}]")
        return
    if isinstance(want, str):
        assert got == want, f"{where}: {got!r} != {want!r}"
        return
    g, w = np.asarray(got), np.asarray(want)
    assert g.shape == w.shape, f"{where}: shape {g.shape}, expected {w.shape}"
    if w.dtype.kind == "b" or g.dtype.kind in "iub" and w.dtype.kind in "iub":
        np.testing.assert_array_equal(g, w, err_msg=where)
    else:
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol,
                                   atol=atol, equal_nan=True, err_msg=where)


def case_id(case: Case) -> str:
    return case.name + (f"[{case.label}]" if case.label else "")


def parity_check(gpu, cpu, case: Case, rng, up, down, rtol=None, atol=None) -> None:
    """Run ``case`` on both backends from the same fresh inputs and compare what must agree."""
    args, kwargs, extra = case.make(rng)
    ref_out, ref_args = call(cpu, case, fresh(args), kwargs)
    if case.step_stats and not gpu.STEP_STATS:   # the documented answer of such a backend
        try:
            call(gpu, case, fresh(args), kwargs, up, down)
        except NotImplementedError:
            return
        raise AssertionError(f"{case_id(case)}: STEP_STATS is False but stats= was accepted")
    out, dargs = call(gpu, case, fresh(args), kwargs, up, down)
    compare(observe(case, out, dargs, extra, "parity"),
            observe(case, ref_out, ref_args, extra, "parity"),
            case.rtol if rtol is None else rtol, case.atol if atol is None else atol,
            case_id(case))


def meaning_check(be, case: Case, rng) -> None:
    """Run ``case`` on backend ``be`` and compare with its float64 reference."""
    args, kwargs, extra = case.make(rng)
    out, bargs = call(be, case, fresh(args), kwargs)
    want = expected(case, args, kwargs, extra)
    compare(observe(case, out, bargs, extra, "meaning"), want, case.rtol, case.atol,
            case_id(case))

