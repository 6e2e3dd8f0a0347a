"""Context: the one entry point front ends call (CLI, scheduler, ingest). Time is an argument."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from courier.config.models import CourierConfig, parse_duration_seconds
from courier.console import Console, NoopConsole
from courier.destinations.base import FeedDestination, LoadContext, TLoadMode
from courier.engines.base import Rows, WindowFile
from courier.errors import CourierError, RunError, StorageError
from courier.patterns import FilePattern, list_prefix, rendered_regex
from courier.plan import (
    BadRecord,
    FeedCounts,
    FeedLoad,
    InputSummary,
    PlannedFile,
    RunOptions,
    RunPlan,
)
from courier.processes import pid_alive
from courier.project import Project
from courier.records import RunRecord
from courier.state.base import StateStore
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
from courier.workspace import Workspace, keep_open, open_workspace

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

    def hold(self) -> AbstractContextManager[Any]:
        """Keep the project's databases open in this process while held: what runs in parallel
        threads (group members, sources) wrap their work in."""
        return keep_open(self.project)

    @contextmanager
    def state(self) -> Iterator[StateStore]:
        """The state store for one unit of work that is not a courier run (group runs, leases,
        alerts); a database held by another process raises TransientError."""
        with self.hold(), self.workspace() as ws:
            yield ws.state

    def grain(self, courier: CourierConfig, tz: ZoneInfo | None = None) -> Grain:
        """The courier's partitions, in `tz` (default: the project's time zone)."""
        pattern = FilePattern.parse(courier.pattern)
        return Grain.for_courier(courier.prefix, pattern.has_hour, tz or self.project.time_zone)

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
        self,
        courier: CourierConfig,
        window: Window,
        lookback: timedelta | None = None,
        tz: ZoneInfo | None = None,
    ) -> list[PlannedFile]:
        """Files of the window's partitions (and of the lookback before it), by prefix listing;
        file dates are in `tz` (default: the project's time zone)."""
        tz = tz or self.project.time_zone
        grain = self.grain(courier, tz)
        pattern = FilePattern.parse(courier.pattern)
        partitions = [(p, False) for p in grain.partitions(window)]
        if lookback:
            before = Window(window.start - lookback, window.start, window.hourly)
            partitions = [(p, True) for p in grain.partitions(before)] + partitions
        storage = self.storage(courier.storage)
        found: dict[str, PlannedFile] = {}
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
        options: RunOptions | None = None,
    ) -> RunPlan:
        courier = self.courier_for_run(courier_name, options)
        if lookback is None and courier.lookback:
            lookback = timedelta(seconds=parse_duration_seconds(courier.lookback))
        files = self.discover(courier, window, lookback, options.time_zone if options else None)
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
                done = storage.same_content(f.info, recorded)
            if f.lookback and (done or f.key in loaded):
                continue  # lookback only brings never-loaded files
            marked.append(PlannedFile(f.storage, f.info, f.partition, done, f.lookback))
        loads = self._loads(courier)
        run_id = f"{now:%Y%m%dT%H%M%S}-{courier.name}-{uuid.uuid4().hex[:6]}"
        return RunPlan(run_id, courier, window, marked, loads, now, reload, trigger)

    def courier_for_run(self, name: str, options: RunOptions | None = None) -> CourierConfig:
        """The courier's config with the run's overrides (options.required)."""
        courier = self.project.courier(name)
        if options is not None and options.required is not None:
            courier = courier.model_copy(update={"required": options.required})
        return courier

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
        now: datetime | None = None,
        reload: bool = False,
        dry_run: bool = False,
        lookback: timedelta | None = None,
        trigger: str = "manual",
        group: tuple[str, str] | None = None,
        force: bool = False,
        *,
        options: RunOptions | None = None,
    ) -> dict[str, Any]:
        """Run one courier over a window; return the run record (SPEC 6 `--json` shape).
        A manual run of a window in the future loads nothing unless forced (options.force).

        The run prepares (reads, queries), then commits its feeds, then its state; with one
        transaction for both (DuckDB destination and state) that is one COMMIT."""
        opts = options or RunOptions(now, reload, dry_run, lookback, trigger, group, force=force)
        now = opts.now or datetime.now(UTC)
        clock = time.monotonic()
        courier = self.courier_for_run(courier_name, opts)
        with self.workspace() as ws:
            if not opts.dry_run:  # before planning: a rolled-forward run's files count as loaded
                try:
                    self.recover(ws, courier.name)
                except RunError as exc:  # a half-committed run that could not be rolled forward
                    return self._record_failure(ws, courier, window, now, clock, exc, opts)
            try:
                plan = self.plan(
                    courier_name, window, now, opts.reload, opts.lookback, opts.trigger, ws,
                    options=opts,
                )  # fmt: skip
            except StorageError as exc:
                return self._record_failure(ws, courier, window, now, clock, exc, opts)
            record = self._record(plan, opts.group)
            if opts.trigger == "manual" and window.start >= now and not opts.force:
                record.status = "skipped"
                record.warnings.append(
                    f"the window starts in the future ({iso_utc(window.start)}; now "
                    f"{iso_utc(now)}): nothing can have landed in it, so nothing was loaded "
                    "(not even lookback files). Check the date, or pass --force to run it"
                )
                self.console.warn(f"{courier.name}: {record.warnings[-1]}")
                if not opts.dry_run:
                    record.duration_s = round(time.monotonic() - clock, 3)
                    record.finished_at = datetime.now(UTC)
                    ws.state.start_run(record)
                return record.to_json()
            if opts.dry_run:
                record.status = "dry_run"
                would_load = {f.key for f in plan.to_load}
                record.file_list = [
                    {
                        "key": f.key,
                        "size": f.info.size,
                        "loaded": f.already_loaded,
                        "would_load": f.key in would_load,
                    }
                    for f in plan.files
                ]
                return record.to_json()
            ws.state.start_run(record)
            bad: list[BadRecord] = []
            try:
                self._execute(ws, plan, record, bad)
            except Exception as exc:  # the run is recorded whatever went wrong
                for destination in self._destinations(ws, plan):
                    destination.abort()
                ws.state.rollback()
                record.status = "failed"
                record.error = str(exc) if isinstance(exc, CourierError) else repr(exc)
                record.duration_s = round(time.monotonic() - clock, 3)
                ws.state.quarantine(plan.run_id, courier.name, None, bad)
                record.quarantined = len(bad)
                if bad:
                    record.quarantine_file = str(self._quarantine_file(ws, plan))
                record.finished_at = datetime.now(UTC)
                ws.state.finish_run(record)
                if not isinstance(exc, CourierError):
                    log.exception("courier run %s failed", plan.run_id)
                return record.to_json()
            if record.quarantined:
                record.quarantine_file = str(self._quarantine_file(ws, plan))
            record.duration_s = round(time.monotonic() - clock, 3)
            record.finished_at = datetime.now(UTC)
            ws.state.finish_run(record)
            return record.to_json()

    def _quarantine_file(self, ws: Workspace, plan: RunPlan) -> Path:
        """The run's quarantine rows also as an NDJSON file, for people without SQL at hand."""
        path = (
            self.project.path(".courier/quarantine") / plan.courier.name / f"{plan.run_id}.ndjson"
        )
        ws.state.export_quarantine(plan.run_id, path)
        return path

    def _destinations(self, ws: Workspace, plan: RunPlan) -> list[FeedDestination]:
        """The run's destinations, each once, in load order."""
        out: dict[int, FeedDestination] = {}
        for feed_load in plan.loads:
            destination = ws.destination_for(feed_load.feed)
            out.setdefault(id(destination), destination)
        return list(out.values())

    def _execute(
        self,
        ws: Workspace,
        plan: RunPlan,
        record: RunRecord,
        bad: list[BadRecord],
        resume: RollForward | None = None,
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
            record.warnings.append(f"no files in the window for pattern {courier.pattern!r}")
        to_load = plan.to_load
        if not to_load:
            record.status = "skipped"
            return
        size = sum(f.info.size for f in to_load)
        self.console.status(f"{courier.name}: fetching {len(to_load)} file(s), {size} bytes")
        # the files' checksums (a local file's content hash) are taken beside the read
        engine = ws.engine_for(courier)
        if getattr(engine, "cluster", False):  # the cluster reads the files; courier never does
            self._load_on_cluster(ws, engine, plan, record, bad, to_load, resume)
            return
        hashing = ThreadPoolExecutor(max_workers=2, thread_name_prefix="courier-checksum")
        held: list[Rows] = []  # rows a destination reads again at its commit
        try:
            storage = self.storage(courier.storage)
            checksums = [hashing.submit(storage.checksum, f.info) for f in to_load]
            self._read_and_load(ws, plan, record, bad, to_load, checksums, held, resume)
        finally:
            hashing.shutdown(wait=False, cancel_futures=True)
            for rows in held:
                with suppress(Exception):  # a scratch table left: gone with the connection
                    engine.drop(rows)

    def _load_on_cluster(
        self,
        ws: Workspace,
        engine: Any,
        plan: RunPlan,
        record: RunRecord,
        bad: list[BadRecord],
        to_load: list[PlannedFile],
        resume: RollForward | None = None,
    ) -> None:
        """A run on a Spark engine (engines/spark_run.py): the cluster reads, queries, casts
        and writes the Delta tables; only counts and bounded rejects come back. The plan is
        saved before the cluster writes, so recovery can roll a killed run forward."""
        from courier.engines.spark_run import (
            refuse_destination,
            refuse_escaped_path,
            refuse_format,
        )

        courier = plan.courier
        refuse_format(engine.name, engine.remote, courier)
        targets = []
        for feed_load in plan.loads:
            destination = ws.destination_for(feed_load.feed)
            refuse_destination(engine.name, feed_load.feed, destination)
            uri = engine.table_uri(destination, feed_load.feed.id)
            refuse_escaped_path(engine.name, engine.remote, feed_load.feed, uri)
            record.warnings.extend(destination.ensure_table(feed_load.feed))  # refusals first
            targets.append(uri)
        # the cluster's intermediate Parquet, beside the first feed's table; cleared before
        # (a killed run's) and after the run
        scratch = self._scratch(ws, engine, plan)
        scratch.clear()
        try:
            runner = engine.runner(scratch.run(plan.run_id))
            self._cluster_run(ws, engine, runner, plan, record, bad, to_load, targets, resume)
        finally:
            with suppress(Exception):  # left for the next run's clear, never a failed run
                scratch.clear()

    def _scratch(self, ws: Workspace, engine: Any, plan: RunPlan) -> Any:
        """The courier's scratch folder on the cluster (spark.Scratch), beside its first
        feed's Delta table."""
        first: Any = ws.destination_for(plan.loads[0].feed)  # Delta (refused else)
        return engine.scratch(first, plan.courier.name, self.storage(first.location.storage))

    def _cluster_run(
        self,
        ws: Workspace,
        engine: Any,
        runner: Any,
        plan: RunPlan,
        record: RunRecord,
        bad: list[BadRecord],
        to_load: list[PlannedFile],
        targets: list[str],
        resume: RollForward | None,
    ) -> None:
        courier, tag = plan.courier, plan.courier.file_tag
        storage = self.storage(courier.storage)
        files = [
            WindowFile(storage.uri(f.key), f.key, f.info.size, i) for i, f in enumerate(to_load)
        ]
        uris = [engine.file_uri(courier.storage, storage, f.key) for f in to_load]
        self.console.status(f"{courier.name}: the cluster reads {len(files)} file(s)")
        pinned = ws.state.pinned_schema(courier.name, tag)
        options = courier.options.model_dump()

        def heads(f: WindowFile, nbytes: int) -> bytes:  # the schema sample: ranged reads
            return storage.read_head(f.key, nbytes)

        rows, summary, bad_count = runner.read(
            tag, files, uris, pinned, courier.format, options, heads
        )
        bad.extend(summary.bad)
        record.schema_changes = summary.schema_changes if pinned is not None else []
        check_bad_records(courier, summary, bad_count)
        if bad_count > len(summary.bad):
            record.warnings.append(
                f"{bad_count} bad line(s); the first {len(summary.bad)} are in courier.quarantine"
            )
        jobs = [
            runner.prepare(courier, fl, rows, files, path, plan.run_id, plan.started_at,
                           summary.schema)
            for fl, path in zip(plan.loads, targets, strict=True)
        ]  # fmt: skip
        if resume is None:  # a killed run rolled forward has its plan saved already
            ws.state.save_plan(plan.run_id, tag, to_load, courier.name, None)
        feeds: dict[str, FeedCounts] = {}
        rejected: dict[str, list[BadRecord]] = {}
        for job in jobs:
            feed = job.load.feed
            self.console.status(f"{courier.name}: the cluster writes {feed.id}")
            if resume is None or feed.id not in resume.committed:
                # new feed columns first: the cluster's MERGE does not evolve the schema
                delta: Any = ws.destination_for(feed)  # a Delta destination (refused else)
                delta.table(feed).add_columns()
                runner.write(job)
            feeds.setdefault(feed.id, FeedCounts()).add(job.counts)
            rejected.setdefault(feed.id, []).extend(job.rejected)
            if job.ignored:
                record.warnings.append(
                    f"feed {feed.id}: column(s) not in feeds/{feed.id}.toml, "
                    f"{'rejected' if feed.unknown_columns == 'reject' else 'ignored'}: "
                    f"{', '.join(job.ignored)} (add them to the feed's [fields] to load them)"
                )
        record.status = "succeeded"
        record.feeds = {k: v.as_dict() for k, v in feeds.items()}
        record.files_loaded = len(to_load)
        record.bytes = sum(f.info.size for f in to_load)
        record.records = summary.records
        record.quarantined = bad_count + sum(c.rejected for c in feeds.values())
        if resume is not None:  # files the committed feeds loaded as they were
            to_load = to_load + resume.changed
        self.console.status(f"{courier.name}: recording the run")
        ws.state.begin()
        for feed_id, rows_out in rejected.items():
            ws.state.quarantine(plan.run_id, courier.name, feed_id, rows_out)
        self._commit_state(ws, plan, record, bad, tag, to_load, summary.schema)
        ws.state.commit()

    def _read_and_load(
        self,
        ws: Workspace,
        plan: RunPlan,
        record: RunRecord,
        bad: list[BadRecord],
        to_load: list[PlannedFile],
        checksums: list[Future[str | None]],
        held: list[Rows],
        resume: RollForward | None = None,
    ) -> None:
        courier = plan.courier
        storage = self.storage(courier.storage)
        engine = ws.engine_for(courier)
        files = [
            WindowFile(storage.uri(f.key), f.key, f.info.size, i) for i, f in enumerate(to_load)
        ]
        self.console.status(
            f"{courier.name}: reading {len(files)} file(s), {sum(f.size for f in files)} bytes"
        )
        tag = courier.file_tag
        options = courier.options.model_dump()
        pinned = ws.state.pinned_schema(courier.name, tag)
        # One saved query and nothing else reads the tag: it may stream from the files.
        read_once = len(plan.loads) == 1 and plan.loads[0].operation.type == "sql"
        source, summary = engine.read_input(
            tag, files, storage, courier.format, options, pinned, read_once=read_once
        )
        bad.extend(summary.bad)
        record.schema_changes = summary.schema_changes if pinned is not None else []
        for change in record.schema_changes:
            self.console.warn(f"{courier.name}: {change}")
        check_bad_records(courier, summary)
        # A streamed tag's query runs before the load begins: should a value need the tag
        # read again (engines/duckdb.py), the failed statement has not aborted the run.
        queried = None
        if read_once:
            assert plan.loads[0].query is not None
            queried = engine.run_query(plan.loads[0].query, [tag], plan.loads[0].feed.fields)
            if len(summary.bad) > len(bad):  # records found when the tag was read again
                bad.extend(summary.bad[len(bad) :])
                check_bad_records(courier, summary)
        destinations = self._destinations(ws, plan)
        one_transaction = all(ws.one_transaction(d) for d in destinations)
        sequence, committed = None, frozenset[str]()
        if resume is not None:  # a killed run rolled forward: its plan is saved already
            sequence, committed = resume.sequence, resume.committed
        elif not one_transaction:  # recovery needs the files if the run dies between commits
            sequence = self._next_sequence(ws, plan, destinations)
            ws.state.save_plan(plan.run_id, tag, to_load, courier.name, sequence)
        ctx = LoadContext(plan.run_id, courier.name, plan.started_at, ws.state, sequence, committed)
        for destination in destinations:
            destination.begin(ctx)
        counted: list[tuple[str, FeedCounts]] = []  # summed after the commits (see below)
        rejected = 0
        for feed_load in plan.loads:
            feed = feed_load.feed
            record.warnings.extend(ws.destination_for(feed).ensure_table(feed))
        for feed_load in plan.loads:
            feed, op = feed_load.feed, feed_load.operation
            self.console.status(f"{courier.name}: loading {feed.id}")
            rows = source
            if queried is not None:
                rows = queried
            elif op.type == "sql":
                assert feed_load.query is not None
                rows = engine.run_query(feed_load.query, [tag], feed.fields)
            mode: TLoadMode = "truncateAndLoad" if feed_load.truncate_first else "load"
            loaded = ws.destination_for(feed).load(feed, rows, mode)
            if rows is not source:
                if loaded.holds_rows:  # read again at the destination's commit
                    held.append(rows)
                else:
                    engine.drop(rows)
            if loaded.ignored_columns:
                action = "rejected" if feed.unknown_columns == "reject" else "ignored"
                origin = f"query {op.sql_query!r}" if op.type == "sql" else f"file tag {tag!r}"
                record.warnings.append(
                    f"feed {feed.id}: column(s) from {origin} not in feeds/{feed.id}.toml, "
                    f"{action}: {', '.join(loaded.ignored_columns)} (add them to the feed's "
                    "[fields] to load them)"
                )
            counted.append((feed.id, loaded.counts))
            rejected += loaded.counts.rejected
        record.status = "succeeded"
        record.feeds = sum_counts(counted)
        record.files_loaded = len(to_load)
        record.bytes = sum(f.info.size for f in to_load)
        record.records = summary.records
        record.quarantined = len(bad) + rejected
        to_load = [replace(f, checksum=c.result()) for f, c in zip(to_load, checksums, strict=True)]
        if one_transaction:  # state rides in the destination's transaction: one COMMIT
            self._commit_state(ws, plan, record, bad, tag, to_load, summary.schema)
            for destination in destinations:
                destination.commit(plan.run_id)
            return
        for destination in destinations:
            if committed.issuperset(self._feed_ids(ws, plan, destination)):
                destination.abort()  # rolled forward: every feed here holds the run already
            else:
                destination.commit(plan.run_id)
        # a destination may count at its commit what the rows replaced (Delta MERGE's metrics)
        record.feeds = sum_counts(counted)
        if resume is not None:  # files the killed run's committed feeds loaded as they were
            to_load = to_load + resume.changed
        ws.state.begin()
        self._commit_state(ws, plan, record, bad, tag, to_load, summary.schema)
        ws.state.commit()

    def _feed_ids(self, ws: Workspace, plan: RunPlan, destination: FeedDestination) -> list[str]:
        """The run's feeds kept by `destination`, in load order."""
        out: dict[str, None] = {}
        for feed_load in plan.loads:
            if ws.destination_for(feed_load.feed) is destination:
                out.setdefault(feed_load.feed.id, None)
        return list(out)

    def _next_sequence(
        self, ws: Workspace, plan: RunPlan, destinations: list[FeedDestination]
    ) -> int:
        """The run's place in its courier's run sequence: one more than the state's and than
        any its tables hold (the caller holds the courier's lease: the state database)."""
        name = plan.courier.name
        last = ws.state.last_sequence(name)
        for destination in destinations:
            last = max(last, destination.last_sequence(name, self._feed_ids(ws, plan, destination)))
        return last + 1

    def _commit_state(
        self,
        ws: Workspace,
        plan: RunPlan,
        record: RunRecord,
        bad: list[BadRecord],
        tag: str,
        to_load: list[PlannedFile],
        schema: dict[str, str],
    ) -> None:
        ws.state.quarantine(plan.run_id, plan.courier.name, None, bad)
        ws.state.record_files(plan.run_id, plan.courier.name, tag, to_load, plan.started_at)
        ws.state.pin_schema(plan.courier.name, tag, schema, plan.run_id)
        record.finished_at = datetime.now(UTC)
        ws.state.finish_run(record)

    def recover(self, ws: Workspace, courier: str) -> None:
        """Runs left 'running' by a process that died (kill -9, power loss). Feeds commit apart
        from state (Delta) and one by one, so each feed is asked whether it holds the run:
        none, the run failed (its files load again); all, it is rolled forward (its files
        recorded as loaded); some, the rest are committed from the same files under the same
        run id and sequence, then its files are recorded. RunError when that fails: the
        courier loads nothing more until it can be rolled forward."""
        host = socket.gethostname()
        for run in ws.state.runs(courier, limit=50):
            if run.status != "running":
                continue
            if run.host == host and run.pid and pid_alive(int(run.pid)):
                continue
            saved = ws.state.saved_plan(run.run_id)
            config = self.project.couriers.get(run.courier)
            wanted, done = self._committed_feeds(ws, run) if config is not None else ([], set())
            if saved is None or not done:
                run.status = "failed"
                run.error = (
                    "interrupted: the process ended before the run finished; "
                    "nothing of it was committed"
                )
                ws.state.finish_run(run)
                continue
            tag, files = saved
            if done.issuperset(wanted):
                ws.state.begin()
                ws.state.record_files(run.run_id, run.courier, tag, files, datetime.now(UTC))
                run.status = "succeeded"
                run.files_loaded = len(files)
                run.warnings = [
                    *run.warnings,
                    "rolled forward: the process ended after the "
                    "feeds committed; its files are now recorded as loaded",
                ]
                run.finished_at = datetime.now(UTC)
                ws.state.finish_run(run)
                ws.state.commit()
                continue
            self._roll_forward(ws, run, tag, files, wanted, done)

    def _committed_feeds(self, ws: Workspace, run: RunRecord) -> tuple[list[str], set[str]]:
        """(the courier's feeds, those holding run `run`'s commit), asked per destination."""
        courier = self.project.courier(run.courier)
        plan = RunPlan(run.run_id, courier, _run_window(run), [], self._loads(courier), NOW0)
        engine: Any = ws.engine_for(courier)
        if getattr(engine, "cluster", False):  # Spark-written tables: their rows carry the run id
            with suppress(Exception):  # the killed run's scratch Parquet; else the next run's
                self._scratch(ws, engine, plan).clear()
            runner = engine.runner()
            tables = {
                fl.feed.id: engine.table_uri(ws.destination_for(fl.feed), fl.feed.id)
                for fl in plan.loads
            }
            return list(tables), {
                f for f, path in tables.items() if runner.committed([path], run.run_id)
            }
        wanted: list[str] = []
        done: set[str] = set()
        for destination in self._destinations(ws, plan):
            feeds = self._feed_ids(ws, plan, destination)
            wanted.extend(feeds)
            done |= destination.committed_feeds(run.run_id, feeds)
        return wanted, done

    def _roll_forward(
        self,
        ws: Workspace,
        run: RunRecord,
        tag: str,
        files: list[PlannedFile],
        wanted: list[str],
        done: set[str],
    ) -> None:
        """Commit the feeds a killed run did not, from the files its plan saved (re-read, same
        run id and sequence), then record its files as loaded."""
        courier = self.courier_for_run(run.courier)
        storage = self.storage(courier.storage)
        same: list[PlannedFile] = []
        changed: list[PlannedFile] = []
        for f in files:  # a file replaced since cannot give the rest of the feeds its rows
            try:
                info = storage.stat(f.key)
            except FileNotFoundError:
                changed.append(f)
                continue
            fits = info.size == f.info.size and info.version == f.info.version
            (same if fits else changed).append(f)
        missing = [f for f in wanted if f not in done]
        note = (
            f"rolled forward: the process ended after feed(s) {', '.join(sorted(done))} "
            f"committed; {', '.join(missing)} committed now from the same files under this run id"
        )
        if changed:
            note += (
                f"; {len(changed)} file(s) changed or vanished since and could not be read "
                f"again for {', '.join(missing)} (first: {changed[0].key}); they count as "
                "loaded in the version the committed feeds hold"
            )
        sequence = ws.state.plan_sequence(run.run_id)
        plan = RunPlan(
            run.run_id, courier, _run_window(run), same, self._loads(courier),
            _as_datetime(run.started_at), False, run.trigger or "manual",
        )  # fmt: skip
        self.console.status(f"{courier.name}: rolling run {run.run_id} forward")
        bad: list[BadRecord] = []
        run.warnings = [*run.warnings, note]
        try:
            if same:
                self._execute(ws, plan, run, bad, RollForward(sequence, frozenset(done), changed))
            else:
                ws.state.begin()
                ws.state.record_files(run.run_id, run.courier, tag, changed, datetime.now(UTC))
                run.status = "succeeded"
                run.finished_at = datetime.now(UTC)
                ws.state.finish_run(run)
                ws.state.commit()
        except Exception as exc:
            for destination in self._destinations(ws, plan):
                destination.abort()
            ws.state.rollback()
            reason = str(exc) if isinstance(exc, CourierError) else repr(exc)
            if not isinstance(exc, CourierError):
                log.exception("rolling run %s forward failed", run.run_id)
            raise RunError(
                f"run {run.run_id} of courier {courier.name} ended after feed(s) "
                f"{', '.join(sorted(done))} committed, and committing {', '.join(missing)} "
                f"from its files failed: {reason}. Nothing more is loaded for courier "
                f"{courier.name} until that run is rolled forward: fix the cause and run the "
                "courier again (feeds that hold the run are never loaded twice)"
            ) from exc
        if run.quarantined:
            run.quarantine_file = str(self._quarantine_file(ws, plan))
        self.console.warn(f"{courier.name}: {note}")

    # -- records ---------------------------------------------------------------------------
    def _record(self, plan: RunPlan, group: tuple[str, str] | None) -> RunRecord:
        skipped = [f for f in plan.files if f.already_loaded and not plan.reload]
        return RunRecord.for_window(
            plan.run_id,
            plan.courier.name,
            plan.window,
            plan.started_at,
            trigger=plan.trigger,
            group=group[0] if group else None,
            group_run_id=group[1] if group else None,
            files_found=len(plan.files),
            files_skipped=len(skipped),
            reload=plan.reload,
            host=socket.gethostname(),
            pid=os.getpid(),
        )

    def _record_failure(
        self,
        ws: Workspace,
        courier: CourierConfig,
        window: Window,
        now: datetime,
        clock: float,
        exc: CourierError,
        opts: RunOptions,
    ) -> dict[str, Any]:
        record = self.failed_record(courier, window, now, exc, opts.trigger, opts.group, clock)
        record.finished_at = datetime.now(UTC)
        ws.state.start_run(record)
        return record.to_json()

    def failed_result(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """A run that failed before it began, in the `--json` shape (recorded by the caller
        when it can be: not when the feed database itself could not be opened); the arguments
        of failed_record."""
        return self.failed_record(*args, **kwargs).to_json()

    def failed_record(
        self,
        courier: CourierConfig,
        window: Window,
        now: datetime,
        exc: CourierError,
        trigger: str = "manual",
        group: tuple[str, str] | None = None,
        clock: float | None = None,
    ) -> RunRecord:
        plan = RunPlan(
            f"{now:%Y%m%dT%H%M%S}-{courier.name}-{uuid.uuid4().hex[:6]}",
            courier, window, [], [], now, False, trigger,
        )  # fmt: skip
        record = self._record(plan, group)
        record.status = "failed"
        record.error = str(exc)
        record.duration_s = round(time.monotonic() - (clock or time.monotonic()), 3)
        return record

    def runs(
        self,
        courier: str | None = None,
        limit: int = 20,
        group: str | None = None,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        if courier is not None:
            self.project.courier(courier)  # a clear error for a courier that does not exist
        with self.workspace() as ws:
            found = ws.state.runs(courier, limit, group, status=status)
            return [run.to_json(listing=True) for run in found]

    def run_detail(self, run_id: str) -> dict[str, Any]:
        """One run in the `courier run --json` shape, with the files it loaded and its first
        quarantined records (`courier runs show`)."""
        with self.workspace() as ws:
            row = ws.state.run(run_id)
            if row is None:
                raise unknown_run(ws.state, run_id)
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
            detail["reload"] = row.reload
            detail["host"], detail["pid"] = row.host, row.pid
            return detail

    def quarantined(
        self, courier: str | None = None, run_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """courier.quarantine rows: run, courier, feed, file, line, reason, raw."""
        if courier is not None:
            self.project.courier(courier)
        with self.workspace() as ws:
            rows = ws.state.quarantined(courier, run_id, limit)
            if not rows and run_id is not None and ws.state.run(run_id) is None:
                raise unknown_run(ws.state, run_id)  # not "no records" for a mistyped id
        for r in rows:
            r["quarantined_at"] = iso_utc(r["quarantined_at"]) if r["quarantined_at"] else None
        return rows


def unknown_run(state: Any, run_id: str) -> RunError:
    recent = ", ".join(r.run_id for r in state.runs(limit=3)) or "none yet"
    return RunError(
        f"no run {run_id!r} in courier.runs (newest: {recent}); `courier runs` lists them"
    )


@dataclass(frozen=True)
class RollForward:
    """A killed run loaded again to commit the feeds it did not (Context.recover)."""

    sequence: int | None  # the run's sequence, as saved with its plan
    committed: frozenset[str]  # feeds that hold the run already
    changed: list[PlannedFile]  # saved files replaced since: recorded, not read again


NOW0 = datetime(1970, 1, 1, tzinfo=UTC)  # a plan's start time where none matters


def _as_datetime(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _run_window(run: RunRecord) -> Window:
    return Window(_as_datetime(run.window_start), _as_datetime(run.window_end))


def sum_counts(counted: list[tuple[str, FeedCounts]]) -> dict[str, dict[str, int]]:
    """Per feed, the sum of its loads' counts."""
    feeds: dict[str, FeedCounts] = {}
    for feed_id, counts in counted:
        feeds.setdefault(feed_id, FeedCounts()).add(counts)
    return {k: v.as_dict() for k, v in feeds.items()}


def check_bad_records(
    courier: CourierConfig, summary: InputSummary, count: int | None = None
) -> None:
    """Fail the run when its bad records exceed options.max_bad_records (count or fraction).
    count: how many there were when summary.bad holds only the first of them."""
    bad = len(summary.bad) if count is None else count
    total = summary.records + bad
    limit = courier.options.max_bad_records
    allowed = limit * total if 0 < limit < 1 else limit
    if bad > allowed:
        first = summary.bad[0]
        raise RunError(
            f"{bad} bad record(s) in {total} exceed max_bad_records = {limit:g} "
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


def run_record(run: RunRecord | dict[str, Any]) -> dict[str, Any]:
    """A courier.runs row (or record) in the `courier runs --json` shape."""
    if isinstance(run, dict):
        run = RunRecord.from_row(run)
    return run.to_json(listing=True)
