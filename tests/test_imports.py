"""The import graph of ``jaxpg/`` has no circle, imports inside functions counted.

Each module's imports are read from its source (every ``import`` statement, at the top or
inside a function or an ``if TYPE_CHECKING`` block), so a circle hidden by a deferred import
is found too. Layers import only downwards; ``jaxpg/__init__.py``'s lazy exports (strings) and the
registries' import paths (strings) are not imports.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "jaxpg"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str], name: str | None = None) -> set[str]:
    """The jaxpg modules that ``path`` (module ``name``) imports anywhere in its source."""
    name = module_name(path) if name is None else name
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from jaxpg import losses` imports the module jaxpg.losses
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and target != "jaxpg":
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) for p in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_deferred_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_reader_counts_imports_inside_functions(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text(
        "import jaxpg.envs\n"
        "def f():\n"
        "    from jaxpg.sequence import TASKS\n"
        "    from jaxpg import losses\n"
    )
    modules = {"jaxpg.envs", "jaxpg.sequence", "jaxpg.losses", "jaxpg"}
    assert imports_of(source, modules, "jaxpg.mod") == {
        "jaxpg.envs",
        "jaxpg.sequence",
        "jaxpg.losses",
    }


def test_jaxpg_has_no_import_circle():
    graph = import_graph()
    assert len(graph) > 20
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)
