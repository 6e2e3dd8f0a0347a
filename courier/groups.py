"""Courier groups (SPEC 1.3 and 3): schedules, scheduled windows, catch-up, group runs.

The arithmetic is pure: every function takes the time `at` it is about. A run of a group at
`T` gives each of its couriers the window `[T - O - R, T - O)` (O: the courier's offset, R: its
range, by default the schedule period) and loads the courier's partitions whose start falls
inside it.

Time zones: schedules are read in the group's `time_zone` (else the project's), and so are the
file dates of its couriers unless `file_dates_in_time_zone = false`. Whole days of an offset or
range (`24h`, `1d`, `48h`) are calendar days in that zone, the rest is elapsed time; the default
range is the time between the previous fire time and T. So a daily group keeps loading whole
days across DST changes (23- and 25-hour days) and consecutive runs tile time with neither gap
nor overlap, while an hourly group moves by real hours.

`GroupRunner` does the work of one group run: couriers in parallel (bounded), each waits for its
files, then runs through `Context.run`; earlier windows that failed are retried first; alerts go
to the sinks; leases in the state store keep two processes from running one window twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from courier.alerts import Alert, Alerter
from courier.config.models import GroupConfig, GroupCourier, parse_duration_seconds
from courier.errors import ConfigError, CourierError, TransientError
from courier.patterns import FilePattern
from courier.processes import pid_alive
from courier.project import Project
from courier.windows import Partition, Window, iso_utc

if TYPE_CHECKING:
    from courier.context import Context
    from courier.state.base import StateStore

log = logging.getLogger("courier.groups")

DAY = 86400
WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
RETRY_HORIZON = timedelta(days=7)  # failed windows older than this are left to `courier run`
LEASE_TTL = timedelta(hours=6)  # only for holders on another host (same host: pid liveness)
OK_STATUSES = {"succeeded", "skipped"}


# -- cron ------------------------------------------------------------------------------------


def crontab_weekdays(text: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday, names allowed) as APScheduler names.

    APScheduler 3 counts 0 as Monday; cron counts 0 as Sunday. Spelling the days out avoids
    the mismatch."""
    if text in ("*", "?"):
        return "*"

    def day(token: str) -> int:
        if token.isdigit() and 0 <= int(token) <= 7:
            return int(token)
        name = token.lower()[:3]
        if name in WEEKDAYS and token.isalpha():
            return WEEKDAYS.index(name)
        raise ValueError(f"day of week {token!r}: use 0-7 (0 and 7 are Sunday) or sun..sat")

    days: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        if step_text and not step_text.isdigit():
            raise ValueError(f"step {step_text!r} in day of week {part!r} must be a number")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"step in day of week {part!r} must be at least 1")
        if base in ("*", "?"):
            lo, hi = 0, 6
        elif "-" in base:
            a, b = base.split("-", 1)
            lo, hi = day(a), day(b)
            if hi < lo:
                raise ValueError(f"day-of-week range {base!r} runs backwards")
        else:
            lo = day(base)
            hi = 6 if step_text else lo
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(WEEKDAYS[d] for d in sorted(days))


def parse_cron(expr: str, tz: ZoneInfo) -> CronTrigger:
    """Standard cron `minute hour day month weekday` (or six fields, seconds first, or a macro
    like @hourly) as an APScheduler trigger in zone tz. ValueError says what is wrong."""
    text = MACROS.get(expr.strip().lower(), expr.strip())
    fields = text.split()
    if len(fields) == 5:
        second, (minute, hour, day, month, weekday) = "0", fields
    elif len(fields) == 6:
        second, minute, hour, day, month, weekday = fields
    else:
        raise ValueError(
            f"expected 5 fields 'minute hour day month weekday' (e.g. '0 6 * * *'), "
            f"got {len(fields)}"
        )
    if day not in ("*", "?") and weekday not in ("*", "?"):
        raise ValueError(
            "both day of month and day of week are restricted, which cron reads as either/or; "
            "restrict only one of them (use two groups for both)"
        )
    values = {
        "second": second,
        "minute": minute,
        "hour": hour,
        "day": day,
        "month": month,
        "day_of_week": crontab_weekdays(weekday),
    }
    for name, value in values.items():
        try:
            CronTrigger(timezone=tz, **{name: value})
        except ValueError as exc:
            shown = weekday if name == "day_of_week" else value
            raise ValueError(f"{name.replace('_', ' ')} field {shown!r}: {exc}") from None
    return CronTrigger(timezone=tz, **values)


@dataclass(frozen=True)
class Schedule:
    """A group's cron schedule in its zone. Fire times are aware UTC datetimes."""

    expr: str
    tz: ZoneInfo
    trigger: CronTrigger = field(compare=False, repr=False)

    @classmethod
    def parse(cls, expr: str, tz: ZoneInfo) -> Schedule:
        return cls(expr, tz, parse_cron(expr, tz))

    def next_after(self, t: datetime) -> datetime | None:
        """The first fire time strictly after t."""
        nxt = self.trigger.get_next_fire_time(None, t + timedelta(microseconds=1))
        return nxt.astimezone(UTC) if nxt is not None else None

    def fires(self, after: datetime, until: datetime, limit: int = 10_000) -> list[datetime]:
        """Fire times f with after < f <= until, oldest first (at most `limit`)."""
        out: list[datetime] = []
        t = self.next_after(after)
        while t is not None and t <= until and len(out) < limit:
            out.append(t)
            t = self.next_after(t)
        return out

    def latest(self, t: datetime) -> datetime | None:
        """The newest fire time at or before t."""
        for span in (
            timedelta(minutes=2),
            timedelta(hours=2),
            timedelta(days=2),
            timedelta(days=35),
            timedelta(days=400),
            timedelta(days=3000),
        ):
            found = self.fires(t - span, t)
            if found:
                return found[-1]
        return None

    def previous(self, t: datetime) -> datetime | None:
        """The newest fire time strictly before t."""
        return self.latest(t - timedelta(microseconds=1))


# -- durations and windows -------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """A duration split into calendar days and elapsed seconds."""

    days: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> Span:
        total = parse_duration_seconds(text)
        return cls(total // DAY, total % DAY)

    def before(self, t: datetime, tz: ZoneInfo) -> datetime:
        """t minus this span: whole days on the wall clock of tz, then the rest in real time."""
        out = t.astimezone(UTC)
        if self.days:
            wall = t.astimezone(tz).replace(tzinfo=None) - timedelta(days=self.days)
            out = wall.replace(tzinfo=tz).astimezone(UTC)
        return out - timedelta(seconds=self.seconds)


def group_zone(project: Project, group: GroupConfig) -> ZoneInfo:
    """The zone of a group's schedule."""
    return ZoneInfo(group.time_zone or project.settings.project.time_zone)


def file_zone(project: Project, group: GroupConfig) -> ZoneInfo:
    """The zone in which the group's couriers read file dates."""
    return group_zone(project, group) if group.file_dates_in_time_zone else project.time_zone


def schedule_of(project: Project, group: GroupConfig) -> Schedule:
    return Schedule.parse(group.schedule, group_zone(project, group))


def scheduled_window(
    schedule: Schedule, member: GroupCourier, at: datetime, tz: ZoneInfo
) -> Window | None:
    """SPEC 3: the window [T - O - R, T - O) of a run at T; None when it is empty."""
    at = at.astimezone(UTC)
    offset = Span.parse(member.offset)
    end = offset.before(at, tz)
    if member.range:
        start = Span.parse(member.range).before(end, tz)
    else:
        fire = schedule.latest(at)
        prev = schedule.previous(fire) if fire is not None else None
        if fire is None or prev is None:
            return None
        period_start = prev if fire == at else at - (fire - prev)
        start = offset.before(period_start, tz)
    if end <= start:
        return None
    return Window(start, end)


def duration(text: str | None) -> timedelta | None:
    return timedelta(seconds=parse_duration_seconds(text)) if text else None


@dataclass(frozen=True)
class MemberPlan:
    """What one courier of a group does in a run at `at` (plain data)."""

    group: str
    courier: str
    at: datetime
    window: Window | None
    partitions: tuple[Partition, ...]
    member: GroupCourier
    file_zone: ZoneInfo

    @property
    def wait(self) -> timedelta:
        return duration(self.member.wait) or timedelta(0)

    @property
    def alert_after(self) -> timedelta | None:
        return duration(self.member.alert_after)

    def as_dict(self) -> dict[str, Any]:
        return {
            "courier": self.courier,
            "window": self.window.as_dict() if self.window else None,
            "partitions": [iso_utc(p.start) for p in self.partitions],
            "offset": self.member.offset,
            "range": self.member.range,
            "wait": self.member.wait,
            "required": self.member.required,
            "lookback": self.member.lookback,
        }


def member_lookback(project: Project, member: GroupCourier) -> timedelta | None:
    """The group courier's lookback, else the courier's own."""
    courier = project.courier(member.name)
    return duration(member.lookback or courier.lookback)


def plan_group(project: Project, group_name: str, at: datetime) -> list[MemberPlan]:
    """Each courier's window and partitions for a run of the group at `at`. Pure."""
    from courier.context import Context

    group = get_group(project, group_name)
    schedule = schedule_of(project, group)
    zone = file_zone(project, group)
    plans = []
    for member in group.couriers:
        window = scheduled_window(schedule, member, at, zone)
        ctx = Context(member_project(project, group, member))
        grain = ctx.grain(ctx.project.courier(member.name))
        partitions = tuple(grain.partitions(window)) if window else ()
        plans.append(
            MemberPlan(
                group.name, member.name, at.astimezone(UTC), window, partitions, member, zone
            )
        )
    return plans


def get_group(project: Project, name: str) -> GroupConfig:
    if name not in project.groups:
        known = ", ".join(sorted(project.groups)) or "none"
        raise ConfigError(
            f"no group named {name!r} (known: {known}); add config/groups/{name}.toml"
        )
    return project.groups[name]


def member_project(project: Project, group: GroupConfig, member: GroupCourier) -> Project:
    """The project as this group courier sees it: file dates in the group's zone, and the
    member's `required` in place of the courier's. A copy; the project is not changed."""
    courier = project.courier(member.name)
    zone = file_zone(project, group).key
    settings = project.settings
    if zone != settings.project.time_zone:
        section = settings.project.model_copy(update={"time_zone": zone})
        settings = settings.model_copy(update={"project": section})
    if courier.required != member.required:
        courier = courier.model_copy(update={"required": member.required})
    couriers = {**project.couriers, member.name: courier}
    return dataclasses.replace(project, settings=settings, couriers=couriers)


# -- catch-up and ordering (pure) ------------------------------------------------------------


def due_times(
    schedule: Schedule,
    catch_up: str,
    last_done: datetime | None,
    started: datetime,
    now: datetime,
    unfinished: Iterable[datetime] = (),
) -> list[datetime]:
    """Fire times a scheduler started at `started` runs at `now`, oldest first.

    last_done: the newest scheduled time whose run finished (None: this group never ran, so
    nothing was missed). Fire times up to `started` were missed while down: catch_up `all`
    runs each of them, `latest` only the newest, `none` none. `unfinished`: scheduled times
    whose run was interrupted (kill -9) or abandoned; they run again whatever catch_up says."""
    missed: list[datetime] = []
    if last_done is not None and last_done < started:
        missed = schedule.fires(last_done, started)
        if catch_up == "latest":
            missed = missed[-1:]
        elif catch_up == "none":
            missed = []
    again = {u for u in unfinished if (last_done is None or u > last_done) and u <= started}
    live_from = started if last_done is None or last_done < started else last_done
    return sorted(set(missed) | again) + schedule.fires(live_from, now)


def scheduled_progress(state: StateStore, group: str) -> tuple[datetime | None, list[datetime]]:
    """(newest finished scheduled time, scheduled times whose run never finished)."""
    unfinished = [
        r["scheduled_at"]
        for r in state.group_runs(group, 50, trigger="scheduled")
        if r["status"] in ("interrupted", "abandoned")
    ]
    return state.last_scheduled_run(group), unfinished


def run_after_order(groups: dict[str, GroupConfig]) -> list[str]:
    """Group names with every group after the groups it runs after (cycles ignored here:
    validation reports them)."""
    out: list[str] = []
    seen: set[str] = set()

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in seen or name in stack or name not in groups:
            return
        for dep in groups[name].run_after:
            visit(dep, (*stack, name))
        seen.add(name)
        out.append(name)

    for name in sorted(groups):
        visit(name, ())
    return out


def is_ready(
    item: tuple[datetime, str],
    waiting: Iterable[tuple[datetime, str]],
    running: Iterable[tuple[datetime, str]],
    groups: dict[str, GroupConfig],
) -> bool:
    """A queued (time, group) may start when its group is not running, no earlier run of its
    group waits, and no group it runs after has a run at or before its time waiting or
    running."""
    at, name = item
    deps = set(groups[name].run_after) if name in groups else set()
    for other_at, other in running:
        if other == name or (other in deps and other_at <= at):
            return False
    for other_at, other in waiting:
        if (other_at, other) == item:
            continue
        if other == name and other_at < at:
            return False
        if other in deps and other_at <= at:
            return False
    return True


# -- validation (called by courier.validate) -------------------------------------------------


def check_groups(project: Project) -> list[ConfigError]:
    """Invalid cron, unknown time zone, unknown run_after group, run_after cycles."""
    errors: list[ConfigError] = []
    for name, group in project.groups.items():
        path = project.files.get(f"config/groups:{name}")
        zone: ZoneInfo | None = None
        try:
            zone = ZoneInfo(group.time_zone or project.settings.project.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            if group.time_zone:
                errors.append(
                    ConfigError(
                        f"unknown time zone {group.time_zone!r}: use an IANA name like 'UTC' "
                        "or 'Europe/Berlin'",
                        path,
                        "time_zone",
                    )
                )
        try:
            parse_cron(group.schedule, zone or ZoneInfo("UTC"))
        except ValueError as exc:
            errors.append(
                ConfigError(
                    f"invalid cron schedule {group.schedule!r}: {exc}. Use 'minute hour day "
                    "month weekday', e.g. '0 6 * * *' (daily 06:00) or '5 * * * *' (hourly)",
                    path,
                    "schedule",
                )
            )
        for i, dep in enumerate(group.run_after):
            if dep == name:
                errors.append(
                    ConfigError("a group cannot run after itself", path, f"run_after[{i}]")
                )
            elif dep not in project.groups:
                known = ", ".join(sorted(g for g in project.groups if g != name)) or "none"
                errors.append(
                    ConfigError(
                        f"group {dep!r} is not defined (groups: {known}); add "
                        f"config/groups/{dep}.toml or remove it from run_after",
                        path,
                        f"run_after[{i}]",
                    )
                )
    for cycle in run_after_cycles(project.groups):
        first = cycle[0]
        errors.append(
            ConfigError(
                f"run_after makes a cycle: {' -> '.join([*cycle, first])}; no group of it could "
                "ever start. Remove one of these run_after entries",
                project.files.get(f"config/groups:{first}"),
                "run_after",
            )
        )
    return errors


def run_after_cycles(groups: dict[str, GroupConfig]) -> list[list[str]]:
    """Each cycle once, rotated to start at its smallest name."""
    cycles: set[tuple[str, ...]] = set()

    def walk(name: str, path: list[str]) -> None:
        for dep in groups[name].run_after:
            if dep == name or dep not in groups:
                continue
            if dep in path:
                cycle = path[path.index(dep) :]
                k = cycle.index(min(cycle))
                cycles.add(tuple(cycle[k:] + cycle[:k]))
            else:
                walk(dep, [*path, dep])

    for name in sorted(groups):
        walk(name, [name])
    return [list(c) for c in sorted(cycles)]


# -- running a group ---------------------------------------------------------------------------


class Stopped(CourierError):
    """The scheduler is stopping: the group run is abandoned (nothing half-done is kept)."""


def holder_alive(row: dict[str, Any], now: datetime) -> bool:
    """A lease (or run) holder is alive: same host, its pid lives; other host, not expired."""
    if row.get("host") == socket.gethostname():
        return bool(row.get("pid")) and pid_alive(int(row["pid"]))
    expires = row.get("expires_at")
    return expires is not None and expires > now


def take_lease(state: StateStore, scope: str, holder: str, now: datetime) -> dict[str, Any] | None:
    """Take the lease of scope for holder; None when taken, else the live holder's row."""
    row = state.get_lease(scope)
    if row and row["holder"] != holder and holder_alive(row, now):
        return row
    state.put_lease(
        {
            "scope": scope,
            "holder": holder,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "acquired_at": now,
            "expires_at": now + LEASE_TTL,
        }
    )
    return None


class Keeper:
    """Keeps one connection to the feed database open while any thread of this process works
    in it, and opens/closes it under a lock.

    DuckDB shares one database instance between the connections of a process, created by the
    first connect and torn down by the last close; a connect racing a create or a teardown in
    another thread fails ("Unique file handle conflict"). With the keeper open, couriers
    running in parallel threads only ever attach to a live instance. Between runs nothing is
    held, so another process can take its turn."""

    def __init__(self, context: Context):
        self.context = context
        self.lock = threading.Lock()
        self.count = 0
        self.workspace: Any = None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self.lock:
            if self.count == 0:
                self.workspace = self.context.workspace()  # TransientError: another process
            self.count += 1
        try:
            yield
        finally:
            with self.lock:
                self.count -= 1
                if self.count == 0:
                    self.workspace.close()
                    self.workspace = None


_KEEPERS: dict[str, Keeper] = {}
_KEEPERS_LOCK = threading.Lock()


def keeper(context: Context) -> Keeper:
    """The process's keeper of the context's feed database."""
    project = context.project
    path = str(project.path(project.settings.feeds.database).resolve())
    with _KEEPERS_LOCK:
        return _KEEPERS.setdefault(path, Keeper(context))


class GroupRunner:
    """Runs groups: what `courier group run` and each scheduler tick call.

    sleep/clock/now are parameters so tests can drive waits without waiting; `stop` ends
    waits early (the scheduler sets it on SIGTERM)."""

    def __init__(
        self,
        context: Context,
        *,
        alerter: Alerter | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        stop: threading.Event | None = None,
        poll_seconds: float = 60.0,
        lock_timeout: float | None = None,
        wait: bool = True,
    ):
        self.context = context
        self.wait = wait  # False: do not poll for missing files (`group run --no-wait`)
        self.project = context.project
        self.alerter = alerter or Alerter.for_settings(self.project.settings.alerts)
        self.stop = stop or threading.Event()
        self.sleep = sleep or self._sleep
        self.clock = clock
        self.now = now
        self.poll_seconds = poll_seconds
        self.lock_timeout = lock_timeout
        self.host = socket.gethostname()
        self.holder = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lease_lock = threading.Lock()
        self._held: set[str] = set()
        self._feed_locks: dict[str, threading.Lock] = {}

    # -- plumbing ----------------------------------------------------------------------------
    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(max(0.0, seconds)):
            raise Stopped("the scheduler is stopping")

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise Stopped("the scheduler is stopping")

    def with_state(self, fn: Callable[[StateStore], Any]) -> Any:
        """Run fn on the state store, waiting while another process holds the database."""
        deadline = None if self.lock_timeout is None else self.clock() + self.lock_timeout
        delay = 0.2
        while True:
            try:
                with keeper(self.context).hold(), self.context.workspace() as ws:
                    return fn(ws.state)
            except TransientError as exc:
                if deadline is not None and self.clock() >= deadline:
                    raise
                log.info("waiting for the feed database: %s", exc)
                self.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _feed_lock(self, feed: str) -> threading.Lock:
        with self._lease_lock:
            return self._feed_locks.setdefault(feed, threading.Lock())

    # -- leases ------------------------------------------------------------------------------
    def claim(self, scope: str) -> dict[str, Any] | None:
        """Take the lease of scope; return None when taken, else the live holder's row."""
        with self._lease_lock:
            if scope in self._held:
                return {"scope": scope, "host": self.host, "pid": os.getpid()}
            now = self.now()
            held_by = self.with_state(lambda state: take_lease(state, scope, self.holder, now))
            if held_by is None:
                self._held.add(scope)
            return held_by  # type: ignore[no-any-return]

    def release(self, scope: str) -> None:
        with self._lease_lock:
            if scope not in self._held:
                return
            self._held.discard(scope)
        try:
            self.with_state(lambda state: state.drop_lease(scope, self.holder))
        except (CourierError, Stopped):
            log.warning("could not release lease %s; it lapses when this process ends", scope)

    # -- a group run ---------------------------------------------------------------------------
    def run(
        self, group_name: str, at: datetime, *, trigger: str = "manual", dry_run: bool = False
    ) -> dict[str, Any]:
        """Run the group as the scheduler would at `at`; return the group run record."""
        group = get_group(self.project, group_name)
        at = at.astimezone(UTC)
        plans = plan_group(self.project, group_name, at)
        if dry_run:
            return self._dry_run(group, at, plans)
        self.mark_interrupted()
        group_run_id = f"{at:%Y%m%dT%H%M%S}-{group.name}-{uuid.uuid4().hex[:6]}"
        record: dict[str, Any] = {
            "group_run_id": group_run_id,
            "group": group.name,
            "scheduled_at": iso_utc(at),
            "trigger": trigger,
            "status": "running",
            "time_zone": group_zone(self.project, group).key,
            "couriers": [],
            "alerts": [],
            "started_at": iso_utc(self.now()),
            "error": None,
        }
        scope = f"group:{group.name}@{iso_utc(at)}"
        if trigger == "scheduled":
            held_by = self.claim(scope)
            if held_by is not None:
                record["status"] = "held"
                record["error"] = f"being run by {held_by['host']} pid {held_by['pid']}"
                return record
        try:
            return self._run(group, at, plans, record, trigger)
        finally:
            if trigger == "scheduled":
                self.release(scope)

    def _run(
        self,
        group: GroupConfig,
        at: datetime,
        plans: list[MemberPlan],
        record: dict[str, Any],
        trigger: str,
    ) -> dict[str, Any]:
        clock = self.clock()
        if trigger == "scheduled":
            done = self.with_state(
                lambda s: [
                    r
                    for r in s.group_runs(group.name, 5, trigger="scheduled", scheduled_at=at)
                    if r["status"] not in ("running", "abandoned", "interrupted")
                ]
            )
            if done:
                record["status"] = "already_run"
                record["error"] = f"group run {done[0]['group_run_id']} ran this scheduled time"
                return record
        retries = self.with_state(lambda s: self._pending_retries(s, group, plans, at))
        members = [
            {"courier": p.courier, "window": p.window.as_dict() if p.window else None,
             "status": "pending", "run_id": None, "retry": False}
            for p in plans
        ] + [
            {"courier": c, "window": w.as_dict(), "status": "pending", "run_id": None,
             "retry": True}
            for c, ws in retries.items() for w in ws
        ]  # fmt: skip
        row = {
            "group_run_id": record["group_run_id"],
            "group_name": group.name,
            "scheduled_at": at,
            "trigger": trigger,
            "status": "running",
            "members": members,
            "started_at": self.now(),
            "host": self.host,
            "pid": os.getpid(),
        }
        self.with_state(lambda s: s.start_group_run(row))
        log.info("group %s at %s: %d courier(s) starting", group.name, iso_utc(at), len(plans))
        alerts: list[Alert] = []
        outcomes: list[dict[str, Any]] = []
        with ThreadPoolExecutor(
            max_workers=min(group.max_parallel, len(plans)) or 1,
            thread_name_prefix=f"group-{group.name}",
        ) as pool:
            futures = [
                pool.submit(
                    self._run_member, p, retries.get(p.courier, []), record, trigger, alerts
                )
                for p in plans
            ]
            for future in futures:
                outcomes.extend(future.result())
        record["couriers"] = outcomes
        record["status"] = group_status(outcomes, stopped=self.stop.is_set())
        record["finished_at"] = iso_utc(self.now())
        record["duration_s"] = round(self.clock() - clock, 3)
        failed = [o for o in outcomes if o["status"] == "failed"]
        if failed:
            record["error"] = f"{len(failed)} courier run(s) failed: " + ", ".join(
                sorted({o["courier"] for o in failed})
            )
        record["alerts"] = [a.payload() for a in alerts]
        finish = {
            "group_run_id": record["group_run_id"],
            "status": record["status"],
            "members": [member_entry(o) for o in outcomes],
            "error": record["error"],
            "finished_at": self.now(),
            "duration_s": record["duration_s"],
        }

        def save(state: StateStore) -> None:
            state.finish_group_run(finish)
            for alert in alerts:
                state.record_alert(alert.row())

        try:
            self.with_state(save)
        except Stopped:
            log.warning("group run %s: stopped before its record was saved", record["group_run_id"])
        log.info(
            "group %s at %s: %s (%.1fs)",
            group.name,
            iso_utc(at),
            record["status"],
            record["duration_s"],
        )
        return record

    def _dry_run(self, group: GroupConfig, at: datetime, plans: list[MemberPlan]) -> dict[str, Any]:
        retries = self.with_state(lambda s: self._pending_retries(s, group, plans, at))
        couriers = []
        for plan in plans:
            ctx = self._member_context(plan)
            windows = [(w, True) for w in retries.get(plan.courier, [])]
            windows.append((plan.window, False))
            for window, retry in windows:
                entry: dict[str, Any] = {**plan.as_dict(), "retry": retry}
                if window is None:
                    entry.update(status="skipped", note="the window is empty", files={})
                elif not retry and not plan.partitions:
                    entry.update(status="skipped", note="no partition starts in the window")
                else:
                    result = ctx.run(
                        plan.courier,
                        window,
                        self.now(),
                        dry_run=True,
                        lookback=member_lookback(self.project, plan.member),
                        trigger="scheduled",
                    )
                    grain = ctx.grain(ctx.project.courier(plan.courier))
                    entry.update(result)
                    entry["partitions"] = [iso_utc(p.start) for p in grain.partitions(window)]
                couriers.append(entry)
        return {
            "group_run_id": None,
            "group": group.name,
            "scheduled_at": iso_utc(at),
            "trigger": "dry_run",
            "status": "dry_run",
            "time_zone": group_zone(self.project, group).key,
            "file_time_zone": file_zone(self.project, group).key,
            "couriers": couriers,
            "alerts": [],
            "error": None,
        }

    def _member_context(self, plan: MemberPlan) -> Context:
        from courier.context import Context

        group = self.project.groups[plan.group]
        project = member_project(self.project, group, plan.member)
        return Context(project, self.context.console)

    def _pending_retries(
        self, state: StateStore, group: GroupConfig, plans: list[MemberPlan], at: datetime
    ) -> dict[str, list[Window]]:
        """Earlier scheduled windows of this group's couriers that never succeeded."""
        current = {(p.courier, p.window) for p in plans}
        members = {p.courier: p.member for p in plans}
        now = self.now()
        seen: set[tuple[str, Window]] = set()
        out: dict[str, list[Window]] = {}
        since = at - RETRY_HORIZON
        for run in state.group_runs(group.name, 1000, trigger="scheduled", since=since):
            if run["scheduled_at"] >= at:
                continue
            for m in run["members"] or []:
                if m.get("status") in (*OK_STATUSES, "held") or not m.get("window"):
                    continue
                if m["courier"] not in members:
                    continue  # no longer in the group
                window = Window(
                    datetime.fromisoformat(m["window"]["start"].replace("Z", "+00:00")),
                    datetime.fromisoformat(m["window"]["end"].replace("Z", "+00:00")),
                )
                key = (m["courier"], window)
                if key in current or key in seen:
                    continue
                seen.add(key)
                attempts = state.window_runs(m["courier"], window.start, window.end)
                if any(r.status in OK_STATUSES for r in attempts):
                    continue
                if any(r.status == "running" and holder_alive(r.to_row(), now) for r in attempts):
                    continue
                failures = sum(1 for r in attempts if r.status in ("failed", "running"))
                if failures > members[m["courier"]].retries:
                    continue  # given up: the alerts said so; `courier run` can still do it
                out.setdefault(m["courier"], []).append(window)
        for windows in out.values():
            windows.sort(key=lambda w: w.start)
        return out

    # -- one courier of a group ----------------------------------------------------------------
    def _run_member(
        self,
        plan: MemberPlan,
        retry_windows: list[Window],
        record: dict[str, Any],
        trigger: str,
        alerts: list[Alert],
    ) -> list[dict[str, Any]]:
        ctx = self._member_context(plan)
        outcomes = []
        for window, retry in [*((w, True) for w in retry_windows), (plan.window, False)]:
            try:
                outcome = self._run_window(ctx, plan, window, retry, record, trigger, alerts)
            except Stopped:
                outcome = synthetic(plan, window, "abandoned", "the scheduler stopped first")
            except Exception as exc:  # one courier's fault never stops the others
                log.exception("group %s: courier %s failed", plan.group, plan.courier)
                outcome = synthetic(plan, window, "failed", None)
                outcome["error"] = str(exc) if isinstance(exc, CourierError) else repr(exc)
                self._alert(alerts, "failed", plan, window, record, None, outcome["error"])
            outcome["retry"] = retry
            outcomes.append(outcome)
        return outcomes

    def _run_window(
        self,
        ctx: Context,
        plan: MemberPlan,
        window: Window | None,
        retry: bool,
        record: dict[str, Any],
        trigger: str,
        alerts: list[Alert],
    ) -> dict[str, Any]:
        self._check_stop()
        if window is None:
            return synthetic(plan, window, "skipped", "the window is empty")
        courier = ctx.project.courier(plan.courier)
        partitions = ctx.grain(courier).partitions(window)
        if not partitions and not retry:
            return synthetic(plan, window, "skipped", "no partition starts in the window")
        scope = f"courier:{plan.courier}@{iso_utc(window.start)}/{iso_utc(window.end)}"
        held_by = self.claim(scope)
        if held_by is not None:
            note = f"window being run by {held_by['host']} pid {held_by['pid']}"
            return synthetic(plan, window, "held", note)
        try:
            missing = self._wait_for_files(ctx, plan, window, partitions, trigger)
            missing_alert = None
            if missing and plan.member.required:
                waited = f"after waiting {plan.member.wait}" if self.wait else "(not waiting)"
                keys = ", ".join(iso_utc(p.start) for p in missing[:10])
                missing_alert = self._alert(
                    alerts, "missing_files", plan, window, record, None,
                    f"courier {plan.courier}: no files for {len(missing)} of {len(partitions)} "
                    f"partition(s) ({keys}) {waited}; expected "
                    f"{courier.pattern!r} in storage {courier.storage!r}",
                )  # fmt: skip
            result = self._call_run(ctx, plan, window, record, trigger, alerts)
            result["partitions"] = [iso_utc(p.start) for p in partitions]
            result["missing_partitions"] = [iso_utc(p.start) for p in missing]
            if missing_alert is not None:
                missing_alert.run_id = result["run_id"]
            if result["status"] == "failed":
                if missing_alert is not None:
                    missing_alert.details["run_error"] = result["error"]
                else:
                    self._alert(
                        alerts, "failed", plan, window, record, result["run_id"],
                        f"courier {plan.courier} failed: {result['error']}",
                    )  # fmt: skip
            return result
        finally:
            self.release(scope)

    def _wait_for_files(
        self,
        ctx: Context,
        plan: MemberPlan,
        window: Window,
        partitions: list[Partition],
        trigger: str = "scheduled",
    ) -> list[Partition]:
        """Poll until every partition of the window has a file or the wait is over; return
        the partitions still without files. A manual run (`group run --at T`) waits only
        until T + wait: for a time long past there is nothing left to wait for."""
        courier = ctx.project.courier(plan.courier)
        seconds = plan.wait.total_seconds() if self.wait else 0.0
        if trigger == "manual":
            seconds = max(0.0, min(seconds, (plan.at + plan.wait - self.now()).total_seconds()))
        deadline = self.clock() + seconds
        said = False
        while True:
            self._check_stop()
            try:
                found = {f.partition for f in ctx.discover(courier, window)}
            except CourierError as exc:  # the run itself reports an unreachable storage
                log.warning("courier %s: listing failed while waiting: %s", plan.courier, exc)
                found = set()
            missing = [p for p in partitions if p.start not in found]
            left = deadline - self.clock()
            if not missing or left <= 0:
                return missing
            if not said:  # once, also without a terminal: what it waits for, and until when
                said = True
                until = iso_utc(self.now() + timedelta(seconds=left))
                first = FilePattern.parse(courier.pattern).render(
                    missing[0].start.astimezone(plan.file_zone).replace(tzinfo=None)
                )
                ctx.console.warn(
                    f"{plan.courier}: waiting until {until} (wait = {plan.member.wait} after "
                    f"{iso_utc(plan.at)}) for files of {len(missing)} partition(s), first "
                    f"{first!r} in storage {courier.storage!r}; --no-wait runs without them"
                )
            log.info(
                "courier %s: waiting for %d partition(s), %.0fs left",
                plan.courier,
                len(missing),
                left,
            )
            ctx.console.status(
                f"{plan.courier}: waiting for files of {len(missing)} partition(s), "
                f"{left:.0f}s left"
            )
            self.sleep(min(self.poll_seconds, left))

    def _call_run(
        self,
        ctx: Context,
        plan: MemberPlan,
        window: Window,
        record: dict[str, Any],
        trigger: str,
        alerts: list[Alert],
    ) -> dict[str, Any]:
        courier = ctx.project.courier(plan.courier)
        locks = [self._feed_lock(f) for f in sorted(courier.load_operations)]
        timer = None
        fired: list[Alert] = []
        if plan.alert_after is not None:
            limit = plan.alert_after
            started = time.monotonic()

            def overlong() -> None:
                alert = self._alert(
                    alerts, "overlong", plan, window, record, None,
                    f"courier {plan.courier} has been running for over {plan.member.alert_after}",
                    {"alert_after_s": limit.total_seconds(),
                     "running_s": round(time.monotonic() - started, 3)},
                )  # fmt: skip
                fired.append(alert)

            timer = threading.Timer(limit.total_seconds(), overlong)
            timer.daemon = True
        lookback = member_lookback(self.project, plan.member)
        delay = 0.2
        deadline = None if self.lock_timeout is None else self.clock() + self.lock_timeout
        for lock in locks:
            lock.acquire()
        try:
            if timer is not None:
                timer.start()
            while True:
                self._check_stop()
                try:
                    log.info("courier %s: running window %s", plan.courier, window.as_dict())
                    with keeper(ctx).hold():
                        result = ctx.run(
                            plan.courier,
                            window,
                            self.now(),
                            lookback=lookback,
                            trigger=trigger,
                            group=(plan.group, record["group_run_id"]),
                        )
                    if timer is not None:
                        timer.cancel()
                        timer.join()  # an alert being sent finishes first
                    for alert in fired:
                        alert.run_id = result["run_id"]
                    return result
                except TransientError as exc:
                    if deadline is not None and self.clock() >= deadline:
                        raise
                    log.info("courier %s: %s", plan.courier, exc)
                    self.sleep(delay)
                    delay = min(delay * 2, 5.0)
        finally:
            if timer is not None:
                timer.cancel()
            for lock in reversed(locks):
                lock.release()

    def _alert(
        self,
        alerts: list[Alert],
        kind: Any,
        plan: MemberPlan,
        window: Window | None,
        record: dict[str, Any],
        run_id: str | None,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> Alert:
        alert = Alert(
            kind=kind,
            message=f"group {plan.group}: {message}",
            courier=plan.courier,
            group=plan.group,
            group_run_id=record["group_run_id"],
            run_id=run_id,
            window=window,
            details={"scheduled_at": record["scheduled_at"], **(details or {})},
        )
        self.alerter.fire(alert)
        alerts.append(alert)
        return alert

    # -- recovery ------------------------------------------------------------------------------
    def mark_interrupted(self) -> int:
        """Group runs left 'running' by a process that died become 'interrupted'."""
        now = self.now()

        def mark(state: StateStore) -> int:
            n = 0
            for run in state.group_runs(None, 200):
                if run["status"] == "running" and not holder_alive(run, now):
                    state.finish_group_run(
                        {"group_run_id": run["group_run_id"], "status": "interrupted"}
                    )
                    n += 1
            return n

        return int(self.with_state(mark))


def synthetic(
    plan: MemberPlan, window: Window | None, status: str, note: str | None
) -> dict[str, Any]:
    """An outcome for a courier window that did not reach Context.run."""
    return {
        "run_id": None,
        "courier": plan.courier,
        "status": status,
        "group": plan.group,
        "window": window.as_dict() if window else None,
        "files": {"found": 0, "loaded": 0, "skipped": 0},
        "bytes": 0,
        "feeds": {},
        "quarantined": 0,
        "duration_s": 0.0,
        "error": None,
        "note": note,
    }


def member_entry(outcome: dict[str, Any]) -> dict[str, Any]:
    return {
        "courier": outcome["courier"],
        "window": outcome.get("window"),
        "status": outcome["status"],
        "run_id": outcome.get("run_id"),
        "retry": outcome.get("retry", False),
    }


def group_status(outcomes: list[dict[str, Any]], stopped: bool = False) -> str:
    statuses = [o["status"] for o in outcomes]
    if stopped and "abandoned" in statuses:
        return "abandoned"
    ran = [s for s in statuses if s not in ("skipped", "held")]
    failed = [s for s in ran if s in ("failed", "abandoned")]
    if not failed:
        return "succeeded"
    return "failed" if len(failed) == len(ran) else "partially_failed"
