"""The package's imports run one way (issue 11, docs/design.md "The floors"): no import cycle
among deepgrad's modules (imports inside functions included), autograd imports nothing of the
package, tensor.py (the data type) does not import the ops above it, and every module imports
only from its own floor or the floors below. Read from the source with ast. Each rule is also
run on a small graph that breaks it, so the checks are known to fail when they should."""
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


# The floors, bottom up (docs/design.md). A module imports from its own floor or below; the
# package's __init__ (the public facade) may import anything. A new module must be placed here.
FLOORS = [
    ("core", ["deepgrad.runtime", "deepgrad.autograd", "deepgrad.backend", "deepgrad.random",
              "deepgrad.cuda"]),
    ("tensor", ["deepgrad.tensor"]),
    ("ops", ["deepgrad.ops", "deepgrad.functional", "deepgrad.losses", "deepgrad.nn",
             "deepgrad.init", "deepgrad.data", "deepgrad.serialization", "deepgrad._seqdata"]),
    ("optim", ["deepgrad.optim", "deepgrad.distributed"]),
    ("monitor", ["deepgrad.monitor", "deepgrad.plot", "deepgrad.theory"]),
    ("study", ["deepgrad.study", "deepgrad.study_runs", "deepgrad.study_torch",
               "deepgrad.report", "deepgrad.phase"]),
    ("cli", ["deepgrad.cli", "deepgrad.__main__"]),
]
FACADE = {"deepgrad"}
UP_FROM_TENSOR = ("deepgrad.ops", "deepgrad.functional", "deepgrad.losses", "deepgrad.nn",
                  "deepgrad.optim", "deepgrad.monitor", "deepgrad.study", "deepgrad.cli")


def _under(mod: str, prefix: str) -> bool:
    return mod == prefix or mod.startswith(prefix + ".")


def floor_of(mod: str):
    """(index, name) of the floor holding ``mod`` (a module or a package's submodule)."""
    for i, (name, prefixes) in enumerate(FLOORS):
        if any(_under(mod, p) for p in prefixes):
            return i, name
    return None


def cycle(graph) -> list | None:
    """One import cycle as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None
    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def floor_violations(graph) -> list[str]:
    """'a (floor) imports b (higher floor)' for every import that points up, and the modules
    that have no floor."""
    out = []
    for m, deps in sorted(graph.items()):
        if m in FACADE:
            continue
        fm = floor_of(m)
        if fm is None:
            out.append(f"{m} has no floor: add it to FLOORS in tests/test_import_layers.py "
                       "and to docs/design.md")
            continue
        for d in sorted(deps):
            fd = floor_of(d)
            if fd is not None and fd[0] > fm[0]:
                out.append(f"{m} ({fm[1]}) imports {d} ({fd[1]}), a higher floor")
    return out


def autograd_violations(graph) -> set:
    return set(graph.get("deepgrad.autograd", ()))


def tensor_violations(graph) -> list:
    return sorted(d for d in graph.get("deepgrad.tensor", ())
                  if any(_under(d, u) for u in UP_FROM_TENSOR))


def test_no_import_cycle():
    found = cycle(_graph())
    assert found is None, "import cycle: " + " -> ".join(found)


def test_autograd_imports_nothing_of_the_package():
    assert autograd_violations(_graph()) == set()


def test_tensor_does_not_import_the_ops():
    assert tensor_violations(_graph()) == []


def test_every_module_imports_only_its_floor_or_below():
    bad = floor_violations(_graph())
    assert not bad, "\n".join(bad)


def test_backend_imports_only_the_core():
    """The backend sits on the bottom floor: it never reaches for tensors, ops or layers."""
    g = _graph()
    for m in (m for m in g if _under(m, "deepgrad.backend")):
        assert all(floor_of(d)[0] == 0 for d in g[m]), (m, g[m])


def test_the_checks_catch_what_they_forbid():
    ok = {"deepgrad.autograd": set(), "deepgrad.tensor": {"deepgrad.autograd"},
          "deepgrad.functional": {"deepgrad.tensor"}}
    assert cycle(ok) is None and not floor_violations(ok)
    assert not autograd_violations(ok) and not tensor_violations(ok)
    bad = dict(ok, **{"deepgrad.autograd": {"deepgrad.tensor"}})
    assert cycle(bad) == ["deepgrad.autograd", "deepgrad.tensor", "deepgrad.autograd"]
    assert autograd_violations(bad) == {"deepgrad.tensor"}
    assert floor_violations(bad) == ["deepgrad.autograd (core) imports deepgrad.tensor (tensor), "
                                     "a higher floor"]
    bad = dict(ok, **{"deepgrad.tensor": {"deepgrad.ops.elementwise"},
                      "deepgrad.ops.elementwise": set()})
    assert tensor_violations(bad) == ["deepgrad.ops.elementwise"]
    assert floor_violations(dict(ok, **{"deepgrad.new_thing": set()})) == [
        "deepgrad.new_thing has no floor: add it to FLOORS in tests/test_import_layers.py "
        "and to docs/design.md"]
