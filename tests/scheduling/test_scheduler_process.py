"""`courier scheduler` as real processes: cron firing and SIGTERM, kill -9 mid-run and the
restart that runs the window again, two schedulers on one project."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from courier.scheduling.cron import Schedule
from courier.windows import iso_utc
from tests.projects import EVENTS_QUERY, ProjectFactory, event
from tests.scheduler_process import Scheduler
from tests.scheduling.conftest import courier_cli, group, land_clicks

pytestmark = pytest.mark.integration


def test_cron_fires_and_sigterm_stops_cleanly(project: ProjectFactory, tmp_path: Path) -> None:
    group(
        project,
        "ticker",
        'schedule = "* * * * * *"\n'  # every second (six fields: seconds first)
        '[[couriers]]\nname = "clicks"\noffset = "0h"\nrequired = false\n',
    )
    sched = Scheduler(project, tmp_path / "log")
    sched.wait_for(": succeeded (", count=3)
    sched.proc.send_signal(signal.SIGTERM)
    assert sched.finish(timeout=60) == 0, sched.text()
    assert "SIGTERM: finishing" in sched.text() and "scheduler stopped" in sched.text()
    rows = project.sql(
        "SELECT status, count(*) FROM courier.group_runs WHERE trigger = 'scheduled' GROUP BY 1"
    )
    assert dict(rows).get("succeeded", 0) >= 3 and set(dict(rows)) == {"succeeded"}


def order_items(p: ProjectFactory) -> list[tuple]:
    return p.sql(
        "SELECT event_id, item_idx, customer_id, sku, qty, price FROM order_items ORDER BY 1, 2"
    )


def test_kill_9_mid_run_then_restart_runs_the_window_again_once(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    daily = Schedule.parse("0 6 * * *", ZoneInfo("UTC"))
    at = daily.latest(datetime.now(UTC))
    assert at is not None
    day = (at - timedelta(days=1)).date()

    def build(root: Path, slow: bool = True) -> ProjectFactory:
        p = ProjectFactory(root).events_project()
        # slow on purpose (seconds of CPU inside the run's transaction), deterministic rows
        # (the clean run that gives the expected rows need not be slow: the condition is true)
        if slow:
            p.query(
                "order_items",
                EVENTS_QUERY + "WHERE (SELECT sum(r) FROM range(3000000000) t(r)) > 0\n",
            )
        group(p, "daily", 'schedule = "0 6 * * *"\n[[couriers]]\nname = "events"\noffset = "24h"\n')
        for hour in (1, 12, 23):
            p.land_hour(day, hour, [event(hour * 100 + i, items=3) for i in range(50)])
        return p

    clean = build(tmp_path / "clean", slow=False)
    assert courier_cli(clean, "group", "run", "daily", "--at", iso_utc(at)).returncode == 0
    expected = order_items(clean)
    assert len(expected) == 3 * 50 * 3

    p = build(tmp_path / "crash")
    since = iso_utc(at - timedelta(hours=1))
    first = Scheduler(p, tmp_path / "first.log", "--since", since)
    first.wait_for("courier events: running window")
    time.sleep(1.0)
    assert first.proc.poll() is None, first.text()
    os.kill(first.proc.pid, signal.SIGKILL)
    first.finish()
    assert p.sql("SELECT status FROM courier.runs") == [("running",)]  # it died mid-run
    tables = p.sql("SELECT table_name FROM information_schema.tables WHERE table_schema='main'")
    assert ("order_items",) not in tables or order_items(p) == []

    second = Scheduler(p, tmp_path / "second.log", "--once")
    assert second.finish() == 0, second.text()
    assert "marked interrupted" in second.text(), second.text()
    assert order_items(p) == expected
    files = p.sql("SELECT key, count(*) FROM courier.files GROUP BY key")
    assert len(files) == 3 and {n for _, n in files} == {1}
    runs = p.sql("SELECT status, error FROM courier.runs ORDER BY started_at")
    assert [r[0] for r in runs] == ["failed", "succeeded"]
    assert "interrupted" in runs[0][1]
    groups = p.sql("SELECT scheduled_at, status FROM courier.group_runs ORDER BY started_at")
    assert groups == [(at, "interrupted"), (at, "succeeded")]


def test_two_schedulers_never_run_one_window_twice(project: ProjectFactory, tmp_path: Path) -> None:
    group(
        project,
        "hourly",
        'schedule = "0 * * * *"\ncatch_up = "all"\n'
        '[[couriers]]\nname = "clicks"\noffset = "1h"\nwait = "2s"\nrequired = false\n',
    )
    hourly = Schedule.parse("0 * * * *", ZoneInfo("UTC"))
    latest = hourly.latest(datetime.now(UTC))
    assert latest is not None
    since = latest - timedelta(hours=5)
    due = hourly.fires(since, latest)
    for at in due[1:]:  # the first window's hour never lands: its run polls for 2 s
        start = at - timedelta(hours=2)
        land_clicks(project, start.date(), start.hour, n=4)
    args = ("--once", "--since", iso_utc(since))
    a = Scheduler(project, tmp_path / "a.log", *args)
    b = Scheduler(project, tmp_path / "b.log", *args)
    assert a.finish() == 0, a.text()
    assert b.finish() == 0, b.text()
    runs = project.sql(
        "SELECT window_start, count(*), min(status) FROM courier.runs GROUP BY 1 ORDER BY 1"
    )
    assert [r[0] for r in runs] == [at - timedelta(hours=2) for at in due]
    assert all(n == 1 for _, n, _ in runs), runs
    grs = project.sql(
        "SELECT scheduled_at, count(*) FROM courier.group_runs WHERE status = 'succeeded' "
        "GROUP BY 1 ORDER BY 1"
    )
    assert grs == [(at, 1) for at in due]
    assert project.sql("SELECT count(*) FROM clicks")[0][0] == 4 * (len(due) - 1)


def test_sigterm_during_a_wait_abandons_the_run_and_restart_runs_it(
    project: ProjectFactory, tmp_path: Path
) -> None:
    group(
        project,
        "hourly",
        'schedule = "0 * * * *"\n[[couriers]]\nname = "clicks"\noffset = "1h"\nwait = "10m"\n',
    )
    hourly = Schedule.parse("0 * * * *", ZoneInfo("UTC"))
    at = hourly.latest(datetime.now(UTC))
    assert at is not None
    sched = Scheduler(project, tmp_path / "first.log", "--since", iso_utc(at - timedelta(hours=1)))
    sched.wait_for("waiting for 1 partition(s)")
    started = time.monotonic()
    sched.proc.send_signal(signal.SIGTERM)
    assert sched.finish(timeout=60) == 0, sched.text()
    assert time.monotonic() - started < 10  # the wait ends at once, it does not run out
    assert project.sql("SELECT scheduled_at, status FROM courier.group_runs") == [(at, "abandoned")]
    assert project.sql("SELECT count(*) FROM courier.runs")[0][0] == 0
    hour = at - timedelta(hours=2)
    land_clicks(project, hour.date(), hour.hour)
    again = Scheduler(project, tmp_path / "second.log", "--once")
    assert again.finish() == 0, again.text()
    assert project.sql("SELECT status FROM courier.group_runs WHERE status <> 'abandoned'") == [
        ("succeeded",)
    ]
    assert project.sql("SELECT count(*) FROM clicks")[0][0] == 3
