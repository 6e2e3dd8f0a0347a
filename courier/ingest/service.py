"""IngestService: what the API and `courier land` share — streams, tokens, limits, log, roller.

    service = IngestService(project)           # ConfigErrors when a stream cannot be served
    service.start()                             # open the log, start the roller, adopt orphans
    service.submit(stream, records, waiter)     # after validation; waiter reported on commit
    service.stop()                              # commit, seal, upload what storage takes

The log reports commits through `on_commit(waiters, error)`: the ASGI app passes asyncio
futures and resolves them on its loop; `courier land` passes None and waits with `flush()`.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from courier.config.loader import ENV_REF
from courier.config.models import StreamConfig
from courier.errors import ConfigError, ConfigErrors, IngestError
from courier.ingest import payloads
from courier.ingest.ratelimit import TokenBucket, retry_after
from courier.ingest.roller import Roller
from courier.ingest.tokens import REVOKED, Denylist, StreamKeys, TokenVerifier, load_keys
from courier.ingest.wal import EXTENSIONS, Pending, Wal, disk_bytes, hour_of, new_writer_id, orphans
from courier.project import Project
from courier.storage.base import StorageBackend
from courier.storage.registry import create_storage

log = logging.getLogger("courier.ingest")

FULL_HOLD = 5.0  # /healthz says 503 this long after the log last refused a payload
PROBE_EVERY = 1.0  # while the log's disk fails, /healthz tries a write at most this often
PROBE_NAME = ".probe"


@dataclass
class StreamRuntime:
    """One stream as the service uses it."""

    config: StreamConfig
    tenant: str
    storage: str
    ext: str
    bucket: TokenBucket
    id: str = field(init=False)
    tenant_bytes: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.id = self.config.id
        self.tenant_bytes = self.tenant.encode()

    @property
    def payload(self) -> str:
        return self.config.payload

    def admit(self, then: str = "retry after the time in Retry-After") -> None:
        """Take one payload from the rate limit; IngestError(429) with Retry-After when over.
        `then` tells the client what to do (it differs per route)."""
        wait = self.bucket.take()
        if wait:
            raise IngestError(
                429,
                f"stream {self.id!r} is over its rate limit of {self.config.rate_limit:g} "
                f"payloads/s: {then}",
                {"retry-after": retry_after(wait)},
            )


def stream_tenant(project: Project, stream: StreamConfig) -> str:
    return stream.tenant or project.settings.ingest.tenant


def stream_storage(project: Project, stream: StreamConfig) -> str:
    return stream.storage or project.settings.ingest.storage


def stream_key(project: Project, sid: str) -> StreamKeys:
    """One stream's keys; the ConfigError names the unset environment variable, if any."""
    stream = project.streams[sid]
    path = project.files.get(f"config/streams:{sid}")
    try:
        return load_keys(stream, stream_tenant(project, stream), project.root, path)
    except ConfigError as exc:
        names = unset_references(path, exc.key)
        if not names:
            raise
        variables = " and ".join(names)
        raise ConfigError(
            f"{exc.key} comes from the environment variable {variables}, which is not set: "
            f"export {variables} before starting courier",
            path,
            exc.key,
        ) from None


def unset_references(path: Path | None, key: str | None) -> list[str]:
    """The ${VAR} names the file gives for `key` (like auth.secret) that are not set."""
    if path is None or not key:
        return []
    from courier.ingest.checks import raw_value

    raw = raw_value(path, *key.split("."))
    if not isinstance(raw, str):
        return []
    return [
        m.group(1)
        for m in ENV_REF.finditer(raw)
        if m.group(2) is None and m.group(1) not in os.environ
    ]


def stream_keys(project: Project, strict: bool = True) -> dict[str, StreamKeys]:
    """Every stream's keys; ConfigErrors listing each stream that cannot verify tokens."""
    keys: dict[str, StreamKeys] = {}
    errors: list[ConfigError] = []
    for sid in project.streams:
        try:
            keys[sid] = stream_key(project, sid)
        except ConfigError as exc:
            errors.append(exc)
    if errors and strict:
        raise ConfigErrors(errors)
    return keys


class IngestService:
    def __init__(
        self,
        project: Project,
        *,
        writer: str | None = None,
        workers: int = 1,
        authenticate: bool = True,
        roll_seconds: float | None = None,
    ):
        self.project = project
        self.settings = project.settings.ingest
        self.root = project.path(self.settings.wal_dir)
        self.writer = writer or new_writer_id()
        self.max_bytes = self.settings.wal_max_bytes
        self.max_body = self.settings.max_body_bytes
        self.xml_depth = self.settings.xml_max_depth
        self.streams: dict[str, StreamRuntime] = {}
        for sid, stream in project.streams.items():
            self.streams[sid] = StreamRuntime(
                config=stream,
                tenant=stream_tenant(project, stream),
                storage=stream_storage(project, stream),
                ext=EXTENSIONS[stream.payload],
                bucket=TokenBucket(stream.rate_limit / max(1, workers)),
            )
        self.verifier = TokenVerifier(
            stream_keys(project) if authenticate else {}, denylist=Denylist(project.path(REVOKED))
        )
        self._storages: dict[str, StorageBackend] = {}
        self._others = 0
        self._others_at = 0.0
        self.full_at = -1e9  # when a payload was last refused for want of room in the log
        self._probed_at = -1e9
        self.on_commit: Any = self._record_errors
        self.errors: list[BaseException] = []
        self.roller = Roller(self.storage_for, self._released)
        self.wal = Wal(
            self.root,
            self.writer,
            on_commit=lambda waiters, error: self.on_commit(waiters, error),
            on_sealed=self.roller.add,
            roll_bytes=self._roll_bytes,
            roll_seconds=roll_seconds or self.settings.roll_seconds,
            fsync=self.settings.fsync,
        )
        self.started = False

    # -- plumbing ---------------------------------------------------------------------------
    def storage_for(self, stream_id: str) -> StorageBackend:
        stream = self.project.streams.get(stream_id)
        name = stream_storage(self.project, stream) if stream else self.settings.storage
        if name not in self._storages:
            if name not in self.project.settings.storages:
                raise ConfigError(
                    f"stream {stream_id!r} lands in storage {name!r}, which is not defined in "
                    "config/courier.toml"
                )
            config = self.project.settings.storages[name]
            self._storages[name] = create_storage(name, config, self.project.root)
        return self._storages[name]

    def _roll_bytes(self, stream_id: str) -> int:
        stream = self.project.streams.get(stream_id)
        return stream.roll_bytes if stream else 128 << 20

    def _released(self, segment: Any) -> None:
        self.wal.released(segment)

    def _record_errors(self, waiters: list[Any], error: BaseException | None) -> None:
        if error is not None:
            self.errors.append(error)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        for runtime in self.streams.values():
            self.storage_for(runtime.id)  # a missing storage is a startup error, not a 5xx
        self.wal.open()
        self.roller.start()
        self.started = True
        for orphan in orphans(self.root, self.writer):
            self.roller.adopt(orphan)

    def flush(self, timeout: float = 60.0) -> bool:
        """Commit and seal everything, then wait for uploads (True when all are in storage)."""
        self.wal.flush(seal=True)
        return self.roller.drain(timeout)

    def stop(self, timeout: float = 30.0) -> bool:
        """Graceful: commit pending records, seal, upload for up to `timeout` seconds."""
        if not self.started:
            return True
        self.started = False
        self.wal.close()
        drained = self.roller.drain(timeout)
        self.roller.stop()
        self.wal.release_lock()
        if not drained:
            log.warning(
                "%d segment(s) not uploaded yet stay in %s; the next `courier serve` or "
                "`courier land` uploads them",
                self.roller.backlog,
                self.root,
            )
        return drained

    # -- accepting records ------------------------------------------------------------------
    def records(self, stream: StreamRuntime, body: bytes) -> list[bytes]:
        return payloads.records(
            stream.payload, body, stream.config.batch_arrays, max_depth=self.xml_depth
        )

    def used_bytes(self) -> int:
        now = time.monotonic()
        if now - self._others_at > 1.0:
            self._others = disk_bytes(self.root, self.writer)
            self._others_at = now
        return self.wal.used_bytes + self._others

    def check_room(self, nbytes: int) -> None:
        used = self.used_bytes()
        if used + nbytes > self.max_bytes:
            self.full_at = time.monotonic()
            raise IngestError(
                503,
                f"the write-ahead log is full ({used} of {self.max_bytes} bytes, waiting for "
                "storage): retry later",
                {"retry-after": retry_after(10)},
            )

    def prepare(
        self, stream: StreamRuntime, records: list[bytes], waiter: Any, at: float | None = None
    ) -> Pending:
        """The records of one payload as one unit (all land, or none); 503 without room."""
        data = records[0] if len(records) == 1 else b"".join(records)
        self.check_room(len(data))
        arrival = time.time() if at is None else at
        return Pending(stream.id, stream.ext, hour_of(arrival), data, waiter)

    def submit(
        self, stream: StreamRuntime, records: list[bytes], waiter: Any, at: float | None = None
    ) -> None:
        self.wal.submit_many([self.prepare(stream, records, waiter, at)])

    def commit_stats(self) -> dict[str, Any]:
        s = dict(self.wal.stats)
        batches = max(1, s["batches"])
        return {
            "batches": s["batches"],
            "records": s["records"],
            "records_per_batch": round(s["records"] / batches, 1),
            "fsync_ms_avg": round(s["fsync_s"] * 1e3 / batches, 3),
            "commit_ms_avg": round(s["commit_s"] * 1e3 / batches, 3),
        }

    def _probe(self) -> None:
        """While the log's last write failed: write and fsync one body's worth next to the
        segments (at most every PROBE_EVERY s); when the disk takes it, the fault is over."""
        now = time.monotonic()
        if not isinstance(self.wal.fault, OSError) or now - self._probed_at < PROBE_EVERY:
            return  # nothing to probe (or a bug, which a good write does not cure)
        self._probed_at = now
        probe = self.wal.dir / PROBE_NAME
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(bytes(self.max_body))
                while view:
                    view = view[os.write(fd, view) :]
                os.fdatasync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self.wal.fault = exc
            return
        finally:
            probe.unlink(missing_ok=True)
        self.wal.fault = None

    def problems(self) -> list[str]:
        """Why the service cannot take a payload now (empty: it can). No paths, no ids."""
        out: list[str] = []
        if self.wal._thread is None or not self.wal._thread.is_alive():
            out.append("the write-ahead log writer is not running")
        self._probe()
        fault = self.wal.fault
        try:
            disk = os.statvfs(self.root)
            free = disk.f_bavail * disk.f_frsize
        except OSError:
            free = None
        if (fault is not None and getattr(fault, "errno", None) == errno.ENOSPC) or (
            free is not None and free < self.max_body
        ):
            out.append("the write-ahead log disk is full")
        elif fault is not None:
            out.append("the write-ahead log cannot write to its disk")
        if self.used_bytes() >= self.max_bytes or time.monotonic() - self.full_at < FULL_HOLD:
            out.append("the write-ahead log is full, waiting for storage to take its backlog")
        return out

    def health(self, detail: bool = True) -> dict[str, Any]:
        """{"status": "ok" | "unavailable", "problems": [...]}; with detail (for the admin
        token) also the log's folder, the process, uploads and commits."""
        problems = self.problems()
        doc: dict[str, Any] = {"status": "unavailable" if problems else "ok", "problems": problems}
        if not detail:
            return doc
        uploads, backlog = self.roller.snapshot()
        fault = self.wal.fault
        doc.update(
            {
                "writer": self.writer,
                "pid": os.getpid(),
                "wal": {
                    "dir": str(self.root),
                    "bytes": self.used_bytes(),
                    "max_bytes": self.max_bytes,
                },
                "uploads": {
                    "backlog": backlog,
                    "done": uploads.done,
                    "failing_since": uploads.failing_since,
                    "last_error": uploads.last_error,
                },
                "commits": self.commit_stats(),
                "fault": str(fault) if fault else None,
            }
        )
        return doc


def wal_dir(project: Project) -> Path:
    return project.path(project.settings.ingest.wal_dir)
