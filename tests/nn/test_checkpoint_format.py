"""Issue 10, items 4, 5 and 9: checkpoints verify everything they read (header and data under one
checksum, strict validation, bounded memory), killed saves leave nothing behind, files follow the
umask. Plus the safetensors format (issue 12). load_state_dict: test_checkpoint_state_dict.py."""
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zlib

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import nn, serialization


def _state():
    rng = np.random.default_rng(0)
    return {"0.weight": rng.standard_normal((8, 6)).astype(np.float32),
            "0.bias": rng.standard_normal(6).astype(np.float32),
            "1.weight": rng.standard_normal((6, 6)).astype(np.float32),
            "meta": {"step": 3, "name": "x"}}


def _v1_bytes(tree, arrays_meta, data: bytes) -> bytes:
    """A version-1 file (checksum over the data block only) with a header of our choosing."""
    header = json.dumps({"format": "deepgrad", "version": 1, "tree": tree, "arrays": arrays_meta,
                         "data_size": len(data), "crc32": zlib.crc32(data)}).encode()
    pre = struct.pack("<8sIQ", b"DEEPGRAD", 1, len(header))
    pad = (-(len(pre) + len(header))) % 64
    return pre + header + b"\0" * pad + data


def test_every_header_byte_is_covered_by_the_checksum(tmp_path):
    p = tmp_path / "m.dg"
    dg.save(_state(), p)
    blob = p.read_bytes()
    hlen = struct.unpack_from("<Q", blob, 12)[0]
    header = json.loads(blob[20:20 + hlen])
    assert header["version"] == 2
    for pos in range(8, 20 + hlen):          # version, header length and every header byte
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        (tmp_path / "bad.dg").write_bytes(bytes(bad))
        with pytest.raises(ValueError, match="deepgrad.load"):
            dg.load(tmp_path / "bad.dg")


def test_swapped_offsets_are_caught(tmp_path):
    """The attack of the issue: swap two weights' offsets in the header, fix up nothing else:
    version 2 catches it by the checksum."""
    p = tmp_path / "m.dg"
    dg.save({"a": np.zeros(16, np.float32), "b": np.ones(16, np.float32)}, p)
    blob = p.read_bytes()
    hlen = struct.unpack_from("<Q", blob, 12)[0]
    h = json.loads(blob[20:20 + hlen])
    h["arrays"][0]["offset"], h["arrays"][1]["offset"] = (h["arrays"][1]["offset"],
                                                           h["arrays"][0]["offset"])
    new = json.dumps(h, separators=(",", ":")).encode()
    assert len(new) == hlen
    (tmp_path / "swap.dg").write_bytes(blob[:20] + new + blob[20 + hlen:])
    with pytest.raises(ValueError, match="checksum"):
        dg.load(tmp_path / "swap.dg")


def test_every_truncation_and_every_data_flip_is_refused(tmp_path):
    p = tmp_path / "m.dg"
    dg.save({"a": np.arange(5, dtype=np.float32), "b": [np.ones(3), 2.5]}, p)
    blob = p.read_bytes()
    for cut in range(len(blob)):
        (tmp_path / "cut.dg").write_bytes(blob[:cut])
        with pytest.raises(ValueError, match="deepgrad.load"):
            dg.load(tmp_path / "cut.dg")
    for pos in range(len(blob)):
        bad = bytearray(blob)
        bad[pos] ^= 0x80
        (tmp_path / "bad.dg").write_bytes(bytes(bad))
        with pytest.raises(ValueError, match="deepgrad.load"):
            dg.load(tmp_path / "bad.dg")


def test_a_load_costs_one_copy_of_the_data(tmp_path):
    """The arrays are read straight into their own memory (the loader used to read the whole
    file into a buffer and copy every array out of it: twice the checkpoint in RAM)."""
    n = 8 << 20                                           # 32 MiB of float32 in 4 arrays
    state = {f"w{i}": np.full(n // 4, float(i), np.float32) for i in range(4)}
    dg.save(state, tmp_path / "big.dg")
    tracemalloc.start()
    try:
        back = dg.load(tmp_path / "big.dg")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.1 * 4 * n, peak / (4 * n)
    for i in range(4):
        assert back[f"w{i}"].flags.owndata and np.all(back[f"w{i}"] == i)


def test_dense_or_unparseable_headers_are_value_errors(tmp_path, monkeypatch):
    """A header of millions of empty containers would cost ~20x its size in Python objects:
    refused before parsing. Running out of memory while parsing is a ValueError too."""
    header = b"[" + b",".join([b"[]"] * 200_000) + b"]"
    p = tmp_path / "dense.dg"
    p.write_bytes(struct.pack("<8sIQ", b"DEEPGRAD", 2, len(header)) + header + b"\0" * 64)
    with pytest.raises(ValueError, match="containers"):
        dg.load(p)
    dg.save(_state(), tmp_path / "ok.dg")

    def oom(*a, **k):
        raise MemoryError
    monkeypatch.setattr(serialization.json, "loads", oom)
    with pytest.raises(ValueError, match="too large"):
        dg.load(tmp_path / "ok.dg")


def test_version_1_files_still_load_and_are_validated(tmp_path):
    data = np.arange(4, dtype=np.float32).tobytes() + b"\0" * 48 + np.ones(2).tobytes()
    meta = [{"dtype": "float32", "shape": [4], "offset": 0, "nbytes": 16},
            {"dtype": "float64", "shape": [2], "offset": 64, "nbytes": 16}]
    tree = {"t": "dict", "items": [["a", {"t": "array", "i": 0}], ["b", {"t": "tensor", "i": 1}]]}
    p = tmp_path / "v1.dg"
    p.write_bytes(_v1_bytes(tree, meta, data))
    back = dg.load(p)
    np.testing.assert_array_equal(back["a"], np.arange(4, dtype=np.float32))
    assert isinstance(back["b"], dg.Tensor)
    dg.save(back, tmp_path / "v2.dg")                         # re-saving upgrades
    assert struct.unpack_from("<I", (tmp_path / "v2.dg").read_bytes(), 8)[0] == 2

    cases = {
        "negative dimension": [{"dtype": "float32", "shape": [-4], "offset": 0, "nbytes": 16}],
        "negative offset": [{"dtype": "float32", "shape": [4], "offset": -64, "nbytes": 16}],
        "do not hold": [{"dtype": "float32", "shape": [5], "offset": 0, "nbytes": 16}],
        "outside": [{"dtype": "float32", "shape": [40], "offset": 0, "nbytes": 160}],
        "unknown dtype": [{"dtype": "object", "shape": [2], "offset": 0, "nbytes": 16}],
        "overlap": [{"dtype": "float32", "shape": [4], "offset": 0, "nbytes": 16},
                    {"dtype": "float32", "shape": [4], "offset": 8, "nbytes": 16}],
        "not an integer": [{"dtype": "float32", "shape": [4.0], "offset": 0, "nbytes": 16}],
        "far larger": [{"dtype": "float32", "shape": [0, 10 ** 30], "offset": 0, "nbytes": 0}],
    }
    for why, m in cases.items():
        tree1 = {"t": "list", "items": [{"t": "array", "i": i} for i in range(len(m))]}
        p.write_bytes(_v1_bytes(tree1, m, data))
        with pytest.raises(ValueError, match=why):
            dg.load(p)
    # an array reference out of range
    p.write_bytes(_v1_bytes({"t": "array", "i": 7}, meta, data))
    with pytest.raises(ValueError, match="array reference"):
        dg.load(p)


def test_deep_nesting_is_a_value_error(tmp_path):
    deep = {"t": "list", "items": []}
    node = deep
    for _ in range(200):
        child = {"t": "list", "items": []}
        node["items"].append(child)
        node = child
    p = tmp_path / "deep.dg"
    p.write_bytes(_v1_bytes(deep, [], b""))
    with pytest.raises(ValueError, match="nested"):
        dg.load(p)
    # JSON nested beyond the parser's recursion limit
    header = ("[" * 100000 + "]" * 100000).encode()
    p.write_bytes(struct.pack("<8sIQ", b"DEEPGRAD", 1, len(header)) + header)
    with pytest.raises(ValueError, match="deepgrad.load"):
        dg.load(p)
    obj = []
    for _ in range(100):
        obj = [obj]
    with pytest.raises(ValueError, match="nested more than"):
        dg.save(obj, tmp_path / "x.dg")


def test_large_foreign_or_lying_files_cost_no_memory(tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(512 << 20)                                 # sparse: 512 MiB of zeros
    lying = tmp_path / "lying.dg"
    with open(lying, "wb") as f:
        f.write(struct.pack("<8sIQ", b"DEEPGRAD", 2, 1 << 60))
        f.truncate(512 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="not a deepgrad file"):
            dg.load(big)
        with pytest.raises(ValueError, match="header length"):
            dg.load(lying)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (1 << 20)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_file_mode_follows_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        dg.save(_state(), tmp_path / "m.dg")
        dg.save(_state(), tmp_path / "n.dg")
    finally:
        os.umask(old)
    for name in ("m.dg", "n.dg"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o666 & ~umask


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_are_removed_live_ones_kept(tmp_path):
    target = tmp_path / "m.dg"
    dead = tmp_path / f".m.dg.dgtmp-{_dead_pid()}-abcd1234"
    dead.write_bytes(b"x" * 1000)
    live_proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    # a writer elsewhere (another machine on a shared folder: its pid means nothing here)
    # holds the flock on its temporary while it writes
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import fcntl, os, sys, time
        fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(30)
    """), str(tmp_path / f".m.dg.dgtmp-{_dead_pid()}-0000beef")], stdout=subprocess.PIPE,
        text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        locked = tmp_path / next(n for n in os.listdir(tmp_path) if n.endswith("0000beef"))
        live = tmp_path / f".m.dg.dgtmp-{live_proc.pid}-abcd1234"
        live.write_bytes(b"y")                                        # just created
        reused = tmp_path / f".m.dg.dgtmp-{live_proc.pid}-5678abcd"   # a reused pid: old file
        reused.write_bytes(b"w")
        old = time.time() - 3600
        os.utime(reused, (old, old))
        other = tmp_path / f".other.dg.dgtmp-{_dead_pid()}-abcd1234"   # another target's
        other.write_bytes(b"z")
        dg.save(_state(), target)
        assert not dead.exists() and not reused.exists()
        assert live.exists() and locked.exists() and other.exists()
        holder.kill()
        holder.wait()
        dg.save(_state(), target)                    # its writer is gone: the lock is free
        assert not locked.exists() and live.exists()
    finally:
        for proc in (live_proc, holder):
            proc.kill()
            proc.wait()
        holder.stdout.close()


SAVER = textwrap.dedent("""
    import sys, numpy as np, deepgrad as dg
    path = sys.argv[1]
    a = {"w": np.full(4_000_000, 1.0, np.float32), "tag": "A"}
    b = {"w": np.full(4_000_000, 2.0, np.float32), "tag": "B"}
    dg.save(a, path)
    print("ready", flush=True)
    i = 0
    while True:
        dg.save(a if i % 2 else b, path)
        i += 1
""")


def test_killed_saves_leave_a_whole_checkpoint_and_no_trash(tmp_path):
    """A process saving a 16 MB checkpoint in a loop is SIGKILLed at random moments 24 times.
    After each kill the checkpoint loads and verifies (old or new content, whole) and the folder
    holds at most one stray temporary (the killed save's): the next process's first save
    removed the one before."""
    target = tmp_path / "ckpt.dg"
    rng = np.random.default_rng(0)
    seen, strays = set(), 0
    for _ in range(24):
        p = subprocess.Popen([sys.executable, "-c", SAVER, str(target)], stdout=subprocess.PIPE,
                             text=True)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.0, 0.2)))
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
        back = dg.load(target)                         # whole: old or new content, verified
        assert back["tag"] in ("A", "B")
        assert np.all(back["w"] == (1.0 if back["tag"] == "A" else 2.0))
        seen.add(back["tag"])
        stray = [n for n in os.listdir(tmp_path) if ".dgtmp-" in n]
        assert len(stray) <= 1, stray
        strays += len(stray)
    assert strays >= 3, "the kills never landed inside a save; the test proves nothing"
    dg.save({"w": np.zeros(1)}, target)                # the next save cleans up
    assert os.listdir(tmp_path) == ["ckpt.dg"]


# ---- safetensors -----------------------------------------------------------------------------

def test_safetensors_round_trip(tmp_path):
    pytest.importorskip("safetensors")
    dg.manual_seed(0)
    model = nn.Sequential(nn.Dense(4, 5, "tanh"), nn.Dense(5, 2))
    dg.save(model.state_dict(), tmp_path / "m.safetensors")
    back = dg.load(tmp_path / "m.safetensors")
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(back[k], np.asarray(v))
    from safetensors import safe_open
    with safe_open(str(tmp_path / "m.safetensors"), "np") as f:
        assert f.metadata()["deepgrad_version"] == dg.__version__
    dg.save(model.state_dict(), tmp_path / "m.bin", format="safetensors")
    assert set(dg.load(tmp_path / "m.bin", format="safetensors")) == set(back)
    other = nn.Sequential(nn.Dense(4, 5, "tanh"), nn.Dense(5, 2))
    other.load_state_dict(back)
    x = dg.tensor(np.ones((2, 4), np.float32))
    np.testing.assert_array_equal(other(x).numpy(), model(x).numpy())
    with pytest.raises(TypeError, match="arrays only"):
        dg.save({"a": 1}, tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="format must be"):
        dg.save({}, tmp_path / "y", format="pickle")


def test_safetensors_written_by_others_load(tmp_path):
    stn = pytest.importorskip("safetensors.numpy")
    stn.save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, str(tmp_path / "a.safetensors"))
    np.testing.assert_array_equal(dg.load(tmp_path / "a.safetensors")["w"],
                                  np.arange(6, dtype=np.float32).reshape(2, 3))
    torch = pytest.importorskip("torch")
    stt = pytest.importorskip("safetensors.torch")
    lin = torch.nn.Linear(3, 2)
    stt.save_file(lin.state_dict(), str(tmp_path / "t.safetensors"))
    back = dg.load(tmp_path / "t.safetensors")
    np.testing.assert_array_equal(back["weight"], lin.weight.detach().numpy())
    stt.save_file({"h": torch.ones(2, dtype=torch.bfloat16)}, str(tmp_path / "bf.safetensors"))
    with pytest.raises(ValueError, match=r"'h' is BF16.*float32"):
        dg.load(tmp_path / "bf.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="safetensors"):
        dg.load(tmp_path / "junk.safetensors")


def test_safetensors_missing_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match=r"deepgrad\[safetensors\]"):
        dg.save({"a": np.ones(2)}, tmp_path / "a.safetensors")
    assert serialization is not None
