"""The house stays laid out by the flow (issue 31): the import graph, built here from the source, has no circles
in vtdata or vttrain, no import goes up a layer, and no module outgrows one sitting."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vt", "vtdata", "vttrain")
MAX_LINES = 450

# layer -> the layers it may import (besides itself); a module's layer is its top package, or vttrain.<sub>
ALLOWED = {
    "vtdata": set(),
    "vttrain.models": {"vtdata"},
    "vttrain.rollout": {"vtdata", "vttrain.models"},
    "vttrain.grpo": {"vtdata", "vttrain.models", "vttrain.rollout"},
    "vttrain.report": {"vtdata"},
    "vttrain.score": {"vtdata", "vttrain.models", "vttrain.rollout"},
    "vttrain.eval": {"vtdata", "vttrain.models", "vttrain.rollout", "vttrain.report"},
    # the command table names every stage ("module:function"): above them all, below the demo and the CLI
    "vttrain.commands": {"vtdata", "vttrain.models", "vttrain.rollout", "vttrain.grpo", "vttrain.report",
                         "vttrain.score", "vttrain.eval"},
    "vttrain.demo": {"vtdata", "vttrain.models", "vttrain.rollout", "vttrain.grpo", "vttrain.report",
                     "vttrain.score", "vttrain.eval", "vttrain.commands"},
    "vttrain": set(),
    "vt": {"vtdata", "vttrain.commands", "vttrain.demo"},
}


def modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            parts = p.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return found


def _target(name: str, mods) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def graph() -> dict[str, set[str]]:
    """module -> the modules it imports (at the top or inside functions), including the "module:function" targets
    of a command table (imported by name at run time)."""
    mods = modules()
    edges = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        is_pkg = path.name == "__init__.py"
        found = set()
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = name.split(".") if is_pkg else name.split(".")[:-1]
                    here = here[:len(here) - node.level + 1]
                    base = ".".join(here + ([base] if base else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                m = re.fullmatch(r"((?:vtdata|vttrain)(?:\.\w+)+):\w+", node.value)
                names = [m.group(1)] if m else []
            for n in names:
                t = _target(n, mods)
                if t and t != name:
                    found.add(t)
        edges[name] = found
    return edges


def layer(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "vttrain" and len(parts) > 1 else parts[0]


def cycles(edges) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_imports_inside_functions_and_command_tables():
    edges = graph()
    assert "vtdata.outdir" in edges["vtdata.db"]  # a top-level import
    assert "vttrain.grpo.config" in edges["vttrain.grpo.train"]  # only inside functions there
    assert "vttrain.eval" in edges["vttrain.commands"]  # a "module:function" string


def test_no_import_circles():
    edges = graph()
    assert cycles(edges) == []
    # the check itself finds a circle when there is one
    assert cycles({**edges, "vtdata.console": edges["vtdata.console"] | {"vtdata.db"}})


def test_no_import_goes_up_a_layer():
    bad = []
    for module, targets in graph().items():
        own = layer(module)
        assert own in ALLOWED, f"{module}: layer {own} is not in ALLOWED (add it where it belongs)"
        bad += [f"{module} -> {t}" for t in sorted(targets) if layer(t) != own and layer(t) not in ALLOWED[own]]
    assert bad == []


def test_every_layer_opens_with_what_it_owns_and_may_import():
    for pkg in ("vtdata", "vttrain", "vttrain/models", "vttrain/rollout", "vttrain/grpo", "vttrain/report",
                "vtdata/protocol"):
        doc = ast.get_docstring(ast.parse((ROOT / pkg / "__init__.py").read_text()))
        assert doc and len(doc) > 80, f"{pkg}/__init__.py has no docstring saying what it owns"
    for sub in ("models", "rollout", "grpo", "report"):
        doc = ast.get_docstring(ast.parse((ROOT / "vttrain" / sub / "__init__.py").read_text()))
        assert "import" in doc, f"vttrain/{sub}: the docstring does not say what it may import"


def test_no_module_outgrows_one_sitting():
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
