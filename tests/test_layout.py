"""The package's layout rule: no module imports one that imports it back (directly or round a
longer cycle), so each part can be read, tested and replaced on its own."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "edge_assistant"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Modules of the package that `path` imports, at any depth of its code."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for candidate in candidates:
            if candidate in known and candidate != name:
                found.add(candidate)
                break
    return found


def import_graph() -> dict[str, set[str]]:
    files = list(PACKAGE.rglob("*.py"))
    known = {module_name(path) for path in files}
    return {module_name(path): imported_modules(path, known) for path in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting, done = [], set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return visiting[visiting.index(node):] + [node]
        if node in done:
            return None
        visiting.append(node)
        for child in sorted(graph.get(node, ())):
            cycle = visit(child)
            if cycle:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


def test_no_import_cycles():
    graph = import_graph()
    assert "edge_assistant.chat" in graph and graph["edge_assistant.llm"]
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_backend_neutral_chat_imports_no_backend():
    graph = import_graph()
    assert not graph["edge_assistant.chat"] & {
        "edge_assistant.llm", "edge_assistant.llama_engine", "edge_assistant.remote"}
    assert "edge_assistant.llm" not in graph["edge_assistant.remote"]
