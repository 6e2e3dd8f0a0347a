"""Time windows and partitions (SPEC section 3). Pure: every function takes the times it needs.

A window is [start, end) in UTC. A courier's partition is a day starting at its `prefix` hour
(daily couriers), else an hour when its pattern has HH, else a day from midnight. A run covers
the partitions whose start falls inside its window. Days are local to the time zone, so a day
across a DST change has 23 or 25 hours.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Window:
    start: datetime  # aware, UTC
    end: datetime
    hourly: bool = False  # --hour: partitions are single hours whatever the courier's grain

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"window end {self.end} must be after its start {self.start}")

    def as_dict(self) -> dict[str, str]:
        return {"start": iso_utc(self.start), "end": iso_utc(self.end)}


@dataclass(frozen=True)
class Partition:
    start: datetime  # aware, UTC
    end: datetime

    def hours(self) -> Iterator[datetime]:
        t = self.start
        while t < self.end:
            yield t
            t += HOUR


@dataclass(frozen=True)
class Grain:
    """How a courier cuts time: daily from `prefix_hour`, or hourly."""

    daily: bool
    prefix_hour: int
    tz: ZoneInfo

    @classmethod
    def for_courier(cls, prefix: str | None, pattern_has_hour: bool, tz: ZoneInfo) -> Grain:
        if prefix is not None:
            return cls(True, int(prefix), tz)
        return cls(not pattern_has_hour, 0, tz)

    def day_start(self, day: date) -> datetime:
        local = datetime.combine(day, time(self.prefix_hour), tzinfo=self.tz)
        return local.astimezone(UTC)

    def partition_of(self, t: datetime) -> Partition:
        """The partition holding instant t."""
        if not self.daily:
            start = t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            return Partition(start, start + HOUR)
        local = t.astimezone(self.tz)
        day = local.date()
        if local.hour < self.prefix_hour:
            day -= timedelta(days=1)
        return Partition(self.day_start(day), self.day_start(day + timedelta(days=1)))

    def partitions(self, window: Window) -> list[Partition]:
        """Partitions whose start falls inside the window."""
        if window.hourly or not self.daily:
            start = window.start.astimezone(UTC)
            t = start.replace(minute=0, second=0, microsecond=0)
            if t < start:
                t += HOUR
            out = []
            while t < window.end:
                out.append(Partition(t, t + HOUR))
                t += HOUR
            return out
        first = self.partition_of(window.start)
        day = first.start.astimezone(self.tz).date()
        if first.start < window.start:
            day += timedelta(days=1)
        out = []
        while True:
            p = Partition(self.day_start(day), self.day_start(day + timedelta(days=1)))
            if p.start >= window.end:
                break
            out.append(p)
            day += timedelta(days=1)
        return out


def iso_utc(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ts(value: object) -> str | None:
    """A datetime as ISO UTC text ('...Z'); anything else (None, text) as it is."""
    return iso_utc(value) if isinstance(value, datetime) else value  # type: ignore[return-value]


def parse_time(text: str, tz: ZoneInfo) -> datetime:
    """'2026-11-22', '2026-11-22T06', '2026-11-22 06:00', ISO with offset/Z -> aware UTC."""
    s = text.strip().replace(" ", "T")
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    if len(s) == 13 and s[10] == "T":  # 2026-11-22T06
        s += ":00"
    try:
        t = datetime.fromisoformat(s)
    except ValueError as exc:
        raise ValueError(
            f"cannot read time {text!r} ({exc}); use 2026-11-22, 2026-11-22T06, "
            "2026-11-22T06:00, 2026-11-22 06:00, or ISO 8601 with an offset "
            "(2026-11-22T06:00:00Z, 2026-11-22T07:00+01:00)"
        ) from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=tz)
    return t.astimezone(UTC)


def parse_date(day: str) -> date:
    """'2026-11-22' -> a date; anything else is refused with the accepted form."""
    text = day.strip()
    try:
        if len(text) != 10:
            raise ValueError("not YYYY-MM-DD")
        return date.fromisoformat(text)
    except ValueError as exc:
        reason = str(exc).removeprefix("Invalid isoformat string: ").strip("'")
        detail = "" if reason == text else f" ({reason})"
        raise ValueError(
            f"cannot read date {day!r}{detail}; accepted: YYYY-MM-DD, e.g. 2026-11-22 "
            "(for one hour use --hour 2026-11-22T06)"
        ) from exc


def window_for_date(day: str, grain: Grain) -> Window:
    d = parse_date(day)
    return Window(grain.day_start(d), grain.day_start(d + timedelta(days=1)))


def window_for_hour(hour: str, tz: ZoneInfo) -> Window:
    t = parse_time(hour, tz).replace(minute=0, second=0, microsecond=0)
    return Window(t, t + HOUR, hourly=True)


def window_for_range(start: str, end: str, tz: ZoneInfo) -> Window:
    return Window(parse_time(start, tz), parse_time(end, tz))


def scheduled_window(at: datetime, offset: timedelta, range_: timedelta) -> Window:
    """SPEC 3: a run at T with offset O and range R covers [T - O - R, T - O)."""
    end = at.astimezone(UTC) - offset
    return Window(end - range_, end)
