"""The feed-destination seam (SPEC 8): begin, load (load / truncateAndLoad), commit per run.

A run loads its feeds between `begin` and `commit`; nothing it loads is visible before
`commit`, and `commit(run_id)` is idempotent, so a run killed after its destination commit can
be rolled forward by asking `committed(run_id)`; a destination that commits feed by feed (Delta)
answers per feed (`committed_feeds`), so a run killed between its feed commits is rolled forward
feed by feed. Feed types are the neutral vocabulary below;
each destination maps them to its own types.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from courier.plan import FeedCounts

if TYPE_CHECKING:
    import pyarrow as pa

    from courier.config.models import FeedConfig
    from courier.engines.base import Rows
    from courier.state.base import QuarantineLog

TLoadMode = Literal["load", "truncateAndLoad"]

# The feed type vocabulary (feeds/FEED.toml [fields]); "decimal(P,S)" besides these.
FEED_TYPES = ("string", "int", "bigint", "double", "boolean", "date", "timestamp", "json")


@dataclass(frozen=True)
class FeedType:
    """A parsed feed type: kind in FEED_TYPES or "decimal" (with precision and scale)."""

    kind: str
    precision: int | None = None
    scale: int | None = None

    @classmethod
    def parse(cls, spelled: str) -> FeedType:
        """'bigint' -> FeedType('bigint'); 'decimal(18,2)' -> FeedType('decimal', 18, 2)."""
        text = spelled.strip().lower().replace(" ", "")
        if text.startswith("decimal"):
            inner = text[len("decimal") :].strip("()") or "18,3"
            p, _, s = inner.partition(",")
            return cls("decimal", int(p), int(s or 0))
        if text not in FEED_TYPES:
            raise ValueError(f"unknown feed type {spelled!r}: use one of {', '.join(FEED_TYPES)}")
        return cls(text)

    def sql(self, names: dict[str, str]) -> str:
        """This type as a SQL backend spells it: `names` maps each kind, decimals are
        DECIMAL(p,s) in every dialect courier speaks."""
        if self.kind == "decimal":
            return f"DECIMAL({self.precision},{self.scale})"
        return names[self.kind]

    def arrow(self) -> pa.DataType:
        """The Arrow type rows of this feed type carry (json: its text as a string)."""
        import pyarrow as pa

        if self.kind == "decimal":
            return pa.decimal128(self.precision or 18, self.scale or 0)
        return {
            "string": pa.string(),
            "int": pa.int32(),
            "bigint": pa.int64(),
            "double": pa.float64(),
            "boolean": pa.bool_(),
            "date": pa.date32(),
            "timestamp": pa.timestamp("us", tz="UTC"),
            "json": pa.string(),
        }[self.kind]


@dataclass
class LoadResult:
    counts: FeedCounts
    ignored_columns: list[str] = field(default_factory=list)  # incoming, not in the feed
    # the destination reads the rows again at its commit: the engine keeps them until then
    holds_rows: bool = False


@dataclass(frozen=True)
class LoadContext:
    """The run a destination loads for. Rejected rows go to `quarantine` (file, line, reason,
    raw) under this run id; they commit with the run's state."""

    run_id: str
    courier: str
    loaded_at: datetime
    quarantine: QuarantineLog | None = None
    # The run's place in its courier's run sequence (monotonic; saved with the run's plan):
    # a destination that records application transactions (Delta `txn`) commits it as the
    # version and refuses a repeated or lower one. None when state and feeds commit as one.
    sequence: int | None = None
    # Feeds that already hold this run's commit (a run rolled forward after a kill): staged
    # again for the run's counts and quarantine, never committed twice.
    committed: frozenset[str] = frozenset()


class FeedDestination(abc.ABC):
    """Feed tables. Columns: the feed's fields (mapped from FeedType) plus SYSTEM_COLUMNS."""

    type: str = ""

    @abc.abstractmethod
    def begin(self, ctx: LoadContext) -> None:
        """Start the run's load. Nothing loaded is visible to readers before commit."""

    @abc.abstractmethod
    def ensure_table(self, feed: FeedConfig) -> list[str]:
        """Create or migrate the feed table (within the run); return what changed."""

    @abc.abstractmethod
    def load(self, feed: FeedConfig, rows: Rows, mode: TLoadMode = "load") -> LoadResult:
        """Cast rows to the feed's types; rows that cannot be cast, miss a required field
        or (unknown_columns = "reject") carry unknown columns go to ctx.quarantine. With a
        primary key, upsert: the last record by (rank, line) wins over rows in the run and in
        the table; without, append. truncateAndLoad: the table is emptied first (once per feed
        per run), as part of the same commit. The result's counts may be completed by commit
        (Delta counts the rows its MERGE replaced there): read them after it."""

    @abc.abstractmethod
    def commit(self, run_id: str) -> None:
        """Make the run's loads visible atomically per feed. Idempotent: committing a run
        that already committed does nothing."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Drop what the open run loaded; the tables stay as before begin."""

    @abc.abstractmethod
    def committed(self, run_id: str) -> bool:
        """Did run `run_id` commit here?"""

    def committed_feeds(self, run_id: str, feed_ids: list[str]) -> set[str]:
        """Which of these feeds hold run `run_id`'s commit? A destination that commits all its
        feeds at once answers all or none (this default); one that commits feed by feed asks
        each feed's table, so recovery can roll a half-committed run forward."""
        return set(feed_ids) if self.committed(run_id) else set()

    def last_sequence(self, courier: str, feed_ids: list[str]) -> int:
        """The highest run sequence of `courier` these feeds committed here (0: none or not
        recorded), so a courier's sequence never goes back below what its tables hold (state
        replaced, or tables written before sequences were kept)."""
        return 0

    @abc.abstractmethod
    def row_count(self, feed_id: str) -> int | None:
        """Rows in the feed table, None when it does not exist."""

    @abc.abstractmethod
    def sample(self, feed_id: str, limit: int) -> list[dict[str, object]]:
        """A few rows of the feed table as plain Python values."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections/handles."""


SYSTEM_COLUMNS = {"_courier_run_id": "string", "_courier_loaded_at": "timestamp"}
