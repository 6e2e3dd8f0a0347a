"""The feed-destination seam (SPEC 8): create/migrate, load with load/truncateAndLoad, commit."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime

from courier.config.models import FeedConfig
from courier.engines.base import Relation
from courier.plan import FeedCounts

# feed type -> how it is spelled in SQL (DuckDB types; other destinations map their own)
FEED_TYPES = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
    "json": "JSON",
}


def sql_type(feed_type: str) -> str:
    if feed_type.startswith("decimal"):
        return feed_type.upper()
    return FEED_TYPES[feed_type]


@dataclass
class LoadResult:
    counts: FeedCounts
    ignored_columns: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LoadContext:
    run_id: str
    courier: str
    loaded_at: datetime


class FeedDestination(abc.ABC):
    @abc.abstractmethod
    def ensure_table(self, feed: FeedConfig) -> list[str]:
        """Create or migrate the feed table; return what changed (for the run's report)."""

    @abc.abstractmethod
    def truncate(self, feed: FeedConfig) -> int:
        """Empty the feed table (inside the run's transaction); return rows removed."""

    @abc.abstractmethod
    def load(self, feed: FeedConfig, source: Relation, ctx: LoadContext) -> LoadResult:
        """Cast, reject into quarantine, and upsert (or append without a primary key)."""

    @abc.abstractmethod
    def row_count(self, feed_id: str) -> int | None:
        """Rows in the feed table, None when it does not exist."""

    @abc.abstractmethod
    def sample(self, feed_id: str, limit: int) -> list[dict[str, object]]:
        """A few rows of the feed table as plain values."""
