"""``deepgrad study --framework torch``: the study's runs as PyTorch models, watched by
deepgrad's GradientMonitor, so the two frameworks' gradient flow can be laid side by side.

Each run builds the deepgrad model of its configuration (deepgrad's initialisation, seeded as
usual) and the equivalent torch.nn model (Dense -> Linear + activation module, BatchNorm1d,
residual blocks, RNN/LSTM/GRU with batch_first), and loads the deepgrad weights into it through
``torch_state_dict()``: both frameworks start from the same weights. Then the torch model is
trained exactly as ``study.run_one`` trains the deepgrad one (same data split, batches, loss,
optimizer, cosine schedule) and the record has the same fields. torch is imported only here.
"""
from __future__ import annotations

import math
import time

import numpy as np

_ACTS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "ReLU", "leaky_relu": "LeakyReLU",
         "elu": "ELU", "selu": "SELU", "gelu": "GELU", "silu": "SiLU", "softplus": "Softplus",
         "softsign": "Softsign"}


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("deepgrad study --framework torch needs PyTorch installed") from None
    return torch


def _act(torch, name: str, alpha: float):
    if name in (None, "identity"):
        return []
    if name not in _ACTS:
        raise ValueError(f"--framework torch: no torch module for activation {name!r}")
    cls = getattr(torch.nn, _ACTS[name])
    if name == "leaky_relu":
        return [cls(alpha)]
    if name == "elu":
        return [cls(alpha)]
    return [cls()]


def to_torch(m, made: dict | None = None):
    """The torch.nn modules equivalent to deepgrad module ``m`` (a list: a fused Dense becomes
    Linear + activation), with the parameter names torch_state_dict() uses. ``made``: when
    given, {id(deepgrad module): its torch module} for ``m`` and everything inside it (a Dense:
    its Linear)."""
    out = _to_torch(m, made)
    if made is not None:
        made[id(m)] = out[0]
    return out


def _to_torch(m, made):
    torch = _torch()
    from .nn.layers import Activation, BatchNorm1d, Dense, LayerNorm, Residual, Sequential
    from .nn.rnn import GRU, LSTM, RNN
    if isinstance(m, Dense):
        lin = torch.nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        return [lin] + _act(torch, m.activation, m.alpha)
    if isinstance(m, Activation):
        return _act(torch, m.activation, getattr(m, "alpha", 0.01))
    if isinstance(m, BatchNorm1d):
        return [torch.nn.BatchNorm1d(m.num_features, eps=m.eps, momentum=m.momentum)]
    if isinstance(m, LayerNorm):
        return [torch.nn.LayerNorm(m.normalized_shape)]
    if isinstance(m, Sequential):
        mods = []
        for c in m.children():
            mods += to_torch(c, made)
        return [torch.nn.Sequential(*mods)]
    if isinstance(m, Residual):
        if m.projection is not None or m.fixed is not None:
            raise ValueError("--framework torch: residual blocks with a projection are not "
                             "mapped")
        return [_TorchResidual(to_torch(m.block, made)[0])]
    for cls, tcls in ((LSTM, "LSTM"), (GRU, "GRU"), (RNN, "RNN")):
        if isinstance(m, cls):
            kw = {"nonlinearity": m.nonlinearity} if cls is RNN else {}
            return [getattr(torch.nn, tcls)(m.input_size, m.hidden_size, batch_first=True,
                                            bias=m.bias is not None, **kw)]
    raise ValueError(f"--framework torch: no torch equivalent for {type(m).__name__}")


def _TorchResidual(block):
    torch = _torch()

    class Residual(torch.nn.Module):
        def __init__(self, block):
            super().__init__()
            self.block = block

        def forward(self, x):
            return self.block(x) + x
    return Residual(block)


def _regressor(cell):
    torch = _torch()

    class Regressor(torch.nn.Module):
        """A recurrent layer and a linear read-out of its last output (study._Regressor)."""

        def __init__(self, cell, hidden):
            super().__init__()
            self.cell = cell
            self.head = torch.nn.Linear(hidden, 1)

        def forward(self, x):
            out, _ = self.cell(x)
            return self.head(out[:, -1])
    return Regressor(cell, cell.hidden_size)


def torch_model_for(dg_model, made: dict | None = None):
    """The torch twin of a study model, with the deepgrad model's weights loaded (``made``: see
    to_torch)."""
    from .study_runs import _Regressor
    if isinstance(dg_model, _Regressor):
        tm = _regressor(to_torch(dg_model.cell, made)[0])
        if made is not None:
            made[id(dg_model.head)] = tm.head
            made[id(dg_model)] = tm
    else:
        tm = to_torch(dg_model, made)[0]
    tm = tm.double() if dg_model.arena.dtype == np.float64 else tm
    tm.load_state_dict(dg_model.torch_state_dict())
    return tm


def run_one_torch(cfg, progress=None) -> dict:
    """study.run_one for the torch twin of ``cfg``'s model (see the module docstring)."""
    torch = _torch()
    from .random import manual_seed
    from .tensor import tensor
    from . import study_runs as study
    from .monitor import GradientMonitor, diagnose
    if cfg.device != "cpu":
        raise ValueError("--framework torch runs on the CPU here (--device cpu)")
    manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if cfg.model == "mlp":
        X, y, tr, te, classify, n_out = study.mlp_data(cfg, rng)
        dgm = study.build_mlp(cfg, X.shape[1], n_out)
    else:
        from ._seqdata import adding_problem
        X, y = adding_problem(4096 + 512, cfg.seq_len, seed=cfg.seed)
        tr, te = np.arange(4096), np.arange(4096, 4096 + 512)
        classify = False
        dgm = study._build_rnn(cfg)
    dgm(tensor(X[tr[:2]]))       # lay out the arena
    made = {}
    model = torch_model_for(dgm, made)
    F = torch.nn.functional
    loss_fn = F.cross_entropy if classify else F.mse_loss
    params = model.parameters()
    name = cfg.optimizer.lower()
    opt = {"adam": lambda: torch.optim.Adam(params, lr=cfg.lr),
           "adamw": lambda: torch.optim.AdamW(params, lr=cfg.lr),
           "sgd": lambda: torch.optim.SGD(params, lr=cfg.lr, momentum=0.9),
           "rmsprop": lambda: torch.optim.RMSprop(params, lr=cfg.lr)}[name]()
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
             if cfg.model == "mlp" else None)
    every = cfg.every or max(1, cfg.steps // 25)
    # the deepgrad run's layers (a Dense: its Linear, paired with the activation after it; a
    # Dense + BatchNorm + activation block: the block), so the two histories compare layer by
    # layer
    from .monitor.capture_deepgrad import _default_layers
    mon = GradientMonitor(model, every=every,
                          layers=[made[id(m)] for m in _default_layers(dgm)])
    Xtr = torch.from_numpy(np.ascontiguousarray(X[tr]))
    ytr = torch.from_numpy(np.ascontiguousarray(y[tr]))
    bs = min(cfg.batch_size, len(tr))
    curve = []
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        idx = torch.from_numpy(rng.integers(0, len(tr), bs))
        loss = loss_fn(model(Xtr[idx]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        mon.step(loss)
        curve.append(loss.item())
        if progress is not None:
            progress(step + 1, curve[-1])
    seconds = time.perf_counter() - t0
    # the final per-layer backward signal on one batch (no update)
    row = [None] * len(mon.layers)
    hooks = []
    for i, layer in enumerate(mon.layers):
        def fwd(m, a, out, i=i):
            o = out[0] if isinstance(out, tuple) else out
            if o.requires_grad:
                o.register_hook(lambda g, i=i: row.__setitem__(i, float(g.double().norm())))
        hooks.append(layer.register_forward_hook(fwd))
    idx = torch.from_numpy(rng.integers(0, len(tr), bs))
    model.zero_grad()
    loss_fn(model(Xtr[idx]), ytr[idx]).backward()
    for h in hooks:
        h.remove()
    model.eval()
    with torch.no_grad():
        train_loss = float(loss_fn(model(Xtr), ytr))
        pe = model(torch.from_numpy(np.ascontiguousarray(X[te]))).numpy()
    mon.close()
    if classify:
        acc, test_mse = float(np.mean(pe.argmax(axis=1) == y[te])), None
    else:
        acc, test_mse = None, float(np.mean((pe.astype(np.float64) - y[te]) ** 2))
    hist = mon.to_dict()
    findings = diagnose(hist, mon.thresholds)
    r0 = study._ratio(hist["signal_norm"][0]) if hist["signal_norm"] else None
    r1 = study._ratio(row)
    result = {"signal_ratio_init": r0, "signal_ratio_final": r1, "final_loss": train_loss,
              "accuracy": acc, "test_mse": test_mse, "seconds": seconds,
              "monitor_seconds": mon.seconds, "findings": [f.message for f in findings]}
    if not math.isfinite(train_loss):
        result["final_loss"] = None
    return {"config": cfg.to_dict(), "result": result, "loss_curve": curve, "history": hist,
            "final_signal": row}
