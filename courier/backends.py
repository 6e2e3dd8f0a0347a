"""Backend registry: config `type` -> the module that implements a seam, imported on first use.

A new engine, destination or state backend is one module plus one line here. Each module
exposes `open_backend(name, config, session)`; `session` is a Session the backends of one
workspace share (DuckDB backends on the same database share one connection, and so one
transaction). A missing optional package becomes a ConfigError with the pip command.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Literal

from courier.errors import ConfigError

TSeam = Literal["engine", "destination", "state"]

# seam -> type -> (module, package it needs or None, courier extra)
BACKENDS: dict[str, dict[str, tuple[str, str | None, str | None]]] = {
    "engine": {
        "duckdb": ("courier.engines.duckdb", None, None),
        "spark": ("courier.engines.spark", "pyspark", "spark"),
    },
    "destination": {
        "duckdb": ("courier.destinations.duckdb", None, None),
        "memory": ("courier.destinations.memory", None, None),
        "delta": ("courier.destinations.delta", "deltalake", "delta"),
    },
    "state": {
        "duckdb": ("courier.state.duckdb", None, None),
    },
}


class Session:
    """What the backends of one workspace share, keyed by the backend family's choice."""

    def __init__(self, project: Any, read_only: bool = False):
        self.project = project
        self.read_only = read_only
        self.shared: dict[Any, Any] = {}
        self._closers: list[Callable[[], None]] = []

    def share(self, key: Any, make: Callable[[], Any], close: Callable[[Any], None]) -> Any:
        """The object under key, made (and registered for closing) on first use."""
        if key not in self.shared:
            obj = make()
            self.shared[key] = obj
            self._closers.append(lambda: close(obj))
        return self.shared[key]

    def close(self) -> None:
        """Close what was shared, newest first."""
        while self._closers:
            self._closers.pop()()


def open_backend(seam: TSeam, type_: str, name: str, config: Any, session: Session) -> Any:
    """The backend of a seam for config `type_`, named `name` in config."""
    return backend_module(seam, type_, name).open_backend(name, config, session)


def backend_module(seam: TSeam, type_: str, name: str) -> Any:
    """The module that implements a seam for config `type_` (imported now)."""
    known = BACKENDS[seam]
    if type_ not in known:
        raise ConfigError(
            f"unknown {seam} type {type_!r} for {name!r}: use one of {', '.join(sorted(known))}",
            key=f"{seam}s.{name}",
        )
    module_name, package, extra = known[type_]
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        if package is None:
            raise
        raise ConfigError(
            f"{seam} type '{type_}' needs {package}: pip install 'courier[{extra}]'",
            key=f"{seam}s.{name}",
        ) from exc
