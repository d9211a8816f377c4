"""The package's import graph: acyclic with every import counted (those inside functions included), and no
import inside a function except of an optional dependency. Built from the source (ast), nothing imported."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "jaxcollapse"

# imported where used, so the package loads without them: each a dependency only some calls need
OPTIONAL = {"matplotlib", "pandas", "pyarrow", "sklearn"}


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package (a package is its __init__.py)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(module: str, path: Path):
    """(node, dotted names it imports (relative ones resolved), inside a function) for every import of a file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                yield child, [a.name for a in child.names], inside
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                yield child, [f"{base}.{a.name}" for a in child.names] + [base], inside
            yield from visit(child, inside)

    yield from visit(ast.parse(path.read_text(), str(path)), False)


def graph(found: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {module it imports: line}; `from a import b` counts a.b when that is a module, else a.
    An import from the module's own enclosing package is left out (that package is already importing it)."""
    edges = {m: {} for m in found}
    for module, path in found.items():
        for node, names, _ in imports(module, path):
            if isinstance(node, ast.Import):
                targets = names
            else:  # each name: the submodule it names, or else the module it comes from
                targets = [name if name in found else names[-1] for name in names[:-1]]
            for target in targets:
                if target in found and target != module and not module.startswith(target + "."):
                    edges[module].setdefault(target, node.lineno)
    return edges


def find_cycle(edges: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if not state.get(nxt):
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if not state.get(node):
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def describe(cycle: list[str], edges, found) -> str:
    steps = [f"{a} -> {b} ({found[a].relative_to(ROOT.parent)}:{edges[a][b]})" for a, b in zip(cycle, cycle[1:])]
    return "import cycle:\n  " + "\n  ".join(steps)


def test_the_import_graph_has_no_cycle():
    found = modules()
    assert len(found) > 50 and "jaxcollapse.study.knowledge" in found
    edges = graph(found)
    cycle = find_cycle(edges)
    assert cycle is None, describe(cycle, edges, found)


def test_no_import_inside_a_function_but_of_an_optional_dependency():
    found = modules()
    lazy = []
    for module, path in found.items():
        for node, names, inside in imports(module, path):
            top = names[-1 if isinstance(node, ast.ImportFrom) else 0].split(".")[0]
            if inside and (getattr(node, "level", 0) or top not in OPTIONAL):
                lazy.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}: {ast.unparse(node)}")
    assert not lazy, "imports inside functions (move them to the top; only optional dependencies " \
                     f"{sorted(OPTIONAL)} may wait):\n  " + "\n  ".join(lazy)


def test_the_checks_see_a_cycle_and_a_lazy_import(tmp_path):
    """The test's own graph finds what it is meant to: a cycle through a function-level import, and that import."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "__init__.py").write_text("from . import b\n")   # its own package: not a cycle
    (package / "sub" / "b.py").write_text("def f():\n    from .. import a\n    import pandas\n")
    found = modules(package)
    edges = graph(found)
    assert find_cycle(edges) == ["pkg.a", "pkg.sub.b", "pkg.a"]
    lazy = [(m, ast.unparse(node)) for m, p in found.items() for node, _, inside in imports(m, p) if inside]
    assert lazy == [("pkg.sub.b", "from .. import a"), ("pkg.sub.b", "import pandas")]
    (package / "sub" / "b.py").write_text("def f():\n    import pandas\n")
    assert find_cycle(graph(modules(package))) is None


@pytest.mark.parametrize("module", ["jaxcollapse.plots", "jaxcollapse.study", "jaxcollapse.study.knowledge"])
def test_each_layer_is_above_what_it_imports(module):
    """plots never import the study (the study passes its knowledge in); the knowledge never imports the runner."""
    found = modules()
    edges = graph(found)
    below = {"jaxcollapse.plots": ("jaxcollapse.study", "jaxcollapse.cli"),
             "jaxcollapse.study": ("jaxcollapse.cli",),
             "jaxcollapse.study.knowledge": ("jaxcollapse.study.run", "jaxcollapse.study.figures", "jaxcollapse.cli")}[module]
    wrong = [f"{m} -> {t}" for m in found if m == module or m.startswith(module + ".")
             for t in edges[m] if any(t == b or t.startswith(b + ".") for b in below)]
    assert not wrong, wrong
