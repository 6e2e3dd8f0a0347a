"""The write-ahead log: accepted records reach local disk, fsynced, before the 202.

Layout under `wal_dir`, one folder per writer (a server process or a `courier land`):

    {wal_dir}/{writer}/.lock                                   flock held while the writer lives
    {wal_dir}/{writer}/{seq:08d}-{yyyymmddHH}-{stream}.{ext}.wal  one segment = one part file

A segment holds the records of one stream and one arrival hour (UTC) as frames
`magic | length | crc32 | records...`, one frame per stream per group commit. Its records,
concatenated without the frame headers, are exactly the part file the roller uploads to
`{stream}/yyyy/MM/dd/HH/part-{writer}-{seq:06d}.{ext}`: the name is fixed by the segment,
so uploading a segment again after a crash overwrites the same object (never a second copy).

Group commit: request handlers `submit()` records; one committer thread takes everything
pending, writes one frame per segment, fdatasyncs each touched segment once, then reports
the whole batch through `on_commit(waiters, error)`. A batch forms while the previous fsync
runs, so many requests share one fsync.

Segments roll (are sealed and handed to `on_sealed`) at the hour boundary, at the stream's
`roll_bytes`, after `roll_seconds`, and on close. After a crash, a writer folder whose lock is
free is an orphan: `orphans()` lists its segments; a torn or corrupt tail frame (never
acknowledged: the fsync had not returned) is dropped when the segment is read.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import secrets
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from courier.errors import IngestError

log = logging.getLogger("courier.ingest")

MAGIC = b"CWL1"
FRAME = struct.Struct("<4sII")  # magic, payload length, crc32 of the payload
LOCK_NAME = ".lock"
STAGING = ".new-"  # a writer folder being set up (not yet locked): never an orphan
SEGMENT = re.compile(r"^(\d{8})-(\d{10})-(.+)\.(ndjson|cbor)\.wal$")
EXTENSIONS = {"json": "ndjson", "xml": "cbor"}


def new_writer_id(kind: str = "") -> str:
    """Unique per process and over time: host, pid and random bits (pids get reused)."""
    host = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:16] or "host"
    return f"{kind}{host}-{os.getpid()}-{secrets.token_hex(3)}"


def hour_of(epoch_seconds: float) -> int:
    return int(epoch_seconds // 3600)


def hour_start(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * 3600, tz=UTC)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, doc: Any) -> None:
    """Replace `path` with `doc` as JSON (owner-only), fsynced: readers see old or new whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass
class Segment:
    """One segment file: the future part file of one stream and arrival hour."""

    path: Path
    writer: str
    seq: int
    hour: int
    stream: str
    ext: str
    fd: int | None = None
    size: int = 0  # bytes on disk, frames included
    data_bytes: int = 0  # bytes of records: the part file's size
    opened: float = field(default_factory=time.monotonic)
    opened_hour: int = field(default_factory=lambda: hour_of(time.time()))  # clock hour
    orphan: bool = False

    @property
    def key(self) -> str:
        """The part file's object key in the stream's storage."""
        t = hour_start(self.hour)
        return f"{self.stream}/{t:%Y/%m/%d/%H}/part-{self.writer}-{self.seq:06d}.{self.ext}"

    @classmethod
    def from_path(cls, path: Path, writer: str) -> Segment | None:
        m = SEGMENT.match(path.name)
        if m is None:
            return None
        seq, stamp, stream, ext = m.groups()
        hour = hour_of(datetime.strptime(stamp, "%Y%m%d%H").replace(tzinfo=UTC).timestamp())
        size = path.stat().st_size
        return cls(path, writer, int(seq), hour, stream, ext, size=size, orphan=True)


def segment_name(seq: int, hour: int, stream: str, ext: str) -> str:
    return f"{seq:08d}-{hour_start(hour):%Y%m%d%H}-{stream}.{ext}.wal"


def read_records(path: Path) -> Iterator[bytes]:
    """The records of a segment, frame by frame, stopping at a torn or corrupt frame."""
    with open(path, "rb") as fh:
        offset = 0
        while True:
            header = fh.read(FRAME.size)
            if not header:
                return
            if len(header) < FRAME.size:
                log.warning("%s: torn frame header at byte %d dropped", path, offset)
                return
            magic, length, crc = FRAME.unpack(header)
            data = fh.read(length) if magic == MAGIC else b""
            if magic != MAGIC or len(data) != length or zlib.crc32(data) != crc:
                log.warning("%s: incomplete or corrupt frame at byte %d dropped", path, offset)
                return
            offset += FRAME.size + length
            yield data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Pending(NamedTuple):
    """The records of one payload, waiting for the next group commit."""

    stream: str
    ext: str
    hour: int
    data: bytes
    waiter: Any


OnCommit = Callable[[list[Any], BaseException | None], None]


class Wal:
    """One writer's log. `submit` is thread-safe; a committer thread does all file I/O."""

    def __init__(
        self,
        root: Path,
        writer: str,
        *,
        on_commit: OnCommit,
        on_sealed: Callable[[Segment], None],
        roll_bytes: Callable[[str], int],
        roll_seconds: float = 60.0,
        fsync: bool = True,
    ):
        self.root = Path(root)
        self.writer = writer
        self.dir = self.root / writer
        self.on_commit = on_commit
        self.on_sealed = on_sealed
        self.roll_bytes = roll_bytes
        self.roll_seconds = roll_seconds
        self.fsync = fsync
        self._cond = threading.Condition()
        self._pending: list[Pending] = []
        self._pending_bytes = 0
        self._submitted = 0
        self._committed = 0
        self._seal_requests = 0
        self._seals_done = 0
        self._closing = False
        self._open: dict[str, Segment] = {}
        self._retiring: list[Segment] = []  # rolled during a commit, sealed after its fsync
        self._seq = 0
        self._disk_bytes = 0
        self._lock_fd: int | None = None
        self._thread: threading.Thread | None = None
        # The write/fsync failure of the last commit, for /healthz; None again once a commit
        # (or the service's probe write) succeeds: it reports the disk as it is now.
        self.fault: BaseException | None = None
        self.stats = {"batches": 0, "records": 0, "fsync_s": 0.0, "commit_s": 0.0}
        self.on_batch: Any = None  # (payloads, fsync seconds) after each commit: metrics

    # -- lifecycle --------------------------------------------------------------------------
    def open(self) -> None:
        # Locked before it gets its name: a writer starting next door scanning for orphans
        # must never see this folder unlocked (it would take it for a dead writer's).
        staging = self.root / f"{STAGING}{self.writer}"
        try:
            staging.mkdir(parents=True, exist_ok=False)
            fd = os.open(staging / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(staging, self.dir)
            fsync_dir(self.dir)
            fsync_dir(self.root)
        except OSError as exc:
            raise IngestError(
                503, f"cannot create the write-ahead log folder {self.dir}: {exc}"
            ) from exc
        self._lock_fd = fd
        self._thread = threading.Thread(target=self._run, name=f"wal-{self.writer}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Commit everything pending, seal every open segment, stop the committer."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def release_lock(self) -> None:
        """Give up the folder (after the roller emptied it, remove it)."""
        if self._lock_fd is None:
            return
        try:
            leftovers = [p for p in self.dir.iterdir() if p.name != LOCK_NAME]
            if not leftovers:
                (self.dir / LOCK_NAME).unlink()
                self.dir.rmdir()
        except OSError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None

    # -- producer side ----------------------------------------------------------------------
    def submit(self, stream: str, ext: str, hour: int, data: bytes, waiter: Any = None) -> None:
        self.submit_many([Pending(stream, ext, hour, data, waiter)])

    def submit_many(self, items: list[Pending]) -> None:
        """Queue records for the next group commit (one lock and one wake-up for all)."""
        with self._cond:
            if self._closing:
                raise IngestError(
                    503, "the server is shutting down: retry shortly", {"retry-after": "1"}
                )
            idle = not self._pending
            self._pending.extend(items)
            self._pending_bytes += sum(len(i.data) for i in items)
            self._submitted += len(items)
            if idle:
                self._cond.notify()

    def flush(self, seal: bool = False) -> None:
        """Block until everything submitted so far is committed (and, with seal, sealed)."""
        with self._cond:
            target = self._submitted
            wanted = self._seals_done
            if seal:
                self._seal_requests += 1
                wanted = self._seal_requests
            self._cond.notify_all()
            while self._committed < target or self._seals_done < wanted:
                if self._thread is None or not self._thread.is_alive():
                    raise RuntimeError("the write-ahead log committer is not running")
                self._cond.wait(0.5)

    @property
    def pending_bytes(self) -> int:
        """Bytes submitted and not written yet."""
        return self._pending_bytes

    @property
    def used_bytes(self) -> int:
        """Bytes on disk plus bytes waiting to be written."""
        return self._disk_bytes + self._pending_bytes

    def released(self, segment: Segment) -> None:
        """The roller uploaded and deleted a segment of this writer."""
        with self._cond:
            self._disk_bytes -= segment.size

    # -- committer thread -------------------------------------------------------------------
    def _run(self) -> None:
        tick = max(0.05, min(0.5, self.roll_seconds / 4))
        while True:
            with self._cond:
                if not self._pending and not self._closing and not self._seal_wanted():
                    self._cond.wait(tick)
                batch, self._pending = self._pending, []
                self._pending_bytes = 0
                closing, seals = self._closing, self._seal_requests
            try:
                if batch:
                    self._commit(batch)
                self._roll(seal_all=closing or seals > self._seals_done)
            except Exception as exc:  # a bug must not leave requests waiting forever
                log.exception("write-ahead log %s: unexpected failure", self.dir)
                self.fault = exc
                self._report([i.waiter for i in batch], IngestError(500, f"internal error: {exc}"))
            with self._cond:
                self._committed += len(batch)
                self._seals_done = seals
                self._cond.notify_all()
                if closing and not self._pending:
                    return

    def _seal_wanted(self) -> bool:
        return self._seal_requests > self._seals_done

    def _report(self, waiters: list[Any], error: BaseException | None) -> None:
        if not waiters:
            return
        try:
            self.on_commit(waiters, error)
        except Exception:
            log.exception("write-ahead log %s: reporting a commit failed", self.dir)

    def _commit(self, batch: list[Pending]) -> None:
        started = time.perf_counter()
        self.stats["batches"] += 1
        self.stats["records"] += len(batch)
        groups: dict[tuple[str, str, int], list[Pending]] = {}
        for item in batch:
            groups.setdefault((item.stream, item.ext, item.hour), []).append(item)
        done: list[Any] = []
        touched: dict[int, Segment] = {}
        failed = False
        chunks = [(key, chunk) for key, items in groups.items() for chunk in self._fill(key, items)]
        for (stream, ext, hour), items in chunks:
            data = b"".join(i.data for i in items)
            waiters = [i.waiter for i in items]
            try:
                segment = self._segment_for(stream, ext, hour, len(data))
                frame = FRAME.pack(MAGIC, len(data), zlib.crc32(data)) + data
                try:
                    _write_all(segment.fd, frame)  # type: ignore[arg-type]
                except OSError:
                    self._undo(segment)
                    raise
                segment.size += len(frame)
                segment.data_bytes += len(data)
                with self._cond:
                    self._disk_bytes += len(frame)
                touched[id(segment)] = segment
                done.extend(waiters)
            except OSError as exc:
                failed = True
                self._fail(waiters, exc)
        fsync_s = 0.0
        try:
            if self.fsync:
                for segment in touched.values():
                    if segment.fd is None:
                        continue
                    try:
                        synced = time.perf_counter()
                        os.fdatasync(segment.fd)
                        fsync_s += time.perf_counter() - synced
                    except OSError as exc:
                        # The data's fate is unknown (the kernel may drop dirty pages after a
                        # failed fsync): refuse the whole batch, seal, never write there again.
                        self._seal(segment)
                        self._fail(done, exc)
                        return
            self.stats["fsync_s"] += fsync_s
            self.stats["commit_s"] += time.perf_counter() - started
            if not failed:
                self.fault = None  # the disk takes writes again
            if self.on_batch is not None:
                self.on_batch(len(batch), fsync_s)
            self._report(done, None)
        finally:
            retiring, self._retiring = self._retiring, []
            for segment in retiring:
                self._seal(segment)

    def _fail(self, waiters: list[Any], exc: OSError) -> None:
        self.fault = exc
        log.error("write-ahead log %s: %s", self.dir, exc)
        if exc.errno == errno.ENOSPC:
            message = f"the write-ahead log disk is full ({self.dir}): retry later"
        else:
            message = f"the write-ahead log could not write ({exc.strerror}): retry later"
        self._report(waiters, IngestError(503, message, {"retry-after": "5"}))

    def _undo(self, segment: Segment) -> None:
        """A partial frame must not stay: cut the file back, then stop writing to it."""
        try:
            os.ftruncate(segment.fd, segment.size)  # type: ignore[arg-type]
        except OSError:
            pass  # the reader stops at the torn frame anyway
        self._seal(segment)

    def _fill(self, key: tuple[str, str, int], items: list[Pending]) -> list[list[Pending]]:
        """Cut one stream-hour's share of a batch so no part outgrows roll_bytes: a fast
        producer's batch can hold far more than one part (only one record larger than
        roll_bytes makes a larger part, alone)."""
        stream, ext, hour = key
        limit = self.roll_bytes(stream)
        current = self._open.get(stream)
        used = current.data_bytes if current and (current.hour, current.ext) == (hour, ext) else 0
        chunks: list[list[Pending]] = [[]]
        for item in items:
            if used and used + len(item.data) > limit:  # the part is full: start the next
                if chunks[-1]:
                    chunks.append([])
                used = 0
            chunks[-1].append(item)
            used += len(item.data)
        return chunks

    def _segment_for(self, stream: str, ext: str, hour: int, nbytes: int) -> Segment:
        current = self._open.get(stream)
        if current is not None and (
            current.hour != hour
            or current.ext != ext
            or (current.data_bytes and current.data_bytes + nbytes > self.roll_bytes(stream))
        ):
            # Sealed after this batch's fsyncs: it may hold records of this batch.
            del self._open[stream]
            self._retiring.append(current)
            current = None
        if current is None:
            self._seq += 1
            path = self.dir / segment_name(self._seq, hour, stream, ext)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            if self.fsync:
                fsync_dir(self.dir)  # the new file's name must survive a power cut too
            current = Segment(path, self.writer, self._seq, hour, stream, ext, fd=fd)
            self._open[stream] = current
        return current

    def _seal(self, segment: Segment) -> None:
        if self._open.get(segment.stream) is segment:
            del self._open[segment.stream]
        if segment.fd is not None:
            os.close(segment.fd)
            segment.fd = None
        if segment.data_bytes:
            self.on_sealed(segment)
        else:
            segment.path.unlink(missing_ok=True)
            with self._cond:
                self._disk_bytes -= segment.size

    def _roll(self, seal_all: bool) -> None:
        now, hour = time.monotonic(), hour_of(time.time())
        for segment in list(self._open.values()):
            # at the hour boundary (of the clock: a backfill into a past hour is not sealed
            # at once), after roll_seconds, or when asked to
            if seal_all or segment.opened_hour < hour or now - segment.opened >= self.roll_seconds:
                self._seal(segment)


# -- orphans: writers that died -----------------------------------------------------------------


@dataclass
class Orphan:
    """A dead writer's folder, locked by us while its segments are uploaded."""

    dir: Path
    writer: str
    lock_fd: int
    segments: list[Segment]

    def finish(self) -> None:
        """All segments uploaded: remove the folder, then let go of the lock."""
        try:
            for p in self.dir.iterdir():
                if p.name != LOCK_NAME:
                    p.unlink()
            (self.dir / LOCK_NAME).unlink(missing_ok=True)
            self.dir.rmdir()
        except OSError:
            pass
        os.close(self.lock_fd)

    def abandon(self) -> None:
        os.close(self.lock_fd)


def orphans(root: Path, own: str) -> Iterator[Orphan]:
    """Writer folders under `root` whose lock is free: their writer died (or exited early)."""
    if not root.is_dir():
        return
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != own):
        if folder.name.startswith(STAGING):
            _remove_stale_staging(folder)
            continue
        try:
            fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # alive
        segments = []
        for path in sorted(folder.iterdir()):
            if path.name.endswith(".part"):
                path.unlink(missing_ok=True)  # an export interrupted by the crash
                continue
            seg = Segment.from_path(path, folder.name)
            if seg is not None:
                segments.append(seg)
        yield Orphan(folder, folder.name, fd, segments)


def _remove_stale_staging(folder: Path, age: float = 300.0) -> None:
    """A writer killed while setting up leaves an empty staging folder: remove it later."""
    try:
        if time.time() - folder.stat().st_mtime < age:
            return
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
    except OSError:
        pass


def disk_bytes(root: Path, skip: str) -> int:
    """Bytes of segments under `root` in writer folders other than `skip`."""
    total = 0
    try:
        folders = [p for p in root.iterdir() if p.name != skip]
    except OSError:
        return 0
    for folder in folders:
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.endswith(".wal"):
                        try:
                            total += entry.stat().st_size
                        except OSError:
                            continue
        except OSError:
            continue
    return total
