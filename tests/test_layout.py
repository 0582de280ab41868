"""The package's layout rules (docs/architecture.md), kept by reading the source:

- imports go one way, down the data flow: a module imports the foundations, its own part and
  the parts before it, never a later part, and no module imports one that imports it back;
- no module over 500 lines, no function over 60 (data tables aside);
- a test that runs benchmark sections is marked slow.

Where today's code breaks a rule, the exception is listed here with its reason or its size: a
new breach fails, an exception may only shrink, and one no longer needed must be removed."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "edge_assistant"
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Modules of the package that `path` imports, at any depth of its code (a function's
    deferred import and a TYPE_CHECKING one count too)."""
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
            # `from .audio import pcm, wav` imports both submodules; `from .pcm import x` the module.
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            found |= submodules or ({base} & known)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names} & known
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = list(PACKAGE.rglob("*.py"))
    known = {module_name(path) for path in files}
    return {module_name(path): imported_modules(path, known) for path in files}


def short(module: str) -> str:
    """`edge_assistant.home.tools` -> `home.tools`; the package itself stays `edge_assistant`."""
    return module.partition(".")[2] or module


# --- no cycles ----------------------------------------------------------------------------------


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
    assert "edge_assistant.thinking.chat" in graph and graph["edge_assistant.thinking.llm"]
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_imported_submodule_is_seen():
    graph = import_graph()
    # `from ...audio.pcm import ...` and `from .home.tools import ...` inside a method.
    assert "edge_assistant.audio.pcm" in graph["edge_assistant.hearing.stt.transcriber"]
    assert "edge_assistant.home.tools" in graph["edge_assistant.respond"]
    # Each submodule of `from ..audio import pcm, wav`, not only the first.
    assert {"edge_assistant.audio.pcm", "edge_assistant.audio.wav"} <= graph["edge_assistant.bench.e2e"]
    # `from .. import __version__` is the package itself.
    assert "edge_assistant" in graph["edge_assistant.thinking.remote"]


def test_backend_neutral_chat_imports_no_backend():
    graph = import_graph()
    assert not graph["edge_assistant.thinking.chat"] & {
        "edge_assistant.thinking.llm", "edge_assistant.thinking.llama_engine", "edge_assistant.thinking.remote"}
    assert "edge_assistant.thinking.llm" not in graph["edge_assistant.thinking.remote"]


# --- the direction of imports -------------------------------------------------------------------

# Modules any part may import; they import only one another. (`edge_assistant` is the package
# itself, for its version.)
FOUNDATIONS = ("config", "events", "concurrency", "limits", "health", "shared_models", "models",
               "number_words", "broker")
FOUNDATION_PART = "foundations"

# The parts of docs/architecture.md's table, in the order a turn flows through them, with their
# top-level modules and packages. A module may import the foundations, its own part and the
# parts of a lower rank. Parts of one rank are parallel branches of the flow (a request is
# acted on or thought about) and import neither each other nor anything later.
PARTS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("audio", 1, ("audio",)),
    ("hearing", 2, ("hearing",)),
    ("acting", 3, ("home", "timers", "facts", "calculator")),
    ("thinking", 3, ("thinking",)),
    ("answering", 4, ("respond",)),
    ("speaking", 5, ("tts",)),
    ("the core", 6, ("core", "first_pass")),
    ("the edges", 7, ("mqtt", "status", "assembly", "service", "journal", "cli", "doctor", "bench")),
)

# Where today's code imports against the flow: (importer, imported) -> why. Fix the code and
# drop the line; never add one without changing docs/architecture.md to say so.
DIRECTION_EXCEPTIONS: dict[tuple[str, str], str] = {}


def part_of(module: str, parts=PARTS) -> tuple[str, int]:
    """The part a module belongs to, by its top-level name; foundations have rank 0."""
    top = short(module).split(".")[0]
    if module == "edge_assistant" or top in FOUNDATIONS:
        return FOUNDATION_PART, 0
    for part, rank, names in parts:
        if top in names:
            return part, rank
    raise LookupError(f"{module} is in no part of tests/test_layout.py's PARTS (and docs/architecture.md)")


def imports_against_the_flow(graph: dict[str, set[str]], parts=PARTS) -> dict[tuple[str, str], str]:
    """(importer, imported) -> what is wrong, for every import the direction rule forbids."""
    wrong = {}
    for module, imported in graph.items():
        part, rank = part_of(module, parts)
        for target in imported:
            target_part, target_rank = part_of(target, parts)
            if target_part in (part, FOUNDATION_PART):
                continue
            if part == FOUNDATION_PART:
                why = "a foundation imports a part"
            elif target_rank > rank:
                why = "imports a later part"
            elif target_rank == rank:
                why = "imports a parallel branch"
            else:
                continue
            wrong[short(module), short(target)] = f"{part} -> {target_part}: {why}"
    return wrong


def test_every_module_is_in_one_part():
    names = [name for _, _, modules in PARTS for name in modules] + list(FOUNDATIONS)
    assert len(names) == len(set(names)), "a module is listed in two parts"
    for module in import_graph():
        part_of(module)  # raises for a module in no part


def test_imports_follow_the_data_flow():
    wrong = imports_against_the_flow(import_graph())
    new = {pair: why for pair, why in wrong.items() if pair not in DIRECTION_EXCEPTIONS}
    assert not new, "imports against docs/architecture.md's flow:\n" + "\n".join(
        f"  {a} imports {b} ({why})" for (a, b), why in sorted(new.items()))
    stale = set(DIRECTION_EXCEPTIONS) - set(wrong)
    assert not stale, f"no longer imported against the flow: remove {sorted(stale)} from DIRECTION_EXCEPTIONS"


def test_the_direction_check_finds_each_kind_of_breach():
    parts = (("early", 1, ("a",)), ("left", 2, ("b",)), ("right", 2, ("c",)), ("late", 3, ("d",)))
    graph = {
        "edge_assistant.a": {"edge_assistant.config"},
        "edge_assistant.b": {"edge_assistant.a", "edge_assistant.c"},
        "edge_assistant.c": {"edge_assistant.d"},
        "edge_assistant.d": {"edge_assistant.a", "edge_assistant.b", "edge_assistant.c"},
        "edge_assistant.config": {"edge_assistant.a"},
    }
    assert imports_against_the_flow(graph, parts) == {
        ("b", "c"): "left -> right: imports a parallel branch",
        ("c", "d"): "right -> late: imports a later part",
        ("config", "a"): "foundations -> early: a foundation imports a part",
    }
    with pytest.raises(LookupError, match="edge_assistant.e"):
        imports_against_the_flow({"edge_assistant.e": set()}, parts)


def documented_parts() -> list[tuple[str, list[str]]]:
    """docs/architecture.md's table of parts: (part, the modules in its second column)."""
    rows = []
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) != 3 or cells[0] in ("part", "---"):
            continue
        rows.append((cells[0], [name.rstrip("/") for name in re.findall(r"`([\w/]+)`", cells[1])]))
    return rows


def test_the_parts_are_the_documented_ones():
    expected = [(FOUNDATION_PART, list(FOUNDATIONS))] + [(part, list(names)) for part, _, names in PARTS]
    assert documented_parts() == expected


# --- sizes ---------------------------------------------------------------------------------------

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60

# Today's longer modules and functions, at their size when the rule came: each may only shrink.
LONG_MODULES: dict[str, int] = {}
LONG_FUNCTIONS: dict[str, int] = {}

LITERALS = (ast.Dict, ast.List, ast.Tuple, ast.Set)


def function_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Its lines, decorators aside, less the continuation lines of the data tables in it: a
    literal assigned or returned (a discovery payload, a list of entities) reads as data."""
    lines = function.end_lineno - function.lineno + 1
    for node in ast.walk(function):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.Return)) and isinstance(node.value, LITERALS):
            lines -= node.value.end_lineno - node.value.lineno
    return lines


def function_sizes(source: str, where: str) -> dict[str, int]:
    """`where:Class.method` -> lines, for every function and method, nested ones too."""
    sizes = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                sizes[f"{where}:{name}"] = max(sizes.get(f"{where}:{name}", 0), function_lines(child))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return sizes


def package_sizes() -> tuple[dict[str, int], dict[str, int]]:
    modules, functions = {}, {}
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        source = path.read_text(encoding="utf-8")
        modules[where] = len(source.splitlines())
        functions.update(function_sizes(source, where))
    return modules, functions


def over_the_limit(sizes: dict[str, int], limit: int, exceptions: dict[str, int]) -> list[str]:
    """What breaks the size rule: a new long one, an exception that grew, one no longer needed."""
    problems = []
    for name, size in sorted(sizes.items()):
        allowed = exceptions.get(name)
        if size > limit and allowed is None:
            problems.append(f"{name} has {size} lines (limit {limit}): split it")
        elif allowed is not None and size > allowed:
            problems.append(f"{name} grew to {size} lines from {allowed}: split it, do not raise the exception")
    for name, allowed in sorted(exceptions.items()):
        if sizes.get(name, 0) <= limit:
            problems.append(f"{name} is now within {limit} lines: remove its exception")
    return problems


def test_no_module_over_500_lines():
    modules, _ = package_sizes()
    problems = over_the_limit(modules, MAX_MODULE_LINES, LONG_MODULES)
    assert not problems, "\n".join(problems)


def test_no_function_over_60_lines():
    _, functions = package_sizes()
    problems = over_the_limit(functions, MAX_FUNCTION_LINES, LONG_FUNCTIONS)
    assert not problems, "\n".join(problems)


def test_the_size_rule_reports_new_grown_and_stale_exceptions():
    sizes = {"a.py": 70, "b.py": 80, "c.py": 90, "d.py": 40, "e.py": 55}
    exceptions = {"b.py": 75, "c.py": 95, "d.py": 65, "gone.py": 100}
    assert over_the_limit(sizes, 60, exceptions) == [
        "a.py has 70 lines (limit 60): split it",
        "b.py grew to 80 lines from 75: split it, do not raise the exception",
        "d.py is now within 60 lines: remove its exception",
        "gone.py is now within 60 lines: remove its exception",
    ]


def test_function_sizes_count_code_not_data_tables():
    source = (
        "class A:\n"
        "    def method(self):\n"
        "        table = {\n" + "            'key': 1,\n" * 70 + "        }\n"
        "        return [\n" + "            1,\n" * 10 + "        ]\n"
        "\n"
        "    async def nested(self):\n"
        "        def inner():\n"
        "            pass\n"
        "        return inner\n"
    )
    assert function_sizes(source, "m.py") == {
        "m.py:A.method": 3, "m.py:A.nested": 4, "m.py:A.nested.inner": 2}


# --- slow markers ---------------------------------------------------------------------------------

TESTS = ROOT / "tests"

# Tests that call the benchmark but measure nothing: quick checks that it refuses or skips.
BENCH_WITHOUT_SECTIONS = {
    "test_bench.py::test_bad_options_are_refused_before_anything_runs":
        "the options are refused before any section starts",
    "test_bench.py::test_sections_without_a_wake_word_are_skipped_with_the_reason":
        "both sections asked for are skipped before they measure anything",
    "test_bench.py::test_stop_section_needs_the_stop_word":
        "the one section asked for is skipped before it measures anything",
}


def bench_section_calls() -> set[str]:
    """What a test calls to run benchmark sections: the command (`run_bench`), the runner's
    `run`, and each section's measurement, named in bench/runner.py's MEASURES."""
    tree = ast.parse((PACKAGE / "bench" / "runner.py").read_text(encoding="utf-8"))
    measures = next(node.value for node in tree.body if isinstance(node, ast.AnnAssign)
                    and getattr(node.target, "id", "") == "MEASURES")
    return {"run_bench", "runner.run", "bench.run"} | {value.id for value in measures.values}


def called_names(function: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name):
                names.add(node.func.id)
            elif isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
                names.add(f"{node.func.value.id}.{node.func.attr}")
    return names


def is_marked_slow(function: ast.FunctionDef | ast.AsyncFunctionDef, module: ast.Module) -> bool:
    marks = list(function.decorator_list)
    marks += [node.value for node in module.body if isinstance(node, ast.Assign)
              and any(getattr(target, "id", "") == "pytestmark" for target in node.targets)]
    return any("pytest.mark.slow" in ast.unparse(mark) for mark in marks)


def unmarked_bench_tests(source: str, file: str, runs_sections: set[str]) -> set[str]:
    module = ast.parse(source)
    return {
        f"{file}::{node.name}" for node in module.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
        and called_names(node) & runs_sections and not is_marked_slow(node, module)
    }


def test_tests_that_run_benchmark_sections_are_marked_slow():
    runs_sections = bench_section_calls()
    assert {"run_bench", "bench_llm", "bench_stop"} <= runs_sections
    unmarked = set()
    for path in sorted(TESTS.glob("test_*.py")):
        unmarked |= unmarked_bench_tests(path.read_text(encoding="utf-8"), path.name, runs_sections)
    assert unmarked <= set(BENCH_WITHOUT_SECTIONS), f"mark these @pytest.mark.slow: {sorted(unmarked - set(BENCH_WITHOUT_SECTIONS))}"
    assert unmarked == set(BENCH_WITHOUT_SECTIONS), "an exception no longer needed: remove it from BENCH_WITHOUT_SECTIONS"


def test_the_slow_marker_check_finds_unmarked_bench_tests():
    source = (
        "import pytest\n"
        "@pytest.mark.slow\n"
        "def test_marked(): run_bench('x')\n"
        "def test_unmarked(): runner.run(config, options)\n"
        "def test_section(): bench_stt(models, report, options)\n"
        "def test_other(): run_section(report, 'x', lambda: None)\n"
    )
    assert unmarked_bench_tests(source, "t.py", bench_section_calls()) == {
        "t.py::test_unmarked", "t.py::test_section"}
    assert not unmarked_bench_tests("import pytest\npytestmark = [pytest.mark.slow]\n" + source,
                                    "t.py", bench_section_calls())
