"""A run's plan as plain data: window, files, load operations, feeds. Any engine can take it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from courier.config.models import CourierConfig, FeedConfig, LoadOperation
from courier.project import SavedQuery
from courier.storage.base import ObjectInfo
from courier.windows import Window


@dataclass(frozen=True)
class PlannedFile:
    storage: str
    info: ObjectInfo
    partition: datetime  # UTC start of the partition the file's path dates it to
    already_loaded: bool = False
    lookback: bool = False  # found by looking back before the window
    checksum: str | None = None  # the storage's checksum (ETag) or a content hash

    @property
    def key(self) -> str:
        return self.info.key


@dataclass(frozen=True)
class InputFile:
    """A file ready for an engine: a local path and the storage key it came from. NDJSON that
    courier wrote itself (a transcoded CBOR, XML or JSON file) also says how many lines it
    holds, each a JSON object, and their top-level keys (None: not known)."""

    key: str
    path: Path
    size: int
    records: int | None = None
    keys: frozenset[str] | None = None


@dataclass(frozen=True)
class BadRecord:
    file: str
    line: int | None
    reason: str
    raw: str


@dataclass
class InputSummary:
    """What reading a file tag produced."""

    tag: str
    records: int = 0
    bad: list[BadRecord] = field(default_factory=list)
    schema: dict[str, str] = field(default_factory=dict)
    schema_changes: list[str] = field(default_factory=list)


@dataclass
class FeedCounts:
    read: int = 0
    loaded: int = 0
    rejected: int = 0
    deleted: int = 0

    def add(self, other: FeedCounts) -> None:
        self.read += other.read
        self.loaded += other.loaded
        self.rejected += other.rejected
        self.deleted += other.deleted

    def as_dict(self) -> dict[str, int]:
        return {"read": self.read, "loaded": self.loaded, "rejected": self.rejected}


@dataclass(frozen=True)
class FeedLoad:
    """One load operation resolved against its feed and (for sql) its query."""

    feed: FeedConfig
    operation: LoadOperation
    query: SavedQuery | None
    truncate_first: bool


@dataclass(frozen=True)
class RunOptions:
    """How to run a courier over a window (Context.run): what a CLI flag or a group sets."""

    now: datetime | None = None  # the run's clock (None: now); run ids and loaded_at use it
    reload: bool = False  # load files again even when loaded before
    dry_run: bool = False  # plan only: list the files, load nothing, record nothing
    lookback: timedelta | None = None  # None: the courier's own lookback
    trigger: str = "manual"  # manual | scheduled | retry | backfill ...
    group: tuple[str, str] | None = None  # (group name, group run id)
    time_zone: ZoneInfo | None = None  # zone of the file dates (None: the project's)
    required: bool | None = None  # None: the courier's own `required`
    force: bool = False  # a manual run of a window in the future loads anyway


@dataclass
class RunPlan:
    run_id: str
    courier: CourierConfig
    window: Window
    files: list[PlannedFile]
    loads: list[FeedLoad]
    started_at: datetime
    reload: bool = False
    trigger: str = "manual"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def to_load(self) -> list[PlannedFile]:
        return [f for f in self.files if self.reload or not f.already_loaded]
