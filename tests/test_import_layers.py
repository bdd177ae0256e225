"""The package's imports run one way (issue 11): no import cycle among deepgrad's modules
(imports inside functions included), autograd imports nothing of the package, and tensor.py
(the data type) does not import the ops above it. Read from the source with ast."""
import ast
import os

PKG = os.path.join(os.path.dirname(__file__), "..", "python", "deepgrad")


def _modules():
    out = {}
    for root, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(root, f), PKG)[:-3].replace(os.sep, ".")
                name = "deepgrad" + ("" if rel == "__init__" else "." + rel.replace(".__init__", ""))
                out[name] = os.path.join(root, f)
    return out


def _graph():
    mods = _modules()
    graph = {m: set() for m in mods}
    for name, path in mods.items():
        is_pkg = path.endswith("__init__.py")
        with open(path) as fh:
            tree = ast.parse(fh.read())
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[:len(here) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets.append(mod)
                targets += [f"{mod}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name and t != "deepgrad":
                    graph[name].add(t)
    return graph


def test_no_import_cycle():
    graph = _graph()
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_autograd_imports_nothing_of_the_package():
    assert _graph()["deepgrad.autograd"] == set()


def test_tensor_does_not_import_the_ops():
    up = {"deepgrad.functional", "deepgrad.losses", "deepgrad.nn", "deepgrad.optim",
          "deepgrad.monitor", "deepgrad.study", "deepgrad.cli"}
    deps = _graph()["deepgrad.tensor"]
    assert not any(d == u or d.startswith(u + ".") for d in deps for u in up), deps
