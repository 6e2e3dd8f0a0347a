"""What the status page shows, read from the state store in short visits.

A visit opens the feed database read-only (inside the scheduler: through its keeper, so the
process keeps one database instance), copies what the pages need into an in-memory snapshot
and closes it: the file is held for milliseconds, never while a page renders. When a run holds
the database, DuckDB refuses a second process at once ("Conflicting lock is held"); the visit
then fails fast and the pages keep serving the last snapshot, saying how old it is.

Storage listings (backlog, landed payloads) are made before the visit, outside the lock.
The state is read through the state seam (courier.state.base: RunHistory, FileLedger,
QuarantineLog, SchedulerState) and the feed tables through the destination seam; only the
read-only visit itself (connect without waiting, fail fast on the lock) is DuckDB's.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from courier.config.models import duration
from courier.context import Context
from courier.errors import CourierError, TransientError
from courier.scheduling.planning import schedule_of
from courier.scheduling.status import backlog_of, member_view, memberships, next_run_of, next_runs
from courier.windows import Window, iso_utc

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from courier.records import RunRecord
    from courier.state.base import StateStore

log = logging.getLogger("courier.ui")

RUN_HORIZON = timedelta(days=90)  # runs copied into a snapshot (the history pages go this far)
LANDED_HORIZON = timedelta(hours=48)
ALERT_LIMIT = 200
SAMPLE_ROWS = 5
DETAIL_LIMIT = 200  # files and quarantine rows shown on a run's page
COUNT_BUDGET = 64 << 20  # bytes of landed parts read per snapshot to count their payloads
LATE_GRACE = timedelta(minutes=30)

SNAPSHOT_RUN_COLUMNS = [
    "run_id", "courier", "status", "trigger", "group_name", "group_run_id", "window_start",
    "window_end", "files_found", "files_loaded", "files_skipped", "bytes", "rows_read",
    "rows_loaded", "rows_rejected", "quarantined", "feeds", "error", "reload", "started_at",
    "finished_at", "duration_s", "host", "pid",
]  # fmt: skip


class DatabaseBusy(TransientError):
    """Another process holds the feed database; the page serves its last snapshot."""


@dataclass
class Snapshot:
    """One visit's copy: overview rows, open alerts, feeds, landed payloads, and the runs of
    the last RUN_HORIZON in an in-memory database the pages query."""

    taken_at: datetime
    took_s: float
    runs: duckdb.DuckDBPyConnection
    couriers: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    feeds: list[dict[str, Any]]
    landed: list[dict[str, Any]]  # {stream, hour (UTC datetime), payloads, bytes}
    time_zone: str
    held_s: float = 0.0  # how long the visit held the feed database

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.runs.cursor()


@dataclass
class Freshness:
    """How current the served snapshot is."""

    taken_at: datetime | None
    age_s: float | None
    stale: bool
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "taken_at": iso_utc(self.taken_at) if self.taken_at else None,
            "age_s": None if self.age_s is None else round(self.age_s, 1),
            "stale": self.stale,
            "error": self.error,
        }


@dataclass
class Visit:
    """What a visit reads through: the state store and the feed database's connection (for
    the feed tables' destination)."""

    state: StateStore | None
    con: duckdb.DuckDBPyConnection | None


@dataclass
class PartCount:
    size: int
    payloads: int


@dataclass
class StatusReader:
    """Takes snapshots (on a background thread while the page is served) and answers the
    per-run and per-feed detail visits, each as short as the snapshot's."""

    context: Context
    in_scheduler: bool = False  # inside `courier scheduler`: visit through its keeper
    refresh_seconds: float = 5.0
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    current: Snapshot | None = None
    last_error: str | None = None
    # called after each refresh with (snapshot or None, "ok" | "busy" | "failed", seconds)
    listeners: list[Callable[[Snapshot | None, str, float], None]] = field(default_factory=list)
    _counts: dict[str, PartCount] = field(default_factory=dict)
    _details: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def project(self) -> Any:
        return self.context.project

    # -- visits ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def visit(self) -> Iterator[Visit]:
        """The state store and the feed database, open for as long as the block runs (both
        None before the first run created them)."""
        if self.in_scheduler:
            try:
                with self.context.hold(), self.context.workspace() as ws:
                    yield Visit(ws.state, ws.connection)
            except TransientError as exc:
                raise DatabaseBusy(str(exc)) from exc
            return
        import duckdb

        from courier.state.duckdb import DuckDBStateStore

        path = Path(self.project.path(self.project.settings.feeds.database))
        if not path.exists():
            yield Visit(None, None)
            return
        try:
            con = duckdb.connect(str(path), read_only=True)
        except duckdb.Error as exc:
            if "lock" in str(exc).lower():
                raise DatabaseBusy(
                    "a courier run holds the feed database; showing the last snapshot"
                ) from exc
            raise CourierError(f"cannot read the feed database {path}: {exc}") from exc
        try:
            con.execute("SET TimeZone = 'UTC'")
            yield Visit(DuckDBStateStore.reading(con), con)
        finally:
            con.close()

    # -- snapshots ---------------------------------------------------------------------------
    def refresh(self) -> Snapshot | None:
        """Take a new snapshot; on DatabaseBusy (or any fault) keep the last one."""
        clock = time.monotonic()
        snap: Snapshot | None = None
        try:
            snap = self.take()
            outcome = "ok"
        except DatabaseBusy as exc:
            self.last_error, outcome = str(exc), "busy"
        except Exception as exc:  # the page reports it; the next refresh tries again
            log.warning("status page: reading state failed: %s", exc, exc_info=True)
            self.last_error = str(exc) if isinstance(exc, CourierError) else repr(exc)
            outcome = "failed"
        if snap is not None:
            with self._lock:
                self.current, self.last_error = snap, None
        for listener in self.listeners:
            try:
                listener(snap, outcome, time.monotonic() - clock)
            except Exception:
                log.exception("status page: a snapshot listener failed")
        return self.current

    def snapshot(self) -> Snapshot | None:
        """The current snapshot, taking the first one if there is none yet."""
        return self.current or self.refresh()

    def freshness(self) -> Freshness:
        snap = self.current
        if snap is None:
            return Freshness(None, None, True, self.last_error or "no snapshot yet")
        age = (self.now() - snap.taken_at).total_seconds()
        stale = self.last_error is not None or age > 3 * self.refresh_seconds
        return Freshness(snap.taken_at, age, stale, self.last_error)

    def start(self) -> None:
        """Refresh every refresh_seconds on a daemon thread until stop()."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="courier-ui", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.refresh()
            wait = self.refresh_seconds if self.last_error is None else 1.0
            self._stop.wait(max(0.1, wait - (time.monotonic() - started)))

    def take(self) -> Snapshot:
        import duckdb

        clock = time.monotonic()
        now = self.now()
        project = self.project
        members_of = memberships(project)
        listed: dict[str, tuple[datetime, Any, str | None]] = {}
        for name, courier in sorted(project.couriers.items()):
            zone, since = member_view(project, name, members_of.get(name, []), now)
            try:
                found = self.context.discover(courier, Window(since, now), tz=zone)
                listed[name] = (since, found, None)
            except CourierError as exc:
                listed[name] = (since, [], str(exc))
        landed = self._landed(now)
        held = time.monotonic()
        with self.visit() as seen:
            state = read_state(seen, now, project, listed)
        held = time.monotonic() - held
        mem = duckdb.connect(":memory:")
        mem.execute("SET TimeZone = 'UTC'")
        runs = state.pop("runs")
        if runs is None:
            runs = empty_runs()
        mem.register("_runs", runs)
        mem.execute("CREATE TABLE runs AS SELECT * FROM _runs")
        mem.unregister("_runs")
        couriers = self._overview(now, state, listed, members_of)
        return Snapshot(
            taken_at=now,
            took_s=round(time.monotonic() - clock, 4),
            runs=mem,
            couriers=couriers,
            alerts=open_alerts(state["alerts"], state["summaries"]),
            feeds=state["feeds"],
            landed=landed,
            time_zone=project.settings.project.time_zone,
            held_s=round(held, 4),
        )

    def _overview(
        self,
        now: datetime,
        state: dict[str, Any],
        listed: dict[str, tuple[datetime, Any, str | None]],
        members_of: dict[str, list[tuple[str, Any]]],
    ) -> list[dict[str, Any]]:
        project = self.project
        upcoming = next_runs(project, now)
        latest = {name: schedule_of(project, g).latest(now) for name, g in project.groups.items()}
        rows = []
        for name, courier in sorted(project.couriers.items()):
            members = members_of.get(name, [])
            summary = state["summaries"].get(name, {})
            since, files, error = listed[name]
            if error is None:
                backlog = backlog_of(
                    name, courier.storage, since, files,
                    lambda c, s, keys: state["loaded"].get(c, {}),
                )  # fmt: skip
            else:
                backlog = {"since": iso_utc(since), "files": 0, "bytes": 0, "oldest": None,
                           "error": error}  # fmt: skip
            last_run = summary.get("last_run")
            due = None  # the newest scheduled time whose run should have loaded by now
            for group_name, member in members:
                fired = latest.get(group_name)
                grace = (duration(member.wait) or timedelta(0)) + LATE_GRACE
                if fired is not None and now - fired > grace and (due is None or fired > due):
                    due = fired
            rows.append(
                {
                    "courier": name,
                    "groups": [g for g, _ in members],
                    "status": courier_state(summary, backlog, due, now),
                    "last_success": iso(summary.get("last_success")),
                    "last_run": {
                        "run_id": last_run["run_id"],
                        "status": last_run["status"],
                        "started_at": iso(last_run["started_at"]),
                        "finished_at": iso(last_run["finished_at"]),
                        "error": last_run["error"],
                    }
                    if last_run
                    else None,
                    "newest_partition": iso(summary.get("newest_partition")),
                    "backlog": backlog,
                    "next_run": next_run_of(members, upcoming),
                }
            )
        return rows

    # -- landed payloads ---------------------------------------------------------------------
    def _landed(self, now: datetime) -> list[dict[str, Any]]:
        """Payloads and bytes landed per stream and UTC hour over the last 48 hours, from the
        landing storage's hourly folders; a part's payloads are counted once and remembered."""
        from courier.ingest.service import stream_storage

        project = self.project
        budget = COUNT_BUDGET
        out = []
        start = (now - LANDED_HORIZON).replace(minute=0, second=0, microsecond=0)
        hours = []
        hour = start
        while hour <= now:
            hours.append(hour)
            hour += timedelta(hours=1)
        for sid, stream in sorted(project.streams.items()):
            try:
                storage = self.context.storage(stream_storage(project, stream))
                infos = list(storage.list_many([f"{sid}/{h:%Y/%m/%d/%H}/" for h in hours]))
            except (CourierError, KeyError) as exc:
                log.info("status page: listing stream %s failed: %s", sid, exc)
                continue
            per_hour: dict[datetime, list[int]] = {}
            for info in infos:
                try:
                    y, mo, d, h = info.key[len(sid) + 1 :].split("/")[:4]
                    at = datetime(int(y), int(mo), int(d), int(h), tzinfo=UTC)
                except ValueError:
                    continue
                known = self._counts.get(info.key)
                if known is None or known.size != info.size:
                    if budget < info.size:
                        continue  # counted by a later snapshot
                    budget -= info.size
                    known = PartCount(info.size, count_payloads(storage, info.key))
                    self._counts[info.key] = known
                bucket = per_hour.setdefault(at, [0, 0])
                bucket[0] += known.payloads
                bucket[1] += info.size
            for at, (payloads, size) in sorted(per_hour.items()):
                out.append({"stream": sid, "hour": at, "payloads": payloads, "bytes": size})
        return out

    # -- details -----------------------------------------------------------------------------
    def run_details(self, run_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """(files, quarantine samples and alerts of a run, None) from a short visit; when a
        run holds the database, (what an earlier visit read or None, the reason)."""
        cached = self._details.get(run_id)
        if cached is not None and cached.get("final"):
            return cached, None
        try:
            with self.visit() as seen:
                details = read_run_details(seen.state, run_id)
        except DatabaseBusy as exc:
            return cached, str(exc)
        if details.get("final"):
            self._details[run_id] = details
            if len(self._details) > 500:
                self._details.pop(next(iter(self._details)))
        return details, None


def iso(value: Any) -> str | None:
    return iso_utc(value) if isinstance(value, datetime) else value


def courier_state(
    summary: dict[str, Any], backlog: dict[str, Any], due: datetime | None, now: datetime
) -> str:
    """ok, late, failing, never_run (running while a run is in progress and all is well)."""
    last = summary.get("last_finished")
    if summary.get("last_run") is None:
        return "never_run"
    if last is not None and last["status"] == "failed":
        return "failing"
    success = summary.get("last_success")
    if due is not None and (success is None or success < due):
        return "late"
    oldest = backlog.get("oldest")
    if oldest and datetime.fromisoformat(oldest.replace("Z", "+00:00")) < now - timedelta(days=1):
        return "late"  # landed files a day old still not loaded
    if summary["last_run"]["status"] == "running":
        return "running"
    return "ok"


def open_alerts(
    alerts: list[dict[str, Any]], summaries: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Alerts no later success has answered: a courier's alert is open until a run of it
    succeeds (or has nothing to load) after the alert; a group's until a day has passed."""
    out = []
    for alert in alerts:
        courier = alert.get("courier")
        if courier:
            success = summaries.get(courier, {}).get("last_success")
            if success is not None and success > alert["created_at"]:
                continue
        out.append(
            {
                "alert_id": alert["alert_id"],
                "kind": alert["kind"],
                "courier": courier,
                "group": alert["group_name"],
                "run_id": alert["run_id"],
                "message": alert["message"],
                "created_at": iso(alert["created_at"]),
            }
        )
    return out


def count_payloads(storage: Any, key: str) -> int:
    """Payloads in a landed part: lines of NDJSON, top-level items of CBOR."""
    data = storage.read_bytes(key)
    if key.endswith(".cbor"):
        import io

        import cbor2

        stream = io.BytesIO(data)
        decoder = cbor2.CBORDecoder(stream)
        n = 0
        while stream.tell() < len(data):
            try:
                decoder.decode()
            except Exception:
                break
            n += 1
        return n
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


# -- the state, read through its interfaces -------------------------------------------------------


def run_view(record: RunRecord | None) -> dict[str, Any] | None:
    """The fields of a run the overview shows."""
    if record is None:
        return None
    return {
        "run_id": record.run_id,
        "status": record.status,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "error": record.error,
    }


def read_state(
    seen: Visit,
    now: datetime,
    project: Any,
    listed: dict[str, tuple[datetime, Any, str | None]],
) -> dict[str, Any]:
    """Everything a snapshot needs, read in one visit."""
    out: dict[str, Any] = {
        "runs": None,  # made outside the visit when there is no state yet
        "summaries": {},
        "alerts": [],
        "loaded": {},
        "feeds": [],
    }
    state = seen.state
    if state is not None:
        out["runs"] = state.runs_since(now - RUN_HORIZON, SNAPSHOT_RUN_COLUMNS)
        for name, summary in state.courier_summaries(sorted(project.couriers)).items():
            out["summaries"][name] = {
                "last_success": summary["last_success"],
                "newest_partition": summary["newest_partition"],
                "last_run": run_view(summary["last_run"]),
                "last_finished": run_view(summary.get("last_finished")),
            }
        wanted: dict[tuple[str, str], list[str]] = {}
        for name, (_, files, _) in listed.items():
            keys = wanted.setdefault((name, project.couriers[name].storage), [])
            keys.extend(f.key for f in files)
        out["loaded"] = state.loaded_versions_many(wanted)
        out["alerts"] = state.alerts(limit=ALERT_LIMIT)
    out["feeds"] = read_feeds(seen.con, project)
    return out


def empty_runs() -> pa.Table:
    import duckdb

    mem = duckdb.connect(":memory:")
    types = {
        "files_found": "INTEGER", "files_loaded": "INTEGER", "files_skipped": "INTEGER",
        "bytes": "BIGINT", "rows_read": "BIGINT", "rows_loaded": "BIGINT",
        "rows_rejected": "BIGINT", "quarantined": "BIGINT", "reload": "BOOLEAN",
        "window_start": "TIMESTAMPTZ", "window_end": "TIMESTAMPTZ", "started_at": "TIMESTAMPTZ",
        "finished_at": "TIMESTAMPTZ", "duration_s": "DOUBLE", "pid": "INTEGER",
    }  # fmt: skip
    cols = ", ".join(f"NULL::{types.get(c, 'VARCHAR')} AS {c}" for c in SNAPSHOT_RUN_COLUMNS)
    table = mem.sql(f"SELECT {cols} LIMIT 0").to_arrow_table()
    mem.close()
    return table


def read_feeds(con: duckdb.DuckDBPyConnection | None, project: Any) -> list[dict[str, Any]]:
    """Each feed: definition, table columns as stored, row count and a few sample rows, from
    the feed's destination (the feed database, or a Delta table read where it is stored)."""
    from courier.destinations.duckdb import DuckDBDestination

    destination = DuckDBDestination(con) if con is not None else None
    others: dict[str, Any] = {}  # destinations other than the feed database, opened once
    feeds = []
    for feed_id, feed in sorted(project.feeds.items()):
        name = getattr(feed, "destination", None) or project.settings.feeds.destination
        entry: dict[str, Any] = {
            "feed": feed_id,
            "fields": dict(feed.fields),
            "primary_key": list(feed.primary_key),
            "destination": name,
            "table": None,
            "columns": None,
            "rows": None,
            "sample": [],
        }
        config = project.settings.destination(name)
        if config.type == "delta":
            try:
                delta = others.get(name) or others.setdefault(name, open_delta(name, project))
                columns = delta.existing_columns(feed_id)
                if columns is not None:
                    entry["table"] = delta.url(feed_id)
                    entry["columns"] = columns
                    entry["rows"] = delta.row_count(feed_id)
                    entry["sample"] = delta.sample(feed_id, SAMPLE_ROWS)
            except CourierError as exc:  # storage down or refused: say so, show the rest
                entry["error"] = str(exc)
        elif destination is not None:
            columns = destination.existing_columns(feed_id)
            if columns is not None:
                entry["table"] = destination.table(feed_id)
                entry["columns"] = columns
                entry["rows"] = destination.row_count(feed_id)
                entry["sample"] = destination.sample(feed_id, SAMPLE_ROWS)
        feeds.append(entry)
    return feeds


def open_delta(name: str, project: Any) -> Any:
    """A Delta destination for reading its tables (no workspace: the page never locks it)."""
    from courier.backends import Session
    from courier.destinations.delta import open_backend

    return open_backend(name, project.settings.destination(name), Session(project, True))


def read_run_details(state: StateStore | None, run_id: str) -> dict[str, Any]:
    """A run's files, quarantine samples (DETAIL_LIMIT each, with totals) and alerts."""
    out: dict[str, Any] = {"files": [], "files_total": 0, "quarantine": [],
                           "quarantine_total": 0, "alerts": [], "final": False}  # fmt: skip
    if state is None:
        return out
    record = state.run(run_id)
    out["final"] = bool(record and record.status != "running")
    files = state.run_files(run_id)
    out["files_total"], out["files"] = len(files), files[:DETAIL_LIMIT]
    quarantine = state.quarantined(run_id=run_id, limit=DETAIL_LIMIT)
    out["quarantine"] = quarantine
    out["quarantine_total"] = (
        len(quarantine) if len(quarantine) < DETAIL_LIMIT or record is None
        else max(record.quarantined, len(quarantine))
    )  # fmt: skip
    out["alerts"] = list(reversed(state.alerts(run_id=run_id)))  # oldest first
    return out
