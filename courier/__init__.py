"""courier: a batch ingestion engine (SPEC.md). The public API is what `__all__` lists:

    from courier import Context, load_project
    project = load_project("path/to/project")
    ctx = Context(project)
    courier = project.courier("web_events")
    ctx.run("web_events", ctx.window(courier, date="2026-11-22"))

Names are imported on first use, so `import courier` stays cheap (no DuckDB, no SDKs).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from courier.context import Context
    from courier.errors import (
        ConfigError,
        ConfigErrors,
        CourierError,
        DatabaseLockedError,
        EngineError,
        FormatError,
        IngestError,
        LoadError,
        QueryError,
        RunError,
        StorageError,
        TransientEngineError,
        TransientError,
        TransientStorageError,
    )
    from courier.plan import RunOptions
    from courier.project import Project
    from courier.records import RunRecord
    from courier.validate import load_project
    from courier.windows import Window

_WHERE = {
    "Context": "courier.context",
    "Project": "courier.project",
    "load_project": "courier.validate",
    "RunOptions": "courier.plan",
    "RunRecord": "courier.records",
    "Window": "courier.windows",
    **{
        name: "courier.errors"
        for name in (
            "CourierError", "TransientError", "DatabaseLockedError", "ConfigError",
            "ConfigErrors", "StorageError", "TransientStorageError", "FormatError", "QueryError",
            "LoadError", "EngineError", "TransientEngineError", "RunError", "IngestError",
        )
    },
}  # fmt: skip

__all__ = [
    "ConfigError", "ConfigErrors", "Context", "CourierError", "DatabaseLockedError",
    "EngineError", "FormatError", "IngestError", "LoadError", "Project", "QueryError",
    "RunError", "RunOptions", "RunRecord", "StorageError", "TransientEngineError",
    "TransientError", "TransientStorageError", "Window", "load_project",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'courier' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
