"""The code's layout, read with ``ast``: no import cycle between modules, and no private name
(``_x``) imported from another top-level folder."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"tests", "runs", "artifacts", "node_modules"}


def project_modules() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if SKIP & set(parts) or parts[0].startswith("."):
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def imports(name: str, path: Path, modules: dict) -> list[tuple[str, list[str]]]:
    """(imported module, names) for every import of a project module, lazy ones included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name in modules]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names = [alias.name for alias in node.names]
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules]
            found += [(m, []) for m in submodules]
            if base in modules and len(submodules) < len(names):
                found.append((base, [n for n in names if f"{base}.{n}" not in modules]))
    return found


def test_no_import_cycles():
    modules = project_modules()
    graph = {name: {m for m, _ in imports(name, path, modules)} - {name} for name, path in modules.items()}
    cycles, state = [], {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles


def test_no_private_name_imported_across_folders():
    modules = project_modules()
    crossings = [(name, module, n) for name, path in modules.items() for module, names in imports(name, path, modules)
                 for n in names if n.startswith("_") and module.split(".")[0] != name.split(".")[0]]
    assert not crossings, crossings
