"""The composition root: the engines, destinations and state store a project uses.

Each comes from the backend registry (courier.backends) by its config `type`, opened on first
use. DuckDB backends on one database share a connection, so with DuckDB as destination and
state a run's rows and its state commit in one transaction (`one_transaction`).
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from courier.backends import Session, backend_module, open_backend
from courier.errors import ConfigError

if TYPE_CHECKING:
    from courier.config.models import CourierConfig, FeedConfig
    from courier.destinations.base import FeedDestination
    from courier.engines.base import QueryEngine
    from courier.project import Project
    from courier.state.base import StateStore


STATE_TYPE = "duckdb"  # the one state backend so far


class Workspace:
    def __init__(self, project: Project, read_only: bool = False):
        self.project = project
        self.session = Session(project, read_only)
        self._engines: dict[str, QueryEngine] = {}
        self._destinations: dict[str, FeedDestination] = {}
        self._state: StateStore | None = None

    # -- the parts, opened on first use --------------------------------------------------------
    @property
    def state(self) -> StateStore:
        if self._state is None:
            self._state = open_backend("state", STATE_TYPE, "state", self.project.settings.state,
                                       self.session)  # fmt: skip
        return self._state

    def engine_named(self, name: str) -> QueryEngine:
        if name not in self._engines:
            try:
                config = self.project.settings.engine(name)
            except KeyError:
                raise ConfigError(
                    f"unknown engine {name!r}: add [engines.{name}] to config/courier.toml",
                    self.project.root / "config" / "courier.toml",
                ) from None
            self._engines[name] = open_backend("engine", config.type, name, config, self.session)
        return self._engines[name]

    def destination_named(self, name: str) -> FeedDestination:
        if name not in self._destinations:
            try:
                config = self.project.settings.destination(name)
            except KeyError:
                raise ConfigError(
                    f"unknown destination {name!r}: add [destinations.{name}] to "
                    "config/courier.toml",
                    self.project.root / "config" / "courier.toml",
                ) from None
            self._destinations[name] = open_backend(
                "destination", config.type, name, config, self.session
            )
        return self._destinations[name]

    @property
    def engine(self) -> QueryEngine:
        """The default engine (duckdb)."""
        return self.engine_named("duckdb")

    @property
    def destination(self) -> FeedDestination:
        """The default destination ([feeds] destination)."""
        return self.destination_named(self.project.settings.feeds.destination)

    def engine_for(self, courier: CourierConfig) -> QueryEngine:
        return self.engine_named(courier.engine)

    def destination_for(self, feed: FeedConfig) -> FeedDestination:
        return self.destination_named(feed.destination or self.project.settings.feeds.destination)

    def one_transaction(self, destination: FeedDestination) -> bool:
        """Do the destination's commit and the state's commit happen as one transaction?"""
        same = getattr(destination, "shares_transaction_with", None)
        return bool(same and same(self.state))

    @property
    def connection(self) -> Any:
        """The DuckDB connection of the feed database (the default backends share it)."""
        return getattr(self.state, "con", None)

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        for destination in self._destinations.values():
            destination.close()
        if self._state is not None:
            self._state.close()
        self.session.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_workspace(project: Project, read_only: bool = False) -> Workspace:
    """Open a project's workspace; the state store opens now (a feed database locked by another
    process raises TransientError here), the rest on first use."""
    ws = Workspace(project, read_only)
    try:
        ws.state  # noqa: B018 - opened eagerly, see above
    except BaseException:
        ws.close()
        raise
    return ws


def keep_open(project: Project) -> AbstractContextManager[Any]:
    """While held, the project's state backend stays open in this process, so runs in parallel
    threads attach to a live database (DuckDB needs it: one instance per file and process);
    a backend without such a hook holds nothing."""
    hook = getattr(backend_module("state", STATE_TYPE, "state"), "keep_open", None)
    return hook(project) if hook is not None else contextlib.nullcontext()
