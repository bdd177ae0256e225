"""The monitor package's shape (issue 12): capture -> sinks -> core, no upward import, and the
core and the sinks never import torch, a backend or the rest of deepgrad (checked on the source
with ast, imports inside functions included)."""
import ast
import os

PKG = os.path.join(os.path.dirname(__file__), "..", "..", "python", "deepgrad", "monitor")


def _src(name):
    with open(os.path.join(PKG, name + ".py")) as f:
        return f.read()


def _imports(name):
    tree = ast.parse(_src(name))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            out.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_core_imports_nothing_of_deepgrad_or_torch():
    imps = _imports("core")
    assert not any(i.startswith(".") for i in imps), imps
    assert not any(i.split(".")[0] in ("torch", "deepgrad", "tensorboardX") for i in imps)


def test_sinks_import_only_the_core():
    imps = _imports("sinks")
    assert {i for i in imps if i.startswith(".")} <= {".core"}, imps
    # torch.utils.tensorboard is used only when torch is already loaded; never imported first
    src = _src("sinks")
    assert 'if "torch" in sys.modules' in src
    assert not any(i.split(".")[0] == "deepgrad" for i in imps)


def test_captures_import_downward_only():
    for name in ("capture_deepgrad", "capture_torch"):
        rel = {i for i in _imports(name) if i.startswith(".")}
        allowed = {".core", ".sinks", ".capture_deepgrad", ".capture_torch", "..nn.module",
                   "..nn.layers", "..functional", "..autograd", "..backend", ".."}
        assert rel <= allowed, (name, rel - allowed)
        assert "..study" not in rel and "..cli" not in rel
