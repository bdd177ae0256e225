"""The study's runs: configurations, grids, data sets and the models they build. Below
study.py (which trains and reports) so that the torch twin (study_torch) and the report use it
without importing the study itself."""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np

from . import nn, optim

#: The classic comparison: (label, activation, init, norm, residual).
CLASSIC_MLP = (
    ("sigmoid-normal", "sigmoid", "normal", "none", False),
    ("tanh-xavier", "tanh", "xavier", "none", False),
    ("relu-he", "relu", "he", "none", False),
    ("leaky_relu-he", "leaky_relu", "he", "none", False),
    ("sigmoid-batchnorm", "sigmoid", "xavier", "batch", False),
    ("sigmoid-residual", "sigmoid", "xavier", "none", True),
)
BUILTIN_DATASETS = ("spirals", "moons", "circles", "gaussian_mixture", "xor")


@dataclass
class RunConfig:
    """One training run. ``model`` is mlp, rnn, lstm or gru; recurrent runs use the adding
    problem of length ``seq_len`` with ``hidden`` units. For MLPs the learning rate decays from
    ``lr`` to zero over ``steps`` (cosine); recurrent runs keep it constant."""
    name: str
    model: str = "mlp"
    dataset: str = "spirals"
    depth: int = 20
    width: int = 64
    activation: str = "sigmoid"
    init: str = "xavier"
    norm: str = "none"
    residual: bool = False
    optimizer: str = "adam"
    lr: float = 1e-3
    steps: int = 400
    batch_size: int = 64
    seed: int = 0
    device: str = "cpu"
    seq_len: int = 50
    hidden: int = 32
    every: int = 0  # monitor every k steps; 0 = about 25 records per run
    # mean-field initialisation (init="meanfield"): weights N(0, sigma_w2 / fan_in), biases
    # N(0, sigma_b2), as in the theory (the phase study)
    sigma_w2: float | None = None
    sigma_b2: float = 0.0
    framework: str = "deepgrad"   # or "torch": the same run as a torch.nn model (study_torch)

    def to_dict(self) -> dict:
        return asdict(self)


def _mlp_name(depth, width, act, init, norm, residual) -> str:
    s = f"mlp-d{depth}-w{width}-{act}-{init}"
    if norm != "none":
        s += f"-{norm}norm"
    if residual:
        s += "-residual"
    return s


def classic_grid(depths=(20,), widths=(64,), rnn: bool = True, **common) -> list[RunConfig]:
    """The six classic MLP configurations per (depth, width), plus RNN vs LSTM on the adding
    problem. ``common`` sets the shared options (steps, lr, optimizer, dataset, ...)."""
    runs = []
    rnn_opts = {k: common.pop(k) for k in ("rnn_steps", "rnn_lr") if k in common}
    for d, w in itertools.product(depths, widths):
        for label, act, init, norm, res in CLASSIC_MLP:
            runs.append(RunConfig(name=_mlp_name(d, w, act, init, norm, res), depth=d, width=w,
                                  activation=act, init=init, norm=norm, residual=res, **common))
    if rnn:
        runs += rnn_grid(**common, **rnn_opts)
    return runs


def rnn_grid(steps: int = 400, lr: float = 1e-3, rnn_steps: int | None = None,
             rnn_lr: float | None = None, **common) -> list[RunConfig]:
    """A tanh RNN and an LSTM of the same size on the adding problem."""
    keep = {k: v for k, v in common.items() if k in ("seed", "device", "seq_len", "hidden",
                                                    "batch_size", "optimizer", "framework")}
    T = keep.get("seq_len", 50)
    return [RunConfig(name=f"{cell}-adding-T{T}", model=cell, dataset="adding",
                      activation="tanh", init="default", depth=1,
                      width=keep.get("hidden", 32), steps=rnn_steps or steps,
                      lr=rnn_lr or 0.02, **keep)
            for cell in ("rnn", "lstm")]


def build_grid(depths, widths, activations, inits, norms, residuals, rnn: bool = True,
               **common) -> list[RunConfig]:
    """Every combination of the given options; ``inits`` may contain "auto" (He for the ReLU
    family, Xavier otherwise)."""
    from .init import default_for
    for what, v in (("depths", depths), ("widths", widths), ("activations", activations),
                    ("inits", inits), ("norms", norms), ("residuals", residuals)):
        if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
            raise ValueError(f"build_grid: {what} must be a list of values (e.g. [{v!r}]), got "
                             f"{v!r}; a string would be taken character by character")
    runs, seen = [], set()
    rnn_opts = {k: common.pop(k) for k in ("rnn_steps", "rnn_lr") if k in common}
    for d, w, act, init, norm, res in itertools.product(depths, widths, activations, inits,
                                                         norms, residuals):
        if init == "auto":
            init = "he" if default_for(act) == "he" else "xavier"
        name = _mlp_name(d, w, act, init, norm, res)
        if name in seen:
            continue
        seen.add(name)
        runs.append(RunConfig(name=name, depth=d, width=w, activation=act, init=init, norm=norm,
                              residual=res, **common))
    if rnn:
        runs += rnn_grid(**common, **rnn_opts)
    return runs


# ---------------------------------------------------------------------------------------------
# data and models


def load_dataset(name: str, seed: int):
    """(X float32 (n, f), y) for a built-in name or a user .npz/.csv path."""
    import os
    from . import data
    if isinstance(name, os.PathLike):   # a pathlib.Path: its text
        name = os.fspath(name)
    if not isinstance(name, str):
        raise TypeError(f"load_dataset: the dataset must be a name ({', '.join(BUILTIN_DATASETS)}) "
                        f"or a path to a .npz/.csv file, got {type(name).__name__}")
    if name in BUILTIN_DATASETS:
        if name == "xor":
            return data.xor()
        return getattr(data, name)(600, seed=seed)
    if name.endswith((".npz", ".csv")):
        return data.load_arrays(name)
    raise ValueError(f"unknown dataset {name!r}: use one of {', '.join(BUILTIN_DATASETS)} or a "
                     "path to a .npz (arrays X, y) or .csv (label in the last column) file")


def build_mlp(cfg: RunConfig, n_in: int, n_out: int) -> nn.Sequential:
    """``depth`` layers: input layer, depth-2 hidden layers (Dense with the activation, or
    Dense -> BatchNorm -> act; with ``residual`` each is a two-Dense residual block), output."""
    if cfg.depth < 2:
        raise ValueError(f"depth must be >= 2 (input and output layers), got {cfg.depth}")
    act, init, w = cfg.activation, cfg.init, cfg.width

    if init == "meanfield":
        init = "xavier"   # replaced below by the mean-field draw

    def hidden(n_from):
        if cfg.norm == "batch":
            return nn.Sequential(nn.Dense(n_from, w, None, init=init), nn.BatchNorm1d(w),
                                 nn.Activation(act))
        if cfg.norm != "none":
            raise ValueError(f"normalization must be 'none' or 'batch', got {cfg.norm!r}")
        return nn.Dense(n_from, w, act, init=init)

    layers = [hidden(n_in)]
    if cfg.residual:
        # basic residual blocks x + Dense(act(Dense(x))) ending linear: the branch adds a
        # zero-mean correction (a sigmoid-ended branch would add ~0.5 per block and drift). A
        # block counts as one layer, as the monitor sees it.
        layers += [nn.Residual(nn.Sequential(hidden(w), nn.Dense(w, w, init=init)))
                   for _ in range(cfg.depth - 2)]
    else:
        layers += [hidden(w) for _ in range(cfg.depth - 2)]
    layers.append(nn.Dense(w, n_out, init=init))
    model = nn.Sequential(*layers)
    if cfg.init == "meanfield":
        rng = np.random.default_rng([cfg.seed, 7])
        for m in model.modules():
            if isinstance(m, nn.Dense):
                fan_in = m.weight.shape[0]
                m.weight.numpy()[...] = rng.standard_normal(m.weight.shape) * math.sqrt(
                    cfg.sigma_w2 / fan_in)
                if m.bias is not None:
                    m.bias.numpy()[...] = rng.standard_normal(m.bias.shape) * math.sqrt(
                        cfg.sigma_b2)
    return model


class _Regressor(nn.Module):
    """A recurrent layer followed by a linear read-out of its last hidden state."""

    def __init__(self, cell: nn.Module, hidden: int):
        super().__init__()
        self.cell = cell
        self.head = nn.Dense(hidden, 1)

    def forward(self, x):
        _, last = self.cell(x)
        return self.head(last[0] if isinstance(last, tuple) else last)


def _build_rnn(cfg: RunConfig) -> nn.Module:
    cell = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cfg.model](2, cfg.hidden)
    return _Regressor(cell, cfg.hidden)


def _optimizer(cfg: RunConfig, params):
    name = cfg.optimizer.lower()
    if name == "adam":
        return optim.Adam(params, lr=cfg.lr)
    if name == "adamw":
        return optim.AdamW(params, lr=cfg.lr)
    if name == "sgd":
        return optim.SGD(params, lr=cfg.lr, momentum=0.9)
    if name == "rmsprop":
        return optim.RMSprop(params, lr=cfg.lr)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}: use adam, adamw, sgd or rmsprop")


def _ratio(row) -> float | None:
    vals = [v for v in (row or []) if v is not None and math.isfinite(v)]
    if len(vals) < 2 or vals[-1] == 0:
        return None
    return vals[0] / vals[-1]


def mlp_data(cfg: RunConfig, rng):
    """(X float32, y, train indices, test indices, classify, n_out) for an MLP run: the data
    set, a fifth held out by ``rng``'s permutation, labels as int64 (classification) or float32
    targets (regression)."""
    X, y = load_dataset(cfg.dataset, cfg.seed)
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) < 4:
        raise ValueError(f"dataset {cfg.dataset!r}: need X of shape (n >= 4, features), got {X.shape}")
    classify = np.asarray(y).dtype.kind in "iu"
    perm = rng.permutation(len(X))
    n_test = max(1, len(X) // 5)
    te, tr = perm[:n_test], perm[n_test:]
    if classify:
        y = np.asarray(y, dtype=np.int64).reshape(-1)
        n_out = int(y.max()) + 1
    else:
        y = np.asarray(y, dtype=np.float32).reshape(len(X), -1)
        n_out = y.shape[1]
    return X, y, tr, te, classify, n_out
