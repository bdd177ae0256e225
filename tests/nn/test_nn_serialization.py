"""deepgrad.save / deepgrad.load: round trips, no pickle, atomic writes, corrupted files."""
import os

import numpy as np
import pytest

import deepgrad as dg


def _obj():
    return {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1.5, -2.0]),
            "labels": np.array([1, 2, 3], dtype=np.int64), "t": dg.tensor([1.0, 2.0]),
            "nested": {"step": 7, "lr": 0.01, "nan": float("nan"), "inf": float("-inf"),
                       "flag": True, "none": None, "name": "adam", 3: [1, 2.5, "x"],
                       "tup": (1, 2), "empty": np.zeros((0, 4), dtype=np.float32)}}


def test_round_trip(tmp_path):
    p = tmp_path / "obj.dg"
    dg.save(_obj(), p)
    back = dg.load(p)
    o = _obj()
    for k in ("w", "b", "labels"):
        assert back[k].dtype == o[k].dtype
        np.testing.assert_array_equal(back[k], o[k])
    assert isinstance(back["t"], dg.Tensor) and back["t"].numpy().tolist() == [1.0, 2.0]
    n = back["nested"]
    assert n["step"] == 7 and n["lr"] == 0.01 and np.isnan(n["nan"]) and n["inf"] == -np.inf
    assert n["flag"] is True and n["none"] is None and n[3] == [1, 2.5, "x"] and n["tup"] == (1, 2)
    assert n["empty"].shape == (0, 4)
    assert [f for f in os.listdir(tmp_path)] == ["obj.dg"]   # no temp file left behind


@pytest.mark.parametrize("fmt", ["deepgrad", "safetensors"])
def test_round_trip_keeps_every_shape_and_dtype(tmp_path, fmt):
    """0-d arrays stay 0-d (np.ascontiguousarray made them shape (1,)), Fortran-ordered and
    big-endian arrays come back equal and native, every supported dtype is exact."""
    if fmt == "safetensors":
        pytest.importorskip("safetensors")
    rng = np.random.default_rng(0)
    state = {f"d_{t}": (rng.standard_normal((3, 2)) * 50).astype(t)
             for t in ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
                       "uint8", "uint16", "uint32", "uint64", "bool")}
    state.update({"scalar": np.array(3.25), "scalar_t": dg.tensor(np.array(-1.5, np.float32)),
                  "fortran": np.asfortranarray(rng.standard_normal((3, 4))),
                  "big_endian": np.arange(5, dtype=">i4"), "empty": np.zeros((2, 0, 3))})
    dg.save(state, tmp_path / "s.bin", format=fmt)
    back = dg.load(tmp_path / "s.bin", format=fmt)
    assert set(back) == set(state)
    for k, v in state.items():
        v = v.numpy() if isinstance(v, dg.Tensor) else v
        got = back[k].numpy() if isinstance(back[k], dg.Tensor) else back[k]
        assert got.shape == v.shape and got.dtype == v.dtype.newbyteorder("="), k
        assert got.dtype.isnative and got.tobytes() == np.ascontiguousarray(
            v.astype(got.dtype)).tobytes(), k


def test_refuses_objects_that_would_need_pickle(tmp_path):
    with pytest.raises(TypeError, match="cannot store a object"):
        dg.save({"x": object()}, tmp_path / "x.dg")
    assert not os.listdir(tmp_path)


def test_overwrite_is_atomic(tmp_path):
    p = tmp_path / "m.dg"
    dg.save({"a": np.ones(3)}, p)
    with pytest.raises(TypeError):
        dg.save({"a": np.ones(3), "bad": {1.5: 2}}, p)      # fails before touching the target
    np.testing.assert_array_equal(dg.load(p)["a"], np.ones(3))
    assert os.listdir(tmp_path) == ["m.dg"]


def test_truncated_foreign_and_corrupted_files(tmp_path):
    p = tmp_path / "m.dg"
    dg.save(_obj(), p)
    blob = p.read_bytes()
    for cut in (4, 30, len(blob) - 10):
        (tmp_path / "cut.dg").write_bytes(blob[:cut])
        with pytest.raises(ValueError, match="truncated|not a deepgrad file|corrupted"):
            dg.load(tmp_path / "cut.dg")
    (tmp_path / "foreign.npz").write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(ValueError, match="not a deepgrad file"):
        dg.load(tmp_path / "foreign.npz")
    flipped = bytearray(blob)
    flipped[-3] ^= 0xFF
    (tmp_path / "flip.dg").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="checksum"):
        dg.load(tmp_path / "flip.dg")
    (tmp_path / "extra.dg").write_bytes(blob + b"\0")
    with pytest.raises(ValueError, match="trailing"):
        dg.load(tmp_path / "extra.dg")
