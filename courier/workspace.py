"""The composition root: which engine, destination and state store a project uses.

DuckDB is today's only implementation of each seam; they share one connection (and so one
transaction) when state lives in the feed database, which is the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from courier.destinations.base import FeedDestination
from courier.engines.base import QueryEngine
from courier.errors import ConfigError
from courier.project import Project
from courier.state.base import StateStore


@dataclass
class Workspace:
    engine: QueryEngine
    destination: FeedDestination
    state: StateStore
    connection: Any

    def close(self) -> None:
        self.engine.close()
        self.connection.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_workspace(project: Project, read_only: bool = False) -> Workspace:
    from courier.destinations.duckdb import DuckDBDestination
    from courier.engines.duckdb import DuckDBEngine, connect
    from courier.state.duckdb import DuckDBStateStore

    feeds_db = project.path(project.settings.feeds.database)
    state_db = project.path(project.settings.state.database)
    if feeds_db.resolve() != state_db.resolve():
        raise ConfigError(
            "[state] database must be the feed database for now, so that a run's state and "
            "its rows commit in one transaction; remove [state] database or set it to "
            f"{project.settings.feeds.database!r}",
            project.root / "config" / "courier.toml",
            "state.database",
        )
    feeds = project.settings.feeds
    con = connect(feeds_db, feeds.memory_limit, feeds.threads, feeds.lock_timeout)
    return Workspace(DuckDBEngine(con), DuckDBDestination(con), DuckDBStateStore(con), con)
