"""Scheduled window arithmetic (SPEC 3), table-driven: DST days, month ends, leap days,
prefixes, hourly groups; and the property that consecutive runs tile time exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from courier.config.models import GroupCourier
from courier.scheduling.cron import Schedule, crontab_weekdays, parse_cron
from courier.scheduling.planning import Span, scheduled_window
from courier.windows import Grain

DAILY, HOURLY = "0 6 * * *", "5 * * * *"


def partitions(
    tz_name: str, cron: str, at: str, offset: str, prefix: str | None, range_: str | None = None
) -> list[tuple[str, float]]:
    """(local start, hours) of each partition a run at local time `at` loads."""
    tz = ZoneInfo(tz_name)
    schedule = Schedule.parse(cron, tz)
    when = datetime.fromisoformat(at).replace(tzinfo=tz)
    window = scheduled_window(
        schedule, GroupCourier(name="c", offset=offset, range=range_), when, tz
    )
    assert window is not None
    grain = Grain.for_courier(prefix, True, tz)
    return [
        (
            p.start.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            (p.end - p.start).total_seconds() / 3600,
        )
        for p in grain.partitions(window)
    ]


CASES = [
    # SPEC 3 examples
    ("UTC", DAILY, "2026-11-23T06:00", "24h", "00", None, [("2026-11-22 00:00", 24)]),
    ("UTC", HOURLY, "2026-11-23T10:05", "1h", None, None, [("2026-11-23 09:00", 1)]),
    # DST spring forward (23-hour days) and fall back (25-hour days)
    ("Europe/Berlin", DAILY, "2026-03-29T06:00", "24h", "00", None, [("2026-03-28 00:00", 24)]),
    ("Europe/Berlin", DAILY, "2026-03-30T06:00", "24h", "00", None, [("2026-03-29 00:00", 23)]),
    ("Europe/Berlin", DAILY, "2026-03-31T06:00", "24h", "00", None, [("2026-03-30 00:00", 24)]),
    ("Europe/Berlin", DAILY, "2026-10-26T06:00", "24h", "00", None, [("2026-10-25 00:00", 25)]),
    ("Europe/Berlin", "0 0 * * *", "2026-10-26T00:00", "0h", "00", None, [("2026-10-25 00:00", 25)]),
    ("Europe/Berlin", "0 0 * * *", "2026-10-27T00:00", "24h", "00", None, [("2026-10-25 00:00", 25)]),
    ("Europe/Berlin", "0 0 * * *", "2026-03-30T00:00", "0h", "00", None, [("2026-03-29 00:00", 23)]),
    ("America/New_York", DAILY, "2026-03-09T06:00", "24h", "00", None, [("2026-03-08 00:00", 23)]),
    ("America/New_York", DAILY, "2026-11-02T06:00", "24h", "00", None, [("2026-11-01 00:00", 25)]),
    ("America/New_York", DAILY, "2026-11-03T06:00", "1d", "00", None, [("2026-11-02 00:00", 24)]),
    # hourly groups across DST: real hours, the repeated hour included
    ("Europe/Berlin", HOURLY, "2026-03-29T04:05", "1h", None, None, [("2026-03-29 03:00", 1)]),
    ("America/New_York", HOURLY, "2026-11-01T01:05", "1h", None, None, [("2026-11-01 00:00", 1)]),
    # month and year ends
    ("UTC", DAILY, "2026-12-01T06:00", "24h", "00", None, [("2026-11-30 00:00", 24)]),
    ("UTC", DAILY, "2027-01-01T06:00", "24h", "00", None, [("2026-12-31 00:00", 24)]),
    ("UTC", HOURLY, "2027-01-01T00:05", "1h", None, None, [("2026-12-31 23:00", 1)]),
    ("UTC", DAILY, "2026-03-01T06:00", "24h", "00", None, [("2026-02-28 00:00", 24)]),
    # leap day 2028-02-29
    ("UTC", DAILY, "2028-02-29T06:00", "24h", "00", None, [("2028-02-28 00:00", 24)]),
    ("UTC", DAILY, "2028-03-01T06:00", "24h", "00", None, [("2028-02-29 00:00", 24)]),
    ("Europe/Berlin", DAILY, "2028-03-01T06:00", "24h", "00", None, [("2028-02-29 00:00", 24)]),
    # prefix "06": a day runs 06:00 to 06:00
    ("UTC", DAILY, "2026-11-23T06:00", "24h", "06", None, [("2026-11-21 06:00", 24)]),
    ("UTC", DAILY, "2026-11-23T06:00", "0h", "06", None, [("2026-11-22 06:00", 24)]),
    ("UTC", DAILY, "2028-03-01T06:00", "0h", "06", None, [("2028-02-29 06:00", 24)]),
    ("Europe/Berlin", DAILY, "2026-10-25T06:00", "0h", "06", None, [("2026-10-24 06:00", 25)]),
    ("Europe/Berlin", DAILY, "2026-03-29T06:00", "0h", "06", None, [("2026-03-28 06:00", 23)]),
    # explicit range: two days each run (overlap on purpose); schedule gaps: Monday covers the weekend
    ("UTC", DAILY, "2026-11-23T06:00", "24h", "00", "2d",
     [("2026-11-21 00:00", 24), ("2026-11-22 00:00", 24)]),
    ("UTC", "0 6 * * 1-5", "2026-11-23T06:00", "24h", "00", None,
     [("2026-11-20 00:00", 24), ("2026-11-21 00:00", 24), ("2026-11-22 00:00", 24)]),
    # an hourly courier in a daily group loads the day's hours
    ("UTC", DAILY, "2026-11-23T06:00", "6h", None, None,
     [(f"2026-11-22 {h:02d}:00", 1) for h in range(24)]),
]  # fmt: skip


@pytest.mark.parametrize(("tz", "cron", "at", "offset", "prefix", "range_", "expected"), CASES)
def test_scheduled_partitions(
    tz: str,
    cron: str,
    at: str,
    offset: str,
    prefix: str | None,
    range_: str | None,
    expected: list[tuple[str, float]],
) -> None:
    assert partitions(tz, cron, at, offset, prefix, range_) == expected


def test_window_bounds_match_spec_example() -> None:
    tz = ZoneInfo("UTC")
    window = scheduled_window(
        Schedule.parse(DAILY, tz),
        GroupCourier(name="c", offset="24h", range="1d"),
        datetime(2026, 11, 23, 6, tzinfo=UTC),
        tz,
    )
    assert window is not None
    assert window.as_dict() == {"start": "2026-11-21T06:00:00Z", "end": "2026-11-22T06:00:00Z"}


YEAR = ("2026-01-02", "2027-01-02")
SPRING, FALL = ("2026-03-20", "2026-04-05"), ("2026-10-20", "2026-11-05")


@pytest.mark.parametrize(
    ("tz_name", "cron", "offset", "prefix", "span"),
    [
        ("UTC", DAILY, "24h", "00", YEAR),
        ("Europe/Berlin", DAILY, "24h", "00", YEAR),
        ("Europe/Berlin", "0 0 * * *", "24h", "00", YEAR),
        ("Europe/Berlin", "30 2 * * *", "24h", "00", YEAR),  # 02:30 is missing/doubled
        ("America/New_York", "0 0 * * *", "0h", "00", YEAR),
        ("America/New_York", DAILY, "24h", "06", YEAR),
        ("Europe/Berlin", HOURLY, "1h", None, SPRING),
        ("Europe/Berlin", HOURLY, "1h", None, FALL),
        ("America/New_York", "*/20 * * * *", "1h", None, FALL),
    ],
)
def test_consecutive_runs_load_every_partition_exactly_once(
    tz_name: str, cron: str, offset: str, prefix: str | None, span: tuple[str, str]
) -> None:
    """Across DST changes, windows of consecutive fire times tile time and every partition is
    loaded by exactly one run."""
    tz = ZoneInfo(tz_name)
    schedule = Schedule.parse(cron, tz)
    member = GroupCourier(name="c", offset=offset)
    grain = Grain.for_courier(prefix, True, tz)
    start, end = (datetime.fromisoformat(d).replace(tzinfo=tz).astimezone(UTC) for d in span)
    fires = schedule.fires(start, end, limit=30_000)
    loaded = []
    previous_end = None
    for at in fires:
        window = scheduled_window(schedule, member, at, tz)
        if window is None:
            continue
        if previous_end is not None:
            assert window.start == previous_end, f"gap or overlap before the run at {at}"
        previous_end = window.end
        loaded.extend(p.start for p in grain.partitions(window))
    assert len(loaded) == len(set(loaded))
    first, last = loaded[0], loaded[-1]
    expected, t = [], first
    while t <= last:
        expected.append(t)
        t = grain.partition_of(t).end
    assert loaded == expected
    if prefix is not None and span == YEAR:
        lengths = {(grain.partition_of(p).end - p) / timedelta(hours=1) for p in loaded}
        assert lengths == ({24.0} if tz_name == "UTC" else {23.0, 24.0, 25.0})


def test_span_whole_days_are_calendar_days() -> None:
    tz = ZoneInfo("Europe/Berlin")
    after_change = datetime(2026, 3, 30, 6, tzinfo=tz)
    assert Span.parse("24h").before(after_change, tz) == datetime(2026, 3, 29, 6, tzinfo=tz)
    assert Span.parse("1d").before(after_change, tz) == datetime(2026, 3, 29, 6, tzinfo=tz)
    assert Span.parse("25h").before(after_change, tz) == datetime(2026, 3, 29, 5, tzinfo=tz)
    elapsed = after_change.astimezone(UTC)
    assert Span.parse("23h").before(after_change, tz) == elapsed - timedelta(hours=23)
    assert Span.parse("30m").before(after_change, tz) == elapsed - timedelta(minutes=30)
    utc = ZoneInfo("UTC")
    assert Span.parse("48h").before(after_change, utc) == elapsed - timedelta(hours=48)


# -- cron ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("*", "*"),
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("mon-fri", "mon,tue,wed,thu,fri"),
        ("0,6", "sun,sat"),
        ("5-7", "sun,fri,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("1/3", "mon,thu"),
        ("SAT,sun", "sun,sat"),
    ],
)
def test_crontab_weekdays_count_from_sunday(field: str, names: str) -> None:
    assert crontab_weekdays(field) == names


def test_cron_weekday_numbers_are_crontab_numbers() -> None:
    utc = ZoneInfo("UTC")
    monday_late = datetime(2026, 11, 23, 7, tzinfo=UTC)  # a Monday
    assert Schedule.parse("0 6 * * 1", utc).next_after(monday_late) == datetime(
        2026, 11, 30, 6, tzinfo=UTC
    )
    assert Schedule.parse("0 6 * * 0", utc).next_after(monday_late) == datetime(
        2026, 11, 29, 6, tzinfo=UTC
    )


def test_cron_forms_and_zones() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    at = datetime(2026, 11, 23, 7, 0, 1, tzinfo=UTC)
    assert Schedule.parse("@daily", berlin).next_after(at) == datetime(2026, 11, 23, 23, tzinfo=UTC)
    assert Schedule.parse("@hourly", berlin).latest(at) == datetime(2026, 11, 23, 7, tzinfo=UTC)
    assert Schedule.parse("*/10 * * * * *", berlin).next_after(at) == datetime(
        2026, 11, 23, 7, 0, 10, tzinfo=UTC
    )
    daily = Schedule.parse(DAILY, berlin)
    assert daily.latest(at) == datetime(2026, 11, 23, 5, tzinfo=UTC)  # 06:00 CET
    assert daily.previous(datetime(2026, 11, 23, 5, tzinfo=UTC)) == datetime(
        2026, 11, 22, 5, tzinfo=UTC
    )
    monthly = Schedule.parse("0 6 1 * *", berlin)
    assert monthly.latest(at) == datetime(2026, 11, 1, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("0 25 * * *", "hour"),
        ("0 6 * *", "expected 5 fields"),
        ("every day", "expected 5 fields"),
        ("61 * * * *", "minute"),
        ("0 6 * * 8", "day of week"),
        ("0 6 1 * 1", "either/or"),
        ("0 6 * * 5-1", "backwards"),
    ],
)
def test_invalid_cron(expr: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_cron(expr, ZoneInfo("UTC"))
