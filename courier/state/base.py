"""The state seam, split by concern. A backend implements the parts it serves.

- RunHistory: courier.runs (RunRecord) and a run's saved plan (for recovery)
- FileLedger: courier.files (exactly once per file) and pinned file-tag schemas
- QuarantineLog: courier.quarantine
- SchedulerState: group runs, leases, alerts (courier.group_runs/leases/alerts)
- SourceState: polling cursors and landed keys of sources (courier.cursors/source_keys)
- ApiKeyStore: ingest API keys (a JSON file today, see courier.ingest.apikeys)
- Transactional: begin/commit/rollback around a run's state writes

`StateStore` is all of them but API keys; the DuckDB store implements it.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from courier.plan import BadRecord, PlannedFile
from courier.records import GroupRunRecord, Lease, RunRecord

if TYPE_CHECKING:
    import pyarrow as pa

    from courier.alerts import Alert


class Transactional(abc.ABC):
    @abc.abstractmethod
    def begin(self) -> None:
        """Open a transaction for the writes that follow."""

    @abc.abstractmethod
    def commit(self) -> None:
        """Commit the open transaction."""

    @abc.abstractmethod
    def rollback(self) -> None:
        """Drop the open transaction's writes; a no-op when none is open."""


class RunHistory(abc.ABC):
    @abc.abstractmethod
    def start_run(self, record: RunRecord) -> None:
        """Insert the run (status 'running', or a final status for a run that never started)."""

    @abc.abstractmethod
    def finish_run(self, record: RunRecord) -> None:
        """Update the run's row to the record (status, counts, error, finished_at, ...)."""

    @abc.abstractmethod
    def runs(
        self,
        courier: str | None = None,
        limit: int = 20,
        group: str | None = None,
        status: str | None = None,
    ) -> list[RunRecord]:
        """Runs, newest started first (only those of `status` when given)."""

    @abc.abstractmethod
    def run(self, run_id: str) -> RunRecord | None:
        """One run, or None."""

    @abc.abstractmethod
    def window_runs(self, courier: str, start: datetime, end: datetime) -> list[RunRecord]:
        """Runs of a courier over exactly this window, newest first."""

    @abc.abstractmethod
    def runs_of_groups(self, group_run_ids: list[str]) -> list[RunRecord]:
        """Runs made by these group runs, oldest first."""

    @abc.abstractmethod
    def courier_summary(self, courier: str) -> dict[str, Any]:
        """{'last_success': datetime|None, 'newest_partition': datetime|None,
        'files_loaded': int, 'last_run': RunRecord|None, 'last_finished': RunRecord|None
        (the newest run no longer running)}"""

    def courier_summaries(self, couriers: Iterable[str]) -> dict[str, dict[str, Any]]:
        """courier_summary of each courier (a backend may read them all at once)."""
        return {name: self.courier_summary(name) for name in couriers}

    def runs_since(self, since: datetime, columns: list[str]) -> pa.Table:
        """Runs started at or after `since`, as an Arrow table of these courier.runs columns
        (RUN_COLUMNS; JSON columns as JSON text): the status page's copy of the history."""
        import json

        import pyarrow as pa

        rows = []
        limit = 1000
        while True:  # runs() has no lower bound: widen until the oldest is before `since`
            found = self.runs(limit=limit)
            if len(found) < limit or _started(found[-1]) < since:
                break
            limit *= 10
        for record in found:
            if _started(record) < since:
                continue
            row = record.to_row()
            rows.append(
                {c: json.dumps(row[c]) if isinstance(row[c], dict | list) else row[c]
                 for c in columns}
            )  # fmt: skip
        return pa.Table.from_pylist(rows)

    @abc.abstractmethod
    def save_plan(
        self,
        run_id: str,
        tag: str,
        files: list[PlannedFile],
        courier: str | None = None,
        sequence: int | None = None,
    ) -> None:
        """Keep the files a run is about to load (with their sizes and versions) and its place
        in the courier's run sequence, committed before its first destination commit, so
        recovery can roll it forward (unused when one transaction holds both)."""

    @abc.abstractmethod
    def saved_plan(self, run_id: str) -> tuple[str, list[PlannedFile]] | None:
        """(tag, files) kept by save_plan, or None."""

    @abc.abstractmethod
    def plan_sequence(self, run_id: str) -> int | None:
        """The run sequence saved with the run's plan, or None."""

    @abc.abstractmethod
    def last_sequence(self, courier: str) -> int:
        """The highest run sequence saved for the courier (0 when none)."""


class FileLedger(abc.ABC):
    @abc.abstractmethod
    def loaded_versions(
        self, courier: str, storage: str, keys: Iterable[str]
    ) -> dict[str, set[tuple[int, str]]]:
        """key -> {(size, version)} the courier has already loaded (each courier loads a file
        once; two couriers reading the same files each load them)."""

    def loaded_checksums(
        self, courier: str, storage: str, keys: Iterable[str]
    ) -> dict[tuple[str, int, str], set[str]]:
        """(key, size, version) -> the checksums recorded when the courier loaded it."""
        return {}

    def loaded_versions_many(
        self, wanted: dict[tuple[str, str], list[str]]
    ) -> dict[str, dict[str, set[tuple[int, str]]]]:
        """courier -> key -> {(size, version)} loaded, for (courier, storage) -> keys at once."""
        out: dict[str, dict[str, set[tuple[int, str]]]] = {}
        for (courier, storage), keys in wanted.items():
            found = self.loaded_versions(courier, storage, keys)
            if found:
                out.setdefault(courier, {}).update(found)
        return out

    @abc.abstractmethod
    def record_files(
        self, run_id: str, courier: str, tag: str, files: list[PlannedFile], loaded_at: datetime
    ) -> None:
        """Record files as loaded by the run."""

    @abc.abstractmethod
    def run_files(self, run_id: str) -> list[dict[str, Any]]:
        """The files a run loaded: key, size, partition_start, file_tag; by key."""

    @abc.abstractmethod
    def pinned_schema(self, courier: str, tag: str) -> dict[str, str] | None:
        """The file tag's schema (column -> engine type) as of its last load, or None."""

    @abc.abstractmethod
    def pin_schema(self, courier: str, tag: str, schema: dict[str, str], run_id: str) -> None:
        """Replace the file tag's pinned schema."""


class QuarantineLog(abc.ABC):
    @abc.abstractmethod
    def quarantine(self, run_id: str, courier: str, feed: str | None, bad: list[BadRecord]) -> None:
        """Add bad records of a run (feed None: unreadable input)."""

    @abc.abstractmethod
    def quarantine_arrow(self, run_id: str, courier: str, feed: str, rows: pa.Table) -> None:
        """Add rejected rows of a feed load: columns file, line, reason, raw."""

    @abc.abstractmethod
    def quarantined(
        self, courier: str | None = None, run_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Rows (run_id, courier, feed, file, line, reason, raw, quarantined_at), newest run
        first, then by file and line."""

    @abc.abstractmethod
    def export_quarantine(self, run_id: str, path: Path) -> None:
        """Write a run's quarantine rows to an NDJSON file (atomically)."""


class SchedulerState(abc.ABC):
    @abc.abstractmethod
    def start_group_run(self, record: GroupRunRecord) -> None:
        """Insert a group run."""

    @abc.abstractmethod
    def finish_group_run(self, record: GroupRunRecord) -> None:
        """Update the group run's row to the record (status, members, error, finished_at, ...)."""

    @abc.abstractmethod
    def group_runs(
        self,
        group: str | None = None,
        limit: int = 20,
        trigger: str | None = None,
        scheduled_at: datetime | None = None,
        since: datetime | None = None,
    ) -> list[GroupRunRecord]:
        """Group runs, newest scheduled time first."""

    @abc.abstractmethod
    def last_scheduled_run(self, group: str) -> datetime | None:
        """The newest scheduled time a scheduled run of the group finished (in any status)."""

    @abc.abstractmethod
    def get_lease(self, scope: str) -> Lease | None:
        """The lease of a scope, or None."""

    @abc.abstractmethod
    def put_lease(self, lease: Lease) -> None:
        """Create or take over the lease of lease.scope."""

    @abc.abstractmethod
    def drop_lease(self, scope: str, holder: str) -> None:
        """Release the scope's lease if `holder` holds it."""

    @abc.abstractmethod
    def record_alert(self, alert: Alert) -> None:
        """Insert an alert (with its deliveries)."""

    @abc.abstractmethod
    def alerts(
        self, group_run_id: str | None = None, run_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Alerts, newest first."""


class SourceState(abc.ABC):
    @abc.abstractmethod
    def source_state(self, source: str) -> dict[str, Any]:
        """{'cursor': str|None, 'pending': dict|None} of a polling or file-pull source."""

    @abc.abstractmethod
    def put_source_state(self, source: str, cursor: str | None, pending: Any) -> None:
        """Replace the source's cursor and pending work."""

    @abc.abstractmethod
    def seen_keys(self, source: str, keys: list[str]) -> dict[str, str | None]:
        """Of keys, those already landed for the source -> the part key they landed as."""

    @abc.abstractmethod
    def add_keys(self, source: str, keys: dict[str, str | None], at: datetime) -> None:
        """Remember keys (-> the part key they landed as, if any) as landed for the source."""

    @abc.abstractmethod
    def drop_keys(self, source: str, keys: list[str]) -> None:
        """Forget keys of the source."""


class ApiKeyStore(abc.ABC):
    """Ingest API keys: secrets are stored hashed; `create` returns the secret once."""

    @abc.abstractmethod
    def keys(self) -> list[Any]:
        """Every key (ApiKey), revoked ones included."""

    @abc.abstractmethod
    def create(self, name: str, streams: list[str]) -> tuple[Any, str]:
        """A new key for streams -> (ApiKey, its secret)."""

    @abc.abstractmethod
    def revoke(self, name: str) -> Any:
        """Mark the key revoked; raise ConfigError naming it when unknown."""

    @abc.abstractmethod
    def delete(self, name: str) -> Any:
        """Remove the key; raise ConfigError naming it when unknown."""

    @abc.abstractmethod
    def refresh(self) -> bool:
        """Reload when another process changed the keys; True when something changed."""


class StateStore(Transactional, RunHistory, FileLedger, QuarantineLog, SchedulerState, SourceState):
    """Everything a project's state holds but API keys, in one backend."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections/handles."""


def _started(record: RunRecord) -> datetime:
    at = record.started_at
    return at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
