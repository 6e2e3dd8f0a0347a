"""Windows and partitions (SPEC 3), including DST days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from courier.windows import (
    Grain,
    Window,
    parse_time,
    scheduled_window,
    window_for_date,
    window_for_hour,
    window_for_range,
)

UTCZ = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_spec_example_daily_at_six_with_24h_offset() -> None:
    window = scheduled_window(utc(2026, 11, 23, 6), timedelta(hours=24), timedelta(days=1))
    assert (window.start, window.end) == (utc(2026, 11, 21, 6), utc(2026, 11, 22, 6))
    parts = Grain(True, 0, UTCZ).partitions(window)
    assert [p.start for p in parts] == [utc(2026, 11, 22)]
    assert parts[0].end == utc(2026, 11, 23)


def test_spec_example_hourly_at_ten_past_with_1h_offset() -> None:
    window = scheduled_window(utc(2026, 11, 23, 10, 5), timedelta(hours=1), timedelta(hours=1))
    parts = Grain(False, 0, UTCZ).partitions(window)
    assert [p.start for p in parts] == [utc(2026, 11, 23, 9)]


def test_date_with_prefix_hour() -> None:
    w = window_for_date("2026-11-22", Grain(True, 6, UTCZ))
    assert (w.start, w.end) == (utc(2026, 11, 22, 6), utc(2026, 11, 23, 6))


@pytest.mark.parametrize(
    ("day", "hours"), [("2026-03-29", 23), ("2026-10-25", 25), ("2026-11-22", 24)]
)
def test_dst_days_have_23_or_25_hours(day: str, hours: int) -> None:
    grain = Grain(True, 0, BERLIN)
    w = window_for_date(day, grain)
    (part,) = grain.partitions(w)
    assert len(list(part.hours())) == hours


def test_hour_window_is_one_hourly_partition_even_for_daily_couriers() -> None:
    w = window_for_hour("2026-11-22T07", UTCZ)
    parts = Grain(True, 0, UTCZ).partitions(w)
    assert [(p.start, p.end) for p in parts] == [(utc(2026, 11, 22, 7), utc(2026, 11, 22, 8))]


def test_range_takes_partitions_starting_inside() -> None:
    w = window_for_range("2026-11-20T12:00", "2026-11-23", UTCZ)
    parts = Grain(True, 0, UTCZ).partitions(w)
    assert [p.start.day for p in parts] == [21, 22]


def test_parse_time_forms() -> None:
    assert parse_time("2026-11-22", UTCZ) == utc(2026, 11, 22)
    assert parse_time("2026-11-22T06", UTCZ) == utc(2026, 11, 22, 6)
    assert parse_time("2026-11-22T06:00:00Z", BERLIN) == utc(2026, 11, 22, 6)
    assert parse_time("2026-11-22 06:00", BERLIN) == utc(2026, 11, 22, 5)
    with pytest.raises(ValueError, match="use 2026-11-22"):
        parse_time("yesterday", UTCZ)


def test_empty_window_is_refused() -> None:
    with pytest.raises(ValueError, match="must be after"):
        Window(utc(2026, 1, 2), utc(2026, 1, 1))


instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda t: t.replace(tzinfo=UTC)
)


@given(instants, st.integers(0, 23), st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]))
def test_every_instant_is_in_exactly_its_partition(t: datetime, prefix: int, zone: str) -> None:
    grain = Grain(True, prefix, ZoneInfo(zone))
    part = grain.partition_of(t)
    assert part.start <= t < part.end
    # the window of that partition's day yields exactly it
    parts = grain.partitions(Window(part.start, part.end))
    assert parts == [part]


@given(instants, st.integers(1, 72))
def test_hourly_partitions_tile_the_window(t: datetime, hours: int) -> None:
    start = t.replace(minute=0, second=0, microsecond=0)
    parts = Grain(False, 0, UTCZ).partitions(Window(start, start + timedelta(hours=hours)))
    assert len(parts) == hours
    assert all(a.end == b.start for a, b in zip(parts, parts[1:], strict=False))
