"""The layout's rules, as a newcomer relies on them (docs/design.md, "Layout"): imports point one
way (cli -> workflows -> stages -> engine/text/sources), no import circle, a stage reads another
stage only through its schema and readers, every folder under data/ comes from DataRoot, and
the tests need nothing from benchmarks/."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIBRARY = REPO / "twiki"
LAYERS = ("engine", "text", "sources", "stages")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names, line) of every import in a file, lazy ones in functions included."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [a.name for a in node.names]
            out.append((module, names, node.lineno))
            # `from . import x` imports module x when there is one
            out += [(f"{module}.{n}", [], node.lineno) for n in names
                    if (REPO / Path(*f"{module}.{n}".split("."))).with_suffix(".py").exists()]
    return out


def library_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in LIBRARY.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for m, p in modules.items():
        for target, _, _ in imports(p):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != m and not m.startswith(target + "."):
                graph[m].add(target)   # a package's __init__ is not a dependency of its modules
    return graph


def test_the_library_has_no_import_circle():
    graph = library_graph()
    state: dict[str, int] = {}
    circles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                circles.append(path[path.index(n):] + [n] if n in path else [m, n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "pipelines":
        return "workflows"
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return {"twiki.cli": "cli", "twiki.__main__": "cli", "twiki.config": "config"}.get(module,
                                                                                     "base")


def test_imports_point_one_way():
    """engine, text and sources never reach up into stages; stages never reach the CLI, the
    build config or the workflows; nothing below the CLI imports it."""
    allowed = {"base": {"base"}, "engine": {"base", "engine"}, "text": {"base", "text"},
               "sources": {"base", "engine", "sources"},
               "stages": {"base", "engine", "text", "sources", "stages"}}
    wrong = []
    files = [*LIBRARY.rglob("*.py"), *(REPO / "pipelines").rglob("*.py")]
    for path in files:
        mod = module_name(path)
        if mod.startswith("twiki.lm") or mod == "twiki":
            continue   # the LM side sits beside the data side; `twiki` re-exports loaders
        for target, _, line in imports(path):
            if not target.startswith(("twiki.", "pipelines")):
                continue
            if layer(mod) in allowed and layer(target) not in allowed[layer(mod)]:
                wrong.append(f"{path.relative_to(REPO)}:{line} ({layer(mod)}) imports {target}")
            if target.startswith("twiki.cli") and layer(mod) != "cli":
                wrong.append(f"{path.relative_to(REPO)}:{line} imports the CLI")
    assert not wrong, "\n".join(wrong)


def test_a_stage_reads_another_stage_only_through_its_schema_and_readers():
    """What a stage takes from another stage's module: schemas and constants (UPPER_CASE),
    readers of that stage's artifact (iter_*, read_*) and tables of its report (*_table);
    never its algorithm or its run."""
    wrong = []
    for path in (LIBRARY / "stages").glob("*.py"):
        for target, names, line in imports(path):
            if target.startswith("twiki.stages.") and target != module_name(path):
                for n in names:
                    if not (n.isupper() or n.startswith(("iter_", "read_")) or n.endswith("_table")):
                        wrong.append(f"{path.name}:{line} takes {n} from {target}")
    assert not wrong, "\n".join(wrong)


def test_every_data_folder_comes_from_data_root():
    """No folder under data/ is put together by hand outside DataRoot (twiki/engine/paths.py):
    no `data_root.root / ...`, no sibling folders made by renaming an artifact's name."""
    hand_built = re.compile(r"\broot\.root\s*/|with_name\([^)]*\+\s*\"_(removed|articles)\"")
    found = []
    for path in [*LIBRARY.rglob("*.py"), *(REPO / "pipelines").rglob("*.py")]:
        if path == LIBRARY / "engine" / "paths.py":
            continue
        for no, text in enumerate(path.read_text().splitlines(), 1):
            if hand_built.search(text):
                found.append(f"{path.relative_to(REPO)}:{no}: {text.strip()}")
    assert not found, "\n".join(found)


def test_tests_import_nothing_from_benchmarks():
    found = [f"{p.name}:{line} imports {t}" for p in (REPO / "tests").glob("*.py")
             for t, _, line in imports(p) if t.split(".")[0] == "benchmarks"]
    assert not found, "\n".join(found)


def test_the_package_version_is_the_projects():
    from twiki import __version__
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["version"] == __version__
