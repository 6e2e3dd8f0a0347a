"""Context: the one entry point front ends call (CLI, scheduler, ingest). Time is an argument."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from courier.config.models import CourierConfig, parse_duration_seconds
from courier.console import Console, NoopConsole
from courier.destinations.base import LoadContext
from courier.errors import CourierError, RunError, StorageError
from courier.patterns import FilePattern, list_prefix, rendered_regex
from courier.plan import (
    BadRecord,
    FeedCounts,
    FeedLoad,
    InputFile,
    InputSummary,
    PlannedFile,
    RunPlan,
)
from courier.processes import pid_alive
from courier.project import Project
from courier.storage.base import StorageBackend
from courier.storage.registry import create_storage
from courier.windows import (
    Grain,
    Partition,
    Window,
    iso_utc,
    parse_date,
    window_for_date,
    window_for_hour,
    window_for_range,
)
from courier.workspace import Workspace, open_workspace

log = logging.getLogger("courier")


class Context:
    def __init__(self, project: Project, console: Console | None = None):
        self.project = project
        self.console = console or NoopConsole()
        self._storages: dict[str, StorageBackend] = {}

    # -- building blocks -------------------------------------------------------------------
    def storage(self, name: str) -> StorageBackend:
        if name not in self._storages:
            config = self.project.settings.storages[name]
            self._storages[name] = create_storage(name, config, self.project.root)
        return self._storages[name]

    def workspace(self) -> Workspace:
        return open_workspace(self.project)

    def grain(self, courier: CourierConfig) -> Grain:
        pattern = FilePattern.parse(courier.pattern)
        return Grain.for_courier(courier.prefix, pattern.has_hour, self.project.time_zone)

    def window(
        self,
        courier: CourierConfig,
        date: str | None = None,
        hour: str | None = None,
        start: str | None = None,
        end: str | None = None,
        now: datetime | None = None,
    ) -> Window:
        """The manual window (SPEC 3); with none given, the latest complete partition."""
        tz = self.project.time_zone
        if (date or hour) and (start or end):
            raise RunError("give either --date/--hour or --start/--end, not both")
        if date and hour:
            return self._hour_of_date(date, hour)
        if date:
            return window_for_date(date, self.grain(courier))
        if hour:
            return window_for_hour(hour, tz)
        if start and end:
            return window_for_range(start, end, tz)
        if start or end:
            raise RunError("give both --start and --end")
        now = now or datetime.now(UTC)
        grain = self.grain(courier)
        current = grain.partition_of(now)
        previous = grain.partition_of(current.start - timedelta(seconds=1))
        return Window(previous.start, previous.end)

    def _hour_of_date(self, date: str, hour: str) -> Window:
        """--date D --hour HH (or an --hour on that same day): that hour; an --hour on another
        day contradicts --date and is refused."""
        tz = self.project.time_zone
        day = parse_date(date)
        if hour.strip().isdigit() and int(hour) < 24:
            return window_for_hour(f"{day.isoformat()}T{int(hour):02d}", tz)
        window = window_for_hour(hour, tz)
        if window.start.astimezone(tz).date() != day:
            raise RunError(
                f"--hour {hour} is not on --date {date}: give one of them, or --date {date} "
                "--hour HH for an hour of that day"
            )
        return window

    # -- discovery -------------------------------------------------------------------------
    def discover(
        self, courier: CourierConfig, window: Window, lookback: timedelta | None = None
    ) -> list[PlannedFile]:
        """Files of the window's partitions (and of the lookback before it), by prefix listing."""
        grain = self.grain(courier)
        pattern = FilePattern.parse(courier.pattern)
        partitions = [(p, False) for p in grain.partitions(window)]
        if lookback:
            before = Window(window.start - lookback, window.start, window.hourly)
            partitions = [(p, True) for p in grain.partitions(before)] + partitions
        storage = self.storage(courier.storage)
        found: dict[str, PlannedFile] = {}
        tz = self.project.time_zone
        for partition, is_lookback in partitions:
            for rendered in expand(pattern, partition, tz):
                regex = rendered_regex(rendered)
                for info in storage.list(list_prefix(rendered)):
                    if info.key not in found and regex.match(info.key):
                        found[info.key] = PlannedFile(
                            courier.storage, info, partition.start, lookback=is_lookback
                        )
        return sorted(found.values(), key=lambda f: (f.partition, f.key))

    def plan(
        self,
        courier_name: str,
        window: Window,
        now: datetime,
        reload: bool = False,
        lookback: timedelta | None = None,
        trigger: str = "manual",
        workspace: Workspace | None = None,
    ) -> RunPlan:
        courier = self.project.courier(courier_name)
        if lookback is None and courier.lookback:
            lookback = timedelta(seconds=parse_duration_seconds(courier.lookback))
        files = self.discover(courier, window, lookback)
        ws = workspace or self.workspace()
        keys = [f.key for f in files]
        try:
            loaded = ws.state.loaded_versions(courier.name, courier.storage, keys)
            sums = ws.state.loaded_checksums(courier.name, courier.storage, keys)
        finally:
            if workspace is None:
                ws.close()
        storage = self.storage(courier.storage)
        marked = []
        for f in files:
            done = (f.info.size, f.info.version) in loaded.get(f.key, set())
            recorded = sums.get((f.key, f.info.size, f.info.version))
            if done and not f.lookback and recorded:
                # same size and time (or ETag) as a loaded file: the same content?
                done = storage.checksum(f.info) in recorded
            if f.lookback and (done or f.key in loaded):
                continue  # lookback only brings never-loaded files
            marked.append(PlannedFile(f.storage, f.info, f.partition, done, f.lookback))
        loads = self._loads(courier)
        run_id = f"{now:%Y%m%dT%H%M%S}-{courier.name}-{uuid.uuid4().hex[:6]}"
        return RunPlan(run_id, courier, window, marked, loads, now, reload, trigger)

    def _loads(self, courier: CourierConfig) -> list[FeedLoad]:
        loads = []
        for feed_id, ops in courier.load_operations.items():
            feed = self.project.feed(feed_id)
            truncate = any(op.type == "truncateAndLoad" for op in ops)
            for i, op in enumerate(ops):
                query = self.project.queries[op.sql_query] if op.sql_query else None
                loads.append(FeedLoad(feed, op, query, truncate and i == 0))
        return loads

    # -- running ---------------------------------------------------------------------------
    def run(
        self,
        courier_name: str,
        window: Window,
        now: datetime,
        reload: bool = False,
        dry_run: bool = False,
        lookback: timedelta | None = None,
        trigger: str = "manual",
        group: tuple[str, str] | None = None,
        force: bool = False,
    ) -> dict[str, Any]:
        """Run one courier over a window; return the run record (SPEC 6 `--json` shape).
        A manual run of a window in the future loads nothing unless forced."""
        clock = time.monotonic()
        courier = self.project.courier(courier_name)
        with self.workspace() as ws:
            try:
                plan = self.plan(courier_name, window, now, reload, lookback, trigger, ws)
            except StorageError as exc:
                return self._record_failure(ws, courier, window, now, clock, exc, trigger, group)
            result = self._result(plan, group)
            if trigger == "manual" and window.start >= now and not force:
                result["status"] = "skipped"
                result["warnings"].append(
                    f"the window starts in the future ({iso_utc(window.start)}; now "
                    f"{iso_utc(now)}): nothing can have landed in it, so nothing was loaded "
                    "(not even lookback files). Check the date, or pass --force to run it"
                )
                self.console.warn(f"{courier.name}: {result['warnings'][-1]}")
                if not dry_run:
                    result["duration_s"] = round(time.monotonic() - clock, 3)
                    ws.state.start_run(self._row(result, datetime.now(UTC)))
                return result
            if dry_run:
                result["status"] = "dry_run"
                would_load = {f.key for f in plan.to_load}
                result["files"]["list"] = [
                    {
                        "key": f.key,
                        "size": f.info.size,
                        "loaded": f.already_loaded,
                        "would_load": f.key in would_load,
                    }
                    for f in plan.files
                ]
                return result
            self._mark_interrupted(ws, courier.name)
            ws.state.start_run({**self._row(result), "status": "running"})
            bad: list[BadRecord] = []
            try:
                self._execute(ws, plan, result, bad)
            except Exception as exc:  # the run is recorded whatever went wrong
                ws.state.rollback()
                result["status"] = "failed"
                result["error"] = str(exc) if isinstance(exc, CourierError) else repr(exc)
                result["duration_s"] = round(time.monotonic() - clock, 3)
                ws.state.quarantine(plan.run_id, courier.name, None, bad)
                result["quarantined"] = len(bad)
                if bad:
                    result["quarantine_file"] = str(self._quarantine_file(ws, plan))
                ws.state.finish_run(self._row(result, datetime.now(UTC)))
                if not isinstance(exc, CourierError):
                    log.exception("courier run %s failed", plan.run_id)
                return result
            finally:
                self._cleanup(plan)
                if result.get("quarantined"):
                    result["quarantine_file"] = str(self._quarantine_file(ws, plan))
            result["duration_s"] = round(time.monotonic() - clock, 3)
            ws.state.finish_run(self._row(result, datetime.now(UTC)))
            return result

    def _quarantine_file(self, ws: Workspace, plan: RunPlan) -> Path:
        """The run's quarantine rows also as an NDJSON file, for people without SQL at hand."""
        path = (
            self.project.path(".courier/quarantine") / plan.courier.name / f"{plan.run_id}.ndjson"
        )
        ws.state.export_quarantine(plan.run_id, path)
        return path

    def _execute(
        self, ws: Workspace, plan: RunPlan, result: dict[str, Any], bad: list[BadRecord]
    ) -> None:
        courier = plan.courier
        in_window = [f for f in plan.files if not f.lookback]
        if not in_window and courier.required and not courier.skip_missing:
            pattern = courier.pattern
            raise RunError(
                f"no files for courier {courier.name} in window "
                f"[{iso_utc(plan.window.start)}, {iso_utc(plan.window.end)}): expected keys "
                f"matching {pattern!r} in {self.storage(courier.storage).describe()}. "
                "Check that the files landed, or set skip_missing = true"
            )
        if not in_window and courier.skip_missing:
            result["warnings"].append(f"no files in the window for pattern {courier.pattern!r}")
        to_load = plan.to_load
        if not to_load:
            result["status"] = "skipped"
            return
        self.console.status(f"{courier.name}: fetching {len(to_load)} file(s)")
        # the files' checksums (a local file's content hash) are taken beside the read
        hashing = ThreadPoolExecutor(max_workers=2, thread_name_prefix="courier-checksum")
        try:
            storage = self.storage(courier.storage)
            checksums = [hashing.submit(storage.checksum, f.info) for f in to_load]
            self._read_and_load(ws, plan, result, bad, to_load, checksums)
        finally:
            hashing.shutdown(wait=False, cancel_futures=True)

    def _read_and_load(
        self,
        ws: Workspace,
        plan: RunPlan,
        result: dict[str, Any],
        bad: list[BadRecord],
        to_load: list[PlannedFile],
        checksums: list[Future[str | None]],
    ) -> None:
        courier = plan.courier
        inputs = self._fetch(plan, to_load)
        self.console.status(f"{courier.name}: reading {len(inputs)} file(s)")
        tag = courier.file_tag
        options = courier.options.model_dump()
        pinned = ws.state.pinned_schema(courier.name, tag)
        # One saved query and nothing else reads the tag: it may stream from the files.
        read_once = len(plan.loads) == 1 and plan.loads[0].operation.type == "sql"
        source, summary = ws.engine.read_input(
            tag, inputs, courier.format, options, pinned, read_once=read_once
        )
        bad.extend(summary.bad)
        result["schema_changes"] = summary.schema_changes if pinned is not None else []
        for change in result["schema_changes"]:
            self.console.warn(f"{courier.name}: {change}")
        check_bad_records(courier, summary)
        # A streamed tag's query runs before the transaction: should a value need the tag
        # read again (engines/duckdb.py), the failed statement has not aborted the run.
        queried = None
        if read_once:
            assert plan.loads[0].query is not None
            queried = ws.engine.run_query(plan.loads[0].query, [tag])
            if len(summary.bad) > len(bad):  # records found when the tag was read again
                bad.extend(summary.bad[len(bad) :])
                check_bad_records(courier, summary)
        ws.state.begin()
        ctx = LoadContext(plan.run_id, courier.name, plan.started_at)
        feeds: dict[str, FeedCounts] = {}
        rejected = 0
        for feed_load in plan.loads:
            feed = feed_load.feed
            result["warnings"].extend(ws.destination.ensure_table(feed))
        for feed_load in plan.loads:
            if feed_load.truncate_first:
                ws.destination.truncate(feed_load.feed)
        for feed_load in plan.loads:
            feed, op = feed_load.feed, feed_load.operation
            self.console.status(f"{courier.name}: loading {feed.id}")
            relation = source
            if queried is not None:
                relation = queried
            elif op.type == "sql":
                assert feed_load.query is not None
                relation = ws.engine.run_query(feed_load.query, [tag])
            loaded = ws.destination.load(feed, relation, ctx)
            if relation is not source:
                ws.engine.drop(relation)
            if loaded.ignored_columns:
                action = "rejected" if feed.unknown_columns == "reject" else "ignored"
                origin = f"query {op.sql_query!r}" if op.type == "sql" else f"file tag {tag!r}"
                result["warnings"].append(
                    f"feed {feed.id}: column(s) from {origin} not in feeds/{feed.id}.toml, "
                    f"{action}: {', '.join(loaded.ignored_columns)} (add them to the feed's "
                    "[fields] to load them)"
                )
            feeds.setdefault(feed.id, FeedCounts()).add(loaded.counts)
            rejected += loaded.counts.rejected
        ws.state.quarantine(plan.run_id, courier.name, None, bad)
        to_load = [replace(f, checksum=c.result()) for f, c in zip(to_load, checksums, strict=True)]
        ws.state.record_files(plan.run_id, courier.name, tag, to_load, plan.started_at)
        ws.state.pin_schema(courier.name, tag, summary.schema, plan.run_id)
        result["status"] = "succeeded"
        result["feeds"] = {k: v.as_dict() for k, v in feeds.items()}
        result["files"]["loaded"] = len(to_load)
        result["bytes"] = sum(f.info.size for f in to_load)
        result["records"] = summary.records
        result["quarantined"] = len(bad) + rejected
        result["duration_s"] = result.get("duration_s")
        ws.state.finish_run(self._row(result, datetime.now(UTC)))
        ws.state.commit()

    def _fetch(self, plan: RunPlan, files: list[PlannedFile]) -> list[InputFile]:
        storage = self.storage(plan.courier.storage)
        tmp = self._tmp_dir(plan)
        out: list[InputFile | None] = [None] * len(files)

        def fetch(i: int) -> None:
            f = files[i]
            local = storage.local_path(f.key)
            if local is None:
                local = tmp / f"{i:06d}-{Path(f.key).name}"
                storage.download(f.key, local)
            out[i] = InputFile(f.key, local, f.info.size)

        needs_download = storage.local_path(files[0].key) is None
        if needs_download:
            tmp.mkdir(parents=True, exist_ok=True)
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(fetch, range(len(files))))
        else:
            for i in range(len(files)):
                fetch(i)
        return [f for f in out if f is not None]

    def _tmp_dir(self, plan: RunPlan) -> Path:
        return self.project.path(".courier/tmp") / plan.run_id

    def _cleanup(self, plan: RunPlan) -> None:
        shutil.rmtree(self._tmp_dir(plan), ignore_errors=True)

    def _mark_interrupted(self, ws: Workspace, courier: str) -> None:
        """Runs left 'running' by a process that died (kill -9, power loss) become failed."""
        host = socket.gethostname()
        for run in ws.state.runs(courier, limit=50):
            if run["status"] != "running":
                continue
            if run["host"] == host and run["pid"] and pid_alive(int(run["pid"])):
                continue
            ws.state.finish_run(
                {
                    "run_id": run["run_id"],
                    "status": "failed",
                    "error": "interrupted: the process ended before the run finished; "
                    "nothing of it was committed",
                }
            )

    # -- records ---------------------------------------------------------------------------
    def _result(self, plan: RunPlan, group: tuple[str, str] | None) -> dict[str, Any]:
        found = [f for f in plan.files]
        loaded_before = [f for f in found if f.already_loaded and not plan.reload]
        return {
            "run_id": plan.run_id,
            "courier": plan.courier.name,
            "status": "running",
            "trigger": plan.trigger,
            "group": group[0] if group else None,
            "group_run_id": group[1] if group else None,
            "window": plan.window.as_dict(),
            "files": {"found": len(found), "loaded": 0, "skipped": len(loaded_before)},
            "bytes": 0,
            "records": 0,
            "feeds": {},
            "quarantined": 0,
            "duration_s": 0.0,
            "error": None,
            "warnings": [],
            "schema_changes": [],
            "reload": plan.reload,
            "started_at": iso_utc(plan.started_at),
        }

    def _row(self, result: dict[str, Any], finished: datetime | None = None) -> dict[str, Any]:
        feeds = result.get("feeds") or {}
        row = {
            "run_id": result["run_id"],
            "courier": result["courier"],
            "status": result["status"],
            "trigger": result.get("trigger"),
            "group_name": result.get("group"),
            "group_run_id": result.get("group_run_id"),
            "window_start": result["window"]["start"],
            "window_end": result["window"]["end"],
            "files_found": result["files"]["found"],
            "files_loaded": result["files"]["loaded"],
            "files_skipped": result["files"]["skipped"],
            "bytes": result["bytes"],
            "rows_read": result.get("records", 0),
            "rows_loaded": sum(f["loaded"] for f in feeds.values()),
            "rows_rejected": sum(f["rejected"] for f in feeds.values()),
            "quarantined": result["quarantined"],
            "feeds": feeds,
            "warnings": result.get("warnings") or [],
            "schema_changes": result.get("schema_changes") or [],
            "error": result.get("error"),
            "reload": result.get("reload", False),
            "started_at": result["started_at"],
            "duration_s": result.get("duration_s"),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        if finished is not None:
            row["finished_at"] = finished
        return row

    def _record_failure(
        self,
        ws: Workspace,
        courier: CourierConfig,
        window: Window,
        now: datetime,
        clock: float,
        exc: CourierError,
        trigger: str,
        group: tuple[str, str] | None,
    ) -> dict[str, Any]:
        result = self.failed_result(courier, window, now, exc, trigger, group, clock)
        ws.state.start_run(self._row(result, datetime.now(UTC)))
        return result

    def failed_result(
        self,
        courier: CourierConfig,
        window: Window,
        now: datetime,
        exc: CourierError,
        trigger: str = "manual",
        group: tuple[str, str] | None = None,
        clock: float | None = None,
    ) -> dict[str, Any]:
        """A run that failed before it began, in the `--json` shape (recorded by the caller
        when it can be: not when the feed database itself could not be opened)."""
        plan = RunPlan(
            f"{now:%Y%m%dT%H%M%S}-{courier.name}-{uuid.uuid4().hex[:6]}",
            courier, window, [], [], now, False, trigger,
        )  # fmt: skip
        result = self._result(plan, group)
        result["status"] = "failed"
        result["error"] = str(exc)
        result["duration_s"] = round(time.monotonic() - (clock or time.monotonic()), 3)
        return result

    def runs(
        self, courier: str | None = None, limit: int = 20, group: str | None = None
    ) -> list[dict[str, Any]]:
        if courier is not None:
            self.project.courier(courier)  # a clear error for a courier that does not exist
        with self.workspace() as ws:
            return [run_record(r) for r in ws.state.runs(courier, limit, group)]

    def run_detail(self, run_id: str) -> dict[str, Any]:
        """One run in the `courier run --json` shape, with the files it loaded and its first
        quarantined records (`courier runs show`)."""
        with self.workspace() as ws:
            row = ws.state.run(run_id)
            if row is None:
                recent = ", ".join(r["run_id"] for r in ws.state.runs(limit=3)) or "none yet"
                raise RunError(
                    f"no run {run_id!r} in courier.runs (newest: {recent}); "
                    "`courier runs` lists them"
                )
            detail = run_record(row)
            detail["files"]["list"] = [
                {
                    "key": f["key"],
                    "size": f["size"],
                    "tag": f["file_tag"],
                    "partition": iso_utc(f["partition_start"]) if f["partition_start"] else None,
                }
                for f in ws.state.run_files(run_id)
            ]
            detail["reload"] = row.get("reload")
            detail["host"], detail["pid"] = row.get("host"), row.get("pid")
            return detail

    def quarantined(
        self, courier: str | None = None, run_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """courier.quarantine rows: run, courier, feed, file, line, reason, raw."""
        if courier is not None:
            self.project.courier(courier)
        with self.workspace() as ws:
            rows = ws.state.quarantined(courier, run_id, limit)
        for r in rows:
            r["quarantined_at"] = iso_utc(r["quarantined_at"]) if r["quarantined_at"] else None
        return rows


def check_bad_records(courier: CourierConfig, summary: InputSummary) -> None:
    """Fail the run when its bad records exceed options.max_bad_records (count or fraction)."""
    total = summary.records + len(summary.bad)
    limit = courier.options.max_bad_records
    allowed = limit * total if 0 < limit < 1 else limit
    if len(summary.bad) > allowed:
        first = summary.bad[0]
        raise RunError(
            f"{len(summary.bad)} bad record(s) in {total} exceed max_bad_records = {limit:g} "
            f"(first: {first.file} line {first.line}: {first.reason}); nothing was loaded. "
            "Fix the files or raise options.max_bad_records, then run again"
        )


def expand(pattern: FilePattern, partition: Partition, tz: Any) -> list[str]:
    """The pattern rendered for every hour (or day) of a partition, in its time zone."""
    seen: dict[str, None] = {}
    for hour in partition.hours():
        local = hour.astimezone(tz)
        if not pattern.has_hour and local.hour != 0 and seen:
            continue
        seen.setdefault(pattern.render(local.replace(tzinfo=None)), None)
    return list(seen)


def run_record(row: dict[str, Any]) -> dict[str, Any]:
    """A courier.runs row in the `courier run --json` shape."""

    def ts(v: Any) -> str | None:
        return iso_utc(v) if isinstance(v, datetime) else v

    return {
        "run_id": row["run_id"],
        "courier": row["courier"],
        "status": row["status"],
        "trigger": row.get("trigger"),
        "group": row.get("group_name"),
        "group_run_id": row.get("group_run_id"),
        "window": {"start": ts(row["window_start"]), "end": ts(row["window_end"])},
        "files": {
            "found": row["files_found"] or 0,
            "loaded": row["files_loaded"] or 0,
            "skipped": row["files_skipped"] or 0,
        },
        "bytes": row["bytes"] or 0,
        "records": row["rows_read"] or 0,
        "feeds": row["feeds"] or {},
        "quarantined": row["quarantined"] or 0,
        "duration_s": row["duration_s"],
        "error": row["error"],
        "warnings": row["warnings"] or [],
        "schema_changes": row["schema_changes"] or [],
        "started_at": ts(row["started_at"]),
        "finished_at": ts(row["finished_at"]),
    }
