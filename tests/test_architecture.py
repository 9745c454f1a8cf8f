"""The package's layering, checked on its source: core never imports the experiments or
the book, no module imports another's private names, no import cycles, a cheap import."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "atkd_lite"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names imported from it) for every import in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


#: the layers, lowest first: a module imports only from its own layer or a lower one
LAYERS = ("core", "experiments", "book", "cli")


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[1:2] in (["cli"], ["__main__"], ["config"]):
        # the command line, and ``config`` (the first name of the cache directory, the
        # profiles and the Drive cache, re-exported from three layers): the top
        return "cli"
    return parts[1] if len(parts) > 1 and parts[1] in ("experiments", "book") else "core"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_layering_and_no_private_imports(module):
    """No module is exempt: each imports only its own layer or lower ones (the package's
    ``__init__`` imports nothing at all: its names load lazily)."""
    layer = _layer(module)
    for target, names in _imports(MODULES[module]):
        if not target.startswith("atkd_lite"):
            continue
        above = LAYERS.index(_layer(target)) > LAYERS.index(layer)
        assert not above, f"{layer} module {module} imports the {_layer(target)} layer ({target})"
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"{module} imports private names {private} from {target}"


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        deps = set()
        for target, names in _imports(path):
            for cand in [f"{target}.{n}" for n in names] + [target]:
                if cand in MODULES and cand != module:
                    deps.add(cand)
                    break
        graph[module] = deps
    return graph


def find_cycle(graph: dict[str, set[str]], skip: frozenset = frozenset()) -> list[str] | None:
    """One import cycle of ``graph`` (module -> modules it imports) as a path, or None.

    ``skip``: modules whose imports do not count (the package's ``__init__``, which
    imports lazily, at attribute access)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m, stack):
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if d in skip:
                continue
            if state.get(d) == 1:
                return [*stack, m, d]
            if state.get(d) is None:
                found = visit(d, [*stack, m])
                if found:
                    return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and m not in skip:
            found = visit(m, [])
            if found:
                return found
    return None


def test_no_import_cycles():
    cycle = find_cycle(_graph(), skip=frozenset({"atkd_lite"}))
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_the_detectors_find_a_planted_cycle_and_a_private_import(tmp_path):
    # the checks above must be able to fail: the same functions find what is planted
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert find_cycle({"a": {"p"}, "p": {"a"}}, skip=frozenset({"p"})) is None
    # a planted cycle inside a copy of the package's graph is found by the real check
    graph = _graph()
    graph["atkd_lite.atcam"] = {*graph["atkd_lite.atcam"], "atkd_lite.distillers"}
    assert find_cycle(graph, skip=frozenset({"atkd_lite"})) is not None
    bad = tmp_path / "bad.py"
    bad.write_text("from atkd_lite.atcam import _secret\n")
    assert _imports(bad) == [("atkd_lite.atcam", ["_secret"])]


def test_import_is_lazy_and_cheap():
    code = ("import sys, atkd_lite; "
            "print(sorted(m for m in sys.modules if m.startswith(('atkd_lite', 'torch'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['atkd_lite']"


def test_the_first_names_of_moved_modules_still_import():
    """``atkd_lite.runtime`` and ``atkd_lite.distillers`` are kept for old code: every name
    they export is the object of the module that holds it now."""
    import atkd_lite.distillers as distillers
    import atkd_lite.methods as methods
    import atkd_lite.runtime as runtime
    from atkd_lite import checks, device, files, outputs

    homes = (checks, device, files, outputs)
    for name in runtime.__all__:
        owners = [m for m in homes if getattr(m, name, None) is getattr(runtime, name)]
        assert owners, f"atkd_lite.runtime.{name} is not one of the four modules' names"
    for name in distillers.__all__:
        assert getattr(distillers, name) is getattr(methods, name), name
