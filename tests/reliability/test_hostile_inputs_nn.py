"""Hostile inputs to the layers, optimizers and save/load: every bad value raises a clear Python
exception naming the class, the problem and the fix, before anything changes (no NaN weights
from a NaN hyperparameter, no half-applied load, no silently untrained parameter)."""
from __future__ import annotations

import copy
import os
import pickle
import types

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import nn, optim

NAN, INF = float("nan"), float("inf")


def _x(*shape, dtype=np.float32):
    return dg.Tensor(np.random.default_rng(0).standard_normal(shape).astype(dtype))


# -- layer constructors ----------------------------------------------------------------------

@pytest.mark.parametrize("make, phrase", [
    (lambda: nn.Dense(3, 2, "leaky_relu", alpha=NAN), "Dense: alpha must be a finite number"),
    (lambda: nn.Dense(3, 2, "leaky_relu", alpha="x"), "Dense: alpha must be a finite number"),
    (lambda: nn.LeakyReLU("0.1"), "LeakyReLU: alpha must be a finite number"),
    (lambda: nn.ELU(INF), "ELU: alpha must be a finite number"),
    (lambda: nn.BatchNorm1d(3, eps=-1e-5), "BatchNorm1d: eps must be a finite number >= 0"),
    (lambda: nn.BatchNorm1d(3, eps=NAN), "BatchNorm1d: eps must be a finite number >= 0"),
    (lambda: nn.BatchNorm1d(3, momentum=1.5), "BatchNorm1d: momentum must be a finite number in [0, 1]"),
    (lambda: nn.BatchNorm1d(3, momentum=-0.1), "momentum must be a finite number in [0, 1]"),
    (lambda: nn.BatchNorm1d(3, momentum=None), "momentum=None"),
    (lambda: nn.LayerNorm(3, eps=-1.0), "LayerNorm: eps must be a finite number >= 0"),
    (lambda: nn.Dropout("0.5"), "Dropout: p must be a finite number in [0, 1)"),
    (lambda: nn.Dropout(NAN), "Dropout: p must be a finite number in [0, 1)"),
    (lambda: nn.LSTM(3, 4, forget_bias="one"), "LSTM: forget_bias must be a finite number"),
])
def test_bad_layer_hyperparameters_are_named(make, phrase):
    with pytest.raises(ValueError) as e:
        make()
    assert phrase in str(e.value)


def test_bad_dtype_names_the_layer():
    with pytest.raises(TypeError, match=r"Dense: dtype 'bogus' is not a dtype; use 'float32'"):
        nn.Dense(2, 3, dtype="bogus")
    with pytest.raises(TypeError, match=r"GRU: parameters must be float32 or float64, got int32"):
        nn.GRU(2, 3, dtype="int32")


def test_valid_edge_hyperparameters_still_accepted():
    nn.BatchNorm1d(3, eps=0.0, momentum=0.0)
    nn.BatchNorm1d(3, momentum=1)
    nn.LayerNorm(3, eps=0)
    nn.Dropout(0)
    nn.Dense(2, 2, "leaky_relu", alpha=np.float32(0.2))


# -- layer inputs ----------------------------------------------------------------------------

@pytest.mark.parametrize("layer", [nn.Dense(3, 2), nn.ReLU(), nn.LayerNorm(3)])
def test_non_numeric_input_names_the_layer(layer):
    with pytest.raises(TypeError, match="the input must be a Tensor or an array of real numbers"):
        layer("abc")
    with pytest.raises(ValueError, match="numpy cannot read as one"):
        layer([[1.0, 2.0, 3.0], [1.0, 2.0]])


@pytest.mark.parametrize("cls", [nn.RNN, nn.GRU, nn.LSTM])
def test_recurrent_non_numeric_input_names_the_layer(cls):
    r = cls(3, 4)
    with pytest.raises(TypeError, match=f"{cls.__name__}: input must be a Tensor or an array"):
        r("abc")
    if cls is not nn.LSTM:
        with pytest.raises(TypeError, match=f"{cls.__name__}: initial state h0 must be a Tensor"):
            r(_x(2, 5, 3), "zeros")
    # a list of numbers still works
    out = r(np.zeros((2, 5, 3)).tolist())[0]
    assert tuple(out.shape) == (2, 5, 4)


# -- modules -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["False", 0, 1, None])
def test_train_mode_must_be_bool(mode):
    m = nn.Sequential(nn.Dense(2, 2), nn.Dropout(0.5)).eval()
    with pytest.raises(TypeError, match=r"train: mode must be True or False.*\.eval\(\)"):
        m.train(mode)
    assert not any(x.training for x in m.modules())    # unchanged
    m.train(np.bool_(True))
    assert all(x.training for x in m.modules())


def test_registering_a_cycle_is_refused():
    s = nn.Sequential(nn.Dense(2, 2))
    with pytest.raises(ValueError, match="cannot register the module itself"):
        s.append(s)
    outer = nn.Sequential(s)
    with pytest.raises(ValueError, match="a module that contains this one"):
        s.append(outer)
    assert len(s) == 1
    repr(outer)
    copy.deepcopy(outer)
    # sharing a module in two places is not a cycle
    d = nn.Dense(2, 2)
    shared = nn.Sequential(d, nn.ReLU(), d)
    assert len(list(shared.parameters())) == 2


def test_load_state_dict_refuses_overflow_and_leaves_the_model_unchanged():
    m = nn.Sequential(nn.Dense(3, 4), nn.Dense(4, 2))
    before = m.state_dict()
    sd = {k: v.astype(np.float64) for k, v in before.items()}
    sd["0.weight"] = np.full((3, 4), 0.5)
    sd["1.bias"] = np.array([1e300, 0.0])
    with pytest.raises(ValueError, match=r"1\.bias: values up to 1e\+300 overflow float32"):
        m.load_state_dict(sd)
    after = m.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    # inf and nan already in the checkpoint are not an overflow (as torch, they load)
    sd["1.bias"] = np.array([np.inf, np.nan])
    m.load_state_dict(sd)


def test_load_state_dict_takes_any_mapping():
    m = nn.Dense(3, 2)
    sd = nn.Dense(3, 2).state_dict()
    m.load_state_dict(types.MappingProxyType(sd))
    assert np.array_equal(m.state_dict()["weight"], sd["weight"])


# -- optimizers ------------------------------------------------------------------------------

_BAD_OPTIONS = [
    (optim.SGD, {"weight_decay": NAN}, "SGD: weight_decay must be a finite number >= 0"),
    (optim.SGD, {"momentum": "0.9"}, "SGD: momentum must be a finite number >= 0"),
    (optim.SGD, {"momentum": INF}, "SGD: momentum must be a finite number >= 0"),
    (optim.SGD, {"dampening": "x"}, "SGD: dampening must be a finite number"),
    (optim.SGD, {"nesterov": "yes", "momentum": 0.9}, "SGD: nesterov must be True or False"),
    (optim.SGD, {"lr": INF}, "SGD: lr must be a finite number >= 0"),
    (optim.Adam, {"eps": NAN}, "Adam: eps must be a finite number >= 0"),
    (optim.Adam, {"eps": None}, "Adam: eps must be a finite number >= 0"),
    (optim.Adam, {"betas": (0.9,)}, "Adam: betas must be a pair (beta1, beta2)"),
    (optim.Adam, {"betas": 0.9}, "Adam: betas must be a pair (beta1, beta2)"),
    (optim.Adam, {"betas": ("a", "b")}, "Adam: betas[0] must be a finite number in [0, 1)"),
    (optim.AdamW, {"weight_decay": INF}, "AdamW: weight_decay must be a finite number >= 0"),
    (optim.RMSprop, {"alpha": NAN}, "RMSprop: alpha must be a finite number >= 0"),
    (optim.RMSprop, {"momentum": "x"}, "RMSprop: momentum must be a finite number >= 0"),
    (optim.RMSprop, {"centered": "yes"}, "RMSprop: centered must be True or False"),
]


@pytest.mark.parametrize("cls, kw, phrase", _BAD_OPTIONS)
def test_bad_optimizer_options_raise_at_construction(cls, kw, phrase):
    with pytest.raises(ValueError) as e:
        cls(nn.Dense(3, 2).parameters(), **kw)
    assert phrase in str(e.value)


def _train_step(m, opt):
    loss = (m(_x(4, 3)) ** 2).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()


@pytest.mark.parametrize("key, value, phrase", [
    ("lr", "0.1", "lr must be a finite number >= 0"),
    ("lr", NAN, "lr must be a finite number >= 0"),
    ("lr", None, "lr must be a finite number >= 0"),
    ("betas", (2, 0.9), "betas[0] must be a finite number in [0, 1)"),
    ("weight_decay", -1, "weight_decay must be a finite number >= 0"),
])
def test_param_group_edits_are_checked_when_assigned(key, value, phrase):
    m = nn.Dense(3, 2)
    opt = optim.Adam(m.parameters(), lr=0.1)
    with pytest.raises(ValueError) as e:
        opt.param_groups[0][key] = value
    assert phrase in str(e.value)
    with pytest.raises(ValueError):
        opt.param_groups[0].update({key: value})
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["betas"] == (0.9, 0.999)
    _train_step(m, opt)   # the optimizer still works
    assert np.isfinite(m.weight.numpy()).all()


def test_param_group_edits_within_range_take_effect():
    m = nn.Dense(3, 2)
    opt = optim.SGD(m.parameters(), lr=0.1)
    opt.param_groups[0]["lr"] = 0.0
    w = m.weight.numpy().copy()
    _train_step(m, opt)
    assert np.array_equal(w, m.weight.numpy())
    sched = optim.StepLR(opt, step_size=1, gamma=0.5)   # schedulers assign lr every step
    sched.step()
    opt.param_groups[0]["custom_note"] = "fine"           # extra keys are allowed, as in torch
    plain = copy.deepcopy(opt.param_groups[0])
    assert type(plain) is dict and type(plain["params"]) is list
    assert type(pickle.loads(pickle.dumps({k: v for k, v in opt.param_groups[0].items()
                                           if k != "params"}))) is dict


def test_appending_to_a_param_group_is_refused_not_ignored():
    m, extra = nn.Dense(3, 2), nn.Dense(3, 2)
    opt = optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(TypeError, match=r"cannot be edited after construction.*add_param_group"):
        opt.param_groups[0]["params"].append(extra.weight)
    with pytest.raises(TypeError, match="add_param_group"):
        opt.param_groups[0]["params"] = [extra.weight]
    with pytest.raises(TypeError, match="cannot be deleted"):
        del opt.param_groups[0]["lr"]
    assert len(opt.param_groups[0]["params"]) == 2
    opt.add_param_group({"params": list(extra.parameters())})
    w = extra.weight.numpy().copy()
    loss = (extra(_x(4, 3)) ** 2).sum()
    loss.backward()
    opt.step()
    assert not np.array_equal(w, extra.weight.numpy())


def test_add_param_group_refuses_duplicates_and_unknown_options():
    m = nn.Dense(3, 2)
    opt = optim.SGD([m.weight], lr=0.1)
    with pytest.raises(ValueError, match="already in a param group"):
        opt.add_param_group({"params": [m.weight, m.bias]})
    with pytest.raises(TypeError, match="unknown option.*lrr"):
        opt.add_param_group({"params": [m.bias], "lrr": 0.1})
    with pytest.raises(ValueError, match="lr must be a finite number"):
        opt.add_param_group({"params": [m.bias], "lr": -1})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": [m.bias], "lr": 0.01})
    assert len(opt.param_groups) == 2


def test_single_dict_of_params_is_named():
    m = nn.Dense(3, 2)
    with pytest.raises(TypeError, match=r"not a single dict; wrap it in a list"):
        optim.SGD({"params": m.parameters()}, lr=0.1)


def test_optimizer_state_dict_round_trip_after_edits():
    m = nn.Dense(3, 2)
    opt = optim.Adam(m.parameters(), lr=0.1)
    _train_step(m, opt)
    opt.param_groups[0]["lr"] = 0.05
    sd = opt.state_dict()
    opt2 = optim.Adam(m.parameters(), lr=1.0)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == 0.05
    with pytest.raises(ValueError, match="lr must be a finite number"):
        opt2.param_groups[0]["lr"] = -0.5


# -- save / load -----------------------------------------------------------------------------

def test_save_to_a_missing_folder_or_a_directory_names_the_path(tmp_path):
    sd = nn.Dense(3, 2).state_dict()
    with pytest.raises(FileNotFoundError, match=r"deepgrad\.save: the folder .* does not exist.*makedirs"):
        dg.save(sd, tmp_path / "nope" / "m.dg")
    with pytest.raises(IsADirectoryError, match=r"deepgrad\.save: .* is a directory; give a file path"):
        dg.save(sd, tmp_path)
    with pytest.raises(ValueError, match="the path is empty"):
        dg.save(sd, "")
    assert os.listdir(tmp_path) == []        # no temporary left behind


def test_safetensors_written_by_deepgrad_verify_their_data(tmp_path):
    pytest.importorskip("safetensors")
    sd = nn.Sequential(nn.Dense(3, 4), nn.Dense(4, 2)).state_dict()
    path = tmp_path / "m.safetensors"
    dg.save(sd, path)
    back = dg.load(path)
    assert all(np.array_equal(back[k], sd[k]) for k in sd)
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    for i in (8 + n, len(raw) - 1, 8 + n + (len(raw) - 8 - n) // 2):   # data bytes
        bad = bytearray(raw)
        bad[i] ^= 0x01
        path.write_bytes(bytes(bad))
        with pytest.raises(ValueError, match="checksum mismatch"):
            dg.load(path)
    # files written by other tools (no deepgrad checksum) still load
    import safetensors.numpy as stn
    stn.save_file({"w": np.ones(3, np.float32)}, str(path))
    assert np.array_equal(dg.load(path)["w"], np.ones(3, np.float32))


def test_optimizer_load_refuses_negative_squared_averages_unchanged():
    m = nn.Dense(3, 2)
    opt = optim.Adam(m.parameters(), lr=0.1)
    _train_step(m, opt)
    sd = opt.state_dict()
    sd["state"][0]["exp_avg_sq"] = -np.abs(sd["state"][0]["exp_avg_sq"]) - 1.0
    opt2 = optim.Adam(m.parameters(), lr=0.1)
    _train_step(m, opt2)
    before = opt2.state_dict()["state"][0]["exp_avg_sq"].copy()
    with pytest.raises(ValueError, match=r"'exp_avg_sq' of parameter 0 holds negative values"):
        opt2.load_state_dict(sd)
    assert np.array_equal(before, opt2.state_dict()["state"][0]["exp_avg_sq"])
    rms = optim.RMSprop(m.parameters())
    _train_step(m, rms)
    bad = rms.state_dict()
    bad["state"][1]["square_avg"] = bad["state"][1]["square_avg"] - 10.0
    with pytest.raises(ValueError, match="'square_avg' of parameter 1 holds negative values"):
        rms.load_state_dict(bad)


# -- init --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fill, phrase", [
    (lambda t: dg.init.normal_(t, 0.0, NAN), "normal_: std must be a finite number"),
    (lambda t: dg.init.normal_(t, INF, 1.0), "normal_: mean must be a finite number"),
    (lambda t: dg.init.normal_(t, 0.0, "1"), "normal_: std must be a finite number"),
    (lambda t: dg.init.uniform_(t, NAN, 1.0), "uniform_: a must be a finite number"),
    (lambda t: dg.init.uniform_(t, -INF, INF), "uniform_: a must be a finite number"),
    (lambda t: dg.init.xavier_uniform_(t, gain=NAN), "xavier_uniform_: gain must be a finite"),
    (lambda t: dg.init.kaiming_normal_(t, a="x", nonlinearity="leaky_relu"),
     "calculate_gain: param must be a finite number"),
])
def test_init_refuses_non_finite_arguments(fill, phrase):
    p = nn.Parameter(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError) as e:
        fill(p)
    assert phrase in str(e.value)
    assert np.array_equal(p.numpy(), np.zeros((3, 4)))


def test_init_of_zero_element_tensor_is_a_no_op_and_arrays_are_named():
    for fn in (dg.init.xavier_uniform_, dg.init.xavier_normal_, dg.init.kaiming_uniform_,
               dg.init.kaiming_normal_, dg.init.lecun_normal_):
        p = nn.Parameter(np.zeros((0, 4), np.float32))
        assert fn(p) is p          # was ZeroDivisionError
    with pytest.raises(TypeError, match=r"init: expected a Tensor or Parameter.*deepgrad\.Tensor"):
        dg.init.normal_(np.zeros(3))


# -- torch state dicts -----------------------------------------------------------------------

def test_torch_num_batches_tracked_and_bfloat16_are_named():
    torch = pytest.importorskip("torch")
    tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    m = nn.Sequential(nn.Dense(3, 4), nn.BatchNorm1d(4))
    before = m.state_dict()
    for bad in (torch.tensor([1, 2]), torch.tensor(1.5), "abc", torch.tensor(-3)):
        sd = dict(tm.state_dict())
        sd["1.num_batches_tracked"] = bad
        with pytest.raises(ValueError, match=r"'1\.num_batches_tracked' must be a non-negative "
                                             "integer scalar"):
            m.load_torch_state_dict(sd)
    sd = dict(tm.state_dict())
    sd["0.bias"] = sd["0.bias"].to(torch.bfloat16)
    with pytest.raises(TypeError, match=r"'0\.bias' is a bfloat16 tensor.*v\.float\(\)"):
        m.load_torch_state_dict(sd)
    after = m.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    m.load_torch_state_dict(tm.state_dict())


def test_rnn_nonlinearity_set_after_construction_is_checked_at_forward():
    rnn = dg.nn.RNN(3, 4)
    x = dg.tensor(np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32))
    rnn.nonlinearity = "sigmoid"   # a valid activation name, not an RNN nonlinearity
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"):
        rnn(x)
    rnn.nonlinearity = "relu"
    y, h = rnn(x)
    assert y.shape == (2, 5, 4) and np.all(y.numpy() >= 0)
