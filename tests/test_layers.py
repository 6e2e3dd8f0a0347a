"""The layers read bottom-up: no import circle runs through courier.project, and the lint
rules that keep it so (ruff flake8-tidy-imports) refuse an upward import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "courier"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_level_imports(path: Path, known: set[str]) -> set[str]:
    """courier modules a module imports when it is imported (not inside functions, not under
    `if TYPE_CHECKING`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in tree.body:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        out.update(n for n in names if n in known)
    return out


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    return {name: module_level_imports(path, known) - {name} for name, path in files.items()}


def cycles_through(graph: dict[str, set[str]], start: str) -> list[list[str]]:
    """Import paths that lead from `start` back to it."""
    found: list[list[str]] = []

    def walk(node: str, path: list[str], seen: set[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                found.append([*path, start])
            elif nxt not in seen:
                seen.add(nxt)
                walk(nxt, [*path, nxt], seen)

    walk(start, [start], {start})
    return found


def test_no_import_circle_runs_through_project() -> None:
    graph = import_graph()
    assert graph["courier.project"] <= {
        "courier.config.loader", "courier.config.models", "courier.errors", "courier.patterns",
        "courier.config",
    }  # fmt: skip
    assert cycles_through(graph, "courier.project") == []


def test_the_core_imports_no_front_end_at_module_level() -> None:
    graph = import_graph()
    core = ["courier.context", "courier.workspace", "courier.plan", "courier.records",
            "courier.backends", "courier.project", "courier.windows", "courier.patterns",
            "courier.alerts", "courier.state.base", "courier.state.duckdb"]  # fmt: skip
    fronts = ("courier.cli", "courier.ingest", "courier.ui", "courier.scheduling")
    for module in core:
        assert not [m for m in graph[module] if m.startswith(fronts)], module


def test_the_lint_refuses_an_upward_import() -> None:
    probe = (
        '"""A core module importing a front end and an SDK (must fail the lint)."""\n\n'
        "import duckdb\n\nfrom courier.cli.main import main\n"
        "from courier.scheduling.runner import GroupRunner\n\n"
        "__all__ = ['GroupRunner', 'duckdb', 'main']\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--stdin-filename",
         "courier/layering_probe.py", "-"],
        input=probe, capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "TID253" in done.stdout and "`duckdb` is banned at the module level" in done.stdout
    assert "TID251" in done.stdout and "core must not import the CLI front end" in done.stdout
    assert "core must not import the scheduler; it calls Context.run" in done.stdout


def test_project_loading_reaches_no_check_above_it() -> None:
    """courier.project imports nothing above it even inside functions: the subsystems' checks
    come in through courier.validate.load_project (read_project(checks=...))."""
    tree = ast.parse((PACKAGE / "project.py").read_text(encoding="utf-8"))
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("courier")
    }
    assert imported <= {
        "courier.config.loader", "courier.config.models", "courier.errors", "courier.patterns",
    }, imported  # fmt: skip
