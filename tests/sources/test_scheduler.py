"""`courier scheduler` runs the project's sources as real processes against the loopback API:
every interval from start-up, a failing source alerted once and not fatal, SIGTERM after the
page being landed, `--once` one round of each source alongside the due group runs."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from courier.records import Lease
from tests.projects import ProjectFactory
from tests.scheduler_process import Scheduler
from tests.sources.api import FakeApi, event
from tests.sources.conftest import courier_cli, env, landed_parts, landed_records, source
from tests.sources.test_poll import CURSOR_SOURCE

pytestmark = pytest.mark.integration


def test_scheduler_polls_every_interval_and_stops_on_sigterm(
    project: ProjectFactory, api: FakeApi, tmp_path: Path
) -> None:
    source(project, "events_api", CURSOR_SOURCE.format(url=api.url))  # interval = "1s"
    source(  # fails every round: alerted once, the other source goes on
        project, "web", f'type = "http_poll"\nstream = "pulled"\nurl = "{api.url}/html"\n'
        'interval = "1s"\n',
    )  # fmt: skip
    sched = Scheduler(project, tmp_path / "scheduler.log", env=env())
    sched.wait_until("a first round", lambda: "source 'events_api': " in sched.text())
    assert len(landed_records(project, "events")) == 25
    api.add_events(3)  # the next round, a second later, lands only these
    sched.wait_until("28 records", lambda: len(landed_records(project, "events")) >= 28)
    sched.wait_until("3 failed rounds", lambda: sched.text().count("round failed") >= 3)
    # and one more round, with nothing new
    sched.wait_until("3 rounds", lambda: sched.text().count("source 'events_api': ") >= 3)
    code, took = sched.stop()
    log = sched.text()
    assert code == 0, log
    assert took < 10, log
    assert "SIGTERM: finishing" in log and "scheduler stopped" in log
    assert landed_records(project, "events") == [event(i) for i in range(1, 29)]  # nothing twice
    assert all(p.name.startswith("part-poll-events_api-") for p in landed_parts(project, "events"))
    assert "source 'events_api': 2 page(s), 3 record(s), 3 landed" in log
    assert log.count("ALERT source_failed: source web") == 1, log  # once per streak
    recorded = project.sql("SELECT kind, message FROM courier.alerts")
    assert [k for k, _ in recorded] == ["source_failed"]
    assert recorded[0][1].startswith("source web (http_poll into stream pulled) failed")
    assert "answered HTML" in log and "Traceback" not in log
    assert landed_parts(project, "pulled") == []
    assert "source 'events_api': 1 page(s), 0 record(s), 0 landed" in log


def test_sigterm_mid_round_finishes_the_page_being_landed(
    project: ProjectFactory, api: FakeApi, tmp_path: Path
) -> None:
    source(project, "events_api", CURSOR_SOURCE.format(url=api.url))
    # each landed page holds still for 1.5 s before its cursor is saved: SIGTERM arrives then
    sched = Scheduler(project, tmp_path / "scheduler.log", env=env(COURIER_FAULT_AFTER_LAND="1.5"))
    sched.wait_until("a landed page", lambda: "FAULT landed" in sched.text())
    code, took = sched.stop()
    log = sched.text()
    assert code == 0, log
    assert took < 10, log
    assert log.count("FAULT landed") == 1, log  # no second page was fetched
    assert "source 'events_api': 1 page(s), 10 record(s), 10 landed" in log
    assert landed_records(project, "events") == [event(i) for i in range(1, 11)]
    # the page's cursor was saved: the next run goes on from record 11
    out = courier_cli(project, "poll", "events_api", "--once", env=env())
    assert out.returncode == 0, out.stderr
    assert landed_records(project, "events") == [event(i) for i in range(1, 26)]


EVENTS_FEED = """
primary_key = ["id"]

[fields]
id = "string"
seq = "int"
action = "string"
"""

EVENTS_COURIER = """
storage = "landing"
file_pattern = "'events/'yyyy/MM/dd/HH'/*.ndjson'"
format = "ndjson"
file_tag = "events"

[load_operations]
events = [{ type = "load", file = "events" }]
"""


def test_once_runs_each_source_alongside_the_due_group_runs(
    project: ProjectFactory, api: FakeApi, tmp_path: Path
) -> None:
    source(project, "events_api", CURSOR_SOURCE.format(url=api.url))
    project.feed("events", EVENTS_FEED)
    project.courier("events", EVENTS_COURIER)
    project.write(
        "config/groups/hourly.toml",
        'schedule = "@hourly"\ncatch_up = "latest"\n'
        '[[couriers]]\nname = "events"\noffset = "0h"\nrequired = false\n',
    )
    since = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() - 3 * 3600))

    skipped = courier_cli(project, "scheduler", "--once", "--no-sources", "--since", since,
                          env=env(), timeout=60)  # fmt: skip
    assert skipped.returncode == 0, skipped.stderr
    assert landed_parts(project, "events") == [] and api.requests == []

    started = time.monotonic()
    out = courier_cli(project, "scheduler", "--once", env=env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 30
    assert landed_records(project, "events") == [event(i) for i in range(1, 26)]
    assert "source 'events_api': 4 page(s), 25 record(s), 25 landed" in out.stderr
    # the group ran (the latest missed hour, in the first call; again if an hour began since)
    runs = project.sql("SELECT group_name, trigger, status FROM courier.group_runs")
    assert runs and set(runs) == {("hourly", "scheduled", "succeeded")}

    again = courier_cli(project, "scheduler", "--once", env=env(), timeout=60)
    assert again.returncode == 0, again.stderr
    assert "25 landed" not in again.stderr and "0 landed" in again.stderr
    assert len(landed_records(project, "events")) == 25


def test_a_source_held_by_another_live_process_is_skipped(
    project: ProjectFactory, api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    from courier.sources.run import describe, run_source
    from courier.workspace import open_workspace

    for name, value in env().items():
        if name.startswith(("COURIER_", "POLL_")):
            monkeypatch.setenv(name, value)
    source(project, "events_api", CURSOR_SOURCE.format(url=api.url))
    p = project.load()
    now = datetime.now(UTC)
    lease = Lease("source:events_api", "other", socket.gethostname(), os.getppid(), now, now)
    with open_workspace(p) as ws:
        ws.state.put_lease(lease)
    summary = run_source(p, "events_api")
    assert summary["held_by"] == f"process {os.getppid()} on {socket.gethostname()}"
    assert "skipped" in describe(summary) and api.requests == []

    with open_workspace(p) as ws:  # its process is gone: the lease is taken over
        ws.state.put_lease(replace(lease, pid=2**22 + 1))
    assert run_source(p, "events_api")["landed"] == 25
    with open_workspace(p) as ws:
        assert ws.state.get_lease("source:events_api") is None  # released after the round
