"""The scheduler loop in process (once mode, an injected clock): catch-up policies and
run_after ordering against a real project and DuckDB file."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import pytest

from courier.scheduling.loop import Scheduler
from tests.projects import ProjectFactory
from tests.scheduling.conftest import CLICKS_COURIER, group, land_clicks

pytestmark = pytest.mark.slow

TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 13, 30, tzinfo=UTC)
SINCE = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def hourly(catch_up: str, courier: str = "clicks", run_after: str = "[]") -> str:
    return (
        f'schedule = "0 * * * *"\ncatch_up = "{catch_up}"\nrun_after = {run_after}\n'
        f'[[couriers]]\nname = "{courier}"\noffset = "1h"\n'
    )


def scheduled(p: ProjectFactory, name: str) -> list[tuple[int, str]]:
    rows = p.sql(
        "SELECT scheduled_at, status FROM courier.group_runs "
        f"WHERE group_name = '{name}' AND trigger = 'scheduled' ORDER BY scheduled_at"
    )
    return [(at.hour, status) for at, status in rows]


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [("all", [11, 12, 13]), ("latest", [13]), ("none", [])],
)
def test_catch_up_after_downtime(
    project: ProjectFactory, catch_up: str, expected: list[int]
) -> None:
    group(project, "hourly", hourly(catch_up))
    for hour in range(8, 14):
        land_clicks(project, TODAY, hour)
    code = Scheduler(project.context(), since=SINCE, once=True, now=lambda: NOW).run()
    assert code == 0
    runs = scheduled(project, "hourly") if expected else []
    assert runs == [(h, "succeeded") for h in expected]
    if expected:
        windows = project.sql(
            "SELECT window_start FROM courier.runs WHERE courier = 'clicks' ORDER BY 1"
        )
        assert [w[0].hour for w in windows] == [h - 2 for h in expected]
    # a restart finds nothing more to do: the state store remembers what finished
    again = Scheduler(project.context(), once=True, now=lambda: NOW)
    assert again.run() == 0 and again.results == []


def test_run_after_runs_each_time_after_the_group_it_names(project: ProjectFactory) -> None:
    # its own files: courier.files counts a file loaded by any courier as loaded (see report)
    copy = CLICKS_COURIER.replace("clicks = [", "clicks_copy = [").replace("'clicks/'", "'copy/'")
    project.courier("clicks_copy", copy)
    project.feed("clicks_copy", '[fields]\nclick_id = "string"\npage = "string"\n')
    group(project, "a", hourly("all"))
    group(project, "b", hourly("all", "clicks_copy", '["a"]'))
    for hour in range(8, 14):
        land_clicks(project, TODAY, hour)
        land_clicks(project, TODAY, hour, prefix="copy")
    t0 = time.monotonic()  # a clock that moves, so start/finish times can be compared

    def now() -> datetime:
        return NOW + timedelta(seconds=time.monotonic() - t0)

    sched = Scheduler(project.context(), since=SINCE, once=True, max_groups=2, now=now)
    assert sched.run() == 0
    rows = project.sql(
        "SELECT group_name, scheduled_at, started_at, finished_at, status "
        "FROM courier.group_runs ORDER BY scheduled_at, group_name"
    )
    assert [(g, at.hour, s) for g, at, _, _, s in rows] == [
        (g, h, "succeeded") for h in (11, 12, 13) for g in ("a", "b")
    ]
    for i in range(0, len(rows), 2):
        a, b = rows[i], rows[i + 1]
        assert b[2] >= a[3], f"b started before a finished at {a[1]}"
    assert project.sql("SELECT count(*) FROM clicks_copy")[0][0] == 9
