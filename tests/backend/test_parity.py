"""Both backends implement all of deepgrad.backend.protocol.Backend with the same signatures,
nothing outside it, and the CPU backend means what the Protocol says: every primitive has at
least one case (tests/backend/cases.py) compared with a float64 reference on fresh random
inputs. (The CUDA backend's meaning is checked against the CPU's in tests/cuda, on a GPU.)
The signatures are read from the source with ast, so this runs on builds without CUDA too."""
import ast
import importlib.util
import inspect
import os

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import backend
from deepgrad.backend import Backend, backend_of, copy_into, cpu
from deepgrad.backend.protocol import members

HERE = os.path.dirname(__file__)
BACKEND_DIR = os.path.dirname(backend.__file__)


def load_cases():
    spec = importlib.util.spec_from_file_location("_backend_cases", os.path.join(HERE, "cases.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


C = load_cases()
CASES = C.build_cases()
FUNCS = sorted(n for n, f in members().items() if f is not None)
DATA = sorted(n for n, f in members().items() if f is None)


def _read(path):
    with open(path) as fh:
        return fh.read()


def _source_api(path):
    """{public function name: (positional names, defaults as source, kw-only names)} and the
    names assigned at module level, read from a backend's source."""
    tree = ast.parse(_read(path))
    funcs, names = {}, set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            assert node.name not in funcs, (f"{os.path.basename(path)} defines {node.name} twice "
                                            f"(line {node.lineno}): the second one silently "
                                            "replaces the first")
            a = node.args
            funcs[node.name] = ([x.arg for x in a.posonlyargs + a.args],
                                [ast.unparse(d) for d in a.defaults],
                                [x.arg for x in a.kwonlyargs], a.vararg, a.kwarg)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                if isinstance(t, ast.Name):
                    names.add(t.id)
    return funcs, names


def _protocol_api():
    funcs, _ = _source_api(os.path.join(BACKEND_DIR, "protocol.py"))
    tree = ast.parse(_read(os.path.join(BACKEND_DIR, "protocol.py")))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Backend")
    out = {}
    for node in cls.body:
        if isinstance(node, ast.FunctionDef):
            a = node.args
            out[node.name] = ([x.arg for x in a.posonlyargs + a.args][1:],   # drop self
                              [ast.unparse(d) for d in a.defaults],
                              [x.arg for x in a.kwonlyargs], a.vararg, a.kwarg)
    return out


@pytest.mark.parametrize("module", ["cpu.py", "cuda.py"])
def test_backend_has_exactly_the_protocol(module):
    funcs, names = _source_api(os.path.join(BACKEND_DIR, module))
    proto = _protocol_api()
    assert sorted(proto) == FUNCS
    missing = sorted(set(proto) - set(funcs))
    extra = sorted(set(funcs) - set(proto))
    assert not missing, f"backend/{module} lacks Protocol primitives {missing}"
    assert not extra, (f"backend/{module} has public functions {extra} that are not in "
                       "backend/protocol.py: add them to the Protocol (and the other backend) "
                       "or make them private")
    assert set(DATA) <= names, f"backend/{module} lacks {sorted(set(DATA) - names)}"


@pytest.mark.parametrize("module", ["cpu.py", "cuda.py"])
def test_signatures_match_the_protocol(module):
    funcs, _ = _source_api(os.path.join(BACKEND_DIR, module))
    proto = _protocol_api()
    bad = []
    for name, sig in proto.items():
        got = funcs[name]
        if got[0] != sig[0] or got[1] != sig[1] or got[2:] != sig[2:]:
            bad.append(f"{name}: protocol {sig[0]} defaults {sig[1]}, {module} {got[0]} "
                       f"defaults {got[1]}")
    assert not bad, "\n".join(bad)


def test_cpu_module_is_a_backend_at_run_time():
    assert isinstance(cpu, Backend)
    assert (cpu.DEVICE, cpu.HOST_MEMORY, cpu.DLPACK_DEVICE) == ("cpu", True, (1, 0))
    for name in FUNCS:
        want = inspect.signature(getattr(Backend, name))
        got = inspect.signature(getattr(cpu, name))
        assert [(p.name, p.default, p.kind) for p in got.parameters.values()] == \
            [(p.name, p.default, p.kind) for p in list(want.parameters.values())[1:]], name


def test_cuda_module_is_a_backend_when_built_with_cuda():
    if not dg.build_info()["cuda"]:
        pytest.skip("deepgrad was built without CUDA (the ast tests above cover cuda.py)")
    from deepgrad.backend import cuda
    assert isinstance(cuda, Backend)
    assert (cuda.DEVICE, cuda.HOST_MEMORY, cuda.DLPACK_DEVICE) == ("cuda", False, (2, 0))


# Primitives whose results are objects of the backend (a stat ring) rather than arrays: checked
# by their own tests, on the CPU against numpy and on a GPU against the CPU.
OWN_TESTS = {"stat_ring": "tests/backend/test_stat_ring.py",
             "record_stats": "tests/backend/test_stat_ring.py",
             "read_stats": "tests/backend/test_stat_ring.py",
             "to_dlpack": "tests/cuda/test_dlpack_cuda.py",
             "from_dlpack": "tests/cuda/test_dlpack_cuda.py"}


def test_every_primitive_has_a_case():
    covered = {c.name for c in CASES} | set(OWN_TESTS)
    for path in set(OWN_TESTS.values()):
        assert os.path.isfile(os.path.join(HERE, "..", "..", path)), path
    assert not set(FUNCS) - covered, f"no case for {sorted(set(FUNCS) - covered)}"
    assert covered <= set(FUNCS), f"cases for non-primitives {sorted(covered - set(FUNCS))}"
    assert all(c.ref is not None for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=C.case_id)
def test_cpu_backend_means_what_the_protocol_says(case, rng):
    C.meaning_check(cpu, case, rng)


class _Copying:
    """backend.cpu behind the up/down copies the CUDA parity test uses, so the harness (and the
    case table's parity views) run here even where no GPU runs tests/cuda."""
    def __getattr__(self, name):
        return getattr(cpu, name)


def _up(x):
    if isinstance(x, np.ndarray):
        return x.copy()
    if isinstance(x, (tuple, list)):
        return type(x)(_up(i) for i in x)
    return x


@pytest.mark.parametrize("case", CASES, ids=C.case_id)
def test_parity_harness(case, rng):
    C.parity_check(_Copying(), cpu, case, rng, _up, lambda x: x)


def test_a_wrong_backend_fails_the_meaning_check(rng):
    """The check can fail: a CPU backend whose tanh backward forgot the chain rule."""
    class Broken:
        def __getattr__(self, name):
            return getattr(cpu, name)

        def act_backward(self, dy, z, y, activation, alpha=0.01):
            return cpu.act_forward(z if z is not None else y, "identity") * 0 + 1
    case = next(c for c in CASES if c.name == "act_backward")
    with pytest.raises(AssertionError):
        C.meaning_check(Broken(), case, rng)


# -- the cross-device copy helper ----------------------------------------------------------------

def test_backend_of():
    assert backend_of(np.zeros(3)) is cpu
    assert backend_of([1.0]) is None and backend_of(2.0) is None


def test_copy_into_casts_broadcasts_and_writes_through_views(rng):
    buf = np.zeros(12, np.float32)
    v = cpu.view(buf, 4, (2, 3))
    src = rng.standard_normal((2, 3))                  # float64 host values
    copy_into(v, src)
    np.testing.assert_array_equal(buf[4:10], src.astype(np.float32).reshape(-1))
    assert buf[:4].tolist() == [0] * 4 and buf[10:].tolist() == [0, 0]
    copy_into(v, [1, 2, 3])                            # a list, broadcast over rows
    np.testing.assert_array_equal(v, [[1, 2, 3], [1, 2, 3]])
    copy_into(v, np.arange(6, dtype=np.int64).reshape(2, 3))
    np.testing.assert_array_equal(buf[4:10], np.arange(6))
    copy_into(v, 7.5)
    assert (buf[4:10] == 7.5).all()
    with pytest.raises(TypeError, match="backend array"):
        copy_into([0.0], np.zeros(1))


def test_copy_into_is_how_values_enter_parameters(rng):
    """init, load_state_dict, Parameter.data assignment and the arena all copy through it:
    values land in the arena views (no rebinding), in the parameter's dtype."""
    m = dg.nn.Sequential(dg.nn.Dense(3, 4), dg.nn.Dense(4, 2))
    arena = m.arena
    sd = {k: rng.standard_normal(v.shape) for k, v in m.state_dict().items()}   # float64
    m.load_state_dict(sd)
    for (name, p), s in zip(m.named_parameters(), arena.segments):
        assert p.data.base is not None and np.shares_memory(p.data, arena.params)
        np.testing.assert_array_equal(p.data, sd[name].astype(np.float32))
    w = m[0].weight
    dg.init.constant_(w, 0.25)
    assert np.shares_memory(w.data, arena.params) and (w.data == 0.25).all()


# -- no device tests above the backend -----------------------------------------------------------

PKG = os.path.dirname(os.path.dirname(backend.__file__))
# every module above the backend is checked (the monitor and the ops included)
NOT_YET = ()


def _device_tests(src: str) -> list[str]:
    """Code that asks which device an array lives on: the name CudaArray, or type(x) compared
    with np.ndarray (isinstance checks of user input are allowed: they convert, not dispatch)."""
    out = []
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Name) and node.id == "CudaArray" or \
                isinstance(node, ast.Attribute) and node.attr == "CudaArray":
            out.append(f"line {node.lineno}: CudaArray")
        if isinstance(node, ast.Compare) and any(isinstance(o, (ast.Is, ast.IsNot, ast.Eq))
                                                 for o in node.ops):
            parts = [node.left] + node.comparators
            if any(isinstance(p, ast.Call) and getattr(p.func, "id", "") == "type" for p in parts) \
                    and any(ast.unparse(p) == "np.ndarray" for p in parts):
                out.append(f"line {node.lineno}: {ast.unparse(node)}")
    return out


def test_no_device_test_above_the_backend():
    bad = []
    for root, _, files in os.walk(PKG):
        for f in files:
            path = os.path.join(root, f)
            rel = os.path.relpath(path, PKG)
            if not f.endswith(".py") or rel.startswith("backend" + os.sep) or \
                    (NOT_YET and rel.startswith(NOT_YET)):
                continue
            bad += [f"{rel} {b}" for b in _device_tests(_read(path))]
    assert not bad, ("ask the backend (be.HOST_MEMORY, be.view, backend_of, copy_into) instead "
                     "of testing the array type:\n" + "\n".join(bad))


def test_the_device_test_finder_finds_them():
    assert _device_tests("if type(a) is np.ndarray:\n    pass\n")
    assert _device_tests("x = _C.CudaArray\n")
    assert not _device_tests("if isinstance(a, np.ndarray):\n    pass\n")
