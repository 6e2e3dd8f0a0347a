"""courier's public API is what courier.__all__ lists (pinned here), and each name resolves."""

from __future__ import annotations

import subprocess
import sys

import courier

PUBLIC = [
    "ConfigError", "ConfigErrors", "Context", "CourierError", "DatabaseLockedError",
    "EngineError", "FormatError", "IngestError", "LoadError", "Project", "QueryError",
    "RunError", "RunOptions", "RunRecord", "StorageError", "TransientEngineError",
    "TransientError", "TransientStorageError", "Window", "load_project",
]  # fmt: skip


def test_all_is_pinned() -> None:
    assert courier.__all__ == PUBLIC


def test_every_exported_name_resolves_to_its_defining_object() -> None:
    for name in courier.__all__:
        obj = getattr(courier, name)
        assert obj.__name__ == name


def test_importing_courier_loads_no_backend_sdk() -> None:
    code = (
        "import sys, courier\n"
        "courier.Context, courier.load_project\n"
        "heavy = [m for m in ('duckdb', 'boto3', 'azure', 'pyspark', 'deltalake') "
        "if m in sys.modules]\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
