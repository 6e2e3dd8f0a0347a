"""The state store: which files were loaded, run history, quarantine, pinned schemas."""

from __future__ import annotations

import abc
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from courier.plan import BadRecord, PlannedFile


class StateStore(abc.ABC):
    @abc.abstractmethod
    def begin(self) -> None: ...

    @abc.abstractmethod
    def commit(self) -> None: ...

    @abc.abstractmethod
    def rollback(self) -> None: ...

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

    @abc.abstractmethod
    def record_files(
        self, run_id: str, courier: str, tag: str, files: list[PlannedFile], loaded_at: datetime
    ) -> None: ...

    @abc.abstractmethod
    def start_run(self, record: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def finish_run(self, record: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def runs(
        self, courier: str | None = None, limit: int = 20, group: str | None = None
    ) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def quarantine(
        self, run_id: str, courier: str, feed: str | None, bad: list[BadRecord]
    ) -> None: ...

    @abc.abstractmethod
    def export_quarantine(self, run_id: str, path: Path) -> None:
        """Write a run's quarantine rows to an NDJSON file (atomically)."""

    @abc.abstractmethod
    def pinned_schema(self, courier: str, tag: str) -> dict[str, str] | None: ...

    @abc.abstractmethod
    def pin_schema(self, courier: str, tag: str, schema: dict[str, str], run_id: str) -> None: ...

    # -- looking back at a run (`courier runs show`, `courier quarantine`) ----------------
    def run(self, run_id: str) -> dict[str, Any] | None:
        """One courier.runs row (as `runs` gives them), or None."""
        raise NotImplementedError("this state store cannot show one run")

    def run_files(self, run_id: str) -> list[dict[str, Any]]:
        """The files a run loaded: key, size, partition_start, file_tag."""
        raise NotImplementedError("this state store cannot show one run")

    def quarantined(
        self, courier: str | None = None, run_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """courier.quarantine rows, newest run first, then by file and line."""
        raise NotImplementedError("this state store cannot list quarantined records")

    # -- groups and the scheduler (courier.group_runs, courier.leases, courier.alerts) -------
    # Concrete so that a store without scheduling support still works for plain runs.
    def start_group_run(self, record: dict[str, Any]) -> None:
        raise NotImplementedError("this state store does not support courier groups")

    def finish_group_run(self, record: dict[str, Any]) -> None:
        raise NotImplementedError("this state store does not support courier groups")

    def group_runs(
        self,
        group: str | None = None,
        limit: int = 20,
        trigger: str | None = None,
        scheduled_at: datetime | None = None,
        since: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Group runs, newest scheduled time first."""
        raise NotImplementedError("this state store does not support courier groups")

    def last_scheduled_run(self, group: str) -> datetime | None:
        """The newest scheduled time a scheduled run of the group finished (in any status)."""
        raise NotImplementedError("this state store does not support courier groups")

    def window_runs(self, courier: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Runs of a courier over exactly this window, newest first."""
        raise NotImplementedError("this state store does not support courier groups")

    def runs_of_groups(self, group_run_ids: list[str]) -> list[dict[str, Any]]:
        raise NotImplementedError("this state store does not support courier groups")

    def get_lease(self, scope: str) -> dict[str, Any] | None:
        raise NotImplementedError("this state store does not support leases")

    def put_lease(self, record: dict[str, Any]) -> None:
        """Create or take over the lease of record['scope']."""
        raise NotImplementedError("this state store does not support leases")

    def drop_lease(self, scope: str, holder: str) -> None:
        raise NotImplementedError("this state store does not support leases")

    def record_alert(self, record: dict[str, Any]) -> None:
        raise NotImplementedError("this state store does not support alerts")

    def alerts(
        self, group_run_id: str | None = None, run_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        raise NotImplementedError("this state store does not support alerts")

    # -- sources (courier.cursors, courier.source_keys) --------------------------------------
    def source_state(self, source: str) -> dict[str, Any]:
        """{'cursor': str|None, 'pending': dict|None} of a polling or file-pull source."""
        raise NotImplementedError("this state store does not support sources")

    def put_source_state(self, source: str, cursor: str | None, pending: Any) -> None:
        raise NotImplementedError("this state store does not support sources")

    def seen_keys(self, source: str, keys: list[str]) -> dict[str, str | None]:
        """Of keys, those already landed for the source -> the part key they landed as."""
        raise NotImplementedError("this state store does not support sources")

    def add_keys(self, source: str, keys: dict[str, str | None], at: datetime) -> None:
        """Remember keys (-> the part key they landed as, if any) as landed for the source."""
        raise NotImplementedError("this state store does not support sources")

    def drop_keys(self, source: str, keys: list[str]) -> None:
        raise NotImplementedError("this state store does not support sources")

    def courier_summary(self, courier: str) -> dict[str, Any]:
        """{'last_success': datetime|None, 'last_run': row|None, 'newest_partition': ...}"""
        raise NotImplementedError("this state store does not support status")
