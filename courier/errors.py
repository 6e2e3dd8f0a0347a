"""Every error courier raises, one tree; the message says what went wrong and what to do.

    CourierError
    ├── ConfigError          a config/query/feed file is wrong (carries the file and key)
    ├── StorageError         a storage backend could not be reached or refused us
    ├── FormatError          a file could not be read in its declared format
    ├── QueryError           a saved query failed in the engine
    ├── LoadError            rows could not be loaded into a feed table
    ├── EngineError          a query engine (a Spark Connect server) failed or cannot be reached
    ├── RunError             a courier run failed as a whole (missing files, too many bad records)
    └── IngestError          the ingest API refused a payload (carries the HTTP status)

TransientError marks errors worth retrying (network, throttling); all others are terminal.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class CourierError(Exception):
    """Root of courier's errors."""


class TransientError(CourierError):
    """Retrying later may succeed (network, throttling, a lock held by another process)."""


class DatabaseLockedError(TransientError):
    """Another process (an open DuckDB session, another courier run) holds the database."""


class ConfigError(CourierError):
    def __init__(self, message: str, location: Path | str | None = None, key: str | None = None):
        self.location = Path(location) if location is not None else None
        self.key = key
        self.problem = message
        where = ""
        if self.location is not None:
            where = f"{self.location}"
            if key:
                where += f" [{key}]"
            where += ": "
        super().__init__(where + message)


class ConfigErrors(CourierError):
    """Several config problems found at once (courier validate reports all of them)."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"{len(errors)} config problem(s):\n{lines}")


class StorageError(CourierError):
    def __init__(self, storage: str, message: str):
        self.storage = storage
        super().__init__(f"storage '{storage}': {message}")


class TransientStorageError(StorageError, TransientError):
    pass


class FormatError(CourierError):
    pass


class QueryError(CourierError):
    def __init__(self, message: str, query: str | None = None, location: Path | None = None):
        self.query = query
        self.location = location
        prefix = f"query '{query}'" if query else "query"
        if location is not None:
            prefix += f" ({location})"
        super().__init__(f"{prefix}: {message}")


class LoadError(CourierError):
    pass


class EngineError(CourierError):
    """A query engine outside courier's process (Spark Connect) failed; names the engine."""

    def __init__(self, message: str, engine: str | None = None, query: str | None = None):
        self.engine = engine
        self.query = query
        super().__init__(message)


class TransientEngineError(EngineError, TransientError):
    pass


class RunError(CourierError):
    pass


class IngestError(CourierError):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        self.status = status
        self.headers = headers or {}
        super().__init__(message)


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to a misspelt one (for "did you mean"), or None."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def not_found(
    what: str,
    name: str,
    known: Iterable[str],
    fix: str | None = None,
    *,
    named: bool = True,
    location: Path | str | None = None,
    key: str | None = None,
) -> ConfigError:
    """A lookup by name that found nothing, e.g. "no courier named 'evnts' (known: events);
    did you mean 'events'? Else add config/couriers/evnts.toml"."""
    names = sorted(known)
    message = f"no {what}{' named' if named else ''} {name!r} (known: {', '.join(names) or 'none'})"
    guess = closest(name, names)
    if guess is not None:
        message += f"; did you mean {guess!r}?" + (f" Else {fix}" if fix else "")
    elif fix:
        message += f"; {fix}"
    return ConfigError(message, location, key)


def retry_transient(
    attempt: Callable[[], T],
    *,
    until: float | None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    first: float = 0.2,
    cap: float = 5.0,
    on_retry: Callable[[TransientError], None] | None = None,
) -> T:
    """attempt(), again after a pause that doubles from `first` up to `cap` while it raises a
    TransientError; once clock() passes `until` (None: never) the error is raised."""
    delay = first
    while True:
        try:
            return attempt()
        except TransientError as exc:
            if until is not None and clock() >= until:
                raise
            if on_retry is not None:
                on_retry(exc)
            sleep(delay)
            delay = min(delay * 2, cap)
