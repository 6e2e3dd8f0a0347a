"""The roller: uploads sealed segments to the stream's storage as complete part files.

One background thread per writer. A segment becomes the object `segment.key` (its records
without the frame headers) through the storage's atomic write, then the segment is deleted.
A crash between the two uploads the same bytes to the same key again: one object, not two.
Segments of dead writers (orphans) are checked first: when the object already exists with
the same size it is not written again.

When storage is down, segments stay in the log (the API keeps accepting while the log has
room) and the roller retries with backoff, oldest first, until storage is back.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from courier.ingest.wal import Orphan, Segment, read_records
from courier.storage.base import StorageBackend

log = logging.getLogger("courier.ingest")

IN_MEMORY = 32 << 20  # segments up to this size are uploaded from memory, larger via a file
MAX_BACKOFF = 10.0  # retry a storage outage at least this often


@dataclass(frozen=True)
class UploadStatus:
    """What /healthz shows of the uploads, published as one immutable value: a reader gets
    either the state before or after a change, never half of it (`failing_since` without
    `last_error`, a segment counted as done that is still in the backlog)."""

    done: int = 0  # part files written
    done_bytes: int = 0
    failing_since: float | None = None  # wall time of the first failure of this outage
    last_error: str | None = None


class Roller:
    def __init__(
        self,
        storage_for: Callable[[str], StorageBackend],
        released: Callable[[Segment], None],
    ):
        self.storage_for = storage_for
        self.released = released
        self._cond = threading.Condition()
        self._queue: deque[Segment] = deque()
        self._orphans: dict[Path, tuple[Orphan, int]] = {}  # folder -> (orphan, left)
        self._busy = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self.failures = 0  # upload attempts that failed (retried): a metrics counter
        self.keys: deque[str] = deque(maxlen=10_000)  # this writer's part files, newest last
        self.status = UploadStatus()  # replaced whole, under _cond, never changed in place

    @property
    def uploaded(self) -> int:
        return self.status.done

    @property
    def failing_since(self) -> float | None:
        return self.status.failing_since

    @property
    def last_error(self) -> str | None:
        return self.status.last_error

    def snapshot(self) -> tuple[UploadStatus, int]:
        """(status, backlog) as of one instant."""
        with self._cond:
            return self.status, len(self._queue) + (1 if self._busy else 0)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="roller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for orphan, _ in self._orphans.values():
            orphan.abandon()  # what is left stays for the next writer to recover
        self._orphans.clear()

    def add(self, segment: Segment) -> None:
        with self._cond:
            self._queue.append(segment)
            self._cond.notify_all()

    def adopt(self, orphan: Orphan) -> None:
        """Upload a dead writer's segments, then remove its folder."""
        if not orphan.segments:
            orphan.finish()
            return
        log.warning(
            "recovering %d segment(s) of writer %s from %s",
            len(orphan.segments),
            orphan.writer,
            orphan.dir,
        )
        with self._cond:
            self._orphans[orphan.dir] = (orphan, len(orphan.segments))
            self._queue.extend(orphan.segments)
            self._cond.notify_all()

    @property
    def backlog(self) -> int:
        with self._cond:
            return len(self._queue) + (1 if self._busy else 0)

    def drain(self, timeout: float) -> bool:
        """Wait until every queued segment is uploaded; False when time ran out first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    return False
                self._cond.wait(min(left, 0.2))
        return True

    # -- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.0
        while True:
            with self._cond:
                if backoff:
                    self._cond.wait(backoff)
                while not self._queue and not self._stop:
                    self._cond.wait(1.0)
                if self._stop:
                    return  # what is queued stays in the log for the next writer
                segment = self._queue[0]
                self._busy = True
            try:
                size = self._upload(segment)
            except Exception as exc:  # storage down, disk trouble: keep it, retry later
                backoff = min(MAX_BACKOFF, max(0.2, backoff * 2))
                with self._cond:
                    first = self.status.failing_since is None
                    self.status = replace(
                        self.status,
                        failing_since=time.time() if first else self.status.failing_since,
                        last_error=str(exc),
                    )
                    self._busy = False
                    self._cond.notify_all()
                self.failures += 1
                if first:
                    log.warning(
                        "cannot upload %s (%s); segments stay in the write-ahead log and are "
                        "retried",
                        segment.key,
                        exc,
                    )
                continue
            backoff = 0.0
            with self._cond:
                was_failing = self.status.failing_since is not None
                self.status = UploadStatus(
                    done=self.status.done + 1, done_bytes=self.status.done_bytes + size
                )
                self._queue.popleft()
                self._busy = False
                self._done(segment)
                self._cond.notify_all()
            if was_failing:
                log.warning("storage is back: uploading the write-ahead log backlog")

    def _done(self, segment: Segment) -> None:
        if not segment.orphan:
            self.released(segment)
            return
        entry = self._orphans.get(segment.path.parent)
        if entry is None:
            return
        orphan, left = entry
        if left <= 1:
            del self._orphans[segment.path.parent]
            orphan.finish()
        else:
            self._orphans[segment.path.parent] = (orphan, left - 1)

    def _upload(self, segment: Segment) -> int:
        """Upload one segment as its part file, then delete it; the part file's size."""
        storage = self.storage_for(segment.stream)
        key = segment.key
        if segment.size <= IN_MEMORY:
            data = b"".join(read_records(segment.path))
            if data and not (segment.orphan and _same_size(storage, key, len(data))):
                storage.write_bytes(key, data)
            size = len(data)
        else:
            part = segment.path.with_name(segment.path.name + ".part")
            with open(part, "wb") as out:
                for records in read_records(segment.path):
                    out.write(records)
            size = part.stat().st_size
            try:
                if size and not (segment.orphan and _same_size(storage, key, size)):
                    storage.upload(part, key)
            finally:
                part.unlink(missing_ok=True)
        segment.path.unlink(missing_ok=True)
        _fsync_parent(segment.path)
        if not segment.orphan and size:
            self.keys.append(key)
        log.debug("landed %s (%d bytes) in %s", key, size, storage.describe())
        return size


def _same_size(storage: StorageBackend, key: str, size: int) -> bool:
    """The object is already there, whole (uploads are atomic: same size = same upload)."""
    try:
        return storage.stat(key).size == size
    except FileNotFoundError:
        return False


def _fsync_parent(path: Path) -> None:
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
