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
    def loaded_versions(self, storage: str, keys: Iterable[str]) -> dict[str, set[tuple[int, str]]]:
        """key -> {(size, version)} already loaded."""

    @abc.abstractmethod
    def record_files(
        self, run_id: str, courier: str, tag: str, files: list[PlannedFile], loaded_at: datetime
    ) -> None: ...

    @abc.abstractmethod
    def start_run(self, record: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def finish_run(self, record: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def runs(self, courier: str | None = None, limit: int = 20) -> list[dict[str, Any]]: ...

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
