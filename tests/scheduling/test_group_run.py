"""Group runs in process against real storage and an on-disk DuckDB: parallel couriers, a
courier failing mid-group, retries, waits with an injected clock, lookback, leases, dry runs."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from courier.records import Lease
from courier.scheduling.runner import GroupRunner
from courier.scheduling.status import courier_status
from tests.projects import ProjectFactory, event
from tests.scheduling.conftest import courier_cli, group, land_clicks

pytestmark = pytest.mark.slow

DAY = date(2026, 11, 22)
T1 = datetime(2026, 11, 23, 6, tzinfo=UTC)
T2 = T1 + timedelta(days=1)

DAILY_GROUP = """
schedule = "0 6 * * *"
[[couriers]]
name = "events"
offset = "24h"
[[couriers]]
name = "clicks"
offset = "6h"
required = false  # hourly partitions: a quiet hour has no file
"""


def land_day(p: ProjectFactory, day: date = DAY, events: int = 5) -> None:
    for hour in (0, 7, 23):
        p.land_hour(day, hour, [event(hour * 100 + i) for i in range(events)])
        land_clicks(p, day, hour)


def command_sink(p: ProjectFactory, out: Path) -> None:
    script = f"cat >> {out}; echo >> {out}"
    p.write(
        "config/courier.toml",
        f"""
        [alerts]
        sinks = [{{ type = "log" }}, {{ type = "command", command = ["/bin/sh", "-c", "{script}"] }}]
        """,
    )


def test_couriers_run_in_parallel_into_their_feeds(project: ProjectFactory) -> None:
    group(project, "daily", DAILY_GROUP)
    land_day(project)
    runner = GroupRunner(project.context())
    result = runner.run("daily", T1, trigger="scheduled")
    assert result["status"] == "succeeded", result
    by_courier = {r["courier"]: r for r in result["couriers"]}
    assert by_courier["events"]["partitions"] == ["2026-11-22T00:00:00Z"]
    assert by_courier["clicks"]["window"] == {
        "start": "2026-11-22T00:00:00Z",
        "end": "2026-11-23T00:00:00Z",
    }
    assert len(by_courier["clicks"]["partitions"]) == 24
    assert {r["status"] for r in result["couriers"]} == {"succeeded"}
    assert project.sql("SELECT count(*) FROM order_items")[0][0] == 3 * 5 * 2
    assert project.sql("SELECT count(*) FROM clicks")[0][0] == 9
    rows = project.sql(
        "SELECT courier, status, group_name, group_run_id, trigger FROM courier.runs ORDER BY 1"
    )
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [
        ("clicks", "succeeded", "daily", "scheduled"),
        ("events", "succeeded", "daily", "scheduled"),
    ]
    assert {r[3] for r in rows} == {result["group_run_id"]}
    gr = project.sql("SELECT status, scheduled_at, trigger FROM courier.group_runs")
    assert gr == [("succeeded", T1, "scheduled")]
    # the same scheduled time again is recognised as already run; a replay is allowed
    assert runner.run("daily", T1, trigger="scheduled")["status"] == "already_run"
    replay = runner.run("daily", T1)
    assert {r["status"] for r in replay["couriers"]} == {"skipped"}  # exactly once per file
    assert project.sql("SELECT count(*) FROM order_items")[0][0] == 30
    # courier runs shows which group run each courier run belongs to, and filters by group
    listed = json.loads(courier_cli(project, "runs", "--group", "daily", "--json").stdout)
    assert {(r["courier"], r["group"]) for r in listed} == {
        ("clicks", "daily"),
        ("events", "daily"),
    }
    assert result["group_run_id"] in {r["group_run_id"] for r in listed}
    manual = courier_cli(project, "run", "clicks", "--date", "2026-11-22", "--reload")
    assert manual.returncode == 0, manual.stderr
    assert len(json.loads(courier_cli(project, "runs", "--json").stdout)) == len(listed) + 1
    assert len(json.loads(courier_cli(project, "runs", "--group", "daily", "--json").stdout)) == (
        len(listed)
    )
    text = courier_cli(project, "runs").stdout
    assert "daily" in text and "(manual)" in text


def test_parallel_runs_repeatedly_do_not_conflict(project: ProjectFactory) -> None:
    """Several couriers of one group in one DuckDB database from several threads."""
    for n in range(3):
        project.courier(
            f"clicks{n}",
            f"""
            storage = "landing"
            file_pattern = "'clicks/'yyyy/MM/dd/HH'/*.ndjson'"
            file_tag = "clicks"
            [load_operations]
            clicks{n} = [{{ type = "load", file = "clicks" }}]
            """,
        )
        project.feed(f"clicks{n}", '[fields]\nclick_id = "string"\npage = "string"\n')
    members = "".join(
        f'[[couriers]]\nname = "{c}"\noffset = "6h"\n'
        for c in ("events", "clicks", "clicks0", "clicks1", "clicks2")
    )
    group(project, "wide", 'schedule = "0 6 * * *"\nmax_parallel = 5\n' + members)
    runner = GroupRunner(project.context())
    for d in range(3):
        day = DAY + timedelta(days=d)
        land_day(project, day)
        result = runner.run("wide", T1 + timedelta(days=d))
        assert [r["status"] for r in result["couriers"]] == ["succeeded"] * 5, result
    for n in range(3):
        assert project.sql(f"SELECT count(*) FROM clicks{n}")[0][0] == 27


def test_failing_courier_others_finish_alert_fires_next_run_retries(
    project: ProjectFactory, tmp_path: Path
) -> None:
    alerts_file = tmp_path / "alerts.ndjson"
    command_sink(project, alerts_file)
    project.feed("pages", '[fields]\npage = "string"\n')
    project.query("pages", "SELECT error('the pages query broke') AS page FROM views")
    project.courier(
        "pages",
        """
        storage = "landing"
        file_pattern = "'views/'yyyy/MM/dd/HH'/*.ndjson'"
        file_tag = "views"
        [load_operations]
        pages = [{ type = "sql", sql-query = "pages", sql-files = [{ file = "views" }] }]
        """,
    )

    def land_views(day: date) -> None:
        for hour in (3, 4):
            project.land(f"views/{day:%Y/%m/%d}/{hour:02d}/v.ndjson", [{"page": f"/{hour}"}])

    pages = '[[couriers]]\nname = "pages"\noffset = "6h"\nrequired = false\n'
    group(project, "daily", DAILY_GROUP + pages)
    land_day(project)
    land_views(DAY)
    runner = GroupRunner(project.context())
    first = runner.run("daily", T1, trigger="scheduled")
    assert first["status"] == "partially_failed"
    status = {r["courier"]: r["status"] for r in first["couriers"]}
    assert status == {"events": "succeeded", "clicks": "succeeded", "pages": "failed"}
    assert "the pages query broke" in first["couriers"][2]["error"]
    assert project.sql("SELECT count(*) FROM clicks")[0][0] == 9
    # the alert went to the command sink and into run history, with the failed run's id
    sent = [json.loads(line) for line in alerts_file.read_text().splitlines() if line.strip()]
    assert [(a["kind"], a["courier"]) for a in sent] == [("failed", "pages")]
    failed_run = first["couriers"][2]["run_id"]
    assert sent[0]["run_id"] == failed_run and sent[0]["group_run_id"] == first["group_run_id"]
    recorded = project.sql("SELECT kind, courier, run_id, deliveries FROM courier.alerts")
    assert [(k, c, r) for k, c, r, _ in recorded] == [("failed", "pages", failed_run)]
    assert json.loads(recorded[0][3]) == {"log": "ok", "command sh": "ok"}
    group_row = project.sql("SELECT status, error FROM courier.group_runs")[0]
    assert group_row[0] == "partially_failed" and "pages" in group_row[1]

    # fixed; the next scheduled run retries the failed window first, then its own
    project.query("pages", "SELECT DISTINCT page FROM views")
    land_day(project, DAY + timedelta(days=1))
    land_views(DAY + timedelta(days=1))
    second = GroupRunner(project.context()).run("daily", T2, trigger="scheduled")
    assert second["status"] == "succeeded", second
    pages = [(r["window"]["start"], r["retry"], r["status"]) for r in second["couriers"]
             if r["courier"] == "pages"]  # fmt: skip
    assert pages == [
        ("2026-11-22T00:00:00Z", True, "succeeded"),
        ("2026-11-23T00:00:00Z", False, "succeeded"),
    ]
    assert project.sql("SELECT count(*) FROM pages")[0][0] == 4
    # nothing left to retry
    third = GroupRunner(project.context()).run("daily", T2 + timedelta(days=1), trigger="scheduled")
    assert not [r for r in third["couriers"] if r.get("retry")]


class FakeTime:
    """A clock that only moves when slept on; a hook lands files at a given moment."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self.at: list[tuple[float, object]] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        for when, action in list(self.at):
            if self.now >= when:
                self.at.remove((when, action))
                action()  # type: ignore[operator]


HOURLY_GROUP = """
schedule = "5 * * * *"
[[couriers]]
name = "clicks"
offset = "1h"
wait = "10m"
required = {required}
lookback = "1d"
"""
TODAY = date(2026, 11, 23)


def test_files_arriving_during_the_wait_are_picked_up(project: ProjectFactory) -> None:
    group(project, "hourly", HOURLY_GROUP.format(required="true"))
    fake = FakeTime()
    fake.at.append((150.0, lambda: land_clicks(project, TODAY, 9)))
    runner = GroupRunner(project.context(), sleep=fake.sleep, clock=fake.clock, poll_seconds=60)
    result = runner.run("hourly", datetime(2026, 11, 23, 10, 5, tzinfo=UTC), trigger="scheduled")
    assert result["status"] == "succeeded"
    run = result["couriers"][0]
    assert run["partitions"] == ["2026-11-23T09:00:00Z"] and run["missing_partitions"] == []
    assert run["files"]["loaded"] == 1
    assert fake.slept == [60, 60, 60]  # polled until the file appeared, not the whole wait
    assert result["alerts"] == []


def test_after_the_wait_a_required_window_fails_alerts_and_is_retried(
    project: ProjectFactory,
) -> None:
    group(project, "hourly", HOURLY_GROUP.format(required="true"))
    fake = FakeTime()
    runner = GroupRunner(project.context(), sleep=fake.sleep, clock=fake.clock, poll_seconds=60)
    first = runner.run("hourly", datetime(2026, 11, 23, 10, 5, tzinfo=UTC), trigger="scheduled")
    assert first["status"] == "failed" and fake.now == 600
    assert [a["kind"] for a in first["alerts"]] == ["missing_files"]  # one alert, not two
    assert "after waiting 10m" in first["alerts"][0]["message"]
    assert "no files" in first["alerts"][0]["details"]["run_error"]
    land_clicks(project, TODAY, 9)  # late
    land_clicks(project, TODAY, 10)
    second = runner.run("hourly", datetime(2026, 11, 23, 11, 5, tzinfo=UTC), trigger="scheduled")
    assert [(r["window"]["start"], r["status"]) for r in second["couriers"]] == [
        ("2026-11-23T08:05:00Z", "succeeded"),  # the retried window
        ("2026-11-23T09:05:00Z", "succeeded"),
    ]
    assert project.sql("SELECT count(*) FROM clicks")[0][0] == 6


def test_after_the_wait_an_optional_window_loads_late_files_by_lookback(
    project: ProjectFactory,
) -> None:
    group(project, "hourly", HOURLY_GROUP.format(required="false"))
    fake = FakeTime()
    runner = GroupRunner(project.context(), sleep=fake.sleep, clock=fake.clock, poll_seconds=60)
    first = runner.run("hourly", datetime(2026, 11, 23, 10, 5, tzinfo=UTC), trigger="scheduled")
    assert first["status"] == "succeeded" and first["alerts"] == []
    assert first["couriers"][0]["status"] == "skipped"
    land_clicks(project, TODAY, 9)  # after the wait: not this run's
    land_clicks(project, TODAY, 10)
    second = runner.run("hourly", datetime(2026, 11, 23, 11, 5, tzinfo=UTC), trigger="scheduled")
    run = second["couriers"][0]
    assert run["window"]["start"] == "2026-11-23T09:05:00Z" and not run.get("retry")
    assert run["files"]["loaded"] == 2  # its own hour and the late one, by lookback
    keys = [r[0] for r in project.sql("SELECT key FROM courier.files ORDER BY key")]
    assert keys == [
        "clicks/2026/11/23/09/part-test-000000.ndjson",
        "clicks/2026/11/23/10/part-test-000000.ndjson",
    ]


def test_leases_keep_two_holders_off_one_window(project: ProjectFactory) -> None:
    group(project, "daily", DAILY_GROUP)
    a = GroupRunner(project.context())
    b = GroupRunner(project.context())
    assert a.claim("courier:events@x") is None
    assert a.claim("courier:events@x") is not None  # not re-entrant within the process
    held = b.claim("courier:events@x")
    assert held is not None and held.holder == a.holder
    a.release("courier:events@x")
    assert b.claim("courier:events@x") is None
    # a holder whose process died loses its lease
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    with project.context().workspace() as ws:
        ws.state.put_lease(Lease("courier:clicks@y", "gone", b.host, int(dead), T1, T2))
    assert a.claim("courier:clicks@y") is None


def test_dry_run_changes_nothing_and_status_reports(project: ProjectFactory) -> None:
    group(project, "daily", DAILY_GROUP)
    land_day(project)
    proc = courier_cli(
        project, "group", "run", "daily", "--at", "2026-11-23T06:00", "--dry-run", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    dry = json.loads(proc.stdout)
    events = dry["couriers"][0]
    assert events["window"] == {"start": "2026-11-21T06:00:00Z", "end": "2026-11-22T06:00:00Z"}
    assert [f["key"] for f in events["files"]["list"]] == [
        f"events/2026/11/22/{h:02d}/part-test-000000.ndjson" for h in (0, 7, 23)
    ]
    assert project.sql("SELECT count(*) FROM courier.runs")[0][0] == 0
    assert project.sql("SELECT count(*) FROM courier.group_runs")[0][0] == 0

    ran = courier_cli(project, "group", "run", "daily", "--at", "2026-11-23T06:00", "--json")
    assert ran.returncode == 0, ran.stderr
    land_clicks(project, TODAY, 1)  # landed, not loaded yet
    listed = json.loads(courier_cli(project, "group", "runs", "--json").stdout)
    assert len(listed) == 1 and listed[0]["status"] == "succeeded"
    assert sorted(r["courier"] for r in listed[0]["runs"]) == ["clicks", "events"]
    human = courier_cli(project, "group", "runs", "daily")
    assert "daily at 2026-11-23T06:00:00Z [manual] succeeded" in human.stdout

    rows = {r["courier"]: r for r in courier_status(project.context(), T1 + timedelta(hours=1))}
    clicks = rows["clicks"]
    assert clicks["newest_partition"] == "2026-11-22T23:00:00Z"
    assert clicks["last_success"] is not None and clicks["last_run"]["status"] == "succeeded"
    assert clicks["backlog"]["files"] == 1
    assert clicks["next_run"] == {"group": "daily", "at": "2026-11-24T06:00:00Z"}
    assert rows["events"]["newest_partition"] == "2026-11-22T00:00:00Z"
    out = courier_cli(project, "status", "--json")
    assert out.returncode == 0 and {r["courier"] for r in json.loads(out.stdout)} == {
        "clicks",
        "events",
    }
