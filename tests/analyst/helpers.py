"""Shared helpers for the analyst tests: the CLI as a subprocess, nested payloads."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from tests.projects import ProjectFactory


def courier(project: ProjectFactory | str, *args: str) -> subprocess.CompletedProcess[str]:
    root = project if isinstance(project, str) else str(project.root)
    return subprocess.run(
        [sys.executable, "-m", "courier", "--project", root, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def order(i: int, items: int = 2, **extra: Any) -> dict[str, Any]:
    """A nested order event: customer struct, items list, attributes key/value list."""
    return {
        "event_id": f"e{i}",
        "occurredAt": f"2026-11-22T{i % 24:02d}:00:00Z",
        "customer": {"id": 100 + i, "email": f"c{i}@x.test", "address": {"city": "Berlin"}},
        "items": [{"sku": f"s{j}", "qty": j + 1, "price": 1.25 * (j + 1)} for j in range(items)],
        "attributes": [
            {"name": "channel", "value": "web", "type": "string"},
            {"name": "score", "value": str(i * 10), "type": "int"},
        ],
        **extra,
    }
