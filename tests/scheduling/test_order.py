"""Catch-up after downtime and run_after ordering: pure functions of the times given."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from courier.config.models import GroupConfig, GroupCourier
from courier.scheduling.cron import Schedule
from courier.scheduling.planning import due_times, is_ready, run_after_order

HOURLY = Schedule.parse("0 * * * *", ZoneInfo("UTC"))


def t(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 23, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [("all", [t(11), t(12), t(13)]), ("latest", [t(13)]), ("none", [])],
)
def test_missed_runs_after_downtime(catch_up: str, expected: list[datetime]) -> None:
    # last finished run 10:00, down until 13:30
    assert due_times(HOURLY, catch_up, t(10), t(13, 30), t(13, 30)) == expected
    # later on, the live fire times follow in order
    assert due_times(HOURLY, catch_up, t(10), t(13, 30), t(15, 1)) == [*expected, t(14), t(15)]


def test_first_start_misses_nothing_and_other_process_progress_counts() -> None:
    assert due_times(HOURLY, "all", None, t(13, 30), t(13, 30)) == []
    assert due_times(HOURLY, "all", None, t(13, 30), t(14, 0)) == [t(14)]
    # another scheduler already finished 14:00 before this one started at 13:30
    assert due_times(HOURLY, "all", t(14), t(13, 30), t(15)) == [t(15)]


def groups(**run_after: list[str]) -> dict[str, GroupConfig]:
    return {
        name: GroupConfig(
            name=name, schedule="0 * * * *", run_after=deps, couriers=[GroupCourier(name="c")]
        )
        for name, deps in run_after.items()
    }


def test_run_after_waits_for_runs_at_or_before_its_time() -> None:
    g = groups(hourly=[], daily=["hourly"], other=[])
    daily = (t(6), "daily")
    assert not is_ready(daily, [daily, (t(6), "hourly")], [], g)
    assert not is_ready(daily, [daily], [(t(5), "hourly")], g)
    assert is_ready(daily, [daily, (t(7), "hourly")], [], g)
    assert is_ready(daily, [daily], [(t(6), "other")], g)
    # one group never runs twice at once, and its runs keep their order
    assert not is_ready((t(7), "other"), [], [(t(6), "other")], g)
    assert not is_ready((t(7), "other"), [(t(6), "other"), (t(7), "other")], [], g)
    assert run_after_order(groups(c=["b"], b=["a"], a=[])) == ["a", "b", "c"]
    assert sorted(run_after_order(groups(a=["b"], b=["a"]))) == ["a", "b"]  # cycles: no hang
