"""Cron schedules (SPEC 1.3): standard five-field cron (or six, seconds first, or a macro like
@hourly) read in a zone, as APScheduler triggers. Fire times are aware UTC datetimes; every
function takes the time it is about."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

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
