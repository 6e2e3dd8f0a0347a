"""Typed records that cross the state seam: a run as Context reports it and courier.runs keeps it,
a group run (courier.group_runs) and a lease (courier.leases).

One RunRecord has three faces: `to_row()` (a courier.runs row), `from_row()` (back), and
`to_json()` (the `courier run --json` shape; `listing=True`: the `courier runs --json` shape).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from courier.windows import Window, iso_utc, ts

# courier.runs columns, in table order
RUN_COLUMNS = [
    "run_id", "courier", "status", "trigger", "group_name", "group_run_id", "window_start",
    "window_end", "files_found", "files_loaded", "files_skipped", "bytes", "rows_read",
    "rows_loaded", "rows_rejected", "quarantined", "feeds", "warnings", "schema_changes", "error",
    "reload", "started_at", "finished_at", "duration_s", "host", "pid",
]  # fmt: skip


# courier.group_runs and courier.leases columns, in table order
GROUP_RUN_COLUMNS = [
    "group_run_id", "group_name", "scheduled_at", "trigger", "status", "members", "error",
    "started_at", "finished_at", "duration_s", "host", "pid",
]  # fmt: skip
LEASE_COLUMNS = ["scope", "holder", "host", "pid", "acquired_at", "expires_at"]


@dataclass
class RunRecord:
    run_id: str
    courier: str
    window_start: datetime | str
    window_end: datetime | str
    started_at: datetime | str
    status: str = "running"
    trigger: str | None = "manual"
    group: str | None = None
    group_run_id: str | None = None
    files_found: int = 0
    files_loaded: int = 0
    files_skipped: int = 0
    bytes: int = 0
    records: int = 0
    feeds: dict[str, dict[str, int]] = field(default_factory=dict)
    quarantined: int = 0
    duration_s: float | None = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    schema_changes: list[str] = field(default_factory=list)
    reload: bool = False
    finished_at: datetime | str | None = None
    host: str | None = None
    pid: int | None = None
    # only in `courier run --json`, never in courier.runs
    quarantine_file: str | None = None
    file_list: list[dict[str, Any]] | None = None  # dry run: every file found

    @classmethod
    def for_window(
        cls, run_id: str, courier: str, window: Window, started_at: datetime, **kw: Any
    ) -> RunRecord:
        """A new run's record (times as ISO UTC text, as courier.runs stores them)."""
        return cls(
            run_id, courier, iso_utc(window.start), iso_utc(window.end), iso_utc(started_at), **kw
        )

    @property
    def rows_loaded(self) -> int:
        return sum(f.get("loaded", 0) for f in self.feeds.values())

    @property
    def rows_rejected(self) -> int:
        return sum(f.get("rejected", 0) for f in self.feeds.values())

    def to_row(self) -> dict[str, Any]:
        """A courier.runs row (RUN_COLUMNS; JSON columns as Python lists/dicts)."""
        return {
            "run_id": self.run_id,
            "courier": self.courier,
            "status": self.status,
            "trigger": self.trigger,
            "group_name": self.group,
            "group_run_id": self.group_run_id,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "files_found": self.files_found,
            "files_loaded": self.files_loaded,
            "files_skipped": self.files_skipped,
            "bytes": self.bytes,
            "rows_read": self.records,
            "rows_loaded": self.rows_loaded,
            "rows_rejected": self.rows_rejected,
            "quarantined": self.quarantined,
            "feeds": self.feeds,
            "warnings": self.warnings,
            "schema_changes": self.schema_changes,
            "error": self.error,
            "reload": self.reload,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": self.duration_s,
            "host": self.host,
            "pid": self.pid,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RunRecord:
        """A courier.runs row (as to_row gives it, or as read back) -> record."""
        return cls(
            run_id=row["run_id"],
            courier=row["courier"],
            status=row["status"],
            trigger=row.get("trigger"),
            group=row.get("group_name"),
            group_run_id=row.get("group_run_id"),
            window_start=row["window_start"],
            window_end=row["window_end"],
            files_found=row.get("files_found") or 0,
            files_loaded=row.get("files_loaded") or 0,
            files_skipped=row.get("files_skipped") or 0,
            bytes=row.get("bytes") or 0,
            records=row.get("rows_read") or 0,
            feeds=row.get("feeds") or {},
            quarantined=row.get("quarantined") or 0,
            duration_s=row.get("duration_s"),
            error=row.get("error"),
            warnings=row.get("warnings") or [],
            schema_changes=row.get("schema_changes") or [],
            reload=bool(row.get("reload")),
            started_at=row["started_at"],
            finished_at=row.get("finished_at"),
            host=row.get("host"),
            pid=row.get("pid"),
        )

    def to_json(self, listing: bool = False) -> dict[str, Any]:
        """The `courier run --json` shape; listing: the `courier runs --json` shape (with
        finished_at, without reload)."""
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "courier": self.courier,
            "status": self.status,
            "trigger": self.trigger,
            "group": self.group,
            "group_run_id": self.group_run_id,
            "window": {"start": ts(self.window_start), "end": ts(self.window_end)},
            "files": {
                "found": self.files_found,
                "loaded": self.files_loaded,
                "skipped": self.files_skipped,
            },
            "bytes": self.bytes,
            "records": self.records,
            "feeds": self.feeds,
            "quarantined": self.quarantined,
            "duration_s": self.duration_s,
            "error": self.error,
            "warnings": self.warnings,
            "schema_changes": self.schema_changes,
        }
        if listing:
            out["started_at"] = ts(self.started_at)
            out["finished_at"] = ts(self.finished_at)
            return out
        out["reload"] = self.reload
        out["started_at"] = ts(self.started_at)
        if self.file_list is not None:
            out["files"]["list"] = self.file_list
        if self.quarantine_file is not None:
            out["quarantine_file"] = self.quarantine_file
        return out


@dataclass
class GroupRunRecord:
    """A group run as courier.group_runs keeps it: its members are the courier windows it ran
    ({courier, window, status, run_id, retry})."""

    group_run_id: str
    group: str
    scheduled_at: datetime
    trigger: str
    status: str = "running"
    members: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    host: str | None = None
    pid: int | None = None

    def to_row(self) -> dict[str, Any]:
        """A courier.group_runs row (GROUP_RUN_COLUMNS; members as a Python list)."""
        row = {name: getattr(self, name) for name in GROUP_RUN_COLUMNS if name != "group_name"}
        return {**row, "group_name": self.group}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> GroupRunRecord:
        fields = {k: v for k, v in row.items() if k in GROUP_RUN_COLUMNS and k != "group_name"}
        return cls(group=row["group_name"], **{**fields, "members": row.get("members") or []})


@dataclass(frozen=True)
class Lease:
    """A courier.leases row: `holder` (host:pid:nonce) holds `scope` (a group window, a source
    round) until it releases it, its process dies, or (from another host) `expires_at`."""

    scope: str
    holder: str
    host: str | None
    pid: int | None
    acquired_at: datetime | None = None
    expires_at: datetime | None = None

    def to_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in LEASE_COLUMNS}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Lease:
        return cls(
            row["scope"], row["holder"], row.get("host"), row.get("pid"),
            row.get("acquired_at"), row.get("expires_at"),
        )  # fmt: skip
