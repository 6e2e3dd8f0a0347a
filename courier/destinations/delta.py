"""Feeds in Delta Lake tables through delta-rs (SPEC 8): [destinations.NAME] type = "delta".

A run's rows are staged in a private scratch DuckDB destination (the DuckDB backend's own
casts, quarantine, required/primary-key checks and last-record-wins dedupe, so both
destinations share one behaviour), then each feed is committed to its Delta table in one Delta
commit (courier/destinations/delta_table.py): MERGE on the primary key, append without one,
overwrite after truncateAndLoad. Each commit carries the application transaction
`courier:<courier>:<feed>` with the run's sequence as version (LoadContext.sequence: a
courier's runs are serialised by its lease, so it only grows) and the run id in its commit
metadata; a feed that already holds the run is skipped, so commit(run) is idempotent, and
recovery asks feed by feed (committed_feeds) to roll a run killed between commits forward.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from courier.destinations.base import FeedDestination, LoadContext, LoadResult, TLoadMode
from courier.destinations.delta_table import (
    DeltaFeedTable,
    DeltaLocation,
    TWriteMode,
    app_id,
    delta_location,
    require_deltalake,
)
from courier.errors import ConfigError, LoadError
from courier.plan import FeedCounts

if TYPE_CHECKING:
    from courier.backends import Session
    from courier.config.models import DeltaDestinationConfig, FeedConfig
    from courier.destinations.duckdb import StagingDestination
    from courier.engines.base import Rows

HISTORY_DEPTH = 100  # commits per table searched for a run id ("did run R commit?")


def open_backend(name: str, config: DeltaDestinationConfig, session: Session) -> DeltaDestination:
    """Registry entry (courier.backends)."""
    require_deltalake(f"destinations.{name}")
    project = session.project
    storage = project.settings.storages.get(config.storage)
    if storage is None:
        raise ConfigError(
            f"destination {name!r} names storage {config.storage!r}, which is not defined: add "
            f"[storages.{config.storage}] to config/courier.toml",
            key=f"destinations.{name}.storage",
        )
    location = delta_location(config.storage, storage, config.path, project.root)
    feeds = [
        f
        for f in project.feeds.values()
        if (f.destination or project.settings.feeds.destination) == name
    ]
    return DeltaDestination(name, location, feeds, session)


class DeltaDestination(FeedDestination):
    type = "delta"

    def __init__(
        self, name: str, location: DeltaLocation, feeds: list[FeedConfig], session: Session | None
    ):
        self.name = name
        self.location = location
        self.feeds = {f.id: f for f in feeds}
        self.session = session
        self.ctx: LoadContext | None = None
        self.stage: StagingDestination | None = None  # where the run's rows are staged
        self.loaded: dict[str, FeedConfig] = {}  # feeds the open run loaded, in load order
        self.counts: dict[str, FeedCounts] = {}  # each feed's last load's counts

    def table(self, feed: FeedConfig) -> DeltaFeedTable:
        return DeltaFeedTable(feed, self.location)

    def url(self, feed_id: str) -> str:
        return self.location.table_url(feed_id)

    # -- the run -----------------------------------------------------------------------------
    def begin(self, ctx: LoadContext) -> None:
        self.abort()
        self.ctx = ctx
        self.loaded = {}
        self.counts = {}

    def ensure_table(self, feed: FeedConfig) -> list[str]:
        changes = self.table(feed).plan_schema().changes(feed.id)  # refusals before any commit
        self.feeds.setdefault(feed.id, feed)
        return changes

    def load(self, feed: FeedConfig, rows: Rows, mode: TLoadMode = "load") -> LoadResult:
        from courier.destinations.duckdb import stage_for

        if self.ctx is None:
            raise LoadError(f"feed {feed.id}: load called outside a run (call begin first)")
        if self.stage is None:  # staged where the rows are (the DuckDB engine's connection)
            self.stage = stage_for(rows, self.session)
            self.stage.begin(self.ctx)
        self.stage.ensure_table(feed)
        result = self.stage.load(feed, rows, mode)
        self.loaded[feed.id] = feed
        # the rows the MERGE replaces are counted at the commit, from its metrics (counting
        # them here would read every key of the table)
        self.counts[feed.id] = result.counts
        return result  # type: ignore[no-any-return]

    def commit(self, run_id: str) -> None:
        ctx = self.ctx
        if ctx is None or ctx.run_id != run_id:
            if self.committed(run_id):
                return
            raise LoadError(f"run {run_id} has no open load to commit")
        feeds, stage = list(self.loaded), self.stage
        for feed in self.loaded.values():
            if feed.id in ctx.committed or stage is None:
                continue
            truncated = stage.truncated(feed.id)
            mode: TWriteMode = (
                "overwrite" if truncated else ("merge" if feed.primary_key else "append")
            )
            data = partial(stage.arrow, feed.id)  # streamed from the stage (each attempt)
            table = self.table(feed)
            with stage.writing():
                table.write(
                    data, mode, courier=ctx.courier, run_id=run_id, sequence=ctx.sequence,
                    run_feeds=feeds,
                )  # fmt: skip
            if table.replaced is not None and feed.id in self.counts:
                self.counts[feed.id].deleted = table.replaced
        self._close_stage()
        self.ctx = None
        self.loaded = {}

    def abort(self) -> None:
        self._close_stage()
        self.ctx = None
        self.loaded = {}

    def _close_stage(self) -> None:
        if self.stage is not None:
            self.stage.close()
            self.stage = None

    def committed(self, run_id: str) -> bool:
        """Did every feed run `run_id` loaded here commit it? (A run killed between its feed
        commits did not: recovery asks committed_feeds and rolls it forward.)"""
        found: dict[str, list[str]] = {}
        for feed in self.feeds.values():
            table = self.table(feed)
            if table.open(refresh=True) is None:
                continue
            for h in table.history(HISTORY_DEPTH):
                if h["run_id"] == run_id:
                    found[feed.id] = h["run_feeds"] or [feed.id]
                    break
        if not found:
            return False
        wanted = {f for feeds in found.values() for f in feeds}
        return wanted <= set(found)

    def committed_feeds(self, run_id: str, feed_ids: list[str]) -> set[str]:
        """The feeds whose table holds a commit of run `run_id` (its latest commits, then
        its whole log: a busy table may have had many commits since)."""
        out = set()
        for feed_id in feed_ids:
            feed = self._feed(feed_id)
            if feed is None:
                continue
            table = self.table(feed)
            if table.committed_run(None, run_id) or table.committed_run(None, run_id, None):
                out.add(feed_id)
        return out

    def last_sequence(self, courier: str, feed_ids: list[str]) -> int:
        versions = [
            self.table(feed).committed_version(app_id(courier, feed.id))
            for feed in (self._feed(f) for f in feed_ids)
            if feed is not None
        ]
        return max((v for v in versions if v is not None), default=0)

    # -- reading ---------------------------------------------------------------------------------
    def _feed(self, feed_id: str) -> FeedConfig | None:
        return self.feeds.get(feed_id)

    def existing_columns(self, feed_id: str) -> dict[str, str] | None:
        """The Delta table's columns and their Delta types; None when there is no table."""
        feed = self._feed(feed_id)
        return None if feed is None else self.table(feed).columns()

    def row_count(self, feed_id: str) -> int | None:
        feed = self._feed(feed_id)
        return None if feed is None else self.table(feed).row_count()

    def sample(self, feed_id: str, limit: int) -> list[dict[str, object]]:
        feed = self._feed(feed_id)
        return [] if feed is None else self.table(feed).sample(limit)

    def close(self) -> None:
        self.abort()
