"""CLI plugin for streams: `courier serve`, `courier token create`, `courier land`."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from courier.cli.options import State, emit_json, error_handler, json_option
from courier.errors import ConfigError, ConfigErrors, CourierError, IngestError, not_found
from courier.project import Project
from courier.validate import load_project


def _project(state: State) -> Project:
    return load_project(state.project_dir)


def _stream(project: Project, stream_id: str) -> Any:
    if stream_id not in project.streams:
        raise not_found(
            "stream", stream_id, project.streams, f"add config/streams/{stream_id}.toml"
        )
    return project.streams[stream_id]


# -- courier serve ------------------------------------------------------------------------------


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8080, show_default=True, type=int)
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="processes"
)
@click.option("--access-log", is_flag=True, help="log every request (slower)")
@click.pass_obj
@error_handler
def serve(state: State, host: str, port: int, workers: int, access_log: bool) -> None:
    """Run the ingest API (uvicorn: httptools + uvloop) until SIGINT/SIGTERM.

    Each worker process has its own write-ahead log folder and writer id; on shutdown it
    commits, seals and uploads what storage takes within [ingest] shutdown_timeout.
    """
    import uvicorn

    from courier.ingest import webhooks
    from courier.ingest.service import stream_keys

    project = _project(state)
    if not project.streams:
        raise ConfigError("no streams to serve: add config/streams/STREAM_ID.toml")
    stream_keys(project)  # every stream must be able to verify tokens before we listen
    webhooks.verifiers(project)  # and every [webhook] must have its secret
    wal = project.path(project.settings.ingest.wal_dir)
    try:
        wal.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the write-ahead log folder {wal}: {exc}", key="ingest.wal_dir"
        ) from exc
    from courier.metrics import use_multiprocess_dir

    use_multiprocess_dir()  # /metrics sums every worker's counts
    os.environ["COURIER_PROJECT"] = str(project.root)
    os.environ["COURIER_INGEST_WORKERS"] = str(workers)
    click.echo(
        f"courier serve: {len(project.streams)} stream(s) on http://{host}:{port} "
        f"({workers} worker(s)); write-ahead log {wal}",
        err=True,
    )
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again; with
    # these handlers in place that ends the command with exit code 0 instead of a signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    uvicorn.run(
        "courier.metrics:create_ingest_app",  # the ingest app with GET /metrics
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        # httptools with a header deadline, header size/count limits and a connection limit
        http="courier.ingest.http:GuardedHttpTools",
        timeout_keep_alive=int(max(1, project.settings.ingest.keepalive_timeout)),
        ws="websockets-sansio",  # /stream/v0/ws/: the sans-I/O websockets protocol
        # frames up to 4x the body limit reach the app, which answers oversize ones with a
        # clear error; bigger ones are cut by the protocol (close 1009) before buffering
        ws_max_size=4 * project.settings.ingest.max_body_bytes,
        lifespan="on",
        access_log=access_log,
        log_level="debug" if state.debug else "info",
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=int(project.settings.ingest.shutdown_timeout) + 5,
        backlog=4096,
    )


def _exit_cleanly(signum: int, frame: Any) -> None:
    sys.exit(0)


# -- courier token create -----------------------------------------------------------------------


@click.group()
def token() -> None:
    """Stream tokens (JWT)."""


@token.command("create")
@click.option("--stream", "stream_id", required=True, help="the stream the token is for")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3660))
@click.pass_obj
@error_handler
def token_create(state: State, stream_id: str, days: int) -> None:
    """Print a signed token (tenant, stream, exp claims) alone on stdout."""
    from courier.ingest.service import stream_key
    from courier.ingest.tokens import create_token

    project = _project(state)
    _stream(project, stream_id)
    keys = stream_key(project, stream_id)
    now = datetime.now(UTC)
    click.echo(create_token(keys, now + timedelta(days=days), now))


@token.command("revoke")
@click.argument("token_text", metavar="TOKEN", required=False)
@click.option("--stream", "stream_id", help="the stream (with --jti)")
@click.option("--jti", help="the token id (its `jti` claim) instead of the token itself")
@click.pass_obj
@error_handler
def token_revoke(
    state: State, token_text: str | None, stream_id: str | None, jti: str | None
) -> None:
    """Revoke one stream token: every `courier serve` refuses it (401) from its next request.

    Give the token itself, or --stream and --jti. Revocation is a denylist of token ids
    (.courier/revoked-tokens.json), kept until the token expires; tokens without a `jti`
    (not made by courier) can only be revoked by rotating the stream's [auth] key.
    """
    from courier.ingest.service import stream_key
    from courier.ingest.tokens import REVOKED, Denylist, token_claims

    project = _project(state)
    exp: float = time.time() + 3660 * 86400  # without the token: kept as long as any could live
    if token_text:
        unverified = _unverified_stream(token_text)
        stream_id = stream_id or unverified
        _stream(project, stream_id)
        claims = token_claims(stream_key(project, stream_id), token_text)
        if claims.get("jti") is None:
            raise ConfigError(
                "this token has no jti claim, so it cannot be revoked alone: rotate the "
                f"stream's [auth] secret or key (every token of stream {stream_id!r} stops "
                "working) and hand out new tokens"
            )
        jti = str(claims["jti"])
        exp = float(claims.get("exp", exp))
    elif not (jti and stream_id):
        raise ConfigError("give the TOKEN to revoke, or --stream and --jti")
    else:
        _stream(project, stream_id)
    Denylist(project.path(REVOKED)).revoke(jti, stream_id, exp)
    click.echo(f"revoked token {jti} of stream {stream_id!r}")


def _unverified_stream(token_text: str) -> str:
    import jwt

    try:
        claims = jwt.decode(token_text.strip(), options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise ConfigError(f"not a JWT: {exc}") from None
    stream = claims.get("stream")
    if not isinstance(stream, str):
        raise ConfigError("the token names no stream: give --stream and --jti")
    return stream


# -- courier land -------------------------------------------------------------------------------


LAND_PENDING = 64 << 20  # bytes `land` queues for the log before waiting for a commit


@dataclass
class Payload:
    where: str  # file, or file:line / file:record N
    records: list[bytes]


def _payloads(
    path: Path, stream: Any, split: bool | None, max_body: int, depth: int
) -> Iterator[Payload]:
    """The payloads of one file, one at a time (NDJSON files are read line by line)."""
    from courier.ingest import payloads

    splitting = split if split is not None else path.suffix.lower() in (".ndjson", ".jsonl")
    try:
        if stream.payload == "json" and splitting:
            with open(path, "rb") as fh:
                for line_no, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    where = f"{path}:{line_no}"
                    if len(line) > max_body:
                        raise IngestError(413, f"{where}: the line is over {max_body} bytes")
                    try:
                        yield Payload(where, payloads.json_records(line, stream.batch_arrays))
                    except IngestError as exc:
                        raise IngestError(400, f"{where}: {exc}") from None
            return
        data = path.read_bytes()
        if stream.payload == "xml" and splitting:
            items = payloads.split_xml(data, depth)
            for i, item in enumerate(items, 1):
                yield Payload(f"{path} record {i}", [item])
            return
        if len(data) > max_body:
            raise IngestError(
                413,
                f"{len(data)} bytes: one payload is at most {max_body} bytes "
                "(record files: use --split)",
            )
        yield Payload(str(path), payloads.records(stream.payload, data, stream.batch_arrays, depth))
    except OSError as exc:
        raise IngestError(400, f"cannot read {path}: {exc}") from exc
    except IngestError as exc:
        text = str(exc)
        raise IngestError(
            exc.status, text if text.startswith(str(path)) else f"{path}: {text}"
        ) from None


def _parse_at(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO time like 2026-11-22T07:30:00Z", param_hint="--at"
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.timestamp()


@click.command()
@click.argument("stream_id", metavar="STREAM")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--split/--no-split",
    default=None,
    help="one payload per NDJSON line / per child of the XML root (default: split "
    ".ndjson and .jsonl files, one payload per other file)",
)
@click.option("--at", "at", help="arrival time (UTC) deciding the hour partition; default now")
@click.option("--timeout", default=120.0, show_default=True, help="seconds to wait for storage")
@click.option("--again", is_flag=True, help="land files even if the same content was landed before")
@json_option
@click.pass_obj
@error_handler
def land(
    state: State,
    stream_id: str,
    files: tuple[Path, ...],
    split: bool | None,
    at: str | None,
    timeout: float,
    again: bool,
    as_json: bool,
) -> None:
    """Land payload files through the API's writer (backfills, tests).

    Every file is validated first (nothing lands when one is bad); then the payloads go
    through the write-ahead log and the roller, and the command returns when the part files
    are in storage.

    Idempotent across a crash: the part files' names derive from the files' content (and
    the stream, --split and --at), so a run killed half-way and run again writes the same
    parts over the same keys, removes any left from the killed run, and records the landing;
    a later run of the same content says it is already landed (--again lands it anew).
    """
    from courier.ingest.service import IngestService

    project = _project(state)
    stream = _stream(project, stream_id)
    settings = project.settings.ingest
    arrival = _parse_at(at)
    problems: list[str] = []
    counts = {"payloads": 0, "records": 0}
    digests: list[str] = []
    for path in files:  # pass 1: validate everything, land nothing
        try:
            for p in _payloads(
                path, stream, split, settings.max_body_bytes, settings.xml_max_depth
            ):
                counts["payloads"] += 1
                counts["records"] += len(p.records)
            digests.append(_digest(path))
        except IngestError as exc:
            problems.append(str(exc))
    if problems:
        raise (
            ConfigErrors([ConfigError(p) for p in problems])
            if len(problems) > 1
            else ConfigError(problems[0])
        )
    job = LandJob.of(project, stream_id, digests, split, at, again)
    if job.done is not None:
        _report_landed(stream_id, files, counts, job.done["parts"], as_json, already=True)
        return
    if arrival is None:  # the hour partition (part of the names) stays that of the first try
        arrival = job.arrival
    job.clear_previous_attempt(project.path(settings.wal_dir))
    # one part per stream and hour (up to roll_bytes): `land` seals everything at the end
    service = IngestService(project, writer=job.writer, authenticate=False, roll_seconds=86400.0)
    service.start()
    runtime = service.streams[stream_id]
    try:
        for path in files:  # pass 2: land
            for p in _payloads(
                path, stream, split, settings.max_body_bytes, settings.xml_max_depth
            ):
                if service.wal.pending_bytes > LAND_PENDING:
                    service.wal.flush()  # backpressure: do not queue a whole file in memory
                try:
                    service.submit(runtime, p.records, None, at=arrival)
                except IngestError as exc:
                    if exc.status != 503:
                        raise
                    service.flush(timeout)  # the log is full: let the roller empty it first
                    service.submit(runtime, p.records, None, at=arrival)
        drained = service.flush(timeout)
    finally:
        service.stop(timeout=0)
    if service.errors:
        raise CourierError(f"landing failed: {service.errors[0]}")
    keys = list(service.roller.keys)
    storage = service.storage_for(stream_id)
    if not drained:
        raise CourierError(
            f"{counts['payloads']} payload(s) are safe in the write-ahead log "
            f"({service.root}) but {storage.describe()} did not take them within {timeout:g}s "
            f"({service.roller.last_error}); the next `courier serve` or `courier land` "
            "uploads them"
        )
    job.remove_stale_parts(storage, keys)
    job.finish(keys)
    _report_landed(stream_id, files, counts, keys, as_json, where=storage.describe())


def _report_landed(
    stream_id: str,
    files: tuple[Path, ...],
    counts: dict[str, int],
    keys: list[str],
    as_json: bool,
    where: str = "storage",
    already: bool = False,
) -> None:
    if as_json:
        doc: dict[str, Any] = {"stream": stream_id, "files": len(files), **counts, "parts": keys}
        if already:
            doc["already_landed"] = True
        emit_json(doc)
        return
    if already:
        click.echo(
            f"already landed: the same content went into stream {stream_id!r} before "
            f"({len(keys)} part file(s)); nothing landed again (--again lands it anew)"
        )
    else:
        click.echo(
            f"landed {counts['records']} record(s) from {counts['payloads']} payload(s) in "
            f"{len(files)} file(s) into stream {stream_id!r}: {len(keys)} part file(s) in "
            f"{where}"
        )
    for key in keys:
        click.echo(f"  {key}")


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


JOBS = ".courier/land-jobs"  # one small JSON file per landing: its arrival time, then its parts


@dataclass
class LandJob:
    """One `courier land` of some content, named by it: the writer id (and so the part
    files' names) is the same every time the same content is landed the same way."""

    path: Path
    writer: str
    arrival: float
    done: dict[str, Any] | None

    @classmethod
    def of(
        cls,
        project: Project,
        stream_id: str,
        digests: list[str],
        split: bool | None,
        at: str | None,
        again: bool,
    ) -> LandJob:
        identity = json.dumps([stream_id, digests, split, at]).encode()
        job = hashlib.sha256(identity).hexdigest()[:24]
        folder = project.path(JOBS)
        if again:  # a new landing of the same content: its own names
            job = f"{job[:12]}{secrets.token_hex(6)}"
        path = folder / f"{job}.json"
        from courier.ingest.wal import write_json_atomic

        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            doc = {"stream": stream_id, "arrival": time.time(), "parts": None}
            folder.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, doc)
        except (OSError, ValueError) as exc:
            raise CourierError(
                f"the landing record {path} is unreadable ({exc}): remove it and land again"
            ) from None
        done = doc if doc.get("parts") is not None else None
        return cls(path, f"land-{job}", float(doc["arrival"]), done)

    def clear_previous_attempt(self, wal_root: Path) -> None:
        """A killed run of this job left its log folder: its segments are made again from the
        files (same names), so they go; a live run of the same job is an error."""
        from courier.ingest.wal import LOCK_NAME

        folder = wal_root / self.writer
        if not folder.is_dir():
            return
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise CourierError(
                    "another `courier land` of the same files is running: wait for it"
                ) from None
            for leftover in folder.iterdir():
                if leftover.name != LOCK_NAME:
                    leftover.unlink()
            (folder / LOCK_NAME).unlink()
            folder.rmdir()
        finally:
            os.close(fd)

    def remove_stale_parts(self, storage: Any, keys: list[str]) -> None:
        """Parts of this job that the killed run uploaded and this run did not make again
        (its segments were cut at other places) would be records twice: delete them."""
        marker = f"/part-{self.writer}-"
        keep = set(keys)
        for prefix in sorted({k[: k.index(marker) + 1] for k in keys if marker in k}):
            stale = [i.key for i in storage.list(prefix) if marker in i.key and i.key not in keep]
            storage.delete_many(stale)

    def finish(self, keys: list[str]) -> None:
        from courier.ingest.wal import write_json_atomic

        doc = json.loads(self.path.read_text())
        doc["parts"] = keys
        doc["landed_at"] = time.time()
        write_json_atomic(self.path, doc)


def register(cli: click.Group) -> None:
    cli.add_command(serve)
    cli.add_command(token)
    cli.add_command(land)


__all__ = ["register"]
