"""Pure planning of group runs (SPEC 3): the window of each courier of a run at `T`, catch-up
after downtime and the order in which queued runs may start.

A run of a group at `T` gives each of its couriers the window `[T - O - R, T - O)` (O: the
courier's offset, R: its range, by default the schedule period) and loads the courier's
partitions whose start falls inside it.

Time zones: schedules are read in the group's `time_zone` (else the project's), and so are the
file dates of its couriers unless `file_dates_in_time_zone = false`. Whole days of an offset or
range (`24h`, `1d`, `48h`) are calendar days in that zone, the rest is elapsed time; the default
range is the time between the previous fire time and T. So a daily group keeps loading whole
days across DST changes (23- and 25-hour days) and consecutive runs tile time with neither gap
nor overlap, while an hourly group moves by real hours.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from courier.config.models import GroupConfig, GroupCourier, duration, parse_duration_seconds
from courier.context import Context
from courier.errors import not_found
from courier.plan import RunOptions
from courier.project import Project
from courier.scheduling.cron import Schedule
from courier.windows import Partition, Window, iso_utc

if TYPE_CHECKING:
    from courier.state.base import StateStore

DAY = 86400


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
    group = get_group(project, group_name)
    schedule = schedule_of(project, group)
    zone = file_zone(project, group)
    context = Context(project)
    plans = []
    for member in group.couriers:
        window = scheduled_window(schedule, member, at, zone)
        grain = context.grain(project.courier(member.name), zone)
        partitions = tuple(grain.partitions(window)) if window else ()
        plans.append(
            MemberPlan(
                group.name, member.name, at.astimezone(UTC), window, partitions, member, zone
            )
        )
    return plans


def get_group(project: Project, name: str) -> GroupConfig:
    if name not in project.groups:
        raise not_found("group", name, project.groups, f"add config/groups/{name}.toml")
    return project.groups[name]


def member_options(
    project: Project, plan: MemberPlan, *, trigger: str = "scheduled", **changes: Any
) -> RunOptions:
    """How a group courier runs (Context.run): file dates in the group's zone, the member's
    `required` in place of the courier's, its lookback (else the courier's)."""
    return RunOptions(
        lookback=member_lookback(project, plan.member),
        trigger=trigger,
        time_zone=plan.file_zone,
        required=plan.member.required,
        **changes,
    )


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
        r.scheduled_at
        for r in state.group_runs(group, 50, trigger="scheduled")
        if r.status in ("interrupted", "abandoned")
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
